// The GPU side of `ramp profile` / `ramp evaluate`: times one GEMM of an MoE layer, as the layer
// runs it, under a given per-expert config assignment. No CUDA types here, so the command
// itself stays plain C++; only built with the CUDA backend.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ramp/status.h"
#include "ramp/types.h"

namespace ramp::cli {

struct TimerOptions {
  int warmup = 2;
  int repeats = 5;  // median of these, L2 flushed before each
};

class CandidateTimer {
 public:
  virtual ~CandidateTimer() = default;
  // Allocates random weights and activations for `shape` and up to max_tokens tokens.
  static Status create(const MoeShape& shape, int32_t max_tokens, const TimerOptions& options,
                       std::unique_ptr<CandidateTimer>* timer);

  virtual const std::string& device_name() const = 0;
  virtual int32_t sm_count() const = 0;

  // Uploads a routing (topk ids [T, k] and weights) for the next measurements.
  virtual Status set_routing(const std::vector<int32_t>& topk_ids,
                             const std::vector<float>& topk_weights, int32_t num_tokens) = 0;
  // Median microseconds of GEMM1 (gemm = 0: N = 2I, K = H, SiLU(gate)*up epilogue) and GEMM2
  // (gemm = 1: N = H, K = I, router-weighted fp32 epilogue) of the current routing, with each
  // expert using kBuiltinConfigs[configs1/2[e]]. The plan is built on the host and uploaded;
  // only the GEMM launch is timed (graph replay, CUDA events). A null output skips that GEMM.
  virtual Status time_gemms(const std::vector<int32_t>& configs1,
                            const std::vector<int32_t>& configs2, double* gemm1_us,
                            double* gemm2_us) = 0;
  // The same for catalog entries alone: every expert of GEMM1 uses catalog entry `entry1`, every
  // expert of GEMM2 `entry2` (each launch is that entry's own kernel instance; it must be
  // compiled in this build and fit the GEMM, else the error says why). -1 skips that GEMM.
  virtual Status time_catalog_entries(int32_t entry1, int32_t entry2, double* gemm1_us,
                                      double* gemm2_us) = 0;
};

}  // namespace ramp::cli
