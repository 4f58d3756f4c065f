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
int32_t stage_bytes(const TileConfig& config);
// Shared memory a config's launch needs besides the ring: epilogue staging plus the full/empty
// mbarrier pairs (16 bytes per stage) and the hand-off barrier.
int32_t fixed_shared_bytes(int32_t consumer_warpgroups, int32_t stages);
// Pipeline depth that fills the shared memory left after the fixed part, capped to
// [kCatalogMinStages, kCatalogMaxStages]; 0 when not even kCatalogMinStages fit. Only the shape
// fields of `config` are read (its stages field is ignored).
// Worked example, normal 128x256 k64 with 2 consumer warpgroups:
//   stage  = (128 + 256) rows * 64 * 2 B = 49152 B
//   budget = 232448 - 2 * 17408 (staging) - (16 * 8 + 8) (barriers, sized for 8 stages)
//          = 197496 B  ->  floor(197496 / 49152) = 4 stages (the kernel's config 0).
// normal 128x128: 32768 B per stage -> 6; swapped 64x128: 24576 B -> 8 (the cap).
int32_t derive_stages(const TileConfig& config);
// Ring + fixed part with the config's own stages.
int32_t shared_memory_bytes(const TileConfig& config);
// fp32 accumulators per consumer thread: (MMA M per warpgroup) * (MMA N) / 128 threads.
int32_t accumulator_registers(const TileConfig& config);
// CTAs of this config that fit on one SM by shared memory (1 KB per block is reserved by the
// driver). The 384-thread launch with __launch_bounds__(384, 1) also caps it at 1 today.
int32_t ctas_per_sm(const TileConfig& config, int64_t shared_bytes_per_sm);

// True when the kernel's wgmma scheme can issue the shape: each consumer warpgroup owns 64 or
// 128 rows of the MMA M side, MMA N is a multiple of 8 in [8, 256], accumulators fit the budget.
bool is_issuable(const TileConfig& config);

struct CatalogEntry {
  TileConfig config;
  int32_t builtin_index = -1;  // index in kBuiltinConfigs, -1 when the kernel lacks it today
  bool compiled() const { return builtin_index >= 0; }
};

// The catalog, in a fixed order (normal before swapped; then warpgroups, tiles, split-K, group).
// Every kBuiltinConfigs entry is in it, flagged compiled.
const std::vector<CatalogEntry>& catalog();
// Index of an equal config, -1 when absent.
int32_t find_in_catalog(const TileConfig& config);

// Whether the config can run the GEMM at all, and *why_not (when given) says what fails:
// K must be a whole number of k-tiles, split_k must divide that k depth, and a feature tile
// larger than N rounded up to 64 would only compute padding.
bool fits_gemm(const TileConfig& config, const GemmShape& shape, std::string* why_not = nullptr);
// Catalog indices that fit the GEMM, optionally only the compiled ones, in catalog order.
std::vector<int32_t> legal_entries(const GemmShape& shape, bool compiled_only);

// Inverse of TileConfig::to_string ("normal 128x256 k64 s4 wg2 g8 sk1"). False when the text
// is not exactly that format.
bool parse_tile_config(std::string_view text, TileConfig* config);

}  // namespace ramp::dispatch
