#include "bench/timing.h"

#include <algorithm>

#include "cuda/cuda_check.h"

namespace ramp::bench {

namespace {

class Graph {
 public:
  ~Graph() {
    if (exec_ != nullptr) cudaGraphExecDestroy(exec_);
    if (graph_ != nullptr) cudaGraphDestroy(graph_);
  }
  // Returns an empty string on success, else why capture failed (the stream is usable again).
  std::string capture(const DeviceOp& op, cudaStream_t stream) {
    cudaError_t error = cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal);
    if (error != cudaSuccess) return std::string("begin capture: ") + cudaGetErrorString(error);
    const Status status = op(stream);
    error = cudaStreamEndCapture(stream, &graph_);
    if (!status.is_ok()) {
      cudaGetLastError();
      return "op failed under capture: " + status.to_string();
    }
    if (error != cudaSuccess) {
      cudaGetLastError();
      return std::string("end capture: ") + cudaGetErrorString(error);
    }
    error = cudaGraphInstantiate(&exec_, graph_, 0);
    if (error != cudaSuccess) {
      cudaGetLastError();
      exec_ = nullptr;
      return std::string("instantiate: ") + cudaGetErrorString(error);
    }
    return {};
  }
  cudaGraphExec_t exec() const { return exec_; }

 private:
  cudaGraph_t graph_ = nullptr;
  cudaGraphExec_t exec_ = nullptr;
};

class EventPool {
 public:
  ~EventPool() {
    for (cudaEvent_t event : events_) cudaEventDestroy(event);
  }
  Status create(size_t count) {
    for (size_t i = 0; i < count; ++i) {
      cudaEvent_t event = nullptr;
      RAMP_CUDA_TRY(cudaEventCreate(&event));
      events_.push_back(event);
    }
    return Status::ok();
  }
  cudaEvent_t operator[](size_t i) const { return events_[i]; }

 private:
  std::vector<cudaEvent_t> events_;
};

}  // namespace

Status time_device_op(const DeviceOp& op, const TimingOptions& options, cudaStream_t stream,
                      L2Flusher* flusher, Timing* timing) {
  *timing = Timing{};
  RAMP_TRY(op(stream));
  RAMP_CUDA_TRY(cudaStreamSynchronize(stream));

  Graph graph;
  if (options.use_graph) {
    timing->graph_note = graph.capture(op, stream);
    timing->graph = timing->graph_note.empty();
  }
  auto launch = [&]() -> Status {
    if (timing->graph) {
      RAMP_CUDA_TRY(cudaGraphLaunch(graph.exec(), stream));
      return Status::ok();
    }
    return op(stream);
  };

  for (int i = 0; i < options.warmup; ++i) RAMP_TRY(launch());
  RAMP_CUDA_TRY(cudaStreamSynchronize(stream));

  const int repeats = std::max(options.repeats, 1);
  EventPool events;
  RAMP_TRY(events.create(2 * static_cast<size_t>(repeats)));
  for (int i = 0; i < repeats; ++i) {
    if (options.flush_l2 && flusher != nullptr) RAMP_TRY(flusher->flush(stream));
    RAMP_CUDA_TRY(cudaEventRecord(events[2 * i], stream));
    RAMP_TRY(launch());
    RAMP_CUDA_TRY(cudaEventRecord(events[2 * i + 1], stream));
  }
  RAMP_CUDA_TRY(cudaStreamSynchronize(stream));
  for (int i = 0; i < repeats; ++i) {
    float ms = 0;
    RAMP_CUDA_TRY(cudaEventElapsedTime(&ms, events[2 * i], events[2 * i + 1]));
    timing->samples_ms.push_back(ms);
  }
  std::vector<double> sorted = timing->samples_ms;
  std::sort(sorted.begin(), sorted.end());
  timing->repeats = repeats;
  timing->min_ms = sorted.front();
  timing->max_ms = sorted.back();
  timing->median_ms = repeats % 2 == 1
                          ? sorted[repeats / 2]
                          : 0.5 * (sorted[repeats / 2 - 1] + sorted[repeats / 2]);
  return Status::ok();
}

}  // namespace ramp::bench
