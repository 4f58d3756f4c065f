// Split-K: a config with split_k = s cuts each output tile's K into s slices, each its own tile
// of the launch (tile_coord puts the slice outermost, so slice j of every output tile comes
// after all of slice j - 1). Every slice ends here with its fp32 accumulators:
//   1. each consumer warpgroup stores its fragment into split_partials[tile] (fragment order,
//      register-major so a warp's stores are coalesced) and fences it;
//   2. one thread counts the warpgroup's arrival on split_counters[2 * output_tile + wg];
//   3. the arrival that completes the count -- whichever slice it is -- reads the s partials
//      back in slice order 0, 1, ..., s - 1 and runs the epilogue on the sum; the others are
//      done. The sum's rounding therefore never depends on which slice finished last (same
//      input, same bits). The completing arrival resets the counter to 0.
// Nothing waits on another CTA, so no order of residency can deadlock. The launcher zeroes
// the counters before the kernel (a workspace may hold anything).
#pragma once

#include "cuda/ptx/named_barrier.h"
#include "cuda/static_batching_common.cuh"
#include "cuda/static_batching_schedule.cuh"

namespace ramp::cuda::detail {

// Floats of one consumer warpgroup's fragment inside a partial tile.
template <int kConfig>
inline constexpr int kSplitFragmentFloats = ConfigTraits<kConfig>::kAccumulators * kThreadsPerWarpgroup;

// True when this warpgroup holds the complete sum in `acc` and must run the epilogue.
// `verdict` is the warpgroup's word in shared memory (LaunchTraits::kSplitVerdicts).
template <int kConfig>
__device__ __forceinline__ bool reduce_split_k(const KernelParams& params,
                                               const TileExtent& extent, int32_t block,
                                               typename ConfigTraits<kConfig>::Accumulators& acc,
                                               int consumer_wg, volatile int32_t* verdict) {
  using Traits = ConfigTraits<kConfig>;
  if constexpr (Traits::kSplitK == 1) {
    return true;
  } else {
    const int thread = static_cast<int>(threadIdx.x & 127);
    const uint32_t barrier_id = 1 + static_cast<uint32_t>(consumer_wg);
    const int64_t fragment_offset =
        static_cast<int64_t>(consumer_wg) * kSplitFragmentFloats<kConfig> + thread;
    float* mine = params.split_partials +
                  static_cast<int64_t>(block) * params.split_tile_floats + fragment_offset;
#pragma unroll
    for (int r = 0; r < Traits::kRowBlocks; ++r) {
#pragma unroll
      for (int i = 0; i < Traits::kAccumulatorsPerBlock; ++i) {
        __stcg(mine + (r * Traits::kAccumulatorsPerBlock + i) * kThreadsPerWarpgroup, acc[r][i]);
      }
    }
    __threadfence();
    ptx::named_barrier_sync(barrier_id, kThreadsPerWarpgroup);
    if (thread == 0) {
      int32_t* counter = params.split_counters + 2 * static_cast<int64_t>(extent.output_tile) +
                         consumer_wg;
      const int32_t arrived = atomicAdd(counter, 1) + 1;
      const bool complete = arrived == Traits::kSplitK;
      if (complete) atomicExch(counter, 0);
      *verdict = complete ? 1 : 0;
    }
    ptx::named_barrier_sync(barrier_id, kThreadsPerWarpgroup);
    if (*verdict == 0) return false;
    __threadfence();
#pragma unroll 1
    for (int slice = 0; slice < Traits::kSplitK; ++slice) {
      const float* partial =
          params.split_partials +
          static_cast<int64_t>(extent.output_tile + slice * extent.split_stride) *
              params.split_tile_floats +
          fragment_offset;
#pragma unroll
      for (int r = 0; r < Traits::kRowBlocks; ++r) {
#pragma unroll
        for (int i = 0; i < Traits::kAccumulatorsPerBlock; ++i) {
          const float value =
              __ldcg(partial + (r * Traits::kAccumulatorsPerBlock + i) * kThreadsPerWarpgroup);
          acc[r][i] = slice == 0 ? value : acc[r][i] + value;
        }
      }
    }
    // No barrier needed before the verdict word is rewritten: thread 0 only writes it after the
    // next split tile's first barrier, which every thread reaches after reading it here.
    return true;
  }
}

}  // namespace ramp::cuda::detail
