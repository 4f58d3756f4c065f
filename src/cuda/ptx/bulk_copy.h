// cp.async.bulk (non-tensor bulk copies, sm_90): the epilogue's shared -> global row stores.
// They run in the background while the consumers start the next tile; a bulk group is waited
// for (".read": until its source has been read) before its staging buffer is reused. The
// decode path's GEMM2 loads its weight rows global -> shared with them, completing on an
// mbarrier.
#pragma once

#include <cstdint>

namespace ramp::cuda::ptx {

// `bytes` must be a multiple of 16; both addresses 16-byte aligned.
__device__ __forceinline__ void bulk_store_shared_to_global(void* global_dst, uint32_t smem_src,
                                                            uint32_t bytes) {
  asm volatile("cp.async.bulk.global.shared::cta.bulk_group [%0], [%1], %2;" ::"l"(global_dst),
               "r"(smem_src), "r"(bytes)
               : "memory");
}

// `bytes` must be a multiple of 16; both addresses 16-byte aligned. Completes `bytes` of
// transactions on `barrier` (announced with mbarrier_arrive_expect_tx).
__device__ __forceinline__ void bulk_load_global_to_shared(uint32_t smem_dst, const void* global_src,
                                                           uint32_t bytes, uint32_t barrier) {
  asm volatile(
      "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
          smem_dst),
      "l"(global_src), "r"(bytes), "r"(barrier)
      : "memory");
}

__device__ __forceinline__ void bulk_commit_group() {
  asm volatile("cp.async.bulk.commit_group;" ::: "memory");
}

// Waits until at most kPending of this thread's bulk groups still read shared memory.
template <int kPending>
__device__ __forceinline__ void bulk_wait_group_read() {
  asm volatile("cp.async.bulk.wait_group.read %0;" ::"n"(kPending) : "memory");
}

// Waits until this thread's bulk groups have completed entirely (writes performed).
template <int kPending>
__device__ __forceinline__ void bulk_wait_group() {
  asm volatile("cp.async.bulk.wait_group %0;" ::"n"(kPending) : "memory");
}

}  // namespace ramp::cuda::ptx
