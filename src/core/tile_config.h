// A tile configuration: how one task's GEMM is cut into CTA tiles. Plain data, host+device,
// so the planner, the CPU backend and the kernel count tiles with the same formula.
//
// Two orientations share one description. A task multiplies `rows` gathered token rows by an
// expert weight with `features` output rows:
//   normal : MMA M = tokens (token_tile = BM), MMA N = weight rows (feature_tile = BN)
//   swapped: MMA M = weight rows (feature_tile = 64 or 128), MMA N = tokens (token_tile =
//            8..256 in steps of 8), so a 3-token expert is not padded to a 64-row tile.
// Either way a tile covers token_tile tokens x feature_tile features.
#pragma once

#include <cstdint>
#include <string>

#include "core/host_device.h"

namespace ramp {

enum class Orientation : int8_t { kNormal = 0, kSwapped = 1 };

struct TileConfig {
  Orientation orientation = Orientation::kNormal;
  int16_t token_tile = 128;      // tokens per tile
  int16_t feature_tile = 128;    // output features per tile (GEMM1 fused: half gate, half up)
  int16_t k_tile = 64;           // reduction depth per pipeline stage (64 bf16 = one 128B row)
  int8_t stages = 4;             // shared-memory pipeline depth
  int8_t consumer_warpgroups = 2;
  int8_t group_m = 8;            // token blocks per L2 group (see tile_coord)
  int8_t split_k = 1;            // reduction split (1 = none)

  RAMP_HOST_DEVICE constexpr int32_t token_blocks(int32_t rows) const {
    return ceil_div(rows, token_tile);
  }
  RAMP_HOST_DEVICE constexpr int32_t feature_blocks(int32_t features) const {
    return ceil_div(features, feature_tile);
  }
  // Tiles per token block: ceil(N / feature_tile) * split_k. Example: 128x256, N = 2048 -> 8.
  RAMP_HOST_DEVICE constexpr int32_t tiles_per_token_block(int32_t features) const {
    return feature_blocks(features) * split_k;
  }
  // Tiles of one task: ceil(m / token_tile) * tiles_per_token_block(N). 0 when m = 0.
  RAMP_HOST_DEVICE constexpr int32_t tiles(int32_t rows, int32_t features) const {
    return token_blocks(rows) * tiles_per_token_block(features);
  }

  // "normal 128x256 k64 s4 wg2 g8 sk1": orientation, tokens x features, then the rest.
  std::string to_string() const;
  friend bool operator==(const TileConfig&, const TileConfig&) = default;
};

// Where a tile sits inside its task. feature blocks are visited in groups: inside a group of
// group_m token blocks, consecutive tiles walk the token blocks first, so CTAs running at the
// same time share one weight tile (hot in L2) and the group's token rows.
// Example: 5 token blocks, 3 feature blocks, group_m 2 -> tiles 0..5 cover token blocks 0-1
// for features 0,1,2 (t0f0 t1f0 t0f1 t1f1 t0f2 t1f2), tiles 6..11 token blocks 2-3,
// tiles 12..14 token block 4.
struct TileCoord {
  int32_t token_block;
  int32_t feature_block;
  int32_t k_split;
};

RAMP_HOST_DEVICE inline TileCoord tile_coord(int32_t tile, int32_t token_blocks,
                                             int32_t feature_blocks, int32_t group_m) {
  const int32_t per_split = token_blocks * feature_blocks;
  const int32_t k_split = tile / per_split;
  tile -= k_split * per_split;
  const int32_t tiles_per_group = group_m * feature_blocks;
  const int32_t group = tile / tiles_per_group;
  const int32_t first_token_block = group * group_m;
  const int32_t group_rows = min_i32(token_blocks - first_token_block, group_m);
  const int32_t in_group = tile - group * tiles_per_group;
  return TileCoord{first_token_block + in_group % group_rows, in_group / group_rows, k_split};
}

}  // namespace ramp
