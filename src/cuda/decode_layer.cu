// The decode path's two kernels (decode_layer.cuh says what each does, core/decode_plan.h why
// and with which index math).
#include "cuda/decode_layer.cuh"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <mutex>
#include <string>

#include "core/decode_plan.h"
#include "core/host_device.h"
#include "cuda/cuda_check.h"
#include "cuda/ptx/bulk_copy.h"
#include "cuda/ptx/global_atomic.h"
#include "cuda/ptx/grid_dependency.h"
#include "cuda/ptx/load_global.h"
#include "cuda/ptx/mbarrier.h"
#include "cuda/ptx/mma_sync.h"
#include "cuda/ptx/named_barrier.h"
#include "cuda/silu.cuh"

namespace ramp::cuda {

namespace {

// gate_up: one CTA per SM, 7 consumer warps and a producer warp that streams w13 rows into the
// ring (core/decode_plan.h, decode_gate_up_stages). Eight warps of <= 128 registers, so that a
// down_combine CTA (8 warps, <= 128 registers) fits beside it: registers are allocated per SM
// sub-partition (16384 each, 2 warps of each kernel per sub-partition); with a ninth gate_up warp
// one sub-partition held 3 of its warps and down_combine's CTAs only started as gate_up's exited
// (%globaltimer timeline, qwen3-30b-a3b T = 1: down_combine entered at 17-21 us, when gate_up's
// CTAs ended). Beside gate_up, down_combine's shared-memory prefetch of w2 overlaps gate_up's
// stream instead of following it.
constexpr int kGateUpThreads = kDecodeThreads;
constexpr int kGateUpConsumerWarps = kDecodeWarps - 1;
constexpr int kGateUpConsumerThreads = kGateUpConsumerWarps * 32;
constexpr int kGateUpProducerWarp = kGateUpConsumerWarps;
constexpr int kGateUpStepsPerBatch = 4;  // from shared memory: latency, not bandwidth, to hide
// down_combine reads the w2 rows it could not prefetch from global memory, kStepsPerBatch K
// steps per warp in flight.
constexpr int kStepsPerBatch = 8;
constexpr int32_t kSharedMemoryReservedPerCta = 1024;  // sm_90 reserves 1 KB per resident CTA
constexpr uint32_t kConsumerBarrier = 1;  // named barrier of gate_up's consumer warps

// The routing as both kernels see it: slots sorted by (expert, slot), grouped by expert.
struct DecodeRouting {
  int32_t ids[kDecodeMaxSlots];
  int32_t sorted_slots[kDecodeMaxSlots];          // valid slots only, by (expert, slot)
  int32_t group_first[kDecodeMaxSlots + 1];       // group g: sorted positions [first[g], first[g+1])
  int32_t group_expert[kDecodeMaxSlots];
  int32_t warp_starts[kDecodeWarps];
  int32_t warp_errors[kDecodeWarps][2];
  int32_t num_groups;
  int32_t wide_group;  // some expert has more rows than one mma's 8 token columns
};

// Called by every thread; ends with a barrier. Thread s reads slot s, then owns sorted position
// s. The header (CTA 0 of gate_up only) follows the routing prep's rules: smallest bad slot of
// each kind, a bad id routed nowhere.
__device__ void build_routing(DecodeRouting& routing, const DecodeLayerArgs& args,
                              bool write_header) {
  const int tid = threadIdx.x;
  const int lane = tid % 32;
  const int warp = tid / 32;
  const int32_t num_slots = args.num_tokens * args.top_k;
  const int32_t num_experts = args.num_experts;
  int32_t id = -1;
  float weight = 0.0f;
  if (tid < num_slots) {
    id = __ldg(args.topk_ids + tid);
    routing.ids[tid] = id;
    if (write_header) weight = __ldg(args.topk_weights + tid);
  }
  if (write_header) {
    const bool in_range = tid < num_slots;
    const int32_t bad_id =
        in_range && static_cast<uint32_t>(id) >= static_cast<uint32_t>(num_experts) ? tid
                                                                                    : INT32_MAX;
    const int32_t bad_weight = in_range && !isfinite(weight) ? tid : INT32_MAX;
    const int32_t warp_bad_id = __reduce_min_sync(0xffffffffu, bad_id);
    const int32_t warp_bad_weight = __reduce_min_sync(0xffffffffu, bad_weight);
    if (lane == 0) {
      routing.warp_errors[warp][0] = warp_bad_id;
      routing.warp_errors[warp][1] = warp_bad_weight;
    }
  }
  __syncthreads();

  const int32_t position =
      tid < num_slots ? decode_sorted_position(routing.ids, num_slots, num_experts, tid) : -1;
  if (position >= 0) routing.sorted_slots[position] = tid;
  const int32_t num_valid = __syncthreads_count(position >= 0);

  int32_t expert = -1;
  bool starts_group = false;
  if (tid < num_valid) {
    expert = routing.ids[routing.sorted_slots[tid]];
    starts_group = tid == 0 || routing.ids[routing.sorted_slots[tid - 1]] != expert;
  }
  const uint32_t starts = __ballot_sync(0xffffffffu, starts_group);
  if (lane == 0) routing.warp_starts[warp] = __popc(starts);
  __syncthreads();
  int32_t group = __popc(starts & ((1u << lane) - 1u));
  int32_t num_groups = 0;
  for (int w = 0; w < kDecodeWarps; ++w) {
    group += w < warp ? routing.warp_starts[w] : 0;
    num_groups += routing.warp_starts[w];
  }
  if (starts_group) {
    routing.group_first[group] = tid;
    routing.group_expert[group] = expert;
  }
  if (tid == 0) {
    routing.num_groups = num_groups;
    routing.group_first[num_groups] = num_valid;
    if (write_header) {
      int32_t first_bad_id = INT32_MAX;
      int32_t first_bad_weight = INT32_MAX;
      for (int w = 0; w < kDecodeWarps; ++w) {
        first_bad_id = min(first_bad_id, routing.warp_errors[w][0]);
        first_bad_weight = min(first_bad_weight, routing.warp_errors[w][1]);
      }
      int32_t bits = 0;
      if (first_bad_id != INT32_MAX) bits |= kRoutingBadExpertId;
      if (first_bad_weight != INT32_MAX) bits |= kRoutingNonFiniteWeight;
      *args.header = RoutingHeader{bits, first_bad_id, first_bad_weight, num_slots};
    }
  }
  __syncthreads();
  const bool wide = tid < num_groups &&
                    routing.group_first[tid + 1] - routing.group_first[tid] > kDecodeTokenColumns;
  const int32_t any_wide = __syncthreads_or(wide);
  if (tid == 0) routing.wide_group = any_wide;
  __syncthreads();
}

// Weight rows of one warp step: MMA rows g (`low`) and g + 8 (`high`) of the lane, positioned at
// the lane's first element of the K range (decode_lane_k_offset included).
struct GlobalRows {
  const bf16* low;
  const bf16* high;
  __device__ uint4 load_low(int32_t step) const {
    return ptx::load_streaming_16(low + step * kDecodeStepK);
  }
  __device__ uint4 load_high(int32_t step) const {
    return ptx::load_streaming_16(high + step * kDecodeStepK);
  }
};
struct SharedRows {
  uint32_t low;  // shared-memory addresses
  uint32_t high;
  __device__ uint4 load_low(int32_t step) const {
    return ptx::load_shared_16(low + step * kDecodeStepK * 2);
  }
  __device__ uint4 load_high(int32_t step) const {
    return ptx::load_shared_16(high + step * kDecodeStepK * 2);
  }
};

__device__ __forceinline__ uint32_t word(const uint4& v, int32_t index) {
  return index == 0 ? v.x : index == 1 ? v.y : index == 2 ? v.z : v.w;
}

// One K step of 32 as two m16n8k16, each lane's operands taken from its three 16-byte loads
// (decode_fragment_register; the indices are compile-time after unrolling).
__device__ __forceinline__ void mma_step(float (&acc)[4], uint4 low, uint4 high, uint4 token) {
#pragma unroll
  for (int32_t half = 0; half < 2; ++half) {
    const int32_t first = decode_fragment_register(half, 0);
    const int32_t second = decode_fragment_register(half, 1);
    ptx::mma_m16n8k16_bf16(acc, word(low, first), word(high, first), word(low, second),
                           word(high, second), word(token, first), word(token, second));
  }
}

// How a warp reads its token columns: through L1 what an earlier grid wrote (the layer's input;
// gate_up's intermediate rows when down_combine waited for gate_up to end), or from L2 the
// intermediate rows gate_up is still writing (down_combine with hand-over, after the group's
// count was read with acquire).
struct InputTokens {
  __device__ static uint4 load(const bf16* pointer) { return ptx::load_cached_16(pointer); }
};
struct HandedOverTokens {
  __device__ static uint4 load(const bf16* pointer) { return ptx::load_l2_16(pointer); }
};

// acc (rows g, g + 8 x token columns 2t, 2t + 1) += rows . tokens over `steps` K steps. Every
// load of a batch is issued before its first mma, so a warp keeps kStepsPerBatch KB of weights
// in flight (from shared memory the batch only hides its latency).
template <int kBatch, class Tokens, class Rows>
__device__ __forceinline__ void accumulate(float (&acc)[4], const Rows& rows, const bf16* token,
                                           int32_t steps) {
  int32_t step = 0;
  for (; step + kBatch <= steps; step += kBatch) {
    uint4 low[kBatch], high[kBatch], tokens[kBatch];
#pragma unroll
    for (int b = 0; b < kBatch; ++b) {
      low[b] = rows.load_low(step + b);
      high[b] = rows.load_high(step + b);
      tokens[b] = Tokens::load(token + (step + b) * kDecodeStepK);
    }
#pragma unroll
    for (int b = 0; b < kBatch; ++b) mma_step(acc, low[b], high[b], tokens[b]);
  }
  for (; step < steps; ++step) {
    mma_step(acc, rows.load_low(step), rows.load_high(step),
             Tokens::load(token + step * kDecodeStepK));
  }
}

// The token column a lane feeds the mma for columns [column0, column0 + 8) of a group: past the
// group's end it repeats the last real row (valid memory; that column's results are dropped).
__device__ __forceinline__ int32_t lane_slot(const DecodeRouting& routing, int32_t first,
                                             int32_t rows, int32_t column0, int lane) {
  const int32_t column = min(column0 + lane / 4, rows - 1);
  return routing.sorted_slots[first + column];
}

// A position in a ring of `stages` stages: which stage, and which round of it (its barriers'
// phase parity is round & 1).
struct RingPosition {
  int32_t stage = 0;
  uint32_t round = 0;
  __device__ void advance(int32_t stages) {
    if (++stage == stages) {
      stage = 0;
      ++round;
    }
  }
};

struct GateUpShared {
  DecodeRouting routing;
  float4 partial[2][kGateUpConsumerWarps][32];  // K-slice partials, double-buffered
  uint64_t full[kDecodeGateUpMaxStages];   // the producer's bulk copies landed
  uint64_t empty[kDecodeGateUpMaxStages];  // every consumer thread has read the stage
  // The unit whose gate rows a stage holds (written before the stage's full arrive; -1: no more
  // units, and the stage holds nothing).
  int32_t stage_unit[kDecodeGateUpMaxStages];
  // The producer's lane 0 only: the group of the unit whose up rows a stage holds, until that
  // unit is counted (-1: none), and the round of that fill.
  int32_t up_group[kDecodeGateUpMaxStages];
  uint32_t up_round[kDecodeGateUpMaxStages];
  // The epoch word as loaded: storing it makes the producer wait for the load before it lets
  // down_combine start (whose last CTA to start rewrites the word).
  uint64_t epoch_word;
};

// An atomic add of 1 on scheduling word `word` that counts: retried while the word is stale
// (decode_counted: it landed before CTA 0's stamp, which overwrites it). Returns the count.
// `old` is the first attempt's result when the caller issued it early to hide its latency.
__device__ int64_t count_on(uint64_t* word, uint32_t epoch, uint64_t old) {
  int64_t counted = decode_counted(old, epoch);
  while (counted < 0) {
    __nanosleep(256);
    counted = decode_counted(ptx::atomic_add_acq_rel(word, 1), epoch);
  }
  return counted;
}

// gate_up counts each finished unit on its group, which down_combine polls. The producer warp's
// lane 0 does it, not the consumers: consumer warp 0 stores a unit's rows and only then arrives
// on the empty barrier of the unit's up stage; when the producer sees that stage free (it waits
// for it anyway, to refill it), the stores happened before (mbarrier release / acquire at CTA
// scope), and its GPU-scope fence then orders them before the count for every reader (the fence
// is cumulative: CUTLASS's semaphore publishes after a CTA barrier the same way). Fencing in
// consumer warp 0 right after its stores stalled it, and through the named barrier the whole
// CTA, for every unit (qwen3-30b-a3b T = 1: 1.5 us of the layer). An add's result is looked at
// when the next add goes out (stale only before CTA 0's stamp has landed: added again then).
struct UnitCounter {
  uint64_t* in_flight = nullptr;
  uint64_t result = 0;

  __device__ void count(const DecodeLayerArgs& args, uint32_t epoch, int32_t group) {
    ptx::fence_acq_rel_gpu();
    settle(epoch);
    in_flight = args.sync + decode_group_word(group);
    result = ptx::atomic_add_relaxed(in_flight, 1);
  }
  __device__ void settle(uint32_t epoch) {
    if (in_flight != nullptr) count_on(in_flight, epoch, result);
    in_flight = nullptr;
  }
};

// gate_up's producer warp: fills the ring with units' gate and up rows, takes units by ticket,
// and counts finished units on their groups (UnitCounter). Lane r < 8 copies row r of a half.
// kHandOver false: units by CTA index, nothing counted (DecodeLayerArgs::hand_over).
template <bool kHandOver>
struct GateUpProducer {
  GateUpShared& shared;
  const DecodeLayerArgs& args;
  uint32_t ring;
  int32_t stages;
  uint32_t epoch = 0;  // set before anything is counted
  RingPosition at;
  UnitCounter counter;

  // Waits until the stage at `at` is free. Each copying lane sees it free itself (and, being
  // counted by the stage's next full barrier through its copy, cannot be lapped while it waits).
  // A stage that held a unit's up rows frees only after that unit's rows are stored: lane 0
  // then counts the unit.
  __device__ void wait_free() {
    const int lane = threadIdx.x % 32;
    if (lane < kDecodeFeaturesPerUnit && at.round > 0) {
      ptx::mbarrier_wait_parity(&shared.empty[at.stage], (at.round - 1) & 1);
    }
    if constexpr (kHandOver) {
      if (lane == 0 && shared.up_group[at.stage] >= 0) {
        counter.count(args, epoch, shared.up_group[at.stage]);
        shared.up_group[at.stage] = -1;
      }
    }
  }

  // Copies unit `unit` (expert `expert`, group `group`): its 8 gate rows into the stage at `at`
  // (waited free by the caller) and its 8 up rows into the next, one bulk copy per row.
  __device__ void issue_unit(int32_t unit, int32_t expert, int32_t group, int32_t feature_block) {
    const int lane = threadIdx.x % 32;
    const int32_t hidden = args.hidden;
    const int32_t intermediate = args.intermediate;
    const uint32_t row_bytes =
        static_cast<uint32_t>(decode_prefetch_row_bytes(hidden / kDecodeStepK));
    const uint32_t stage_bytes = static_cast<uint32_t>(decode_gate_up_stage_bytes(hidden));
    const uint32_t copy_bytes = static_cast<uint32_t>(hidden) * 2;
    for (int32_t half = 0; half < 2; ++half) {  // gate rows, then up rows
      if (half == 1) wait_free();
      if (lane == 0) {
        if (half == 0) shared.stage_unit[at.stage] = unit;  // published by the arrive below
        if (half == 1 && kHandOver) {
          shared.up_group[at.stage] = group;
          shared.up_round[at.stage] = at.round;
        }
        ptx::mbarrier_arrive_expect_tx(&shared.full[at.stage],
                                       kDecodeFeaturesPerUnit * copy_bytes);
      }
      __syncwarp();
      if (lane < kDecodeFeaturesPerUnit) {
        const int64_t row = static_cast<int64_t>(expert) * 2 * intermediate +
                            half * intermediate + feature_block * kDecodeFeaturesPerUnit + lane;
        // Read once: evict-first keeps L2 for down_combine's w2 rows pulled in beside it.
        ptx::bulk_load_global_to_shared_hinted(ring + at.stage * stage_bytes + lane * row_bytes,
                                               args.w13 + row * hidden, copy_bytes,
                                               ptx::smem_address(&shared.full[at.stage]),
                                               ptx::l2_policy_evict_first());
      }
      at.advance(stages);
    }
  }

  // Before the CTA has sorted the routing: when every slot fits the warp, finds the round-0 unit's
  // expert from the ids alone (decode_opens_group) and issues that unit. Returns whether it did.
  __device__ bool issue_first_unit() {
    const int lane = threadIdx.x % 32;
    const int32_t num_slots = args.num_tokens * args.top_k;
    if (num_slots > kDecodeEarlyStartSlots) return false;
    const int32_t id = lane < num_slots ? __ldg(args.topk_ids + lane) : -1;
    auto id_of = [&](int32_t m) { return __shfl_sync(0xffffffffu, id, m); };
    // Every lane runs both functions (their shuffles need the whole warp); lanes past the slots
    // hold -1, which opens nothing.
    const bool opens = decode_opens_group(id_of, num_slots, args.num_experts, lane);
    auto opens_of = [&](int32_t m) { return __shfl_sync(0xffffffffu, opens ? 1 : 0, m) != 0; };
    const int32_t group = decode_group_of_opener(id_of, opens_of, num_slots, lane);
    const DecodeUnit work =
        decode_gate_up_unit(blockIdx.x, args.intermediate / kDecodeFeaturesPerUnit);
    const uint32_t opener = __ballot_sync(0xffffffffu, opens && group == work.group);
    if (opener == 0) return false;  // fewer groups than this CTA's first unit needs
    const int32_t expert = __shfl_sync(0xffffffffu, id, __ffs(opener) - 1);
    wait_free();
    issue_unit(static_cast<int32_t>(blockIdx.x), expert, work.group, work.feature_block);
    return true;
  }

  // Once the routing is sorted: the round-0 unit (the CTA index) unless issued early, then
  // units by ticket (decode_plan.h) until they run out, the end mark, and the last counts.
  __device__ void produce(bool first_issued) {
    const int lane = threadIdx.x % 32;
    const int32_t feature_blocks = args.intermediate / kDecodeFeaturesPerUnit;
    const int32_t units = shared.routing.num_groups * feature_blocks;
    uint64_t* const ticket_word = args.sync + kDecodeSyncTicketWord;
    // The unit to issue next; -1: none (issued early, or this CTA has no round-0 unit).
    int32_t unit = !first_issued && static_cast<int32_t>(blockIdx.x) < units
                       ? static_cast<int32_t>(blockIdx.x)
                       : -1;
    int32_t static_unit = static_cast<int32_t>(blockIdx.x);  // without hand-over
    for (;;) {
      if (unit >= 0) {
        const DecodeUnit work = decode_gate_up_unit(unit, feature_blocks);
        wait_free();
        issue_unit(unit, shared.routing.group_expert[work.group], work.group,
                   work.feature_block);
      }
      if (!kHandOver) {  // units by CTA index
        static_unit += static_cast<int32_t>(gridDim.x);
        unit = static_unit;
        if (unit >= units) break;
        continue;
      }
      // The next ticket's add goes out once this unit's copies are on their way (a CTA holds no
      // ticket it cannot use yet); its value is needed only after the wait for the next stage.
      uint64_t ticket = 0;
      if (lane == 0) ticket = ptx::atomic_add_relaxed(ticket_word, 1);
      wait_free();
      if (lane == 0) {
        unit = decode_ticket_unit(count_on(ticket_word, epoch, ticket),
                                  static_cast<int32_t>(gridDim.x));
      }
      unit = __shfl_sync(0xffffffffu, unit, 0);
      if (unit >= units) break;
    }
    // End mark: the stage at `at` holds no unit (with the hand-over the loop's last wait_free
    // already saw it free).
    if constexpr (!kHandOver) wait_free();
    if (lane == 0) {
      shared.stage_unit[at.stage] = -1;
      ptx::mbarrier_arrive(&shared.full[at.stage]);
      if constexpr (kHandOver) {
        // The units whose up stages were not refilled: wait for their stores, count them.
        for (int32_t stage = 0; stage < stages; ++stage) {
          if (shared.up_group[stage] < 0) continue;
          ptx::mbarrier_wait_parity(&shared.empty[stage], shared.up_round[stage] & 1);
          counter.count(args, epoch, shared.up_group[stage]);
          shared.up_group[stage] = -1;
        }
        counter.settle(epoch);
      }
    }
  }
};

template <bool kHandOver>
__global__ void __launch_bounds__(kGateUpThreads, 2)  // <= 128 registers
    decode_gate_up_kernel(DecodeLayerArgs args, int32_t stages) {
  __shared__ GateUpShared shared;
  extern __shared__ __align__(128) unsigned char ring_memory[];
  DecodeRouting& routing = shared.routing;
  const uint32_t ring = ptx::smem_address(ring_memory);
  const int warp = threadIdx.x / 32;
  const bool producer = warp == kGateUpProducerWarp;
  // The producer warp initialises the barriers it uses before build_routing's barriers; the
  // consumers first touch them after.
  if (producer && threadIdx.x % 32 == 0) {
    for (int32_t s = 0; s < stages; ++s) {
      ptx::mbarrier_init(&shared.full[s], 1);
      ptx::mbarrier_init(&shared.empty[s], kGateUpConsumerThreads);  // every consumer reads it
      shared.up_group[s] = -1;
    }
    ptx::fence_mbarrier_init();
  }
  __syncwarp();
  // topk_ids may come from the kernel before this one: wait, then let down_combine start (it
  // reads inputs early, which is safe once this wait has returned).
  ptx::wait_for_previous_grid();
  GateUpProducer<kHandOver> producing{shared, args, ring, stages};
  bool first_issued = false;
  if (!kHandOver) {
    // No scheduling words: down_combine may start at once, and waits for this grid to end.
    ptx::allow_next_grid_launch();
    if (producer) first_issued = producing.issue_first_unit();
  } else if (producer) {
    // The scheduling words (decode_plan.h): this launch's epoch (its load's latency hidden
    // behind the first unit's issue, which counts nothing), and CTA 0 stamps every counter
    // before anything is counted on it in this launch.
    const uint64_t epoch_word = ptx::load_relaxed(args.sync + kDecodeSyncEpochWord);
    first_issued = producing.issue_first_unit();
    producing.epoch = decode_launch_epoch(epoch_word);
    if (threadIdx.x % 32 == 0) shared.epoch_word = epoch_word;
    if (blockIdx.x == 0) {
      for (int32_t i = static_cast<int32_t>(threadIdx.x % 32); i < kDecodeSyncCounterLines;
           i += 32) {
        ptx::store_relaxed(args.sync + decode_counter_word(i), decode_stamp(producing.epoch, 0));
      }
    }
    // Only this warp lets down_combine start (a CTA's first launch_dependents counts), and only
    // after the shared-memory store above has waited for the epoch load.
    __syncwarp();
    ptx::allow_next_grid_launch();
  }
  build_routing(routing, args, blockIdx.x == 0);  // its barriers also publish the mbarriers

  if (producer) {
    producing.produce(first_issued);
    return;  // the consumers wait for every copy it issued
  }

  const int lane = threadIdx.x % 32;
  const int32_t hidden = args.hidden;
  const int32_t intermediate = args.intermediate;
  const int32_t feature_blocks = intermediate / kDecodeFeaturesPerUnit;
  const StepRange slice = decode_step_slice(hidden / kDecodeStepK, kGateUpConsumerWarps, warp);
  const int32_t k_offset = slice.begin * kDecodeStepK + decode_lane_k_offset(lane);
  const uint32_t row_bytes =
      static_cast<uint32_t>(decode_prefetch_row_bytes(hidden / kDecodeStepK));
  const uint32_t stage_bytes = static_cast<uint32_t>(decode_gate_up_stage_bytes(hidden));
  // This lane's MMA rows g (gate) and g + 8 (up) at its first element of the warp's K slice.
  const uint32_t lane_offset = static_cast<uint32_t>(lane / 4) * row_bytes + 2u * k_offset;
  RingPosition at;
  int32_t buffer = 0;

  for (;;) {
    const RingPosition gate_at = at;
    at.advance(stages);
    const RingPosition up_at = at;
    at.advance(stages);
    ptx::mbarrier_wait_parity(&shared.full[gate_at.stage], gate_at.round & 1);
    const int32_t unit = shared.stage_unit[gate_at.stage];
    if (unit < 0) break;  // the producer's end mark
    const DecodeUnit work = decode_gate_up_unit(unit, feature_blocks);
    const int32_t first = routing.group_first[work.group];
    const int32_t rows = routing.group_first[work.group + 1] - first;
    const int32_t feature = work.feature_block * kDecodeFeaturesPerUnit + lane / 4;
    ptx::mbarrier_wait_parity(&shared.full[up_at.stage], up_at.round & 1);
    const SharedRows weights{ring + gate_at.stage * stage_bytes + lane_offset,
                             ring + up_at.stage * stage_bytes + lane_offset};
    for (int32_t column0 = 0; column0 < rows; column0 += kDecodeTokenColumns) {
      const int32_t slot = lane_slot(routing, first, rows, column0, lane);
      const bf16* token =
          args.hidden_states + (slot / args.top_k) * args.hidden_row_stride + k_offset;
      float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
      accumulate<kGateUpStepsPerBatch, InputTokens>(acc, weights, token, slice.end - slice.begin);
      if (column0 + kDecodeTokenColumns >= rows) {  // this thread's last read of these stages
        ptx::mbarrier_arrive(&shared.empty[gate_at.stage]);
        // With hand-over, warp 0 frees the up stage only once it has stored the unit's rows
        // (below): the producer counts the unit when it sees that stage free (UnitCounter).
        if (warp != 0 || !kHandOver) ptx::mbarrier_arrive(&shared.empty[up_at.stage]);
      }
      // Partials in two buffers: a warp writes buffer b again only after the next barrier,
      // which warp 0 passes only once it has summed buffer b.
      shared.partial[buffer][warp][lane] = make_float4(acc[0], acc[1], acc[2], acc[3]);
      ptx::named_barrier_sync(kConsumerBarrier, kGateUpConsumerThreads);
      if (warp == 0) {
        float4 sum = shared.partial[buffer][0][lane];
        for (int w = 1; w < kGateUpConsumerWarps; ++w) {  // fixed order: deterministic
          const float4 part = shared.partial[buffer][w][lane];
          sum.x += part.x;
          sum.y += part.y;
          sum.z += part.z;
          sum.w += part.w;
        }
        // Row g = gate, row g + 8 = up of `feature`; columns 2t and 2t + 1.
        const float gate_values[2] = {sum.x, sum.y};
        const float up_values[2] = {sum.z, sum.w};
#pragma unroll
        for (int j = 0; j < 2; ++j) {
          const int32_t column = column0 + 2 * (lane % 4) + j;
          if (column < rows) {
            const int32_t out_slot = routing.sorted_slots[first + column];
            reinterpret_cast<__nv_bfloat16*>(
                args.intermediate_out)[static_cast<int64_t>(out_slot) * intermediate + feature] =
                __float2bfloat16_rn(silu_times(gate_values[j], up_values[j]));
          }
        }
      }
      buffer ^= 1;
    }
    if (warp == 0 && kHandOver) ptx::mbarrier_arrive(&shared.empty[up_at.stage]);
  }
}

struct DownShared {
  DecodeRouting routing;
  float4 partial[kDecodeWarps][32];                        // K-slice partials, task-indexed
  __nv_bfloat16 results[kDecodeMaxSlots][kDecodeWeightRows];  // weighted slot rows, bf16
  int32_t task_offset[kDecodeMaxSlots];                      // bytes into the prefetch buffer
  uint64_t weights_ready;
  int32_t prefetched_tasks;  // tasks [0, prefetched_tasks) are in shared memory
};

template <bool kHandOver>
__global__ void __launch_bounds__(kDecodeThreads, 2)
    decode_down_combine_kernel(DecodeLayerArgs args, int32_t prefetch_bytes) {
  __shared__ DownShared shared;
  extern __shared__ __align__(128) unsigned char prefetch[];
  DecodeRouting& routing = shared.routing;
  build_routing(routing, args, false);  // inputs only: safe before the wait (gate_up waited)

  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  const int32_t hidden = args.hidden;
  const int32_t intermediate = args.intermediate;
  const int32_t steps = intermediate / kDecodeStepK;
  const int32_t num_groups = routing.num_groups;
  // K slices share a partial buffer of one mma's columns per task, so a wide group runs whole.
  const int32_t slices = routing.wide_group ? 1 : decode_down_slices(num_groups, steps);
  const int32_t tasks = num_groups * slices;
  const int32_t row0 = blockIdx.x * kDecodeWeightRows;

  // This launch's epoch (decode_plan.h; hand-over mode only); see below for who writes it back.
  const uint32_t epoch =
      kHandOver ? decode_launch_epoch(ptx::load_relaxed(args.sync + kDecodeSyncEpochWord)) : 0;

  // Task t = (group t / slices, K slice t % slices). The first tasks whose rows fit are copied
  // into shared memory now, while gate_up still streams. (With groups handed over, the first
  // groups are also the first done; copying the last ones instead measured the same, session
  // 14.)
  if (warp == 0) {
    if (lane == 0) {
      int32_t offset = 0;   // shared-memory bytes taken, pads included
      int32_t copied = 0;   // bytes the copies deliver: what the barrier must expect
      int32_t fitted = 0;
      for (; fitted < tasks; ++fitted) {
        const StepRange range = decode_step_slice(steps, slices, fitted % slices);
        const int32_t row_steps = range.end - range.begin;
        const int32_t bytes = kDecodeWeightRows * decode_prefetch_row_bytes(row_steps);
        if (offset + bytes > prefetch_bytes) break;
        shared.task_offset[fitted] = offset;
        offset += bytes;
        copied += kDecodeWeightRows * row_steps * kDecodeStepK * 2;
      }
      shared.prefetched_tasks = fitted;
      ptx::mbarrier_init(&shared.weights_ready, 1);
      ptx::fence_mbarrier_init();
      ptx::mbarrier_arrive_expect_tx(&shared.weights_ready, static_cast<uint32_t>(copied));
    }
    __syncwarp();
    const int32_t fitted = shared.prefetched_tasks;
    // Row `row` of task `task` in w2: its first element, its K steps and its bytes.
    struct TaskRow {
      const bf16* source;
      int32_t steps;
      uint32_t bytes;
    };
    auto task_row = [&](int32_t task, int32_t row) {
      const StepRange range = decode_step_slice(steps, slices, task % slices);
      const int32_t expert = routing.group_expert[task / slices];
      return TaskRow{args.w2 + (static_cast<int64_t>(expert) * hidden + row0 + row) * intermediate +
                         range.begin * kDecodeStepK,
                     range.end - range.begin,
                     static_cast<uint32_t>((range.end - range.begin) * kDecodeStepK * 2)};
    };
    // The rows that do not fit are pulled into L2 when all CTAs' together (about: slices differ
    // by at most a step) fit the budget (kDecodeL2RestMaxBytes), so that after the wait they
    // come from there.
    const int64_t rest =
        int64_t{tasks - fitted} * kDecodeWeightRows * task_row(0, 0).bytes * gridDim.x;
    if (rest <= kDecodeL2RestMaxBytes) {
      const uint64_t policy = ptx::l2_policy_evict_last();
      for (int32_t i = fitted * kDecodeWeightRows + lane; i < tasks * kDecodeWeightRows; i += 32) {
        const TaskRow rest_row = task_row(i / kDecodeWeightRows, i % kDecodeWeightRows);
        ptx::bulk_prefetch_global_to_l2(rest_row.source, rest_row.bytes, policy);
      }
    }
    for (int32_t i = lane; i < fitted * kDecodeWeightRows; i += 32) {
      const int32_t task = i / kDecodeWeightRows;
      const int32_t row = i % kDecodeWeightRows;
      const TaskRow copy = task_row(task, row);
      const int32_t row_bytes = decode_prefetch_row_bytes(copy.steps);
      ptx::bulk_load_global_to_shared(
          ptx::smem_address(prefetch + shared.task_offset[task] + row * row_bytes), copy.source,
          copy.bytes, ptx::smem_address(&shared.weights_ready));
    }
  }
  __syncthreads();
  // Every gate_up CTA read the epoch word before this grid could start, and every thread of
  // this grid read it above (the barrier orders those loads before the count, the acq_rel add
  // orders every CTA's count before the last one's store): the last CTA to count itself started
  // leaves the epoch for the next launch, while gate_up still streams (counting CTAs finished
  // at the end instead put an atomic round trip on the layer's tail).
  if (kHandOver && threadIdx.x == 0) {
    uint64_t* const started_word = args.sync + kDecodeSyncStartedWord;
    const int64_t started =
        count_on(started_word, epoch, ptx::atomic_add_acq_rel(started_word, 1));
    if (started == static_cast<int64_t>(gridDim.x) - 1) {
      ptx::store_relaxed(args.sync + kDecodeSyncEpochWord, epoch);
    }
  }
  // Without hand-over, all of gate_up's rows are complete and visible after this wait.
  if (!kHandOver) ptx::wait_for_previous_grid();

  const int g = lane / 4;
  auto finish = [&](const float (&acc)[4], int32_t group, int32_t column0) {
    const int32_t first = routing.group_first[group];
    const int32_t rows = routing.group_first[group + 1] - first;
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      const int32_t column = column0 + 2 * (lane % 4) + j;
      if (column < rows) {
        const int32_t slot = routing.sorted_slots[first + column];
        const float weight = __ldg(args.topk_weights + slot);
        shared.results[slot][g] = __float2bfloat16_rn(acc[j] * weight);
        shared.results[slot][g + 8] = __float2bfloat16_rn(acc[2 + j] * weight);
      }
    }
  };

  for (int32_t task = warp; task < tasks; task += kDecodeWarps) {
    const int32_t group = task / slices;
    const StepRange range = decode_step_slice(steps, slices, task % slices);
    const int32_t expert = routing.group_expert[group];
    const int32_t first = routing.group_first[group];
    const int32_t rows = routing.group_first[group + 1] - first;
    const int32_t k_offset = range.begin * kDecodeStepK + decode_lane_k_offset(lane);
    // gate_up counts each unit on its group after storing its rows: once all of the group's
    // units are counted, its intermediate rows are complete. Lane 0 polls (one poller per warp,
    // backing off, on a line of the group's own) and the warp barrier passes its acquire on to
    // the other lanes (causality order is transitive through the barrier, as in CUTLASS's
    // semaphore: one thread spins, a barrier, then all read).
    if constexpr (kHandOver) {
      const uint64_t group_done =
          decode_stamp(epoch, static_cast<uint32_t>(intermediate / kDecodeFeaturesPerUnit));
      const uint64_t* const group_word = args.sync + decode_group_word(group);
      if (lane == 0) {
        while (ptx::load_acquire(group_word) != group_done) __nanosleep(256);
      }
      __syncwarp();  // orders the lanes' loads after lane 0's acquire
    }
    for (int32_t column0 = 0; column0 < rows; column0 += kDecodeTokenColumns) {
      const int32_t slot = lane_slot(routing, first, rows, column0, lane);
      const bf16* token = args.intermediate_out + static_cast<int64_t>(slot) * intermediate +
                          k_offset;
      float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
      if (task < shared.prefetched_tasks) {
        ptx::mbarrier_wait_parity(&shared.weights_ready, 0);
        const int32_t row_bytes = decode_prefetch_row_bytes(range.end - range.begin);
        const uint32_t low = ptx::smem_address(prefetch + shared.task_offset[task] +
                                               g * row_bytes) +
                             2 * decode_lane_k_offset(lane);
        const SharedRows rows{low, low + 8u * row_bytes};
        if constexpr (kHandOver) {
          accumulate<kStepsPerBatch, HandedOverTokens>(acc, rows, token, range.end - range.begin);
        } else {
          accumulate<kStepsPerBatch, InputTokens>(acc, rows, token, range.end - range.begin);
        }
      } else {
        const bf16* low =
            args.w2 + (static_cast<int64_t>(expert) * hidden + row0 + g) * intermediate + k_offset;
        const GlobalRows rows{low, low + 8 * static_cast<int64_t>(intermediate)};
        if constexpr (kHandOver) {
          accumulate<kStepsPerBatch, HandedOverTokens>(acc, rows, token, range.end - range.begin);
        } else {
          accumulate<kStepsPerBatch, InputTokens>(acc, rows, token, range.end - range.begin);
        }
      }
      if (slices == 1) {
        finish(acc, group, column0);
      } else {
        shared.partial[task][lane] = make_float4(acc[0], acc[1], acc[2], acc[3]);
      }
    }
  }
  if (slices > 1) {
    __syncthreads();
    if (warp < num_groups) {  // the slices of group `warp`, summed in slice order
      float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
      for (int32_t s = 0; s < slices; ++s) {
        const float4 part = shared.partial[warp * slices + s][lane];
        acc[0] += part.x;
        acc[1] += part.y;
        acc[2] += part.z;
        acc[3] += part.w;
      }
      finish(acc, warp, 0);
    }
  }
  // No CTA exits with bulk copies in flight: task 0, the first prefetched, is warp 0's, which
  // waited for all of them.
  __syncthreads();

  // out[t][row0 + r] = sum over j ascending of the slot rows, skipping slots routed nowhere:
  // the general path's combine (combine.cu) on the same bf16 values.
  const int32_t top_k = args.top_k;
  for (int32_t i = threadIdx.x; i < args.num_tokens * kDecodeWeightRows; i += kDecodeThreads) {
    const int32_t token = i / kDecodeWeightRows;
    const int32_t r = i % kDecodeWeightRows;
    float sum = 0.0f;
    for (int32_t j = 0; j < top_k; ++j) {
      const int32_t slot = token * top_k + j;
      if (static_cast<uint32_t>(routing.ids[slot]) < static_cast<uint32_t>(args.num_experts)) {
        sum += __bfloat162float(shared.results[slot][r]);
      }
    }
    reinterpret_cast<__nv_bfloat16*>(args.out)[token * args.out_row_stride + row0 + r] =
        __float2bfloat16_rn(sum);
  }
  // With the hand-over, the rule of grid_dependency.h, kept late: everything read from gate_up
  // above was handed over by the group counts, and waiting here keeps "this grid done => the
  // chain before it done" for whatever the stream runs next. (Without, it waited before the
  // tasks.)
  if constexpr (kHandOver) ptx::wait_for_previous_grid();
}

// Per device, queried once: what the launch needs to split an SM's shared memory between a
// gate_up CTA (its ring) and a down_combine CTA (its prefetch).
struct DecodeDeviceLimits {
  int64_t per_sm = 0;            // shared memory per SM
  int64_t per_block = 0;         // opt-in maximum per CTA
  int64_t gate_up_static = 0;    // static shared memory of each kernel
  int64_t down_static = 0;
  cudaError_t error = cudaSuccess;
};

DecodeDeviceLimits decode_device_limits() {
  static std::mutex mutex;
  static DecodeDeviceLimits cached[64];
  static bool known[64] = {};
  int device = 0;
  DecodeDeviceLimits limits;
  if ((limits.error = cudaGetDevice(&device)) != cudaSuccess) return limits;
  std::lock_guard<std::mutex> lock(mutex);
  if (device < 64 && known[device]) return cached[device];
  // Both instantiations of each kernel (with and without the hand-over): the larger static
  // shared memory of the two sets the split.
  const void* const gate_up_kernels[2] = {
      reinterpret_cast<const void*>(&decode_gate_up_kernel<false>),
      reinterpret_cast<const void*>(&decode_gate_up_kernel<true>)};
  const void* const down_kernels[2] = {
      reinterpret_cast<const void*>(&decode_down_combine_kernel<false>),
      reinterpret_cast<const void*>(&decode_down_combine_kernel<true>)};
  int per_sm = 0, per_block = 0;
  for (int mode = 0; mode < 2; ++mode) {
    cudaFuncAttributes gate_up{}, down{};
    if ((limits.error = cudaFuncGetAttributes(&gate_up, gate_up_kernels[mode])) != cudaSuccess ||
        (limits.error = cudaFuncGetAttributes(&down, down_kernels[mode])) != cudaSuccess) {
      return limits;
    }
    limits.gate_up_static =
        std::max(limits.gate_up_static, static_cast<int64_t>(gate_up.sharedSizeBytes));
    limits.down_static = std::max(limits.down_static, static_cast<int64_t>(down.sharedSizeBytes));
  }
  if ((limits.error = cudaDeviceGetAttribute(
           &per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, device)) != cudaSuccess ||
      (limits.error = cudaDeviceGetAttribute(&per_block, cudaDevAttrMaxSharedMemoryPerBlockOptin,
                                             device)) != cudaSuccess) {
    return limits;
  }
  limits.per_sm = per_sm;
  limits.per_block = per_block;
  // Both kernels ask for the largest shared-memory carve-out, so an SM running gate_up already
  // has room for a down_combine CTA.
  for (int mode = 0; mode < 2; ++mode) {
    if ((limits.error = cudaFuncSetAttribute(
             gate_up_kernels[mode], cudaFuncAttributeMaxDynamicSharedMemorySize,
             static_cast<int>(std::min<int64_t>(kDecodeGateUpMaxRingBytes,
                                                limits.per_block - limits.gate_up_static)))) !=
            cudaSuccess ||
        (limits.error = cudaFuncSetAttribute(
             down_kernels[mode], cudaFuncAttributeMaxDynamicSharedMemorySize,
             static_cast<int>(limits.per_block - limits.down_static))) != cudaSuccess ||
        (limits.error = cudaFuncSetAttribute(down_kernels[mode],
                                             cudaFuncAttributePreferredSharedMemoryCarveout,
                                             100)) != cudaSuccess ||
        (limits.error = cudaFuncSetAttribute(gate_up_kernels[mode],
                                             cudaFuncAttributePreferredSharedMemoryCarveout,
                                             100)) != cudaSuccess) {
      return limits;
    }
  }
  if (device < 64) {
    cached[device] = limits;
    known[device] = true;
  }
  return limits;
}

// down_combine's prefetch: what an SM has left beside one gate_up CTA with its ring, capped by
// what the most active down_combine CTA could use (every slot its own expert, one slice each).
// Example (H100, qwen3-30b-a3b T = 1, static sizes of the nvcc 13.0 build at 52742ed):
// 233472 - (12672 static + 99840 ring + 1024) - (18560 static + 1024) = 100352 bytes: 3 of its 8
// experts' tasks of 16 x 1600 = 25600 bytes. (Session 9 fitted 4 and measured 3 as ~3% slower;
// the static sizes have grown since. Session 14 made room for 4 again by keeping DecodeRouting's
// slots and ids in 16 bits: 1.000x over T = 1..16, bench/results/h100-2026-11-23c-ab-decode-
// prefetch-4-tasks.json, so not kept.)
int32_t decode_prefetch_bytes(const DecodeDeviceLimits& limits, const DecodeLayerArgs& args,
                              int64_t ring_bytes) {
  const int64_t most_groups = std::min(args.num_tokens * args.top_k, args.num_experts);
  const int64_t wanted = most_groups * kDecodeWeightRows *
                         decode_prefetch_row_bytes(args.intermediate / kDecodeStepK);
  int64_t left = limits.per_sm -
                 (limits.gate_up_static + ring_bytes + kSharedMemoryReservedPerCta) -
                 (limits.down_static + kSharedMemoryReservedPerCta);
  left = std::min<int64_t>({left, limits.per_block - limits.down_static, wanted});
  return static_cast<int32_t>(std::max<int64_t>(0, left) / 128 * 128);
}

}  // namespace

bool decode_path_fits(int32_t num_tokens, int32_t top_k, int32_t hidden) {
  return num_tokens >= 1 && top_k >= 1 &&
         static_cast<int64_t>(num_tokens) * top_k <= kDecodeMaxSlots &&
         decode_gate_up_stages(hidden, num_tokens) >= 2;
}

Status launch_decode_layer(const DecodeLayerArgs& args, cudaStream_t stream) {
  if (!decode_path_fits(args.num_tokens, args.top_k, args.hidden)) {
    return {ErrorCode::kInternal, "decode path called with T = " + std::to_string(args.num_tokens) +
                                      ", k = " + std::to_string(args.top_k) + ", H = " +
                                      std::to_string(args.hidden) + " (at most " +
                                      std::to_string(kDecodeMaxSlots) +
                                      " slots, two ring stages of 8 rows of H)"};
  }
  const DecodeDeviceLimits limits = decode_device_limits();
  RAMP_CUDA_TRY(limits.error);
  const int32_t stages = decode_gate_up_stages(args.hidden, args.num_tokens);
  const int64_t ring_bytes = int64_t{stages} * decode_gate_up_stage_bytes(args.hidden);
  const int32_t prefetch_bytes = decode_prefetch_bytes(limits, args, ring_bytes);

  cudaLaunchConfig_t gate_up{};
  gate_up.gridDim = dim3(static_cast<unsigned>(std::max(args.num_sms, 1)));
  gate_up.blockDim = dim3(kGateUpThreads);
  gate_up.dynamicSmemBytes = static_cast<size_t>(ring_bytes);
  gate_up.stream = stream;
  // The one place the hand-over becomes a template parameter.
  RAMP_CUDA_TRY(args.hand_over
                    ? cudaLaunchKernelEx(&gate_up, decode_gate_up_kernel<true>, args, stages)
                    : cudaLaunchKernelEx(&gate_up, decode_gate_up_kernel<false>, args, stages));

  cudaLaunchConfig_t down{};
  down.gridDim = dim3(static_cast<unsigned>(args.hidden / kDecodeWeightRows));
  down.blockDim = dim3(kDecodeThreads);
  down.dynamicSmemBytes = static_cast<size_t>(prefetch_bytes);
  down.stream = stream;
  cudaLaunchAttribute overlap{};
  overlap.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  overlap.val.programmaticStreamSerializationAllowed = 1;
  down.attrs = &overlap;
  down.numAttrs = 1;
  RAMP_CUDA_TRY(
      args.hand_over
          ? cudaLaunchKernelEx(&down, decode_down_combine_kernel<true>, args, prefetch_bytes)
          : cudaLaunchKernelEx(&down, decode_down_combine_kernel<false>, args, prefetch_bytes));
  return Status::ok();
}

}  // namespace ramp::cuda
