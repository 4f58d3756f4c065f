// Device memory, random fills and the L2 flush shared by every measurement of `ramp bench`.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include "ramp/bf16.h"
#include "ramp/status.h"

namespace ramp::bench {

// Owns one cudaMalloc allocation; freed on destruction so an early error return leaks nothing.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& other) noexcept { *this = std::move(other); }
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(bytes_, other.bytes_);
    return *this;
  }
  ~DeviceBuffer() { reset(); }

  Status allocate(size_t bytes);
  void reset();
  void* data() const { return data_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(data_);
  }
  size_t bytes() const { return bytes_; }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

// Uniform in [-scale, scale], rounded to bf16, from a counter-based hash of (seed, index): the
// same seed gives the same data on every run, and it is never all zero.
Status fill_random_bf16_device(bf16* data, size_t count, uint64_t seed, float scale,
                               cudaStream_t stream);
// Every element = the bf16 with these bits (0x7fc0 = NaN: an unwritten output shows up).
Status fill_bf16_bits_device(bf16* data, size_t count, uint16_t bits, cudaStream_t stream);

// Evicts the L2 between timed repeats by reading a buffer several times the L2 size. Reads,
// not a memset: a memset leaves dirty lines whose write-back would land inside the next timed
// region.
class L2Flusher {
 public:
  Status init();
  Status flush(cudaStream_t stream);
  size_t bytes() const { return buffer_.bytes(); }

 private:
  DeviceBuffer buffer_;
  DeviceBuffer sink_;
};

struct DeviceInfo {
  std::string name;
  int32_t sm_count = 0;
  int32_t l2_bytes = 0;
  size_t memory_bytes = 0;
  int major = 0, minor = 0;
};
Status query_device(DeviceInfo* info);

}  // namespace ramp::bench
