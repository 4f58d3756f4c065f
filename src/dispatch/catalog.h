// The design space of the static batching kernel as data: every tile configuration RaMP's
// selection may choose from, whether the kernel compiles it today, and the shared-memory math
// that fixes each entry's pipeline depth. Selection, region analysis, profiles and `ramp configs`
// all read this one list, so a config is named the same way everywhere (TileConfig::to_string).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/tile_config.h"

namespace ramp::dispatch {

// Hopper limits (sm_90): 227 KB of shared memory per block (of 228 KB per SM).
inline constexpr int32_t kMaxSharedBytesPerBlock = 227 * 1024;
// The kernel's epilogue staging: each consumer warpgroup stages 64 output rows of 256 bytes
// plus 16 bytes of bank padding (static_batching_common.cuh static_asserts the two agree).
inline constexpr int32_t kEpilogueStagingBytesPerWarpgroup = 64 * (256 + 16);
// Fewer than 2 stages cannot overlap a load with an MMA; beyond 8 the latency is already hidden
// and the kernel's barrier area is sized for 8.
inline constexpr int32_t kCatalogMinStages = 2;
inline constexpr int32_t kCatalogMaxStages = 8;
// fp32 accumulator registers per consumer thread that still leave room for addressing and the
// epilogue inside the 216-register consumer budget (a 64x256 wgmma: 64*256/128 = 128).
inline constexpr int32_t kMaxAccumulatorRegisters = 128;

// One grouped GEMM: E experts, k slots per token, each expert y = x . W^T with W [N, K].
// A layer has two: GEMM1 (N = 2I, K = H) and GEMM2 (N = H, K = I).
struct GemmShape {
  int32_t num_experts = 0;
  int32_t top_k = 0;
  int32_t out_features = 0;  // N
  int32_t in_features = 0;   // K

  // "E=128 k=8 N=1536 K=2048"
  std::string to_string() const;
  friend bool operator==(const GemmShape&, const GemmShape&) = default;
};

// Bytes one pipeline stage holds: a k_tile-deep slice of the token tile and the weight tile.
constexpr int32_t stage_bytes(const TileConfig& config) {
  return (config.token_tile + config.feature_tile) * config.k_tile * 2;  // bf16
}
// The barrier area is sized for the deepest ring so that configs sharing one launch agree on it.
inline constexpr int32_t kBarrierBytesPerStage = 16;  // one full + one empty mbarrier
// The split-K verdict words (16 with the queue's alignment) and the tile queue: 4 slots of a
// mapped tile (32 bytes) and a tile index (4) with a full, a mapped and an empty mbarrier each
// (4 * 60).
inline constexpr int32_t kSchedulerSharedBytes = 16 + 4 * 60;
// Shared memory a config's launch needs besides the ring: epilogue staging plus the full/empty
// mbarrier pairs (16 bytes per stage) and the scheduler's words and barriers.
constexpr int32_t fixed_shared_bytes(int32_t consumer_warpgroups, int32_t stages) {
  return consumer_warpgroups * kEpilogueStagingBytesPerWarpgroup + stages * kBarrierBytesPerStage +
         kSchedulerSharedBytes;
}
// Pipeline depth that fills the shared memory left after the fixed part, capped to
// [kCatalogMinStages, kCatalogMaxStages]; 0 when not even kCatalogMinStages fit. Only the shape
// fields of `config` are read (its stages field is ignored).
// Worked example, normal 128x256 k64 with 2 consumer warpgroups:
//   stage  = (128 + 256) rows * 64 * 2 B = 49152 B
//   budget = 232448 - 2 * 17408 (staging) - (16 * 8 + 256) (barriers, sized for 8 stages, and
//            the scheduler's) = 197248 B  ->  floor(197248 / 49152) = 4 stages (the kernel's
//            config 0).
// normal 128x128: 32768 B per stage -> 6; swapped 64x128: 24576 B -> 8 (the cap).
constexpr int32_t derive_stages(const TileConfig& config) {
  const int32_t budget =
      kMaxSharedBytesPerBlock - fixed_shared_bytes(config.consumer_warpgroups, kCatalogMaxStages);
  const int32_t fit = budget / stage_bytes(config);
  if (fit < kCatalogMinStages) return 0;
  return fit < kCatalogMaxStages ? fit : kCatalogMaxStages;
}
// Ring + fixed part with the config's own stages.
constexpr int32_t shared_memory_bytes(const TileConfig& config) {
  return stage_bytes(config) * config.stages +
         fixed_shared_bytes(config.consumer_warpgroups, config.stages);
}
// MMA M rows one consumer warpgroup owns: normal puts tokens on M, swapped puts weight rows.
constexpr int32_t mma_m_per_warpgroup(const TileConfig& config) {
  const int32_t m_side =
      config.orientation == Orientation::kNormal ? config.token_tile : config.feature_tile;
  return m_side / config.consumer_warpgroups;
}
constexpr int32_t mma_n(const TileConfig& config) {
  return config.orientation == Orientation::kNormal ? config.feature_tile : config.token_tile;
}
// fp32 accumulators per consumer thread: (MMA M per warpgroup) * (MMA N) / 128 threads.
constexpr int32_t accumulator_registers(const TileConfig& config) {
  return mma_m_per_warpgroup(config) * mma_n(config) / 128;
}
// CTAs of this config that fit on one SM by shared memory (1 KB per block is reserved by the
// driver). The kernel's __launch_bounds__(threads, 1) also caps it at 1 today.
int32_t ctas_per_sm(const TileConfig& config, int64_t shared_bytes_per_sm);

// True when the kernel's wgmma scheme can issue the shape: each consumer warpgroup owns 64 or
// 128 rows of the MMA M side, MMA N is a multiple of 8 in [8, 256], accumulators fit the budget.
constexpr bool is_issuable(const TileConfig& config) {
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

// Whether K cuts into whole k tiles and split_k whole slices of them (each split-K slice of a
// tile runs (K / k_tile) / split_k k-blocks). fits_gemm and the kernel's launcher both ask it.
constexpr bool split_divides_depth(const TileConfig& config, int32_t in_features) {
  return in_features > 0 && config.k_tile > 0 && config.split_k > 0 &&
         in_features % config.k_tile == 0 && (in_features / config.k_tile) % config.split_k == 0;
}

// The catalog as a compile-time table, so the kernel can be instantiated for any entry by its
// index (ConfigTraits<index>) and host code lists exactly the same entries.
inline constexpr int32_t kCatalogCapacity = 256;
struct CatalogTable {
  TileConfig entries[kCatalogCapacity] = {};
  int32_t size = 0;
};

namespace catalog_detail {
constexpr TileConfig with_derived_stages(TileConfig config) {
  config.stages = static_cast<int8_t>(derive_stages(config));
  return config;
}
// Split-K and L2 grouping variants of one tile shape. Split-K is only offered with the default
// group of 8: a split task has few token blocks, so its group size hardly matters.
template <int32_t kGroups>
constexpr void add_variants(TileConfig shape, const int8_t (&groups)[kGroups], CatalogTable& table) {
  for (const int8_t group : groups) {
    shape.group_m = group;
    shape.split_k = 1;
    table.entries[table.size++] = with_derived_stages(shape);
  }
  for (const int8_t split : {int8_t{2}, int8_t{4}}) {
    shape.group_m = 8;
    shape.split_k = split;
    table.entries[table.size++] = with_derived_stages(shape);
  }
}
constexpr CatalogTable build_catalog_table() {
  CatalogTable table;
  TileConfig shape;
  shape.k_tile = 64;
  // Normal orientation: tokens on MMA M (64 or 128 rows per consumer warpgroup), weight rows
  // on MMA N. 10 shapes x (3 groups + 2 splits) = 50 entries.
  shape.orientation = Orientation::kNormal;
  constexpr int8_t kNormalGroups[] = {1, 8, 16};
  for (const int8_t warpgroups : {int8_t{1}, int8_t{2}}) {
    for (const int16_t rows_per_warpgroup : {int16_t{64}, int16_t{128}}) {
      for (const int16_t features : {int16_t{64}, int16_t{128}, int16_t{256}}) {
        shape.consumer_warpgroups = warpgroups;
        shape.token_tile = static_cast<int16_t>(rows_per_warpgroup * warpgroups);
        shape.feature_tile = features;
        if (!is_issuable(shape)) continue;  // 128 rows x 256 features: 256 accumulators
        add_variants(shape, kNormalGroups, table);
      }
    }
  }
  // Swapped: 64 weight rows per consumer warpgroup on MMA M, tokens on MMA N. Every multiple
  // of 8 up to 64 (decode histograms hit each), then coarser steps where one token block more
  // or less matters less. 2 x 12 token tiles x (1 group + 2 splits) = 72 entries.
  shape.orientation = Orientation::kSwapped;
  constexpr int8_t kSwappedGroups[] = {8};
  for (const int8_t warpgroups : {int8_t{1}, int8_t{2}}) {
    for (const int16_t tokens : {8, 16, 24, 32, 40, 48, 56, 64, 96, 128, 192, 256}) {
      shape.consumer_warpgroups = warpgroups;
      shape.feature_tile = static_cast<int16_t>(64 * warpgroups);
      shape.token_tile = tokens;
      if (!is_issuable(shape)) continue;
      add_variants(shape, kSwappedGroups, table);
    }
  }
  return table;
}
}  // namespace catalog_detail

inline constexpr CatalogTable kCatalogTable = catalog_detail::build_catalog_table();
inline constexpr int32_t kCatalogSize = kCatalogTable.size;
static_assert(kCatalogSize > 0 && kCatalogSize <= kCatalogCapacity);

// Index of an equal config, -1 when absent (compile-time usable).
constexpr int32_t catalog_index_of(const TileConfig& config) {
  for (int32_t i = 0; i < kCatalogSize; ++i) {
    if (kCatalogTable.entries[i] == config) return i;
  }
  return -1;
}

struct CatalogEntry {
  TileConfig config;
  // Index in kBuiltinConfigs (the set the layer's per-expert rule mixes in one launch), -1 when
  // the entry is not in it.
  int32_t builtin_index = -1;
  // Whether this build's CUDA backend has a kernel for the entry alone (a launch where every
  // task uses it): every entry in a full build, a representative subset in CI's
  // (RAMP_KERNEL_CATALOG=subset), none without CUDA. See compiled_catalog_indices().
  bool compiled = false;
  bool in_builtin_set() const { return builtin_index >= 0; }
};

// The catalog (kCatalogTable) with its flags, in a fixed order (normal before swapped; then
// warpgroups, tiles, split-K, group). Every kBuiltinConfigs entry is in it.
const std::vector<CatalogEntry>& catalog();
// Index of an equal config, -1 when absent.
int32_t find_in_catalog(const TileConfig& config);

// Whether the config can run the GEMM at all, and *why_not (when given) says what fails:
// K must be a whole number of k-tiles, split_k must divide that k depth, and a feature tile
// larger than N rounded up to 64 would only compute padding.
bool fits_gemm(const TileConfig& config, const GemmShape& shape, std::string* why_not = nullptr);
// Catalog indices this build compiled a kernel for (generated at configure time from the same
// list the CUDA kernel instances are generated from).
const std::vector<int32_t>& compiled_catalog_indices();
// Which entries legal_entries returns: all of them, those this build compiled a kernel for, or
// those in the builtin set (the configs one layer launch mixes per expert).
enum class EntryFilter { kAll, kCompiled, kBuiltinSet };
// Catalog indices that fit the GEMM and pass the filter, in catalog order.
std::vector<int32_t> legal_entries(const GemmShape& shape, EntryFilter filter);

// Inverse of TileConfig::to_string ("normal 128x256 k64 s4 wg2 g8 sk1"). False when the text
// is not exactly that format.
bool parse_tile_config(std::string_view text, TileConfig* config);

}  // namespace ramp::dispatch
