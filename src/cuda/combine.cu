#include "cuda/combine.cuh"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <string>

#include "core/host_device.h"
#include "cuda/cuda_check.h"

namespace ramp::cuda {

namespace {

constexpr int kCombineThreads = 256;
constexpr int kColumnsPerThread = 8;  // two 16-byte fp32 loads in, one 16-byte bf16 store out

__global__ void __launch_bounds__(kCombineThreads) combine_slots(CombineArgs args) {
  const int32_t vectors_per_row = args.hidden / kColumnsPerThread;
  const int64_t total = static_cast<int64_t>(args.num_tokens) * vectors_per_row;
  for (int64_t item = blockIdx.x * static_cast<int64_t>(kCombineThreads) + threadIdx.x;
       item < total; item += static_cast<int64_t>(gridDim.x) * kCombineThreads) {
    const int32_t token = static_cast<int32_t>(item / vectors_per_row);
    const int32_t column = static_cast<int32_t>(item % vectors_per_row) * kColumnsPerThread;
    float sum[kColumnsPerThread] = {};
    for (int32_t j = 0; j < args.top_k; ++j) {
      const int32_t slot = token * args.top_k + j;
      const int32_t expert = __ldg(args.topk_ids + slot);
      if (static_cast<uint32_t>(expert) >= static_cast<uint32_t>(args.num_experts)) continue;
      const float4* row = reinterpret_cast<const float4*>(
          args.slot_out + static_cast<int64_t>(slot) * args.hidden + column);
      const float4 low = __ldg(row);
      const float4 high = __ldg(row + 1);
      sum[0] += low.x;  sum[1] += low.y;  sum[2] += low.z;  sum[3] += low.w;
      sum[4] += high.x; sum[5] += high.y; sum[6] += high.z; sum[7] += high.w;
    }
    __align__(16) __nv_bfloat162 packed[kColumnsPerThread / 2];
#pragma unroll
    for (int i = 0; i < kColumnsPerThread / 2; ++i) {
      packed[i] = __floats2bfloat162_rn(sum[2 * i], sum[2 * i + 1]);
    }
    bf16* out = args.out + static_cast<int64_t>(token) * args.out_row_stride + column;
    *reinterpret_cast<uint4*>(out) = *reinterpret_cast<const uint4*>(packed);
  }
}

}  // namespace

Status launch_combine(const CombineArgs& args, cudaStream_t stream) {
  if (args.num_tokens == 0) return Status::ok();
  if (args.hidden % kColumnsPerThread != 0 || args.out_row_stride % kColumnsPerThread != 0 ||
      reinterpret_cast<uintptr_t>(args.out) % 16 != 0 ||
      reinterpret_cast<uintptr_t>(args.slot_out) % 16 != 0) {
    return {ErrorCode::kInternal, "combine needs 16-byte aligned rows (H = " +
                                      std::to_string(args.hidden) + ", out_row_stride = " +
                                      std::to_string(args.out_row_stride) + ")"};
  }
  const int64_t vectors = static_cast<int64_t>(args.num_tokens) * (args.hidden / kColumnsPerThread);
  // Enough CTAs to cover the machine several times; the grid-stride loop takes the rest.
  const int64_t blocks = min(ceil_div64(vectors, kCombineThreads), int64_t{65536});
  combine_slots<<<static_cast<unsigned>(blocks), kCombineThreads, 0, stream>>>(args);
  RAMP_CUDA_TRY(cudaGetLastError());
  return Status::ok();
}

}  // namespace ramp::cuda
