#include "dispatch/config_selection.h"

#include <vector>

#include "core/validation.h"
#include "dispatch/builtin_configs.h"
#include "dispatch/candidate_selection.h"

namespace ramp::dispatch {

namespace {

std::vector<TileConfig> builtin_config_vector() {
  return {std::begin(kBuiltinConfigs), std::end(kBuiltinConfigs)};
}

std::vector<int32_t> histogram(const int32_t* topk_ids, int32_t num_slots, int32_t num_experts) {
  std::vector<int32_t> counts(num_experts, 0);
  for (int32_t slot = 0; slot < num_slots; ++slot) ++counts[topk_ids[slot]];
  return counts;
}

Status expert_configs(std::span<const int32_t> counts, const GemmShape& shape, int32_t num_sms,
                      int32_t forced_config, std::vector<int32_t>* configs) {
  const int32_t out_features = shape.out_features;
  if (forced_config >= kNumBuiltinConfigs) {
    return {ErrorCode::kInvalidArgument, "forced_config = " + std::to_string(forced_config) +
                                             " is outside [0, " +
                                             std::to_string(kNumBuiltinConfigs) + ")"};
  }
  if (forced_config >= 0) {
    configs->assign(counts.size(), forced_config);
  } else if (forced_config == kRoutingAwareConfigs) {
    DeviceConstants device = DeviceConstants::h100();
    device.sm_count = num_sms;
    *configs = assign_routing_aware_configs(shape, counts, device);
  } else {
    *configs = assign_builtin_configs(counts, out_features, num_sms);
  }
  return Status::ok();
}

}  // namespace

std::vector<int32_t> assign_builtin_configs(std::span<const int32_t> expert_counts,
                                            int32_t out_features, int32_t num_sms) {
  int32_t total_big_tiles = 0;
  for (int32_t rows : expert_counts) {
    total_big_tiles += big_tiles_of_expert(kBuiltinConfigs[0], rows, out_features);
  }
  std::vector<int32_t> configs(expert_counts.size());
  for (size_t e = 0; e < expert_counts.size(); ++e) {
    configs[e] = choose_builtin_config(expert_counts[e], total_big_tiles, num_sms);
  }
  return configs;
}

std::vector<int32_t> assign_routing_aware_configs(const GemmShape& shape,
                                                  std::span<const int32_t> expert_counts,
                                                  const DeviceConstants& device) {
  const CandidateChoice choice =
      choose_candidate(shipped_profiles(), shape, expert_counts, device);
  return candidate_assignment(choice.candidate, expert_counts, shape.out_features,
                              device.sm_count);
}

Status build_layer_plan(const MoeShape& shape, const int32_t* topk_ids, int32_t num_tokens,
                        ExpertOrder order, int32_t num_sms, int32_t forced_config, Plan* plan) {
  RAMP_TRY(validate_shape(shape));
  RAMP_TRY(validate_routing_values(topk_ids, nullptr, num_tokens, shape.top_k,
                                   shape.num_experts));
  const std::vector<int32_t> counts =
      histogram(topk_ids, num_tokens * shape.top_k, shape.num_experts);
  PlanRequest request{topk_ids, num_tokens, shape.top_k, shape.num_experts, order, {}};
  GemmPlanSpec gemm1{2 * shape.intermediate, shape.hidden, builtin_config_vector(), {}};
  GemmPlanSpec gemm2{shape.hidden, shape.intermediate, builtin_config_vector(), {}};
  const GemmShape shape1{shape.num_experts, shape.top_k, gemm1.out_features, gemm1.in_features};
  const GemmShape shape2{shape.num_experts, shape.top_k, gemm2.out_features, gemm2.in_features};
  RAMP_TRY(expert_configs(counts, shape1, num_sms, forced_config, &gemm1.expert_config));
  RAMP_TRY(expert_configs(counts, shape2, num_sms, forced_config, &gemm2.expert_config));
  request.gemms = {std::move(gemm1), std::move(gemm2)};
  return Plan::build(request, plan);
}

Status build_grouped_gemm_plan(const GroupedGemmArgs& args, ExpertOrder order, int32_t num_sms,
                               int32_t forced_config, Plan* plan) {
  RAMP_TRY(validate_grouped_gemm_shape(args));
  RAMP_TRY(validate_routing_values(args.topk_ids, nullptr, args.num_tokens, args.top_k,
                                   args.num_experts));
  const std::vector<int32_t> counts =
      histogram(args.topk_ids, args.num_tokens * args.top_k, args.num_experts);
  PlanRequest request{args.topk_ids, args.num_tokens, args.top_k, args.num_experts, order, {}};
  GemmPlanSpec gemm{args.out_features, args.in_features, builtin_config_vector(), {}};
  const GemmShape gemm_shape{args.num_experts, args.top_k, gemm.out_features, gemm.in_features};
  RAMP_TRY(expert_configs(counts, gemm_shape, num_sms, forced_config, &gemm.expert_config));
  request.gemms = {std::move(gemm)};
  return Plan::build(request, plan);
}

}  // namespace ramp::dispatch
