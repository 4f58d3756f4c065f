#include "core/tile_config.h"

#include <cstdio>

namespace ramp {

std::string TileConfig::to_string() const {
  char buffer[96];
  std::snprintf(buffer, sizeof(buffer), "%s %dx%d k%d s%d wg%d g%d sk%d",
                orientation == Orientation::kNormal ? "normal" : "swapped", token_tile,
                feature_tile, k_tile, stages, consumer_warpgroups, group_m, split_k);
  return buffer;
}

}  // namespace ramp
