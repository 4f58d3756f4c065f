// Cluster PTX for the dev microbenchmarks (the library keeps single CTAs since session 11):
// the CTA's rank, a cluster-wide barrier, an mbarrier arrival on the peer CTA, a 2-D TMA load
// multicast into every CTA of `mask`; and the host's launch configuration for clusters.
#pragma once

#include <cuda.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/ptx/mbarrier.h"

namespace dev {

__device__ __forceinline__ uint32_t cluster_rank() {
  uint32_t rank;
  asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(rank));
  return rank;
}

__device__ __forceinline__ void cluster_sync() {
  asm volatile("barrier.cluster.arrive;\nbarrier.cluster.wait;" ::: "memory");
}

// Arrives on the mbarrier at the same shared-memory offset in CTA `rank` of the cluster.
__device__ __forceinline__ void arrive_remote(uint64_t* barrier, uint32_t rank) {
  asm volatile(
      "{\n.reg .b32 remote;\nmapa.shared::cluster.u32 remote, %0, %1;\n"
      "mbarrier.arrive.shared::cluster.b64 _, [remote];\n}" ::"r"(
          ramp::cuda::ptx::smem_address(barrier)),
      "r"(rank)
      : "memory");
}

// The box lands at smem_dst and completes on `barrier` at the same offsets in every CTA of mask.
__device__ __forceinline__ void tma_load_2d_multicast(uint32_t smem_dst, const CUtensorMap* map,
                                                      uint64_t* barrier, int32_t c0, int32_t c1,
                                                      uint16_t mask) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
      ".multicast::cluster [%0], [%1, {%3, %4}], [%2], %5;" ::"r"(smem_dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(ramp::cuda::ptx::smem_address(barrier)), "r"(c0),
      "r"(c1), "h"(mask)
      : "memory");
}

// cudaLaunchKernelEx configuration with clusters of cluster_x CTAs along x (1: no cluster
// attribute). The config points at *attribute, which must outlive the launch.
inline cudaLaunchConfig_t cluster_launch_config(dim3 grid, dim3 block, size_t smem_bytes,
                                                unsigned cluster_x, cudaLaunchAttribute* attribute) {
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem_bytes;
  *attribute = cudaLaunchAttribute{};
  attribute->id = cudaLaunchAttributeClusterDimension;
  attribute->val.clusterDim.x = cluster_x;
  attribute->val.clusterDim.y = 1;
  attribute->val.clusterDim.z = 1;
  config.attrs = attribute;
  config.numAttrs = cluster_x > 1 ? 1 : 0;
  return config;
}

}  // namespace dev
