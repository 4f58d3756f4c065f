// RAMP_CUDA_TRY: the CUDA flavour of RAMP_TRY. A failing runtime call returns a kCudaError
// Status that names the call, where it was made and what the runtime said.
#pragma once

#include <cuda_runtime_api.h>

#include <string>

#include "ramp/status.h"

namespace ramp::cuda {

inline Status cuda_error_status(cudaError_t error, const char* expression, const char* file,
                                int line) {
  return Status(ErrorCode::kCudaError, std::string(file) + ":" + std::to_string(line) + ": " +
                                           expression + " failed: " + cudaGetErrorName(error) +
                                           " (" + cudaGetErrorString(error) + ")");
}

}  // namespace ramp::cuda

#define RAMP_CUDA_TRY(expr)                                                              \
  do {                                                                                   \
    const cudaError_t ramp_cuda_error_ = (expr);                                         \
    if (ramp_cuda_error_ != cudaSuccess) {                                               \
      return ::ramp::cuda::cuda_error_status(ramp_cuda_error_, #expr, __FILE__, __LINE__); \
    }                                                                                    \
  } while (0)
