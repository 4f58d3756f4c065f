// The layer's last step: out[t] = bf16(sum_{j=0..k-1} slot_out[t*k + j]) with fp32 sums in
// ascending j, so the result is bitwise deterministic (no atomics). slot_out holds GEMM2's
// weighted rows in bf16, as vLLM's fused_experts keeps them: half the bytes of fp32 through
// HBM twice (GEMM2's stores, these loads), which at T = 8192 was ~10% of the layer. A slot whose expert id is
// outside [0, E) was routed nowhere and its slot_out row was never written: it is skipped (the
// routing header already reports the error).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "ramp/bf16.h"
#include "ramp/status.h"

namespace ramp::cuda {

struct CombineArgs {
  const bf16* slot_out = nullptr;      // [T*k, H] bf16, contiguous rows
  const int32_t* topk_ids = nullptr;   // [T, k], to skip slots routed nowhere
  int32_t num_experts = 0;
  int32_t num_tokens = 0;
  int32_t top_k = 0;
  int32_t hidden = 0;                  // H, a multiple of 8
  bf16* out = nullptr;                 // [T, H] rows out_row_stride apart, 16-byte aligned
  int64_t out_row_stride = 0;          // elements, a multiple of 8
  // GEMM2 runs just before on the stream: overlap its tail (ptx/grid_dependency.h).
  bool after_ramp_kernel = false;
};

Status launch_combine(const CombineArgs& args, cudaStream_t stream);

}  // namespace ramp::cuda
