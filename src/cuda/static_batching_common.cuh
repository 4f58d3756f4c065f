// Shared pieces of the static batching kernel: kernel parameters, the compile-time traits of
// each tile config (any catalog entry) and of a launch's config set, the shared-memory layout
// and the typed pipeline cursors.
//
// Roles: warpgroup 0 produces (TMA weight tiles + token rows into a ring of stages: gathered by
// cp.async, or TMA row boxes for GEMM2's consecutive rows), the one or two consumer warpgroups
// after it multiply (wgmma) and run the epilogue.
#pragma once

#include <cuda.h>
#include <cuda_bf16.h>

#include <cstdint>
#include <initializer_list>
#include <type_traits>
#include <utility>

#include "core/tile_config.h"
#include "cuda/ptx/mbarrier.h"
#include "cuda/static_batching.h"
#include "dispatch/builtin_configs.h"
#include "dispatch/catalog.h"

namespace ramp::cuda::detail {

inline constexpr int kThreadsPerWarpgroup = 128;

// CTAs launch alone, one per SM. They launched in clusters of two while pairs shared work
// (consecutive tiles, then a multicast weight tile); multicast lost every time it was measured
// (v3, session 7, session 10) and was removed, and with tiles taken in order single CTAs ran the
// same as pairs (1.002x, dev/kernel_notes.md session 10), so nothing needs a cluster.

// Token rows: 16-byte cp.async gather (default), or one TMA copy per gathered row
// (RAMP_SB_TOKEN_ROWS_BY_TMA: box 64 k x 1 row; the 128-byte swizzle follows the destination
// address, so row r lands XOR-swizzled by r mod 8 as in a tile). Both pass every test; per-row
// TMA measured 1.314 ms vs 0.951 ms on seed004 balanced (128 row copies per stage are too many
// for the copy engine), see dev/kernel_notes.md v4.
#if defined(RAMP_SB_TOKEN_ROWS_BY_TMA)
inline constexpr bool kTokenRowsByTma = true;
#else
inline constexpr bool kTokenRowsByTma = false;
#endif

// Tiles a CTA's producer may take ahead of its slowest warp (static_batching_schedule.cuh), and
// the bytes of a queue slot's mapped tile (TaskOfTile).
inline constexpr int kTileQueueDepth = 4;
inline constexpr int kTileQueueSlotBytes = 32;

inline constexpr int kKTile = 64;             // bf16 elements per 128-byte swizzled row
inline constexpr int kRowBytes = kKTile * 2;  // one smem row of a stage
inline constexpr int kSwizzleAtomBytes = 1024;  // 8 rows x 128 bytes

// Weight tensor maps are built per feature tile (the TMA box height); index by feature tile.
inline constexpr int kNumWeightMaps = 3;
RAMP_HOST_DEVICE constexpr int weight_map_index(int feature_tile) {
  return feature_tile == 256 ? 2 : feature_tile == 128 ? 1 : 0;
}
RAMP_HOST_DEVICE constexpr int weight_map_feature_tile(int index) {
  return index == 2 ? 256 : index == 1 ? 128 : 64;
}

// GEMM2 reads its token rows (the intermediate, already in sorted order) as whole boxes of 64
// consecutive rows when its token tile is a multiple of 64; smaller tiles (swapped 8..56)
// gather with cp.async, which measured faster for them than 8-row boxes (dev/kernel_notes.md).
inline constexpr int kRowBoxRows = 64;
RAMP_HOST_DEVICE constexpr bool token_rows_by_box(GemmEpilogue epilogue, int token_tile) {
  return epilogue == GemmEpilogue::kRouterWeighted && token_tile % kRowBoxRows == 0;
}

struct KernelParams {
  CUtensorMap weight_maps[kNumWeightMaps];  // see weight_map_index; 64-byte aligned by type
  CUtensorMap token_map;                    // a as [rows, K], box 64 k x 1 row
  // a as [rows, K] in boxes of 64 k x kRowBoxRows rows; encoded for kRouterWeighted only.
  CUtensorMap row_box_map;
  // GEMM1's output (the intermediate [S, I], sorted rows) for TMA tensor stores, encoded when
  // bulk_stores: boxes of 64 columns x kStoreBoxRows rows, and of 64 columns x 1 row for the
  // rows of a block that a task ends inside (the next rows belong to the next task).
  CUtensorMap out_box_map;
  CUtensorMap out_row_map;
  RoutingView routing;
  TaskMapView task_map;
  const __nv_bfloat16* a;
  int64_t a_row_stride;
  int32_t out_features;  // N
  int32_t in_features;   // K
  void* out;
  int64_t out_row_stride;
  const float* topk_weights;
  // Split-K (launches whose set has a config with split_k > 1): fp32 partial tiles, one per
  // tile of the launch, and one arrival counter per (tile, consumer warpgroup); the launcher
  // zeroes the counters before the kernel. See split_k.cuh.
  float* split_partials;
  int32_t* split_counters;
  int32_t split_tile_floats;  // floats per tile in split_partials (the set's largest tile)
  bool paired_stores;  // out, its stride and N allow 2-element vector stores
  bool bulk_stores;    // out and its row stride are 16-byte aligned: staged 16-byte row stores
};

// Compile-time view of catalog entry kIndex (dispatch::kCatalogTable).
template <int kIndex>
struct ConfigTraits {
  static constexpr TileConfig kTile = dispatch::kCatalogTable.entries[kIndex];
  static constexpr bool kSwapped = kTile.orientation == Orientation::kSwapped;
  static constexpr int kTokenTile = kTile.token_tile;
  static constexpr int kFeatureTile = kTile.feature_tile;
  static constexpr int kStages = kTile.stages;
  static constexpr int kGroupM = kTile.group_m;
  static constexpr int kSplitK = kTile.split_k;
  static constexpr int kWarpgroups = kTile.consumer_warpgroups;
  static constexpr int kWeightMap = weight_map_index(kFeatureTile);

  // Each consumer warpgroup owns 64 or 128 rows of the MMA's M side, issued as 64-row blocks.
  static constexpr int kRowsPerWarpgroup = dispatch::mma_m_per_warpgroup(kTile);
  static constexpr int kRowBlocks = kRowsPerWarpgroup / 64;
  static constexpr int kMmaN = dispatch::mma_n(kTile);
  static constexpr int kAccumulatorsPerBlock = kMmaN / 2;
  static constexpr int kAccumulators = kRowBlocks * kAccumulatorsPerBlock;
  using Accumulators = float[kRowBlocks][kAccumulatorsPerBlock];

  static constexpr int kWeightStageBytes = kFeatureTile * kRowBytes;
  static constexpr int kTokenStageBytes = kTokenTile * kRowBytes;
  static constexpr int kStageBytes = kWeightStageBytes + kTokenStageBytes;
  static constexpr int kRingBytes = kStageBytes * kStages;

  static_assert(kIndex >= 0 && kIndex < dispatch::kCatalogSize, "not a catalog index");
  static_assert(dispatch::is_issuable(kTile), "the catalog only lists issuable configs");
  static_assert(kStages == dispatch::derive_stages(kTile), "stages are derived from smem");
  static_assert(kTile.k_tile == kKTile, "stages hold one 128-byte swizzled row per tile row");
  static_assert(kFeatureTile == weight_map_feature_tile(kWeightMap), "no tensor map for this box");
  static_assert(kRowBlocks == 1 || kRowBlocks == 2);
  static_assert(!kSwapped || kRowBlocks == 1, "swapped tiles give each warpgroup 64 weight rows");
  static_assert(kFeatureTile % 16 == 0, "GEMM1 interleaves gate/up rows in blocks of 8");
  static_assert(kWeightStageBytes % kSwizzleAtomBytes == 0 &&
                    kTokenStageBytes % kSwizzleAtomBytes == 0,
                "each operand tile must start on a 1024-byte swizzle atom");
  static_assert(kTokenTile % 8 == 0, "token rows fill whole swizzle atoms");
};

// 16-byte chunk `chunk` of row `row` in a 128-byte-swizzled tile (the pattern TMA's
// SWIZZLE_128B reads and writes and the wgmma descriptors read: chunk index XOR row mod 8).
// The producer's cp.async gather writes it; GEMM1's epilogue stages its boxes in it.
__device__ __forceinline__ uint32_t swizzled_chunk_offset(int row, int chunk) {
  return static_cast<uint32_t>(row * kRowBytes + ((chunk ^ (row & 7)) << 4));
}

// Shared-memory address of ring slot `stage` for config kConfig: a config's stages start at the
// ring's base, kStageBytes apart (weight tile first, then the token tile). Producer and
// consumers both address a slot through this.
template <int kConfig>
__device__ __forceinline__ uint32_t stage_address(uint32_t ring_base, int stage) {
  return ring_base + static_cast<uint32_t>(stage * ConfigTraits<kConfig>::kStageBytes);
}

// The configs one launch compiles, as catalog indices; a task's `config` field is a position
// in this list (GemmPlanSpec::configs of the plan).
template <int... kIndices>
struct ConfigSet {
  static constexpr int kSize = sizeof...(kIndices);
  static constexpr int kIndexAt[kSize] = {kIndices...};
};

// What a launch of a config set shares: the CTA shape, the shared-memory layout, the barrier
// arrival counts, the register split.
constexpr int max_of(std::initializer_list<int> values) {
  int best = 0;
  for (const int v : values) best = v > best ? v : best;
  return best;
}

// Epilogue staging: each consumer warpgroup stages 64 rows x 256 bytes of output per pass and
// copies them out with coalesced 16-byte stores. Rows are 16 bytes apart beyond their payload
// so the 8 rows a warp writes at once start 4 banks apart (conflict-free fragment writes); the
// pad carries the row's destination pointer.
inline constexpr int kStagingRowPayloadBytes = 256;
inline constexpr int kStagingRowStride = kStagingRowPayloadBytes + 16;
inline constexpr int kStagingBytesPerWarpgroup = 64 * kStagingRowStride;
// The catalog derives every entry's pipeline depth from this layout's budget: keep them equal.
static_assert(kStagingBytesPerWarpgroup == dispatch::kEpilogueStagingBytesPerWarpgroup,
              "dispatch/catalog.h sizes the epilogue staging differently from the kernel");
static_assert(kStagingRowStride % 16 == 0, "16-byte copies need 16-byte aligned rows");
// GEMM1 stages its output in the same buffer as boxes of 64 rows x 64 columns (128 bytes, the
// 128-byte swizzle's span), box after box, for one tensor store per box.
inline constexpr int kStoreBoxRows = 64;
inline constexpr int kStoreBoxColumns = 64;
inline constexpr int kStoreBoxBytes = kStoreBoxRows * kStoreBoxColumns * 2;
static_assert(kStoreBoxColumns * 2 == kRowBytes, "a box row is one swizzled 128-byte row");
static_assert(kStagingBytesPerWarpgroup % kSwizzleAtomBytes == 0,
              "each warpgroup's staging starts on a swizzle atom (the boxes' swizzle follows "
              "the shared-memory address)");

// Full barrier: one arrival per producer thread plus the elected thread's arrive.expect_tx for
// the stage's TMA bytes. cp.async rows: each thread's cp.async.mbarrier.arrive.noinc. TMA row
// boxes or rows (only some threads copy): each producer warp arrives for its 32 threads once
// they have all seen the stage free (arrive_for_warp). Every producer thread must count: a
// stage then cannot be filled again, consumed and released while some producer thread has not
// yet seen it free, so no thread's parity wait is ever lapped. (When the elected thread alone
// made all the arrivals, the other producer threads, which only followed the ring, could fall
// two phases behind on a stage and wait forever for a parity that had already passed: the
// layer hung about once in ten olmoe-1b-7b runs at T = 128..512, its GEMM2 caught by cuda-gdb
// with producer warps 1-3 of one CTA still in the ring while everything else had finished.)
inline constexpr uint32_t kFullBarrierArrivals = kThreadsPerWarpgroup + 1;

template <class Set>
struct LaunchTraits;
template <int... kIndices>
struct LaunchTraits<ConfigSet<kIndices...>> {
  static_assert(sizeof...(kIndices) >= 1, "a launch compiles at least one config");
  static constexpr int kConsumerWarpgroups = max_of({ConfigTraits<kIndices>::kWarpgroups...});
  static_assert(((ConfigTraits<kIndices>::kWarpgroups == kConsumerWarpgroups) && ...),
                "configs sharing a launch must share its consumer warpgroup count");
  static constexpr int kThreads = kThreadsPerWarpgroup * (1 + kConsumerWarpgroups);
  static constexpr int kRingBytes = max_of({ConfigTraits<kIndices>::kRingBytes...});
  static constexpr int kMaxStages = max_of({ConfigTraits<kIndices>::kStages...});
  static constexpr bool kSplitK = ((ConfigTraits<kIndices>::kSplitK > 1) || ...);
  // fp32 partial-tile size a split-K launch reserves per tile (the largest tile of the set).
  static constexpr int kLargestTileFloats =
      max_of({ConfigTraits<kIndices>::kTokenTile * ConfigTraits<kIndices>::kFeatureTile...});

  // Shared memory: the ring (1024-byte aligned for the swizzle), the epilogue staging, the
  // full/empty barriers, one word per consumer warpgroup that broadcasts a split-K arrival's
  // verdict, then the tile queue (mapped tiles, tile indices, full, mapped and empty barriers).
  // The base must be 1024-byte aligned; the kernel declares it so and traps if the runtime ever
  // hands out less.
  static constexpr int kRing = 0;
  static constexpr int kStaging = kRingBytes;
  static constexpr int kFullBarriers = kStaging + kStagingBytesPerWarpgroup * kConsumerWarpgroups;
  static constexpr int kEmptyBarriers = kFullBarriers + 8 * kMaxStages;
  static constexpr int kSplitVerdicts = kEmptyBarriers + 8 * kMaxStages;
  static constexpr int kTileQueueMapped = kSplitVerdicts + 16;  // 2 words used, 16-byte aligned
  static constexpr int kTileQueueTiles = kTileQueueMapped + kTileQueueSlotBytes * kTileQueueDepth;
  static constexpr int kTileQueueFull = kTileQueueTiles + 4 * kTileQueueDepth;
  static constexpr int kTileQueueMappedFull = kTileQueueFull + 8 * kTileQueueDepth;
  static constexpr int kTileQueueEmpty = kTileQueueMappedFull + 8 * kTileQueueDepth;
  static constexpr int kAllocationBytes = kTileQueueEmpty + 8 * kTileQueueDepth;
  static constexpr uint32_t kWarps = kThreads / 32;

  // Empty barrier: every consumer warp, once its wgmma reads of the stage are done.
  static constexpr uint32_t kConsumerWarps = kConsumerWarpgroups * 4;
  static constexpr uint32_t kEmptyBarrierArrivals = kConsumerWarps;

  // Registers. Two consumer warpgroups: the CTA is launched with kLaunchRegisters per thread
  // (the __launch_bounds__(384, 1) cap); setmaxnreg only moves registers inside that
  // allocation, so the consumers' increase must be paid for by the producer's decrease, or
  // setmaxnreg.inc waits forever. The producer keeps 64: its gather keeps its row indices live.
  // One consumer warpgroup (256 threads) may use up to 255 registers everywhere: no moves.
  static constexpr bool kMovesRegisters = kConsumerWarpgroups == 2;
  static constexpr int kLaunchRegisters = 168;
  static constexpr int kProducerRegisters = 64;
  static constexpr int kConsumerRegisters = 216;
  static_assert(!kMovesRegisters ||
                    kProducerRegisters * kThreadsPerWarpgroup +
                            kConsumerRegisters * kThreadsPerWarpgroup * kConsumerWarpgroups <=
                        kLaunchRegisters * kThreads,
                "setmaxnreg budgets must fit the registers the CTA was launched with");

  static_assert(kRing % kSwizzleAtomBytes == 0);
  static_assert(kStaging % kSwizzleAtomBytes == 0,
                "bulk copies need 16-byte aligned rows; swizzled store boxes 1024-byte ones");
  static_assert(kFullBarriers % 8 == 0, "mbarriers are 8-byte objects");
  static_assert(kTileQueueMapped % 16 == 0, "mapped tiles are copied with 16-byte accesses");
  static_assert(kAllocationBytes - kStaging - kConsumerWarpgroups * kStagingBytesPerWarpgroup ==
                    dispatch::kBarrierBytesPerStage * kMaxStages + dispatch::kSchedulerSharedBytes,
                "the catalog's fixed shared memory must be what the kernel lays out");
  static_assert(kAllocationBytes <= dispatch::kMaxSharedBytesPerBlock,
                "over Hopper's per-block shared memory");
  static_assert(kMaxStages <= dispatch::kCatalogMaxStages,
                "the catalog caps stages below what the kernel compiles");
  static_assert(kMaxStages <= 32, "pipeline cursors keep one parity bit per stage in a uint32");
};

// The launch the layer's per-expert rule uses: kBuiltinConfigs, in that order (a task's config
// field is its kBuiltinConfigs index); and its variant with L2 group 1 on the normal configs.
template <size_t... kBuiltin>
constexpr auto builtin_set(std::index_sequence<kBuiltin...>) {
  return ConfigSet<dispatch::catalog_index_of(dispatch::kBuiltinConfigs[kBuiltin])...>{};
}
template <size_t... kBuiltin>
constexpr auto builtin_group1_set(std::index_sequence<kBuiltin...>) {
  return ConfigSet<dispatch::catalog_index_of(
      dispatch::kBuiltinConfigsGroup1.configs[kBuiltin])...>{};
}
using BuiltinSet = decltype(builtin_set(std::make_index_sequence<dispatch::kNumBuiltinConfigs>{}));
using BuiltinGroup1Set =
    decltype(builtin_group1_set(std::make_index_sequence<dispatch::kNumBuiltinConfigs>{}));

// The ring's barriers. A stage's smem address depends on the config (stage size), its
// barriers do not: slot s always uses full[s] / empty[s].
class StageBarriers {
 public:
  __device__ StageBarriers(uint64_t* full, uint64_t* empty) : full_(full), empty_(empty) {}
  __device__ uint64_t* full(int stage) const { return full_ + stage; }
  __device__ uint64_t* empty(int stage) const { return empty_ + stage; }

 private:
  uint64_t* full_;
  uint64_t* empty_;
};

// Producer side of the ring. Parities are kept per slot (not one phase per lap) because a
// config change restarts the ring at slot 0 with a different stage count: slot s then keeps
// alternating its own phases. `pending` marks slots filled whose release the producer has not
// yet observed.
struct ProducerCursor {
  int stage = 0;
  uint32_t empty_parity = 0;
  uint32_t pending = 0;

  __device__ void wait_free(const StageBarriers& barriers, int slot) {
    const uint32_t bit = 1u << slot;
    if (pending & bit) {
      ptx::mbarrier_wait_parity(barriers.empty(slot), (empty_parity & bit) ? 1u : 0u);
      empty_parity ^= bit;
      pending &= ~bit;
    }
  }
  __device__ void acquire(const StageBarriers& barriers) { wait_free(barriers, stage); }
  __device__ void filled(int stages) {
    pending |= 1u << stage;
    stage = stage + 1 == stages ? 0 : stage + 1;
  }
  // Before a config change: the new stage layout may overlap any slot in flight.
  template <int kMaxStages>
  __device__ void drain(const StageBarriers& barriers) {
    for (int slot = 0; slot < kMaxStages; ++slot) wait_free(barriers, slot);
    stage = 0;
  }
};

struct ConsumerCursor {
  int stage = 0;
  uint32_t full_parity = 0;

  __device__ void wait_full(const StageBarriers& barriers) {
    const uint32_t bit = 1u << stage;
    ptx::mbarrier_wait_parity(barriers.full(stage), (full_parity & bit) ? 1u : 0u);
    full_parity ^= bit;
  }
  __device__ void advance(int stages) { stage = stage + 1 == stages ? 0 : stage + 1; }
  __device__ void restart() { stage = 0; }
};

// Calls f(std::integral_constant<int, catalog index>) for the config at runtime position
// `position` of the launch's set (one branch per config of the set).
template <int... kIndices, size_t... kPositions, class F>
__device__ __forceinline__ void dispatch_config_impl(int position, F&& f, ConfigSet<kIndices...>,
                                                     std::index_sequence<kPositions...>) {
  ((position == static_cast<int>(kPositions)
        ? (f(std::integral_constant<int, ConfigSet<kIndices...>::kIndexAt[kPositions]>{}), 0)
        : 0),
   ...);
}
template <class Set, class F>
__device__ __forceinline__ void dispatch_config(int position, F&& f) {
  dispatch_config_impl(position, static_cast<F&&>(f), Set{},
                       std::make_index_sequence<Set::kSize>{});
}

}  // namespace ramp::cuda::detail
