#include "dispatch/catalog.h"

#include <algorithm>
#include <cstdio>
#include <iterator>

#include "dispatch/builtin_configs.h"
#include "dispatch/kernel_catalog.h"

namespace ramp::dispatch {

namespace {

constexpr int32_t kDriverReservedBytesPerBlock = 1024;

std::vector<CatalogEntry> build_catalog() {
  const std::vector<int32_t>& compiled = compiled_catalog_indices();
  std::vector<CatalogEntry> entries;
  entries.reserve(static_cast<size_t>(kCatalogSize));
  for (int32_t i = 0; i < kCatalogSize; ++i) {
    CatalogEntry entry{kCatalogTable.entries[i], -1, false};
    for (int32_t b = 0; b < kNumBuiltinConfigs; ++b) {
      if (kBuiltinConfigs[b] == entry.config) entry.builtin_index = b;
    }
    entry.compiled = std::find(compiled.begin(), compiled.end(), i) != compiled.end();
    entries.push_back(entry);
  }
  return entries;
}

}  // namespace

std::string GemmShape::to_string() const {
  return "E=" + std::to_string(num_experts) + " k=" + std::to_string(top_k) +
         " N=" + std::to_string(out_features) + " K=" + std::to_string(in_features);
}

int32_t ctas_per_sm(const TileConfig& config, int64_t shared_bytes_per_sm) {
  const int64_t per_block = shared_memory_bytes(config) + kDriverReservedBytesPerBlock;
  return static_cast<int32_t>(std::max<int64_t>(1, shared_bytes_per_sm / per_block));
}

const std::vector<int32_t>& compiled_catalog_indices() {
  static const std::vector<int32_t> indices = [] {
    std::vector<int32_t> out;
    for (int32_t i = 0; i < kCatalogSize; ++i) {
      if (catalog_entry_compiled(i)) out.push_back(i);
    }
    return out;
  }();
  return indices;
}

const std::vector<CatalogEntry>& catalog() {
  static const std::vector<CatalogEntry> entries = build_catalog();
  return entries;
}

int32_t find_in_catalog(const TileConfig& config) {
  const std::vector<CatalogEntry>& entries = catalog();
  for (size_t i = 0; i < entries.size(); ++i) {
    if (entries[i].config == config) return static_cast<int32_t>(i);
  }
  return -1;
}

bool fits_gemm(const TileConfig& config, const GemmShape& shape, std::string* why_not) {
  auto fail = [&](std::string reason) {
    if (why_not != nullptr) *why_not = std::move(reason);
    return false;
  };
  if (shape.in_features <= 0 || shape.in_features % config.k_tile != 0) {
    return fail("K = " + std::to_string(shape.in_features) + " is not a multiple of k_tile " +
                std::to_string(config.k_tile));
  }
  if (!split_divides_depth(config, shape.in_features)) {
    const int32_t k_depth = shape.in_features / config.k_tile;
    return fail("split_k " + std::to_string(config.split_k) + " does not divide the k depth " +
                std::to_string(k_depth));
  }
  if (config.feature_tile > round_up(shape.out_features, 64)) {
    return fail("feature_tile " + std::to_string(config.feature_tile) + " exceeds N = " +
                std::to_string(shape.out_features) + " rounded up to 64");
  }
  return true;
}

std::vector<int32_t> legal_entries(const GemmShape& shape, EntryFilter filter) {
  std::vector<int32_t> indices;
  const std::vector<CatalogEntry>& entries = catalog();
  for (size_t i = 0; i < entries.size(); ++i) {
    if (filter == EntryFilter::kCompiled && !entries[i].compiled) continue;
    if (filter == EntryFilter::kBuiltinSet && !entries[i].in_builtin_set()) continue;
    if (fits_gemm(entries[i].config, shape)) indices.push_back(static_cast<int32_t>(i));
  }
  return indices;
}

bool parse_tile_config(std::string_view text, TileConfig* config) {
  const std::string owned(text);
  char orientation[16] = {};
  int tokens = 0, features = 0, k = 0, stages = 0, warpgroups = 0, group = 0, split = 0;
  int consumed = -1;
  const int fields = std::sscanf(owned.c_str(), "%15s %dx%d k%d s%d wg%d g%d sk%d%n", orientation,
                                 &tokens, &features, &k, &stages, &warpgroups, &group, &split,
                                 &consumed);
  if (fields != 8 || consumed != static_cast<int>(owned.size())) return false;
  TileConfig parsed;
  const std::string name = orientation;
  if (name == "normal") {
    parsed.orientation = Orientation::kNormal;
  } else if (name == "swapped") {
    parsed.orientation = Orientation::kSwapped;
  } else {
    return false;
  }
  auto in_range = [](int value, int lo, int hi) { return value >= lo && value <= hi; };
  if (!in_range(tokens, 1, 32767) || !in_range(features, 1, 32767) || !in_range(k, 1, 32767) ||
      !in_range(stages, 0, 127) || !in_range(warpgroups, 1, 127) || !in_range(group, 1, 127) ||
      !in_range(split, 1, 127)) {
    return false;
  }
  parsed.token_tile = static_cast<int16_t>(tokens);
  parsed.feature_tile = static_cast<int16_t>(features);
  parsed.k_tile = static_cast<int16_t>(k);
  parsed.stages = static_cast<int8_t>(stages);
  parsed.consumer_warpgroups = static_cast<int8_t>(warpgroups);
  parsed.group_m = static_cast<int8_t>(group);
  parsed.split_k = static_cast<int8_t>(split);
  // sscanf tolerates extra spaces and '+' signs; only the canonical spelling names a config.
  if (parsed.to_string() != owned) return false;
  *config = parsed;
  return true;
}

}  // namespace ramp::dispatch
