#include "dispatch/catalog.h"

#include <algorithm>
#include <cstdio>
#include <iterator>

#include "dispatch/builtin_configs.h"

namespace ramp::dispatch {

namespace {

constexpr int32_t kThreadsPerWarpgroup = 128;
constexpr int32_t kBytesPerElement = 2;  // bf16
// The barrier area is sized for the deepest ring so that configs sharing one launch agree on it.
constexpr int32_t kBarrierBytesPerStage = 16;  // one full + one empty mbarrier
constexpr int32_t kHandoffBarrierBytes = 8;
constexpr int32_t kDriverReservedBytesPerBlock = 1024;

// MMA M rows one consumer warpgroup owns: normal puts tokens on M, swapped puts weight rows.
int32_t mma_m_per_warpgroup(const TileConfig& config) {
  const int32_t m_side =
      config.orientation == Orientation::kNormal ? config.token_tile : config.feature_tile;
  return m_side / config.consumer_warpgroups;
}

int32_t mma_n(const TileConfig& config) {
  return config.orientation == Orientation::kNormal ? config.feature_tile : config.token_tile;
}

TileConfig with_derived_stages(TileConfig config) {
  config.stages = static_cast<int8_t>(derive_stages(config));
  return config;
}

// Split-K and L2 grouping variants of one tile shape. Split-K is only offered with the default
// group of 8: a split task has few token blocks, so its group size hardly matters.
void add_variants(TileConfig shape, std::initializer_list<int8_t> groups,
                  std::vector<TileConfig>* out) {
  for (const int8_t group : groups) {
    shape.group_m = group;
    shape.split_k = 1;
    out->push_back(with_derived_stages(shape));
  }
  for (const int8_t split : {int8_t{2}, int8_t{4}}) {
    shape.group_m = 8;
    shape.split_k = split;
    out->push_back(with_derived_stages(shape));
  }
}

std::vector<CatalogEntry> build_catalog() {
  std::vector<TileConfig> configs;
  TileConfig shape;
  shape.k_tile = 64;

  // Normal orientation: tokens on MMA M (64 or 128 rows per consumer warpgroup), weight rows
  // on MMA N. 10 shapes x (3 groups + 2 splits) = 50 entries.
  shape.orientation = Orientation::kNormal;
  for (const int8_t warpgroups : {int8_t{1}, int8_t{2}}) {
    for (const int16_t rows_per_warpgroup : {int16_t{64}, int16_t{128}}) {
      for (const int16_t features : {int16_t{64}, int16_t{128}, int16_t{256}}) {
        shape.consumer_warpgroups = warpgroups;
        shape.token_tile = static_cast<int16_t>(rows_per_warpgroup * warpgroups);
        shape.feature_tile = features;
        if (!is_issuable(shape)) continue;  // 128 rows x 256 features: 256 accumulators
        add_variants(shape, {1, 8, 16}, &configs);
      }
    }
  }

  // Swapped: 64 weight rows per consumer warpgroup on MMA M, tokens on MMA N. Every multiple
  // of 8 up to 64 (decode histograms hit each), then coarser steps where one token block more
  // or less matters less. 2 x 12 token tiles x (1 group + 2 splits) = 72 entries.
  shape.orientation = Orientation::kSwapped;
  for (const int8_t warpgroups : {int8_t{1}, int8_t{2}}) {
    for (const int16_t tokens : {8, 16, 24, 32, 40, 48, 56, 64, 96, 128, 192, 256}) {
      shape.consumer_warpgroups = warpgroups;
      shape.feature_tile = static_cast<int16_t>(64 * warpgroups);
      shape.token_tile = tokens;
      if (!is_issuable(shape)) continue;
      add_variants(shape, {8}, &configs);
    }
  }

  std::vector<CatalogEntry> entries;
  entries.reserve(configs.size());
  for (const TileConfig& config : configs) {
    CatalogEntry entry{config, -1};
    for (int32_t b = 0; b < kNumBuiltinConfigs; ++b) {
      if (kBuiltinConfigs[b] == config) entry.builtin_index = b;
    }
    entries.push_back(entry);
  }
  return entries;
}

}  // namespace

std::string GemmShape::to_string() const {
  return "E=" + std::to_string(num_experts) + " k=" + std::to_string(top_k) +
         " N=" + std::to_string(out_features) + " K=" + std::to_string(in_features);
}

int32_t stage_bytes(const TileConfig& config) {
  return (config.token_tile + config.feature_tile) * config.k_tile * kBytesPerElement;
}

int32_t fixed_shared_bytes(int32_t consumer_warpgroups, int32_t stages) {
  return consumer_warpgroups * kEpilogueStagingBytesPerWarpgroup +
         stages * kBarrierBytesPerStage + kHandoffBarrierBytes;
}

int32_t derive_stages(const TileConfig& config) {
  const int32_t budget = kMaxSharedBytesPerBlock -
                         fixed_shared_bytes(config.consumer_warpgroups, kCatalogMaxStages);
  const int32_t fit = budget / stage_bytes(config);
  if (fit < kCatalogMinStages) return 0;
  return std::min(fit, kCatalogMaxStages);
}

int32_t shared_memory_bytes(const TileConfig& config) {
  return stage_bytes(config) * config.stages +
         fixed_shared_bytes(config.consumer_warpgroups, config.stages);
}

int32_t accumulator_registers(const TileConfig& config) {
  return mma_m_per_warpgroup(config) * mma_n(config) / kThreadsPerWarpgroup;
}

int32_t ctas_per_sm(const TileConfig& config, int64_t shared_bytes_per_sm) {
  const int64_t per_block = shared_memory_bytes(config) + kDriverReservedBytesPerBlock;
  return static_cast<int32_t>(std::max<int64_t>(1, shared_bytes_per_sm / per_block));
}

bool is_issuable(const TileConfig& config) {
  if (config.consumer_warpgroups < 1 || config.consumer_warpgroups > 2) return false;
  if (config.k_tile != 64 || config.split_k < 1 || config.group_m < 1) return false;
  const int32_t m_side =
      config.orientation == Orientation::kNormal ? config.token_tile : config.feature_tile;
  if (m_side % config.consumer_warpgroups != 0) return false;
  const int32_t m_rows = mma_m_per_warpgroup(config);
  const int32_t n = mma_n(config);
  return (m_rows == 64 || m_rows == 128) && n % 8 == 0 && n >= 8 && n <= 256 &&
         accumulator_registers(config) <= kMaxAccumulatorRegisters && derive_stages(config) > 0;
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
  const int32_t k_depth = shape.in_features / config.k_tile;
  if (k_depth % config.split_k != 0) {
    return fail("split_k " + std::to_string(config.split_k) + " does not divide the k depth " +
                std::to_string(k_depth));
  }
  if (config.feature_tile > round_up(shape.out_features, 64)) {
    return fail("feature_tile " + std::to_string(config.feature_tile) + " exceeds N = " +
                std::to_string(shape.out_features) + " rounded up to 64");
  }
  return true;
}

std::vector<int32_t> legal_entries(const GemmShape& shape, bool compiled_only) {
  std::vector<int32_t> indices;
  const std::vector<CatalogEntry>& entries = catalog();
  for (size_t i = 0; i < entries.size(); ++i) {
    if (compiled_only && !entries[i].compiled()) continue;
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
