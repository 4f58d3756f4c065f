// cp.async (Ampere-style 16-byte asynchronous copies global -> shared): the producer gathers
// token rows with it, because Hopper's tensor copies cannot follow an index array.
#pragma once

#include <cstdint>

#include "cuda/ptx/mbarrier.h"

namespace ramp::cuda::ptx {

// Copies 16 bytes, or writes 16 zero bytes when `fill_zero` (rows past the task's end: the
// source is then not read at all). .cg: bypass L1, token rows are reused through L2 only.
__device__ __forceinline__ void cp_async_16(uint32_t smem_dst, const void* global_src,
                                            bool fill_zero) {
  const uint32_t src_bytes = fill_zero ? 0u : 16u;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(smem_dst), "l"(global_src),
               "r"(src_bytes)
               : "memory");
}

// Arrives on the barrier once every cp.async this thread issued so far has landed. noinc: the
// arrival counts against the barrier's initial count (each producer thread is one expected
// arrival), so the barrier needs no extra bookkeeping per phase.
__device__ __forceinline__ void cp_async_mbarrier_arrive_noinc(uint64_t* barrier) {
  asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];" ::"r"(smem_address(barrier))
               : "memory");
}

}  // namespace ramp::cuda::ptx
