// CTA -> (task, tile) through TilePrefix: the static batching paper's Algorithm 2, extended
// with chunks of 32 entries and a second level for many tasks. One function serves the kernel
// (where `ballot` is a real warp vote) and the CPU backend and tests (where it is emulated bit
// for bit), so the tests check exactly the mapping the GPU runs.
//
// h = number of TilePrefix entries <= block; tile = block - TilePrefix[h-1].
// Example: tile counts 3, 5, 2 -> TilePrefix 3, 8, 10. Block 3: entries <= 3 are {3}, h = 1,
// tile = 3 - 3 = 0 (first tile of task 1). Block 9: h = 2, tile = 9 - 8 = 1.
#pragma once

#include <cstdint>

#include "core/host_device.h"
#include "core/plan_layout.h"

#if !defined(__CUDA_ARCH__)
#include <bit>
#endif

namespace ramp {

// From this many tasks on, the search first finds the 32-chunk through chunk_last (one ballot
// per 1024 tasks) and then ballots once inside it, instead of one ballot per 32 tasks.
inline constexpr int32_t kTwoLevelMappingTasks = 512;

struct TaskTile {
  int32_t task;  // index into the task list (execution order), not the expert id
  int32_t tile;  // tile index inside the task
};

RAMP_HOST_DEVICE RAMP_FORCEINLINE int32_t popcount32(uint32_t mask) {
#if defined(__CUDA_ARCH__)
  return __popc(mask);
#else
  return std::popcount(mask);
#endif
}

// The host's warp vote: bit i is set when lane i holds an entry and entries[i] <= block, exactly
// what __ballot_sync returns when lane i evaluates that predicate.
struct EmulatedBallot {
  RAMP_HOST_DEVICE uint32_t operator()(const int32_t* entries, int32_t count, int32_t block) const {
    uint32_t mask = 0;
    for (int32_t lane = 0; lane < 32; ++lane) {
      const bool at_or_below = lane < count && entries[lane] <= block;
      mask |= static_cast<uint32_t>(at_or_below) << lane;
    }
    return mask;
  }
};

// Number of entries of a non-decreasing array that are <= block, 32 at a time, stopping at
// the first chunk that is not entirely <= block.
template <class Ballot>
RAMP_HOST_DEVICE RAMP_FORCEINLINE int32_t count_at_or_below(const int32_t* entries, int32_t count,
                                                            int32_t block, const Ballot& ballot) {
  int32_t below = 0;
  for (int32_t begin = 0; begin < count; begin += 32) {
    const int32_t in_chunk = popcount32(ballot(entries + begin, min_i32(32, count - begin), block));
    below += in_chunk;
    if (in_chunk < 32) break;
  }
  return below;
}

// Precondition: 0 <= block < total_tiles. All 32 lanes of a warp must call it with the same
// block (the loop trip counts are then warp-uniform, as __ballot_sync requires).
template <class Ballot>
RAMP_HOST_DEVICE RAMP_FORCEINLINE TaskTile map_block_to_task(const int32_t* tile_prefix,
                                                             const int32_t* chunk_last,
                                                             int32_t num_tasks, int32_t block,
                                                             const Ballot& ballot) {
  int32_t task;
  if (num_tasks >= kTwoLevelMappingTasks) {
    const int32_t num_chunks = ceil_div(num_tasks, 32);
    // Chunks whose last entry is <= block are entirely <= block (TilePrefix is sorted).
    const int32_t full_chunks = count_at_or_below(chunk_last, num_chunks, block, ballot);
    const int32_t begin = full_chunks * 32;
    task = begin + popcount32(ballot(tile_prefix + begin, min_i32(32, num_tasks - begin), block));
  } else {
    task = count_at_or_below(tile_prefix, num_tasks, block, ballot);
  }
  return TaskTile{task, block - (task > 0 ? tile_prefix[task - 1] : 0)};
}

}  // namespace ramp
