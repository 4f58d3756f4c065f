// Consumer warpgroups: wgmma over the stage ring, then (after split-K's reduction) the epilogue.
//
// Both operands are K-major, 128-byte swizzled, so one smem layout serves both orientations:
//   normal : A = token tile (this warpgroup's 64 or 128 rows, one wgmma per 64-row block),
//            B = weight tile (N = feature_tile)
//   swapped: A = weight tile (this warpgroup's 64 rows), B = token tile (N = token_tile)
// Stage s is released (empty barrier, one arrival per warp) as soon as the wgmma group that
// read it has retired, which wait_group<1> after the next group's commit guarantees.
#pragma once

#include "cuda/ptx/bulk_copy.h"
#include "cuda/ptx/fence.h"
#include "cuda/ptx/mbarrier.h"
#include "cuda/ptx/wgmma.h"
#include "cuda/static_batching_common.cuh"
#include "cuda/static_batching_epilogue.cuh"
#include "cuda/static_batching_schedule.cuh"
#include "cuda/static_batching_split_k.cuh"

namespace ramp::cuda::detail {

template <int kConfig, GemmEpilogue kEpilogue>
__device__ __forceinline__ void consume_tile(const KernelParams& params, uint8_t* ring,
                                             const StageBarriers& barriers,
                                             ConsumerCursor& cursor, const TaskOfTile& work,
                                             uint8_t* staging, int consumer_wg,
                                             volatile int32_t* split_verdict) {
  using Traits = ConfigTraits<kConfig>;
  using Mma = ptx::Wgmma<Traits::kMmaN>;
  constexpr uint32_t kRowBlockBytes = 64 * kRowBytes;

  const TileExtent extent = tile_extent<kConfig>(params, work);
  const bool lane_leader = (threadIdx.x & 31) == 0;
  const uint32_t ring_base = ptx::smem_address(ring);
  // One arrival per consumer warp once its wgmma reads of the stage are done.
  auto release = [&](int stage) {
    if (lane_leader) ptx::mbarrier_arrive(barriers.empty(stage));
  };

  // The epilogue's row weights and destinations, requested now so that their dependent loads
  // complete under the mainloop.
  // GEMM1's wide normal tiles store sorted-row boxes: no per-row destinations to load.
  constexpr bool kStoresBoxes =
      kEpilogue == GemmEpilogue::kSiluGateUp && !Traits::kSwapped && kSiluStoresByBox<kConfig>;
  StagedRows<kConfig> staged_rows{};
  SwappedTokens<kConfig> swapped_tokens{};
  if constexpr (Traits::kSwapped) {
    swapped_tokens = load_swapped_tokens<kConfig, kEpilogue>(params, extent);
  } else if constexpr (!kStoresBoxes) {
    if (params.bulk_stores) {
      staged_rows = load_staged_rows<kConfig, kEpilogue>(params, extent, consumer_wg);
    }
  }

  typename Traits::Accumulators acc;
#pragma unroll
  for (int r = 0; r < Traits::kRowBlocks; ++r) {
#pragma unroll
    for (int i = 0; i < Traits::kAccumulatorsPerBlock; ++i) acc[r][i] = 0.0f;
  }

  int previous_stage = -1;
  for (int k_block = 0; k_block < extent.k_blocks; ++k_block) {
    cursor.wait_full(barriers);
    // cp.async token rows arrive through the generic proxy; wgmma reads through the async one.
    if constexpr (!kTokenRowsByTma) ptx::fence_proxy_async_shared();
    const uint32_t stage_base = stage_address<kConfig>(ring_base, cursor.stage);
    const uint32_t weight_base = stage_base;
    const uint32_t token_base = stage_base + Traits::kWeightStageBytes;
    // This warpgroup's MMA rows: normal -> its token rows, swapped -> its weight rows.
    const uint32_t a_base = (Traits::kSwapped ? weight_base : token_base) +
                            static_cast<uint32_t>(consumer_wg * Traits::kRowBlocks) * kRowBlockBytes;
    const uint32_t b_base = Traits::kSwapped ? token_base : weight_base;
    const uint64_t desc_b = ptx::make_smem_desc_k_major_swizzle128(b_base);

#pragma unroll
    for (int r = 0; r < Traits::kRowBlocks; ++r) {
#pragma unroll
      for (int i = 0; i < Traits::kAccumulatorsPerBlock; ++i) ptx::wgmma_fence_operand(acc[r][i]);
    }
    ptx::wgmma_fence();
#pragma unroll
    for (int r = 0; r < Traits::kRowBlocks; ++r) {
      const uint64_t desc_a =
          ptx::make_smem_desc_k_major_swizzle128(a_base + static_cast<uint32_t>(r) * kRowBlockBytes);
#pragma unroll
      for (int k16 = 0; k16 < kKTile / 16; ++k16) {
        // +32 bytes per 16 elements of k, in units of 16 bytes in the descriptor's address field.
        Mma::mma(acc[r], desc_a + 2 * k16, desc_b + 2 * k16, true);
      }
    }
    ptx::wgmma_commit_group();
#pragma unroll
    for (int r = 0; r < Traits::kRowBlocks; ++r) {
#pragma unroll
      for (int i = 0; i < Traits::kAccumulatorsPerBlock; ++i) ptx::wgmma_fence_operand(acc[r][i]);
    }
    ptx::wgmma_wait_group<1>();
    if (previous_stage >= 0) release(previous_stage);
    previous_stage = cursor.stage;
    cursor.advance(Traits::kStages);
  }
  ptx::wgmma_wait_group<0>();
#pragma unroll
  for (int r = 0; r < Traits::kRowBlocks; ++r) {
#pragma unroll
    for (int i = 0; i < Traits::kAccumulatorsPerBlock; ++i) ptx::wgmma_fence_operand(acc[r][i]);
  }
  if (previous_stage >= 0) release(previous_stage);

  if (!reduce_split_k<kConfig>(params, extent, work.block, acc, consumer_wg, split_verdict)) {
    return;  // another slice of this output tile completes it
  }
  if constexpr (Traits::kSwapped) {
    store_tile_swapped<kConfig, kEpilogue>(params, extent, acc, swapped_tokens, consumer_wg);
  } else {
    if (params.bulk_stores) {
      if constexpr (kStoresBoxes) {
        store_tile_silu_boxes<kConfig>(params, extent, acc, staging, consumer_wg);
      } else {
        store_tile_normal_staged<kConfig, kEpilogue>(params, extent, acc, staged_rows, staging,
                                                     consumer_wg);
      }
    } else {
      store_tile_normal<kConfig, kEpilogue>(params, extent, acc, consumer_wg);
    }
  }
}

template <class Set, GemmEpilogue kEpilogue>
__device__ void consumer_loop(const KernelParams& params, uint8_t* ring,
                              const StageBarriers& barriers, uint8_t* staging,
                              int consumer_wg, volatile int32_t* split_verdict,
                              const TileQueue& queue) {
  ConsumerCursor cursor;
  TileScheduler<Set, kEpilogue> schedule(params, queue);
  ScheduleStep step;
  while (schedule.next(step)) {
    // Mirrors the producer's drain: the ring starts again at slot 0.
    if (step.restart) cursor.restart();
    dispatch_config<Set>(step.work.task.config, [&](auto config) {
      consume_tile<decltype(config)::value, kEpilogue>(params, ring, barriers, cursor, step.work,
                                                       staging, consumer_wg,
                                                       split_verdict);
    });
  }
  // Tensor stores (GEMM1) still in flight must finish before the CTA (and its shared memory) ends.
  ptx::bulk_wait_group<0>();
}

}  // namespace ramp::cuda::detail
