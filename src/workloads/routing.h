// Synthetic routings (top-k expert ids + weights per token) for tests, benchmarks and profiles.
// Every generator is seeded and uses only integer arithmetic plus IEEE double operations whose
// results are fixed by the standard (no std:: distributions, no libm transcendental results
// feeding a comparison that could flip), so the same (kind, T, E, k, seed) yields the same ids
// on every machine. See shared/workloads/README.md for the kinds.
//
// Preconditions of generate_routing: num_tokens >= 0 and 1 <= top_k <= num_experts; a violation
// aborts through assert in debug builds and produces an empty routing otherwise.
//
// Edge cases:
//  - balanced: slot s = t*k + j goes to expert s mod E. A token's k experts are distinct because
//    k <= E. The histogram is exact (every expert T*k/E slots) when T*k is a multiple of E;
//    otherwise the first (T*k mod E) experts get one slot more.
//  - hot: the k hot experts are a seeded random choice; every token lists them in the same order.
//  - worst: as hot, then tokens 0..min(T, E-k)-1 replace their last hot slot with a distinct cold
//    expert (cold experts in increasing id order), so each of the E-k cold experts gets exactly
//    one slot when T >= E-k; when T < E-k only the first T cold experts get one. When T <= E-k
//    every token gave its last hot slot away, so only k-1 hot experts remain busy (none when
//    k == 1). When k == E there are no cold experts and worst equals hot.
//  - zipfS: S may be any finite value >= 0 (S = 0 is uniform popularity); the popularity rank of
//    each expert comes from a seeded random permutation, so expert 0 is not always the busiest.
//  - num_tokens == 0 gives empty arrays.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "ramp/bf16.h"

namespace ramp::workloads {

enum class RoutingKind { kBalanced, kUniform, kZipf, kHot, kWorst };

struct RoutingSpec {
  RoutingKind kind = RoutingKind::kUniform;
  double zipf_exponent = 1.0;  // only for kZipf

  // "balanced", "uniform", "zipf1.0", "zipf1.5" (any zipf<non-negative finite number>), "hot",
  // "worst". Returns false and leaves *spec unchanged for anything else.
  static bool parse(const std::string& name, RoutingSpec* spec);
  // Inverse of parse: "zipf1.5", "zipf1.0" (always at least one decimal), "zipf0.75".
  std::string name() const;
};

struct Routing {
  int32_t num_tokens = 0, top_k = 0, num_experts = 0;
  std::vector<int32_t> topk_ids;      // [T*k]
  std::vector<float> topk_weights;    // [T*k], positive, each token's k weights sum to 1
  std::vector<int32_t> histogram() const;  // [E] slots per expert
};

Routing generate_routing(const RoutingSpec& spec, int32_t num_tokens, int32_t num_experts,
                         int32_t top_k, uint64_t seed);

// The six kinds of models.json "routings", in that order.
const std::vector<std::string>& all_routing_names();

// Uniform in [-scale, scale] after bf16 rounding; never all zero (a zero buffer hides bugs).
void fill_random_bf16(std::span<bf16> values, uint64_t seed, float scale);
// Uniform in [lo, hi).
void fill_random_float(std::span<float> values, uint64_t seed, float lo, float hi);

}  // namespace ramp::workloads
