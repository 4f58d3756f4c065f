// TMA (cp.async.bulk.tensor): tile loads global -> shared that complete on an mbarrier, tile
// stores shared -> global, and the host-side creation of the tensor maps that describe them.
//
// Tensor maps are encoded through cudaGetDriverEntryPointByVersion so nothing links libcuda:
// binaries load on machines without a driver (CI) and report "no device" at run time.
#pragma once

#include <cuda.h>  // CUtensorMap and the encode enums (types only; no driver symbol is linked)
#include <cuda_runtime_api.h>

#include <cstdint>

#include "cuda/ptx/mbarrier.h"

namespace ramp::cuda::ptx {

// 3-D tile load: coordinates innermost first, in elements.
__device__ __forceinline__ void tma_load_3d(uint32_t smem_dst, const CUtensorMap* map,
                                            uint64_t* barrier, int32_t c0, int32_t c1,
                                            int32_t c2) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%3, %4, %5}], [%2];" ::"r"(smem_dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(smem_address(barrier)), "r"(c0), "r"(c1), "r"(c2)
      : "memory");
}

// tma_load_3d / tma_load_5d with an L2 eviction policy (ptx/bulk_copy.h's createpolicy forms)
// for the lines the copy reads.
__device__ __forceinline__ void tma_load_3d_hinted(uint32_t smem_dst, const CUtensorMap* map,
                                                   uint64_t* barrier, int32_t c0, int32_t c1,
                                                   int32_t c2, uint64_t policy) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
      ".L2::cache_hint [%0], [%1, {%3, %4, %5}], [%2], %6;" ::"r"(smem_dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(smem_address(barrier)), "r"(c0), "r"(c1), "r"(c2),
      "l"(policy)
      : "memory");
}
__device__ __forceinline__ void tma_load_5d_hinted(uint32_t smem_dst, const CUtensorMap* map,
                                                   uint64_t* barrier, int32_t c0, int32_t c1,
                                                   int32_t c2, int32_t c3, int32_t c4,
                                                   uint64_t policy) {
  asm volatile(
      "cp.async.bulk.tensor.5d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
      ".L2::cache_hint [%0], [%1, {%3, %4, %5, %6, %7}], [%2], %8;" ::"r"(smem_dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(smem_address(barrier)), "r"(c0), "r"(c1), "r"(c2),
      "r"(c3), "r"(c4), "l"(policy)
      : "memory");
}

__device__ __forceinline__ void tma_load_2d(uint32_t smem_dst, const CUtensorMap* map,
                                            uint64_t* barrier, int32_t c0, int32_t c1) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%3, %4}], [%2];" ::"r"(smem_dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(smem_address(barrier)), "r"(c0), "r"(c1)
      : "memory");
}

__device__ __forceinline__ void tma_load_5d(uint32_t smem_dst, const CUtensorMap* map,
                                            uint64_t* barrier, int32_t c0, int32_t c1, int32_t c2,
                                            int32_t c3, int32_t c4) {
  asm volatile(
      "cp.async.bulk.tensor.5d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%3, %4, %5, %6, %7}], [%2];" ::"r"(smem_dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(smem_address(barrier)), "r"(c0), "r"(c1), "r"(c2),
      "r"(c3), "r"(c4)
      : "memory");
}

// 2-D tile store shared -> global (the map's swizzle un-applied on the way), completing as a
// bulk group of this thread: cp.async.bulk.commit_group / wait_group(.read) in bulk_copy.h.
// Elements outside the tensor are not written.
__device__ __forceinline__ void tma_store_2d(const CUtensorMap* map, uint32_t smem_src, int32_t c0,
                                             int32_t c1) {
  asm volatile("cp.async.bulk.tensor.2d.global.shared::cta.bulk_group [%0, {%2, %3}], [%1];" ::"l"(
                   reinterpret_cast<uint64_t>(map)),
               "r"(smem_src), "r"(c0), "r"(c1)
               : "memory");
}

// Pulls the descriptor into the constant cache before the first copy that uses it.
__device__ __forceinline__ void tma_prefetch_descriptor(const CUtensorMap* map) {
  asm volatile("prefetch.tensormap [%0];" ::"l"(reinterpret_cast<uint64_t>(map)) : "memory");
}

// cuTensorMapEncodeTiled, looked up in the driver at run time (once per process).
using EncodeTiledFn = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*,
                                   const cuuint64_t*, const cuuint64_t*, const cuuint32_t*,
                                   const cuuint32_t*, CUtensorMapInterleave, CUtensorMapSwizzle,
                                   CUtensorMapL2promotion, CUtensorMapFloatOOBfill);

// Returns nullptr when the driver has no such entry point (no driver, too old a driver).
inline EncodeTiledFn encode_tiled_entry_point() {
  static const EncodeTiledFn fn = [] {
    void* pointer = nullptr;
    cudaDriverEntryPointQueryResult query = cudaDriverEntryPointSymbolNotFound;
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &pointer, 12000,
                                         cudaEnableDefault, &query) != cudaSuccess ||
        query != cudaDriverEntryPointSuccess) {
      return static_cast<EncodeTiledFn>(nullptr);
    }
    return reinterpret_cast<EncodeTiledFn>(pointer);
  }();
  return fn;
}

// A bf16 tile map with 128-byte swizzle (the box's inner extent must be 64 elements = 128
// bytes), zero fill out of bounds. `dims`/`box` innermost first; `strides_bytes` has rank - 1
// entries (dimension 1 on). Returns false when the driver rejects the description.
inline bool encode_bf16_tile_map_swizzle128(CUtensorMap* map, const void* base, uint32_t rank,
                                            const uint64_t* dims, const uint64_t* strides_bytes,
                                            const uint32_t* box) {
  const EncodeTiledFn encode = encode_tiled_entry_point();
  if (encode == nullptr) return false;
  cuuint64_t global_dims[5];
  cuuint64_t global_strides[4];
  cuuint32_t box_dims[5];
  cuuint32_t element_strides[5];
  for (uint32_t i = 0; i < rank; ++i) {
    global_dims[i] = dims[i];
    box_dims[i] = box[i];
    element_strides[i] = 1;
    if (i + 1 < rank) global_strides[i] = strides_bytes[i];
  }
  const CUresult result =
      encode(map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, rank, const_cast<void*>(base), global_dims,
             global_strides, box_dims, element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE,
             CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
             CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  return result == CUDA_SUCCESS;
}

}  // namespace ramp::cuda::ptx
