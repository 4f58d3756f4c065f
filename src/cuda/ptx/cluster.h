// Thread-block clusters (sm_90): rank, cluster-wide barrier, and addressing a peer CTA's
// shared memory (mapa) to arrive on its mbarriers.
#pragma once

#include <cstdint>

namespace ramp::cuda::ptx {

__device__ __forceinline__ uint32_t cluster_cta_rank() {
  uint32_t rank;
  asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(rank));
  return rank;
}

// Every thread of every CTA in the cluster arrives, then waits (release/acquire).
__device__ __forceinline__ void cluster_sync() {
  asm volatile("barrier.cluster.arrive.release.aligned;\nbarrier.cluster.wait.acquire.aligned;" ::
                   : "memory");
}

// The shared::cluster address of the same variable in CTA `rank` of the cluster.
__device__ __forceinline__ uint32_t map_shared_to_rank(uint32_t smem_address, uint32_t rank) {
  uint32_t result;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(result) : "r"(smem_address), "r"(rank));
  return result;
}

// Arrives on an mbarrier given by its shared::cluster address (possibly in a peer CTA).
// Default semantics (release at CTA scope): the arrivals only say "this stage is no longer
// read", there is no data of ours the peer must see, so no cluster-scope release is paid.
__device__ __forceinline__ void mbarrier_arrive_cluster(uint32_t cluster_address) {
  asm volatile("mbarrier.arrive.shared::cluster.b64 _, [%0];" ::"r"(cluster_address) : "memory");
}

}  // namespace ramp::cuda::ptx
