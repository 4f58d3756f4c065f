// Plain 16-byte global loads with cache qualifiers: the decode path's weight stream (read once,
// kept out of L1), its token rows (read by every warp: through L1) and the intermediate rows
// GEMM2 reads while GEMM1 still runs (from L2).
#pragma once

#include <cstdint>

namespace ramp::cuda::ptx {

// Weights: read exactly once per layer, so they bypass L1; the L2 fetches the 256-byte block
// around the load, which the lane group's next steps (the next 64 bytes of the same rows) hit.
__device__ __forceinline__ uint4 load_streaming_16(const void* pointer) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(pointer));
  return v;
}

// Data written by an earlier kernel of the stream and read by many warps: L1-cached.
__device__ __forceinline__ uint4 load_cached_16(const void* pointer) {
  uint4 v;
  asm volatile("ld.global.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(pointer));
  return v;
}

// Data another grid is writing while this one runs (handed over by a counter read with
// load_acquire): from L2, the point of coherence, never from a possibly stale L1 line.
__device__ __forceinline__ uint4 load_l2_16(const void* pointer) {
  uint4 v;
  asm volatile("ld.global.cg.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(pointer)
               : "memory");
  return v;
}

__device__ __forceinline__ uint4 load_shared_16(uint32_t smem_address) {
  uint4 v;
  asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "r"(smem_address));
  return v;
}

}  // namespace ramp::cuda::ptx
