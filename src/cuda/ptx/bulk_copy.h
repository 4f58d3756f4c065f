// cp.async.bulk (non-tensor bulk copies, sm_90) and the bulk-group waits. The decode path loads
// weight rows global -> shared with them, completing on an mbarrier, and pulls rows into L2.
// The bulk groups are those of GEMM1's TMA tensor stores (ptx/tma.h): they run in the
// background while the consumers start the next tile, and a group is waited for (".read":
// until its source has been read) before its staging buffer is reused.
#pragma once

#include <cstdint>

namespace ramp::cuda::ptx {

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

// L2 eviction policies for the cache-hinted forms below (createpolicy, fraction 1.0).
__device__ __forceinline__ uint64_t l2_policy_evict_first() {
  uint64_t policy;
  asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(policy));
  return policy;
}
__device__ __forceinline__ uint64_t l2_policy_evict_last() {
  uint64_t policy;
  asm volatile("createpolicy.fractional.L2::evict_last.b64 %0, 1.0;" : "=l"(policy));
  return policy;
}

// bulk_load_global_to_shared with an L2 eviction policy for the lines it reads.
__device__ __forceinline__ void bulk_load_global_to_shared_hinted(uint32_t smem_dst,
                                                                  const void* global_src,
                                                                  uint32_t bytes, uint32_t barrier,
                                                                  uint64_t policy) {
  asm volatile(
      "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint "
      "[%0], [%1], %2, [%3], %4;" ::"r"(smem_dst),
      "l"(global_src), "r"(bytes), "r"(barrier), "l"(policy)
      : "memory");
}

// Pulls `bytes` at `global_src` into L2 with an eviction policy (nothing lands in shared
// memory, nothing to wait for). `bytes` a multiple of 16, the address 16-byte aligned.
__device__ __forceinline__ void bulk_prefetch_global_to_l2(const void* global_src, uint32_t bytes,
                                                           uint64_t policy) {
  asm volatile("cp.async.bulk.prefetch.L2.global.L2::cache_hint [%0], %1, %2;" ::"l"(global_src),
               "r"(bytes), "l"(policy)
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
