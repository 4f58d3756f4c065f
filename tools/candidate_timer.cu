#include "candidate_timer.h"

#include <cuda_runtime_api.h>

#include <algorithm>

#include "bench/device_utils.h"
#include "bench/timing.h"
#include "core/plan.h"
#include "cuda/cuda_check.h"
#include "cuda/static_batching.h"
#include "dispatch/builtin_configs.h"
#include "dispatch/catalog.h"

namespace ramp::cli {

namespace {

using bench::DeviceBuffer;

class Timer final : public CandidateTimer {
 public:
  ~Timer() override {
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }

  Status init(const MoeShape& shape, int32_t max_tokens, const TimerOptions& options) {
    shape_ = shape;
    max_tokens_ = std::max(max_tokens, 1);
    options_ = options;
    bench::DeviceInfo info;
    RAMP_TRY(bench::query_device(&info));
    device_name_ = info.name;
    sm_count_ = info.sm_count;
    RAMP_CUDA_TRY(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    RAMP_TRY(flusher_.init());
    const size_t slots = static_cast<size_t>(max_tokens_) * shape.top_k;
    const size_t e = shape.num_experts, h = shape.hidden, i = shape.intermediate;
    RAMP_TRY(hidden_.allocate(static_cast<size_t>(max_tokens_) * h * sizeof(bf16)));
    RAMP_TRY(w13_.allocate(e * 2 * i * h * sizeof(bf16)));
    RAMP_TRY(w2_.allocate(e * h * i * sizeof(bf16)));
    RAMP_TRY(intermediate_.allocate(slots * i * sizeof(bf16)));
    RAMP_TRY(slot_out_.allocate(slots * h * sizeof(float)));
    RAMP_TRY(weights_.allocate(slots * sizeof(float)));
    RAMP_TRY(plan_.allocate(plan_layout(shape.num_experts, static_cast<int32_t>(slots), 2).bytes));
    RAMP_TRY(bench::fill_random_bf16_device(hidden_.as<bf16>(), hidden_.bytes() / 2, 11, 1.0f,
                                            stream_));
    RAMP_TRY(bench::fill_random_bf16_device(w13_.as<bf16>(), w13_.bytes() / 2, 12, 0.05f,
                                            stream_));
    RAMP_TRY(bench::fill_random_bf16_device(w2_.as<bf16>(), w2_.bytes() / 2, 13, 0.05f, stream_));
    RAMP_TRY(bench::fill_random_bf16_device(intermediate_.as<bf16>(), intermediate_.bytes() / 2,
                                            14, 1.0f, stream_));
    RAMP_CUDA_TRY(cudaStreamSynchronize(stream_));
    return Status::ok();
  }

  const std::string& device_name() const override { return device_name_; }
  int32_t sm_count() const override { return sm_count_; }

  Status set_routing(const std::vector<int32_t>& topk_ids, const std::vector<float>& topk_weights,
                     int32_t num_tokens) override {
    if (num_tokens > max_tokens_ || num_tokens < 1) {
      return {ErrorCode::kInvalidArgument, "num_tokens outside [1, max_tokens]"};
    }
    topk_ids_ = topk_ids;
    num_tokens_ = num_tokens;
    RAMP_CUDA_TRY(cudaMemcpy(weights_.data(), topk_weights.data(),
                             topk_weights.size() * sizeof(float), cudaMemcpyHostToDevice));
    return Status::ok();
  }

  Status time_gemms(const std::vector<int32_t>& configs1, const std::vector<int32_t>& configs2,
                    double* gemm1_us, double* gemm2_us) override {
    const std::vector<TileConfig> configs(std::begin(dispatch::kBuiltinConfigs),
                                          std::end(dispatch::kBuiltinConfigs));
    return time_plan({GemmPlanSpec{2 * shape_.intermediate, shape_.hidden, configs, configs1},
                      GemmPlanSpec{shape_.hidden, shape_.intermediate, configs, configs2}},
                     gemm1_us, gemm2_us);
  }

  Status time_catalog_entries(int32_t entry1, int32_t entry2, double* gemm1_us,
                              double* gemm2_us) override {
    const int32_t entries[2] = {entry1, entry2};
    const dispatch::GemmShape shapes[2] = {
        {shape_.num_experts, shape_.top_k, 2 * shape_.intermediate, shape_.hidden},
        {shape_.num_experts, shape_.top_k, shape_.hidden, shape_.intermediate}};
    std::vector<GemmPlanSpec> specs;
    for (int g = 0; g < 2; ++g) {
      GemmPlanSpec spec{shapes[g].out_features, shapes[g].in_features, {}, {}};
      // A skipped GEMM still needs a plan entry: the builtin set, never launched.
      spec.configs.assign(std::begin(dispatch::kBuiltinConfigs), std::end(dispatch::kBuiltinConfigs));
      if (entries[g] >= 0) {
        if (entries[g] >= dispatch::kCatalogSize) {
          return {ErrorCode::kInvalidArgument, "catalog index " + std::to_string(entries[g]) +
                                                   " is outside the catalog"};
        }
        const TileConfig& config = dispatch::kCatalogTable.entries[entries[g]];
        std::string why;
        if (!dispatch::fits_gemm(config, shapes[g], &why)) {
          return {ErrorCode::kUnsupportedShape, config.to_string() + " cannot run " +
                                                    shapes[g].to_string() + ": " + why};
        }
        spec.configs = {config};
        spec.expert_config.assign(static_cast<size_t>(shape_.num_experts), 0);
      }
      specs.push_back(std::move(spec));
    }
    return time_plan(std::move(specs), entry1 >= 0 ? gemm1_us : nullptr,
                     entry2 >= 0 ? gemm2_us : nullptr);
  }

 private:
  Status time_plan(std::vector<GemmPlanSpec> specs, double* gemm1_us, double* gemm2_us) {
    PlanRequest request{topk_ids_.data(), num_tokens_, shape_.top_k, shape_.num_experts,
                        ExpertOrder::kHalfInterval, {}};
    request.gemms = std::move(specs);
    Plan plan;
    RAMP_TRY(Plan::build(request, &plan));
    const std::span<const std::byte> bytes = plan.bytes();
    RAMP_CUDA_TRY(cudaMemcpyAsync(plan_.data(), bytes.data(), bytes.size(),
                                  cudaMemcpyHostToDevice, stream_));
    const int32_t slots = num_tokens_ * shape_.top_k;
    const PlanLayout layout = plan_layout(shape_.num_experts, slots, 2);
    char* base = plan_.as<char>();
    const RoutingView routing = routing_view_at(base, shape_.num_experts, shape_.top_k, slots);

    for (int gemm_index = 0; gemm_index < 2; ++gemm_index) {
      if ((gemm_index == 0 ? gemm1_us : gemm2_us) == nullptr) continue;
      cuda::StaticBatchedGemm gemm{};
      gemm.routing = routing;
      gemm.task_map = task_map_view_at(base + layout.task_maps[gemm_index], shape_.num_experts);
      gemm.max_total_tiles = std::max(1, plan.task_map(gemm_index).header->total_tiles);
      if (gemm_index == 0) {
        gemm.epilogue = cuda::GemmEpilogue::kSiluGateUp;
        gemm.a = hidden_.data();
        gemm.a_row_stride = shape_.hidden;
        gemm.w = w13_.data();
        gemm.out_features = 2 * shape_.intermediate;
        gemm.in_features = shape_.hidden;
        gemm.out = intermediate_.data();
        gemm.out_row_stride = shape_.intermediate;
      } else {
        gemm.epilogue = cuda::GemmEpilogue::kRouterWeighted;
        gemm.a = intermediate_.data();
        gemm.a_row_stride = shape_.intermediate;
        gemm.w = w2_.data();
        gemm.out_features = shape_.hidden;
        gemm.in_features = shape_.intermediate;
        gemm.out = slot_out_.data();
        gemm.out_row_stride = shape_.hidden;
        gemm.topk_weights = weights_.as<float>();
      }
      const std::vector<TileConfig>& configs = plan.gemm(gemm_index).configs;
      gemm.configs = configs.data();
      gemm.num_configs = static_cast<int32_t>(configs.size());
      const size_t scratch_bytes = cuda::static_batched_gemm_split_scratch_bytes(
          gemm.configs, gemm.num_configs, gemm.max_total_tiles);
      if (scratch_bytes > split_scratch_.bytes()) {
        split_scratch_.reset();
        RAMP_TRY(split_scratch_.allocate(scratch_bytes));
      }
      gemm.split_scratch = split_scratch_.data();
      gemm.split_scratch_bytes = split_scratch_.bytes();
      bench::TimingOptions timing_options;
      timing_options.warmup = options_.warmup;
      timing_options.repeats = options_.repeats;
      timing_options.use_graph = true;
      timing_options.flush_l2 = true;
      bench::Timing timing;
      RAMP_TRY(bench::time_device_op(
          [&](cudaStream_t stream) { return cuda::launch_static_batched_gemm(gemm, stream); },
          timing_options, stream_, &flusher_, &timing));
      (gemm_index == 0 ? *gemm1_us : *gemm2_us) = timing.median_ms * 1000.0;
    }
    return Status::ok();
  }

  MoeShape shape_{};
  int32_t max_tokens_ = 0;
  TimerOptions options_;
  std::string device_name_;
  int32_t sm_count_ = 0;
  cudaStream_t stream_ = nullptr;
  bench::L2Flusher flusher_;
  DeviceBuffer hidden_, w13_, w2_, intermediate_, slot_out_, weights_, plan_, split_scratch_;
  std::vector<int32_t> topk_ids_;
  int32_t num_tokens_ = 0;
};

}  // namespace

Status CandidateTimer::create(const MoeShape& shape, int32_t max_tokens,
                              const TimerOptions& options, std::unique_ptr<CandidateTimer>* timer) {
  auto result = std::make_unique<Timer>();
  RAMP_TRY(result->init(shape, max_tokens, options));
  *timer = std::move(result);
  return Status::ok();
}

}  // namespace ramp::cli
