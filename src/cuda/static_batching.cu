// The static batching GEMM kernel and its launcher (see static_batching.h).
//
// One persistent launch of CTA pairs (clusters of 2): pair c loops over units c, c + pairs, ...,
// unit u being tiles 2u and 2u+1; each tile's task selects its tile config (switch over
// kBuiltinConfigs). Warpgroup 0 loads, warpgroups 1-2 multiply and store; they meet only at the
// stage ring's mbarriers.
#include "cuda/static_batching.h"

#include <cuda_runtime.h>

#include <mutex>
#include <string>

#include "cuda/cuda_check.h"
#include "cuda/ptx/cluster.h"
#include "cuda/ptx/grid_dependency.h"
#include "cuda/ptx/setmaxnreg.h"
#include "cuda/ptx/tma.h"
#include "cuda/static_batching_common.cuh"
#include "cuda/static_batching_consumer.cuh"
#include "cuda/static_batching_producer.cuh"

namespace ramp::cuda {
namespace detail {

template <GemmEpilogue kEpilogue>
__global__ void __cluster_dims__(kClusterSize, 1, 1) __launch_bounds__(kThreads, 1)
    static_batched_gemm_kernel(const __grid_constant__ KernelParams params) {
  extern __shared__ __align__(1024) uint8_t shared[];
  if ((ptx::smem_address(shared) & (kSwizzleAtomBytes - 1)) != 0) __trap();
  uint8_t* ring = shared + SharedLayout::kRing;
  const StageBarriers barriers(reinterpret_cast<uint64_t*>(shared + SharedLayout::kFullBarriers),
                               reinterpret_cast<uint64_t*>(shared + SharedLayout::kEmptyBarriers),
                               reinterpret_cast<uint64_t*>(shared + SharedLayout::kHandoffBarrier));

  if (threadIdx.x == 0) {
    for (int s = 0; s < kMaxStages; ++s) {
      ptx::mbarrier_init(barriers.full(s), kFullBarrierArrivals);
      ptx::mbarrier_init(barriers.empty(s), kEmptyBarrierArrivals);
    }
    ptx::mbarrier_init(barriers.handoff(), 1);
    ptx::fence_mbarrier_init();
  }
  // The peer CTA arrives on our barriers and multicasts into our ring: it must see them
  // initialised.
  ptx::cluster_sync();
  // Everything above overlaps the previous kernel when launched programmatically; the plan,
  // the token rows and the outputs belong to it until it has finished. The next kernel may be
  // scheduled right away: this grid is persistent (never more CTAs than fit at once), so the
  // successor's CTAs only take SMs this grid has left, and they wait for its completion.
  ptx::wait_for_previous_grid();
  ptx::allow_next_grid_launch();

  const int warpgroup = static_cast<int>(threadIdx.x / kThreadsPerWarpgroup);
  if (warpgroup == 0) {
    ptx::setmaxnreg_dec<kProducerRegisters>();
    producer_loop<kEpilogue>(params, ring, barriers);
  } else {
    ptx::setmaxnreg_inc<kConsumerRegisters>();
    uint8_t* staging = shared + SharedLayout::kStaging + (warpgroup - 1) * kStagingBytesPerWarpgroup;
    consumer_loop<kEpilogue>(params, ring, barriers, staging, warpgroup - 1);
  }
  // Neither CTA of the pair may leave while the other can still arrive on its barriers or
  // multicast into its shared memory.
  ptx::cluster_sync();
}

inline constexpr int kMaxDevices = 64;

Status invalid(ErrorCode code, const std::string& what) {
  return Status(code, "launch_static_batched_gemm: " + what);
}

bool aligned(const void* pointer, uintptr_t bytes) {
  return (reinterpret_cast<uintptr_t>(pointer) & (bytes - 1)) == 0;
}

// Weight maps, one per feature tile (TMA box height). GEMM1 views w13[e] as
// (k, row-in-8, gate/up, 8-row block) so one copy brings gate rows c..c+7 followed by up rows
// I+c..I+c+7, block after block: the interleave the SiLU epilogue needs.
Status encode_weight_maps(const StaticBatchedGemm& gemm, KernelParams* params) {
  const uint64_t k = static_cast<uint64_t>(gemm.in_features);
  const uint64_t n = static_cast<uint64_t>(gemm.out_features);
  const uint64_t experts = static_cast<uint64_t>(gemm.routing.num_experts);
  const uint64_t row_bytes = k * 2;
  for (int index = 0; index < kNumWeightMaps; ++index) {
    const uint32_t feature_tile = static_cast<uint32_t>(weight_map_feature_tile(index));
    bool ok;
    if (gemm.epilogue == GemmEpilogue::kSiluGateUp) {
      const uint64_t intermediate = n / 2;
      const uint64_t dims[5] = {k, 8, 2, intermediate / 8, experts};
      const uint64_t strides[4] = {row_bytes, intermediate * row_bytes, 8 * row_bytes,
                                   n * row_bytes};
      const uint32_t box[5] = {static_cast<uint32_t>(kKTile), 8, 2, feature_tile / 16, 1};
      ok = ptx::encode_bf16_tile_map_swizzle128(&params->weight_maps[index], gemm.w, 5, dims,
                                                strides, box);
    } else {
      const uint64_t dims[3] = {k, n, experts};
      const uint64_t strides[2] = {row_bytes, n * row_bytes};
      const uint32_t box[3] = {static_cast<uint32_t>(kKTile), feature_tile, 1};
      ok = ptx::encode_bf16_tile_map_swizzle128(&params->weight_maps[index], gemm.w, 3, dims,
                                                strides, box);
    }
    if (!ok) {
      return invalid(ErrorCode::kCudaError,
                     "cuTensorMapEncodeTiled rejected the weight tensor (or no driver entry "
                     "point); N=" + std::to_string(n) + " K=" + std::to_string(k));
    }
  }
  return Status::ok();
}

// `a` as a [rows, K] tensor read one row per copy (box 64 x 1): hidden [T, K] for the gathers,
// the intermediate [S, K] for GEMM2.
Status encode_token_map(const StaticBatchedGemm& gemm, KernelParams* params) {
  const int64_t slots = gemm.routing.num_slots;
  int64_t rows = gemm.epilogue == GemmEpilogue::kRouterWeighted ? slots : slots / gemm.routing.top_k;
  if (rows < 1) rows = 1;  // no tile reads it then; the map just has to be valid
  const uint64_t dims[2] = {static_cast<uint64_t>(gemm.in_features), static_cast<uint64_t>(rows)};
  const uint64_t strides[1] = {static_cast<uint64_t>(gemm.a_row_stride) * 2};
  const uint32_t box[2] = {static_cast<uint32_t>(kKTile), 1};
  if (!ptx::encode_bf16_tile_map_swizzle128(&params->token_map, gemm.a, 2, dims, strides, box)) {
    return invalid(ErrorCode::kCudaError,
                   "cuTensorMapEncodeTiled rejected the token rows (a) or no driver entry point");
  }
  return Status::ok();
}

// How many CTA pairs of this kernel fit on `device` at once, queried once per device: the
// queries and the shared-memory opt-in stay off the per-launch path (and out of graph capture
// after the first call).
template <GemmEpilogue kEpilogue>
Status resident_pairs(int device, int* pairs) {
  static std::mutex mutex;
  static int cached[kMaxDevices] = {};
  if (device < 0 || device >= kMaxDevices) {
    return invalid(ErrorCode::kCudaError, "device ordinal " + std::to_string(device) +
                                              " is beyond the launcher's cache");
  }
  std::lock_guard<std::mutex> lock(mutex);
  if (cached[device] > 0) {
    *pairs = cached[device];
    return Status::ok();
  }
  auto* kernel = &static_batched_gemm_kernel<kEpilogue>;
  RAMP_CUDA_TRY(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     SharedLayout::kAllocationBytes));
  int sm_count = 0;
  RAMP_CUDA_TRY(cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, device));
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(static_cast<unsigned>(sm_count / kClusterSize * kClusterSize), 1, 1);
  config.blockDim = dim3(kThreads, 1, 1);
  config.dynamicSmemBytes = SharedLayout::kAllocationBytes;
  cudaLaunchAttribute cluster_shape{};
  cluster_shape.id = cudaLaunchAttributeClusterDimension;
  cluster_shape.val.clusterDim.x = kClusterSize;
  cluster_shape.val.clusterDim.y = 1;
  cluster_shape.val.clusterDim.z = 1;
  config.attrs = &cluster_shape;
  config.numAttrs = 1;
  int resident = 0;
  RAMP_CUDA_TRY(cudaOccupancyMaxActiveClusters(&resident, kernel, &config));
  cached[device] = resident > 0 ? resident : 1;
  *pairs = cached[device];
  return Status::ok();
}

template <GemmEpilogue kEpilogue>
Status launch(const KernelParams& params, int32_t max_total_tiles, bool after_ramp_kernel,
              cudaStream_t stream) {
  int device = 0;
  RAMP_CUDA_TRY(cudaGetDevice(&device));
  // Persistent grid: as many pairs as can be resident at once (a GPC with an odd number of
  // free SMs leaves one unused), never more than there are units of work.
  int pairs = 0;
  RAMP_TRY(resident_pairs<kEpilogue>(device, &pairs));
  const int units = (max_total_tiles + kClusterSize - 1) / kClusterSize;
  const int clusters = units < pairs ? units : pairs;
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(static_cast<unsigned>(clusters * kClusterSize), 1, 1);
  config.blockDim = dim3(kThreads, 1, 1);
  config.dynamicSmemBytes = SharedLayout::kAllocationBytes;
  config.stream = stream;
  cudaLaunchAttribute overlap{};
  overlap.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  overlap.val.programmaticStreamSerializationAllowed = 1;
  config.attrs = &overlap;
  config.numAttrs = after_ramp_kernel ? 1 : 0;
  RAMP_CUDA_TRY(cudaLaunchKernelEx(&config, &static_batched_gemm_kernel<kEpilogue>, params));
  return Status::ok();
}

}  // namespace detail

Status launch_static_batched_gemm(const StaticBatchedGemm& gemm, cudaStream_t stream) {
  using detail::aligned;
  using detail::invalid;
  if (gemm.max_total_tiles <= 0) return Status::ok();
  if (gemm.in_features <= 0 || gemm.in_features % detail::kKTile != 0) {
    return invalid(ErrorCode::kUnsupportedShape,
                   "in_features K=" + std::to_string(gemm.in_features) +
                       " must be a positive multiple of 64");
  }
  if (gemm.out_features <= 0) {
    return invalid(ErrorCode::kUnsupportedShape,
                   "out_features N=" + std::to_string(gemm.out_features) + " must be positive");
  }
  if (gemm.epilogue == GemmEpilogue::kSiluGateUp && gemm.out_features % 16 != 0) {
    return invalid(ErrorCode::kUnsupportedShape,
                   "GEMM1 out_features 2I=" + std::to_string(gemm.out_features) +
                       " needs I a multiple of 8 (gate/up rows are interleaved in blocks of 8)");
  }
  if (gemm.routing.num_experts <= 0 || gemm.routing.top_k <= 0) {
    return invalid(ErrorCode::kInvalidArgument, "routing view has no experts or top_k <= 0");
  }
  if (gemm.a == nullptr || gemm.w == nullptr || gemm.out == nullptr ||
      gemm.task_map.header == nullptr || gemm.routing.sorted_slots == nullptr) {
    return invalid(ErrorCode::kInvalidArgument, "a null pointer among a, w, out, plan views");
  }
  if (gemm.epilogue == GemmEpilogue::kRouterWeighted && gemm.topk_weights == nullptr) {
    return invalid(ErrorCode::kInvalidArgument, "kRouterWeighted needs topk_weights");
  }
  if (!aligned(gemm.a, 16) || !aligned(gemm.w, 16) || gemm.a_row_stride % 8 != 0) {
    return invalid(ErrorCode::kMisaligned,
                   "a and w must be 16-byte aligned and a_row_stride a multiple of 8 elements "
                   "(16-byte row loads)");
  }
  const size_t out_element = 2;  // bf16 for every epilogue
  if (!aligned(gemm.out, out_element)) {
    return invalid(ErrorCode::kMisaligned, "out is not aligned to its element size");
  }

  detail::KernelParams params{};
  RAMP_TRY(detail::encode_weight_maps(gemm, &params));
  if constexpr (detail::kTokenRowsByTma) RAMP_TRY(detail::encode_token_map(gemm, &params));
  params.routing = gemm.routing;
  params.task_map = gemm.task_map;
  params.a = static_cast<const __nv_bfloat16*>(gemm.a);
  params.a_row_stride = gemm.a_row_stride;
  params.out_features = gemm.out_features;
  params.in_features = gemm.in_features;
  params.out = gemm.out;
  params.out_row_stride = gemm.out_row_stride;
  params.topk_weights = gemm.topk_weights;
  const int32_t stored_columns = gemm.epilogue == GemmEpilogue::kSiluGateUp
                                     ? gemm.out_features / 2
                                     : gemm.out_features;
  params.paired_stores = aligned(gemm.out, 2 * out_element) && gemm.out_row_stride % 2 == 0 &&
                         stored_columns % 2 == 0;
  params.bulk_stores = aligned(gemm.out, 16) && (gemm.out_row_stride * out_element) % 16 == 0;

  const bool overlap = gemm.after_ramp_kernel;
  switch (gemm.epilogue) {
    case GemmEpilogue::kStoreBySlot:
      return detail::launch<GemmEpilogue::kStoreBySlot>(params, gemm.max_total_tiles, overlap,
                                                         stream);
    case GemmEpilogue::kSiluGateUp:
      return detail::launch<GemmEpilogue::kSiluGateUp>(params, gemm.max_total_tiles, overlap,
                                                        stream);
    case GemmEpilogue::kRouterWeighted:
      return detail::launch<GemmEpilogue::kRouterWeighted>(params, gemm.max_total_tiles, overlap,
                                                            stream);
  }
  return invalid(ErrorCode::kInvalidArgument, "unknown epilogue");
}

}  // namespace ramp::cuda
