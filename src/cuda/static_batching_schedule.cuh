// Which tile a CTA works on: the static batching paper's mapping (Algorithm 2, via
// core/task_mapping.h with a real warp vote), then the tile's place inside its task.
//
// Every warp maps its own tiles (no shared-memory broadcast, no block barrier): TilePrefix is
// small and stays in L1, and the producer can run ahead of the consumers across tiles.
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

// Persistent grid: CTA b works on tiles b, b + grid, b + 2 grid, ... < total_tiles, where
// total_tiles is read on the device (written by the routing pass or copied from a host plan).
__device__ __forceinline__ int32_t total_tiles(const KernelParams& params) {
  return params.task_map.header->total_tiles;
}

struct TaskOfTile {
  TaskDesc task;
  int32_t task_index;  // position in the task list
  int32_t tile;        // inside the task
  int32_t block;       // the launch-wide tile index (split-K partials and counters use it)
};

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

}  // namespace ramp::cuda::detail

namespace ramp::cuda::detail {

// Clusters of two take units: unit u is tiles 2u (rank 0) and 2u + 1 (rank 1), u stepping by
// the number of clusters. Both CTAs (every warp) classify a unit the same way, so they agree
// on multicast without communicating.
struct UnitWork {
  TaskOfTile work;  // this CTA's tile
  bool has_tile;    // false for rank 1 of a last, odd unit
  bool multicast;   // both tiles share their weight tile: one multicast load per stage
};

// Warp-collective.
template <class Set>
__device__ __forceinline__ UnitWork unit_work(const KernelParams& params, int32_t unit,
                                              uint32_t rank, int32_t tiles) {
  const int32_t first = unit * kClusterSize;
  UnitWork result{};
  result.has_tile = first + static_cast<int32_t>(rank) < tiles;
  result.multicast = false;
  if (!result.has_tile) return result;
  result.work = task_of_tile(params, first + static_cast<int32_t>(rank));
  if (kMulticastWeights && first + 1 < tiles && config_multicasts<Set>(result.work.task.config)) {
    const TaskOfTile other = task_of_tile(params, first + 1 - static_cast<int32_t>(rank));
    if (other.task_index == result.work.task_index) {
      dispatch_config<Set>(result.work.task.config, [&](auto config) {
        constexpr int kConfig = decltype(config)::value;
        if constexpr (ConfigTraits<kConfig>::kMulticast) {
          result.multicast = tile_extent<kConfig>(params, result.work).feature_block ==
                             tile_extent<kConfig>(params, other).feature_block;
        }
      });
    }
  }
  return result;
}

// One step of a CTA's walk: a tile this CTA computes, and what the ring must do before it.
struct ScheduleStep {
  TaskOfTile work;
  bool multicast;        // the tile's weight stages are multicast within the pair
  bool enter_multicast;  // first unit of a multicast stretch: the pair's producers meet first
  bool restart;          // the ring starts again at slot 0 (config change or enter_multicast)
};

// The persistent walk over units, written once so that the producer and the consumers of a CTA
// cannot disagree on the tile order or on where the ring restarts. Every warp walks it on its
// own (see the top of this file).
template <class Set>
class TileScheduler {
 public:
  __device__ __forceinline__ TileScheduler(const KernelParams& params, uint32_t rank)
      : params_(params),
        rank_(rank),
        tiles_(total_tiles(params)),
        units_(ceil_div(tiles_, kClusterSize)),
        clusters_(static_cast<int32_t>(gridDim.x) / kClusterSize),
        unit_(static_cast<int32_t>(blockIdx.x) / kClusterSize) {}

  // Warp-collective. False once the walk is over. Units without a tile for this CTA are passed
  // over, but still end a multicast stretch.
  __device__ __forceinline__ bool next(ScheduleStep& step) {
    for (; unit_ < units_; unit_ += clusters_) {
      const UnitWork unit = unit_work<Set>(params_, unit_, rank_, tiles_);
      const bool enter_multicast = unit.multicast && !previous_multicast_;
      previous_multicast_ = unit.multicast;
      if (!unit.has_tile) continue;
      step.work = unit.work;
      step.multicast = unit.multicast;
      step.enter_multicast = enter_multicast;
      step.restart = unit.work.task.config != previous_config_ || enter_multicast;
      previous_config_ = unit.work.task.config;
      unit_ += clusters_;
      return true;
    }
    return false;
  }

 private:
  const KernelParams& params_;
  uint32_t rank_;
  int32_t tiles_;
  int32_t units_;
  int32_t clusters_;
  int32_t unit_;
  int32_t previous_config_ = -1;
  bool previous_multicast_ = false;
};

}  // namespace ramp::cuda::detail
