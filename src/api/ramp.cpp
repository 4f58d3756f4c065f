#include "ramp/ramp.h"

#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <utility>

#include "core/plan.h"
#include "core/validation.h"
#include "cpu/cpu_backend.h"
#include "dispatch/config_selection.h"

#if RAMP_API_WITH_CUDA
#include "cuda/cuda_backend.h"
#endif

namespace ramp {
namespace {

// The CPU plan uses the CUDA backend's default order so both backends execute the same schedule.
constexpr ExpertOrder kLayerOrder = ExpertOrder::kHalfInterval;

int32_t cpu_plan_sms(const MoeLayerOptions& options) {
  return options.num_sms > 0 ? options.num_sms : dispatch::kDefaultSmCount;
}

Status check_options(const MoeLayerOptions& options) {
  if (options.cpu_threads < 0) {
    return {ErrorCode::kInvalidArgument, "cpu_threads = " + std::to_string(options.cpu_threads) +
                                             " is negative (0 = all cores)"};
  }
  if (options.num_sms < 0) {
    return {ErrorCode::kInvalidArgument,
            "num_sms = " + std::to_string(options.num_sms) + " is negative (0 = the device's)"};
  }
  return Status::ok();
}

#if RAMP_API_WITH_CUDA
cuda::CudaOptions cuda_options(const MoeLayerOptions& options) {
  cuda::CudaOptions cuda_opts;
  cuda_opts.order = kLayerOrder;
  cuda_opts.forced_config = options.forced_config;
  cuda_opts.num_sms = options.num_sms;
  return cuda_opts;
}
#endif

size_t backend_workspace_bytes(Backend backend, const MoeShape& shape, int32_t max_tokens) {
  if (max_tokens < 0 || !validate_shape(shape).is_ok()) return 0;
#if RAMP_API_WITH_CUDA
  if (backend == Backend::kCuda) return cuda::moe_layer_workspace_bytes(shape, max_tokens);
#endif
  if (backend == Backend::kCpu) return cpu::moe_layer_workspace_bytes(shape, max_tokens);
  return 0;
}

// The API promises not to throw; a refused thread start becomes a Status.
Status start_cpu_executor(int32_t cpu_threads, std::unique_ptr<cpu::Executor>* executor) {
  try {
    *executor = std::make_unique<cpu::Executor>(cpu_threads);
  } catch (const std::exception& error) {
    return {ErrorCode::kInternal,
            std::string("could not start the CPU backend's threads: ") + error.what()};
  }
  return Status::ok();
}

Status run_on_backend(Backend backend, const Plan& cpu_plan, cpu::Executor* cpu_executor,
                      const MoeShape& shape, const MoeLayerArgs& args,
                      const MoeLayerOptions& options, void* workspace, size_t workspace_bytes,
                      void* stream) {
  if (backend == Backend::kCpu) {
    return cpu::run_moe_layer(cpu_plan, shape, args, workspace, workspace_bytes, *cpu_executor);
  }
#if RAMP_API_WITH_CUDA
  return cuda::moe_layer(shape, args, workspace, workspace_bytes,
                         static_cast<cudaStream_t>(stream), cuda_options(options));
#else
  (void)options, (void)stream;
  return {ErrorCode::kInternal, "CUDA backend selected in a build without it"};
#endif
}

}  // namespace

const char* backend_name(Backend backend) {
  switch (backend) {
    case Backend::kAuto: return "auto";
    case Backend::kCpu: return "cpu";
    case Backend::kCuda: return "cuda";
  }
  return "unknown";
}

bool cuda_backend_built() { return RAMP_API_WITH_CUDA != 0; }

bool cuda_device_available() {
#if RAMP_API_WITH_CUDA
  return cuda::device_available();
#else
  return false;
#endif
}

Status resolve_backend(Backend requested, Backend* resolved) {
  switch (requested) {
    case Backend::kCpu:
      *resolved = Backend::kCpu;
      return Status::ok();
    case Backend::kAuto:
      *resolved = cuda_device_available() ? Backend::kCuda : Backend::kCpu;
      return Status::ok();
    case Backend::kCuda:
      if (!cuda_backend_built()) {
        return {ErrorCode::kNoDevice,
                "backend cuda: this build of ramp has no CUDA backend (configured without nvcc "
                "or with RAMP_ENABLE_CUDA=OFF)"};
      }
      if (!cuda_device_available()) {
        return {ErrorCode::kNoDevice, "backend cuda: no CUDA device is present"};
      }
      *resolved = Backend::kCuda;
      return Status::ok();
  }
  return {ErrorCode::kInvalidArgument,
          "backend = " + std::to_string(static_cast<int>(requested)) + " is not a Backend"};
}

struct MoeLayer::Impl {
  MoeShape shape;
  Backend backend = Backend::kAuto;
  MoeLayerOptions options;
  Status status;
  bool planned = false;
  const int32_t* planned_ids = nullptr;
  int32_t planned_tokens = 0;
  Plan cpu_plan;
  // Started by the first kCpu run(), so a layer built only to size a workspace starts no thread.
  std::unique_ptr<cpu::Executor> cpu_executor;
};

MoeLayer::MoeLayer(const MoeShape& shape, Backend backend, const MoeLayerOptions& options)
    : impl_(std::make_unique<Impl>()) {
  impl_->shape = shape;
  impl_->options = options;
  impl_->status = validate_shape(shape);
  if (impl_->status.is_ok()) impl_->status = check_options(options);
  if (impl_->status.is_ok()) impl_->status = resolve_backend(backend, &impl_->backend);
}

MoeLayer::~MoeLayer() = default;
MoeLayer::MoeLayer(MoeLayer&&) noexcept = default;
MoeLayer& MoeLayer::operator=(MoeLayer&&) noexcept = default;

const Status& MoeLayer::status() const { return impl_->status; }
const MoeShape& MoeLayer::shape() const { return impl_->shape; }
Backend MoeLayer::backend() const { return impl_->backend; }

size_t MoeLayer::workspace_bytes(int32_t max_tokens) const {
  if (!impl_->status.is_ok()) return 0;
  return backend_workspace_bytes(impl_->backend, impl_->shape, max_tokens);
}

Status MoeLayer::plan(const int32_t* topk_ids, int32_t num_tokens) {
  RAMP_TRY(impl_->status);
  impl_->planned = false;
  if (impl_->backend == Backend::kCpu) {
    RAMP_TRY(dispatch::build_layer_plan(impl_->shape, topk_ids, num_tokens, kLayerOrder,
                                        cpu_plan_sms(impl_->options), impl_->options.forced_config,
                                        &impl_->cpu_plan));
  } else {
    // The ids live on the device: only what the host can check without reading them.
    if (num_tokens < 0) {
      return {ErrorCode::kInvalidArgument,
              "num_tokens (T) = " + std::to_string(num_tokens) + " must be >= 0"};
    }
    if (static_cast<int64_t>(num_tokens) * impl_->shape.top_k > INT32_MAX) {
      return {ErrorCode::kUnsupportedShape,
              "num_tokens * top_k = " +
                  std::to_string(static_cast<int64_t>(num_tokens) * impl_->shape.top_k) +
                  " overflows the int32 slot index"};
    }
    if (num_tokens > 0 && topk_ids == nullptr) {
      return {ErrorCode::kInvalidArgument, "topk_ids is null"};
    }
  }
  impl_->planned = true;
  impl_->planned_ids = topk_ids;
  impl_->planned_tokens = num_tokens;
  return Status::ok();
}

Status MoeLayer::run(const MoeLayerArgs& args, void* workspace, size_t workspace_bytes,
                     void* stream) {
  RAMP_TRY(impl_->status);
  if (!impl_->planned) {
    return {ErrorCode::kInvalidArgument, "run() before plan(): plan(topk_ids, T) first"};
  }
  if (args.num_tokens != impl_->planned_tokens || args.topk_ids != impl_->planned_ids) {
    return {ErrorCode::kInvalidArgument,
            "run() arguments differ from the last plan(): plan had T=" +
                std::to_string(impl_->planned_tokens) + ", run has T=" +
                std::to_string(args.num_tokens) +
                (args.topk_ids != impl_->planned_ids ? " and another topk_ids pointer" : "")};
  }
  if (impl_->backend == Backend::kCpu && impl_->cpu_executor == nullptr) {
    RAMP_TRY(start_cpu_executor(impl_->options.cpu_threads, &impl_->cpu_executor));
  }
  return run_on_backend(impl_->backend, impl_->cpu_plan, impl_->cpu_executor.get(), impl_->shape,
                        args, impl_->options, workspace, workspace_bytes, stream);
}

Status MoeLayer::check_routing(const MoeLayerArgs& args, const void* workspace,
                               void* stream) const {
  RAMP_TRY(impl_->status);
  if (impl_->backend == Backend::kCpu) return Status::ok();
#if RAMP_API_WITH_CUDA
  return cuda::read_routing_status(workspace, impl_->shape.num_experts, args.num_tokens,
                                   impl_->shape.top_k, args.topk_ids, args.topk_weights,
                                   static_cast<cudaStream_t>(stream));
#else
  (void)args, (void)workspace, (void)stream;
  return {ErrorCode::kInternal, "CUDA backend selected in a build without it"};
#endif
}

size_t fused_moe_workspace_bytes(const MoeShape& shape, int32_t num_tokens, Backend backend) {
  Backend resolved = Backend::kCpu;
  if (!resolve_backend(backend, &resolved).is_ok()) return 0;
  return backend_workspace_bytes(resolved, shape, num_tokens);
}

// Not built on MoeLayer: on kCuda this path makes no host allocation at all. On kCpu it plans
// and starts its threads per call (a MoeLayer keeps its threads across calls).
Status fused_moe(const MoeShape& shape, const MoeLayerArgs& args, Backend backend,
                 void* workspace, size_t workspace_bytes, void* stream) {
  Backend resolved = Backend::kCpu;
  RAMP_TRY(resolve_backend(backend, &resolved));
  const MoeLayerOptions options;
  Plan cpu_plan;
  std::unique_ptr<cpu::Executor> cpu_executor;
  if (resolved == Backend::kCpu) {
    RAMP_TRY(validate_layer_args(shape, args));
    RAMP_TRY(dispatch::build_layer_plan(shape, args.topk_ids, args.num_tokens, kLayerOrder,
                                        cpu_plan_sms(options), options.forced_config, &cpu_plan));
    RAMP_TRY(start_cpu_executor(options.cpu_threads, &cpu_executor));
  }
  return run_on_backend(resolved, cpu_plan, cpu_executor.get(), shape, args, options, workspace,
                        workspace_bytes, stream);
}

}  // namespace ramp
