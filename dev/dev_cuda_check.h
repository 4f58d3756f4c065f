// DEV_CUDA_CHECK: the dev programs' check of a CUDA runtime call. A failure prints the call,
// where it was made and what the runtime said, and exits: these are standalone mains, not
// library code (which returns a Status through RAMP_CUDA_TRY, src/cuda/cuda_check.h).
#pragma once

#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>

#define DEV_CUDA_CHECK(expr)                                                              \
  do {                                                                                    \
    const cudaError_t dev_error_ = (expr);                                                \
    if (dev_error_ != cudaSuccess) {                                                      \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #expr,                  \
                   cudaGetErrorString(dev_error_));                                       \
      std::exit(1);                                                                       \
    }                                                                                     \
  } while (0)
