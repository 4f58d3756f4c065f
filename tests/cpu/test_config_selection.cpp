// The builtin config rule (dispatch/builtin_configs.h) at its boundaries and in its worked
// example, and the layer planner's forced-config path used by tests and profiling.
#include <gtest/gtest.h>

#include <vector>

#include "dispatch/builtin_configs.h"
#include "dispatch/config_selection.h"

namespace ramp::dispatch {
namespace {

// The worked examples of gemm1_l2_group and its two boundaries.
TEST(ConfigSelection, Gemm1L2GroupRule) {
  const int64_t mib = int64_t{1} << 20;
  // qwen3-30b-a3b T=8192: 2I x H x 2 B = 6 MiB per expert, 65536 slots / 128 experts = 512 rows.
  EXPECT_EQ(gemm1_l2_group(int64_t{2} * 768 * 2048 * 2, 8192 * 8, 128), 1);
  // mixtral-8x7b T=8192: 224 MiB per expert.
  EXPECT_EQ(gemm1_l2_group(int64_t{2} * 14336 * 4096 * 2, 8192 * 2, 8), 8);
  // qwen3-30b-a3b T=2048: 128 rows per expert, one token block: the order hardly matters.
  EXPECT_EQ(gemm1_l2_group(int64_t{2} * 768 * 2048 * 2, 2048 * 8, 128), 8);
  EXPECT_EQ(gemm1_l2_group(16 * mib, 512 * 10, 10), 1);
  EXPECT_EQ(gemm1_l2_group(16 * mib + 16, 512 * 10, 10), 8);
  EXPECT_EQ(gemm1_l2_group(mib, 511 * 10, 10), 8);
  EXPECT_EQ(gemm1_l2_group(mib, 100, 0), 8);
}

// The worked examples of streams_weights and its boundary (64 rows per expert on average).
TEST(ConfigSelection, StreamsWeightsRule) {
  EXPECT_TRUE(streams_weights(512 * 8, 128));    // qwen3-30b-a3b T=512: 32 rows per expert
  EXPECT_FALSE(streams_weights(2048 * 8, 128));  // T=2048: 128 rows
  EXPECT_FALSE(streams_weights(512 * 2, 8));     // mixtral-8x7b T=512: 128 rows
  EXPECT_TRUE(streams_weights(64 * 10, 10));
  EXPECT_FALSE(streams_weights(64 * 10 + 1, 10));
  EXPECT_TRUE(streams_weights(0, 10));
  EXPECT_FALSE(streams_weights(1, 0));
}

TEST(ChooseBuiltinConfig, SwappedTileHoldsTheTokensNormalTilesBeyond64) {
  EXPECT_EQ(choose_builtin_config(1, 0, 132), 5);
  EXPECT_EQ(choose_builtin_config(8, 0, 132), 5);
  EXPECT_EQ(choose_builtin_config(9, 0, 132), 4);
  EXPECT_EQ(choose_builtin_config(16, 0, 132), 4);
  EXPECT_EQ(choose_builtin_config(17, 0, 132), 3);
  EXPECT_EQ(choose_builtin_config(32, 0, 132), 3);
  EXPECT_EQ(choose_builtin_config(33, 0, 132), 2);
  EXPECT_EQ(choose_builtin_config(kSwappedMaxRows, 0, 132), 2);
  EXPECT_EQ(choose_builtin_config(kSwappedMaxRows + 1, 131, 132), 1);
  EXPECT_EQ(choose_builtin_config(kSwappedMaxRows + 1, 132, 132), 0);
}

TEST(ChooseBuiltinConfig, WorkedExampleFromTheHeader) {
  // N = 2048: 500 rows -> 4 token blocks x 8 feature blocks of 128x256; 40 rows count nothing.
  EXPECT_EQ(big_tiles_of_expert(kBuiltinConfigs[0], 500, 2048), 32);
  EXPECT_EQ(big_tiles_of_expert(kBuiltinConfigs[0], 40, 2048), 0);
  // 64 experts of 500 rows: 2048 big tiles fill 132 SMs -> 128x256 everywhere.
  EXPECT_EQ(assign_builtin_configs(std::vector<int32_t>(64, 500), 2048, 132),
            std::vector<int32_t>(64, 0));
  // One such expert: 32 tiles do not fill the machine -> 128x128 for twice the tiles; the
  // 3-token and 40-token experts take swapped tiles.
  EXPECT_EQ(assign_builtin_configs(std::vector<int32_t>{500, 3, 40, 0}, 2048, 132),
            (std::vector<int32_t>{1, 5, 2, 5}));
}

TEST(BuildLayerPlan, ForcedConfigReachesEveryTaskAndIsRangeChecked) {
  const MoeShape shape{8, 2, 128, 64};
  const std::vector<int32_t> ids = {0, 1, 1, 2, 7, 0};
  Plan plan;
  ASSERT_TRUE(build_layer_plan(shape, ids.data(), 3, ExpertOrder::kIdentity, 132, 3, &plan).is_ok());
  for (int32_t gemm = 0; gemm < 2; ++gemm) {
    const TaskMapView& map = plan.task_map(gemm);
    ASSERT_EQ(map.header->num_tasks, 4);
    for (int32_t t = 0; t < map.header->num_tasks; ++t) EXPECT_EQ(map.tasks[t].config, 3);
  }
  const Status status =
      build_layer_plan(shape, ids.data(), 3, ExpertOrder::kIdentity, 132, kNumBuiltinConfigs, &plan);
  EXPECT_EQ(status.code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(status.message(), "forced_config = 6 is outside [0, 6)");
}

}  // namespace
}  // namespace ramp::dispatch
