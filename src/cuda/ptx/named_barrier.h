// Named barriers (bar.sync with an id and a thread count): synchronise one warpgroup without
// stopping the others.
#pragma once

#include <cstdint>

namespace ramp::cuda::ptx {

__device__ __forceinline__ void named_barrier_sync(uint32_t id, uint32_t threads) {
  asm volatile("bar.sync %0, %1;" ::"r"(id), "r"(threads) : "memory");
}

}  // namespace ramp::cuda::ptx
