#include "device_runner.h"

#include <cuda_runtime_api.h>

#include "cuda/cuda_backend.h"
#include "cuda/cuda_check.h"

namespace ramp::cli {

namespace {

// A device buffer freed on every exit path.
struct DeviceBuffer {
  void* pointer = nullptr;
  ~DeviceBuffer() {
    if (pointer != nullptr) cudaFree(pointer);
  }
  Status allocate(size_t bytes) {
    RAMP_CUDA_TRY(cudaMalloc(&pointer, bytes > 0 ? bytes : 16));
    return Status::ok();
  }
  template <class T>
  Status upload(const std::vector<T>& values) {
    RAMP_TRY(allocate(values.size() * sizeof(T)));
    RAMP_CUDA_TRY(cudaMemcpy(pointer, values.data(), values.size() * sizeof(T),
                             cudaMemcpyHostToDevice));
    return Status::ok();
  }
};

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
  RAMP_TRY(hidden.upload(data.hidden));
  RAMP_TRY(w13.upload(data.w13));
  RAMP_TRY(w2.upload(data.w2));
  RAMP_TRY(ids.upload(problem.routing.topk_ids));
  RAMP_TRY(weights.upload(problem.routing.topk_weights));
  RAMP_TRY(out.upload(data.out));  // poisoned on the host: unwritten elements stay NaN

  const MoeShape& shape = problem.shape;
  const size_t workspace_bytes =
      problem.grouped_gemm
          ? cuda::grouped_gemm_workspace_bytes(shape.num_experts, problem.num_tokens, shape.top_k)
          : cuda::moe_layer_workspace_bytes(shape, problem.num_tokens);
  RAMP_TRY(workspace.allocate(workspace_bytes));

  MoeLayerArgs layer = data.layer_args();
  layer.hidden = static_cast<const bf16*>(hidden.pointer);
  layer.w13 = static_cast<const bf16*>(w13.pointer);
  layer.w2 = static_cast<const bf16*>(w2.pointer);
  layer.topk_ids = static_cast<const int32_t*>(ids.pointer);
  layer.topk_weights = static_cast<const float*>(weights.pointer);
  layer.out = static_cast<bf16*>(out.pointer);
  GroupedGemmArgs gemm = data.gemm_args(problem);
  gemm.x = static_cast<const bf16*>(hidden.pointer);
  gemm.w = static_cast<const bf16*>(w13.pointer);
  gemm.topk_ids = static_cast<const int32_t*>(ids.pointer);
  gemm.y = static_cast<bf16*>(out.pointer);

  Stream stream;
  RAMP_CUDA_TRY(cudaStreamCreate(&stream.stream));
  cuda::CudaOptions options;
  options.order = problem.order;
  auto launch = [&]() -> Status {
    return problem.grouped_gemm
               ? cuda::grouped_gemm(gemm, workspace.pointer, workspace_bytes, stream.stream, options)
               : cuda::moe_layer(shape, layer, workspace.pointer, workspace_bytes, stream.stream,
                                 options);
  };
  // The first run produces the verified output; the routing report is read once, after it.
  RAMP_TRY(launch());
  RAMP_TRY(cuda::read_routing_status(workspace.pointer, shape.num_experts, problem.num_tokens,
                                     shape.top_k, layer.topk_ids, layer.topk_weights,
                                     stream.stream));
  RAMP_CUDA_TRY(cudaMemcpy(data.out.data(), out.pointer, data.out.size() * sizeof(bf16),
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
