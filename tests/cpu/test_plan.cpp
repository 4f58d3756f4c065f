// The host planner: histogram, stable per-expert slot lists, orderings, TilePrefix, the byte
// layout, and its request checks.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <sstream>
#include <vector>

#include "core/plan.h"

namespace ramp {
namespace {

const std::vector<TileConfig> kConfigs = {{Orientation::kNormal, 128, 128, 64, 4, 2, 8, 1},
                                          {Orientation::kSwapped, 8, 128, 64, 8, 2, 8, 1}};

PlanRequest request_for(const std::vector<int32_t>& ids, int32_t top_k, int32_t num_experts,
                        ExpertOrder order = ExpertOrder::kIdentity) {
  return PlanRequest{ids.data(), static_cast<int32_t>(ids.size()) / top_k, top_k, num_experts,
                     order, {GemmPlanSpec{256, 128, kConfigs, {}}}};
}

TEST(Plan, HistogramAndStableSlotLists) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int32_t> expert(0, 15);
  const int32_t top_k = 4;
  std::vector<int32_t> ids(97 * top_k);
  for (auto& id : ids) id = expert(rng);
  Plan plan;
  ASSERT_TRUE(Plan::build(request_for(ids, top_k, 16), &plan).is_ok());
  const RoutingView& r = plan.routing();
  EXPECT_EQ(r.num_slots, 97 * top_k);
  EXPECT_EQ(r.header->num_slots, 97 * top_k);
  EXPECT_EQ(r.header->error_bits, 0);
  EXPECT_EQ(r.expert_offsets[0], 0);
  EXPECT_EQ(r.expert_offsets[16], r.num_slots);
  std::vector<int32_t> seen(r.num_slots, 0);
  for (int32_t e = 0; e < 16; ++e) {
    EXPECT_EQ(r.expert_counts[e], std::count(ids.begin(), ids.end(), e));
    EXPECT_EQ(r.expert_offsets[e + 1] - r.expert_offsets[e], r.expert_counts[e]);
    for (int32_t p = r.expert_offsets[e]; p < r.expert_offsets[e + 1]; ++p) {
      const int32_t slot = r.sorted_slots[p];
      EXPECT_EQ(ids[slot], e);
      if (p > r.expert_offsets[e]) EXPECT_LT(r.sorted_slots[p - 1], slot) << "not stable";
      ++seen[slot];
    }
  }
  for (int32_t hits : seen) EXPECT_EQ(hits, 1);
}

TEST(Plan, ATokenListingTheSameExpertTwiceGetsTwoSlots) {
  const std::vector<int32_t> ids = {2, 2, 0, 1};  // token 0 -> expert 2 twice
  Plan plan;
  ASSERT_TRUE(Plan::build(request_for(ids, 2, 3), &plan).is_ok());
  EXPECT_EQ(plan.routing().expert_counts[2], 2);
  const int32_t begin = plan.routing().expert_offsets[2];
  EXPECT_EQ(plan.routing().sorted_slots[begin], 0);
  EXPECT_EQ(plan.routing().sorted_slots[begin + 1], 1);
}

TEST(OrderExperts, IdentityLongestFirstAndHalfInterval) {
  //                               e: 0  1  2  3  4  5  6
  const std::vector<int32_t> tiles = {5, 0, 9, 1, 5, 2, 7};
  EXPECT_EQ(order_experts(tiles, ExpertOrder::kIdentity), (std::vector<int32_t>{0, 2, 3, 4, 5, 6}));
  // Ties (experts 0 and 4, 5 tiles each) keep ascending id.
  EXPECT_EQ(order_experts(tiles, ExpertOrder::kLongestFirst),
            (std::vector<int32_t>{2, 6, 0, 4, 5, 3}));
  // Busy half {2, 6, 0} interleaved with idle half {4, 5, 3}.
  EXPECT_EQ(order_experts(tiles, ExpertOrder::kHalfInterval),
            (std::vector<int32_t>{2, 4, 6, 5, 0, 3}));
  // Odd count: the busy half is the larger one and ends the order.
  const std::vector<int32_t> three = {1, 3, 2};
  EXPECT_EQ(order_experts(three, ExpertOrder::kHalfInterval), (std::vector<int32_t>{1, 0, 2}));
  EXPECT_TRUE(order_experts(std::vector<int32_t>{0, 0}, ExpertOrder::kHalfInterval).empty());
}

TEST(HalfIntervalPosition, WorkedExampleFromTheHeader) {
  const int32_t expected[5] = {0, 2, 4, 1, 3};
  for (int32_t rank = 0; rank < 5; ++rank) EXPECT_EQ(half_interval_position(rank, 5), expected[rank]);
  EXPECT_EQ(half_interval_position(0, 1), 0);
  EXPECT_EQ(half_interval_position(1, 2), 1);
}

TEST(Plan, TaskMapFollowsTheOrderAndPrefixesTiles) {
  // expert 0: 300 rows, expert 1: 0, expert 2: 5, expert 3: 129 (top_k = 1)
  std::vector<int32_t> ids;
  ids.insert(ids.end(), 300, 0);
  ids.insert(ids.end(), 5, 2);
  ids.insert(ids.end(), 129, 3);
  PlanRequest request = request_for(ids, 1, 4, ExpertOrder::kLongestFirst);
  request.gemms[0].expert_config = {0, 0, 1, 0};  // expert 2 uses the swapped 8-token config
  Plan plan;
  ASSERT_TRUE(Plan::build(request, &plan).is_ok());
  const TaskMapView& map = plan.task_map(0);
  // N = 256: normal 128x128 -> 2 feature blocks; swapped 8x128 -> 2 feature blocks.
  // expert 0: 3 token blocks * 2 = 6 tiles; expert 3: 2 * 2 = 4; expert 2: 1 * 2 = 2.
  ASSERT_EQ(map.header->num_tasks, 3);
  EXPECT_EQ(map.tasks[0].expert, 0);
  EXPECT_EQ(map.tasks[1].expert, 3);
  EXPECT_EQ(map.tasks[2].expert, 2);
  EXPECT_EQ(map.tasks[2].config, 1);
  EXPECT_EQ(map.tasks[1].row_begin, 305);
  EXPECT_EQ(map.tasks[1].row_count, 129);
  EXPECT_EQ(map.tile_prefix[0], 6);
  EXPECT_EQ(map.tile_prefix[1], 10);
  EXPECT_EQ(map.tile_prefix[2], 12);
  EXPECT_EQ(map.header->total_tiles, 12);
  EXPECT_EQ(map.header->num_chunks, 1);
  EXPECT_EQ(map.chunk_last[0], 12);
  // Unused entries are zero, as the device pass writes them.
  EXPECT_EQ(map.tasks[3].expert, 0);
  EXPECT_EQ(map.tasks[3].row_count, 0);
  EXPECT_EQ(map.tile_prefix[3], 0);
}

TEST(Plan, ZeroTokensIsAnEmptyPlan) {
  const std::vector<int32_t> ids;
  Plan plan;
  PlanRequest request = request_for(ids, 2, 8);
  request.num_tokens = 0;
  ASSERT_TRUE(Plan::build(request, &plan).is_ok());
  EXPECT_EQ(plan.task_map(0).header->num_tasks, 0);
  EXPECT_EQ(plan.task_map(0).header->total_tiles, 0);
  EXPECT_EQ(plan.routing().expert_offsets[8], 0);
}

TEST(Plan, BytesFollowTheLayout) {
  const std::vector<int32_t> ids = {0, 1, 1, 3};
  PlanRequest request = request_for(ids, 1, 4);
  request.gemms.push_back(request.gemms[0]);
  Plan plan;
  ASSERT_TRUE(Plan::build(request, &plan).is_ok());
  const PlanLayout layout = plan_layout(4, 4, 2);
  ASSERT_EQ(plan.bytes().size(), layout.bytes);
  const std::byte* base = plan.bytes().data();
  EXPECT_EQ(reinterpret_cast<const std::byte*>(plan.routing().header), base + layout.routing);
  EXPECT_EQ(reinterpret_cast<const std::byte*>(plan.task_map(1).header), base + layout.task_maps[1]);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(plan.routing().sorted_slots) % 16, 0u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(plan.task_map(1).tile_prefix) % 16, 0u);
}

TEST(Plan, PrintsAndSerializes) {
  const std::vector<int32_t> ids = {0, 1, 1, 3};
  Plan plan;
  ASSERT_TRUE(Plan::build(request_for(ids, 1, 4), &plan).is_ok());
  std::ostringstream text;
  plan.print(text, 132);
  EXPECT_NE(text.str().find("experts with tokens: 3/4"), std::string::npos) << text.str();
  EXPECT_NE(text.str().find("tasks=3"), std::string::npos) << text.str();
  const std::string json = plan.to_json();
  EXPECT_NE(json.find("\"expert_counts\":[1,2,0,1]"), std::string::npos) << json;
  EXPECT_NE(json.find("\"tile_prefix\":[2,4,6]"), std::string::npos) << json;
}

TEST(Plan, RejectsBadRequestsWithNamedErrors) {
  std::vector<int32_t> ids = {0, 1, 5, 3};
  Plan plan;
  Status status = Plan::build(request_for(ids, 2, 4), &plan);
  EXPECT_EQ(status.code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(status.message(), "topk_ids[1][0] = 5 is outside [0, 4)");

  ids = {0, 1, 2, 3};
  status = Plan::build(request_for(ids, 4, 3), &plan);
  EXPECT_EQ(status.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(status.message().find("top_k = 4"), std::string::npos) << status.message();

  PlanRequest request = request_for(ids, 1, 4);
  request.gemms[0].expert_config = {0, 1, 2, 0};
  status = Plan::build(request, &plan);
  EXPECT_EQ(status.message(), "gemm 0: expert_config[2] = 2 is outside [0, 2)");

  request = request_for(ids, 1, 4);
  request.gemms[0].expert_config = {0, 1};
  EXPECT_EQ(Plan::build(request, &plan).code(), ErrorCode::kShapeMismatch);

  request = request_for(ids, 1, 4);
  request.gemms.clear();
  EXPECT_EQ(Plan::build(request, &plan).code(), ErrorCode::kInvalidArgument);
}

TEST(ExpertOrderName, RoundTrips) {
  for (ExpertOrder order :
       {ExpertOrder::kIdentity, ExpertOrder::kHalfInterval, ExpertOrder::kLongestFirst}) {
    ExpertOrder parsed;
    ASSERT_TRUE(parse_expert_order(expert_order_name(order), &parsed));
    EXPECT_EQ(parsed, order);
  }
  ExpertOrder parsed;
  EXPECT_FALSE(parse_expert_order("random", &parsed));
}

}  // namespace
}  // namespace ramp
