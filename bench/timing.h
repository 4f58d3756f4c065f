// Timing of one device operation: CUDA events around each repeat, warm-up first, median of many
// repeats, optionally replayed from a CUDA graph, with the L2 flushed between repeats.
#pragma once

#include <cuda_runtime_api.h>

#include <functional>
#include <string>
#include <vector>

#include "bench/device_utils.h"
#include "ramp/status.h"

namespace ramp::bench {

struct TimingOptions {
  int warmup = 5;
  int repeats = 30;
  bool use_graph = true;  // capture the op once, time its replays
  bool flush_l2 = true;   // L2 flush (outside the timed region) before every repeat
};

struct Timing {
  double median_ms = 0, min_ms = 0, max_ms = 0;
  int repeats = 0;
  bool graph = false;       // the times are graph replays
  std::string graph_note;   // why a requested graph was not used
  std::vector<double> samples_ms;
};

// Enqueues the operation on `stream`. Must not synchronise (it may be captured in a graph).
using DeviceOp = std::function<Status(cudaStream_t)>;

// The op runs once eagerly first (lazy initialisation inside libraries stays out of capture and
// out of the numbers). When capture fails the op is timed on the stream and graph_note says why.
// All repeats are enqueued before one synchronisation, so host launch cost overlaps the device
// work of the previous repeat, as it does in a serving loop.
Status time_device_op(const DeviceOp& op, const TimingOptions& options, cudaStream_t stream,
                      L2Flusher* flusher, Timing* timing);

}  // namespace ramp::bench
