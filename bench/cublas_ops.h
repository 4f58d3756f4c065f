// The cuBLAS side of `ramp bench`: the dense GEMM ceiling, the copy ceiling, and the cuBLAS
// peers of the grouped GEMM.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "bench/device_utils.h"
#include "bench/timing.h"
#include "ramp/status.h"
#include "ramp/types.h"

namespace ramp::bench {

// One cuBLAS handle bound to a stream, with a fixed workspace so graph capture never makes
// cuBLAS allocate.
class Cublas {
 public:
  Cublas();
  ~Cublas();
  Status init(cudaStream_t stream);
  // Row-major y[m, n] = x[m, k] . w[n, k]^T, bf16 in and out, fp32 accumulate: the layout of
  // every GEMM in this project (weights [out, in]).
  Status gemm_xwt(const bf16* x, const bf16* w, bf16* y, int64_t m, int64_t n, int64_t k,
                  int64_t ldx, int64_t ldw, int64_t ldy);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct Ceilings {
  int gemm_size = 8192;
  double gemm_tflops = 0;
  Timing gemm_timing;
  size_t copy_bytes = 0;  // size of one buffer; bytes moved = 2x (read + write)
  double copy_gbps = 0;
  Timing copy_timing;
};

// cuBLAS bf16 8192^3 (random data, fp32 accumulate) and a 2 GiB device-to-device copy, each
// after warm-up, median of `repeats` (>= 10).
Status measure_ceilings(Cublas& cublas, cudaStream_t stream, L2Flusher* flusher, int repeats,
                        Ceilings* ceilings);

// The per-expert cuBLAS loop peer of the grouped GEMM, set up from the host routing:
//   timed: gather of each slot's token row into an expert-sorted buffer (one kernel) + one
//          cublasGemmEx per non-empty expert writing an expert-sorted output;
//   not timed: the counting sort of slots by expert and the histogram, which the host knows
//          here (an engine would need a device-to-host copy and a sync to size the GEMMs), and
//          any scatter of the output back to slot order.
class CublasExpertLoop {
 public:
  Status setup(const GroupedGemmArgs& device_args, const std::vector<int32_t>& host_topk_ids);
  Status enqueue(Cublas& cublas, cudaStream_t stream) const;
  // Row of the expert-sorted output that holds `slot`.
  int64_t sorted_row_of_slot(int64_t slot) const { return sorted_row_of_slot_[slot]; }
  const bf16* output() const { return y_sorted_.as<const bf16>(); }
  int32_t active_experts() const;

 private:
  GroupedGemmArgs args_{};
  std::vector<int64_t> expert_offsets_;  // [E + 1]
  std::vector<int64_t> sorted_row_of_slot_;
  DeviceBuffer sorted_tokens_;  // [S] int32: token of each sorted row
  DeviceBuffer x_sorted_;       // [S, K]
  DeviceBuffer y_sorted_;       // [S, N]
};

}  // namespace ramp::bench
