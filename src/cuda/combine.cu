#include "cuda/combine.cuh"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <string>

#include "core/host_device.h"
#include "cuda/cuda_check.h"
#include "cuda/ptx/grid_dependency.h"

namespace ramp::cuda {

namespace {

constexpr int kCombineThreads = 256;
constexpr int kColumnsPerThread = 8;  // one 16-byte bf16 load per slot, one 16-byte store

// Slots summed per batch: their ids and rows are all requested before the first add, so a
// decode token waits for one round trip to L2 instead of k dependent ones.
constexpr int kSlotBatch = 4;

__global__ void __launch_bounds__(kCombineThreads) combine_slots(CombineArgs args) {
  // slot_out is GEMM2's output: wait for it when launched programmatically (grid_dependency.h).
  ptx::wait_for_previous_grid();
  const int32_t vectors_per_row = args.hidden / kColumnsPerThread;
  const int64_t total = static_cast<int64_t>(args.num_tokens) * vectors_per_row;
  for (int64_t item = blockIdx.x * static_cast<int64_t>(kCombineThreads) + threadIdx.x;
       item < total; item += static_cast<int64_t>(gridDim.x) * kCombineThreads) {
    const int32_t token = static_cast<int32_t>(item / vectors_per_row);
    const int32_t column = static_cast<int32_t>(item % vectors_per_row) * kColumnsPerThread;
    float sum[kColumnsPerThread] = {};
    for (int32_t first = 0; first < args.top_k; first += kSlotBatch) {
      uint4 row_bits[kSlotBatch];
      bool routed[kSlotBatch];
#pragma unroll
      for (int b = 0; b < kSlotBatch; ++b) {
        const int32_t j = first + b;
        const int32_t slot = token * args.top_k + j;
        const int32_t expert = j < args.top_k ? __ldg(args.topk_ids + slot) : -1;
        routed[b] = static_cast<uint32_t>(expert) < static_cast<uint32_t>(args.num_experts);
        row_bits[b] = make_uint4(0, 0, 0, 0);
        if (routed[b]) {
          row_bits[b] = __ldg(reinterpret_cast<const uint4*>(
              args.slot_out + static_cast<int64_t>(slot) * args.hidden + column));
        }
      }
      // Ascending j, skipping unrouted slots: the same additions in the same order as one slot
      // at a time, so the result stays bitwise what it was.
#pragma unroll
      for (int b = 0; b < kSlotBatch; ++b) {
        if (!routed[b]) continue;
        const __nv_bfloat162* pairs = reinterpret_cast<const __nv_bfloat162*>(&row_bits[b]);
#pragma unroll
        for (int i = 0; i < kColumnsPerThread / 2; ++i) {
          const float2 values = __bfloat1622float2(pairs[i]);
          sum[2 * i] += values.x;
          sum[2 * i + 1] += values.y;
        }
      }
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
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(static_cast<unsigned>(blocks), 1, 1);
  config.blockDim = dim3(kCombineThreads, 1, 1);
  config.stream = stream;
  cudaLaunchAttribute overlap{};
  overlap.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  overlap.val.programmaticStreamSerializationAllowed = 1;
  config.attrs = &overlap;
  config.numAttrs = args.after_ramp_kernel ? 1 : 0;
  RAMP_CUDA_TRY(cudaLaunchKernelEx(&config, &combine_slots, args));
  return Status::ok();
}

}  // namespace ramp::cuda
