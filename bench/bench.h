// `ramp bench`: the benchmark library behind the command. Host-only header (no CUDA types) so
// the command-line front end compiles as plain C++.
//
// One run measures, in one process: the ceilings (cuBLAS bf16 8192^3 GEMM, a large
// device-to-device copy), our kernel (ramp::cuda::grouped_gemm / moe_layer), the cuBLAS peers,
// and optionally torch._grouped_mm through bench/peers/torch_peer.py; checks our output against
// the fp64 CPU reference on sampled tokens; writes a results JSON and prints a table.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/plan.h"
#include "ramp/types.h"
#include "workloads/routing.h"

namespace ramp::bench {

enum class BenchKind { kGemm, kLayer };

struct CaseSpec {
  std::string model;  // "seed004" for the grouped GEMM case
  // Layer: E, k, H, I. Grouped GEMM: E, k, hidden = K (in features), intermediate = N (out
  // features), as the CLI's Problem does.
  MoeShape shape;
  int32_t num_tokens = 0;
  workloads::RoutingSpec routing;

  // "olmoe-1b-7b/T=512/zipf1.0"; the key that joins our numbers with the torch peer's.
  std::string name() const;
};

struct BenchOptions {
  BenchKind kind = BenchKind::kGemm;
  std::vector<CaseSpec> cases;
  // Result file; empty = bench/results/<device>-<UTC date>-<kind>.json.
  std::string out_path;
  std::string command_line;  // recorded verbatim in the results
  int warmup = 5;
  int repeats = 30;
  uint64_t seed = 1;
  ExpertOrder order = ExpertOrder::kHalfInterval;
  bool run_kernel = true;     // false: ceilings and peers only (kernel cases marked skipped)
  bool cublas_peer = true;    // grouped GEMM only: per-expert loop and dense same-shape GEMM
  bool torch_peer = true;     // run bench/peers/torch_peer.py when python3 + torch are there
  std::string python = "python3";
  std::string torch_script;   // empty: bench/peers/torch_peer.py under cwd, then the source tree
  int verify_tokens = 32;     // tokens checked against the fp64 reference (all if T is smaller)
  bool overlap_kernels = true;  // CudaOptions::overlap_kernels (programmatic dependent launch)
  bool routing_aware = false;   // CudaOptions::routing_aware (device selection with a profile)
  int l2_group[2] = {0, 0};     // CudaOptions::l2_group (layer GEMM1, GEMM2; 0: by rule)
  int decode_max_tokens = -1;   // CudaOptions::decode_max_tokens (layer); -1: the library's rule
  int decode_hand_over = -1;    // CudaOptions::decode_hand_over (layer); -1: the library's rule
};

// Runs every case and writes the results file. Exit code: 0 written, 1 a measurement or a
// correctness check failed (then no results file is written), 2 no usable device.
int run_bench(const BenchOptions& options);

}  // namespace ramp::bench
