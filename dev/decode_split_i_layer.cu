// Dev prototype: the decode layer (T <= 8) with GEMM2 split along I, checked against an fp64
// reference and timed under CUDA graph replay with cold L2. Not part of the library; it exists
// to learn, in one device call, whether the design of dev/decode_split_i_bench.cu keeps its
// promise once the math is in (kernel_notes.md, session 19).
//
// Kernel 1 (one CTA per SM, 8 consumer warps + 1 producer warp): units (expert group g, 16
// intermediate features f0..f0+15) taken in interleaved order. A unit's stages:
//   0, 1: the 16 gate rows of w13, K halves 0 and 1     (16 bulk copies of H bytes each)
//   2, 3: the 16 up rows, K halves 0 and 1
//   4.. : w2[e][:, f0 : f0 + 16], TMA boxes {16 columns, 256 rows}, 4 boxes a stage
// The consumers split each w13 stage's K over the 8 warps (mma.sync m16n8k16: A = 16 weight
// rows, B = the group's tokens, <= 8 columns), add the warps' sums in warp order, form
// act = bf16(silu(gate) * up), then multiply the w2 stages by act (A = 16 rows of H x the 16
// features, B = act) and store fp32 partials partial[g][f0 / 16][n][h] for the group's tokens n.
// Kernel 2 (programmatic launch): out[t][h] = bf16(sum over j ascending of
// bf16(weight[t][j] * sum over f-blocks ascending of partial)), the contract's rounding.
// Limits of the prototype: H a multiple of 256 (whole w2 boxes), I a multiple of 16, T * k <= 64
// (at most 8 tokens per expert), ids assumed valid.
// Build: nvcc -std=c++17 -O3 -gencode arch=compute_90a,code=sm_90a -Isrc \
//          dev/decode_split_i_layer.cu -o decode_split_i_layer
#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "dev_cuda_check.h"
#include "dev_timing.h"
#include "core/decode_plan.h"
#include "cuda/ptx/bulk_copy.h"
#include "cuda/ptx/grid_dependency.h"
#include "cuda/ptx/mbarrier.h"
#include "cuda/ptx/mma_sync.h"
#include "cuda/ptx/named_barrier.h"
#include "cuda/ptx/tma.h"

namespace {

using namespace ramp::cuda;

constexpr int kConsumerWarps = 8;
constexpr int kThreads = (kConsumerWarps + 1) * 32;
constexpr int kMaxSlots = 64;
constexpr int kTokenColumns = 8;   // mma N: tokens of a group
constexpr int kFeatures = 16;      // intermediate features per unit
constexpr int kBoxRows = 256;      // rows of H per w2 column box
constexpr int kBoxBytes = kBoxRows * kFeatures * 2;
constexpr int kBoxesPerStage = 4;
constexpr int kMaxStages = 8;
constexpr uint32_t kConsumerBarrier = 1;

struct Args {
  const __nv_bfloat16* hidden;  // [T, H]
  const __nv_bfloat16* w13;     // [E, 2I, H]
  CUtensorMap w2_columns;       // w2 [E, H, I] as [E * H rows, I columns], box {16, 256}
  const int* ids;               // [T, k]
  const float* weights;         // [T, k]
  float* partials;              // [kMaxSlots groups][I / 16][8][H]
  __nv_bfloat16* out;           // [T, H]
  int tokens, top_k, experts, hidden_size, inter, stages;
};

// Slots sorted by (expert, slot) and grouped by expert, as both kernels see them.
struct Routing {
  int sorted[kMaxSlots];
  int group_first[kMaxSlots + 1];
  int group_expert[kMaxSlots];
  int group_of_slot[kMaxSlots];
  int column_of_slot[kMaxSlots];  // position within its group: the mma column
  int warp_starts[2];
  int groups;
};

// Threads 0..63 take part; every thread of the block must call it (it has barriers).
__device__ void build_routing(Routing& r, const Args& a) {
  const int slots = a.tokens * a.top_k;
  const int s = threadIdx.x;
  int id = 0;
  if (s < slots) {  // the library's stable order (ids are valid here, so never -1)
    const int position = ramp::decode_sorted_position(a.ids, slots, a.experts, s);
    if (position >= 0) r.sorted[position] = s;
  }
  __syncthreads();
  bool starts = false;
  if (s < slots) {
    id = a.ids[r.sorted[s]];
    starts = s == 0 || a.ids[r.sorted[s - 1]] != id;
  }
  const unsigned ballot = __ballot_sync(0xffffffffu, starts);
  if (s < 64 && s % 32 == 0) r.warp_starts[s / 32] = __popc(ballot);
  __syncthreads();
  if (s < slots) {
    const int group = __popc(ballot & ((1u << (s % 32)) - 1u)) + (s >= 32 ? r.warp_starts[0] : 0) +
                      (starts ? 0 : -1);
    if (starts) {
      r.group_first[group] = s;
      r.group_expert[group] = id;
    }
    r.group_of_slot[r.sorted[s]] = group;
  }
  if (s == 0) {
    r.groups = slots > 0 ? r.warp_starts[0] + (slots > 32 ? r.warp_starts[1] : 0) : 0;
    r.group_first[r.groups] = slots;
  }
  __syncthreads();
  if (s < slots) r.column_of_slot[r.sorted[s]] = s - r.group_first[r.group_of_slot[r.sorted[s]]];
  __syncthreads();
}

// Shared-memory rows padded as the library's decode path pads them (decode_prefetch_row_bytes:
// rows g and g + 1 in opposite bank halves): a w13 stage row is half of K, a token row all of it.
__host__ __device__ inline int w13_row_bytes_smem(int hidden) {
  return ramp::decode_prefetch_row_bytes(hidden / 2 / ramp::kDecodeStepK);
}
__host__ __device__ inline int token_row_bytes_smem(int hidden) {
  return ramp::decode_prefetch_row_bytes(hidden / ramp::kDecodeStepK);
}
__host__ __device__ inline int stage_bytes_of(int hidden) {
  const int w13 = kFeatures * w13_row_bytes_smem(hidden), boxes = kBoxesPerStage * kBoxBytes;
  return w13 > boxes ? w13 : boxes;
}

struct Shared {
  Routing routing;
  uint64_t full[kMaxStages];
  uint64_t empty[kMaxStages];
  int stage_unit[kMaxStages];   // -1: no more units
  float sums[kConsumerWarps][32][8];  // per warp: gate d0..d3, up d0..d3
  __nv_bfloat16 act[kTokenColumns][kFeatures];
};

__global__ void __launch_bounds__(kThreads, 1) split_i_units(const __grid_constant__ Args a) {
  extern __shared__ __align__(1024) uint8_t dynamic[];
  __shared__ Shared sh;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int hidden = a.hidden_size;
  const int w13_row = w13_row_bytes_smem(hidden);
  const int stage_bytes = stage_bytes_of(hidden);
  const int token_row = token_row_bytes_smem(hidden);
  uint8_t* ring = dynamic;
  uint8_t* tokens = dynamic + a.stages * stage_bytes;  // [8][token_row]: the T tokens, then zeros
  // (the zero rows are never read: a group's unused columns are zeroed in registers)

  ptx::allow_next_grid_launch();
  if (threadIdx.x == 0) {
    for (int s = 0; s < a.stages; ++s) {
      ptx::mbarrier_init(&sh.full[s], 1);
      ptx::mbarrier_init(&sh.empty[s], kConsumerWarps);
    }
    ptx::fence_mbarrier_init();
  }
  build_routing(sh.routing, a);
  // The tokens' rows, and zero rows for the columns a group does not fill.
  for (int i = threadIdx.x; i < kTokenColumns * (hidden / 8); i += kThreads) {
    const int t = i / (hidden / 8), chunk = i % (hidden / 8);
    int4 v = make_int4(0, 0, 0, 0);
    if (t < a.tokens) v = reinterpret_cast<const int4*>(a.hidden + int64_t{t} * hidden)[chunk];
    *reinterpret_cast<int4*>(tokens + t * token_row + chunk * 16) = v;
  }
  __syncthreads();

  const Routing& r = sh.routing;
  const int blocks_per_group = a.inter / kFeatures;
  const int units = r.groups * blocks_per_group;
  const int w2_stages = (hidden / kBoxRows + kBoxesPerStage - 1) / kBoxesPerStage;
  const int stages_per_unit = 4 + w2_stages;

  if (warp == kConsumerWarps) {  // producer
    if (lane == 0) {
      ptx::tma_prefetch_descriptor(&a.w2_columns);
      const uint32_t base = ptx::smem_address(ring);
      int i = 0;
      auto next_stage = [&]() {
        const int stage = i % a.stages;
        if (i >= a.stages) ptx::mbarrier_wait_parity(&sh.empty[stage], ((i / a.stages) - 1) & 1);
        return stage;
      };
      for (int unit = blockIdx.x; unit < units; unit += gridDim.x) {
        const int group = unit / blocks_per_group;
        const int f0 = (unit % blocks_per_group) * kFeatures;
        const int expert = r.group_expert[group];
        for (int index = 0; index < stages_per_unit; ++index, ++i) {
          const int stage = next_stage();
          sh.stage_unit[stage] = unit;
          const uint32_t dst = base + stage * stage_bytes;
          if (index < 4) {  // gate (0, 1) or up (2, 3) rows, K half index % 2
            const int half_bytes = hidden;  // H / 2 elements x 2 bytes
            ptx::mbarrier_arrive_expect_tx(&sh.full[stage], kFeatures * half_bytes);
            const int row0 = (index < 2 ? 0 : a.inter) + f0;
            for (int row = 0; row < kFeatures; ++row) {
              const __nv_bfloat16* src = a.w13 + (int64_t{expert} * 2 * a.inter + row0 + row) * hidden +
                                         (index % 2) * (hidden / 2);
              ptx::bulk_load_global_to_shared(dst + row * w13_row, src, half_bytes,
                                              ptx::smem_address(&sh.full[stage]));
            }
          } else {
            const int first_box = (index - 4) * kBoxesPerStage;
            const int boxes = min(kBoxesPerStage, hidden / kBoxRows - first_box);
            ptx::mbarrier_arrive_expect_tx(&sh.full[stage], boxes * kBoxBytes);
            for (int b = 0; b < boxes; ++b) {
              ptx::tma_load_2d(dst + b * kBoxBytes, &a.w2_columns, &sh.full[stage], f0,
                               expert * hidden + (first_box + b) * kBoxRows);
            }
          }
        }
      }
      const int stage = next_stage();
      sh.stage_unit[stage] = -1;
      ptx::mbarrier_arrive(&sh.full[stage]);
    }
    return;
  }

  // Consumers.
  const int g = lane / 4, q = lane % 4;
  const int steps_per_half = hidden / 2 / 32;
  const int step_begin = warp * steps_per_half / kConsumerWarps;
  const int step_end = (warp + 1) * steps_per_half / kConsumerWarps;
  float* partials = a.partials;
  for (int i = 0;;) {
    const int stage0 = i % a.stages;
    ptx::mbarrier_wait_parity(&sh.full[stage0], (i / a.stages) & 1);
    const int unit = sh.stage_unit[stage0];
    if (unit < 0) break;
    const int group = unit / blocks_per_group;
    const int block = unit % blocks_per_group;
    const int first = r.group_first[group];
    const int columns = r.group_first[group + 1] - first;
    // Column g of B is the group's g-th slot's token; columns past the group's slots are zero.
    const bool zero_column = g >= columns;
    const int token = zero_column ? 0 : r.sorted[first + g] / a.top_k;
    float gate[4] = {0, 0, 0, 0}, up[4] = {0, 0, 0, 0};
    // Stage `index` (0, 1: gate rows; 2, 3: up rows; K half index % 2) into acc. A lambda per
    // accumulator array, so both stay in registers.
    auto consume_w13_stage = [&](float (&acc)[4], int index) {
      const int stage = i % a.stages;
      ptx::mbarrier_wait_parity(&sh.full[stage], (i / a.stages) & 1);
      const uint8_t* rows = ring + stage * stage_bytes;
      const int k_half = (index % 2) * (hidden / 2);
      for (int step = step_begin; step < step_end; ++step) {
        const int k = step * 32 + 8 * q;  // this lane's 8 consecutive k of the step
        const uint4 lo = *reinterpret_cast<const uint4*>(rows + g * w13_row + 2 * k);
        const uint4 hi = *reinterpret_cast<const uint4*>(rows + (g + 8) * w13_row + 2 * k);
        uint4 x = *reinterpret_cast<const uint4*>(tokens + token * token_row + 2 * (k_half + k));
        if (zero_column) x = make_uint4(0, 0, 0, 0);
        // The same permutation of k on A and B (a lane's 8 k are 2 mma k-pairs each).
        ptx::mma_m16n8k16_bf16(acc, lo.x, hi.x, lo.y, hi.y, x.x, x.y);
        ptx::mma_m16n8k16_bf16(acc, lo.z, hi.z, lo.w, hi.w, x.z, x.w);
      }
      __syncwarp();
      if (lane == 0) ptx::mbarrier_arrive(&sh.empty[stage]);
      ++i;
    };
    consume_w13_stage(gate, 0);
    consume_w13_stage(gate, 1);
    consume_w13_stage(up, 2);
    consume_w13_stage(up, 3);
    for (int j = 0; j < 4; ++j) {
      sh.sums[warp][lane][j] = gate[j];
      sh.sums[warp][lane][4 + j] = up[j];
    }
    ptx::named_barrier_sync(kConsumerBarrier, kConsumerWarps * 32);
    if (warp == 0) {  // warp order: deterministic
      float total[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      for (int w = 0; w < kConsumerWarps; ++w) {
        for (int j = 0; j < 8; ++j) total[j] += sh.sums[w][lane][j];
      }
      // d0, d1: feature g, tokens 2q, 2q + 1; d2, d3: feature g + 8.
      for (int j = 0; j < 4; ++j) {
        const int feature = g + (j / 2) * 8, column = 2 * q + j % 2;
        const float gv = total[j], uv = total[4 + j];
        sh.act[column][feature] = __float2bfloat16_rn(gv / (1.0f + __expf(-gv)) * uv);
      }
    }
    ptx::named_barrier_sync(kConsumerBarrier, kConsumerWarps * 32);
    const uint32_t b0 = *reinterpret_cast<const uint32_t*>(&sh.act[g][2 * q]);
    const uint32_t b1 = *reinterpret_cast<const uint32_t*>(&sh.act[g][2 * q + 8]);
    for (int index = 4; index < stages_per_unit; ++index, ++i) {
      const int stage = i % a.stages;
      ptx::mbarrier_wait_parity(&sh.full[stage], (i / a.stages) & 1);
      const uint8_t* rows = ring + stage * stage_bytes;  // [rows of H][16 features]
      const int h_base = (index - 4) * kBoxesPerStage * kBoxRows;
      const int row_blocks = min(kBoxesPerStage * kBoxRows, hidden - h_base) / 16;
      for (int rb = warp; rb < row_blocks; rb += kConsumerWarps) {
        const uint8_t* a_rows = rows + rb * 16 * 32;
        const uint32_t a0 = *reinterpret_cast<const uint32_t*>(a_rows + g * 32 + 4 * q);
        const uint32_t a1 = *reinterpret_cast<const uint32_t*>(a_rows + (g + 8) * 32 + 4 * q);
        const uint32_t a2 = *reinterpret_cast<const uint32_t*>(a_rows + g * 32 + 16 + 4 * q);
        const uint32_t a3 = *reinterpret_cast<const uint32_t*>(a_rows + (g + 8) * 32 + 16 + 4 * q);
        float d[4] = {0, 0, 0, 0};
        ptx::mma_m16n8k16_bf16(d, a0, a1, a2, a3, b0, b1);
        const int h = h_base + rb * 16 + g;
        for (int j = 0; j < 4; ++j) {
          const int column = 2 * q + j % 2;
          if (column < columns) {
            partials[((int64_t{group} * blocks_per_group + block) * kTokenColumns + column) * hidden +
                     h + (j / 2) * 8] = d[j];
          }
        }
      }
      __syncwarp();
      if (lane == 0) ptx::mbarrier_arrive(&sh.empty[stage]);
    }
  }
}

__global__ void __launch_bounds__(128) split_i_combine(const __grid_constant__ Args a) {
  __shared__ Routing routing;
  build_routing(routing, a);  // reads inputs only: before the wait
  ptx::wait_for_previous_grid();
  const int h = blockIdx.x * blockDim.x + threadIdx.x;
  if (h >= a.hidden_size) return;
  const int blocks_per_group = a.inter / kFeatures;
  for (int t = 0; t < a.tokens; ++t) {
    float total = 0.0f;
    for (int j = 0; j < a.top_k; ++j) {
      const int slot = t * a.top_k + j;
      const int group = routing.group_of_slot[slot];
      const int column = routing.column_of_slot[slot];
      float dot = 0.0f;
      for (int b = 0; b < blocks_per_group; ++b) {
        dot += a.partials[((int64_t{group} * blocks_per_group + b) * kTokenColumns + column) *
                              a.hidden_size + h];
      }
      total += __bfloat162float(__float2bfloat16_rn(dot * a.weights[slot]));
    }
    a.out[int64_t{t} * a.hidden_size + h] = __float2bfloat16_rn(total);
  }
}

__global__ void fill_random(__nv_bfloat16* data, size_t count, uint64_t seed, float scale) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ull ^ seed;
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 29;
    const float u = static_cast<float>(x >> 40) * (1.0f / 16777216.0f);  // [0, 1)
    data[i] = __float2bfloat16_rn((2.0f * u - 1.0f) * scale);
  }
}

bool encode_w2_columns(CUtensorMap* map, const void* w2, int experts, int hidden, int inter) {
  const ptx::EncodeTiledFn encode = ptx::encode_tiled_entry_point();
  if (encode == nullptr) return false;
  const cuuint64_t dims[2] = {static_cast<cuuint64_t>(inter),
                              static_cast<cuuint64_t>(experts) * hidden};
  const cuuint64_t strides[1] = {static_cast<cuuint64_t>(inter) * 2};
  const cuuint32_t box[2] = {kFeatures, kBoxRows};
  const cuuint32_t element_strides[2] = {1, 1};
  return encode(map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, const_cast<void*>(w2), dims, strides,
                box, element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_NONE,
                CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) ==
         CUDA_SUCCESS;
}

float bf16_to_float(uint16_t bits) {
  const uint32_t word = uint32_t{bits} << 16;
  float value;
  std::memcpy(&value, &word, 4);
  return value;
}

struct Model {
  const char* name;
  int experts, top_k, hidden, inter;
};

}  // namespace

int main() {
  cudaDeviceProp prop;
  DEV_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  const int num_sms = prop.multiProcessorCount;
  std::printf("# %s, %d SMs: decode layer with GEMM2 split along I (prototype), graph replay, "
              "16 routings in rotation (cold L2)\n", prop.name, num_sms);
  const Model models[] = {{"qwen3-30b-a3b", 128, 8, 2048, 768},
                          {"olmoe-1b-7b", 64, 8, 2048, 1024},
                          {"deepseek-v2-lite", 64, 6, 2048, 1408}};
  const int token_counts[] = {1, 2, 4, 8};
  const int rotations = 16;
  bool all_ok = true;
  for (const Model& m : models) {
    const size_t w13_count = static_cast<size_t>(m.experts) * 2 * m.inter * m.hidden;
    const size_t w2_count = static_cast<size_t>(m.experts) * m.hidden * m.inter;
    __nv_bfloat16 *w13 = nullptr, *w2 = nullptr, *hidden = nullptr, *out = nullptr;
    int* ids = nullptr;
    float *weights = nullptr, *partials = nullptr;
    DEV_CUDA_CHECK(cudaMalloc(&w13, w13_count * 2));
    DEV_CUDA_CHECK(cudaMalloc(&w2, w2_count * 2));
    DEV_CUDA_CHECK(cudaMalloc(&hidden, static_cast<size_t>(kTokenColumns) * m.hidden * 2));
    DEV_CUDA_CHECK(cudaMalloc(&out, static_cast<size_t>(kTokenColumns) * m.hidden * 2));
    DEV_CUDA_CHECK(cudaMalloc(&ids, rotations * kMaxSlots * sizeof(int)));
    DEV_CUDA_CHECK(cudaMalloc(&weights, rotations * kMaxSlots * sizeof(float)));
    const size_t partial_count = static_cast<size_t>(kMaxSlots) * (m.inter / kFeatures) * kTokenColumns * m.hidden;
    DEV_CUDA_CHECK(cudaMalloc(&partials, partial_count * sizeof(float)));
    fill_random<<<1024, 256>>>(w13, w13_count, 11, 1.0f / std::sqrt(float(m.hidden)) * 1.7f);
    fill_random<<<1024, 256>>>(w2, w2_count, 12, 1.0f / std::sqrt(float(m.inter)) * 1.7f);
    fill_random<<<64, 256>>>(hidden, static_cast<size_t>(kTokenColumns) * m.hidden, 13, 1.7f);
    DEV_CUDA_CHECK(cudaDeviceSynchronize());
    Args base{};
    base.w13 = w13;
    base.hidden = hidden;
    base.partials = partials;
    base.out = out;
    base.top_k = m.top_k;
    base.experts = m.experts;
    base.hidden_size = m.hidden;
    base.inter = m.inter;
    if (!encode_w2_columns(&base.w2_columns, w2, m.experts, m.hidden, m.inter)) {
      std::printf("w2 tensor map rejected\n");
      return 1;
    }
    const int stage_bytes = stage_bytes_of(m.hidden);
    const int token_bytes = kTokenColumns * token_row_bytes_smem(m.hidden);
    const int budget = 227 * 1024 - static_cast<int>(sizeof(Shared)) - 1024;
    base.stages = std::min(kMaxStages, (budget - token_bytes) / stage_bytes);
    const int smem = base.stages * stage_bytes + token_bytes;
    DEV_CUDA_CHECK(cudaFuncSetAttribute(split_i_units, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    std::printf("\n## %s (E = %d, k = %d, H = %d, I = %d): %d stages of %d bytes\n", m.name,
                m.experts, m.top_k, m.hidden, m.inter, base.stages, stage_bytes);

    std::vector<uint16_t> hidden_host(static_cast<size_t>(kTokenColumns) * m.hidden);
    DEV_CUDA_CHECK(cudaMemcpy(hidden_host.data(), hidden, hidden_host.size() * 2, cudaMemcpyDeviceToHost));
    std::mt19937 rng(5);
    for (int tokens : token_counts) {
      const int slots = tokens * m.top_k;
      // Routings: distinct experts per token, random weights; each rotation its own ids.
      std::vector<int> ids_host(rotations * kMaxSlots);
      std::vector<float> weights_host(rotations * kMaxSlots);
      for (int rot = 0; rot < rotations; ++rot) {
        for (int t = 0; t < tokens; ++t) {
          std::vector<int> experts(m.experts);
          for (int e = 0; e < m.experts; ++e) experts[e] = e;
          std::shuffle(experts.begin(), experts.end(), rng);
          for (int j = 0; j < m.top_k; ++j) {
            ids_host[rot * kMaxSlots + t * m.top_k + j] = experts[j];
            weights_host[rot * kMaxSlots + t * m.top_k + j] =
                std::uniform_real_distribution<float>(0.1f, 1.0f)(rng);
          }
        }
      }
      DEV_CUDA_CHECK(cudaMemcpy(ids, ids_host.data(), ids_host.size() * 4, cudaMemcpyHostToDevice));
      DEV_CUDA_CHECK(cudaMemcpy(weights, weights_host.data(), weights_host.size() * 4, cudaMemcpyHostToDevice));
      cudaStream_t stream;
      DEV_CUDA_CHECK(cudaStreamCreate(&stream));
      std::vector<cudaGraphExec_t> graphs(rotations);
      for (int rot = 0; rot < rotations; ++rot) {
        Args args = base;
        args.tokens = tokens;
        args.ids = ids + rot * kMaxSlots;
        args.weights = weights + rot * kMaxSlots;
        cudaGraph_t graph;
        DEV_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
        split_i_units<<<num_sms, kThreads, smem, stream>>>(args);
        cudaLaunchConfig_t config{};
        config.gridDim = dim3((m.hidden + 127) / 128);
        config.blockDim = dim3(128);
        config.stream = stream;
        cudaLaunchAttribute attribute{};
        attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
        attribute.val.programmaticStreamSerializationAllowed = 1;
        config.attrs = &attribute;
        config.numAttrs = 1;
        DEV_CUDA_CHECK(cudaLaunchKernelEx(&config, split_i_combine, args));
        DEV_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
        DEV_CUDA_CHECK(cudaGraphInstantiate(&graphs[rot], graph, 0));
        DEV_CUDA_CHECK(cudaGraphDestroy(graph));
      }
      // Correctness: rotation 0 (and 1), poisoned out, against fp64; then bitwise repeat.
      double worst_error = 0.0;
      bool repeat_equal = true;
      for (int rot = 0; rot < 2; ++rot) {
        DEV_CUDA_CHECK(cudaMemset(out, 0xff, static_cast<size_t>(kTokenColumns) * m.hidden * 2));
        DEV_CUDA_CHECK(cudaGraphLaunch(graphs[rot], stream));
        DEV_CUDA_CHECK(cudaStreamSynchronize(stream));
        std::vector<uint16_t> got(static_cast<size_t>(tokens) * m.hidden), again(got.size());
        DEV_CUDA_CHECK(cudaMemcpy(got.data(), out, got.size() * 2, cudaMemcpyDeviceToHost));
        DEV_CUDA_CHECK(cudaMemset(out, 0xff, static_cast<size_t>(kTokenColumns) * m.hidden * 2));
        DEV_CUDA_CHECK(cudaGraphLaunch(graphs[rot], stream));
        DEV_CUDA_CHECK(cudaStreamSynchronize(stream));
        DEV_CUDA_CHECK(cudaMemcpy(again.data(), out, again.size() * 2, cudaMemcpyDeviceToHost));
        repeat_equal = repeat_equal && got == again;
        std::vector<double> want(got.size(), 0.0);
        std::vector<uint16_t> w13_rows(static_cast<size_t>(2) * m.inter * m.hidden), w2_rows(static_cast<size_t>(m.hidden) * m.inter);
        for (int s = 0; s < slots; ++s) {
          const int e = ids_host[rot * kMaxSlots + s], t = s / m.top_k;
          DEV_CUDA_CHECK(cudaMemcpy(w13_rows.data(), w13 + static_cast<size_t>(e) * w13_rows.size(), w13_rows.size() * 2, cudaMemcpyDeviceToHost));
          DEV_CUDA_CHECK(cudaMemcpy(w2_rows.data(), w2 + static_cast<size_t>(e) * w2_rows.size(), w2_rows.size() * 2, cudaMemcpyDeviceToHost));
          std::vector<double> act(m.inter);
          for (int i = 0; i < m.inter; ++i) {
            double gate = 0, up = 0;
            for (int k = 0; k < m.hidden; ++k) {
              const double x = bf16_to_float(hidden_host[static_cast<size_t>(t) * m.hidden + k]);
              gate += bf16_to_float(w13_rows[static_cast<size_t>(i) * m.hidden + k]) * x;
              up += bf16_to_float(w13_rows[static_cast<size_t>(m.inter + i) * m.hidden + k]) * x;
            }
            act[i] = gate / (1.0 + std::exp(-gate)) * up;
          }
          for (int h = 0; h < m.hidden; ++h) {
            double dot = 0;
            for (int i = 0; i < m.inter; ++i) dot += bf16_to_float(w2_rows[static_cast<size_t>(h) * m.inter + i]) * act[i];
            want[static_cast<size_t>(t) * m.hidden + h] += weights_host[rot * kMaxSlots + s] * dot;
          }
        }
        double diff = 0, norm = 0;
        for (size_t i = 0; i < got.size(); ++i) {
          const double d = bf16_to_float(got[i]) - want[i];
          diff += d * d;
          norm += want[i] * want[i];
        }
        const double error = std::sqrt(diff / norm);  // NaN if anything was left unwritten
        if (std::isnan(error) || error > worst_error) worst_error = error;
      }
      const bool ok = worst_error <= 1e-2 && repeat_equal;  // false for NaN
      all_ok = all_ok && ok;
      const std::vector<float> times = dev::sorted_rotating_graph_times_ms(graphs, 4);
      std::printf("T = %d: median %6.2f us  best %6.2f us  rel error %.2e  repeat %s  %s\n", tokens,
                  times[times.size() / 2] * 1e3, times[0] * 1e3, worst_error,
                  repeat_equal ? "bitwise" : "DIFFERS", ok ? "PASS" : "FAIL");
      for (cudaGraphExec_t g : graphs) DEV_CUDA_CHECK(cudaGraphExecDestroy(g));
      DEV_CUDA_CHECK(cudaStreamDestroy(stream));
    }
    DEV_CUDA_CHECK(cudaFree(w13));
    DEV_CUDA_CHECK(cudaFree(w2));
    DEV_CUDA_CHECK(cudaFree(hidden));
    DEV_CUDA_CHECK(cudaFree(out));
    DEV_CUDA_CHECK(cudaFree(ids));
    DEV_CUDA_CHECK(cudaFree(weights));
    DEV_CUDA_CHECK(cudaFree(partials));
  }
  std::printf("\n%s\n", all_ok ? "all cases PASS" : "some case FAILED");
  return all_ok ? 0 : 1;
}
