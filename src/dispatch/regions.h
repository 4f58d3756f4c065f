// RaMP's performance-region analysis: from hardware constants alone, say when each kernel
// optimisation (swap-AB, split-K, large tiles, L2 grouping) helps a grouped GEMM with a given
// expert histogram, and pick a config per expert from those verdicts. The picker is the
// dispatcher's fallback when no fitted profile exists, and prunes the catalog for profiling.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/tile_config.h"
#include "dispatch/catalog.h"

namespace ramp::dispatch {

// What the rules need to know about a GPU. Rates are measured ceilings (cuBLAS bf16 GEMM,
// device-to-device copy counting bytes read + written), not datasheet peaks.
struct DeviceConstants {
  std::string name;
  int32_t sm_count = 0;
  int64_t shared_bytes_per_sm = 0;
  int64_t l2_bytes = 0;
  double tensor_tflops = 0.0;
  double copy_gbps = 0.0;

  // FLOPs per DRAM byte at which compute time equals memory time.
  // H100: 795e12 / 3020e9 = 263 FLOP/B.
  double ridge_flops_per_byte() const;
  // H100 SXM 80GB: 132 SMs, 228 KB shared memory per SM, 50 MB L2, and the ceilings measured
  // in ANCHORS.md (795 TFLOP/s bf16, 3020 GB/s copy).
  static DeviceConstants h100();
  // "NVIDIA H100 80GB HBM3: 132 SMs, 228 KiB smem/SM, 50 MiB L2, 795 TFLOP/s, 3020 GB/s"
  std::string to_string() const;
};

// Variables of one config on one histogram.
struct ConfigVariables {
  int64_t token_blocks = 0;      // g = sum_e ceil(m_e / token_tile)
  int64_t tiles = 0;             // g * ceil(N / feature_tile) * split_k
  int32_t concurrent_ctas = 0;   // SMs * CTAs per SM
  double waves = 0.0;            // tiles / concurrent_ctas (fractional: 0.5 = half the machine idle)
  int32_t k_depth = 0;           // K / k_tile k-steps of one tile (before splitting)
  double tile_intensity = 0.0;   // FLOPs of a full tile / bytes of its A and B loads
  int64_t tile_weight_bytes = 0; // feature_tile * K * 2
};
ConfigVariables config_variables(const TileConfig& config, const GemmShape& shape,
                                 std::span<const int32_t> histogram,
                                 const DeviceConstants& device);

// Variables of the GEMM and histogram, independent of the config.
struct ShapeVariables {
  int64_t slots = 0;                // sum_e m_e
  int32_t active_experts = 0;       // experts with m_e >= 1
  int32_t max_rows = 0;             // busiest expert
  int64_t expert_weight_bytes = 0;  // N * K * 2
  int64_t active_weight_bytes = 0;  // active_experts * expert_weight_bytes
  double flops = 0.0;               // 2 * slots * N * K
  double min_bytes = 0.0;           // active weights + token rows in (K) + out (N)
  double intensity = 0.0;           // flops / min_bytes
  double ridge = 0.0;               // device ridge point
  bool compute_bound = false;       // intensity >= ridge
};
ShapeVariables shape_variables(const GemmShape& shape, std::span<const int32_t> histogram,
                               const DeviceConstants& device);

// ---- Rules. Each is a small predicate; the examples use H100 constants. -------------------

// Fraction of a tile's token rows that are padding when `rows` tokens are cut into tiles.
// Example: 3 rows in a 128-row tile -> 125/128 = 0.977; 3 rows in an 8-wide swapped tile ->
// 5/8 = 0.625; 200 rows in 128-row tiles -> 56/256 = 0.219.
double padding_fraction(int32_t rows, int32_t token_tile);

// Swap-AB helps when an expert's tokens fill at most half of the smallest normal tile: the
// normal tile puts tokens on the MMA M side in granules of 64 rows per consumer warpgroup
// (128 rows for the two-warpgroup kernel), so it computes >= 50% padding, while a swapped tile
// (tokens on MMA N in steps of 8) pads fewer than 8 rows.
// Examples with the 128-row tile: 3 rows -> yes (normal pads 98%, swapped 8-wide 62%);
// 64 -> yes (normal pads exactly 50%, swapped 64-wide 0%); 65 -> no (normal pads 49%, and
// its 128 weight rows per tile are reused by more tokens); 0 -> no (nothing to compute).
// With one warpgroup (64-row tile) the boundary is 32 rows.
bool swap_ab_helps(int32_t rows, int32_t normal_token_tile = 128);

// Split-K helps when the grid leaves more than half the machine idle and each split still has
// a full pipeline ring of k-steps to stream (k depth >= 2 * stages).
// Example (mixtral-8x7b GEMM2 decode, T=1, k=2: N=4096, K=14336, swapped 8x128 s8):
// tiles = 2 * 32 = 64, waves = 64/132 = 0.48 < 0.5, k depth = 224 >= 16 -> yes.
// qwen3-30b-a3b GEMM1 decode (T=1, k=8: N=1536, K=2048): 8 * 12 = 96 tiles, waves 0.73 -> no.
bool split_k_helps(double waves, int32_t k_depth, int32_t stages);
// The largest split in {1, 2, 4} that keeps the grid within one wave, divides the k depth and
// leaves each split >= stages k-steps. Example: 64 tiles on 132 CTAs, k depth 224, 8 stages ->
// 2 (128 tiles; 4 would need 256 > 132).
int32_t choose_split_k(int64_t tiles, int32_t concurrent_ctas, int32_t k_depth, int32_t stages);

// Large tiles (128x256) help when they alone fill at least one full wave and the GEMM is
// compute-bound: a bigger tile reads less per FLOP (85 FLOP/B vs 64 for 128x128), which only
// pays off when the tensor cores are the limit and the wave count stays >= 1.
// Example (mixtral-8x7b GEMM1, T=8192 uniform: m_e ~ 2048, N = 28672, K = 4096): 128x256 tiles
// = 8 * 16 * 112 = 14336 >= 132, intensity ~ 1300 FLOP/B >= 263 -> yes. qwen3-30b-a3b GEMM1 at
// T=2048 uniform (m_e ~ 128, 128 experts): tiles = 128 * 1 * 6 = 768 >= 132 but intensity
// ~ 112 FLOP/B < 263 (each expert's 6 MiB of weights serves only 128 tokens) -> no.
bool large_tiles_help(int64_t large_tiles, int32_t concurrent_ctas, bool compute_bound);

// L2 share of one task: the tasks whose tiles run in the same wave split the L2.
// Example: 132 CTAs over tasks of 24 tiles -> ceil(132 / 24) = 6 tasks in flight (at most the
// active ones) -> 50 MiB / 6 = 8.3 MiB each.
int64_t l2_share_bytes(int64_t l2_bytes, int32_t concurrent_ctas, int64_t tiles_per_task,
                       int32_t active_tasks);
// L2 grouping (group_m > 1) helps when a task has several token blocks (so a weight tile is
// used more than once) and its weights do not stay in its L2 share between those uses.
// Example: mixtral-8x7b GEMM1 at T=8192: 16 token blocks, weights 28672 * 4096 * 2 = 224 MiB >
// 50 MiB -> yes. qwen3-30b-a3b GEMM1 at T=8192 uniform: 4 token blocks, weights 6 MiB < share
// 8.3 MiB -> no. Any expert with 1 token block -> no.
bool l2_grouping_helps(int32_t token_blocks, int64_t task_weight_bytes, int64_t l2_share);

// ---- The region selector ------------------------------------------------------------------

struct RuleVerdicts {
  int32_t experts_swap_ab = 0;     // active experts for which swap-AB helps
  bool split_k = false;
  int32_t split_k_factor = 1;
  bool large_tiles = false;
  int64_t large_tiles_count = 0;   // 128x256 tiles of the experts left in normal orientation
  int32_t experts_l2_grouping = 0; // active experts for which L2 grouping helps
  double waves_before_split = 0.0; // waves of the rule-chosen configs without split-K
};

struct RegionSelection {
  ShapeVariables variables;
  RuleVerdicts verdicts;
  // Per expert: a catalog index from the candidates, -1 for an expert with no tokens.
  std::vector<int32_t> expert_config;
  // Per expert: the config the rules asked for before snapping to the candidate set.
  std::vector<TileConfig> desired;
};

// Applies the rules per expert, then snaps each wish to the nearest candidate (catalog
// indices; empty = every legal catalog entry). Candidates that do not fit the GEMM are ignored.
RegionSelection select_by_regions(const GemmShape& shape, std::span<const int32_t> histogram,
                                  const DeviceConstants& device,
                                  std::span<const int32_t> candidates = {});

// The region selector over the configs the kernel compiles today, as kBuiltinConfigs indices
// per expert: what a plan can run now (GemmPlanSpec::expert_config). Experts with no tokens get
// the index choose_builtin_config gives them, so the result is a drop-in for
// assign_builtin_configs. It differs from that rule where the rules do: 128x256 tiles only
// when the GEMM is compute-bound, not merely when they fill a wave.
std::vector<int32_t> region_builtin_configs(const GemmShape& shape,
                                           std::span<const int32_t> histogram,
                                           const DeviceConstants& device);

// Catalog entries worth measuring for a profile over `histograms` (the designed set), so the
// profile stays within its time budget. Drops legal entries that cannot differ from a kept one
// or that no histogram calls for:
//  - group_m 16 when no expert of any histogram has more than 8 token blocks at that token
//    tile: tile_coord then visits tiles in the same order as with group 8;
//  - split_k > 1 when split_k_helps holds for no histogram (every grid fills half the machine).
// Example: qwen3-30b-a3b GEMM1 (k depth 32) over T in {1..8192}: T=1 gives 8 experts x 12
// feature blocks of swapped 8x128 = 96 tiles (0.73 waves): split-K entries are dropped.
std::vector<int32_t> prune_for_profiling(const GemmShape& shape,
                                         const std::vector<std::vector<int32_t>>& histograms,
                                         const DeviceConstants& device);

// The candidate nearest to `desired`: same orientation first, then a token tile that holds the
// wish without splitting it (smallest such), then nearest feature tile, warpgroups, split and
// group (log2 distance). -1 when candidates is empty.
// Example: desired swapped 40x128, candidates = the compiled set -> swapped 64x128 (the
// smallest compiled token tile >= 40).
int32_t nearest_candidate(const TileConfig& desired, std::span<const int32_t> candidates);

}  // namespace ramp::dispatch
