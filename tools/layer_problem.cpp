#include "layer_problem.h"

#include <cmath>
#include <cstdio>

#include "dispatch/config_selection.h"
#include "workloads/models.h"

namespace ramp::cli {

double Problem::useful_flops() const {
  const double slots = static_cast<double>(num_tokens) * shape.top_k;
  if (grouped_gemm) return 2.0 * slots * shape.intermediate * shape.hidden;
  return 6.0 * slots * shape.hidden * shape.intermediate;
}

std::string Problem::describe() const {
  char buffer[256];
  if (grouped_gemm) {
    std::snprintf(buffer, sizeof(buffer), "%s grouped GEMM E=%d k=%d N=%d K=%d, T=%d, %s routing",
                  model_name.c_str(), shape.num_experts, shape.top_k, shape.intermediate,
                  shape.hidden, num_tokens, routing_spec.name().c_str());
  } else {
    std::snprintf(buffer, sizeof(buffer), "%s layer %s, T=%d, %s routing", model_name.c_str(),
                  shape.to_string().c_str(), num_tokens, routing_spec.name().c_str());
  }
  return buffer;
}

Status read_problem(Args& args, Problem* problem) {
  problem->model_name = args.text("model", "olmoe-1b-7b");
  if (problem->model_name == "seed004") {
    const workloads::KernelCase kernel_case = workloads::seed004_gemm_case();
    problem->grouped_gemm = true;
    problem->shape = MoeShape{kernel_case.E, kernel_case.k, kernel_case.K, kernel_case.N};
  } else if (args.has("models-json")) {
    std::vector<workloads::ModelShape> models;
    RAMP_TRY(workloads::load_models_json(args.text("models-json", ""), &models));
    const workloads::ModelShape* found = nullptr;
    for (const auto& model : models) {
      if (model.name == problem->model_name) found = &model;
    }
    if (found == nullptr) {
      return {ErrorCode::kInvalidArgument, "model '" + problem->model_name + "' is not in " +
                                               args.text("models-json", "")};
    }
    problem->shape = found->shape;
  } else {
    const workloads::ModelShape* found = workloads::find_model(problem->model_name);
    if (found == nullptr) {
      return {ErrorCode::kInvalidArgument,
              "unknown model '" + problem->model_name + "' (see `ramp models`)"};
    }
    problem->shape = found->shape;
  }

  int64_t tokens = 0, seed = 0, sms = 0;
  if (!args.integer("tokens", 64, 0, 1 << 22, &tokens) ||
      !args.integer("seed", 1, 0, INT64_MAX, &seed) || !args.integer("sms", 132, 1, 4096, &sms)) {
    return {ErrorCode::kInvalidArgument, args.error()};
  }
  problem->num_tokens = static_cast<int32_t>(tokens);
  problem->seed = static_cast<uint64_t>(seed);
  problem->num_sms = static_cast<int32_t>(sms);
  const std::string routing = args.text("routing", "uniform");
  if (!workloads::RoutingSpec::parse(routing, &problem->routing_spec)) {
    return {ErrorCode::kInvalidArgument,
            "unknown routing '" + routing + "' (balanced, uniform, zipf1.0, zipf1.5, hot, worst)"};
  }
  const std::string order = args.text("order", "half-interval");
  if (!parse_expert_order(order, &problem->order)) {
    return {ErrorCode::kInvalidArgument,
            "unknown order '" + order + "' (identity, half-interval, longest-first)"};
  }
  if (problem->shape.top_k > problem->shape.num_experts) {
    return {ErrorCode::kInvalidArgument, "top_k > num_experts in model '" +
                                             problem->model_name + "'"};
  }
  problem->routing = workloads::generate_routing(problem->routing_spec, problem->num_tokens,
                                                 problem->shape.num_experts,
                                                 problem->shape.top_k, problem->seed);
  return Status::ok();
}

MoeLayerArgs ProblemData::layer_args() {
  MoeLayerArgs args;
  args.num_tokens = problem->num_tokens;
  args.hidden = hidden.data();
  args.w13 = w13.data();
  args.w2 = w2.data();
  args.topk_ids = problem->routing.topk_ids.data();
  args.topk_weights = problem->routing.topk_weights.data();
  args.out = out.data();
  return args;
}

GroupedGemmArgs ProblemData::gemm_args(const Problem& p) {
  return GroupedGemmArgs{p.num_tokens,   p.shape.top_k,  p.shape.num_experts,
                         p.shape.intermediate, p.shape.hidden, hidden.data(),
                         w13.data(),     p.routing.topk_ids.data(), out.data()};
}

ProblemData make_data(const Problem& problem) {
  const MoeShape& s = problem.shape;
  const size_t tokens = static_cast<size_t>(problem.num_tokens);
  const size_t experts = static_cast<size_t>(s.num_experts);
  ProblemData data;
  data.problem = &problem;
  data.hidden.resize(tokens * s.hidden);
  workloads::fill_random_bf16(data.hidden, problem.seed * 7 + 1, 1.0f);
  if (problem.grouped_gemm) {
    data.w13.resize(experts * s.intermediate * s.hidden);
    data.out.resize(tokens * s.top_k * s.intermediate);
  } else {
    data.w13.resize(experts * 2 * s.intermediate * s.hidden);
    data.w2.resize(experts * s.hidden * s.intermediate);
    workloads::fill_random_bf16(data.w2, problem.seed * 7 + 3,
                                1.0f / std::sqrt(static_cast<float>(s.intermediate)));
    data.out.resize(tokens * s.hidden);
  }
  workloads::fill_random_bf16(data.w13, problem.seed * 7 + 2,
                              1.0f / std::sqrt(static_cast<float>(s.hidden)));
  for (bf16& value : data.out) value = bf16::from_bits(0x7fc0);  // NaN: unwritten shows up
  return data;
}

Status build_plan(const Problem& problem, Plan* plan) {
  if (problem.grouped_gemm) {
    // Sizes and ids only: the planner reads no data pointer.
    const GroupedGemmArgs args{problem.num_tokens, problem.shape.top_k, problem.shape.num_experts,
                               problem.shape.intermediate, problem.shape.hidden, nullptr, nullptr,
                               problem.routing.topk_ids.data(), nullptr};
    return dispatch::build_grouped_gemm_plan(args, problem.order, problem.num_sms, -1, plan);
  }
  return dispatch::build_layer_plan(problem.shape, problem.routing.topk_ids.data(),
                                    problem.num_tokens, problem.order, problem.num_sms, -1, plan);
}

}  // namespace ramp::cli
