// Which tile a CTA works on: a tile index taken in order from a launch-wide counter, mapped to
// its task by the static batching paper's mapping (Algorithm 2, via core/task_mapping.h with a
// real warp vote) in producer warp 0, and handed to the CTA's warps, task and all, through a
// small queue in shared memory; then the tile's place inside its task.
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

// Where a CTA's warps learn their next tile: kTileQueueDepth slots, each holding a mapped tile
// (a TaskOfTile; block >= tiles ends the walk) with a full barrier (producer warp 0's one
// arrival) and an empty one (one arrival per warp of the CTA).
class TileQueue {
 public:
  __device__ TileQueue(TaskOfTile* slots, uint64_t* full, uint64_t* empty)
      : slots_(slots), full_(full), empty_(empty) {}
  __device__ TaskOfTile* slot(int i) const { return slots_ + i; }
  __device__ uint64_t* full(int i) const { return full_ + i; }
  __device__ uint64_t* empty(int i) const { return empty_ + i; }

 private:
  TaskOfTile* slots_;
  uint64_t* full_;
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
// value, taken by lane 0 of producer warp 0 (the taker) one tile ahead: at step s warp 0 maps
// the tile taken during step s - 1, publishes it and takes the next. Every warp reads the slots
// in order; a tile index past the last one ends the walk.
// Mapping once per CTA instead of once per warp: each warp's own mapping (a chain of dependent
// TilePrefix and task loads) cost the consumers 2-3k cycles between tiles with the tensor cores
// idle (clock64 timeline, dev/kernel_notes.md session 11); the mapped tile is ready in the slot
// long before the consumers finish the previous tile.
// The counter (TaskMapHeader::next_tile) is 0 when the kernel starts, whoever wrote the plan.
// Every CTA whose first tile exists takes exactly once past the end, so there are exactly
// `tiles` takes in all (tiles - grid real ones and grid past the end, or tiles past the end when
// tiles < grid); the one that got tiles - 1 (tile grid + tiles - 1) is the launch's last and
// resets the counter, so the next launch on the same plan finds 0 as well.
// Example: 5 tiles, grid 4. CTAs 0-3 start on tiles 0-3 and take; the takes return counter 0..3,
// i.e. tiles 4, 5, 6, 7: one CTA gets tile 4, the others 5, 6, 7 (past the end); then the CTA on
// tile 4 takes counter 4 = tile 8 = grid + tiles - 1: the last take, which resets the counter.
template <class Set>
class TileScheduler {
 public:
  __device__ __forceinline__ TileScheduler(const KernelParams& params, const TileQueue& queue)
      : params_(params),
        queue_(queue),
        tiles_(total_tiles(params)),
        publisher_(threadIdx.x < 32),
        taker_(threadIdx.x == 0) {
    if (publisher_) {
      pending_ = static_cast<int32_t>(blockIdx.x);
      publish(0);
    }
  }

  // Warp-collective. False once the walk is over.
  __device__ __forceinline__ bool next(ScheduleStep& step) {
    if (publisher_ && step_ >= 1) publish(step_);
    const int slot = step_ % kTileQueueDepth;
    ptx::mbarrier_wait_parity(queue_.full(slot), static_cast<uint32_t>(step_ / kTileQueueDepth) & 1);
    const TaskOfTile work = *queue_.slot(slot);
    __syncwarp();
    if ((threadIdx.x & 31) == 0) ptx::mbarrier_arrive(queue_.empty(slot));
    ++step_;
    if (work.block >= tiles_) return false;
    step.work = work;
    step.restart = work.task.config != previous_config_;
    previous_config_ = work.task.config;
    return true;
  }

 private:
  // Producer warp 0 (warp-collective): maps the taker's pending tile, writes it as step `step`'s
  // slot, and has the taker take the next one. Once a CTA has published a tile past the end it
  // publishes nothing more (its warps stop reading at that slot).
  __device__ __forceinline__ void publish(int32_t step) {
    const bool ended = __shfl_sync(0xffffffffu, ended_, 0);
    if (ended) return;
    const int32_t tile = __shfl_sync(0xffffffffu, pending_, 0);
    TaskOfTile work{};
    work.block = tile;
    if (tile < tiles_) work = task_of_tile(params_, tile);
    const int slot = step % kTileQueueDepth;
    if (taker_) {
      if (step >= kTileQueueDepth) {
        // Every warp has read the slot's previous tile (step - kTileQueueDepth).
        ptx::mbarrier_wait_parity(queue_.empty(slot),
                                  static_cast<uint32_t>(step / kTileQueueDepth - 1) & 1);
      }
      *queue_.slot(slot) = work;
      ptx::mbarrier_arrive(queue_.full(slot));
      const int32_t grid = static_cast<int32_t>(gridDim.x);
      if (tile < tiles_) {
        pending_ = grid + atomicAdd(&params_.task_map.header->next_tile, 1);
      } else {
        ended_ = true;
        if (step >= 1 && tile == grid + tiles_ - 1) params_.task_map.header->next_tile = 0;
      }
    }
    __syncwarp();
  }

  const KernelParams& params_;
  TileQueue queue_;
  int32_t tiles_;
  bool publisher_;  // producer warp 0: maps and publishes
  bool taker_;      // its lane 0: takes from the counter, writes the slots
  bool ended_ = false;  // taker: the last tile published was past the end
  int32_t pending_ = 0;  // taker: the tile to publish next
  int32_t step_ = 0;
  int32_t previous_config_ = -1;
};

}  // namespace ramp::cuda::detail
