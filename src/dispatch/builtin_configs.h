// The tile configs compiled into the static batching kernel, in the order the kernel's config
// switch uses (a task's `config` field indexes this array). The kernel static_asserts that its
// compiled list matches, so the planner, the CPU backend and the GPU agree on every tile shape.
//
// Every config runs with one producer and two consumer warpgroups (384 threads), so configs can
// share one launch: a CTA's shape never depends on its task.
#pragma once

#include <cstdint>

#include "core/host_device.h"
#include "core/tile_config.h"

namespace ramp::dispatch {

inline constexpr TileConfig kBuiltinConfigs[] = {
    // orientation           tokens features k  stages wgs group splitk
    {Orientation::kNormal,   128,   256,     64, 4,     2,  8,    1},  // 0: busy experts
    {Orientation::kNormal,   128,   128,     64, 6,     2,  8,    1},  // 1: mid experts, more tiles
    {Orientation::kSwapped,  64,    128,     64, 8,     2,  8,    1},  // 2: 33..64 tokens
    {Orientation::kSwapped,  32,    128,     64, 8,     2,  8,    1},  // 3: 17..32 tokens
    {Orientation::kSwapped,  16,    128,     64, 8,     2,  8,    1},  // 4: 9..16 tokens
    {Orientation::kSwapped,  8,     128,     64, 8,     2,  8,    1},  // 5: 1..8 tokens (decode)
};
inline constexpr int32_t kNumBuiltinConfigs =
    static_cast<int32_t>(sizeof(kBuiltinConfigs) / sizeof(kBuiltinConfigs[0]));

// Experts with more rows than the largest swapped token tile use the normal orientation.
inline constexpr int32_t kSwappedMaxRows = 64;

// What one expert adds to choose_builtin_config's "fills the machine" count: its 128x256 tiles
// when it will use the normal orientation. `big` is kBuiltinConfigs[0], passed in because
// device code reads its own (__constant__) copy of the table.
// Example: 500 rows, N = 2048 -> 4 token blocks x 8 feature blocks = 32; 40 rows -> 0.
RAMP_HOST_DEVICE inline int32_t big_tiles_of_expert(const TileConfig& big, int32_t rows,
                                                    int32_t out_features) {
  return rows > kSwappedMaxRows ? big.tiles(rows, out_features) : 0;
}

// The rule used until a fitted cost model exists (RaMP's region analysis replaces it): few
// tokens -> swapped orientation with the smallest token tile that holds them (no padding of a
// 128-row tile with 3 real tokens); more -> 128x256 tiles when they still fill the machine,
// else 128x128 for twice the tiles.
// Example, N = 2048 features, 132 SMs: 3 tokens -> config 5 (swapped 8); 40 tokens -> config 2;
// 500 tokens -> 4 token blocks x 8 feature blocks = 32 tiles of 128x256 per expert; with 64
// such experts 2048 tiles >= 132, so config 0.
RAMP_HOST_DEVICE inline int32_t choose_builtin_config(int32_t rows, int32_t total_big_tiles,
                                                      int32_t num_sms) {
  if (rows <= 8) return 5;
  if (rows <= 16) return 4;
  if (rows <= 32) return 3;
  if (rows <= kSwappedMaxRows) return 2;
  return total_big_tiles >= num_sms ? 0 : 1;
}

}  // namespace ramp::dispatch
