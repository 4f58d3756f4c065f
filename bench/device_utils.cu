#include "bench/device_utils.h"

#include <algorithm>
#include <string>

#include "cuda/cuda_check.h"

namespace ramp::bench {

namespace {

__device__ __forceinline__ uint64_t mix64(uint64_t x) {
  // splitmix64 finaliser: consecutive indices give independent-looking values.
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

__global__ void fill_random_bf16_kernel(uint16_t* data, size_t count, uint64_t seed, float scale) {
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < count;
       i += stride) {
    const uint64_t bits = mix64(seed * 0x2545f4914f6cdd1dull + i);
    // 24 random bits -> [0, 1) -> [-scale, scale]
    const float unit = static_cast<float>(bits >> 40) * (1.0f / 16777216.0f);
    const float value = (2.0f * unit - 1.0f) * scale;
    // Round to nearest even, as ramp::bf16::from_float does (values are finite here).
    const uint32_t u = __float_as_uint(value);
    data[i] = static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
  }
}

__global__ void fill_bits_kernel(uint16_t* data, size_t count, uint16_t bits) {
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < count;
       i += stride) {
    data[i] = bits;
  }
}

__global__ void read_all_kernel(const uint4* data, size_t count, unsigned* sink) {
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  unsigned acc = 0;
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < count;
       i += stride) {
    const uint4 v = data[i];
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  // The buffer holds zeros, so this store never happens, but the compiler cannot know that and
  // must keep every load.
  if (acc == 0x9e3779b9u) *sink = acc;
}

int grid_for(size_t count) {
  return static_cast<int>(std::min<size_t>((count + 255) / 256, 132 * 16));
}

}  // namespace

Status DeviceBuffer::allocate(size_t bytes) {
  reset();
  if (bytes == 0) return Status::ok();
  void* pointer = nullptr;
  const cudaError_t error = cudaMalloc(&pointer, bytes);
  if (error != cudaSuccess) {
    cudaGetLastError();  // so a later launch check does not report this allocation failure
    return Status(ErrorCode::kCudaError, "cudaMalloc(" + std::to_string(bytes) +
                                             " bytes) failed: " + cudaGetErrorString(error));
  }
  data_ = pointer;
  bytes_ = bytes;
  return Status::ok();
}

void DeviceBuffer::reset() {
  if (data_ != nullptr) cudaFree(data_);
  data_ = nullptr;
  bytes_ = 0;
}

Status fill_random_bf16_device(bf16* data, size_t count, uint64_t seed, float scale,
                               cudaStream_t stream) {
  if (count == 0) return Status::ok();
  fill_random_bf16_kernel<<<grid_for(count), 256, 0, stream>>>(reinterpret_cast<uint16_t*>(data),
                                                              count, seed, scale);
  RAMP_CUDA_TRY(cudaGetLastError());
  return Status::ok();
}

Status fill_bf16_bits_device(bf16* data, size_t count, uint16_t bits, cudaStream_t stream) {
  if (count == 0) return Status::ok();
  fill_bits_kernel<<<grid_for(count), 256, 0, stream>>>(reinterpret_cast<uint16_t*>(data), count,
                                                       bits);
  RAMP_CUDA_TRY(cudaGetLastError());
  return Status::ok();
}

Status L2Flusher::init() {
  int device = 0, l2_bytes = 0;
  RAMP_CUDA_TRY(cudaGetDevice(&device));
  RAMP_CUDA_TRY(cudaDeviceGetAttribute(&l2_bytes, cudaDevAttrL2CacheSize, device));
  // Four times the L2 (50 MB on H100) so no line of the timed op's inputs survives.
  const size_t bytes = std::max<size_t>(4 * static_cast<size_t>(l2_bytes), size_t{256} << 20);
  RAMP_TRY(buffer_.allocate(bytes));
  RAMP_TRY(sink_.allocate(sizeof(unsigned)));
  RAMP_CUDA_TRY(cudaMemset(buffer_.data(), 0, bytes));
  return Status::ok();
}

Status L2Flusher::flush(cudaStream_t stream) {
  const size_t vectors = buffer_.bytes() / sizeof(uint4);
  read_all_kernel<<<grid_for(vectors), 256, 0, stream>>>(buffer_.as<const uint4>(), vectors,
                                                        sink_.as<unsigned>());
  RAMP_CUDA_TRY(cudaGetLastError());
  return Status::ok();
}

Status query_device(DeviceInfo* info) {
  int device = 0;
  RAMP_CUDA_TRY(cudaGetDevice(&device));
  cudaDeviceProp props{};
  RAMP_CUDA_TRY(cudaGetDeviceProperties(&props, device));
  info->name = props.name;
  info->sm_count = props.multiProcessorCount;
  info->l2_bytes = props.l2CacheSize;
  info->memory_bytes = props.totalGlobalMem;
  info->major = props.major;
  info->minor = props.minor;
  return Status::ok();
}

}  // namespace ramp::bench
