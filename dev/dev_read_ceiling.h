// The read ceiling the dev microbenchmarks compare with: one pass over a buffer, every 16-byte
// vector loaded once with ld.global.cs (streaming: no reuse expected).
// Launch: read_all<<<SMs * 4, 512>>>(buffer, bytes / 16, sink); time it like any launch.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

namespace dev {

static __global__ void read_all(const int4* data, size_t count, int* sink) {
  int acc = 0;
  for (size_t i = blockIdx.x * size_t{blockDim.x} + threadIdx.x; i < count;
       i += size_t{gridDim.x} * blockDim.x) {
    const int4 v = __ldcs(data + i);
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (acc == 0x12345678) *sink = acc;  // keeps the loads; practically never true
}

}  // namespace dev
