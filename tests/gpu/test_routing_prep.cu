// The device routing prep against the host planner: byte-identical plans for every routing
// kind, expert count, token count, top-k, expert order and forced config (the workspace is
// poisoned first, so every padding and unused entry must be written as the host writes it);
// the same Status as the host check for bad ids and non-finite weights; and its latency.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <span>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "core/plan.h"
#include "core/validation.h"
#include "cuda/cuda_backend.h"
#include "cuda/routing_prep.cuh"
#include "dispatch/builtin_configs.h"
#include "dispatch/candidate_selection.h"
#include "dispatch/config_selection.h"
#include "gpu_test_support.h"
#include "workloads/routing.h"

namespace ramp {
namespace {

using testing::DeviceBuffer;
using testing::to_device;
using testing::to_host;

constexpr int32_t kSms = 132;
// A layer whose GEMMs differ in N (1536 and 2048), so their configs and tile counts differ.
constexpr int32_t kHidden = 2048;
constexpr int32_t kIntermediate = 768;
constexpr int32_t kGroupedOutFeatures = 1024;
constexpr int32_t kGroupedInFeatures = 512;

constexpr int32_t kExpertCounts[] = {1, 8, 33, 64, 128, 512, 1024, 4096};
// 256 and 512 at k = 8 sit on the one-CTA variants' capacity edges (2048, 4096 slots).
constexpr int32_t kTokenCounts[] = {0, 1, 7, 64, 256, 512, 1000, 4096};
constexpr ExpertOrder kOrders[] = {ExpertOrder::kIdentity, ExpertOrder::kHalfInterval,
                                   ExpertOrder::kLongestFirst};

struct PrepInput {
  std::vector<int32_t> ids;
  std::vector<float> weights;  // empty: the prep checks no weights (grouped GEMM)
  int32_t num_tokens = 0;
  int32_t top_k = 0;
  int32_t num_experts = 0;
};

struct PrepSettings {
  std::vector<int32_t> out_features;  // N of each GEMM
  ExpertOrder order = ExpertOrder::kHalfInterval;
  int32_t forced_config = -1;
  int32_t num_sms = kSms;
  dispatch::CandidateTable selection[cuda::kMaxPrepGemms];  // count 0: the builtin rule
};

struct DeviceResult {
  Status launch;
  cudaError_t sync = cudaSuccess;
  std::vector<std::byte> plan;  // the plan_layout bytes
  Status routing;               // read_routing_status
};

PrepInput input_from(const workloads::Routing& routing) {
  return PrepInput{routing.topk_ids, routing.topk_weights, routing.num_tokens, routing.top_k,
                   routing.num_experts};
}

DeviceResult run_device_prep(const PrepInput& in, const PrepSettings& settings) {
  const int32_t num_slots = in.num_tokens * in.top_k;
  const int32_t num_gemms = static_cast<int32_t>(settings.out_features.size());
  const PlanLayout layout = plan_layout(in.num_experts, num_slots, num_gemms);
  // The plan where a layer workspace has it (read_routing_status looks there).
  const size_t plan_offset = cuda::workspace_plan_offset();
  const size_t scratch_offset = (plan_offset + layout.bytes + 255) / 256 * 256;
  DeviceBuffer workspace(scratch_offset +
                         cuda::routing_prep_scratch_bytes(in.num_experts, num_slots));
  // Poison: a byte the prep forgets to write cannot match the host's zero by luck.
  cudaMemset(workspace.as(), 0xA5, workspace.bytes());
  DeviceBuffer ids = to_device(in.ids);
  DeviceBuffer weights = to_device(in.weights);

  cuda::RoutingPrepArgs args;
  args.topk_ids = ids.as<int32_t>();
  args.topk_weights = in.weights.empty() ? nullptr : weights.as<float>();
  args.num_tokens = in.num_tokens;
  args.top_k = in.top_k;
  args.num_experts = in.num_experts;
  char* const base = workspace.as<char>() + plan_offset;
  args.routing = routing_view_at(base + layout.routing, in.num_experts, in.top_k, num_slots);
  args.num_gemms = num_gemms;
  for (int32_t g = 0; g < num_gemms; ++g) {
    args.task_maps[g] = task_map_view_at(base + layout.task_maps[g], in.num_experts);
    args.out_features[g] = settings.out_features[g];
  }
  args.order = settings.order;
  args.forced_config = settings.forced_config;
  args.num_sms = settings.num_sms;
  for (int32_t g = 0; g < num_gemms; ++g) args.selection[g] = settings.selection[g];
  args.scratch = workspace.as<char>() + scratch_offset;

  Status launch = cuda::launch_routing_prep(args, nullptr);
  const cudaError_t sync = cudaDeviceSynchronize();
  std::vector<std::byte> plan = to_host<std::byte>(base, layout.bytes);
  Status routing = cuda::read_routing_status(workspace.as(), in.num_experts, in.num_tokens,
                                             in.top_k, ids.as<int32_t>(), args.topk_weights,
                                             nullptr);
  return DeviceResult{std::move(launch), sync, std::move(plan), std::move(routing)};
}

Status host_layer_plan(const PrepInput& in, const PrepSettings& settings, Plan* plan) {
  MoeShape shape;
  shape.num_experts = in.num_experts;
  shape.top_k = in.top_k;
  shape.hidden = kHidden;
  shape.intermediate = kIntermediate;
  return dispatch::build_layer_plan(shape, in.ids.data(), in.num_tokens, settings.order,
                                    settings.num_sms, settings.forced_config, plan);
}

Status host_grouped_plan(const PrepInput& in, const PrepSettings& settings, Plan* plan) {
  // The planner reads only the ids; the data pointers just have to pass the structural check.
  const auto* fake = reinterpret_cast<const bf16*>(uintptr_t{256});
  GroupedGemmArgs args;
  args.num_tokens = in.num_tokens;
  args.top_k = in.top_k;
  args.num_experts = in.num_experts;
  args.out_features = kGroupedOutFeatures;
  args.in_features = kGroupedInFeatures;
  args.x = fake;
  args.w = fake;
  args.topk_ids = in.ids.data();
  args.y = const_cast<bf16*>(fake);
  return dispatch::build_grouped_gemm_plan(args, settings.order, settings.num_sms,
                                           settings.forced_config, plan);
}

// "task_map[1].tile_prefix[17]": where a plan byte lives, for mismatch reports.
std::string describe_offset(size_t offset, int32_t num_experts, int32_t num_slots,
                            int32_t num_gemms) {
  const PlanLayout layout = plan_layout(num_experts, num_slots, num_gemms);
  auto element = [](const char* name, size_t relative, size_t begin, size_t size) {
    return std::string(name) + "[" + std::to_string((relative - begin) / size) + "]";
  };
  const RoutingLayout routing = routing_layout(num_experts, num_slots);
  if (offset < routing.bytes) {
    if (offset < routing.expert_counts) return element("routing.header", offset, 0, 4);
    if (offset < routing.expert_offsets) {
      return element("routing.expert_counts", offset, routing.expert_counts, 4);
    }
    if (offset < routing.sorted_slots) {
      return element("routing.expert_offsets", offset, routing.expert_offsets, 4);
    }
    return element("routing.sorted_slots", offset, routing.sorted_slots, 4);
  }
  const TaskMapLayout map = task_map_layout(num_experts);
  for (int32_t g = num_gemms - 1; g >= 0; --g) {
    if (offset < layout.task_maps[g]) continue;
    const size_t relative = offset - layout.task_maps[g];
    const std::string prefix = "task_map[" + std::to_string(g) + "].";
    if (relative < map.tasks) return prefix + element("header", relative, 0, 4);
    if (relative < map.tile_prefix) return prefix + element("tasks", relative, map.tasks, 16);
    if (relative < map.chunk_last) {
      return prefix + element("tile_prefix", relative, map.tile_prefix, 4);
    }
    return prefix + element("chunk_last", relative, map.chunk_last, 4);
  }
  return "outside the plan";
}

int32_t word_at(std::span<const std::byte> bytes, size_t offset) {
  int32_t word = 0;
  std::memcpy(&word, bytes.data() + offset / 4 * 4, sizeof(word));
  return word;
}

::testing::AssertionResult same_plan_bytes(const Plan& host, const DeviceResult& device,
                                           const PrepInput& in, int32_t num_gemms) {
  const std::span<const std::byte> want = host.bytes();
  if (want.size() != device.plan.size()) {
    return ::testing::AssertionFailure() << "host plan has " << want.size()
                                         << " bytes, the device layout " << device.plan.size();
  }
  for (size_t i = 0; i < want.size(); ++i) {
    if (want[i] != device.plan[i]) {
      return ::testing::AssertionFailure()
             << "first difference at byte " << i << " ("
             << describe_offset(i, in.num_experts, in.num_tokens * in.top_k, num_gemms)
             << "): host word " << word_at(want, i) << ", device word "
             << word_at(device.plan, i);
    }
  }
  return ::testing::AssertionSuccess();
}

std::vector<int32_t> top_ks_for(int32_t num_experts) {
  std::vector<int32_t> top_ks = {1};
  if (std::min(num_experts, 8) > 1) top_ks.push_back(std::min(num_experts, 8));
  return top_ks;
}

uint64_t seed_for(int32_t num_experts, int32_t num_tokens, int32_t top_k, size_t kind) {
  return (static_cast<uint64_t>(num_experts) * 1000003u + num_tokens) * 131u + top_k * 7u + kind;
}

enum class PlanKind { kLayer, kGroupedGemm };

// Every routing kind x E x T x k for one order; stops after a few mismatches so a systematic
// bug does not print thousands of lines.
void check_all_routings(PlanKind kind, ExpertOrder order, int32_t forced_config) {
  int32_t mismatches = 0;
  const std::vector<std::string>& kinds = workloads::all_routing_names();
  for (const int32_t num_experts : kExpertCounts) {
    for (const int32_t num_tokens : kTokenCounts) {
      for (const int32_t top_k : top_ks_for(num_experts)) {
        for (size_t kind_index = 0; kind_index < kinds.size(); ++kind_index) {
          workloads::RoutingSpec spec;
          ASSERT_TRUE(workloads::RoutingSpec::parse(kinds[kind_index], &spec));
          const PrepInput in = input_from(workloads::generate_routing(
              spec, num_tokens, num_experts, top_k,
              seed_for(num_experts, num_tokens, top_k, kind_index)));
          PrepSettings settings;
          settings.order = order;
          settings.forced_config = forced_config;
          Plan host;
          if (kind == PlanKind::kLayer) {
            settings.out_features = {2 * kIntermediate, kHidden};
            ASSERT_TRUE(host_layer_plan(in, settings, &host).is_ok());
          } else {
            settings.out_features = {kGroupedOutFeatures};
            ASSERT_TRUE(host_grouped_plan(in, settings, &host).is_ok());
          }
          const std::string where = kinds[kind_index] + " E=" + std::to_string(num_experts) +
                                    " T=" + std::to_string(num_tokens) +
                                    " k=" + std::to_string(top_k) + " order=" +
                                    expert_order_name(order) +
                                    " forced=" + std::to_string(forced_config);
          const DeviceResult device = run_device_prep(in, settings);
          ASSERT_TRUE(device.launch.is_ok()) << where << ": " << device.launch.to_string();
          ASSERT_EQ(device.sync, cudaSuccess) << where << ": " << cudaGetErrorString(device.sync);
          EXPECT_TRUE(device.routing.is_ok()) << where << ": " << device.routing.to_string();
          const auto same = same_plan_bytes(host, device, in, settings.out_features.size());
          EXPECT_TRUE(same) << where;
          if (!same && ++mismatches >= 5) FAIL() << "stopping after 5 mismatching plans";
        }
      }
    }
  }
}

TEST(RoutingPrep, LayerPlanBytesEqualHostIdentityOrder) {
  RAMP_SKIP_WITHOUT_DEVICE();
  check_all_routings(PlanKind::kLayer, ExpertOrder::kIdentity, -1);
}

TEST(RoutingPrep, LayerPlanBytesEqualHostHalfIntervalOrder) {
  RAMP_SKIP_WITHOUT_DEVICE();
  check_all_routings(PlanKind::kLayer, ExpertOrder::kHalfInterval, -1);
}

TEST(RoutingPrep, LayerPlanBytesEqualHostLongestFirstOrder) {
  RAMP_SKIP_WITHOUT_DEVICE();
  check_all_routings(PlanKind::kLayer, ExpertOrder::kLongestFirst, -1);
}

TEST(RoutingPrep, GroupedGemmPlanBytesEqualHost) {
  RAMP_SKIP_WITHOUT_DEVICE();
  check_all_routings(PlanKind::kGroupedGemm, ExpertOrder::kHalfInterval, -1);
}

// One routing per (config, order), since a forced config changes every tile count.
TEST(RoutingPrep, ForcedConfigPlansEqualHost) {
  RAMP_SKIP_WITHOUT_DEVICE();
  workloads::RoutingSpec spec;
  ASSERT_TRUE(workloads::RoutingSpec::parse("zipf1.0", &spec));
  for (const int32_t num_tokens : {7, 1000}) {
    const PrepInput in = input_from(workloads::generate_routing(spec, num_tokens, 64, 8, 11));
    for (int32_t config = 0; config < dispatch::kNumBuiltinConfigs; ++config) {
      for (const ExpertOrder order : kOrders) {
        PrepSettings settings;
        settings.out_features = {2 * kIntermediate, kHidden};
        settings.order = order;
        settings.forced_config = config;
        Plan host;
        ASSERT_TRUE(host_layer_plan(in, settings, &host).is_ok());
        const DeviceResult device = run_device_prep(in, settings);
        ASSERT_TRUE(device.launch.is_ok()) << device.launch.to_string();
        EXPECT_TRUE(same_plan_bytes(host, device, in, 2))
            << "T=" << num_tokens << " config " << config << " " << expert_order_name(order);
      }
    }
  }
}

// Routing-aware selection on the device (the shipped H100 profiles) against the host's
// selection for the same histogram (build_layer_plan with kRoutingAwareConfigs): the chosen
// candidate fixes every task's config, so equal plan bytes mean equal choices. Model shapes
// the profiles cover, decode to prefill, every routing kind; the choices must also differ from
// the builtin rule somewhere, or the test would not see the selection at all.
TEST(RoutingPrep, RoutingAwareSelectionEqualsHost) {
  RAMP_SKIP_WITHOUT_DEVICE();
  const std::string device = dispatch::DeviceConstants::h100().name;
  const MoeShape models[] = {{128, 8, 2048, 768}, {64, 8, 2048, 1024}, {64, 6, 2048, 1408}};
  int32_t differs_from_builtin = 0;
  int32_t cases = 0;
  for (const MoeShape& shape : models) {
    const dispatch::GemmShape gemms[2] = {
        {shape.num_experts, shape.top_k, 2 * shape.intermediate, shape.hidden},
        {shape.num_experts, shape.top_k, shape.hidden, shape.intermediate}};
    PrepSettings settings;
    settings.out_features = {gemms[0].out_features, gemms[1].out_features};
    for (int g = 0; g < 2; ++g) {
      const dispatch::Profile* profile =
          dispatch::find_profile(dispatch::shipped_profiles(), device, gemms[g]);
      ASSERT_NE(profile, nullptr) << "no shipped profile for " << gemms[g].to_string();
      settings.selection[g] = profile->candidate_table();
      ASSERT_GT(settings.selection[g].count, 0);
    }
    for (const int32_t num_tokens : {1, 8, 64, 256, 512, 2048, 8192}) {
      for (const std::string& kind : workloads::all_routing_names()) {
        workloads::RoutingSpec spec;
        ASSERT_TRUE(workloads::RoutingSpec::parse(kind, &spec));
        const PrepInput in = input_from(workloads::generate_routing(
            spec, num_tokens, shape.num_experts, shape.top_k, 17 + num_tokens));
        const std::string where = kind + " E=" + std::to_string(shape.num_experts) +
                                  " I=" + std::to_string(shape.intermediate) +
                                  " T=" + std::to_string(num_tokens);
        Plan host;
        ASSERT_TRUE(dispatch::build_layer_plan(shape, in.ids.data(), num_tokens, settings.order,
                                               kSms, dispatch::kRoutingAwareConfigs, &host)
                        .is_ok());
        Plan builtin;
        ASSERT_TRUE(dispatch::build_layer_plan(shape, in.ids.data(), num_tokens, settings.order,
                                               kSms, -1, &builtin)
                        .is_ok());
        const std::span<const std::byte> a = host.bytes(), b = builtin.bytes();
        differs_from_builtin += !std::equal(a.begin(), a.end(), b.begin(), b.end());
        ++cases;
        const DeviceResult device_result = run_device_prep(in, settings);
        ASSERT_TRUE(device_result.launch.is_ok()) << where << ": "
                                                  << device_result.launch.to_string();
        ASSERT_EQ(device_result.sync, cudaSuccess) << where;
        EXPECT_TRUE(same_plan_bytes(host, device_result, in, 2)) << where;
      }
    }
  }
  EXPECT_GT(differs_from_builtin, 0) << "selection never left the builtin rule in " << cases
                                     << " cases";
  std::printf("[ selection ] %d of %d cases chose configs other than the builtin rule's\n",
              differs_from_builtin, cases);
}

// The "fills the machine" test of the builtin rule flips with the SM count.
TEST(RoutingPrep, SmCountReachesTheConfigRule) {
  RAMP_SKIP_WITHOUT_DEVICE();
  workloads::RoutingSpec spec;
  ASSERT_TRUE(workloads::RoutingSpec::parse("uniform", &spec));
  const PrepInput in = input_from(workloads::generate_routing(spec, 1000, 16, 4, 5));
  for (const int32_t num_sms : {1, 132, 1 << 20}) {
    PrepSettings settings;
    settings.out_features = {2 * kIntermediate, kHidden};
    settings.num_sms = num_sms;
    Plan host;
    ASSERT_TRUE(host_layer_plan(in, settings, &host).is_ok());
    const DeviceResult device = run_device_prep(in, settings);
    ASSERT_TRUE(device.launch.is_ok()) << device.launch.to_string();
    EXPECT_TRUE(same_plan_bytes(host, device, in, 2)) << "num_sms " << num_sms;
  }
}

// About a million slots: many chunks, so the cross-chunk bases of the stable scatter matter.
TEST(RoutingPrep, MillionSlotPlansEqualHost) {
  RAMP_SKIP_WITHOUT_DEVICE();
  const std::pair<const char*, int32_t> cases[] = {{"zipf1.5", 256}, {"uniform", 4096},
                                                   {"worst", 64}};
  for (const auto& [name, num_experts] : cases) {
    workloads::RoutingSpec spec;
    ASSERT_TRUE(workloads::RoutingSpec::parse(name, &spec));
    const PrepInput in = input_from(workloads::generate_routing(spec, 131072, num_experts, 8, 3));
    PrepSettings settings;
    settings.out_features = {2 * kIntermediate, kHidden};
    Plan host;
    ASSERT_TRUE(host_layer_plan(in, settings, &host).is_ok());
    const DeviceResult device = run_device_prep(in, settings);
    ASSERT_TRUE(device.launch.is_ok()) << device.launch.to_string();
    ASSERT_EQ(device.sync, cudaSuccess) << cudaGetErrorString(device.sync);
    EXPECT_TRUE(same_plan_bytes(host, device, in, 2)) << name << " E=" << num_experts;
  }
}

struct BadValueCase {
  const char* name;
  int32_t num_tokens, top_k, num_experts;
  std::vector<std::pair<int32_t, int32_t>> bad_ids;    // slot, id
  std::vector<std::pair<int32_t, float>> bad_weights;  // slot, weight
};

std::vector<BadValueCase> bad_value_cases() {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  constexpr int32_t kMax = std::numeric_limits<int32_t>::max();
  constexpr int32_t kMin = std::numeric_limits<int32_t>::min();
  return {
      {"id = E", 64, 4, 16, {{37, 16}}, {}},
      {"id = -1", 64, 4, 16, {{0, -1}}, {}},
      {"id = INT32_MIN and INT32_MAX", 64, 4, 16, {{200, kMin}, {101, kMax}}, {}},
      {"NaN weight", 64, 4, 16, {}, {{77, nan}}},
      {"-inf weight", 1, 1, 1, {}, {{0, -inf}}},
      {"weight before id: ids reported first", 64, 4, 16, {{150, 99}}, {{3, inf}}},
      {"chunked: ids in late chunks", 16384, 8, 64, {{130000, 64}, {70000, -7}}, {}},
      {"chunked: weights and ids", 16384, 8, 4096, {{131071, 4096}}, {{65536, nan}, {9000, inf}}},
  };
}

TEST(RoutingPrep, BadIdsAndWeightsGiveTheHostStatusAndNeverAnIndex) {
  RAMP_SKIP_WITHOUT_DEVICE();
  workloads::RoutingSpec spec;
  ASSERT_TRUE(workloads::RoutingSpec::parse("uniform", &spec));
  for (const BadValueCase& bad : bad_value_cases()) {
    PrepInput in = input_from(
        workloads::generate_routing(spec, bad.num_tokens, bad.num_experts, bad.top_k, 9));
    for (const auto& [slot, id] : bad.bad_ids) in.ids[slot] = id;
    for (const auto& [slot, weight] : bad.bad_weights) in.weights[slot] = weight;
    const Status want = validate_routing_values(in.ids.data(), in.weights.data(), in.num_tokens,
                                                in.top_k, in.num_experts);
    ASSERT_FALSE(want.is_ok()) << bad.name;

    PrepSettings settings;
    settings.out_features = {2 * kIntermediate, kHidden};
    const DeviceResult device = run_device_prep(in, settings);
    ASSERT_TRUE(device.launch.is_ok()) << bad.name << ": " << device.launch.to_string();
    ASSERT_EQ(device.sync, cudaSuccess) << bad.name << ": " << cudaGetErrorString(device.sync);
    EXPECT_EQ(device.routing.code(), want.code()) << bad.name;
    EXPECT_EQ(device.routing.message(), want.message()) << bad.name;

    // Bad ids are routed nowhere: the histogram counts only the valid slots.
    const int32_t num_slots = in.num_tokens * in.top_k;
    const RoutingLayout layout = routing_layout(in.num_experts, num_slots);
    int32_t routed = 0;
    for (int32_t e = 0; e < in.num_experts; ++e) {
      routed += word_at(device.plan, layout.expert_counts + 4 * e);
    }
    EXPECT_EQ(routed, num_slots - static_cast<int32_t>(bad.bad_ids.size())) << bad.name;
    EXPECT_EQ(word_at(device.plan, layout.expert_offsets + 4 * in.num_experts), routed)
        << bad.name;
  }
}

TEST(RoutingPrep, GroupedGemmPrepIgnoresWeights) {
  RAMP_SKIP_WITHOUT_DEVICE();
  workloads::RoutingSpec spec;
  ASSERT_TRUE(workloads::RoutingSpec::parse("uniform", &spec));
  PrepInput in = input_from(workloads::generate_routing(spec, 64, 16, 4, 2));
  in.weights.clear();  // the grouped GEMM has no router weights to check
  PrepSettings settings;
  settings.out_features = {kGroupedOutFeatures};
  const DeviceResult device = run_device_prep(in, settings);
  ASSERT_TRUE(device.launch.is_ok());
  EXPECT_TRUE(device.routing.is_ok()) << device.routing.to_string();
}

TEST(RoutingPrep, StructuralErrorsAreStatusesBeforeAnyLaunch) {
  RAMP_SKIP_WITHOUT_DEVICE();
  cuda::RoutingPrepArgs args;
  args.num_experts = cuda::kMaxPrepExperts + 1;
  args.top_k = 1;
  args.num_gemms = 1;
  args.out_features[0] = 128;
  args.num_sms = kSms;
  EXPECT_EQ(cuda::launch_routing_prep(args, nullptr).code(), ErrorCode::kUnsupportedShape);
  args.num_experts = 64;
  args.forced_config = dispatch::kNumBuiltinConfigs;
  EXPECT_EQ(cuda::launch_routing_prep(args, nullptr).code(), ErrorCode::kInvalidArgument);
  args.forced_config = -1;
  args.top_k = 65;
  EXPECT_EQ(cuda::launch_routing_prep(args, nullptr).code(), ErrorCode::kInvalidArgument);
}

__global__ void empty_one_cta_kernel(int32_t* out) {
  if (out != nullptr && threadIdx.x == 0) *out = 0;
}

// Graph replay of `launches` back-to-back launches; returns the mean time of one, in us.
template <class Launch>
double graph_replay_us(cudaStream_t stream, int launches, Launch launch) {
  cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal);
  for (int i = 0; i < launches; ++i) launch();
  cudaGraph_t graph;
  cudaStreamEndCapture(stream, &graph);
  cudaGraphExec_t exec;
  cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphLaunch(exec, stream);  // warm-up
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  constexpr int kReplays = 10;
  cudaEventRecord(start, stream);
  for (int r = 0; r < kReplays; ++r) cudaGraphLaunch(exec, stream);
  cudaEventRecord(stop, stream);
  cudaEventSynchronize(stop);
  float ms = 0;
  cudaEventElapsedTime(&ms, start, stop);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  return 1000.0 * ms / (kReplays * launches);
}

// Not a pass/fail check: prints the prep's device time (graph replay of many preps, so launch
// gaps are amortised the way a captured layer amortises them), and the floor: a one-CTA kernel
// that does nothing, replayed the same way.
TEST(RoutingPrep, ReportLatency) {
  RAMP_SKIP_WITHOUT_DEVICE();
  {
    cudaStream_t stream;
    RAMP_ASSERT_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    DeviceBuffer sink(16);
    const double us = graph_replay_us(stream, 50, [&] {
      empty_one_cta_kernel<<<1, 128, 0, stream>>>(sink.as<int32_t>());
    });
    RAMP_ASSERT_CUDA(cudaGetLastError());
    std::printf("[ latency ] floor: empty one-CTA kernel, same graph replay: %.2f us\n", us);
    cudaStreamDestroy(stream);
  }
  workloads::RoutingSpec spec;
  ASSERT_TRUE(workloads::RoutingSpec::parse("zipf1.0", &spec));
  const std::tuple<int32_t, int32_t, int32_t> cases[] = {
      {1, 64, 8},     {16, 128, 8},   {64, 64, 8},        {256, 64, 8},
      {256, 256, 8},  {512, 64, 8},   {4096, 128, 8},     {131072, 256, 8},
      // qwen3-like decode and prefill (E=128, k=8): the one-CTA path up to T=512, then chunks.
      {1, 128, 8},    {8, 128, 8},    {64, 128, 8},       {256, 128, 8},
      {2048, 128, 8}, {8192, 128, 8}};
  // The qwen3 shape (E=128, k=8, H=2048, I=768) also runs with routing-aware selection on
  // (the shipped H100 profile's candidate tables), to price the selection inside the prep.
  dispatch::CandidateTable qwen3_tables[2];
  {
    const std::string device = dispatch::DeviceConstants::h100().name;
    const dispatch::GemmShape gemms[2] = {{128, 8, 2 * kIntermediate, kHidden},
                                          {128, 8, kHidden, kIntermediate}};
    for (int g = 0; g < 2; ++g) {
      const dispatch::Profile* profile =
          dispatch::find_profile(dispatch::shipped_profiles(), device, gemms[g]);
      ASSERT_NE(profile, nullptr) << "no shipped profile for " << gemms[g].to_string();
      qwen3_tables[g] = profile->candidate_table();
    }
  }
  for (const auto& [num_tokens, num_experts, top_k] : cases) {
    for (const bool select : {false, true}) {
      if (select && num_experts != 128) continue;
      const workloads::Routing routing =
          workloads::generate_routing(spec, num_tokens, num_experts, top_k, 1);
      const int32_t num_slots = num_tokens * top_k;
      const PlanLayout layout = plan_layout(num_experts, num_slots, 2);
      const size_t scratch_offset = (layout.bytes + 255) / 256 * 256;
      DeviceBuffer workspace(scratch_offset + cuda::routing_prep_scratch_bytes(num_experts, num_slots));
      DeviceBuffer ids = to_device(routing.topk_ids);
      DeviceBuffer weights = to_device(routing.topk_weights);
      cuda::RoutingPrepArgs args;
      args.topk_ids = ids.as<int32_t>();
      args.topk_weights = weights.as<float>();
      args.num_tokens = num_tokens;
      args.top_k = top_k;
      args.num_experts = num_experts;
      char* base = workspace.as<char>();
      args.routing = routing_view_at(base, num_experts, top_k, num_slots);
      args.num_gemms = 2;
      for (int g = 0; g < 2; ++g) {
        args.task_maps[g] = task_map_view_at(base + layout.task_maps[g], num_experts);
      }
      args.out_features[0] = 2 * kIntermediate;
      args.out_features[1] = kHidden;
      args.num_sms = kSms;
      args.scratch = base + scratch_offset;
      if (select) {
        for (int g = 0; g < 2; ++g) args.selection[g] = qwen3_tables[g];
        if (!cuda::routing_prep_can_select(args)) continue;  // the chunked path has no selection
      }

      cudaStream_t stream;
      RAMP_ASSERT_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
      constexpr int kPrepsPerGraph = 50;
      RAMP_ASSERT_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
      for (int i = 0; i < kPrepsPerGraph; ++i) ASSERT_TRUE(cuda::launch_routing_prep(args, stream).is_ok());
      cudaGraph_t graph;
      RAMP_ASSERT_CUDA(cudaStreamEndCapture(stream, &graph));
      cudaGraphExec_t exec;
      RAMP_ASSERT_CUDA(cudaGraphInstantiate(&exec, graph, 0));
      RAMP_ASSERT_CUDA(cudaGraphLaunch(exec, stream));  // warm-up
      cudaEvent_t start, stop;
      cudaEventCreate(&start);
      cudaEventCreate(&stop);
      constexpr int kReplays = 10;
      RAMP_ASSERT_CUDA(cudaEventRecord(start, stream));
      for (int r = 0; r < kReplays; ++r) RAMP_ASSERT_CUDA(cudaGraphLaunch(exec, stream));
      RAMP_ASSERT_CUDA(cudaEventRecord(stop, stream));
      RAMP_ASSERT_CUDA(cudaEventSynchronize(stop));
      float ms = 0;
      cudaEventElapsedTime(&ms, start, stop);
      std::printf("[ latency ] routing prep T=%d E=%d k=%d (2 GEMMs)%s: %.2f us\n", num_tokens,
                  num_experts, top_k, select ? " with routing-aware selection" : "",
                  1000.0 * ms / (kReplays * kPrepsPerGraph));
      cudaEventDestroy(start);
      cudaEventDestroy(stop);
      cudaGraphExecDestroy(exec);
      cudaGraphDestroy(graph);
      cudaStreamDestroy(stream);
    }
  }
}

}  // namespace
}  // namespace ramp
