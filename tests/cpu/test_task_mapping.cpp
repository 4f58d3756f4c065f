// The CTA -> (task, tile) mapping: every tile of every non-empty task is covered exactly once,
// for many expert counts (one- and two-level search), tile configs and orderings.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <vector>

#include "core/plan.h"
#include "core/task_mapping.h"
#include "core/tile_config.h"

namespace ramp {
namespace {

TEST(EmulatedBallot, MatchesTheWarpVoteBitForBit) {
  const int32_t entries[4] = {3, 8, 10, 10};
  EmulatedBallot ballot;
  EXPECT_EQ(ballot(entries, 4, 2), 0b0000u);
  EXPECT_EQ(ballot(entries, 4, 3), 0b0001u);
  EXPECT_EQ(ballot(entries, 4, 9), 0b0011u);
  EXPECT_EQ(ballot(entries, 4, 10), 0b1111u);
  // Lanes past `count` vote false whatever memory follows.
  EXPECT_EQ(ballot(entries, 2, 100), 0b0011u);
}

TEST(MapBlockToTask, WorkedExampleFromTheHeader) {
  const int32_t prefix[3] = {3, 8, 10};
  const int32_t chunk_last[1] = {10};
  EmulatedBallot ballot;
  const TaskTile at3 = map_block_to_task(prefix, chunk_last, 3, 3, ballot);
  EXPECT_EQ(at3.task, 1);
  EXPECT_EQ(at3.tile, 0);
  const TaskTile at9 = map_block_to_task(prefix, chunk_last, 3, 9, ballot);
  EXPECT_EQ(at9.task, 2);
  EXPECT_EQ(at9.tile, 1);
  const TaskTile at0 = map_block_to_task(prefix, chunk_last, 3, 0, ballot);
  EXPECT_EQ(at0.task, 0);
  EXPECT_EQ(at0.tile, 0);
}

// Routing with top_k = 1 whose histogram is `counts` (slots in a shuffled order).
std::vector<int32_t> ids_with_histogram(const std::vector<int32_t>& counts, std::mt19937& rng) {
  std::vector<int32_t> ids;
  for (int32_t e = 0; e < static_cast<int32_t>(counts.size()); ++e) ids.insert(ids.end(), counts[e], e);
  std::shuffle(ids.begin(), ids.end(), rng);
  return ids;
}

std::vector<int32_t> random_histogram(int32_t num_experts, std::mt19937& rng) {
  std::vector<int32_t> counts(num_experts);
  std::uniform_int_distribution<int32_t> empty(0, 2);      // about a third of experts empty
  std::uniform_int_distribution<int32_t> small(1, 40);
  std::uniform_int_distribution<int32_t> big(41, 700);
  std::uniform_int_distribution<int32_t> which(0, 9);
  for (auto& c : counts) c = empty(rng) == 0 ? 0 : (which(rng) == 0 ? big(rng) : small(rng));
  return counts;
}

const std::vector<TileConfig> kOneConfig = {
    {Orientation::kNormal, 128, 128, 64, 4, 2, 8, 1}};
const std::vector<TileConfig> kSeveralConfigs = {
    {Orientation::kNormal, 128, 256, 64, 4, 2, 8, 1},
    {Orientation::kNormal, 64, 128, 64, 4, 2, 3, 1},
    {Orientation::kSwapped, 8, 128, 64, 8, 2, 8, 1},
    {Orientation::kSwapped, 32, 64, 64, 8, 2, 1, 1},
    {Orientation::kNormal, 128, 128, 64, 4, 2, 8, 2},  // split-K doubles the tiles
};

void expect_exact_cover(const Plan& plan, int32_t gemm) {
  const TaskMapView& map = plan.task_map(gemm);
  const int32_t num_tasks = map.header->num_tasks;
  const int32_t total = map.header->total_tiles;
  std::vector<std::vector<int32_t>> hits(num_tasks);
  for (int32_t t = 0; t < num_tasks; ++t) {
    const TaskDesc& task = map.tasks[t];
    const TileConfig& config = plan.gemm(gemm).configs[task.config];
    ASSERT_GT(task.row_count, 0) << "empty experts must not become tasks";
    ASSERT_EQ(task.row_count, plan.routing().expert_counts[task.expert]);
    ASSERT_EQ(task.row_begin, plan.routing().expert_offsets[task.expert]);
    hits[t].assign(config.tiles(task.row_count, plan.gemm(gemm).out_features), 0);
  }
  for (int32_t block = 0; block < total; ++block) {
    const TaskTile at =
        map_block_to_task(map.tile_prefix, map.chunk_last, num_tasks, block, EmulatedBallot{});
    ASSERT_GE(at.task, 0);
    ASSERT_LT(at.task, num_tasks) << "block " << block;
    ASSERT_GE(at.tile, 0);
    ASSERT_LT(at.tile, static_cast<int32_t>(hits[at.task].size())) << "block " << block;
    // The reference: the first task whose inclusive prefix exceeds the block.
    const int32_t expected = static_cast<int32_t>(
        std::upper_bound(map.tile_prefix, map.tile_prefix + num_tasks, block) - map.tile_prefix);
    ASSERT_EQ(at.task, expected) << "block " << block;
    ++hits[at.task][at.tile];
  }
  for (int32_t t = 0; t < num_tasks; ++t) {
    for (size_t tile = 0; tile < hits[t].size(); ++tile) {
      ASSERT_EQ(hits[t][tile], 1) << "task " << t << " tile " << tile;
    }
  }
  // Every non-empty expert is exactly one task.
  int32_t non_empty = 0;
  for (int32_t e = 0; e < plan.routing().num_experts; ++e) non_empty += plan.routing().expert_counts[e] > 0;
  EXPECT_EQ(num_tasks, non_empty);
}

class MappingCoverTest : public ::testing::TestWithParam<int32_t> {};

TEST_P(MappingCoverTest, EveryTileExactlyOnce) {
  const int32_t num_experts = GetParam();
  std::mt19937 rng(1234 + num_experts);
  for (ExpertOrder order :
       {ExpertOrder::kIdentity, ExpertOrder::kHalfInterval, ExpertOrder::kLongestFirst}) {
    for (bool several : {false, true}) {
      const std::vector<int32_t> counts = random_histogram(num_experts, rng);
      const std::vector<int32_t> ids = ids_with_histogram(counts, rng);
      GemmPlanSpec gemm{512, 256, several ? kSeveralConfigs : kOneConfig, {}};
      if (several) {
        std::uniform_int_distribution<int32_t> pick(0, static_cast<int32_t>(kSeveralConfigs.size()) - 1);
        gemm.expert_config.resize(num_experts);
        for (auto& c : gemm.expert_config) c = pick(rng);
      }
      PlanRequest request{ids.data(), static_cast<int32_t>(ids.size()), 1, num_experts, order,
                          {gemm}};
      Plan plan;
      ASSERT_TRUE(Plan::build(request, &plan).is_ok());
      SCOPED_TRACE(std::string("order ") + expert_order_name(order) + (several ? ", several configs" : ", one config"));
      expect_exact_cover(plan, 0);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(ExpertCounts, MappingCoverTest,
                         ::testing::Values(1, 2, 8, 31, 32, 33, 60, 64, 128, 256, 384, 512, 1024,
                                           4096));

TEST(MapBlockToTask, TwoLevelSearchWithAllTasksNonEmpty) {
  // 4096 one-tile tasks: the two-level path, every chunk boundary crossed.
  std::vector<int32_t> ids(4096);
  for (int32_t e = 0; e < 4096; ++e) ids[e] = e;
  PlanRequest request{ids.data(), 4096, 1, 4096, ExpertOrder::kIdentity,
                      {GemmPlanSpec{128, 64, kOneConfig, {}}}};
  Plan plan;
  ASSERT_TRUE(Plan::build(request, &plan).is_ok());
  EXPECT_EQ(plan.task_map(0).header->num_tasks, 4096);
  EXPECT_EQ(plan.task_map(0).header->num_chunks, 128);
  expect_exact_cover(plan, 0);
}

TEST(TileCoord, WorkedExampleFromTheHeader) {
  // 5 token blocks, 3 feature blocks, group_m 2.
  const int32_t expected[15][2] = {{0, 0}, {1, 0}, {0, 1}, {1, 1}, {0, 2}, {1, 2}, {2, 0}, {3, 0},
                                   {2, 1}, {3, 1}, {2, 2}, {3, 2}, {4, 0}, {4, 1}, {4, 2}};
  for (int32_t tile = 0; tile < 15; ++tile) {
    const TileCoord c = tile_coord(tile, 5, 3, 2);
    EXPECT_EQ(c.token_block, expected[tile][0]) << tile;
    EXPECT_EQ(c.feature_block, expected[tile][1]) << tile;
    EXPECT_EQ(c.k_split, 0);
  }
}

TEST(TileCoord, CoversEveryBlockOnceForAnyGrouping) {
  for (int32_t token_blocks : {1, 2, 5, 17, 32}) {
    for (int32_t feature_blocks : {1, 3, 14, 28}) {
      for (int32_t group_m : {1, 2, 8, 64}) {
        for (int32_t split_k : {1, 3}) {
          std::vector<int32_t> seen(token_blocks * feature_blocks * split_k, 0);
          for (int32_t tile = 0; tile < static_cast<int32_t>(seen.size()); ++tile) {
            const TileCoord c = tile_coord(tile, token_blocks, feature_blocks, group_m);
            ASSERT_GE(c.token_block, 0);
            ASSERT_LT(c.token_block, token_blocks);
            ASSERT_GE(c.feature_block, 0);
            ASSERT_LT(c.feature_block, feature_blocks);
            ASSERT_LT(c.k_split, split_k);
            ++seen[(c.k_split * token_blocks + c.token_block) * feature_blocks + c.feature_block];
          }
          for (int32_t hits : seen) ASSERT_EQ(hits, 1);
        }
      }
    }
  }
}

TEST(TileConfig, CountsTilesAndPrintsItself) {
  const TileConfig config{Orientation::kSwapped, 8, 128, 64, 8, 2, 8, 1};
  EXPECT_EQ(config.tiles(0, 1024), 0);
  EXPECT_EQ(config.tiles(3, 1024), 8);
  EXPECT_EQ(config.tiles(9, 1000), 16);
  EXPECT_EQ(config.to_string(), "swapped 8x128 k64 s8 wg2 g8 sk1");
}

}  // namespace
}  // namespace ramp
