// Marks functions that are compiled for the host and for the device, so the CPU backend and the
// tests run exactly the index math the kernel runs.
#pragma once

#if defined(__CUDACC__)
#define RAMP_HOST_DEVICE __host__ __device__
#define RAMP_FORCEINLINE __forceinline__
#else
#define RAMP_HOST_DEVICE
#define RAMP_FORCEINLINE inline
#endif

#include <cstdint>

namespace ramp {

RAMP_HOST_DEVICE constexpr int32_t ceil_div(int32_t a, int32_t b) { return (a + b - 1) / b; }
RAMP_HOST_DEVICE constexpr int64_t ceil_div64(int64_t a, int64_t b) { return (a + b - 1) / b; }
RAMP_HOST_DEVICE constexpr int32_t round_up(int32_t a, int32_t b) { return ceil_div(a, b) * b; }
RAMP_HOST_DEVICE constexpr int32_t min_i32(int32_t a, int32_t b) { return a < b ? a : b; }
RAMP_HOST_DEVICE constexpr int32_t max_i32(int32_t a, int32_t b) { return a > b ? a : b; }

}  // namespace ramp
