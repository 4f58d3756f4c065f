// The static batching GEMM kernel against CPU references: grouped GEMM (store by slot), layer
// GEMM1 (fused SiLU(gate)·up) and GEMM2 (router-weighted bf16 slot outputs), every builtin
// config forced in turn and mixed in one launch, every compiled catalog entry alone in its own
// launch, across expert counts, token counts and routing kinds. Outputs are poisoned before
// each run and every element is checked.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "core/plan.h"
#include "cpu/reference.h"
#include "cuda/static_batching.h"
#include "dispatch/builtin_configs.h"
#include "dispatch/catalog.h"
#include "dispatch/config_selection.h"
#include "gpu_test_support.h"
#include "ramp/bf16.h"
#include "workloads/routing.h"

namespace ramp {
namespace {

using cuda::GemmEpilogue;
using cuda::StaticBatchedGemm;
using testing::DeviceBuffer;

template <class T>
void upload(DeviceBuffer& buffer, const std::vector<T>& host) {
  RAMP_ASSERT_CUDA(cudaMemcpy(buffer.as<void>(), host.data(), host.size() * sizeof(T),
                              cudaMemcpyHostToDevice));
}
template <class T>
std::vector<T> download(const DeviceBuffer& buffer, size_t count) {
  std::vector<T> host(count);
  EXPECT_EQ(cudaMemcpy(host.data(), buffer.as<void>(), count * sizeof(T), cudaMemcpyDeviceToHost),
            cudaSuccess);
  return host;
}

// 0x7fc0 (bf16 NaN) in every element; fp32 buffers read it as NaN too (0x7fc07fc0).
void poison(DeviceBuffer& buffer) {
  std::vector<uint16_t> nan(buffer.bytes() / 2, 0x7fc0);
  RAMP_ASSERT_CUDA(
      cudaMemcpy(buffer.as<void>(), nan.data(), nan.size() * 2, cudaMemcpyHostToDevice));
}

// A host plan copied into a device workspace, with views at the plan_layout offsets.
struct DevicePlan {
  DeviceBuffer bytes;
  RoutingView routing;
  std::vector<TaskMapView> task_maps;
  std::vector<int32_t> total_tiles;
};

void upload_plan(const Plan& plan, int32_t num_experts, int32_t top_k, DevicePlan* out) {
  const auto host = plan.bytes();
  out->bytes = DeviceBuffer(host.size());
  RAMP_ASSERT_CUDA(
      cudaMemcpy(out->bytes.as<void>(), host.data(), host.size(), cudaMemcpyHostToDevice));
  const int32_t slots = plan.routing().num_slots;
  const PlanLayout layout = plan_layout(num_experts, slots, plan.num_gemms());
  char* base = out->bytes.as<char>();
  out->routing = routing_view_at(base + layout.routing, num_experts, top_k, slots);
  for (int32_t g = 0; g < plan.num_gemms(); ++g) {
    out->task_maps.push_back(
        task_map_view_at(base + layout.task_maps[g], plan.task_map(g).max_tasks));
    out->total_tiles.push_back(plan.task_map(g).header->total_tiles);
  }
}

workloads::Routing make_routing(const std::string& kind, int32_t tokens, int32_t experts,
                                int32_t top_k, uint64_t seed) {
  workloads::RoutingSpec spec;
  EXPECT_TRUE(workloads::RoutingSpec::parse(kind, &spec)) << kind;
  return workloads::generate_routing(spec, tokens, experts, top_k, seed);
}

// Mixed: expert e uses config e mod (number of builtins), so one launch runs every config.
constexpr int32_t kMixedConfigs = -2;
constexpr int32_t kBuiltinChoice = -1;
// Modes from kCatalogMode on: catalog entry (mode - kCatalogMode) alone, every expert using it
// (a launch of that entry's own kernel instance).
constexpr int32_t kCatalogMode = 1000;

std::vector<GemmPlanSpec> gemm_specs(const std::vector<std::pair<int32_t, int32_t>>& n_k,
                                     int32_t num_experts, int32_t config_mode) {
  std::vector<GemmPlanSpec> specs;
  for (const auto& [n, k] : n_k) {
    GemmPlanSpec spec;
    spec.out_features = n;
    spec.in_features = k;
    if (config_mode >= kCatalogMode) {
      spec.configs = {dispatch::kCatalogTable.entries[config_mode - kCatalogMode]};
      spec.expert_config.assign(num_experts, 0);
      specs.push_back(std::move(spec));
      continue;
    }
    spec.configs.assign(std::begin(dispatch::kBuiltinConfigs), std::end(dispatch::kBuiltinConfigs));
    spec.expert_config.resize(num_experts);
    for (int32_t e = 0; e < num_experts; ++e) {
      spec.expert_config[e] = config_mode >= 0 ? config_mode : e % dispatch::kNumBuiltinConfigs;
    }
    specs.push_back(std::move(spec));
  }
  return specs;
}

Status build_plan(const workloads::Routing& routing, int32_t config_mode,
                  const std::vector<std::pair<int32_t, int32_t>>& n_k, ExpertOrder order,
                  Plan* plan) {
  if (config_mode == kBuiltinChoice && n_k.size() == 1) {
    GroupedGemmArgs args;
    args.num_tokens = routing.num_tokens;
    args.top_k = routing.top_k;
    args.num_experts = routing.num_experts;
    args.out_features = n_k[0].first;
    args.in_features = n_k[0].second;
    args.topk_ids = routing.topk_ids.data();
    return dispatch::build_grouped_gemm_plan(args, order, dispatch::kDefaultSmCount, -1, plan);
  }
  PlanRequest request;
  request.topk_ids = routing.topk_ids.data();
  request.num_tokens = routing.num_tokens;
  request.top_k = routing.top_k;
  request.num_experts = routing.num_experts;
  request.order = order;
  request.gemms = gemm_specs(n_k, routing.num_experts, config_mode);
  return Plan::build(request, plan);
}

std::string config_name(int32_t mode) {
  if (mode == kMixedConfigs) return "mixed";
  if (mode == kBuiltinChoice) return "builtin";
  if (mode >= kCatalogMode) return "catalog" + std::to_string(mode - kCatalogMode);
  return "config" + std::to_string(mode);
}

// The plan GEMM's config set for the launch, and split-K scratch when the set needs it.
void attach_configs(const GemmPlanSpec& spec, StaticBatchedGemm* gemm, DeviceBuffer* scratch) {
  gemm->configs = spec.configs.data();
  gemm->num_configs = static_cast<int32_t>(spec.configs.size());
  const size_t bytes = cuda::static_batched_gemm_split_scratch_bytes(
      gemm->configs, gemm->num_configs, gemm->max_total_tiles);
  if (bytes > 0) {
    *scratch = DeviceBuffer(bytes);
    // Garbage partials and counters: the launch must not depend on the scratch's contents.
    std::vector<uint8_t> junk(bytes, 0x5a);
    RAMP_ASSERT_CUDA(cudaMemcpy(scratch->as<void>(), junk.data(), bytes, cudaMemcpyHostToDevice));
    gemm->split_scratch = scratch->as<void>();
    gemm->split_scratch_bytes = bytes;
  }
}

// ---------------------------------------------------------------- grouped GEMM

struct GroupedCase {
  int32_t experts, tokens, top_k;
  std::string routing;
  int32_t config_mode;
  int32_t n = 336, k = 192;  // N: partial 128- and 256-wide feature tiles; K: 3 k-blocks
  int32_t out_pad = 0;       // out_row_stride = N + out_pad; the pad must stay untouched
};

std::string case_name(const GroupedCase& c) {
  std::string routing = c.routing;
  for (char& ch : routing) if (ch == '.') ch = '_';
  return "E" + std::to_string(c.experts) + "_T" + std::to_string(c.tokens) + "_k" +
         std::to_string(c.top_k) + "_" + routing + "_" + config_name(c.config_mode) + "_N" +
         std::to_string(c.n) + "_K" + std::to_string(c.k) +
         (c.out_pad ? "_pad" + std::to_string(c.out_pad) : "");
}

// gtest prints a parameter in every test's listing; without this it dumps the struct's bytes.
void PrintTo(const GroupedCase& c, std::ostream* os) { *os << case_name(c); }

// The task map header's tile counter, which every launch must leave at 0 (TaskMapHeader).
int32_t tile_counter_after_launch(const TaskMapView& map) {
  TaskMapHeader header{};
  EXPECT_EQ(cudaMemcpy(&header, map.header, sizeof(header), cudaMemcpyDeviceToHost), cudaSuccess);
  return header.next_tile;
}

// Runs one grouped GEMM on the device `launches` times on one uploaded plan (the output
// poisoned before each); returns y [S, N] (bf16) of the last launch, after checking that every
// launch wrote the same bits and left the plan's tile counter at 0, or fails the test.
std::vector<bf16> run_grouped_on_device(const GroupedCase& c, const workloads::Routing& routing,
                                        const Plan& plan, const std::vector<bf16>& x,
                                        const std::vector<bf16>& w, int32_t tile_bound_slack,
                                        int32_t launches = 1) {
  const int64_t slots = int64_t{c.tokens} * c.top_k;
  DevicePlan device_plan;
  upload_plan(plan, c.experts, c.top_k, &device_plan);
  DeviceBuffer x_dev(std::max<size_t>(x.size(), 8) * 2), w_dev(w.size() * 2);
  const int64_t stride = c.n + c.out_pad;
  DeviceBuffer y_dev(std::max<int64_t>(slots, 1) * stride * 2);
  upload(x_dev, x);
  upload(w_dev, w);
  poison(y_dev);

  StaticBatchedGemm gemm{};
  gemm.epilogue = GemmEpilogue::kStoreBySlot;
  gemm.routing = device_plan.routing;
  gemm.task_map = device_plan.task_maps[0];
  gemm.a = x_dev.as<void>();
  gemm.a_row_stride = c.k;
  gemm.w = w_dev.as<void>();
  gemm.out_features = c.n;
  gemm.in_features = c.k;
  gemm.out = y_dev.as<void>();
  gemm.out_row_stride = stride;
  gemm.topk_weights = nullptr;
  gemm.max_total_tiles = device_plan.total_tiles[0] + tile_bound_slack;
  DeviceBuffer split_scratch;
  attach_configs(plan.gemm(0), &gemm, &split_scratch);
  std::vector<bf16> strided;
  for (int32_t launch = 0; launch < launches; ++launch) {
    if (launch > 0) poison(y_dev);
    const Status status = cuda::launch_static_batched_gemm(gemm, nullptr);
    EXPECT_TRUE(status.is_ok()) << status.to_string();
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_EQ(tile_counter_after_launch(gemm.task_map), 0) << "launch " << launch;
    std::vector<bf16> this_launch = download<bf16>(y_dev, static_cast<size_t>(slots) * stride);
    if (launch > 0) {
      EXPECT_EQ(std::memcmp(this_launch.data(), strided.data(), strided.size() * sizeof(bf16)), 0)
          << "launch " << launch << " differs from launch 0";
    }
    strided = std::move(this_launch);
  }
  (void)routing;
  std::vector<bf16> y(static_cast<size_t>(slots) * c.n);
  int64_t pad_written = 0;
  for (int64_t slot = 0; slot < slots; ++slot) {
    for (int32_t n = 0; n < c.n; ++n) y[slot * c.n + n] = strided[slot * stride + n];
    for (int32_t n = c.n; n < stride; ++n) pad_written += strided[slot * stride + n].bits != 0x7fc0;
  }
  EXPECT_EQ(pad_written, 0) << "features past N were stored";
  return y;
}

// The CPU reference y [S, N] of a case's grouped GEMM.
std::vector<double> grouped_reference(const GroupedCase& c, const workloads::Routing& routing,
                                      const std::vector<bf16>& x, const std::vector<bf16>& w) {
  GroupedGemmArgs args;
  args.num_tokens = c.tokens;
  args.top_k = c.top_k;
  args.num_experts = c.experts;
  args.out_features = c.n;
  args.in_features = c.k;
  args.x = x.data();
  args.w = w.data();
  args.topk_ids = routing.topk_ids.data();
  return cpu::reference_grouped_gemm(args);
}

void check_grouped(const GroupedCase& c) {
  const uint64_t seed = 1000003ull * c.experts + 7919ull * c.tokens + c.config_mode + 17;
  const workloads::Routing routing = make_routing(c.routing, c.tokens, c.experts, c.top_k, seed);
  Plan plan;
  const Status built = build_plan(routing, c.config_mode, {{c.n, c.k}}, ExpertOrder::kHalfInterval,
                                  &plan);
  ASSERT_TRUE(built.is_ok()) << built.to_string();

  std::vector<bf16> x(static_cast<size_t>(c.tokens) * c.k), w(static_cast<size_t>(c.experts) * c.n * c.k);
  workloads::fill_random_bf16(x, seed + 1, 1.0f);
  workloads::fill_random_bf16(w, seed + 2, 0.2f);

  const std::vector<bf16> y = run_grouped_on_device(c, routing, plan, x, w, c.tokens % 3 == 0 ? 0 : 97);
  if (c.tokens == 0) return;

  const std::vector<double> want = grouped_reference(c, routing, x, w);
  int64_t unwritten = 0;
  for (const bf16 v : y) unwritten += std::isnan(v.to_float()) ? 1 : 0;
  EXPECT_EQ(unwritten, 0) << "elements left poisoned";
  const double error = cpu::relative_frobenius_error(y, want);
  EXPECT_LE(error, 5e-3) << case_name(c);
}

class GroupedGemmTest : public ::testing::TestWithParam<GroupedCase> {};

TEST_P(GroupedGemmTest, MatchesReference) {
  RAMP_SKIP_WITHOUT_DEVICE();
  check_grouped(GetParam());
}

std::vector<GroupedCase> forced_config_cases() {
  std::vector<GroupedCase> cases;
  for (int32_t config = 0; config < dispatch::kNumBuiltinConfigs; ++config) {
    cases.push_back({8, 1000, 2, "uniform", config});
    cases.push_back({64, 64, 8, "zipf1.0", config});
    cases.push_back({1, 7, 1, "balanced", config});
    cases.push_back({60, 1000, 4, "worst", config});
    cases.push_back({128, 300, 6, "hot", config, 128, 64});  // N = one 128 tile, K = one block
    // Row ends that are not 16-byte multiples (bulk store + element tail), and a stride that
    // rules bulk stores out (direct register stores).
    cases.push_back({16, 500, 4, "zipf1.0", config, 340, 128, 4});
    cases.push_back({16, 500, 4, "uniform", config, 336, 128, 1});
  }
  return cases;
}

std::vector<GroupedCase> sweep_cases() {
  std::vector<GroupedCase> cases;
  const std::vector<std::pair<int32_t, std::vector<int32_t>>> experts_tokens = {
      {1, {0, 1, 7, 64}},       {8, {1, 7, 64, 1000}},  {60, {7, 64, 1000}},
      {64, {1, 64, 1000, 4096}}, {128, {7, 1000}},      {256, {64, 1000}},
      {512, {1, 1000, 4096}},
  };
  for (const auto& [experts, token_counts] : experts_tokens) {
    const int32_t top_k = experts >= 8 ? 8 : experts;
    for (const int32_t tokens : token_counts) {
      for (const std::string& routing : workloads::all_routing_names()) {
        cases.push_back({experts, tokens, top_k, routing, kMixedConfigs});
        cases.push_back({experts, tokens, top_k, routing, kBuiltinChoice});
      }
    }
  }
  return cases;
}

// Every catalog entry this build compiled, alone in its own launch. K = 256 (4 k-blocks) so
// split-K 2 and 4 divide it; N = 336 leaves partial 64-, 128- and 256-wide feature tiles.
// Decode-like (3 tokens over 64 experts), mid (zipf), and several token blocks per expert.
std::vector<GroupedCase> catalog_cases() {
  std::vector<GroupedCase> cases;
  for (const int32_t index : dispatch::compiled_catalog_indices()) {
    const int32_t mode = kCatalogMode + index;
    cases.push_back({64, 3, 8, "uniform", mode, 336, 256});
    cases.push_back({16, 500, 4, "zipf1.0", mode, 336, 256});
    cases.push_back({8, 1000, 2, "uniform", mode, 336, 256, 8});
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(ForcedConfig, GroupedGemmTest, ::testing::ValuesIn(forced_config_cases()),
                         [](const auto& info) { return case_name(info.param); });
INSTANTIATE_TEST_SUITE_P(Sweep, GroupedGemmTest, ::testing::ValuesIn(sweep_cases()),
                         [](const auto& info) { return case_name(info.param); });
INSTANTIATE_TEST_SUITE_P(Catalog, GroupedGemmTest, ::testing::ValuesIn(catalog_cases()),
                         [](const auto& info) { return case_name(info.param); });

TEST(StaticBatchedGemm, DeterministicAcrossRuns) {
  RAMP_SKIP_WITHOUT_DEVICE();
  const GroupedCase c{64, 1000, 8, "zipf1.0", kMixedConfigs, 512, 256};
  const workloads::Routing routing = make_routing(c.routing, c.tokens, c.experts, c.top_k, 5);
  Plan plan;
  ASSERT_TRUE(build_plan(routing, c.config_mode, {{c.n, c.k}}, ExpertOrder::kHalfInterval, &plan).is_ok());
  std::vector<bf16> x(static_cast<size_t>(c.tokens) * c.k), w(static_cast<size_t>(c.experts) * c.n * c.k);
  workloads::fill_random_bf16(x, 11, 1.0f);
  workloads::fill_random_bf16(w, 12, 0.2f);
  const std::vector<bf16> first = run_grouped_on_device(c, routing, plan, x, w, 0);
  const std::vector<bf16> second = run_grouped_on_device(c, routing, plan, x, w, 0);
  ASSERT_EQ(first.size(), second.size());
  EXPECT_EQ(std::memcmp(first.data(), second.data(), first.size() * sizeof(bf16)), 0);
}

// Tiles are taken from a counter in the plan's task map header (every launch resets it): one
// uploaded plan launched again and again must compute the same output each time. Cases: many
// more tiles than CTAs, fewer tiles than CTAs (the tile bound's slack makes the grid larger
// than the tile count), and no tile at all.
TEST(StaticBatchedGemm, RelaunchesOnOnePlanTakeEveryTileEachTime) {
  RAMP_SKIP_WITHOUT_DEVICE();
  const std::vector<std::pair<GroupedCase, int32_t>> cases = {
      {GroupedCase{64, 1000, 8, "zipf1.0", kMixedConfigs, 512, 256}, 0},
      {GroupedCase{8, 7, 2, "uniform", kBuiltinChoice, 256, 128}, 97},
      {GroupedCase{8, 0, 2, "uniform", kBuiltinChoice, 256, 128}, 97}};
  for (const auto& [c, tile_bound_slack] : cases) {
    SCOPED_TRACE(case_name(c));
    const workloads::Routing routing = make_routing(c.routing, c.tokens, c.experts, c.top_k, 21);
    Plan plan;
    ASSERT_TRUE(
        build_plan(routing, c.config_mode, {{c.n, c.k}}, ExpertOrder::kHalfInterval, &plan).is_ok());
    std::vector<bf16> x(static_cast<size_t>(c.tokens) * c.k);
    std::vector<bf16> w(static_cast<size_t>(c.experts) * c.n * c.k);
    workloads::fill_random_bf16(x, 31, 1.0f);
    workloads::fill_random_bf16(w, 32, 0.2f);
    const std::vector<bf16> y = run_grouped_on_device(c, routing, plan, x, w, tile_bound_slack, 4);
    if (c.tokens == 0) continue;
    EXPECT_LE(cpu::relative_frobenius_error(y, grouped_reference(c, routing, x, w)), 5e-3);
  }
}

// Split-K's completing slice sums the partials in slice order, whichever slice finishes last:
// the output must be bitwise the same run after run.
TEST(StaticBatchedGemm, SplitKDeterministicAcrossRuns) {
  RAMP_SKIP_WITHOUT_DEVICE();
  int32_t tested = 0;
  for (const int32_t index : dispatch::compiled_catalog_indices()) {
    if (dispatch::kCatalogTable.entries[index].split_k == 1) continue;
    const GroupedCase c{64, 300, 8, "zipf1.0", kCatalogMode + index, 512, 1024};
    const workloads::Routing routing = make_routing(c.routing, c.tokens, c.experts, c.top_k, 9);
    Plan plan;
    ASSERT_TRUE(
        build_plan(routing, c.config_mode, {{c.n, c.k}}, ExpertOrder::kHalfInterval, &plan).is_ok());
    std::vector<bf16> x(static_cast<size_t>(c.tokens) * c.k),
        w(static_cast<size_t>(c.experts) * c.n * c.k);
    workloads::fill_random_bf16(x, 13, 1.0f);
    workloads::fill_random_bf16(w, 14, 0.2f);
    const std::vector<bf16> first = run_grouped_on_device(c, routing, plan, x, w, 0);
    for (int run = 0; run < 3; ++run) {
      const std::vector<bf16> again = run_grouped_on_device(c, routing, plan, x, w, 0);
      ASSERT_EQ(first.size(), again.size());
      EXPECT_EQ(std::memcmp(first.data(), again.data(), first.size() * sizeof(bf16)), 0)
          << dispatch::kCatalogTable.entries[index].to_string() << " run " << run;
    }
    ++tested;
  }
  if (tested == 0) GTEST_SKIP() << "no split-K entry is compiled in this build";
}

// A structurally valid one-expert grouped GEMM (N = 64, K = 128) over a dummy buffer, for the
// tests that check what the launcher refuses before anything runs.
StaticBatchedGemm refusal_probe(DeviceBuffer& dummy) {
  StaticBatchedGemm gemm{};
  gemm.epilogue = GemmEpilogue::kStoreBySlot;
  gemm.routing.num_experts = 1;
  gemm.routing.top_k = 1;
  gemm.routing.sorted_slots = dummy.as<int32_t>();
  gemm.task_map.header = dummy.as<TaskMapHeader>();
  gemm.a = gemm.w = gemm.out = dummy.as<void>();
  gemm.a_row_stride = 128;
  gemm.out_features = 64;
  gemm.in_features = 128;
  gemm.out_row_stride = 64;
  gemm.max_total_tiles = 1;
  return gemm;
}

// A set the build has no kernel for is refused before anything runs.
TEST(StaticBatchedGemm, RejectsConfigSetsWithoutAKernel) {
  RAMP_SKIP_WITHOUT_DEVICE();
  DeviceBuffer dummy(4096);
  StaticBatchedGemm gemm = refusal_probe(dummy);
  const TileConfig two[2] = {dispatch::kBuiltinConfigs[0], dispatch::kBuiltinConfigs[1]};
  gemm.configs = two;
  gemm.num_configs = 2;
  const Status two_configs = cuda::launch_static_batched_gemm(gemm, nullptr);
  EXPECT_EQ(two_configs.code(), ErrorCode::kUnsupportedShape);
  EXPECT_NE(two_configs.message().find("builtin config set"), std::string::npos)
      << two_configs.message();
  TileConfig odd = dispatch::kBuiltinConfigs[0];
  odd.stages = 3;  // not the derived depth: not a catalog entry
  gemm.configs = &odd;
  gemm.num_configs = 1;
  const Status not_in_catalog = cuda::launch_static_batched_gemm(gemm, nullptr);
  EXPECT_EQ(not_in_catalog.code(), ErrorCode::kUnsupportedShape);
  EXPECT_NE(not_in_catalog.message().find("not in the catalog"), std::string::npos)
      << not_in_catalog.message();
  // A split-K entry without scratch.
  for (const int32_t index : dispatch::compiled_catalog_indices()) {
    const TileConfig& config = dispatch::kCatalogTable.entries[index];
    if (config.split_k == 1) continue;
    gemm.configs = &config;
    const Status no_scratch = cuda::launch_static_batched_gemm(gemm, nullptr);
    EXPECT_EQ(no_scratch.code(), ErrorCode::kInvalidArgument) << config.to_string();
    EXPECT_NE(no_scratch.message().find("split_scratch"), std::string::npos)
        << no_scratch.message();
    break;
  }
}

TEST(StaticBatchedGemm, RejectsUntileableShapes) {
  RAMP_SKIP_WITHOUT_DEVICE();
  DeviceBuffer dummy(4096);
  StaticBatchedGemm gemm = refusal_probe(dummy);
  gemm.a_row_stride = 96;
  gemm.in_features = 96;  // not a multiple of 64
  EXPECT_EQ(cuda::launch_static_batched_gemm(gemm, nullptr).code(), ErrorCode::kUnsupportedShape);
  gemm.in_features = 128;
  gemm.a_row_stride = 130;  // rows not 16-byte aligned
  EXPECT_EQ(cuda::launch_static_batched_gemm(gemm, nullptr).code(), ErrorCode::kMisaligned);
  gemm.a_row_stride = 128;
  gemm.epilogue = GemmEpilogue::kSiluGateUp;
  gemm.out_features = 2 * 12;  // I = 12 is not a multiple of 8
  EXPECT_EQ(cuda::launch_static_batched_gemm(gemm, nullptr).code(), ErrorCode::kUnsupportedShape);
}

// ---------------------------------------------------------------- layer GEMM1 + GEMM2

struct LayerCase {
  int32_t experts, tokens, top_k;
  std::string routing;
  int32_t config_mode;
  int32_t hidden = 320, intermediate = 192;  // GEMM1 N = 384, GEMM2 N = 320: partial tiles
};

std::string layer_case_name(const LayerCase& c) {
  std::string routing = c.routing;
  for (char& ch : routing) if (ch == '.') ch = '_';
  return "E" + std::to_string(c.experts) + "_T" + std::to_string(c.tokens) + "_k" +
         std::to_string(c.top_k) + "_" + routing + "_" + config_name(c.config_mode) + "_H" +
         std::to_string(c.hidden) + "_I" + std::to_string(c.intermediate);
}

void PrintTo(const LayerCase& c, std::ostream* os) { *os << layer_case_name(c); }

double silu(double x) { return x / (1.0 + std::exp(-x)); }

// A layer's GEMM1 launch: intermediate [S, I] (sorted rows) = SiLU(hidden . W_gate^T) * (hidden .
// W_up^T), with w13 [E, 2I, H] and hidden [T, H]; configs are attached by the caller.
StaticBatchedGemm layer_gemm1(const RoutingView& routing, const TaskMapView& task_map,
                              DeviceBuffer& hidden, DeviceBuffer& w13, DeviceBuffer& intermediate,
                              int32_t H, int32_t I, int32_t max_total_tiles) {
  StaticBatchedGemm gemm1{};
  gemm1.epilogue = GemmEpilogue::kSiluGateUp;
  gemm1.routing = routing;
  gemm1.task_map = task_map;
  gemm1.a = hidden.as<void>();
  gemm1.a_row_stride = H;
  gemm1.w = w13.as<void>();
  gemm1.out_features = 2 * I;
  gemm1.in_features = H;
  gemm1.out = intermediate.as<void>();
  gemm1.out_row_stride = I;
  gemm1.max_total_tiles = max_total_tiles;
  return gemm1;
}

class LayerGemmTest : public ::testing::TestWithParam<LayerCase> {};

TEST_P(LayerGemmTest, Gemm1AndGemm2MatchReference) {
  RAMP_SKIP_WITHOUT_DEVICE();
  const LayerCase& c = GetParam();
  const int32_t H = c.hidden, I = c.intermediate, E = c.experts, k = c.top_k;
  const uint64_t seed = 31ull * E + 1009ull * c.tokens + c.config_mode + 3;
  const workloads::Routing routing = make_routing(c.routing, c.tokens, E, k, seed);
  Plan plan;
  if (c.config_mode == kBuiltinChoice) {
    MoeShape shape;
    shape.num_experts = E;
    shape.top_k = k;
    shape.hidden = H;
    shape.intermediate = I;
    const Status built = dispatch::build_layer_plan(shape, routing.topk_ids.data(), c.tokens,
                                                    ExpertOrder::kHalfInterval,
                                                    dispatch::kDefaultSmCount, -1, &plan);
    ASSERT_TRUE(built.is_ok()) << built.to_string();
  } else {
    const Status built = build_plan(routing, c.config_mode, {{2 * I, H}, {H, I}},
                                    ExpertOrder::kHalfInterval, &plan);
    ASSERT_TRUE(built.is_ok()) << built.to_string();
  }
  const int64_t S = int64_t{c.tokens} * k;

  std::vector<bf16> hidden(static_cast<size_t>(c.tokens) * H);
  std::vector<bf16> w13(static_cast<size_t>(E) * 2 * I * H), w2(static_cast<size_t>(E) * H * I);
  workloads::fill_random_bf16(hidden, seed + 1, 1.0f);
  workloads::fill_random_bf16(w13, seed + 2, 0.15f);
  workloads::fill_random_bf16(w2, seed + 3, 0.15f);

  DevicePlan device_plan;
  upload_plan(plan, E, k, &device_plan);
  DeviceBuffer hidden_dev(std::max<size_t>(hidden.size(), 8) * 2), w13_dev(w13.size() * 2),
      w2_dev(w2.size() * 2), weights_dev(std::max<int64_t>(S, 1) * 4),
      inter_dev(std::max<int64_t>(S, 1) * I * 2), slot_out_dev(std::max<int64_t>(S, 1) * H * 2);
  upload(hidden_dev, hidden);
  upload(w13_dev, w13);
  upload(w2_dev, w2);
  upload(weights_dev, routing.topk_weights);
  poison(inter_dev);
  poison(slot_out_dev);

  StaticBatchedGemm gemm1 = layer_gemm1(device_plan.routing, device_plan.task_maps[0], hidden_dev,
                                        w13_dev, inter_dev, H, I, device_plan.total_tiles[0]);
  StaticBatchedGemm gemm2{};
  gemm2.epilogue = GemmEpilogue::kRouterWeighted;
  gemm2.routing = device_plan.routing;
  gemm2.task_map = device_plan.task_maps[1];
  gemm2.a = inter_dev.as<void>();
  gemm2.a_row_stride = I;
  gemm2.w = w2_dev.as<void>();
  gemm2.out_features = H;
  gemm2.in_features = I;
  gemm2.out = slot_out_dev.as<void>();
  gemm2.out_row_stride = H;
  gemm2.topk_weights = weights_dev.as<float>();
  gemm2.max_total_tiles = device_plan.total_tiles[1];
  DeviceBuffer split_scratch1, split_scratch2;
  attach_configs(plan.gemm(0), &gemm1, &split_scratch1);
  attach_configs(plan.gemm(1), &gemm2, &split_scratch2);
  const Status status1 = cuda::launch_static_batched_gemm(gemm1, nullptr);
  ASSERT_TRUE(status1.is_ok()) << status1.to_string();
  const Status status2 = cuda::launch_static_batched_gemm(gemm2, nullptr);
  ASSERT_TRUE(status2.is_ok()) << status2.to_string();
  RAMP_ASSERT_CUDA(cudaDeviceSynchronize());
  if (S == 0) return;

  const std::vector<bf16> inter = download<bf16>(inter_dev, static_cast<size_t>(S) * I);
  const std::vector<bf16> slot_out = download<bf16>(slot_out_dev, static_cast<size_t>(S) * H);

  // GEMM1: intermediate[p] = silu(w13_gate[e] · hidden[t]) * (w13_up[e] · hidden[t]) at the
  // sorted row p (slot = sorted_slots[p], t = slot / k, e = topk_ids[slot]).
  const RoutingView& host_routing = plan.routing();
  double err1 = 0, norm1 = 0, err2 = 0, norm2 = 0;
  int64_t unwritten = 0;
  for (int64_t p = 0; p < S; ++p) {
    const int32_t slot = host_routing.sorted_slots[p];
    const int32_t token = slot / k;
    const int32_t e = routing.topk_ids[slot];
    const bf16* x = hidden.data() + int64_t{token} * H;
    for (int32_t col = 0; col < I; ++col) {
      const bf16* gate_row = w13.data() + (int64_t{e} * 2 * I + col) * H;
      const bf16* up_row = w13.data() + (int64_t{e} * 2 * I + I + col) * H;
      double g = 0, u = 0;
      for (int32_t h = 0; h < H; ++h) {
        g += double(x[h].to_float()) * gate_row[h].to_float();
        u += double(x[h].to_float()) * up_row[h].to_float();
      }
      const double want = silu(g) * u;
      const float got = inter[p * I + col].to_float();
      unwritten += std::isnan(got) ? 1 : 0;
      err1 += (got - want) * (got - want);
      norm1 += want * want;
    }
    // GEMM2 from the device's own intermediate, so the two checks stay independent.
    const float weight = routing.topk_weights[slot];
    for (int32_t n = 0; n < H; ++n) {
      const bf16* w_row = w2.data() + (int64_t{e} * H + n) * I;
      double acc = 0;
      for (int32_t col = 0; col < I; ++col) {
        acc += double(inter[p * I + col].to_float()) * w_row[col].to_float();
      }
      const double want = acc * weight;
      const float got = slot_out[int64_t{slot} * H + n].to_float();
      unwritten += std::isnan(got) ? 1 : 0;
      err2 += (got - want) * (got - want);
      norm2 += want * want;
    }
  }
  EXPECT_EQ(unwritten, 0) << "elements left poisoned";
  EXPECT_LE(std::sqrt(err1 / norm1), 5e-3) << "GEMM1 (SiLU) " << layer_case_name(c);
  // Both outputs are bf16 (one rounding: ~1e-3 relative RMS), against fp64 sums.
  EXPECT_LE(std::sqrt(err2 / norm2), 5e-3) << "GEMM2 (router weighted) " << layer_case_name(c);
}

std::vector<LayerCase> layer_cases() {
  std::vector<LayerCase> cases;
  for (int32_t config = 0; config < dispatch::kNumBuiltinConfigs; ++config) {
    cases.push_back({8, 200, 2, "uniform", config});
    cases.push_back({64, 40, 8, "worst", config});
  }
  for (const std::string& routing : workloads::all_routing_names()) {
    cases.push_back({60, 300, 4, routing, kMixedConfigs});
    cases.push_back({64, 300, 8, routing, kBuiltinChoice});
  }
  cases.push_back({1, 1, 1, "balanced", kMixedConfigs});
  cases.push_back({8, 0, 2, "uniform", kMixedConfigs});
  // Every compiled catalog entry on both fused epilogues; H = 512, I = 256 (K/64 = 8 and 4, so
  // every split divides K).
  for (const int32_t index : dispatch::compiled_catalog_indices()) {
    cases.push_back({8, 200, 2, "uniform", kCatalogMode + index, 512, 256});
    cases.push_back({64, 40, 8, "worst", kCatalogMode + index, 512, 256});
  }
  cases.push_back({256, 64, 8, "zipf1.0", kBuiltinChoice, 256, 512});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Layer, LayerGemmTest, ::testing::ValuesIn(layer_cases()),
                         [](const auto& info) { return layer_case_name(info.param); });

// GEMM1 writes whole 64-row boxes where a block lies inside its task and 1-row boxes where the
// task ends inside the block. A full box there would overwrite the next task's first rows; in
// a normal launch that task's own store may land later and hide it. Here the task map keeps
// only the task of expert 0 (70 rows: one full block, then 6 rows of the next), so expert 1's
// rows 70..99 stay inside the output tensor but nothing should write them: they must keep the
// poison bit for bit, whatever the order of the stores. Every builtin config and every compiled
// catalog entry, alone.
TEST(StaticBatchedGemm, Gemm1PartialBlockLeavesTheNextTasksRowsAlone) {
  RAMP_SKIP_WITHOUT_DEVICE();
  constexpr int32_t kTokens = 100, kFirstExpertRows = 70, kExperts = 2;
  constexpr int32_t H = 256, I = 256;  // K/64 = 4: every split-K entry divides it
  workloads::Routing routing;
  routing.num_tokens = kTokens;
  routing.top_k = 1;
  routing.num_experts = kExperts;
  for (int32_t t = 0; t < kTokens; ++t) {
    routing.topk_ids.push_back(t < kFirstExpertRows ? 0 : 1);
    routing.topk_weights.push_back(1.0f);
  }
  std::vector<bf16> hidden(static_cast<size_t>(kTokens) * H),
      w13(static_cast<size_t>(kExperts) * 2 * I * H);
  workloads::fill_random_bf16(hidden, 71, 1.0f);
  workloads::fill_random_bf16(w13, 72, 0.15f);

  std::vector<int32_t> modes;
  for (int32_t config = 0; config < dispatch::kNumBuiltinConfigs; ++config) modes.push_back(config);
  for (const int32_t index : dispatch::compiled_catalog_indices()) modes.push_back(kCatalogMode + index);
  for (const int32_t mode : modes) {
    SCOPED_TRACE(config_name(mode));
    Plan plan;
    ASSERT_TRUE(build_plan(routing, mode, {{2 * I, H}}, ExpertOrder::kHalfInterval, &plan).is_ok());
    // The host plan's bytes with GEMM1's task map cut down to expert 0's task.
    const auto plan_bytes = plan.bytes();
    std::vector<std::byte> host(plan_bytes.begin(), plan_bytes.end());
    const PlanLayout layout = plan_layout(kExperts, kTokens, plan.num_gemms());
    TaskMapView map = task_map_view_at(host.data() + layout.task_maps[0], plan.task_map(0).max_tasks);
    ASSERT_EQ(map.header->num_tasks, 2);
    const int32_t kept = map.tasks[0].expert == 0 ? 0 : 1;
    const int32_t kept_tiles = map.tile_prefix[kept] - (kept == 0 ? 0 : map.tile_prefix[0]);
    ASSERT_EQ(map.tasks[kept].row_begin, 0);
    ASSERT_EQ(map.tasks[kept].row_count, kFirstExpertRows);
    map.tasks[0] = map.tasks[kept];
    map.tile_prefix[0] = kept_tiles;
    map.chunk_last[0] = kept_tiles;
    map.header->num_tasks = 1;
    map.header->num_chunks = 1;
    map.header->total_tiles = kept_tiles;

    DeviceBuffer plan_dev(host.size());
    RAMP_ASSERT_CUDA(cudaMemcpy(plan_dev.as<void>(), host.data(), host.size(), cudaMemcpyHostToDevice));
    char* base = plan_dev.as<char>();
    DeviceBuffer hidden_dev(hidden.size() * 2), w13_dev(w13.size() * 2),
        inter_dev(static_cast<size_t>(kTokens) * I * 2);
    upload(hidden_dev, hidden);
    upload(w13_dev, w13);
    poison(inter_dev);

    StaticBatchedGemm gemm1 = layer_gemm1(
        routing_view_at(base + layout.routing, kExperts, 1, kTokens),
        task_map_view_at(base + layout.task_maps[0], plan.task_map(0).max_tasks), hidden_dev,
        w13_dev, inter_dev, H, I, kept_tiles);
    DeviceBuffer split_scratch;
    attach_configs(plan.gemm(0), &gemm1, &split_scratch);
    const Status status = cuda::launch_static_batched_gemm(gemm1, nullptr);
    ASSERT_TRUE(status.is_ok()) << status.to_string();
    RAMP_ASSERT_CUDA(cudaDeviceSynchronize());

    const std::vector<bf16> inter = download<bf16>(inter_dev, static_cast<size_t>(kTokens) * I);
    int64_t overwritten = 0, unwritten = 0;
    double err = 0, norm = 0;
    for (int32_t row = 0; row < kTokens; ++row) {
      for (int32_t col = 0; col < I; ++col) {
        const bf16 got = inter[static_cast<size_t>(row) * I + col];
        if (row >= kFirstExpertRows) {
          overwritten += got.bits != 0x7fc0;
          continue;
        }
        // Expert 0's sorted row p is token p (its slots ascend; top_k = 1).
        const bf16* x = hidden.data() + static_cast<size_t>(row) * H;
        const bf16* gate_row = w13.data() + static_cast<size_t>(col) * H;
        const bf16* up_row = w13.data() + static_cast<size_t>(I + col) * H;
        double g = 0, u = 0;
        for (int32_t h = 0; h < H; ++h) {
          g += double(x[h].to_float()) * gate_row[h].to_float();
          u += double(x[h].to_float()) * up_row[h].to_float();
        }
        const double want = silu(g) * u;
        unwritten += std::isnan(got.to_float()) ? 1 : 0;
        err += (got.to_float() - want) * (got.to_float() - want);
        norm += want * want;
      }
    }
    EXPECT_EQ(overwritten, 0) << "elements of the next task's rows were written";
    EXPECT_EQ(unwritten, 0) << "elements of the task's rows left poisoned";
    EXPECT_LE(std::sqrt(err / norm), 5e-3);
  }
}

}  // namespace
}  // namespace ramp
