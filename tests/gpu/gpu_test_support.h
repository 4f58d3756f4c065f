// Small helpers shared by the GPU tests: skip without a device, owned device buffers, checked
// runtime calls.
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "cuda/cuda_backend.h"

// Every GPU test starts with this: CI has no device, and ctest reports the skip.
#define RAMP_SKIP_WITHOUT_DEVICE()                                                   \
  do {                                                                               \
    if (!::ramp::cuda::device_available()) GTEST_SKIP() << "no CUDA device present"; \
  } while (0)

#define RAMP_ASSERT_CUDA(expr)                                           \
  do {                                                                   \
    const cudaError_t ramp_test_error_ = (expr);                         \
    ASSERT_EQ(ramp_test_error_, cudaSuccess)                             \
        << #expr << ": " << cudaGetErrorString(ramp_test_error_);        \
  } while (0)

namespace ramp::testing {

// cudaMalloc'd bytes, freed on scope exit. Allocation failures leave it null (the test's next
// checked call then fails with the runtime's message).
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes) : bytes_(bytes) {
    if (bytes > 0 && cudaMalloc(&data_, bytes) != cudaSuccess) data_ = nullptr;
  }
  DeviceBuffer(DeviceBuffer&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(bytes_, other.bytes_);
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() {
    if (data_ != nullptr) cudaFree(data_);
  }

  template <class T = void>
  T* as() const { return static_cast<T*>(data_); }
  size_t bytes() const { return bytes_; }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

// A device copy of a host vector (at least 16 bytes, so empty inputs still get a valid pointer).
template <class T>
DeviceBuffer to_device(const std::vector<T>& host) {
  DeviceBuffer buffer(std::max<size_t>(sizeof(T) * host.size(), 16));
  if (buffer.as() != nullptr && !host.empty()) {
    cudaMemcpy(buffer.as(), host.data(), sizeof(T) * host.size(), cudaMemcpyHostToDevice);
  }
  return buffer;
}

template <class T>
std::vector<T> to_host(const void* device, size_t count) {
  std::vector<T> host(count);
  if (count > 0) cudaMemcpy(host.data(), device, sizeof(T) * count, cudaMemcpyDeviceToHost);
  return host;
}

}  // namespace ramp::testing
