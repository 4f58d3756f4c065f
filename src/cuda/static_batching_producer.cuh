// Producer warpgroup: fills the stage ring. Per k-block of a tile, one elected thread sends
// the weight tile by TMA (box 64 k x feature_tile rows, 128-byte swizzle; GEMM1 uses the 5-D
// map that interleaves gate and up rows in blocks of 8), and all 128 threads gather the token
// rows with 16-byte cp.async into the same swizzled layout, completing on the stage's full
// barrier through cp.async.mbarrier.arrive.noinc. GEMM2's token rows are consecutive (sorted
// order): tiles of 64k rows get them as TMA row boxes from the elected thread instead.
#pragma once

#include "cuda/ptx/bulk_copy.h"
#include "cuda/ptx/cp_async.h"
#include "cuda/ptx/mbarrier.h"
#include "cuda/ptx/tma.h"
#include "cuda/static_batching_common.cuh"
#include "cuda/static_batching_schedule.cuh"

namespace ramp::cuda::detail {

// A producer warp's 32 arrivals on a full barrier, made by its lane 0 once every lane of the
// warp has passed the stage's acquire (kFullBarrierArrivals says why every thread must count).
__device__ __forceinline__ void arrive_for_warp(uint64_t* full) {
  __syncwarp();
  if ((threadIdx.x & 31) == 0) ptx::mbarrier_arrive_count(full, 32);
}

// Row of `a` that tile row `row` reads: the token of its slot (gather), or the sorted row itself
// for GEMM2, whose intermediate is already in sorted order.
template <GemmEpilogue kEpilogue>
__device__ __forceinline__ int32_t a_row_of(const KernelParams& params, int32_t sorted_row) {
  if constexpr (kEpilogue == GemmEpilogue::kRouterWeighted) {
    return sorted_row;
  } else {
    return token_of_slot(params.routing.sorted_slots[sorted_row], params.routing.top_k);
  }
}

// The tile's weight rows for one k-block, by TMA into the stage's weight part.
template <int kConfig, GemmEpilogue kEpilogue, bool kStreamsWeights>
__device__ __forceinline__ void issue_weight_tile(const KernelParams& params, uint32_t stage_base,
                                                  uint64_t* full, const TaskOfTile& work,
                                                  const TileExtent& extent, int32_t k_begin) {
  using Traits = ConfigTraits<kConfig>;
  const CUtensorMap* map = &params.weight_maps[Traits::kWeightMap];
  // In a launch that streams its weights (dispatch::streams_weights, a template parameter so
  // that other launches run code without it), the weight tile of a task with one token block has
  // one reader: its lines are dead once read, so they are marked to leave L2 first, which keeps
  // room for what is read again (presumably the intermediate GEMM1 writes for GEMM2 and the slot
  // rows GEMM2 writes for the combine; not measured). Tiles with more readers keep the default
  // policy: their later readers (the next tiles in order) must find the lines in L2. Hinting
  // every weight tile lost up to 21% where tiles have several readers
  // (bench/results/h100-2026-11-23h-ab-weights-evict-first-all.json).
  const bool single_reader =
      kStreamsWeights && work.task.row_count <= Traits::kTokenTile;  // one token block
  if constexpr (kEpilogue == GemmEpilogue::kSiluGateUp) {
    // dims (k, row-in-8, gate/up, 8-row block, expert): feature block f holds intermediate
    // columns [f F/2, (f+1) F/2), i.e. 8-row blocks from f F/16 on.
    const int32_t block = extent.feature_block * (Traits::kFeatureTile / 16);
    if (single_reader) {
      ptx::tma_load_5d_hinted(stage_base, map, full, k_begin, 0, 0, block, work.task.expert,
                              ptx::l2_policy_evict_first());
    } else {
      ptx::tma_load_5d(stage_base, map, full, k_begin, 0, 0, block, work.task.expert);
    }
  } else {
    const int32_t row = extent.feature_block * Traits::kFeatureTile;
    if (single_reader) {
      ptx::tma_load_3d_hinted(stage_base, map, full, k_begin, row, work.task.expert,
                              ptx::l2_policy_evict_first());
    } else {
      ptx::tma_load_3d(stage_base, map, full, k_begin, row, work.task.expert);
    }
  }
}

// TMA token rows: thread t copies tile row t (and t + 128, ... for taller tiles). Rows past the
// task's end are not loaded: their MMA rows/columns hold stale values whose outputs are never
// stored.
template <int kConfig, GemmEpilogue kEpilogue, bool kStreamsWeights>
__device__ __forceinline__ void produce_tile_tma_rows(const KernelParams& params, uint8_t* ring,
                                                      const StageBarriers& barriers,
                                                      ProducerCursor& cursor,
                                                      const TaskOfTile& work) {
  using Traits = ConfigTraits<kConfig>;
  static_assert(Traits::kTokenTile <= kThreadsPerWarpgroup, "one row per producer thread");
  const TileExtent extent = tile_extent<kConfig>(params, work);
  const int thread = static_cast<int>(threadIdx.x);  // producer warpgroup is threads 0..127
  const bool loads_row = thread < extent.valid_rows;
  const int32_t a_row = loads_row ? a_row_of<kEpilogue>(params, extent.first_row + thread) : 0;
  const uint32_t stage_bytes =
      Traits::kWeightStageBytes + static_cast<uint32_t>(extent.valid_rows) * kRowBytes;

  const int k_end = extent.first_k_block + extent.k_blocks;
  for (int k_block = extent.first_k_block; k_block < k_end; ++k_block) {
    cursor.acquire(barriers);
    uint64_t* full = barriers.full(cursor.stage);
    const uint32_t stage_base = stage_address<kConfig>(ptx::smem_address(ring), cursor.stage);
    if (thread == 0) {
      ptx::mbarrier_arrive_expect_tx(full, stage_bytes);
      issue_weight_tile<kConfig, kEpilogue, kStreamsWeights>(params, stage_base, full, work,
                                                             extent, k_block * kKTile);
    }
    if (loads_row) {
      ptx::tma_load_2d(stage_base + Traits::kWeightStageBytes + thread * kRowBytes,
                       &params.token_map, full, k_block * kKTile, a_row);
    }
    arrive_for_warp(full);
    cursor.filled(Traits::kStages);
  }
}

// Where a producer thread's gathered rows start: 64-bit pointers for up to 8 rows per thread
// (tiles of <= 128 rows; the address of a k-block is one add), 32-bit row indices beyond
// (256-row tiles: 16 pointers would not fit the producer's 64 registers; each k-block then
// pays a multiply per row). Null / -1: the row is past the task's end.
template <int kRows, bool kCompact = (kRows > 8)>
struct GatheredRows;
template <int kRows>
struct GatheredRows<kRows, false> {
  const __nv_bfloat16* start[kRows];
  __device__ void set(int j, const KernelParams& params, int chunk, int32_t a_row) {
    start[j] = a_row < 0 ? nullptr : params.a + a_row * params.a_row_stride + chunk * 8;
  }
  __device__ bool past_end(int j) const { return start[j] == nullptr; }
  __device__ const __nv_bfloat16* at(int j, const KernelParams&, int, int k_block) const {
    return start[j] + k_block * kKTile;
  }
};
template <int kRows>
struct GatheredRows<kRows, true> {
  int32_t a_row[kRows];
  __device__ void set(int j, const KernelParams&, int, int32_t row) { a_row[j] = row; }
  __device__ bool past_end(int j) const { return a_row[j] < 0; }
  __device__ const __nv_bfloat16* at(int j, const KernelParams& params, int chunk,
                                     int k_block) const {
    return params.a + a_row[j] * params.a_row_stride + chunk * 8 + k_block * kKTile;
  }
};

// cp.async token rows: threads 8r'..8r'+7 copy the 8 chunks of a row (coalesced 128-byte row
// reads); rows step by 16. Completion through cp.async.mbarrier.arrive.noinc.
template <int kConfig, GemmEpilogue kEpilogue, bool kStreamsWeights>
__device__ __forceinline__ void produce_tile_cp_async_rows(const KernelParams& params,
                                                           uint8_t* ring,
                                                           const StageBarriers& barriers,
                                                           ProducerCursor& cursor,
                                                           const TaskOfTile& work) {
  using Traits = ConfigTraits<kConfig>;
  constexpr int kRowStep = kThreadsPerWarpgroup / 8;
  constexpr int kRowsPerThread = (Traits::kTokenTile + kRowStep - 1) / kRowStep;

  const TileExtent extent = tile_extent<kConfig>(params, work);
  const int thread = static_cast<int>(threadIdx.x);
  const int chunk = thread & 7;
  const int first_row_of_thread = thread >> 3;

  GatheredRows<kRowsPerThread> rows;
#pragma unroll
  for (int j = 0; j < kRowsPerThread; ++j) {
    const int row = first_row_of_thread + j * kRowStep;
    rows.set(j, params, chunk,
             row < extent.valid_rows ? a_row_of<kEpilogue>(params, extent.first_row + row) : -1);
  }

  const int k_end = extent.first_k_block + extent.k_blocks;
  for (int k_block = extent.first_k_block; k_block < k_end; ++k_block) {
    cursor.acquire(barriers);
    uint64_t* full = barriers.full(cursor.stage);
    const uint32_t stage_base = stage_address<kConfig>(ptx::smem_address(ring), cursor.stage);
    if (thread == 0) {
      ptx::mbarrier_arrive_expect_tx(full, Traits::kWeightStageBytes);
      issue_weight_tile<kConfig, kEpilogue, kStreamsWeights>(params, stage_base, full, work,
                                                             extent, k_block * kKTile);
    }
    const uint32_t token_base = stage_base + Traits::kWeightStageBytes;
#pragma unroll
    for (int j = 0; j < kRowsPerThread; ++j) {
      const int row = first_row_of_thread + j * kRowStep;
      if (row < Traits::kTokenTile) {
        // Rows past the task's end are zero-filled (their source is never read).
        const bool past_end = rows.past_end(j);
        ptx::cp_async_16(token_base + swizzled_chunk_offset(row, chunk),
                         past_end ? params.a : rows.at(j, params, chunk, k_block), past_end);
      }
    }
    ptx::cp_async_mbarrier_arrive_noinc(full);
    cursor.filled(Traits::kStages);
  }
}

// Consecutive token rows (GEMM2: the intermediate is in sorted order) in boxes of 64 rows:
// per k-block the elected thread sends the weight box and ceil(valid rows / 64) row boxes; every
// producer warp arrives for its threads (arrive_for_warp), so all cursors stay in step with the
// barriers for a later cp.async tile of the launch.
// Rows of the last box past the task's end belong to the next task (or are zero-filled past
// the tensor's end); boxes wholly past it are not loaded and hold stale values. Either way
// their MMA rows/columns are computed and never stored.
// Measured on the H100 (ramp sweep, GEMM2 launches): normal 256x128 2x faster than with the
// 2048 per-stage cp.async of its gather, 128x128 1.2x, 128x256 unchanged (dev/kernel_notes.md).
template <int kConfig, GemmEpilogue kEpilogue, bool kStreamsWeights>
__device__ __forceinline__ void produce_tile_row_boxes(const KernelParams& params, uint8_t* ring,
                                                       const StageBarriers& barriers,
                                                       ProducerCursor& cursor,
                                                       const TaskOfTile& work) {
  using Traits = ConfigTraits<kConfig>;
  static_assert(token_rows_by_box(kEpilogue, Traits::kTokenTile));
  static_assert((kRowBoxRows * kRowBytes) % kSwizzleAtomBytes == 0,
                "each row box starts on a swizzle atom, so its rows swizzle as the tile's");
  const TileExtent extent = tile_extent<kConfig>(params, work);
  const int boxes = (extent.valid_rows + kRowBoxRows - 1) / kRowBoxRows;
  const uint32_t stage_bytes =
      Traits::kWeightStageBytes + static_cast<uint32_t>(boxes * kRowBoxRows * kRowBytes);
  const bool elected = threadIdx.x == 0;

  const int k_end = extent.first_k_block + extent.k_blocks;
  for (int k_block = extent.first_k_block; k_block < k_end; ++k_block) {
    cursor.acquire(barriers);
    uint64_t* full = barriers.full(cursor.stage);
    if (elected) {
      const uint32_t stage_base = stage_address<kConfig>(ptx::smem_address(ring), cursor.stage);
      ptx::mbarrier_arrive_expect_tx(full, stage_bytes);
      issue_weight_tile<kConfig, kEpilogue, kStreamsWeights>(params, stage_base, full, work,
                                                             extent, k_block * kKTile);
      const uint32_t token_base = stage_base + Traits::kWeightStageBytes;
      for (int box = 0; box < boxes; ++box) {
        ptx::tma_load_2d(token_base + static_cast<uint32_t>(box * kRowBoxRows * kRowBytes),
                         &params.row_box_map, full, k_block * kKTile,
                         extent.first_row + box * kRowBoxRows);
      }
    }
    arrive_for_warp(full);
    cursor.filled(Traits::kStages);
  }
}

template <int kConfig, GemmEpilogue kEpilogue, bool kStreamsWeights>
__device__ __forceinline__ void produce_tile(const KernelParams& params, uint8_t* ring,
                                             const StageBarriers& barriers,
                                             ProducerCursor& cursor, const TaskOfTile& work) {
  if constexpr (token_rows_by_box(kEpilogue, ConfigTraits<kConfig>::kTokenTile)) {
    produce_tile_row_boxes<kConfig, kEpilogue, kStreamsWeights>(params, ring, barriers, cursor,
                                                                work);
  } else if constexpr (kTokenRowsByTma) {
    produce_tile_tma_rows<kConfig, kEpilogue, kStreamsWeights>(params, ring, barriers, cursor,
                                                               work);
  } else {
    produce_tile_cp_async_rows<kConfig, kEpilogue, kStreamsWeights>(params, ring, barriers,
                                                                    cursor, work);
  }
}

template <class Set, GemmEpilogue kEpilogue, bool kStreamsWeights>
__device__ void producer_loop(const KernelParams& params, uint8_t* ring,
                              const StageBarriers& barriers, const TileQueue& queue) {
  if (threadIdx.x == 0) {
    for (int i = 0; i < kNumWeightMaps; ++i) ptx::tma_prefetch_descriptor(&params.weight_maps[i]);
    if constexpr (kEpilogue == GemmEpilogue::kRouterWeighted) {
      ptx::tma_prefetch_descriptor(&params.row_box_map);
    }
    if constexpr (kTokenRowsByTma) ptx::tma_prefetch_descriptor(&params.token_map);
  }
  ProducerCursor cursor;
  TileScheduler<Set, kEpilogue> schedule(params, queue);
  ScheduleStep step;
  while (schedule.next(step)) {
    if (step.restart) cursor.drain<LaunchTraits<Set>::kMaxStages>(barriers);
    dispatch_config<Set>(step.work.task.config, [&](auto config) {
      produce_tile<decltype(config)::value, kEpilogue, kStreamsWeights>(params, ring, barriers,
                                                                        cursor, step.work);
    });
  }
}

}  // namespace ramp::cuda::detail
