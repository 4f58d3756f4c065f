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
#include "cuda/ptx/grid_dependency.h"
#include "cuda/ptx/load_global.h"
#include "cuda/ptx/mbarrier.h"
#include "cuda/ptx/mma_sync.h"
#include "cuda/silu.cuh"

namespace ramp::cuda {

namespace {

// gate_up: two CTAs per SM (16 warps), each warp with kStepsPerBatch x 1 KB of weights in
// flight, at up to 128 registers. Measured on the H100 (session 8, bench/results/
// h100-2026-11-22m-decode-variants.json, layer time at T = 1/4/8 over the 7 models): batches of
// 8 steps beat batches of 4 by 4-13%; 3 or 4 CTAs per SM (64 registers, batches of 2-4) were
// 1-8% slower than 2: with ~8 MB of loads already queued over the GPU, more only lengthen the
// queue (ncu: gate_up reads exactly its weight bytes at 64% of DRAM peak; why not more is open).
// With the register file full, down_combine's CTAs start as gate_up's exit, and their
// shared-memory prefetch overlaps gate_up's tail only (without it: the same time, in v0).
constexpr int kGateUpCtasPerSm = 2;
constexpr int kStepsPerBatch = 8;
constexpr int32_t kSharedMemoryReservedPerCta = 1024;  // sm_90 reserves 1 KB per resident CTA

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

// acc (rows g, g + 8 x token columns 2t, 2t + 1) += rows . tokens over `steps` K steps. Every
// load of a batch is issued before its first mma, so a warp keeps kStepsPerBatch KB of weights
// in flight (from shared memory the batch only hides its latency).
template <class Rows>
__device__ __forceinline__ void accumulate(float (&acc)[4], const Rows& rows, const bf16* token,
                                           int32_t steps) {
  int32_t step = 0;
  for (; step + kStepsPerBatch <= steps; step += kStepsPerBatch) {
    uint4 low[kStepsPerBatch], high[kStepsPerBatch], tokens[kStepsPerBatch];
#pragma unroll
    for (int b = 0; b < kStepsPerBatch; ++b) {
      low[b] = rows.load_low(step + b);
      high[b] = rows.load_high(step + b);
      tokens[b] = ptx::load_cached_16(token + (step + b) * kDecodeStepK);
    }
#pragma unroll
    for (int b = 0; b < kStepsPerBatch; ++b) mma_step(acc, low[b], high[b], tokens[b]);
  }
  for (; step < steps; ++step) {
    mma_step(acc, rows.load_low(step), rows.load_high(step),
             ptx::load_cached_16(token + step * kDecodeStepK));
  }
}

// The token column a lane feeds the mma for columns [column0, column0 + 8) of a group: past the
// group's end it repeats the last real row (valid memory; that column's results are dropped).
__device__ __forceinline__ int32_t lane_slot(const DecodeRouting& routing, int32_t first,
                                             int32_t rows, int32_t column0, int lane) {
  const int32_t column = min(column0 + lane / 4, rows - 1);
  return routing.sorted_slots[first + column];
}

__global__ void __launch_bounds__(kDecodeThreads, kGateUpCtasPerSm)
    decode_gate_up_kernel(DecodeLayerArgs args) {
  __shared__ DecodeRouting routing;
  __shared__ float4 partial[kDecodeWarps][32];
  // topk_ids may come from the kernel before this one: wait, then let down_combine start (it
  // reads inputs early, which is safe once this wait has returned).
  ptx::wait_for_previous_grid();
  ptx::allow_next_grid_launch();
  build_routing(routing, args, blockIdx.x == 0);

  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  const int32_t hidden = args.hidden;
  const int32_t intermediate = args.intermediate;
  const int32_t feature_blocks = intermediate / kDecodeFeaturesPerUnit;
  const int32_t units = routing.num_groups * feature_blocks;
  const StepRange slice = decode_step_slice(hidden / kDecodeStepK, kDecodeWarps, warp);
  const int32_t k_offset = slice.begin * kDecodeStepK + decode_lane_k_offset(lane);

  for (int32_t unit = blockIdx.x; unit < units; unit += gridDim.x) {
    const DecodeUnit work = decode_gate_up_unit(unit, feature_blocks);
    const int32_t expert = routing.group_expert[work.group];
    const int32_t first = routing.group_first[work.group];
    const int32_t rows = routing.group_first[work.group + 1] - first;
    const int32_t feature = work.feature_block * kDecodeFeaturesPerUnit + lane / 4;
    const bf16* gate = args.w13 + (static_cast<int64_t>(expert) * 2 * intermediate + feature) *
                                      hidden + k_offset;
    const GlobalRows weights{gate, gate + static_cast<int64_t>(intermediate) * hidden};
    for (int32_t column0 = 0; column0 < rows; column0 += kDecodeTokenColumns) {
      const int32_t slot = lane_slot(routing, first, rows, column0, lane);
      const bf16* token =
          args.hidden_states + (slot / args.top_k) * args.hidden_row_stride + k_offset;
      float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
      accumulate(acc, weights, token, slice.end - slice.begin);
      partial[warp][lane] = make_float4(acc[0], acc[1], acc[2], acc[3]);
      __syncthreads();
      if (warp == 0) {
        float4 sum = partial[0][lane];
        for (int w = 1; w < kDecodeWarps; ++w) {  // fixed order: deterministic
          const float4 part = partial[w][lane];
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
      __syncthreads();  // partial is rewritten by the next unit
    }
  }
}

struct DownShared {
  DecodeRouting routing;
  float4 partial[kDecodeWarps][32];                        // K-slice partials, task-indexed
  __nv_bfloat16 results[kDecodeMaxSlots][kDecodeWeightRows];  // weighted slot rows, bf16
  int32_t task_offset[kDecodeMaxSlots];                      // bytes into the prefetch buffer
  uint64_t weights_ready;
  int32_t prefetched_tasks;
};

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

  // Task t = (group t / slices, K slice t % slices). The first tasks whose rows fit are copied
  // into shared memory now, while the last gate_up CTAs still run.
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
    for (int32_t i = lane; i < fitted * kDecodeWeightRows; i += 32) {
      const int32_t task = i / kDecodeWeightRows;
      const int32_t row = i % kDecodeWeightRows;
      const StepRange range = decode_step_slice(steps, slices, task % slices);
      const int32_t expert = routing.group_expert[task / slices];
      const bf16* source = args.w2 +
                           (static_cast<int64_t>(expert) * hidden + row0 + row) * intermediate +
                           range.begin * kDecodeStepK;
      const int32_t row_bytes = decode_prefetch_row_bytes(range.end - range.begin);
      ptx::bulk_load_global_to_shared(
          ptx::smem_address(prefetch + shared.task_offset[task] + row * row_bytes), source,
          static_cast<uint32_t>((range.end - range.begin) * kDecodeStepK * 2),
          ptx::smem_address(&shared.weights_ready));
    }
  }
  __syncthreads();
  ptx::wait_for_previous_grid();  // gate_up's intermediate rows are complete and visible

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
        accumulate(acc, SharedRows{low, low + 8u * row_bytes}, token, range.end - range.begin);
      } else {
        const bf16* low =
            args.w2 + (static_cast<int64_t>(expert) * hidden + row0 + g) * intermediate + k_offset;
        accumulate(acc, GlobalRows{low, low + 8 * static_cast<int64_t>(intermediate)}, token,
                   range.end - range.begin);
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
}

struct DecodeLaunchLimits {
  int32_t prefetch_bytes = 0;  // dynamic shared memory of down_combine
  cudaError_t error = cudaSuccess;
};

// Shared memory for down_combine's prefetch: what an SM has left beside kGateUpCtasPerSm gate_up
// CTAs (the most a CTA could get if it shared the SM with them), queried once per device.
// Example (H100: 228 KB per SM, gate_up ~8 KB static, down_combine ~17 KB static):
// 233472 - 2 x (8 + 1) KB - (17 + 1) KB ~ 197 KB.
DecodeLaunchLimits decode_launch_limits() {
  static std::mutex mutex;
  static DecodeLaunchLimits cached[64];
  static bool known[64] = {};
  int device = 0;
  DecodeLaunchLimits limits;
  if ((limits.error = cudaGetDevice(&device)) != cudaSuccess) return limits;
  std::lock_guard<std::mutex> lock(mutex);
  if (device < 64 && known[device]) return cached[device];
  cudaFuncAttributes gate_up{}, down{};
  int per_sm = 0, per_block = 0;
  if ((limits.error = cudaFuncGetAttributes(&gate_up, decode_gate_up_kernel)) != cudaSuccess ||
      (limits.error = cudaFuncGetAttributes(&down, decode_down_combine_kernel)) != cudaSuccess ||
      (limits.error = cudaDeviceGetAttribute(
           &per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, device)) != cudaSuccess ||
      (limits.error = cudaDeviceGetAttribute(&per_block, cudaDevAttrMaxSharedMemoryPerBlockOptin,
                                             device)) != cudaSuccess) {
    return limits;
  }
  const int64_t gate_up_static = static_cast<int64_t>(gate_up.sharedSizeBytes);
  const int64_t down_static = static_cast<int64_t>(down.sharedSizeBytes);
  int64_t left = int64_t{per_sm} - kGateUpCtasPerSm * (gate_up_static + kSharedMemoryReservedPerCta) -
                 (down_static + kSharedMemoryReservedPerCta);
  left = std::min<int64_t>(left, int64_t{per_block} - down_static);
  limits.prefetch_bytes = static_cast<int32_t>(std::max<int64_t>(0, left) / 128 * 128);
  // Both kernels ask for the largest shared-memory carve-out, so an SM running gate_up already
  // has room for a down_combine CTA.
  if ((limits.error = cudaFuncSetAttribute(decode_down_combine_kernel,
                                           cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           limits.prefetch_bytes)) != cudaSuccess ||
      (limits.error = cudaFuncSetAttribute(decode_down_combine_kernel,
                                           cudaFuncAttributePreferredSharedMemoryCarveout,
                                           100)) != cudaSuccess ||
      (limits.error = cudaFuncSetAttribute(decode_gate_up_kernel,
                                           cudaFuncAttributePreferredSharedMemoryCarveout,
                                           100)) != cudaSuccess) {
    return limits;
  }
  if (device < 64) {
    cached[device] = limits;
    known[device] = true;
  }
  return limits;
}

}  // namespace

bool decode_path_fits(int32_t num_tokens, int32_t top_k) {
  return num_tokens >= 1 && top_k >= 1 &&
         static_cast<int64_t>(num_tokens) * top_k <= kDecodeMaxSlots;
}

Status launch_decode_layer(const DecodeLayerArgs& args, cudaStream_t stream) {
  if (!decode_path_fits(args.num_tokens, args.top_k)) {
    return {ErrorCode::kInternal, "decode path called with T = " + std::to_string(args.num_tokens) +
                                      ", k = " + std::to_string(args.top_k) + " (at most " +
                                      std::to_string(kDecodeMaxSlots) + " slots)"};
  }
  const DecodeLaunchLimits limits = decode_launch_limits();
  RAMP_CUDA_TRY(limits.error);
  const int32_t num_slots = args.num_tokens * args.top_k;
  // Shared memory down_combine can use: what its most active CTA could prefetch (every slot its
  // own expert, one slice each), capped by what fits beside gate_up.
  const int64_t most_groups = std::min(num_slots, args.num_experts);
  const int64_t wanted = most_groups * kDecodeWeightRows *
                         decode_prefetch_row_bytes(args.intermediate / kDecodeStepK);
  const int32_t prefetch_bytes =
      static_cast<int32_t>(std::min<int64_t>(wanted, limits.prefetch_bytes));

  cudaLaunchConfig_t gate_up{};
  gate_up.gridDim = dim3(static_cast<unsigned>(kGateUpCtasPerSm * std::max(args.num_sms, 1)));
  gate_up.blockDim = dim3(kDecodeThreads);
  gate_up.stream = stream;
  RAMP_CUDA_TRY(cudaLaunchKernelEx(&gate_up, decode_gate_up_kernel, args));

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
  RAMP_CUDA_TRY(cudaLaunchKernelEx(&down, decode_down_combine_kernel, args, prefetch_bytes));
  return Status::ok();
}

}  // namespace ramp::cuda
