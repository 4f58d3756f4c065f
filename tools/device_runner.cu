#include "device_runner.h"

#include <cuda_runtime_api.h>

#include "bench/device_utils.h"
#include "cuda/cuda_backend.h"
#include "cuda/cuda_check.h"

namespace ramp::cli {

namespace {

using bench::DeviceBuffer;

// A device copy of a host vector (at least 16 bytes, so T = 0 still gets a valid pointer).
template <class T>
Status upload(const std::vector<T>& values, DeviceBuffer* buffer) {
  const size_t bytes = values.size() * sizeof(T);
  RAMP_TRY(buffer->allocate(bytes > 0 ? bytes : 16));
  RAMP_CUDA_TRY(cudaMemcpy(buffer->data(), values.data(), bytes, cudaMemcpyHostToDevice));
  return Status::ok();
}

struct Stream {
  cudaStream_t stream = nullptr;
  ~Stream() {
    if (stream != nullptr) cudaStreamDestroy(stream);
  }
};

struct EventPair {
  cudaEvent_t start = nullptr, stop = nullptr;
  ~EventPair() {
    if (start != nullptr) cudaEventDestroy(start);
    if (stop != nullptr) cudaEventDestroy(stop);
  }
};

}  // namespace

bool device_present() { return cuda::device_available(); }

Status run_problem_on_device(const Problem& problem, ProblemData& data, int repeats,
                             std::vector<double>* times_ms) {
  DeviceBuffer hidden, w13, w2, ids, weights, out, workspace;
  RAMP_TRY(upload(data.hidden, &hidden));
  RAMP_TRY(upload(data.w13, &w13));
  RAMP_TRY(upload(data.w2, &w2));
  RAMP_TRY(upload(problem.routing.topk_ids, &ids));
  RAMP_TRY(upload(problem.routing.topk_weights, &weights));
  RAMP_TRY(upload(data.out, &out));  // poisoned on the host: unwritten elements stay NaN

  const MoeShape& shape = problem.shape;
  const size_t workspace_bytes =
      problem.grouped_gemm
          ? cuda::grouped_gemm_workspace_bytes(shape.num_experts, problem.num_tokens, shape.top_k)
          : cuda::moe_layer_workspace_bytes(shape, problem.num_tokens);
  RAMP_TRY(workspace.allocate(workspace_bytes > 0 ? workspace_bytes : 16));

  MoeLayerArgs layer = data.layer_args();
  layer.hidden = static_cast<const bf16*>(hidden.data());
  layer.w13 = static_cast<const bf16*>(w13.data());
  layer.w2 = static_cast<const bf16*>(w2.data());
  layer.topk_ids = static_cast<const int32_t*>(ids.data());
  layer.topk_weights = static_cast<const float*>(weights.data());
  layer.out = static_cast<bf16*>(out.data());
  GroupedGemmArgs gemm = data.gemm_args(problem);
  gemm.x = static_cast<const bf16*>(hidden.data());
  gemm.w = static_cast<const bf16*>(w13.data());
  gemm.topk_ids = static_cast<const int32_t*>(ids.data());
  gemm.y = static_cast<bf16*>(out.data());

  Stream stream;
  RAMP_CUDA_TRY(cudaStreamCreate(&stream.stream));
  cuda::CudaOptions options;
  options.order = problem.order;
  auto launch = [&]() -> Status {
    return problem.grouped_gemm
               ? cuda::grouped_gemm(gemm, workspace.data(), workspace_bytes, stream.stream, options)
               : cuda::moe_layer(shape, layer, workspace.data(), workspace_bytes, stream.stream,
                                 options);
  };
  // The first run produces the verified output; the routing report is read once, after it.
  RAMP_TRY(launch());
  RAMP_TRY(cuda::read_routing_status(workspace.data(), shape.num_experts, problem.num_tokens,
                                     shape.top_k, layer.topk_ids, layer.topk_weights,
                                     stream.stream));
  RAMP_CUDA_TRY(cudaMemcpy(data.out.data(), out.data(), data.out.size() * sizeof(bf16),
                           cudaMemcpyDeviceToHost));
  EventPair events;
  RAMP_CUDA_TRY(cudaEventCreate(&events.start));
  RAMP_CUDA_TRY(cudaEventCreate(&events.stop));
  for (int r = 0; r < repeats; ++r) {
    RAMP_CUDA_TRY(cudaEventRecord(events.start, stream.stream));
    RAMP_TRY(launch());
    RAMP_CUDA_TRY(cudaEventRecord(events.stop, stream.stream));
    RAMP_CUDA_TRY(cudaEventSynchronize(events.stop));
    float ms = 0;
    RAMP_CUDA_TRY(cudaEventElapsedTime(&ms, events.start, events.stop));
    times_ms->push_back(ms);
  }
  return Status::ok();
}

}  // namespace ramp::cli
