#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "dispatch/builtin_configs.h"
#include "dispatch/config_selection.h"
#include "dispatch/catalog.h"
#include "dispatch/regions.h"

namespace ramp::dispatch {
namespace {

constexpr int64_t kMiB = 1024 * 1024;

const TileConfig& config_at(int32_t index) { return catalog()[static_cast<size_t>(index)].config; }

TEST(DispatchRegions, H100ConstantsAndRidge) {
  const DeviceConstants h100 = DeviceConstants::h100();
  EXPECT_EQ(h100.sm_count, 132);
  EXPECT_EQ(h100.shared_bytes_per_sm, 228 * 1024);
  EXPECT_EQ(h100.l2_bytes, 50 * kMiB);
  EXPECT_NEAR(h100.ridge_flops_per_byte(), 263.2, 0.1);
  EXPECT_NE(h100.to_string().find("132 SMs"), std::string::npos);
}

TEST(DispatchRegions, PaddingFraction) {
  EXPECT_NEAR(padding_fraction(3, 128), 125.0 / 128, 1e-12);
  EXPECT_NEAR(padding_fraction(3, 8), 5.0 / 8, 1e-12);
  EXPECT_NEAR(padding_fraction(200, 128), 56.0 / 256, 1e-12);
  EXPECT_EQ(padding_fraction(0, 128), 0.0);
  EXPECT_EQ(padding_fraction(64, 64), 0.0);
}

TEST(DispatchRegions, SwapAbBoundaryAtHalfANormalTile) {
  EXPECT_FALSE(swap_ab_helps(0));
  EXPECT_TRUE(swap_ab_helps(1));
  EXPECT_TRUE(swap_ab_helps(3));
  EXPECT_TRUE(swap_ab_helps(63));
  EXPECT_TRUE(swap_ab_helps(64));   // the 128-row tile pads exactly 50%
  EXPECT_FALSE(swap_ab_helps(65));
  EXPECT_FALSE(swap_ab_helps(129));  // two 128-row tiles, 49.6% padding
  // One consumer warpgroup: 64-row granule, boundary at 32.
  EXPECT_TRUE(swap_ab_helps(32, 64));
  EXPECT_FALSE(swap_ab_helps(33, 64));
}

TEST(DispatchRegions, SplitKBoundaries) {
  // mixtral-8x7b GEMM2 decode: 64 tiles on 132 SMs (0.48 waves), k depth 224, 8 stages.
  EXPECT_TRUE(split_k_helps(64.0 / 132, 224, 8));
  EXPECT_FALSE(split_k_helps(66.0 / 132, 224, 8));  // exactly half the machine: no
  EXPECT_TRUE(split_k_helps(65.0 / 132, 16, 8));     // k depth exactly 2 x stages: yes
  EXPECT_FALSE(split_k_helps(65.0 / 132, 15, 8));
  EXPECT_FALSE(split_k_helps(0.0, 224, 8));          // nothing to run
  // qwen3-30b-a3b GEMM1 decode: 96 tiles -> 0.73 waves -> no.
  EXPECT_FALSE(split_k_helps(96.0 / 132, 32, 8));

  EXPECT_EQ(choose_split_k(64, 132, 224, 8), 2);   // 256 > 132 rules out 4
  EXPECT_EQ(choose_split_k(33, 132, 224, 8), 4);   // 132 <= 132
  EXPECT_EQ(choose_split_k(34, 132, 224, 8), 2);
  EXPECT_EQ(choose_split_k(10, 132, 12, 4), 2);    // 12 / 4 = 3 < 4 stages per split
  EXPECT_EQ(choose_split_k(10, 132, 11, 2), 1);    // prime depth
}

TEST(DispatchRegions, LargeTilesNeedAFullWaveAndComputeBound) {
  EXPECT_TRUE(large_tiles_help(132, 132, true));
  EXPECT_FALSE(large_tiles_help(131, 132, true));
  EXPECT_FALSE(large_tiles_help(14336, 132, false));

  // mixtral-8x7b GEMM1 at T=8192, uniform-ish: 2048 rows per expert.
  const GemmShape mixtral{8, 2, 28672, 4096};
  const std::vector<int32_t> busy(8, 2048);
  const ShapeVariables v = shape_variables(mixtral, busy, DeviceConstants::h100());
  EXPECT_NEAR(v.intensity, 1303.3, 0.1);
  EXPECT_TRUE(v.compute_bound);
  // qwen3-30b-a3b GEMM1 at T=512 uniform: 32 rows per expert, 31 FLOP/B.
  const GemmShape qwen{128, 8, 1536, 2048};
  const std::vector<int32_t> thin(128, 32);
  const ShapeVariables w = shape_variables(qwen, thin, DeviceConstants::h100());
  EXPECT_NEAR(w.intensity, 30.87, 0.01);
  EXPECT_FALSE(w.compute_bound);
}

TEST(DispatchRegions, L2GroupingBoundaries) {
  // 132 CTAs over 24-tile tasks: 6 tasks in flight share 50 MiB.
  EXPECT_EQ(l2_share_bytes(50 * kMiB, 132, 24, 128), 50 * kMiB / 6);
  EXPECT_EQ(l2_share_bytes(50 * kMiB, 132, 24, 2), 50 * kMiB / 2);  // only 2 active tasks
  EXPECT_EQ(l2_share_bytes(50 * kMiB, 132, 1000, 8), 50 * kMiB);   // one task fills the wave
  // mixtral GEMM1 T=8192: 16 token blocks, 224 MiB of weights.
  EXPECT_TRUE(l2_grouping_helps(16, 224 * kMiB, 50 * kMiB));
  // qwen3-30b GEMM1 T=8192: 4 token blocks, 6 MiB < 8.3 MiB share.
  EXPECT_FALSE(l2_grouping_helps(4, 6 * kMiB, 50 * kMiB / 6));
  EXPECT_FALSE(l2_grouping_helps(1, 224 * kMiB, 50 * kMiB));  // weights used once anyway
  EXPECT_TRUE(l2_grouping_helps(2, 50 * kMiB + 1, 50 * kMiB));
  EXPECT_FALSE(l2_grouping_helps(2, 50 * kMiB, 50 * kMiB));
}

TEST(DispatchRegions, ConfigVariables) {
  const GemmShape shape{4, 2, 1024, 2048};
  const std::vector<int32_t> histogram = {0, 3, 130, 64};
  const DeviceConstants h100 = DeviceConstants::h100();
  const ConfigVariables v = config_variables(kBuiltinConfigs[0], shape, histogram, h100);
  EXPECT_EQ(v.token_blocks, 0 + 1 + 2 + 1);
  EXPECT_EQ(v.tiles, 4 * 4);
  EXPECT_EQ(v.concurrent_ctas, 132);
  EXPECT_NEAR(v.waves, 16.0 / 132, 1e-12);
  EXPECT_EQ(v.k_depth, 32);
  EXPECT_NEAR(v.tile_intensity, 128.0 * 256 / 384, 1e-12);
  EXPECT_EQ(v.tile_weight_bytes, 256 * 2048 * 2);
}

TEST(DispatchRegions, NearestCandidateSnapsToCompiledConfigs) {
  const std::vector<int32_t> compiled = legal_entries(GemmShape{128, 8, 1536, 2048}, EntryFilter::kBuiltinSet);
  TileConfig wish = kBuiltinConfigs[2];  // swapped 64x128
  wish.token_tile = 40;
  wish.stages = static_cast<int8_t>(derive_stages(wish));
  EXPECT_EQ(config_at(nearest_candidate(wish, compiled)), kBuiltinConfigs[2]);
  wish.token_tile = 24;
  EXPECT_EQ(config_at(nearest_candidate(wish, compiled)), kBuiltinConfigs[3]);
  wish.token_tile = 8;
  wish.split_k = 2;  // not compiled: the unsplit one is nearest
  EXPECT_EQ(config_at(nearest_candidate(wish, compiled)), kBuiltinConfigs[5]);
  TileConfig normal = kBuiltinConfigs[1];
  normal.group_m = 1;
  EXPECT_EQ(config_at(nearest_candidate(normal, compiled)), kBuiltinConfigs[1]);
  EXPECT_EQ(nearest_candidate(normal, {}), -1);
}

TEST(DispatchRegions, SelectorDecodeUsesSwappedAndSplitK) {
  // mixtral-8x7b GEMM2, T=1: 2 experts with one token each.
  const GemmShape shape{8, 2, 4096, 14336};
  const std::vector<int32_t> histogram = {1, 0, 0, 1, 0, 0, 0, 0};
  const RegionSelection s = select_by_regions(shape, histogram, DeviceConstants::h100());
  EXPECT_EQ(s.verdicts.experts_swap_ab, 2);
  EXPECT_TRUE(s.verdicts.split_k);
  EXPECT_EQ(s.verdicts.split_k_factor, 2);
  EXPECT_FALSE(s.verdicts.large_tiles);
  ASSERT_EQ(s.expert_config.size(), 8u);
  EXPECT_EQ(s.expert_config[1], -1);
  const TileConfig& chosen = config_at(s.expert_config[0]);
  EXPECT_EQ(chosen.orientation, Orientation::kSwapped);
  EXPECT_EQ(chosen.token_tile, 8);
  EXPECT_EQ(chosen.split_k, 2);

  // With only the compiled set, the same rules land on builtin 5 (no split compiled).
  const std::vector<int32_t> compiled = legal_entries(shape, EntryFilter::kBuiltinSet);
  const RegionSelection c = select_by_regions(shape, histogram, DeviceConstants::h100(), compiled);
  EXPECT_EQ(config_at(c.expert_config[0]), kBuiltinConfigs[5]);
  EXPECT_EQ(c.desired[0].split_k, 2);
}

TEST(DispatchRegions, SelectorPrefillUsesLargeGroupedTiles) {
  // mixtral-8x7b GEMM1 at T=8192: 2048 rows per expert, compute-bound, 224 MiB per task.
  const GemmShape shape{8, 2, 28672, 4096};
  const std::vector<int32_t> histogram(8, 2048);
  const RegionSelection s = select_by_regions(shape, histogram, DeviceConstants::h100());
  EXPECT_TRUE(s.verdicts.large_tiles);
  EXPECT_FALSE(s.verdicts.split_k);
  EXPECT_EQ(s.verdicts.experts_swap_ab, 0);
  EXPECT_EQ(s.verdicts.experts_l2_grouping, 8);
  for (const int32_t index : s.expert_config) {
    EXPECT_EQ(config_at(index), kBuiltinConfigs[0]);  // normal 128x256 g8, the compiled one
  }
}

TEST(DispatchRegions, SelectorMatchesTheBuiltinRuleOnTheCompiledSet) {
  // Restricted to the compiled configs, the region selector agrees with choose_builtin_config
  // (a memory-bound shape, so 128x128 for the normal experts), boundaries 8/16/32/64 included.
  const GemmShape shape{16, 4, 2048, 2048};
  const std::vector<int32_t> histogram = {1, 8, 9, 16, 17, 32, 33, 64, 65, 0, 12, 30, 40, 60, 2, 300};
  const std::vector<int32_t> compiled = legal_entries(shape, EntryFilter::kBuiltinSet);
  const RegionSelection s = select_by_regions(shape, histogram, DeviceConstants::h100(), compiled);
  for (size_t e = 0; e < histogram.size(); ++e) {
    if (histogram[e] == 0) {
      EXPECT_EQ(s.expert_config[e], -1);
      continue;
    }
    const int32_t builtin = catalog()[static_cast<size_t>(s.expert_config[e])].builtin_index;
    EXPECT_EQ(builtin, choose_builtin_config(histogram[e], 0, 132)) << "rows " << histogram[e];
  }
}

TEST(DispatchRegions, RegionBuiltinConfigsIsADropInForTheBuiltinRule) {
  const DeviceConstants h100 = DeviceConstants::h100();
  // Decode-to-mid batches of qwen3-30b-a3b GEMM1: the two rules agree expert by expert.
  const GemmShape shape{16, 4, 1536, 2048};
  const std::vector<int32_t> histogram = {1, 0, 8, 9, 16, 17, 32, 33, 64, 65, 100, 300, 0, 2, 3, 40};
  EXPECT_EQ(region_builtin_configs(shape, histogram, h100),
            assign_builtin_configs(histogram, shape.out_features, h100.sm_count));
  // Many memory-bound 128x256 tiles: the builtin rule takes them because they fill a wave, the
  // regions keep 128x128 because the GEMM is not compute-bound (intensity ~ 178 < 263).
  const std::vector<int32_t> mid(16, 200);
  const GemmShape wide{16, 4, 8192, 2048};
  EXPECT_EQ(assign_builtin_configs(mid, wide.out_features, 132), std::vector<int32_t>(16, 0));
  EXPECT_EQ(region_builtin_configs(wide, mid, h100), std::vector<int32_t>(16, 1));
}

TEST(DispatchRegions, PruningForProfiling) {
  const DeviceConstants h100 = DeviceConstants::h100();
  // qwen3-30b-a3b GEMM1 over small uniform batches: no grid below half a wave, few blocks.
  const GemmShape qwen{128, 8, 1536, 2048};
  std::vector<std::vector<int32_t>> small = {std::vector<int32_t>(128, 0),
                                             std::vector<int32_t>(128, 1),
                                             std::vector<int32_t>(128, 64)};
  for (int e = 0; e < 8; ++e) small[0][static_cast<size_t>(e)] = 1;  // T=1, k=8: 96 tiles
  const std::vector<int32_t> kept = prune_for_profiling(qwen, small, h100);
  const std::vector<int32_t> legal = legal_entries(qwen, EntryFilter::kAll);
  EXPECT_LT(kept.size(), legal.size());
  for (const int32_t index : kept) {
    const TileConfig& c = config_at(index);
    EXPECT_EQ(c.split_k, 1) << c.to_string();
    EXPECT_LE(c.group_m, 8) << c.to_string();
  }
  // Every builtin config survives (they are unsplit, group 8).
  for (const int32_t index : legal_entries(qwen, EntryFilter::kBuiltinSet)) {
    EXPECT_NE(std::find(kept.begin(), kept.end(), index), kept.end());
  }
  // mixtral-8x7b GEMM2 at T=1 asks for split-K, and T=8192 puts 16+ token blocks in a task.
  const GemmShape mixtral{8, 2, 4096, 14336};
  const std::vector<std::vector<int32_t>> both = {{1, 0, 0, 1, 0, 0, 0, 0},
                                                  std::vector<int32_t>(8, 2048)};
  const std::vector<int32_t> mixtral_kept = prune_for_profiling(mixtral, both, h100);
  bool split_kept = false, group16_kept = false;
  for (const int32_t index : legal_entries(mixtral, EntryFilter::kAll)) {
    const TileConfig& c = config_at(index);
    const bool kept_here =
        std::find(mixtral_kept.begin(), mixtral_kept.end(), index) != mixtral_kept.end();
    if (c.split_k > 1) split_kept = split_kept || kept_here;
    if (c.group_m == 16) {
      // 2048 rows: 16 blocks of 128 (group 16 differs from 8), exactly 8 blocks of 256 (same).
      EXPECT_EQ(kept_here, c.token_tile < 256) << c.to_string();
      group16_kept = group16_kept || kept_here;
    } else {
      EXPECT_TRUE(kept_here) << c.to_string();
    }
  }
  EXPECT_TRUE(split_kept);
  EXPECT_TRUE(group16_kept);
}

}  // namespace
}  // namespace ramp::dispatch
