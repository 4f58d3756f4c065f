// The order of non-empty tasks in TilePrefix, i.e. which tiles share a wave. Host+device: the
// host planner and the device routing prep place experts with the same formulas.
//   identity:      ascending expert id
//   half-interval: experts sorted by tiles (most first), busy half and idle half interleaved:
//                  busy[0], idle[0], busy[1], idle[1], ... so each wave mixes compute-bound and
//                  memory-bound tiles (the static batching paper's ordering, as we read it)
//   longest-first: most tiles first (classic LPT scheduling: the tail wave holds short tiles)
// Ties keep ascending expert id, so every ordering is deterministic.
#pragma once

#include <cstdint>

#include "core/host_device.h"

namespace ramp {

enum class ExpertOrder : int8_t { kIdentity = 0, kHalfInterval = 1, kLongestFirst = 2 };

// Where the expert of busy-first rank `rank` (0 = most tiles) lands among `num_tasks` in the
// half-interval order: the busy half [0, ceil(n/2)) takes the even positions, the idle half the
// odd ones. Example, n = 5: ranks 0 1 2 | 3 4 -> positions 0 2 4 | 1 3.
RAMP_HOST_DEVICE constexpr int32_t half_interval_position(int32_t rank, int32_t num_tasks) {
  const int32_t busy_half = (num_tasks + 1) / 2;
  return rank < busy_half ? 2 * rank : 2 * (rank - busy_half) + 1;
}

}  // namespace ramp
