#include "dispatch/regions.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <tuple>

#include "dispatch/builtin_configs.h"

namespace ramp::dispatch {

namespace {

constexpr int32_t kSwappedTokenStep = 8;
constexpr int8_t kDefaultGroup = 8;

TileConfig make_config(Orientation orientation, int32_t tokens, int32_t features,
                       int32_t warpgroups, int32_t group, int32_t split) {
  TileConfig config;
  config.orientation = orientation;
  config.token_tile = static_cast<int16_t>(tokens);
  config.feature_tile = static_cast<int16_t>(features);
  config.k_tile = 64;
  config.consumer_warpgroups = static_cast<int8_t>(warpgroups);
  config.group_m = static_cast<int8_t>(group);
  config.split_k = static_cast<int8_t>(split);
  config.stages = static_cast<int8_t>(derive_stages(config));
  return config;
}

// The tile that large_tiles_help weighs: 128 tokens x 256 features over two warpgroups.
TileConfig large_tile() { return make_config(Orientation::kNormal, 128, 256, 2, kDefaultGroup, 1); }

int32_t concurrent_ctas(const TileConfig& config, const DeviceConstants& device) {
  return device.sm_count * ctas_per_sm(config, device.shared_bytes_per_sm);
}

double log2_distance(double have, double want) { return std::fabs(std::log2(have / want)); }

}  // namespace

// ---------------------------------------------------------------------------------------------
// Device constants

double DeviceConstants::ridge_flops_per_byte() const {
  return tensor_tflops * 1e12 / (copy_gbps * 1e9);
}

DeviceConstants DeviceConstants::h100() {
  DeviceConstants device;
  device.name = "NVIDIA H100 80GB HBM3";
  device.sm_count = 132;
  device.shared_bytes_per_sm = 228 * 1024;
  device.l2_bytes = 50LL * 1024 * 1024;
  device.tensor_tflops = 795.0;
  device.copy_gbps = 3020.0;
  return device;
}

std::string DeviceConstants::to_string() const {
  char buffer[256];
  std::snprintf(buffer, sizeof(buffer),
                "%s: %d SMs, %lld KiB smem/SM, %.0f MiB L2, %.0f TFLOP/s, %.0f GB/s", name.c_str(),
                sm_count, static_cast<long long>(shared_bytes_per_sm / 1024),
                static_cast<double>(l2_bytes) / (1024.0 * 1024.0), tensor_tflops, copy_gbps);
  return buffer;
}

// ---------------------------------------------------------------------------------------------
// Variables

ConfigVariables config_variables(const TileConfig& config, const GemmShape& shape,
                                 std::span<const int32_t> histogram,
                                 const DeviceConstants& device) {
  ConfigVariables v;
  for (const int32_t rows : histogram) v.token_blocks += config.token_blocks(rows);
  v.tiles = v.token_blocks * config.tiles_per_token_block(shape.out_features);
  v.concurrent_ctas = concurrent_ctas(config, device);
  v.waves = static_cast<double>(v.tiles) / v.concurrent_ctas;
  v.k_depth = shape.in_features / config.k_tile;
  // 2*BM*BN*K FLOPs over (BM + BN)*K*2 bytes: K cancels.
  v.tile_intensity = static_cast<double>(config.token_tile) * config.feature_tile /
                     (config.token_tile + config.feature_tile);
  v.tile_weight_bytes = static_cast<int64_t>(config.feature_tile) * shape.in_features * 2;
  return v;
}

ShapeVariables shape_variables(const GemmShape& shape, std::span<const int32_t> histogram,
                               const DeviceConstants& device) {
  ShapeVariables v;
  for (const int32_t rows : histogram) {
    v.slots += rows;
    if (rows > 0) ++v.active_experts;
    v.max_rows = std::max(v.max_rows, rows);
  }
  const double n = shape.out_features, k = shape.in_features;
  v.expert_weight_bytes = static_cast<int64_t>(shape.out_features) * shape.in_features * 2;
  v.active_weight_bytes = v.active_experts * v.expert_weight_bytes;
  v.flops = 2.0 * static_cast<double>(v.slots) * n * k;
  v.min_bytes = static_cast<double>(v.active_weight_bytes) +
                static_cast<double>(v.slots) * (n + k) * 2.0;
  v.intensity = v.min_bytes > 0 ? v.flops / v.min_bytes : 0.0;
  v.ridge = device.ridge_flops_per_byte();
  v.compute_bound = v.slots > 0 && v.intensity >= v.ridge;
  return v;
}

// ---------------------------------------------------------------------------------------------
// Rules

double padding_fraction(int32_t rows, int32_t token_tile) {
  if (rows <= 0) return 0.0;
  const int64_t covered = static_cast<int64_t>(ceil_div(rows, token_tile)) * token_tile;
  return 1.0 - static_cast<double>(rows) / static_cast<double>(covered);
}

bool swap_ab_helps(int32_t rows, int32_t normal_token_tile) {
  return rows > 0 && padding_fraction(rows, normal_token_tile) >= 0.5;
}

bool split_k_helps(double waves, int32_t k_depth, int32_t stages) {
  return waves > 0.0 && waves < 0.5 && k_depth >= 2 * stages;
}

int32_t choose_split_k(int64_t tiles, int32_t concurrent_ctas, int32_t k_depth, int32_t stages) {
  int32_t best = 1;
  for (const int32_t split : {2, 4}) {
    if (tiles * split <= concurrent_ctas && k_depth % split == 0 && k_depth / split >= stages) {
      best = split;
    }
  }
  return best;
}

bool large_tiles_help(int64_t large_tiles, int32_t concurrent_ctas, bool compute_bound) {
  return large_tiles >= concurrent_ctas && compute_bound;
}

int64_t l2_share_bytes(int64_t l2_bytes, int32_t concurrent_ctas, int64_t tiles_per_task,
                       int32_t active_tasks) {
  const int64_t per_task = std::max<int64_t>(1, tiles_per_task);
  int64_t in_flight = (concurrent_ctas + per_task - 1) / per_task;
  in_flight = std::clamp<int64_t>(in_flight, 1, std::max(1, active_tasks));
  return l2_bytes / in_flight;
}

bool l2_grouping_helps(int32_t token_blocks, int64_t task_weight_bytes, int64_t l2_share) {
  return token_blocks >= 2 && task_weight_bytes > l2_share;
}

// ---------------------------------------------------------------------------------------------
// Selector

int32_t nearest_candidate(const TileConfig& desired, std::span<const int32_t> candidates) {
  const std::vector<CatalogEntry>& entries = catalog();
  using Key = std::tuple<bool, bool, double, double, bool, double, double, int32_t>;
  int32_t best = -1;
  Key best_key{};
  for (const int32_t index : candidates) {
    const TileConfig& c = entries[static_cast<size_t>(index)].config;
    const Key key{c.orientation != desired.orientation,
                  c.token_tile < desired.token_tile,  // would split the expert's rows
                  log2_distance(c.token_tile, desired.token_tile),
                  log2_distance(c.feature_tile, desired.feature_tile),
                  c.consumer_warpgroups != desired.consumer_warpgroups,
                  log2_distance(c.split_k, desired.split_k),
                  log2_distance(c.group_m, desired.group_m),
                  index};
    if (best < 0 || key < best_key) {
      best = index;
      best_key = key;
    }
  }
  return best;
}

RegionSelection select_by_regions(const GemmShape& shape, std::span<const int32_t> histogram,
                                  const DeviceConstants& device,
                                  std::span<const int32_t> candidates) {
  std::vector<int32_t> usable;
  if (candidates.empty()) {
    usable = legal_entries(shape, EntryFilter::kAll);
  } else {
    for (const int32_t index : candidates) {
      if (index >= 0 && static_cast<size_t>(index) < catalog().size() &&
          fits_gemm(catalog()[static_cast<size_t>(index)].config, shape)) {
        usable.push_back(index);
      }
    }
  }

  RegionSelection selection;
  selection.variables = shape_variables(shape, histogram, device);
  RuleVerdicts& verdicts = selection.verdicts;
  const size_t num_experts = histogram.size();
  selection.expert_config.assign(num_experts, -1);
  selection.desired.assign(num_experts, TileConfig{});

  const TileConfig large = large_tile();
  const int32_t ctas = concurrent_ctas(large, device);
  for (const int32_t rows : histogram) {
    if (rows > 0 && !swap_ab_helps(rows)) {
      verdicts.large_tiles_count += large.tiles(rows, shape.out_features);
    }
  }
  verdicts.large_tiles =
      large_tiles_help(verdicts.large_tiles_count, ctas, selection.variables.compute_bound);

  // 1. Orientation and tile shape per expert.
  int64_t tiles = 0;
  int32_t deepest_ring = 0;
  for (size_t e = 0; e < num_experts; ++e) {
    const int32_t rows = histogram[e];
    if (rows <= 0) continue;
    TileConfig wish;
    if (swap_ab_helps(rows)) {
      ++verdicts.experts_swap_ab;
      wish = make_config(Orientation::kSwapped, round_up(rows, kSwappedTokenStep), 128, 2,
                         kDefaultGroup, 1);
    } else {
      wish = make_config(Orientation::kNormal, 128, verdicts.large_tiles ? 256 : 128, 2,
                         kDefaultGroup, 1);
    }
    selection.desired[e] = wish;
    tiles += wish.tiles(rows, shape.out_features);
    deepest_ring = std::max<int32_t>(deepest_ring, wish.stages);
  }
  verdicts.waves_before_split = static_cast<double>(tiles) / ctas;

  // 2. Split-K for the whole grid: it is a few-wave remedy, so it applies to every task.
  const int32_t k_depth = shape.in_features / 64;
  if (tiles > 0 && split_k_helps(verdicts.waves_before_split, k_depth, deepest_ring)) {
    verdicts.split_k_factor = choose_split_k(tiles, ctas, k_depth, deepest_ring);
    verdicts.split_k = verdicts.split_k_factor > 1;
  }

  // 3. L2 grouping per task, against the share of L2 left by the tasks in flight with it.
  const int32_t active = selection.variables.active_experts;
  const int64_t tiles_per_task = active > 0 ? ceil_div64(tiles, active) : 1;
  const int64_t share = l2_share_bytes(device.l2_bytes, ctas, tiles_per_task, active);
  for (size_t e = 0; e < num_experts; ++e) {
    const int32_t rows = histogram[e];
    if (rows <= 0) continue;
    TileConfig& wish = selection.desired[e];
    wish.split_k = static_cast<int8_t>(verdicts.split_k_factor);
    if (wish.orientation == Orientation::kNormal) {
      const bool group = l2_grouping_helps(wish.token_blocks(rows),
                                           selection.variables.expert_weight_bytes, share);
      if (group) ++verdicts.experts_l2_grouping;
      wish.group_m = group ? kDefaultGroup : 1;
    }
    selection.expert_config[e] = nearest_candidate(wish, usable);
  }
  return selection;
}

std::vector<int32_t> region_builtin_configs(const GemmShape& shape,
                                           std::span<const int32_t> histogram,
                                           const DeviceConstants& device) {
  const std::vector<int32_t> builtin_set = legal_entries(shape, EntryFilter::kBuiltinSet);
  const RegionSelection selection = select_by_regions(shape, histogram, device, builtin_set);
  std::vector<int32_t> builtin(histogram.size());
  for (size_t e = 0; e < histogram.size(); ++e) {
    const int32_t index = selection.expert_config[e];
    builtin[e] = index >= 0 ? catalog()[static_cast<size_t>(index)].builtin_index
                            : choose_builtin_config(0, 0, device.sm_count);
  }
  return builtin;
}

std::vector<int32_t> prune_for_profiling(const GemmShape& shape,
                                         const std::vector<std::vector<int32_t>>& histograms,
                                         const DeviceConstants& device) {
  bool any_split = false;
  for (const std::vector<int32_t>& histogram : histograms) {
    const RegionSelection selection = select_by_regions(shape, histogram, device);
    any_split = any_split || selection.verdicts.split_k;
  }
  std::vector<int32_t> kept;
  for (const int32_t index : legal_entries(shape, EntryFilter::kAll)) {
    const TileConfig& config = catalog()[static_cast<size_t>(index)].config;
    if (config.split_k > 1 && !any_split) continue;
    if (config.group_m > 8) {
      int32_t most_blocks = 0;
      for (const std::vector<int32_t>& histogram : histograms) {
        for (const int32_t rows : histogram) {
          most_blocks = std::max(most_blocks, config.token_blocks(rows));
        }
      }
      if (most_blocks <= 8) continue;
    }
    kept.push_back(index);
  }
  return kept;
}

}  // namespace ramp::dispatch
