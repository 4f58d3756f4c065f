// Which tile a CTA works on: a tile index taken in order from a launch-wide counter and handed
// to the CTA's warps through a small queue in shared memory, mapped to its task by the static
// batching paper's mapping (Algorithm 2, via core/task_mapping.h with a real warp vote; GEMM2's
// consumers read producer warp 0's mapping instead, see TileScheduler), then the tile's place
// inside its task.
#pragma once

#include "core/task_mapping.h"
#include "core/tile_config.h"
#include "cuda/static_batching_common.cuh"

namespace ramp::cuda::detail {

struct WarpBallot {
  __device__ __forceinline__ uint32_t operator()(const int32_t* entries, int32_t count,
                                                 int32_t block) const {
    const int lane = static_cast<int>(threadIdx.x & 31);
    return __ballot_sync(0xffffffffu, lane < count && entries[lane] <= block);
  }
};

// Tiles of the launch: read on the device (written by the routing pass or copied from a host
// plan).
__device__ __forceinline__ int32_t total_tiles(const KernelParams& params) {
  return params.task_map.header->total_tiles;
}

// 32 bytes, 16-byte aligned: a tile queue slot holds one and is copied with two 16-byte accesses.
struct alignas(16) TaskOfTile {
  TaskDesc task;
  int32_t task_index;  // position in the task list
  int32_t tile;        // inside the task
  int32_t block;       // the launch-wide tile index (split-K partials and counters use it)
};
static_assert(sizeof(TaskOfTile) == kTileQueueSlotBytes, "a tile queue slot holds one TaskOfTile");

// Warp-collective: all 32 lanes must call it with the same block.
__device__ __forceinline__ TaskOfTile task_of_tile(const KernelParams& params, int32_t block) {
  const TaskMapView& map = params.task_map;
  const TaskTile found = map_block_to_task(map.tile_prefix, map.chunk_last,
                                           map.header->num_tasks, block, WarpBallot{});
  return TaskOfTile{map.tasks[found.task], found.task, found.tile, block};
}

// The rows, features and k-blocks one tile covers, for a config known at compile time.
struct TileExtent {
  int32_t first_row;      // sorted position of the tile's row 0 (row_begin + token block start)
  int32_t valid_rows;     // rows of the tile inside the task (the last token block is partial)
  int32_t feature_block;  // which feature_tile-wide block of N
  int32_t k_split;        // which of the config's split_k slices of K
  int32_t first_k_block;  // [first_k_block, first_k_block + k_blocks) of K / 64
  int32_t k_blocks;
  // The launch-wide index of split 0 of this output tile (split-K's arrival counter); split j
  // of it is tile output_tile + j * split_stride.
  int32_t output_tile;
  int32_t split_stride;
};

template <int kConfig>
__device__ __forceinline__ TileExtent tile_extent(const KernelParams& params,
                                                  const TaskOfTile& work) {
  using Traits = ConfigTraits<kConfig>;
  const TileConfig cfg = Traits::kTile;
  const int32_t token_blocks = cfg.token_blocks(work.task.row_count);
  const int32_t feature_blocks = cfg.feature_blocks(params.out_features);
  const TileCoord coord = tile_coord(work.tile, token_blocks, feature_blocks, Traits::kGroupM);
  const int32_t row_offset = coord.token_block * Traits::kTokenTile;
  const int32_t k_blocks = params.in_features / kKTile / Traits::kSplitK;
  return TileExtent{work.task.row_begin + row_offset,
                    min_i32(Traits::kTokenTile, work.task.row_count - row_offset),
                    coord.feature_block,
                    coord.k_split,
                    coord.k_split * k_blocks,
                    k_blocks,
                    work.block - coord.k_split * token_blocks * feature_blocks,
                    token_blocks * feature_blocks};
}

// One step of a CTA's walk: a tile this CTA computes, and what the ring must do before it.
struct ScheduleStep {
  TaskOfTile work;
  bool restart;  // the ring starts again at slot 0 (config change)
};

// Where a CTA's warps learn their next tile: kTileQueueDepth slots. A slot holds the tile index
// (full barrier: the taker's one arrival), which warps map to its task themselves, and, in GEMM2
// launches, the mapped tile (a TaskOfTile; mapped barrier: producer warp 0's one arrival once it
// has mapped it), which the consumer warps read instead (see TileScheduler). The empty barrier
// takes one arrival per warp of the CTA once it has read the slot.
class TileQueue {
 public:
  __device__ TileQueue(int32_t* tiles, TaskOfTile* mapped, uint64_t* full, uint64_t* mapped_full,
                       uint64_t* empty)
      : tiles_(tiles), mapped_(mapped), full_(full), mapped_full_(mapped_full), empty_(empty) {}
  __device__ volatile int32_t* tile(int i) const { return tiles_ + i; }
  __device__ TaskOfTile* mapped(int i) const { return mapped_ + i; }
  __device__ uint64_t* full(int i) const { return full_ + i; }
  __device__ uint64_t* mapped_full(int i) const { return mapped_full_ + i; }
  __device__ uint64_t* empty(int i) const { return empty_ + i; }

 private:
  int32_t* tiles_;
  TaskOfTile* mapped_;
  uint64_t* full_;
  uint64_t* mapped_full_;
  uint64_t* empty_;
};

// Tiles are taken in index order, so tile i starts about when tile i - grid ends, whatever the
// earlier tiles of each CTA cost. Tiles next to each other in a task share a weight tile
// (tile_coord's groups): taken in order they run at the same time and the weight tile comes
// from DRAM once. The fixed round-robin walk this replaces (tiles b, b + grid, ...) let CTAs
// with cheaper tiles run ahead, and a weight tile's readers then came far apart in time:
// deepseek-v2-lite's GEMM1 at T = 2048 read 1.76x its weights from DRAM (0.48 ms; taken in
// order 1.06x, 0.34 ms; dev/kernel_notes.md, session 10).
//
// CTA b's first tile is b (no atomic on the way in); later ones are grid + the counter's old
// value, taken by producer thread 0 (the taker) one tile ahead: at step s it publishes the
// tile it took during step s - 1 and takes the next. Every warp reads the slots in order; a
// tile index past the last one ends the walk.
// Who maps a tile to its task (a chain of dependent TilePrefix and task loads, ~2k cycles): every
// producer warp for itself, right after the taker publishes. The consumers map for themselves
// too, except in GEMM2 launches (kRouterWeighted), where producer warp 0 hands them its mapping
// through the mapped slot. Measured with clock64 timelines (dev/kernel_notes.md session 11):
// GEMM2's tiles are short (K = 768..1408 for the small-expert models) and stream both operands
// by TMA; there the consumers' own mapping cost 2-3k cycles between tiles with the tensor cores
// idle, and reading warp 0's mapping instead made GEMM2 7% faster (qwen3-30b-a3b, T = 8192). In
// the launches whose token rows are gathered by cp.async (GEMM1, the grouped GEMM) the same
// hand-off made the mainloop 25% slower (46k -> 58k cycles per seed004 tile, the producer's
// stage issue slowing down), for a reason not yet understood, so there the consumers keep
// mapping themselves.
// The counter (TaskMapHeader::next_tile) is 0 when the kernel starts, whoever wrote the plan.
// Every CTA whose first tile exists takes exactly once past the end, so there are exactly
// `tiles` takes in all (tiles - grid real ones and grid past the end, or tiles past the end when
// tiles < grid); the one that got tiles - 1 (tile grid + tiles - 1) is the launch's last and
// resets the counter, so the next launch on the same plan finds 0 as well.
// Example: 5 tiles, grid 4. CTAs 0-3 start on tiles 0-3 and take; the takes return counter 0..3,
// i.e. tiles 4, 5, 6, 7: one CTA gets tile 4, the others 5, 6, 7 (past the end); then the CTA on
// tile 4 takes counter 4 = tile 8 = grid + tiles - 1: the last take, which resets the counter.
template <class Set, GemmEpilogue kEpilogue>
class TileScheduler {
  static constexpr bool kConsumersReadMapping = kEpilogue == GemmEpilogue::kRouterWeighted;

 public:
  __device__ __forceinline__ TileScheduler(const KernelParams& params, const TileQueue& queue)
      : params_(params),
        queue_(queue),
        tiles_(total_tiles(params)),
        producer_(threadIdx.x < kThreadsPerWarpgroup),
        mapper_(threadIdx.x < 32),
        taker_(threadIdx.x == 0) {
    if (taker_) {
      pending_ = static_cast<int32_t>(blockIdx.x);
      publish(0);
    }
  }

  // Warp-collective. False once the walk is over.
  __device__ __forceinline__ bool next(ScheduleStep& step) {
    const int slot = step_ % kTileQueueDepth;
    const uint32_t parity = static_cast<uint32_t>(step_ / kTileQueueDepth) & 1;
    TaskOfTile work{};
    if (producer_ || !kConsumersReadMapping) {
      if (taker_ && !ended_ && step_ >= 1) publish(step_);
      ptx::mbarrier_wait_parity(queue_.full(slot), parity);
      const int32_t tile = *queue_.tile(slot);
      __syncwarp();
      if ((threadIdx.x & 31) == 0) ptx::mbarrier_arrive(queue_.empty(slot));
      work.block = tile;
      if (tile < tiles_) work = task_of_tile(params_, tile);
      if (kConsumersReadMapping && mapper_) {
        if (taker_) {
          *queue_.mapped(slot) = work;
          ptx::mbarrier_arrive(queue_.mapped_full(slot));
        }
        __syncwarp();
      }
    } else {  // a consumer warp of a GEMM2 launch
      ptx::mbarrier_wait_parity(queue_.mapped_full(slot), parity);
      work = *queue_.mapped(slot);
      __syncwarp();
      if ((threadIdx.x & 31) == 0) ptx::mbarrier_arrive(queue_.empty(slot));
    }
    ++step_;
    if (work.block >= tiles_) return false;
    step.work = work;
    step.restart = work.task.config != previous_config_;
    previous_config_ = work.task.config;
    return true;
  }

 private:
  // Taker only: writes pending_ as step `step`'s tile, then takes the next one.
  __device__ __forceinline__ void publish(int32_t step) {
    const int slot = step % kTileQueueDepth;
    if (step >= kTileQueueDepth) {
      // Every warp has read the slot's previous tile (step - kTileQueueDepth), the consumers
      // its mapped copy as well.
      ptx::mbarrier_wait_parity(queue_.empty(slot),
                                static_cast<uint32_t>(step / kTileQueueDepth - 1) & 1);
    }
    *queue_.tile(slot) = pending_;
    ptx::mbarrier_arrive(queue_.full(slot));
    const int32_t grid = static_cast<int32_t>(gridDim.x);
    if (pending_ < tiles_) {
      pending_ = grid + atomicAdd(&params_.task_map.header->next_tile, 1);
    } else {
      ended_ = true;
      if (step >= 1 && pending_ == grid + tiles_ - 1) params_.task_map.header->next_tile = 0;
    }
  }

  const KernelParams& params_;
  TileQueue queue_;
  int32_t tiles_;
  bool producer_;  // producer warpgroup: maps the tile index itself (so do the consumers,
                   // except in GEMM2 launches)
  bool mapper_;    // producer warp 0: in GEMM2 launches its mapping is also the consumers'
  bool taker_;     // producer thread 0: takes from the counter, writes the slots
  bool ended_ = false;
  int32_t pending_ = 0;  // taker: the tile to publish next
  int32_t step_ = 0;
  int32_t previous_config_ = -1;
};

}  // namespace ramp::cuda::detail
