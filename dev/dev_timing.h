// Launch timing for the dev microbenchmarks: CUDA events around each call on the default
// stream, after untimed warm-up calls. Returns every timed call, sorted, so a caller takes the
// median (times[size / 2]) or the best (times[0]).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <vector>

#include "dev_cuda_check.h"

namespace dev {

template <class Launch>
std::vector<float> sorted_event_times_ms(int warmups, int repeats, Launch&& launch) {
  cudaEvent_t start, stop;
  DEV_CUDA_CHECK(cudaEventCreate(&start));
  DEV_CUDA_CHECK(cudaEventCreate(&stop));
  for (int i = 0; i < warmups; ++i) launch();
  DEV_CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<float> times;
  for (int i = 0; i < repeats; ++i) {
    DEV_CUDA_CHECK(cudaEventRecord(start));
    launch();
    DEV_CUDA_CHECK(cudaEventRecord(stop));
    DEV_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    DEV_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    times.push_back(ms);
  }
  DEV_CUDA_CHECK(cudaGetLastError());
  DEV_CUDA_CHECK(cudaEventDestroy(start));
  DEV_CUDA_CHECK(cudaEventDestroy(stop));
  std::sort(times.begin(), times.end());
  return times;
}

// Replays `graphs` in turn on the default stream, one untimed round first, and returns the
// rounds x graphs.size() timed replays, sorted. Graphs over different inputs, together larger
// than L2, give every replay a cold L2.
inline std::vector<float> sorted_rotating_graph_times_ms(const std::vector<cudaGraphExec_t>& graphs,
                                                         int rounds) {
  size_t next = 0;
  const int count = static_cast<int>(graphs.size());
  return sorted_event_times_ms(count, rounds * count, [&] {
    DEV_CUDA_CHECK(cudaGraphLaunch(graphs[next], 0));
    next = (next + 1) % graphs.size();
  });
}

}  // namespace dev
