// The static batching kernel, instantiated per (epilogue, config set), and the launch of one
// instance. Included by the translation units that instantiate sets (the builtin set, and the
// generated catalog parts); the host-side launcher (static_batching.cu) only sees the
// SetLaunchers table of static_batching_instances.h.
//
// One persistent launch (one CTA per SM): each CTA takes tiles in order from a launch-wide
// counter (static_batching_schedule.cuh); each tile's task selects its tile config (a switch
// over the set). Warpgroup 0 loads, the consumer warpgroups multiply and store; they meet only
// at the stage ring's and the tile queue's mbarriers.
#pragma once

#include <cuda_runtime.h>

#include <mutex>
#include <string>

#include "cuda/cuda_check.h"
#include "cuda/ptx/grid_dependency.h"
#include "cuda/ptx/setmaxnreg.h"
#include "cuda/static_batching_common.cuh"
#include "cuda/static_batching_consumer.cuh"
#include "cuda/static_batching_instances.h"
#include "cuda/static_batching_producer.cuh"

namespace ramp::cuda::detail {

// kStreamsWeights: the launch streams its weights (dispatch::streams_weights); only the builtin
// sets compile that instance.
template <GemmEpilogue kEpilogue, class Set, bool kStreamsWeights>
__global__ void __launch_bounds__(LaunchTraits<Set>::kThreads, 1)
    static_batched_gemm_kernel(const __grid_constant__ KernelParams params) {
  using Launch = LaunchTraits<Set>;
  extern __shared__ __align__(1024) uint8_t shared[];
  if ((ptx::smem_address(shared) & (kSwizzleAtomBytes - 1)) != 0) __trap();
  uint8_t* ring = shared + Launch::kRing;
  const StageBarriers barriers(reinterpret_cast<uint64_t*>(shared + Launch::kFullBarriers),
                               reinterpret_cast<uint64_t*>(shared + Launch::kEmptyBarriers));
  const TileQueue queue(reinterpret_cast<int32_t*>(shared + Launch::kTileQueueTiles),
                        reinterpret_cast<TaskOfTile*>(shared + Launch::kTileQueueMapped),
                        reinterpret_cast<uint64_t*>(shared + Launch::kTileQueueFull),
                        reinterpret_cast<uint64_t*>(shared + Launch::kTileQueueMappedFull),
                        reinterpret_cast<uint64_t*>(shared + Launch::kTileQueueEmpty));

  if (threadIdx.x == 0) {
    for (int s = 0; s < Launch::kMaxStages; ++s) {
      ptx::mbarrier_init(barriers.full(s), kFullBarrierArrivals);
      ptx::mbarrier_init(barriers.empty(s), Launch::kEmptyBarrierArrivals);
    }
    for (int s = 0; s < kTileQueueDepth; ++s) {
      ptx::mbarrier_init(queue.full(s), 1);
      ptx::mbarrier_init(queue.mapped_full(s), 1);
      ptx::mbarrier_init(queue.empty(s), Launch::kWarps);
    }
    ptx::fence_mbarrier_init();
  }
  __syncthreads();
  // Everything above overlaps the previous kernel when launched programmatically; the plan,
  // the token rows and the outputs belong to it until it has finished. The next kernel may be
  // scheduled right away: this grid is persistent (never more CTAs than fit at once), so the
  // successor's CTAs only take SMs this grid has left, and they wait for its completion.
  ptx::wait_for_previous_grid();
  ptx::allow_next_grid_launch();

  const int warpgroup = static_cast<int>(threadIdx.x / kThreadsPerWarpgroup);
  if (warpgroup == 0) {
    if constexpr (Launch::kMovesRegisters) ptx::setmaxnreg_dec<Launch::kProducerRegisters>();
    producer_loop<Set, kEpilogue, kStreamsWeights>(params, ring, barriers, queue);
  } else {
    if constexpr (Launch::kMovesRegisters) ptx::setmaxnreg_inc<Launch::kConsumerRegisters>();
    const int consumer_wg = warpgroup - 1;
    uint8_t* staging = shared + Launch::kStaging + consumer_wg * kStagingBytesPerWarpgroup;
    volatile int32_t* split_verdict =
        reinterpret_cast<volatile int32_t*>(shared + Launch::kSplitVerdicts) + consumer_wg;
    consumer_loop<Set, kEpilogue>(params, ring, barriers, staging, consumer_wg, split_verdict,
                                   queue);
  }
}

inline constexpr int kMaxDevices = 64;

// How many CTAs of this instance fit on `device` at once, queried once per device: the
// queries and the shared-memory opt-in stay off the per-launch path (and out of graph capture
// after the first call).
template <GemmEpilogue kEpilogue, class Set, bool kStreamsWeights>
Status resident_ctas(int device, int* ctas) {
  static std::mutex mutex;
  static int cached[kMaxDevices] = {};
  if (device < 0 || device >= kMaxDevices) {
    return Status(ErrorCode::kCudaError, "launch_static_batched_gemm: device ordinal " +
                                             std::to_string(device) +
                                             " is beyond the launcher's cache");
  }
  std::lock_guard<std::mutex> lock(mutex);
  if (cached[device] > 0) {
    *ctas = cached[device];
    return Status::ok();
  }
  using Launch = LaunchTraits<Set>;
  auto* kernel = &static_batched_gemm_kernel<kEpilogue, Set, kStreamsWeights>;
  RAMP_CUDA_TRY(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     Launch::kAllocationBytes));
  int sm_count = 0;
  RAMP_CUDA_TRY(cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, device));
  int per_sm = 0;
  RAMP_CUDA_TRY(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, Launch::kThreads,
                                                              Launch::kAllocationBytes));
  if (per_sm < 1) {
    return Status(ErrorCode::kCudaError,
                  "launch_static_batched_gemm: the kernel does not fit on an SM of device " +
                      std::to_string(device) + " (" + std::to_string(Launch::kAllocationBytes) +
                      " bytes of shared memory, " + std::to_string(Launch::kThreads) +
                      " threads)");
  }
  cached[device] = per_sm * sm_count;
  *ctas = cached[device];
  return Status::ok();
}

template <GemmEpilogue kEpilogue, class Set, bool kStreamsWeights>
Status launch_set(const KernelParams& params, int32_t max_total_tiles, bool after_ramp_kernel,
                  cudaStream_t stream) {
  using Launch = LaunchTraits<Set>;
  int device = 0;
  RAMP_CUDA_TRY(cudaGetDevice(&device));
  // Persistent grid: as many CTAs as can be resident at once, never more than tiles (the
  // caller launches nothing for 0).
  int resident = 0;
  RAMP_TRY((resident_ctas<kEpilogue, Set, kStreamsWeights>(device, &resident)));
  const int ctas = max_total_tiles < resident ? max_total_tiles : resident;
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(static_cast<unsigned>(ctas), 1, 1);
  config.blockDim = dim3(Launch::kThreads, 1, 1);
  config.dynamicSmemBytes = Launch::kAllocationBytes;
  config.stream = stream;
  cudaLaunchAttribute overlap{};
  overlap.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  overlap.val.programmaticStreamSerializationAllowed = 1;
  config.attrs = &overlap;
  config.numAttrs = after_ramp_kernel ? 1 : 0;
  RAMP_CUDA_TRY(cudaLaunchKernelEx(&config,
                                   &static_batched_gemm_kernel<kEpilogue, Set, kStreamsWeights>,
                                   params));
  return Status::ok();
}

// One launcher per epilogue, indexed by GemmEpilogue.
template <class Set, bool kStreamsWeights>
void fill_by_epilogue(SetLauncher (&table)[3]) {
  table[static_cast<int>(GemmEpilogue::kStoreBySlot)] =
      &launch_set<GemmEpilogue::kStoreBySlot, Set, kStreamsWeights>;
  table[static_cast<int>(GemmEpilogue::kSiluGateUp)] =
      &launch_set<GemmEpilogue::kSiluGateUp, Set, kStreamsWeights>;
  table[static_cast<int>(GemmEpilogue::kRouterWeighted)] =
      &launch_set<GemmEpilogue::kRouterWeighted, Set, kStreamsWeights>;
}

// kWithStreaming: also the instances for launches that stream their weights (the builtin
// sets; catalog entries, which sweeps and profiles time one at a time, compile only the plain
// ones).
template <class Set, bool kWithStreaming = false>
SetLaunchers set_launchers() {
  SetLaunchers launchers;
  fill_by_epilogue<Set, false>(launchers.by_epilogue);
  if constexpr (kWithStreaming) fill_by_epilogue<Set, true>(launchers.streaming_by_epilogue);
  launchers.largest_tile_floats = LaunchTraits<Set>::kLargestTileFloats;
  launchers.split_k = LaunchTraits<Set>::kSplitK;
  return launchers;
}

// Fills table[i] for every catalog entry i of part kPart (i % kKernelCatalogParts == kPart)
// that this build compiles (dispatch::catalog_entry_compiled).
template <int kPart, int... kIndices>
void register_part_entries(SetLaunchers* table, std::integer_sequence<int, kIndices...>) {
  (
      [&] {
        if constexpr (kIndices % dispatch::kKernelCatalogParts == kPart &&
                      dispatch::catalog_entry_compiled(kIndices)) {
          table[kIndices] = set_launchers<ConfigSet<kIndices>>();
        }
      }(),
      ...);
}

}  // namespace ramp::cuda::detail
