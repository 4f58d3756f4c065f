// The problem a `ramp` subcommand works on, from its common options: a model shape (or the
// seed paper's grouped-GEMM case), a routing kind, a token count and random bf16 data.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cli_args.h"
#include "core/plan.h"
#include "ramp/status.h"
#include "ramp/types.h"
#include "workloads/routing.h"

namespace ramp::cli {

// Options every problem-taking subcommand accepts.
inline const std::set<std::string> kProblemOptions = {"model", "models-json", "tokens", "routing",
                                                      "seed", "order", "sms"};
inline constexpr const char* kProblemHelp =
    "  --model NAME        model shape from models.json (default olmoe-1b-7b); 'seed004' is the\n"
    "                      static batching paper's grouped GEMM (E=64 k=8 N=3584 K=2560)\n"
    "  --models-json PATH  read model shapes from this file instead of the built-in table\n"
    "  --tokens T          tokens in the batch (default 64; 0 is allowed)\n"
    "  --routing KIND      balanced | uniform | zipf<S> (zipf1.0, zipf1.5) | hot | worst\n"
    "                      (default uniform)\n"
    "  --seed S            routing and data seed (default 1)\n"
    "  --order ORDER       expert order: identity | half-interval | longest-first\n"
    "                      (default half-interval)\n"
    "  --sms N             SM count for planning and wave counts (default 132, an H100)\n";

struct Problem {
  std::string model_name;
  bool grouped_gemm = false;  // true for --model seed004
  MoeShape shape;             // layer: E, k, H, I; grouped GEMM: E, k, H = K, I = N
  int32_t num_tokens = 0;
  workloads::RoutingSpec routing_spec;
  workloads::Routing routing;
  ExpertOrder order = ExpertOrder::kHalfInterval;
  int32_t num_sms = 132;
  uint64_t seed = 1;

  // Useful FLOPs (padding not counted): layer 6*S*H*I, grouped GEMM 2*S*N*K, S = T*k.
  double useful_flops() const;
  std::string describe() const;
};

// Reads the options; does not allocate data.
Status read_problem(Args& args, Problem* problem);

struct ProblemData {
  std::vector<bf16> hidden;  // [T, H]  (grouped GEMM: x [T, K])
  std::vector<bf16> w13;     // [E, 2I, H] (grouped GEMM: w [E, N, K])
  std::vector<bf16> w2;      // [E, H, I] (unused for the grouped GEMM)
  std::vector<bf16> out;     // [T, H] (grouped GEMM: y [T*k, N]), poisoned with NaN
  MoeLayerArgs layer_args();
  GroupedGemmArgs gemm_args(const Problem& problem);
  const Problem* problem = nullptr;
};

// Random data with the scales of a real layer (values ~ 1/sqrt(fan-in)), never zeros.
ProblemData make_data(const Problem& problem);

// The plan the CPU backend runs (builtin config set, assigned per expert).
Status build_plan(const Problem& problem, Plan* plan);

}  // namespace ramp::cli
