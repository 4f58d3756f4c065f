// The layer's last step: out[t] = bf16(sum_{j=0..k-1} slot_out[t*k + j]) with fp32 sums in
// ascending j, so the result is bitwise deterministic (no atomics). A slot whose expert id is
// outside [0, E) was routed nowhere and its slot_out row was never written: it is skipped (the
// routing header already reports the error).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "ramp/bf16.h"
#include "ramp/status.h"

namespace ramp::cuda {

struct CombineArgs {
  const float* slot_out = nullptr;     // [T*k, H] fp32, contiguous rows
  const int32_t* topk_ids = nullptr;   // [T, k], to skip slots routed nowhere
  int32_t num_experts = 0;
  int32_t num_tokens = 0;
  int32_t top_k = 0;
  int32_t hidden = 0;                  // H, a multiple of 8
  bf16* out = nullptr;                 // [T, H] rows out_row_stride apart, 16-byte aligned
  int64_t out_row_stride = 0;          // elements, a multiple of 8
};

Status launch_combine(const CombineArgs& args, cudaStream_t stream);

}  // namespace ramp::cuda
