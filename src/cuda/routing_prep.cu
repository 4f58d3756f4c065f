#include "cuda/routing_prep.cuh"

#include <cuda_runtime.h>

#include <climits>
#include <cub/block/block_radix_sort.cuh>
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#include <cuda/functional>
#include <string>
#include <utility>

#include "core/host_device.h"
#include "cuda/cuda_check.h"
#include "cuda/ptx/grid_dependency.h"
#include "dispatch/builtin_configs.h"

namespace ramp::cuda {

namespace {

constexpr int kScanThreads = 256;
constexpr int kScanBatch = 8;  // chunk rows a scanning thread keeps in flight

// kBuiltinConfigs lives in host memory only; this is its device copy, built from the same
// constexpr array so the two cannot drift.
struct ConfigTable {
  TileConfig configs[dispatch::kNumBuiltinConfigs];
};
template <size_t... I>
constexpr ConfigTable make_config_table(std::index_sequence<I...>) {
  return ConfigTable{{dispatch::kBuiltinConfigs[I]...}};
}
__constant__ ConfigTable kDeviceConfigs =
    make_config_table(std::make_index_sequence<dispatch::kNumBuiltinConfigs>{});

struct SlotErrors {
  int32_t first_bad_id = INT32_MAX;
  int32_t first_bad_weight = INT32_MAX;
};

__device__ __forceinline__ int32_t num_slots_of(const RoutingPrepArgs& args) {
  return args.num_tokens * args.top_k;
}

// Bits a radix sort must look at so every key up to max_key is ordered.
__device__ __forceinline__ int bits_to_hold(uint32_t max_key) { return 32 - __clz(max_key); }

// The layout reserves align16 bytes per array; the host leaves the tail zero, so do we.
__device__ void zero_padding(int32_t* array, int32_t used, int32_t reserved) {
  const int32_t end = round_up(max_i32(reserved, 1), 4);
  for (int32_t i = used; i < end; ++i) array[i] = 0;
}

// Validates one slot and returns its sort key: the expert, or num_experts (past every expert,
// routed nowhere) for an id outside [0, E).
__device__ __forceinline__ uint32_t slot_key(const RoutingPrepArgs& args, int32_t slot,
                                             SlotErrors* errors) {
  const int32_t id = args.topk_ids[slot];
  const bool valid = static_cast<uint32_t>(id) < static_cast<uint32_t>(args.num_experts);
  if (errors != nullptr) {
    if (!valid) errors->first_bad_id = min(errors->first_bad_id, slot);
    if (args.topk_weights != nullptr && !isfinite(args.topk_weights[slot])) {
      errors->first_bad_weight = min(errors->first_bad_weight, slot);
    }
  }
  return valid ? static_cast<uint32_t>(id) : static_cast<uint32_t>(args.num_experts);
}

__device__ __forceinline__ int32_t expert_config(const RoutingPrepArgs& args, int32_t rows,
                                                 int32_t total_big_tiles) {
  return args.forced_config >= 0
             ? args.forced_config
             : dispatch::choose_builtin_config(rows, total_big_tiles, args.num_sms);
}

// One CTA that holds up to kCapacity slots or experts, kItems per thread in the blocked
// arrangement (thread i holds entries kItems*i ..), the order BlockRadixSort keeps for equal
// keys: that stability is what keeps slots ascending inside an expert and ties in ascending
// expert id. Small problems use a small CTA: the prep's latency is its barriers and sort
// passes, which shrink with the CTA.
template <int kThreadsArg, int kItemsArg>
struct PrepCta {
  static constexpr int kThreads = kThreadsArg;
  static constexpr int kItems = kItemsArg;
  static constexpr int32_t kCapacity = kThreads * kItems;

  using KeySort = cub::BlockRadixSort<uint32_t, kThreads, kItems, int32_t>;
  using IntScan = cub::BlockScan<int32_t, kThreads>;
  using IntReduce = cub::BlockReduce<int32_t, kThreads>;

  struct Shared {
    int32_t counts[kCapacity];
    union {
      typename KeySort::TempStorage sort;
      int32_t task_expert[kCapacity];  // after a sort: the expert of each task, in order
    };
    union {
      typename IntScan::TempStorage scan;
      typename IntReduce::TempStorage reduce;
    };
    int32_t broadcast;
  };

  static __device__ __forceinline__ int32_t entry(int i) {
    return static_cast<int32_t>(threadIdx.x) * kItems + i;
  }

  template <class Op>
  static __device__ int32_t all_reduce(Shared& shared, int32_t value, Op op) {
    const int32_t result = IntReduce(shared.reduce).Reduce(value, op);
    if (threadIdx.x == 0) shared.broadcast = result;
    __syncthreads();
    const int32_t all = shared.broadcast;
    __syncthreads();  // reduce storage and broadcast are reused right away
    return all;
  }

  static __device__ SlotErrors all_errors(Shared& shared, const SlotErrors& mine) {
    SlotErrors all;
    all.first_bad_id = all_reduce(shared, mine.first_bad_id, ::cuda::minimum<>{});
    all.first_bad_weight = all_reduce(shared, mine.first_bad_weight, ::cuda::minimum<>{});
    return all;
  }

  // Slots chunk_begin + entry(i); slots past S get the routed-nowhere key, so they sort last.
  static __device__ void load_keys(const RoutingPrepArgs& args, int32_t chunk_begin,
                                   uint32_t (&keys)[kItems], int32_t (&slots)[kItems],
                                   SlotErrors* errors) {
    const int32_t num_slots = num_slots_of(args);
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      const int32_t slot = chunk_begin + entry(i);
      slots[i] = slot;
      keys[i] = slot < num_slots ? slot_key(args, slot, errors)
                                 : static_cast<uint32_t>(args.num_experts);
    }
  }

  // Writes expert_counts and expert_offsets from shared.counts; returns the number of non-empty
  // experts. Its last barrier makes the offsets visible to every thread of the CTA.
  static __device__ int32_t write_histogram(Shared& shared, const RoutingView& routing) {
    const int32_t num_experts = routing.num_experts;
    int32_t counts[kItems];
    int32_t offsets[kItems];
    int32_t non_empty = 0;
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      counts[i] = entry(i) < num_experts ? shared.counts[entry(i)] : 0;
      non_empty += counts[i] > 0;
    }
    int32_t total = 0;
    IntScan(shared.scan).ExclusiveSum(counts, offsets, total);
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      if (entry(i) < num_experts) {
        routing.expert_counts[entry(i)] = counts[i];
        routing.expert_offsets[entry(i)] = offsets[i];
      }
    }
    if (threadIdx.x == 0) {
      routing.expert_offsets[num_experts] = total;
      zero_padding(routing.expert_counts, num_experts, num_experts);
      zero_padding(routing.expert_offsets, num_experts + 1, num_experts + 1);
    }
    __syncthreads();  // scan storage is reused by the reduce below
    return all_reduce(shared, non_empty, ::cuda::std::plus<>{});
  }

  // One GEMM's task map (plan.cpp build_task_map + assign_builtin_configs + order_experts).
  // Precondition: shared.counts complete, expert_offsets written (write_histogram).
  static __device__ void write_task_map(Shared& shared, const RoutingPrepArgs& args, int gemm,
                                        int32_t num_tasks) {
    const int32_t num_experts = args.num_experts;
    const int32_t out_features = args.out_features[gemm];
    const TaskMapView map = args.task_maps[gemm];
    const TileConfig* configs = kDeviceConfigs.configs;

    int32_t big_tiles = 0;
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      const int32_t rows = entry(i) < num_experts ? shared.counts[entry(i)] : 0;
      big_tiles += dispatch::big_tiles_of_expert(configs[0], rows, out_features);
    }
    const int32_t total_big_tiles = all_reduce(shared, big_tiles, ::cuda::std::plus<>{});

    if (num_tasks > 0) {
      // Descending stable sort by tiles keeps ascending expert id among ties; identity sorts
      // by "has tiles" only, which just moves empty experts behind the rest.
      uint32_t keys[kItems];
      int32_t experts[kItems];
      int32_t max_key = 0;
#pragma unroll
      for (int i = 0; i < kItems; ++i) {
        const int32_t rows = entry(i) < num_experts ? shared.counts[entry(i)] : 0;
        const int32_t tiles =
            configs[expert_config(args, rows, total_big_tiles)].tiles(rows, out_features);
        const int32_t key = args.order == ExpertOrder::kIdentity ? (tiles > 0) : tiles;
        keys[i] = static_cast<uint32_t>(key);
        experts[i] = entry(i);
        max_key = max_i32(max_key, key);
      }
      max_key = all_reduce(shared, max_key, ::cuda::maximum<>{});
      KeySort(shared.sort).SortDescending(keys, experts, 0, bits_to_hold(max_key));
      __syncthreads();  // the sort's storage becomes task_expert

#pragma unroll
      for (int i = 0; i < kItems; ++i) {
        const int32_t rank = entry(i);
        if (rank >= num_tasks) continue;
        int32_t task = rank;
        if (args.order == ExpertOrder::kHalfInterval) {
          task = half_interval_position(rank, num_tasks);
        }
        shared.task_expert[task] = experts[i];
      }
      __syncthreads();
    }

    int32_t task_tiles[kItems];
    TaskDesc descs[kItems];
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      descs[i] = TaskDesc{0, 0, 0, 0};  // unused entries stay zero, as on the host
      task_tiles[i] = 0;
      if (entry(i) < num_tasks) {
        const int32_t e = shared.task_expert[entry(i)];
        const int32_t rows = shared.counts[e];
        const int32_t config = expert_config(args, rows, total_big_tiles);
        descs[i] = TaskDesc{e, config, args.routing.expert_offsets[e], rows};
        task_tiles[i] = configs[config].tiles(rows, out_features);
      }
    }
    int32_t tile_prefix[kItems];
    int32_t total_tiles = 0;
    IntScan(shared.scan).InclusiveSum(task_tiles, tile_prefix, total_tiles);

#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      const int32_t task = entry(i);
      if (task >= num_experts) break;
      const bool used = task < num_tasks;
      map.tasks[task] = descs[i];
      map.tile_prefix[task] = used ? tile_prefix[i] : 0;
      const bool closes_chunk = used && (task % 32 == 31 || task == num_tasks - 1);
      const bool opens_unused_chunk = !used && task % 32 == 0;
      if (closes_chunk || opens_unused_chunk) {
        map.chunk_last[task / 32] = used ? tile_prefix[i] : 0;
      }
    }
    if (threadIdx.x == 0) {
      const int32_t chunks = ceil_div(num_experts, 32);
      zero_padding(map.tile_prefix, num_experts, num_experts);
      zero_padding(map.chunk_last, chunks, chunks);
      *map.header = TaskMapHeader{num_tasks, total_tiles, ceil_div(num_tasks, 32), 0};
    }
    __syncthreads();  // scan storage and task_expert are reused by the next GEMM
  }

  // Everything after the histogram: offsets, header, sorted_slots padding, every task map.
  static __device__ void finish_plan(Shared& shared, const RoutingPrepArgs& args,
                                     const SlotErrors& errors) {
    const RoutingView& routing = args.routing;
    const int32_t num_slots = num_slots_of(args);
    const int32_t num_tasks = write_histogram(shared, routing);
    if (threadIdx.x == 0) {
      int32_t bits = 0;
      if (errors.first_bad_id != INT32_MAX) bits |= kRoutingBadExpertId;
      if (errors.first_bad_weight != INT32_MAX) bits |= kRoutingNonFiniteWeight;
      *routing.header =
          RoutingHeader{bits, errors.first_bad_id, errors.first_bad_weight, num_slots};
      zero_padding(routing.sorted_slots, num_slots, num_slots);
    }
    for (int gemm = 0; gemm < args.num_gemms; ++gemm) {
      write_task_map(shared, args, gemm, num_tasks);
    }
  }
};

using SmallCta = PrepCta<128, 4>;   // up to 512 slots and experts (decode)
using MediumCta = PrepCta<256, 8>;  // up to 2048
using LargeCta = PrepCta<512, 8>;   // up to 4096: the chunk of the multi-CTA path
static_assert(LargeCta::kCapacity == kPrepChunkSlots && LargeCta::kCapacity == kMaxPrepExperts);

// S <= kPrepChunkSlots: the whole prep in one CTA, one launch.
template <class Cta>
__global__ void __launch_bounds__(Cta::kThreads) prep_one_cta(RoutingPrepArgs args) {
  ptx::allow_next_grid_launch();  // the dependent waits for completion before reading the plan
  __shared__ typename Cta::Shared shared;
  for (int32_t e = threadIdx.x; e < args.num_experts; e += Cta::kThreads) shared.counts[e] = 0;
  __syncthreads();

  uint32_t keys[Cta::kItems];
  int32_t slots[Cta::kItems];
  SlotErrors mine;
  Cta::load_keys(args, 0, keys, slots, &mine);
#pragma unroll
  for (int i = 0; i < Cta::kItems; ++i) {
    if (keys[i] < static_cast<uint32_t>(args.num_experts)) atomicAdd(&shared.counts[keys[i]], 1);
  }
  const SlotErrors errors = Cta::all_errors(shared, mine);

  typename Cta::KeySort(shared.sort).Sort(keys, slots, 0, bits_to_hold(args.num_experts));
  // One chunk: a valid slot's sorted position already is its place in sorted_slots.
#pragma unroll
  for (int i = 0; i < Cta::kItems; ++i) {
    if (keys[i] < static_cast<uint32_t>(args.num_experts)) {
      args.routing.sorted_slots[Cta::entry(i)] = slots[i];
    }
  }
  __syncthreads();  // the sort's storage is reused by finish_plan
  Cta::finish_plan(shared, args, errors);
}


// ---------------------------------------------------------------------------------------------
// The fast one-CTA path: S <= kPrepChunkSlots, E <= kFastMaxExperts. Five barriers in all (four
// for the identity order) instead of CUB radix sorts:
//   1. slots: each warp owns a contiguous segment of slots and walks it 32 at a time; a slot's
//      rank among its expert's slots in the segment = (count in earlier batches, a per-warp
//      row of shared counters) + (rank in the batch: lanes with the same id, found with one
//      ballot per id bit). Stable by construction.
//   2. experts: per expert, the exclusive prefix over warps (the warp's base inside the expert)
//      and the count; one block scan of (count, non-empty, big tiles of GEMM 0 and 1) gives the
//      offsets, the identity order (compacted non-empty experts) and both GEMMs' config rule.
//   3. sorted_slots = offset[e] + warp base + segment rank; both GEMMs' orders at once: the
//      busy-first rank of a task = how many tasks have a larger (tiles, -index) key, counted by
//      comparison against the (at most 256) compacted keys: no sort.
//   4. one block scan of both GEMMs' tile counts in task order: TilePrefix and chunk index.
constexpr int32_t kFastMaxExperts = 256;
// The ordering key is tiles << 8 | (255 - task index); the host checks it fits (fast_plan_fits).
constexpr int64_t kFastMaxTiles = int64_t{1} << 23;

__device__ __forceinline__ uint32_t lanemask_lt() {
  uint32_t mask;
  asm("mov.u32 %0, %%lanemask_lt;" : "=r"(mask));
  return mask;
}

// The lanes of the warp holding the same expert id as this lane (id < 0: routed nowhere, peers
// of the other routed-nowhere lanes). One ballot per id bit: __match_any_sync costs far more on
// a batch of ~30 distinct ids, and the batch walk is the prep's serial part.
__device__ __forceinline__ uint32_t same_id_lanes(int32_t id) {
  const bool routed = id >= 0;
  const uint32_t routed_lanes = __ballot_sync(0xffffffffu, routed);
  uint32_t peers = routed ? routed_lanes : ~routed_lanes;
#pragma unroll
  for (int bit = 0; bit < 8; ++bit) {  // ids < kFastMaxExperts = 2^8
    const bool set = (id >> bit) & 1;
    const uint32_t lanes = __ballot_sync(0xffffffffu, set);
    peers &= set ? lanes : ~lanes;
  }
  return peers;
}
static_assert(kFastMaxExperts <= 256, "same_id_lanes looks at 8 id bits");

// Stable rank of each of this warp's slots among the slots of its expert in the warp's segment
// [segment, segment + 32 * kBatches): (count in earlier batches, kept in `row`, the warp's
// per-expert counters, zero on entry) + (rank among the lanes of the batch with the same id).
// ids < 0 are routed nowhere and get no place. On return `row` holds the segment's counts.
template <int kBatches>
__device__ __forceinline__ void rank_in_segment(const int32_t (&ids)[kBatches], int32_t* row,
                                                int32_t segment, int32_t num_slots,
                                                int32_t (&segment_rank)[kBatches]) {
#pragma unroll
  for (int b = 0; b < kBatches; ++b) {
    segment_rank[b] = 0;
    if (segment + b * 32 < num_slots) {  // warp-uniform
      const int32_t id = ids[b];
      const uint32_t peers = same_id_lanes(id);
      const int32_t rank = __popc(peers & lanemask_lt());
      const int32_t before = id >= 0 ? row[id] : 0;
      segment_rank[b] = before + rank;
      __syncwarp();
      if (id >= 0 && rank == 0) row[id] = before + __popc(peers);
      __syncwarp();
    }
  }
}

template <int kWarpsArg, int kBatchesArg>
struct FastCta {
  static constexpr int kWarps = kWarpsArg;
  static constexpr int kBatches = kBatchesArg;  // 32-slot batches per warp
  static constexpr int kThreads = 32 * kWarps;
  static constexpr int32_t kSlotCapacity = kThreads * kBatches;
  static constexpr int kIpt = (kFastMaxExperts + kThreads - 1) / kThreads;  // experts per thread
  // Many slots: stage sorted_slots in shared memory and write it coalesced at the end (cheaper
  // than thousands of scattered 4-byte stores); few: scatter straight to global memory.
  static constexpr bool kStageSlots = kBatches > 1;

  struct Shared {
    int32_t warp_counts[kWarps][kFastMaxExperts];  // slots per (warp, expert), then warp bases
    int32_t offset[kFastMaxExperts];
    int32_t count[kFastMaxExperts];
    int32_t config[kMaxPrepGemms][kFastMaxExperts];
    int32_t tiles[kMaxPrepGemms][kFastMaxExperts];
    alignas(16) int32_t key[kMaxPrepGemms][kFastMaxExperts];  // by identity task index
    int32_t compact_expert[kFastMaxExperts];                  // identity order
    int32_t task_expert[kMaxPrepGemms][kFastMaxExperts];      // execution order
    int4 scan_totals[kWarps];
    int2 tile_totals[kWarps];
    // Routing-aware selection: each GEMM's sums (dispatch::SelectionSums, flat) and choice.
    // 32-bit: every field stays below 2^31 (E <= 256 tasks of < 2^23 tiles each, see
    // routing_prep_can_select), and shared 32-bit atomics are native where 64-bit ones are not.
    uint32_t selection_sums[kMaxPrepGemms][dispatch::kSelectionSumFields];
    int32_t selected[kMaxPrepGemms];
    int2 errors[kWarps];
    alignas(16) int32_t sorted_slots[kStageSlots ? kSlotCapacity : 4];  // kStageSlots
    // The builtin configs' tile extents, staged once so the config rule reads no constant
    // memory on its dependent chain: tiles = ceil(rows / token_tile) * feature_blocks.
    int32_t token_tile[dispatch::kNumBuiltinConfigs];
    int32_t feature_blocks[kMaxPrepGemms][dispatch::kNumBuiltinConfigs];  // times split_k
  };
};

// kFromCounts: the multi-CTA path's plan step. No slots; per expert, the exclusive scan over the
// chunk histograms (in place: each chunk's base inside the expert) gives the count, and the
// chunks' first offending slots give the errors. The stable scatter follows in its own launch.
template <class Cta, bool kFromCounts>
__global__ void __launch_bounds__(Cta::kThreads)
    prep_fast(const __grid_constant__ RoutingPrepArgs args, int32_t* chunk_counts,
              const int2* chunk_errors, int32_t num_chunks) {
  constexpr int kWarps = Cta::kWarps;
  constexpr int kBatches = Cta::kBatches;
  constexpr int kIpt = Cta::kIpt;
  // The plan is read only after this grid completes (the dependent waits for that), so the
  // successor may be scheduled right away.
  if (!kFromCounts) ptx::allow_next_grid_launch();
  __shared__ typename Cta::Shared sh;

  const int tid = static_cast<int>(threadIdx.x);
  const int lane = tid & 31;
  const int warp = tid >> 5;
  const int32_t num_experts = args.num_experts;
  const int32_t num_slots = num_slots_of(args);
  const int num_gemms = args.num_gemms;
  const TileConfig* configs = kDeviceConfigs.configs;

  if (tid < dispatch::kNumBuiltinConfigs) {
    const TileConfig config = configs[tid];
    sh.token_tile[tid] = config.token_tile;
#pragma unroll
    for (int g = 0; g < kMaxPrepGemms; ++g) {
      sh.feature_blocks[g][tid] =
          g < num_gemms ? config.tiles_per_token_block(args.out_features[g]) : 0;
    }
  }
  int32_t* row = sh.warp_counts[warp];
  if (!kFromCounts) {
    for (int32_t e = lane; e < num_experts; e += 32) row[e] = 0;
  }
  bool selects[kMaxPrepGemms];
  bool any_selection = false;
#pragma unroll
  for (int g = 0; g < kMaxPrepGemms; ++g) {
    selects[g] = g < num_gemms && args.forced_config < 0 && args.selection[g].count > 0;
    any_selection = any_selection || selects[g];
  }
  for (int i = tid; i < kMaxPrepGemms * dispatch::kSelectionSumFields; i += Cta::kThreads) {
    sh.selection_sums[i / dispatch::kSelectionSumFields][i % dispatch::kSelectionSumFields] = 0;
  }

  // 1. Slots: warp `warp` owns [segment, segment + 32 * kBatches).
  const int32_t segment = warp * (32 * kBatches);
  int32_t ids[kBatches];
  int32_t first_bad_id = INT32_MAX;
  int32_t first_bad_weight = INT32_MAX;
  if (kFromCounts) {
    for (int32_t chunk = tid; chunk < num_chunks; chunk += Cta::kThreads) {
      const int2 errors = chunk_errors[chunk];
      first_bad_id = min(first_bad_id, errors.x);
      first_bad_weight = min(first_bad_weight, errors.y);
    }
  }
  // Every load is issued before any is used (one memory latency, not one per batch).
  float weights[kBatches];
  const bool check_weights = args.topk_weights != nullptr;
#pragma unroll
  for (int b = 0; b < kBatches; ++b) {
    const int32_t slot = segment + b * 32 + lane;
    const bool in_range = !kFromCounts && slot < num_slots;
    ids[b] = in_range ? __ldg(args.topk_ids + slot) : -1;
    weights[b] = in_range && check_weights ? __ldg(args.topk_weights + slot) : 0.0f;
  }
#pragma unroll
  for (int b = 0; b < kBatches; ++b) {
    const int32_t slot = segment + b * 32 + lane;
    const bool in_range = !kFromCounts && slot < num_slots;
    if (in_range && static_cast<uint32_t>(ids[b]) >= static_cast<uint32_t>(num_experts)) {
      first_bad_id = min(first_bad_id, slot);
      ids[b] = -1;
    }
    if (in_range && !isfinite(weights[b])) first_bad_weight = min(first_bad_weight, slot);
  }
  first_bad_id = __reduce_min_sync(0xffffffffu, first_bad_id);
  first_bad_weight = __reduce_min_sync(0xffffffffu, first_bad_weight);
  if (lane == 0) sh.errors[warp] = make_int2(first_bad_id, first_bad_weight);
  __syncwarp();  // the row is zero

  int32_t segment_rank[kBatches] = {};
  if (!kFromCounts) rank_in_segment<kBatches>(ids, row, segment, num_slots, segment_rank);
  __syncthreads();  // (1) every warp's counts

  // 2. Experts, kIpt consecutive ones per thread (blocked: the scan runs in expert order).
  int4 item[kIpt];  // count, non-empty, big tiles GEMM 0, big tiles GEMM 1
  int4 sum = make_int4(0, 0, 0, 0);
#pragma unroll
  for (int i = 0; i < kIpt; ++i) {
    const int32_t e = tid * kIpt + i;
    int32_t count = 0;
    if (kFromCounts && e < num_experts) {
      for (int32_t first = 0; first < num_chunks; first += kScanBatch) {
        int32_t batch[kScanBatch];
#pragma unroll
        for (int c = 0; c < kScanBatch; ++c) {
          const int32_t chunk = first + c;
          batch[c] = chunk < num_chunks
                         ? chunk_counts[static_cast<int64_t>(chunk) * num_experts + e]
                         : 0;
        }
#pragma unroll
        for (int c = 0; c < kScanBatch; ++c) {
          const int32_t chunk = first + c;
          if (chunk < num_chunks) {
            chunk_counts[static_cast<int64_t>(chunk) * num_experts + e] = count;
          }
          count += batch[c];
        }
      }
    } else if (e < num_experts) {
      int32_t c[kWarps];  // all loads first: the stores below could alias them
#pragma unroll
      for (int w = 0; w < kWarps; ++w) c[w] = sh.warp_counts[w][e];
#pragma unroll
      for (int w = 0; w < kWarps; ++w) {
        sh.warp_counts[w][e] = count;
        count += c[w];
      }
    }
    item[i].x = count;
    item[i].y = count > 0;
    // dispatch::big_tiles_of_expert with the staged extents of config 0.
    const bool big = count > dispatch::kSwappedMaxRows;
    const int32_t big_token_blocks = big ? ceil_div(count, sh.token_tile[0]) : 0;
    item[i].z = big_token_blocks * sh.feature_blocks[0][0];
    item[i].w = big_token_blocks * sh.feature_blocks[1][0];
    sum.x += item[i].x;
    sum.y += item[i].y;
    sum.z += item[i].z;
    sum.w += item[i].w;
  }
  int4 inclusive = sum;
#pragma unroll
  for (int d = 1; d < 32; d *= 2) {
    const int32_t x = __shfl_up_sync(0xffffffffu, inclusive.x, d);
    const int32_t y = __shfl_up_sync(0xffffffffu, inclusive.y, d);
    const int32_t z = __shfl_up_sync(0xffffffffu, inclusive.z, d);
    const int32_t w = __shfl_up_sync(0xffffffffu, inclusive.w, d);
    if (lane >= d) {
      inclusive.x += x;
      inclusive.y += y;
      inclusive.z += z;
      inclusive.w += w;
    }
  }
  if (lane == 31) sh.scan_totals[warp] = inclusive;
  __syncthreads();  // (2) warp totals
  int4 running = make_int4(inclusive.x - sum.x, inclusive.y - sum.y, 0, 0);
  int4 total = make_int4(0, 0, 0, 0);
#pragma unroll
  for (int w = 0; w < kWarps; ++w) {
    const int4 t = sh.scan_totals[w];
    if (w < warp) {
      running.x += t.x;
      running.y += t.y;
    }
    total.x += t.x;
    total.y += t.y;
    total.z += t.z;
    total.w += t.w;
  }
  const int32_t routed = total.x;
  const int32_t num_tasks = total.y;
  const int32_t total_big_tiles[kMaxPrepGemms] = {total.z, total.w};

  // Routing-aware selection (block-uniform branch): each field of the sums reduced over the
  // warp, warp totals added in shared memory (integers: any order gives the host's sums), then
  // the host's predictions and first-minimum choice on them.
  if (any_selection) {
    // Per GEMM only the mixed groups differ (the rule's "fills the machine" count); the uniform
    // token blocks and the active experts are reduced once and added to both GEMMs' sums.
    uint32_t mine[kMaxPrepGemms][dispatch::kSelectionSumFields] = {};
#pragma unroll
    for (int i = 0; i < kIpt; ++i) {
      if (tid * kIpt + i < num_experts) {
#pragma unroll
        for (int g = 0; g < kMaxPrepGemms; ++g) {
          const int32_t rows = item[i].x;
          dispatch::add_selection_terms(
              rows, dispatch::choose_builtin_config(rows, total_big_tiles[g], args.num_sms),
              mine[g], dispatch::BuiltinConfigIndices{});
        }
      }
    }
    // Every lane gets every warp sum; lane f then adds field f (one atomic per lane, not a
    // branch per field on lane 0).
    static_assert(dispatch::kSelectionSumFields <= 32);
    uint32_t lane_sum[kMaxPrepGemms] = {0, 0};
#pragma unroll
    for (int32_t field = 0; field < dispatch::kSelectionSumFields; ++field) {
      const bool per_gemm =
          field >= dispatch::mixed_blocks_field(0) && field < dispatch::kActiveExpertsField;
      const uint32_t sum0 = __reduce_add_sync(0xffffffffu, mine[0][field]);
      const uint32_t sum1 =
          per_gemm && selects[1] ? __reduce_add_sync(0xffffffffu, mine[1][field]) : sum0;
      lane_sum[0] = lane == field ? sum0 : lane_sum[0];
      lane_sum[1] = lane == field ? sum1 : lane_sum[1];
    }
    if (lane < dispatch::kSelectionSumFields) {
      if (selects[0] && lane_sum[0] != 0) atomicAdd(&sh.selection_sums[0][lane], lane_sum[0]);
      if (selects[1] && lane_sum[1] != 0) atomicAdd(&sh.selection_sums[1][lane], lane_sum[1]);
    }
    static_assert(kMaxPrepGemms == 2, "the sums above are written for two GEMMs");
    __syncthreads();  // (2a) the sums
    // Warp g predicts GEMM g in parallel: lane i < count prices candidate i when it is uniform,
    // lane kMaxCandidates + c the mixed candidate's group of config c; all of them through one
    // price() call (the long part runs once for the warp, not once per kind of lane). Then the
    // mixed lane composes its groups in config order and every lane walks the predictions in
    // table order for the first minimum, as dispatch::select_from_sums does, so the choice is
    // the host's.
    static_assert(kMaxPrepGemms <= Cta::kWarps);
    static_assert(dispatch::kMaxCandidates + dispatch::kNumBuiltinConfigs <= 32);
    if (warp < num_gemms && selects[warp]) {
      const int g = warp;
      const dispatch::CandidateTable& table = args.selection[g];
      const int32_t count = min_i32(table.count, dispatch::kMaxCandidates);
      const int32_t out_features = args.out_features[g];
      const uint32_t* sums = sh.selection_sums[g];
      const int32_t kind = lane < count ? table.entries[lane].kind : -1;
      const int32_t uniform_config =
          kind == dispatch::kCandidateUniform ? table.entries[lane].config : -1;
      const bool mixed_lane = kind == dispatch::kCandidateMixed;
      // Every mixed candidate composes from the same groups (its ctas_per_sm enters features_of):
      // the first one's groups are priced here, any later one prices its own below.
      const int32_t first_mixed = __ffs(__ballot_sync(0xffffffffu, mixed_lane)) - 1;
      const int32_t group_config = lane - dispatch::kMaxCandidates;
      const bool group_lane =
          first_mixed >= 0 && group_config >= 0 && group_config < dispatch::kNumBuiltinConfigs;
      // dispatch::uniform_candidate_of by ballots: the first uniform lane holding the config.
      int32_t group_uniform = -1;
#pragma unroll
      for (int32_t c = 0; c < dispatch::kNumBuiltinConfigs; ++c) {
        const uint32_t holders = __ballot_sync(0xffffffffu, uniform_config == c);
        if (group_config == c) group_uniform = __ffs(holders) - 1;
      }
      // Both inputs made on every lane (indices clamped into range) and one taken: no branch.
      const bool uniform_lane = uniform_config >= 0;
      const dispatch::PricingInput as_uniform =
          dispatch::uniform_pricing(table, min_i32(lane, count - 1), sums);
      const dispatch::PricingInput as_group = dispatch::group_pricing(
          table.entries[max_i32(first_mixed, 0)],
          min_i32(max_i32(group_config, 0), dispatch::kNumBuiltinConfigs - 1), group_uniform, sums);
      const dispatch::PricingInput input = uniform_lane ? as_uniform : as_group;
      const bool prices = uniform_lane || (group_lane && dispatch::group_is_priced(input));
      double predicted = 0.0;
      if (prices) predicted = dispatch::price(table, input, configs, out_features, args.num_sms);
      const dispatch::MixedGroupTerm term = dispatch::mixed_group_term(table, input, predicted);
      // The mixed lane gathers its groups' terms from the group lanes, in config order.
      dispatch::MixedGroupTerm terms[dispatch::kNumBuiltinConfigs];
#pragma unroll
      for (int32_t c = 0; c < dispatch::kNumBuiltinConfigs; ++c) {
        const int source = dispatch::kMaxCandidates + c;
        terms[c].state = __shfl_sync(0xffffffffu, term.state, source);
        terms[c].cost = __shfl_sync(0xffffffffu, term.cost, source);
        terms[c].launch = __shfl_sync(0xffffffffu, term.launch, source);
      }
      if (mixed_lane) {
        predicted = lane == first_mixed
                        ? dispatch::compose_mixed(table.entries[lane], terms, sums, configs,
                                                  out_features, args.num_sms)
                        : dispatch::predict_from_sums(table, lane, sums, configs, out_features,
                                                      args.num_sms);
      }
      double times[dispatch::kMaxCandidates];
#pragma unroll
      for (int32_t candidate = 0; candidate < dispatch::kMaxCandidates; ++candidate) {
        times[candidate] = __shfl_sync(0xffffffffu, predicted, candidate);
      }
      int32_t best = -1;
      double best_time = 0.0;
#pragma unroll
      for (int32_t candidate = 0; candidate < dispatch::kMaxCandidates; ++candidate) {
        if (candidate < count && dispatch::improves_on(times[candidate], best, best_time)) {
          best = candidate;
          best_time = times[candidate];
        }
      }
      if (lane == 0) sh.selected[g] = best;
    }
    __syncthreads();  // (2b) the choices
  }

  const RoutingView& routing = args.routing;
#pragma unroll
  for (int i = 0; i < kIpt; ++i) {
    const int32_t e = tid * kIpt + i;
    if (e < num_experts) {
      const int32_t count = item[i].x;
      const int32_t offset = running.x;
      const int32_t index = running.y;  // identity task index when count > 0
      routing.expert_counts[e] = count;
      routing.expert_offsets[e] = offset;
      sh.offset[e] = offset;
      sh.count[e] = count;
      if (count > 0) sh.compact_expert[index] = e;
#pragma unroll
      for (int g = 0; g < kMaxPrepGemms; ++g) {
        if (g >= num_gemms) break;
        const int32_t config =
            selects[g] ? dispatch::candidate_config_of_expert(
                             args.selection[g].entries[sh.selected[g]], count,
                             total_big_tiles[g], args.num_sms)
                       : expert_config(args, count, total_big_tiles[g]);
        const int32_t tiles =
            ceil_div(count, sh.token_tile[config]) * sh.feature_blocks[g][config];
        sh.config[g][e] = config;
        sh.tiles[g][e] = tiles;
        if (count > 0) sh.key[g][index] = (tiles << 8) | (255 - index);
      }
    }
    running.x += item[i].x;
    running.y += item[i].y;
  }
  if (tid < 3) {  // the ranking loop reads keys 4 at a time: zero the tail
    const int32_t index = num_tasks + tid;
    if (index < round_up(num_tasks, 4)) {
      for (int g = 0; g < num_gemms; ++g) sh.key[g][index] = 0;
    }
  }
  if (tid == 0) {
    routing.expert_offsets[num_experts] = routed;
    zero_padding(routing.expert_counts, num_experts, num_experts);
    zero_padding(routing.expert_offsets, num_experts + 1, num_experts + 1);
    int32_t bad_id = INT32_MAX;
    int32_t bad_weight = INT32_MAX;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      bad_id = min(bad_id, sh.errors[w].x);
      bad_weight = min(bad_weight, sh.errors[w].y);
    }
    int32_t bits = 0;
    if (bad_id != INT32_MAX) bits |= kRoutingBadExpertId;
    if (bad_weight != INT32_MAX) bits |= kRoutingNonFiniteWeight;
    *routing.header = RoutingHeader{bits, bad_id, bad_weight, num_slots};
  }
  // Routed-nowhere slots leave a tail behind the routed ones; it and the padding read zero.
  const int32_t padded_slots = round_up(max_i32(num_slots, 1), 4);
  int32_t* sorted_slots =
      Cta::kStageSlots && !kFromCounts ? sh.sorted_slots : routing.sorted_slots;
  for (int32_t p = routed + tid; p < padded_slots; p += Cta::kThreads) sorted_slots[p] = 0;
  __syncthreads();  // (3) offsets, warp bases, configs, tiles, keys, identity order

  // 3. The stable scatter of the slots (staged or not, see kStageSlots).
#pragma unroll
  for (int b = 0; b < kBatches; ++b) {
    const int32_t id = ids[b];
    if (id >= 0) {
      sorted_slots[sh.offset[id] + sh.warp_counts[warp][id] + segment_rank[b]] =
          segment + b * 32 + lane;
    }
  }
  const bool identity = args.order == ExpertOrder::kIdentity;
  if (!identity) {
    const int32_t pairs = num_gemms * num_tasks;
    for (int32_t p = tid; p < pairs; p += Cta::kThreads) {
      const int g = p >= num_tasks ? 1 : 0;
      const int32_t index = p - g * num_tasks;
      const int32_t mine = sh.key[g][index];
      const int4* keys = reinterpret_cast<const int4*>(sh.key[g]);
      int32_t rank = 0;
      for (int32_t j = 0; j < (num_tasks + 3) / 4; ++j) {
        const int4 k = keys[j];
        rank += (k.x > mine) + (k.y > mine) + (k.z > mine) + (k.w > mine);
      }
      const int32_t task = args.order == ExpertOrder::kHalfInterval
                               ? half_interval_position(rank, num_tasks)
                               : rank;
      sh.task_expert[g][task] = sh.compact_expert[index];
    }
    __syncthreads();  // (4) execution order
  }

  // 4. TilePrefix of both GEMMs in one scan over tasks (kIpt consecutive tasks per thread).
  int32_t task_e[kMaxPrepGemms][kIpt];
  int2 task_tiles[kIpt];
  int2 tile_sum = make_int2(0, 0);
#pragma unroll
  for (int i = 0; i < kIpt; ++i) {
    const int32_t task = tid * kIpt + i;
    int32_t tiles[kMaxPrepGemms] = {0, 0};
#pragma unroll
    for (int g = 0; g < kMaxPrepGemms; ++g) {
      task_e[g][i] = -1;
      if (g < num_gemms && task < num_tasks) {
        const int32_t e = identity ? sh.compact_expert[task] : sh.task_expert[g][task];
        task_e[g][i] = e;
        tiles[g] = sh.tiles[g][e];
      }
    }
    task_tiles[i] = make_int2(tiles[0], tiles[1]);
    tile_sum.x += tiles[0];
    tile_sum.y += tiles[1];
  }
  int2 tile_inclusive = tile_sum;
#pragma unroll
  for (int d = 1; d < 32; d *= 2) {
    const int32_t x = __shfl_up_sync(0xffffffffu, tile_inclusive.x, d);
    const int32_t y = __shfl_up_sync(0xffffffffu, tile_inclusive.y, d);
    if (lane >= d) {
      tile_inclusive.x += x;
      tile_inclusive.y += y;
    }
  }
  if (lane == 31) sh.tile_totals[warp] = tile_inclusive;
  __syncthreads();  // (5) warp totals of the tile scan; the staged sorted slots
  if (Cta::kStageSlots && !kFromCounts) {
    const int4* staged = reinterpret_cast<const int4*>(sh.sorted_slots);
    int4* out = reinterpret_cast<int4*>(routing.sorted_slots);
    for (int32_t q = tid; q < padded_slots / 4; q += Cta::kThreads) out[q] = staged[q];
  }
  int32_t prefix[kMaxPrepGemms] = {tile_inclusive.x - tile_sum.x, tile_inclusive.y - tile_sum.y};
  int32_t total_tiles[kMaxPrepGemms] = {0, 0};
#pragma unroll
  for (int w = 0; w < kWarps; ++w) {
    const int2 t = sh.tile_totals[w];
    if (w < warp) {
      prefix[0] += t.x;
      prefix[1] += t.y;
    }
    total_tiles[0] += t.x;
    total_tiles[1] += t.y;
  }
#pragma unroll
  for (int g = 0; g < kMaxPrepGemms; ++g) {
    if (g >= num_gemms) break;
    const TaskMapView& map = args.task_maps[g];
    int32_t inclusive_tiles = prefix[g];
#pragma unroll
    for (int i = 0; i < kIpt; ++i) {
      const int32_t task = tid * kIpt + i;
      if (task >= num_experts) break;
      const bool used = task < num_tasks;
      TaskDesc desc{0, 0, 0, 0};  // unused entries stay zero, as on the host
      if (used) {
        const int32_t e = task_e[g][i];
        desc = TaskDesc{e, sh.config[g][e], sh.offset[e], sh.count[e]};
        inclusive_tiles += g == 0 ? task_tiles[i].x : task_tiles[i].y;
      }
      map.tasks[task] = desc;
      map.tile_prefix[task] = used ? inclusive_tiles : 0;
      const bool closes_chunk = used && (task % 32 == 31 || task == num_tasks - 1);
      const bool opens_unused_chunk = !used && task % 32 == 0;
      if (closes_chunk || opens_unused_chunk) {
        map.chunk_last[task / 32] = used ? inclusive_tiles : 0;
      }
    }
    if (tid == 0) {
      const int32_t chunks = ceil_div(num_experts, 32);
      zero_padding(map.tile_prefix, num_experts, num_experts);
      zero_padding(map.chunk_last, chunks, chunks);
      *map.header = TaskMapHeader{num_tasks, total_tiles[g], ceil_div(num_tasks, 32), 0};
    }
  }
}

// A warp walks its batches one after the other, so small S gets one batch per warp.
using TinyFastCta = FastCta<4, 1>;     // up to 128 slots (decode)
using SmallFastCta = FastCta<16, 1>;   // up to 512
using MediumFastCta = FastCta<16, 4>;  // up to 2048
using LargeFastCta = FastCta<16, 8>;   // up to 4096
using PlanFastCta = FastCta<8, 1>;     // the multi-CTA path's plan step (no slots)
static_assert(TinyFastCta::kSlotCapacity < SmallFastCta::kSlotCapacity &&
              SmallFastCta::kSlotCapacity < MediumFastCta::kSlotCapacity &&
              MediumFastCta::kSlotCapacity < LargeFastCta::kSlotCapacity &&
              LargeFastCta::kSlotCapacity == kPrepChunkSlots && PlanFastCta::kSlotCapacity > 0);


// Large S, step 4 when E <= kFastMaxExperts: the stable scatter without a sort, as in prep_fast:
// warp w owns 256 consecutive slots of the chunk; a slot's place is offsets[e] + chunk base +
// (slots of e in earlier warps of the chunk) + (rank in the warp's segment).
__global__ void __launch_bounds__(LargeFastCta::kThreads)
    scatter_chunks_fast(RoutingPrepArgs args, const int32_t* chunk_bases) {
  using Cta = LargeFastCta;
  constexpr int kWarps = Cta::kWarps;
  constexpr int kBatches = Cta::kBatches;
  ptx::allow_next_grid_launch();  // the last prep kernel: see prep_fast
  __shared__ int32_t warp_counts[kWarps][kFastMaxExperts];
  const int tid = static_cast<int>(threadIdx.x);
  const int lane = tid & 31;
  const int warp = tid >> 5;
  const int32_t num_experts = args.num_experts;
  const int32_t num_slots = num_slots_of(args);
  int32_t* row = warp_counts[warp];
  for (int32_t e = lane; e < num_experts; e += 32) row[e] = 0;

  const int32_t segment = blockIdx.x * kPrepChunkSlots + warp * (32 * kBatches);
  int32_t ids[kBatches];
#pragma unroll
  for (int b = 0; b < kBatches; ++b) {
    const int32_t slot = segment + b * 32 + lane;
    ids[b] = slot < num_slots ? __ldg(args.topk_ids + slot) : -1;
  }
#pragma unroll
  for (int b = 0; b < kBatches; ++b) {
    if (static_cast<uint32_t>(ids[b]) >= static_cast<uint32_t>(num_experts)) ids[b] = -1;
  }
  __syncwarp();
  int32_t segment_rank[kBatches];
  rank_in_segment<kBatches>(ids, row, segment, num_slots, segment_rank);
  __syncthreads();
  const int32_t* bases = chunk_bases + static_cast<int64_t>(blockIdx.x) * num_experts;
  for (int32_t e = tid; e < num_experts; e += Cta::kThreads) {
    int32_t c[kWarps];
#pragma unroll
    for (int w = 0; w < kWarps; ++w) c[w] = warp_counts[w][e];
    int32_t running = args.routing.expert_offsets[e] + bases[e];
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      warp_counts[w][e] = running;
      running += c[w];
    }
  }
  __syncthreads();
#pragma unroll
  for (int b = 0; b < kBatches; ++b) {
    const int32_t id = ids[b];
    if (id >= 0) {
      args.routing.sorted_slots[row[id] + segment_rank[b]] = segment + b * 32 + lane;
    }
  }
}

// Large S, step 1: per-chunk histogram and first offending slots. The counts do not depend on
// the order the atomics land in, so striped (coalesced) loads are fine here.
__global__ void __launch_bounds__(LargeCta::kThreads)
    chunk_histograms(RoutingPrepArgs args, int32_t* chunk_counts, int2* chunk_errors) {
  __shared__ int32_t counts[kMaxPrepExperts];
  __shared__ LargeCta::IntReduce::TempStorage reduce;
  const int32_t num_experts = args.num_experts;
  const int32_t num_slots = num_slots_of(args);
  for (int32_t e = threadIdx.x; e < num_experts; e += LargeCta::kThreads) counts[e] = 0;
  __syncthreads();

  SlotErrors mine;
  const int32_t chunk_begin = blockIdx.x * kPrepChunkSlots;
  // Every load is issued before any is used (one memory latency, not one per item).
  int32_t ids[LargeCta::kItems];
  float weights[LargeCta::kItems];
  const bool check_weights = args.topk_weights != nullptr;
#pragma unroll
  for (int i = 0; i < LargeCta::kItems; ++i) {
    const int32_t slot = chunk_begin + i * LargeCta::kThreads + threadIdx.x;
    const bool in_range = slot < num_slots;
    ids[i] = in_range ? __ldg(args.topk_ids + slot) : 0;
    weights[i] = in_range && check_weights ? __ldg(args.topk_weights + slot) : 0.0f;
  }
#pragma unroll
  for (int i = 0; i < LargeCta::kItems; ++i) {
    const int32_t slot = chunk_begin + i * LargeCta::kThreads + threadIdx.x;
    if (slot >= num_slots) break;
    if (static_cast<uint32_t>(ids[i]) < static_cast<uint32_t>(num_experts)) {
      atomicAdd(&counts[ids[i]], 1);
    } else {
      mine.first_bad_id = min(mine.first_bad_id, slot);
    }
    if (!isfinite(weights[i])) mine.first_bad_weight = min(mine.first_bad_weight, slot);
  }
  const int32_t first_bad_id =
      LargeCta::IntReduce(reduce).Reduce(mine.first_bad_id, ::cuda::minimum<>{});
  __syncthreads();
  const int32_t first_bad_weight =
      LargeCta::IntReduce(reduce).Reduce(mine.first_bad_weight, ::cuda::minimum<>{});
  if (threadIdx.x == 0) chunk_errors[blockIdx.x] = make_int2(first_bad_id, first_bad_weight);
  __syncthreads();
  int32_t* row = chunk_counts + static_cast<int64_t>(blockIdx.x) * num_experts;
  for (int32_t e = threadIdx.x; e < num_experts; e += LargeCta::kThreads) row[e] = counts[e];
}

// Large S, step 2: per expert, the exclusive prefix over chunks (in place: chunk c's base inside
// the expert's segment) and the expert's total.
__global__ void __launch_bounds__(kScanThreads)
    scan_chunk_counts(int32_t* chunk_counts, int32_t num_chunks, int32_t num_experts,
                      int32_t* expert_counts) {
  const int32_t e = blockIdx.x * kScanThreads + threadIdx.x;
  if (e >= num_experts) return;
  int32_t running = 0;
  for (int32_t first = 0; first < num_chunks; first += kScanBatch) {
    int32_t batch[kScanBatch];
#pragma unroll
    for (int i = 0; i < kScanBatch; ++i) {
      const int32_t chunk = first + i;
      batch[i] = chunk < num_chunks ? chunk_counts[static_cast<int64_t>(chunk) * num_experts + e]
                                    : 0;
    }
#pragma unroll
    for (int i = 0; i < kScanBatch; ++i) {
      const int32_t chunk = first + i;
      if (chunk < num_chunks) chunk_counts[static_cast<int64_t>(chunk) * num_experts + e] = running;
      running += batch[i];
    }
  }
  expert_counts[e] = running;
}

// Large S, step 3: offsets, header and task maps from the totals, in one CTA.
template <class Cta>
__global__ void __launch_bounds__(Cta::kThreads)
    plan_from_counts(RoutingPrepArgs args, const int2* chunk_errors, int32_t num_chunks) {
  __shared__ typename Cta::Shared shared;
  for (int32_t e = threadIdx.x; e < args.num_experts; e += Cta::kThreads) {
    shared.counts[e] = args.routing.expert_counts[e];
  }
  SlotErrors mine;
  for (int32_t chunk = threadIdx.x; chunk < num_chunks; chunk += Cta::kThreads) {
    mine.first_bad_id = min(mine.first_bad_id, chunk_errors[chunk].x);
    mine.first_bad_weight = min(mine.first_bad_weight, chunk_errors[chunk].y);
  }
  const SlotErrors errors = Cta::all_errors(shared, mine);  // its barriers publish counts too
  Cta::finish_plan(shared, args, errors);
}

// Large S, step 4: the stable scatter. Each chunk sorts its slots by expert (stable), so a slot's
// place is offsets[e] + (slots of e in earlier chunks) + (rank among e's slots in this chunk).
__global__ void __launch_bounds__(LargeCta::kThreads)
    scatter_chunks(RoutingPrepArgs args, const int32_t* chunk_bases) {
  ptx::allow_next_grid_launch();  // the last prep kernel: see prep_fast
  using Cta = LargeCta;
  __shared__ union {
    Cta::KeySort::TempStorage sort;
    int32_t run_start[kMaxPrepExperts];  // first sorted position of each expert in the chunk
  } shared;
  __shared__ uint32_t last_key[Cta::kThreads];
  const uint32_t num_experts = static_cast<uint32_t>(args.num_experts);

  uint32_t keys[Cta::kItems];
  int32_t slots[Cta::kItems];
  Cta::load_keys(args, blockIdx.x * kPrepChunkSlots, keys, slots, nullptr);
  Cta::KeySort(shared.sort).Sort(keys, slots, 0, bits_to_hold(num_experts));
  last_key[threadIdx.x] = keys[Cta::kItems - 1];
  __syncthreads();  // the sort's storage becomes run_start

#pragma unroll
  for (int i = 0; i < Cta::kItems; ++i) {
    const uint32_t previous =
        i > 0 ? keys[i - 1] : (threadIdx.x > 0 ? last_key[threadIdx.x - 1] : UINT32_MAX);
    if (keys[i] < num_experts && keys[i] != previous) shared.run_start[keys[i]] = Cta::entry(i);
  }
  __syncthreads();

  const int32_t* bases = chunk_bases + static_cast<int64_t>(blockIdx.x) * args.num_experts;
#pragma unroll
  for (int i = 0; i < Cta::kItems; ++i) {
    if (keys[i] >= num_experts) continue;
    const int32_t e = static_cast<int32_t>(keys[i]);
    const int32_t rank_in_chunk = Cta::entry(i) - shared.run_start[e];
    args.routing.sorted_slots[args.routing.expert_offsets[e] + bases[e] + rank_in_chunk] =
        slots[i];
  }
}

struct ScratchLayout {
  size_t chunk_counts = 0;  // int32 [chunks][E]
  size_t chunk_errors = 0;  // int2 [chunks]
  size_t bytes = 0;
};

ScratchLayout scratch_layout(int32_t num_experts, int32_t num_slots) {
  ScratchLayout layout;
  if (num_slots <= kPrepChunkSlots) return layout;
  const size_t chunks = static_cast<size_t>(ceil_div(num_slots, kPrepChunkSlots));
  layout.chunk_counts = 0;
  layout.chunk_errors = align16(sizeof(int32_t) * chunks * num_experts);
  layout.bytes = layout.chunk_errors + align16(sizeof(int2) * chunks);
  return layout;
}

Status check_prep_args(const RoutingPrepArgs& args) {
  if (args.num_experts < 1 || args.num_experts > kMaxPrepExperts) {
    return {ErrorCode::kUnsupportedShape,
            "num_experts (E) = " + std::to_string(args.num_experts) + " is outside [1, " +
                std::to_string(kMaxPrepExperts) + "], the experts the device routing prep handles"};
  }
  if (args.top_k < 1 || args.top_k > args.num_experts) {
    return {ErrorCode::kInvalidArgument, "top_k (k) = " + std::to_string(args.top_k) +
                                             " must be in [1, E = " +
                                             std::to_string(args.num_experts) + "]"};
  }
  if (args.num_tokens < 0 || static_cast<int64_t>(args.num_tokens) * args.top_k > INT32_MAX) {
    return {ErrorCode::kInvalidArgument, "num_tokens (T) = " + std::to_string(args.num_tokens) +
                                             " must be >= 0 with T * k within int32"};
  }
  if (args.num_gemms < 1 || args.num_gemms > kMaxPrepGemms) {
    return {ErrorCode::kInternal, "routing prep for " + std::to_string(args.num_gemms) +
                                      " GEMMs (1 or 2 supported)"};
  }
  if (args.forced_config >= dispatch::kNumBuiltinConfigs) {
    return {ErrorCode::kInvalidArgument, "forced_config = " + std::to_string(args.forced_config) +
                                             " is outside [0, " +
                                             std::to_string(dispatch::kNumBuiltinConfigs) + ")"};
  }
  if (args.num_sms < 1) {
    return {ErrorCode::kInternal, "routing prep needs the SM count (num_sms >= 1)"};
  }
  for (int g = 0; g < args.num_gemms; ++g) {
    if (args.out_features[g] < 1) {
      return {ErrorCode::kInvalidArgument,
              "gemm " + std::to_string(g) + ": out_features must be >= 1"};
    }
  }
  if (args.num_tokens > 0 && args.topk_ids == nullptr) {
    return {ErrorCode::kInvalidArgument, "topk_ids is null"};
  }
  return Status::ok();
}

// prep_fast holds at most kFastMaxExperts experts and needs every task's tile count below
// kFastMaxTiles (its ordering key); S slots in one expert bound every count.
bool fast_plan_fits(const RoutingPrepArgs& args, int32_t num_slots) {
  if (args.num_experts > kFastMaxExperts) return false;
  for (int g = 0; g < args.num_gemms; ++g) {
    for (int32_t c = 0; c < dispatch::kNumBuiltinConfigs; ++c) {
      if (args.forced_config >= 0 && c != args.forced_config) continue;
      const TileConfig& config = dispatch::kBuiltinConfigs[c];
      const int64_t tiles = int64_t{config.token_blocks(max_i32(num_slots, 1))} *
                            config.tiles_per_token_block(args.out_features[g]);
      if (tiles >= kFastMaxTiles) return false;
    }
  }
  return true;
}

}  // namespace

size_t routing_prep_scratch_bytes(int32_t num_experts, int32_t num_slots) {
  return scratch_layout(num_experts, num_slots).bytes;
}

bool routing_prep_can_select(const RoutingPrepArgs& args) {
  return args.num_experts >= 1 && args.num_tokens >= 0 &&
         fast_plan_fits(args, args.num_tokens * args.top_k);
}

Status launch_routing_prep(const RoutingPrepArgs& args, cudaStream_t stream) {
  RAMP_TRY(check_prep_args(args));
  const int32_t num_slots = args.num_tokens * args.top_k;
  bool wants_selection = false;
  for (int g = 0; g < args.num_gemms; ++g) {
    wants_selection = wants_selection || args.selection[g].count > 0;
  }
  if (wants_selection && args.forced_config < 0 && !routing_prep_can_select(args)) {
    return {ErrorCode::kUnsupportedShape,
            "routing-aware selection on the device needs E <= " +
                std::to_string(kFastMaxExperts) + " and a tile count that fits the sort-free "
                "prep (E = " + std::to_string(args.num_experts) + ", S = " +
                std::to_string(num_slots) + "); check routing_prep_can_select first"};
  }
  if (num_slots <= kPrepChunkSlots && fast_plan_fits(args, num_slots)) {
    if (num_slots <= TinyFastCta::kSlotCapacity) {
      prep_fast<TinyFastCta, false><<<1, TinyFastCta::kThreads, 0, stream>>>(args, nullptr,
                                                                              nullptr, 0);
    } else if (num_slots <= SmallFastCta::kSlotCapacity) {
      prep_fast<SmallFastCta, false><<<1, SmallFastCta::kThreads, 0, stream>>>(args, nullptr,
                                                                                nullptr, 0);
    } else if (num_slots <= MediumFastCta::kSlotCapacity) {
      prep_fast<MediumFastCta, false><<<1, MediumFastCta::kThreads, 0, stream>>>(args, nullptr,
                                                                                  nullptr, 0);
    } else {
      prep_fast<LargeFastCta, false><<<1, LargeFastCta::kThreads, 0, stream>>>(args, nullptr,
                                                                                nullptr, 0);
    }
    RAMP_CUDA_TRY(cudaGetLastError());
    return Status::ok();
  }
  if (num_slots <= kPrepChunkSlots) {
    const int32_t held = max_i32(num_slots, args.num_experts);
    if (held <= SmallCta::kCapacity) {
      prep_one_cta<SmallCta><<<1, SmallCta::kThreads, 0, stream>>>(args);
    } else if (held <= MediumCta::kCapacity) {
      prep_one_cta<MediumCta><<<1, MediumCta::kThreads, 0, stream>>>(args);
    } else {
      prep_one_cta<LargeCta><<<1, LargeCta::kThreads, 0, stream>>>(args);
    }
    RAMP_CUDA_TRY(cudaGetLastError());
    return Status::ok();
  }
  if (args.scratch == nullptr) {
    return {ErrorCode::kInternal, "routing prep for " + std::to_string(num_slots) +
                                      " slots needs scratch (routing_prep_scratch_bytes)"};
  }
  const ScratchLayout layout = scratch_layout(args.num_experts, num_slots);
  char* scratch = static_cast<char*>(args.scratch);
  int32_t* chunk_counts = reinterpret_cast<int32_t*>(scratch + layout.chunk_counts);
  int2* chunk_errors = reinterpret_cast<int2*>(scratch + layout.chunk_errors);
  const int32_t chunks = ceil_div(num_slots, kPrepChunkSlots);

  chunk_histograms<<<chunks, LargeCta::kThreads, 0, stream>>>(args, chunk_counts, chunk_errors);
  RAMP_CUDA_TRY(cudaGetLastError());
  if (args.num_experts <= kFastMaxExperts) {
    // The chunk scan runs inside the plan step; the scatter ranks without a sort.
    if (fast_plan_fits(args, num_slots)) {
      prep_fast<PlanFastCta, true><<<1, PlanFastCta::kThreads, 0, stream>>>(
          args, chunk_counts, chunk_errors, chunks);
    } else {
      scan_chunk_counts<<<ceil_div(args.num_experts, kScanThreads), kScanThreads, 0, stream>>>(
          chunk_counts, chunks, args.num_experts, args.routing.expert_counts);
      RAMP_CUDA_TRY(cudaGetLastError());
      plan_from_counts<SmallCta><<<1, SmallCta::kThreads, 0, stream>>>(args, chunk_errors, chunks);
    }
    RAMP_CUDA_TRY(cudaGetLastError());
    scatter_chunks_fast<<<chunks, LargeFastCta::kThreads, 0, stream>>>(args, chunk_counts);
    RAMP_CUDA_TRY(cudaGetLastError());
    return Status::ok();
  }
  scan_chunk_counts<<<ceil_div(args.num_experts, kScanThreads), kScanThreads, 0, stream>>>(
      chunk_counts, chunks, args.num_experts, args.routing.expert_counts);
  RAMP_CUDA_TRY(cudaGetLastError());
  if (args.num_experts <= SmallCta::kCapacity) {
    plan_from_counts<SmallCta><<<1, SmallCta::kThreads, 0, stream>>>(args, chunk_errors, chunks);
  } else if (args.num_experts <= MediumCta::kCapacity) {
    plan_from_counts<MediumCta><<<1, MediumCta::kThreads, 0, stream>>>(args, chunk_errors, chunks);
  } else {
    plan_from_counts<LargeCta><<<1, LargeCta::kThreads, 0, stream>>>(args, chunk_errors, chunks);
  }
  RAMP_CUDA_TRY(cudaGetLastError());
  scatter_chunks<<<chunks, LargeCta::kThreads, 0, stream>>>(args, chunk_counts);
  RAMP_CUDA_TRY(cudaGetLastError());
  return Status::ok();
}

}  // namespace ramp::cuda
