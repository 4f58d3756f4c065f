// Dev microbenchmark: could the decode layer stream all its weights at the DRAM rate, with no
// tail after GEMM1?
//
// Today's decode path (src/cuda/decode_layer.cu) runs GEMM1 (gate_up) and then GEMM2 + combine
// (down_combine). GEMM2 needs every intermediate feature of an expert, so down_combine keeps
// what w2 it can in shared memory and L2 while gate_up streams, and finishes after gate_up's
// last CTA: qwen3-30b-a3b T = 1 takes ~36 us against a 25 us DRAM floor, ~5 us of it after the
// wait (session 9 and 14 timelines). Issue #5 asks for 30 us.
//
// Split GEMM2 along I instead: a unit (expert e, F intermediate features) computes its F
// activations from 2F rows of w13 and multiplies them at once by the F columns of w2[e]
// (w2[e][:, f0 : f0 + F], H rows of 2F bytes), giving a partial out[H] for its tokens. A short
// second kernel sums the partials in a fixed order (deterministic) with the router weights. No
// unit waits for another, so w13 and w2 stream together, evenly over the SMs, to the end.
// The open question is the memory side: w2's columns are 2F-byte pieces H rows apart.
//
// This streams exactly those bytes with no math, one CTA per SM (a producer thread issuing
// cp.async.bulk rows of w13 and TMA boxes of w2 columns into a ring of 32 KiB stages, a consumer
// warp releasing stages and writing each unit's 8 KiB partial), then a combine-like kernel
// reading the partials. Both kernels are one CUDA graph per set of experts, replayed over
// rotating sets so L2 is cold. Parts (bit mask): 1 = w13 rows, 2 = w2 columns, 4 = w2 as
// contiguous 64 KiB slabs (the same bytes, the easy pattern, for comparison). Prints the layer's
// time and its rate against a plain ld.cs read of the same run.
// Build: nvcc -std=c++17 -O3 -gencode arch=compute_90a,code=sm_90a -Isrc \
//          dev/decode_split_i_bench.cu -o decode_split_i_bench
#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "dev_cuda_check.h"
#include "dev_read_ceiling.h"
#include "dev_timing.h"
#include "cuda/ptx/bulk_copy.h"
#include "cuda/ptx/mbarrier.h"
#include "cuda/ptx/tma.h"

namespace {

using namespace ramp::cuda;

constexpr int kStageBytes = 32 * 1024;
constexpr int kMaxStages = 8;
constexpr int kColumnBoxRows = 256;  // rows of H per w2 column box
constexpr int kCombineRows = 16;     // rows of H per combine CTA

enum Parts { kW13Rows = 1, kW2Columns = 2, kW2Slabs = 4 };

struct Params {
  const uint8_t* w13;  // [E, 2I, H] bf16
  const uint8_t* w2;   // [E, H, I] bf16
  CUtensorMap w2_columns;  // w2 as [E * H rows, I columns], box {F, 256}, no swizzle
  const int* experts;      // the launch's active experts
  int active, hidden, inter, features, parts, stages, interleaved, hold_cycles;
  float* partials;  // [units, H]
};

__host__ __device__ int units_of(const Params& p) { return p.active * (p.inter / p.features); }

// What one stage of a unit carries: `index` counts the unit's stages in load order.
struct StagePlan {
  int w13_stages, column_stages, slab_stages;
  __host__ __device__ int total() const { return w13_stages + column_stages + slab_stages; }
};
__host__ __device__ int w13_rows_per_stage(const Params& p) { return kStageBytes / (2 * p.hidden); }
__host__ __device__ int column_box_bytes(const Params& p) { return p.features * 2 * kColumnBoxRows; }
__host__ __device__ int column_boxes(const Params& p) {
  return (p.hidden + kColumnBoxRows - 1) / kColumnBoxRows;
}
__host__ __device__ int boxes_per_stage(const Params& p) { return kStageBytes / column_box_bytes(p); }
__host__ __device__ int slab_bytes(const Params& p) { return p.hidden * p.features * 2; }
__host__ __device__ StagePlan stage_plan(const Params& p) {
  StagePlan plan{0, 0, 0};
  const int rows_per_stage = w13_rows_per_stage(p);
  if (p.parts & kW13Rows) plan.w13_stages = (2 * p.features + rows_per_stage - 1) / rows_per_stage;
  if (p.parts & kW2Columns) {
    plan.column_stages = (column_boxes(p) + boxes_per_stage(p) - 1) / boxes_per_stage(p);
  }
  if (p.parts & kW2Slabs) plan.slab_stages = (slab_bytes(p) + kStageBytes - 1) / kStageBytes;
  return plan;
}

__device__ int unit_of(const Params& p, int j) {
  const int units = units_of(p);
  if (p.interleaved) {
    const int u = static_cast<int>(blockIdx.x) + j * static_cast<int>(gridDim.x);
    return u < units ? u : -1;
  }
  const int per_cta = (units + gridDim.x - 1) / gridDim.x;
  const int u = static_cast<int>(blockIdx.x) * per_cta + j;
  return j < per_cta && u < units ? u : -1;
}

// The bytes stage `index` of unit `unit` delivers into `dst`; with kIssue, also issues its copies
// (called first without, so the barrier hears the byte count before any copy can land).
template <bool kIssue>
__device__ uint32_t stage_copies(const Params& p, int unit, int index, uint32_t dst,
                                 uint64_t* full) {
  const int units_per_expert = p.inter / p.features;
  const int expert = p.experts[unit / units_per_expert];
  const int f0 = (unit % units_per_expert) * p.features;
  const StagePlan plan = stage_plan(p);
  const int64_t row_bytes = 2 * int64_t{p.hidden};
  uint32_t bytes = 0;
  if (index < plan.w13_stages) {
    const int rows_per_stage = w13_rows_per_stage(p);
    for (int r = index * rows_per_stage; r < min(2 * p.features, (index + 1) * rows_per_stage); ++r) {
      // rows 0..F-1 are gate rows f0.., rows F..2F-1 the up rows I + f0..
      const int64_t row = r < p.features ? f0 + r : p.inter + f0 + (r - p.features);
      const uint8_t* src = p.w13 + (int64_t{expert} * 2 * p.inter + row) * row_bytes;
      if (kIssue) {
        ptx::bulk_load_global_to_shared(dst + bytes, src, static_cast<uint32_t>(row_bytes),
                                        ptx::smem_address(full));
      }
      bytes += static_cast<uint32_t>(row_bytes);
    }
    return bytes;
  }
  index -= plan.w13_stages;
  if (index < plan.column_stages) {
    const int per_stage = boxes_per_stage(p);
    for (int b = index * per_stage; b < min(column_boxes(p), (index + 1) * per_stage); ++b) {
      if (kIssue) {
        ptx::tma_load_2d(dst + bytes, &p.w2_columns, full, f0,
                         expert * p.hidden + b * kColumnBoxRows);
      }
      bytes += column_box_bytes(p);
    }
    return bytes;
  }
  index -= plan.column_stages;
  const int64_t offset = int64_t{index} * kStageBytes;
  const int64_t left = slab_bytes(p) - offset;
  const uint32_t chunk = static_cast<uint32_t>(left < kStageBytes ? left : kStageBytes);
  const uint8_t* slab = p.w2 + int64_t{expert} * p.hidden * p.inter * 2 +
                        int64_t{unit % units_per_expert} * slab_bytes(p) + offset;
  if (kIssue) ptx::bulk_load_global_to_shared(dst, slab, chunk, ptx::smem_address(full));
  return chunk;
}

__global__ void __launch_bounds__(64, 1) stream_units(const __grid_constant__ Params p) {
  extern __shared__ __align__(1024) uint8_t shared[];
  uint64_t* full = reinterpret_cast<uint64_t*>(shared + p.stages * kStageBytes);
  uint64_t* empty = full + kMaxStages;
  int* unit_of_stage = reinterpret_cast<int*>(empty + kMaxStages);  // -1: no more
  int* ends_unit = unit_of_stage + kMaxStages;
  if (threadIdx.x == 0) {
    for (int s = 0; s < p.stages; ++s) {
      ptx::mbarrier_init(&full[s], 1);
      ptx::mbarrier_init(&empty[s], 1);
    }
    ptx::fence_mbarrier_init();
  }
  __syncthreads();
  const int per_unit = stage_plan(p).total();
  if (threadIdx.x == 0) {
    ptx::tma_prefetch_descriptor(&p.w2_columns);
    const uint32_t base = ptx::smem_address(shared);
    int i = 0;
    auto next_stage = [&]() {
      const int stage = i % p.stages;
      if (i >= p.stages) ptx::mbarrier_wait_parity(&empty[stage], ((i / p.stages) - 1) & 1);
      return stage;
    };
    for (int j = 0;; ++j) {
      const int unit = unit_of(p, j);
      if (unit < 0) break;
      for (int index = 0; index < per_unit; ++index, ++i) {
        const int stage = next_stage();
        unit_of_stage[stage] = unit;
        ends_unit[stage] = index == per_unit - 1;
        const uint32_t dst = base + stage * kStageBytes;
        ptx::mbarrier_arrive_expect_tx(&full[stage],
                                       stage_copies<false>(p, unit, index, dst, &full[stage]));
        stage_copies<true>(p, unit, index, dst, &full[stage]);
      }
    }
    const int stage = next_stage();
    unit_of_stage[stage] = -1;
    ptx::mbarrier_arrive(&full[stage]);
  } else if (threadIdx.x >= 32) {
    const int lane = threadIdx.x - 32;
    for (int i = 0;; ++i) {
      const int stage = i % p.stages;
      ptx::mbarrier_wait_parity(&full[stage], (i / p.stages) & 1);
      const int unit = unit_of_stage[stage];
      if (unit < 0) break;
      const bool last = ends_unit[stage] != 0;
      if (p.hold_cycles > 0) {
        const long long until = clock64() + p.hold_cycles;
        while (clock64() < until) {
        }
      }
      __syncwarp();
      if (lane == 0) ptx::mbarrier_arrive(&empty[stage]);
      if (last) {  // the unit's partial out[H]: what its tokens' GEMM2 rows add up to
        float4* row = reinterpret_cast<float4*>(p.partials + int64_t{unit} * p.hidden);
        for (int h = lane; h < p.hidden / 4; h += 32) {
          row[h] = make_float4(float(unit), float(h), 0.0f, 1.0f);
        }
      }
    }
  }
}

// Sums the partials of kCombineRows rows of H in unit order and writes them as bf16.
__global__ void __launch_bounds__(256) combine_partials(const float* partials, int units,
                                                        int hidden, __nv_bfloat16* out) {
  __shared__ float sums[256];
  const int row = blockIdx.x * kCombineRows + threadIdx.x % kCombineRows;
  const int lane_group = threadIdx.x / kCombineRows;  // 16 groups walk the units
  float sum = 0.0f;
  if (row < hidden) {
    for (int u = lane_group; u < units; u += 256 / kCombineRows) {
      sum += partials[int64_t{u} * hidden + row];
    }
  }
  sums[threadIdx.x] = sum;
  __syncthreads();
  if (threadIdx.x < kCombineRows && row < hidden) {
    float total = 0.0f;
    for (int g = 0; g < 256 / kCombineRows; ++g) total += sums[g * kCombineRows + threadIdx.x];
    out[row] = __float2bfloat16_rn(total);
  }
}

// w2 as [E * H rows, I columns] with a {F, 256} box, no swizzle (2F-byte rows in shared memory).
bool encode_w2_columns(CUtensorMap* map, const void* w2, int experts, int hidden, int inter,
                       int features, int promotion) {
  const ptx::EncodeTiledFn encode = ptx::encode_tiled_entry_point();
  if (encode == nullptr) return false;
  const cuuint64_t dims[2] = {static_cast<cuuint64_t>(inter),
                              static_cast<cuuint64_t>(experts) * hidden};
  const cuuint64_t strides[1] = {static_cast<cuuint64_t>(inter) * 2};
  const cuuint32_t box[2] = {static_cast<cuuint32_t>(features), kColumnBoxRows};
  const cuuint32_t element_strides[2] = {1, 1};
  return encode(map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, const_cast<void*>(w2), dims, strides,
                box, element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_NONE,
                promotion == 256   ? CU_TENSOR_MAP_L2_PROMOTION_L2_256B
                : promotion == 128 ? CU_TENSOR_MAP_L2_PROMOTION_L2_128B
                : promotion == 64  ? CU_TENSOR_MAP_L2_PROMOTION_L2_64B
                                   : CU_TENSOR_MAP_L2_PROMOTION_NONE,
                CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

struct Model {
  const char* name;
  int experts, active, hidden, inter;
};

struct Case {
  int parts, features, stages, interleaved, hold, promotion = 0;  // w2 columns' L2 promotion
};

}  // namespace

int main() {
  cudaDeviceProp prop;
  DEV_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  const int num_sms = prop.multiProcessorCount;
  int* sink = nullptr;
  DEV_CUDA_CHECK(cudaMalloc(&sink, sizeof(int)));

  const size_t read_bytes = size_t{1} << 30;
  void* read_buffer = nullptr;
  DEV_CUDA_CHECK(cudaMalloc(&read_buffer, read_bytes));
  DEV_CUDA_CHECK(cudaMemset(read_buffer, 0x3c, read_bytes));
  const float read_ms = dev::sorted_event_times_ms(2, 9, [&] {
    dev::read_all<<<num_sms * 4, 512>>>(static_cast<const int4*>(read_buffer), read_bytes / 16, sink);
  })[4];
  const double ceiling = read_bytes / (read_ms * 1e-3);
  DEV_CUDA_CHECK(cudaFree(read_buffer));
  std::printf("# %s, %d SMs; ld.cs read of 1 GiB: %.3f TB/s (the ceiling below)\n", prop.name,
              num_sms, ceiling / 1e12);
  std::printf("# decode layer at T = 1 without math: GEMM1 units + GEMM2 by I-columns, then a "
              "partial-summing combine; CUDA graph replay, L2 cold (rotating expert sets)\n");

  const Model models[] = {{"qwen3-30b-a3b", 128, 8, 2048, 768}, {"olmoe-1b-7b", 64, 8, 2048, 1024},
                          {"gpt-oss-120b", 128, 4, 2880, 2880}};
  const Case cases[] = {
      {kW13Rows, 16, 4, 1, 0},                  // GEMM1's bytes alone
      {kW2Columns, 16, 4, 1, 0},                // w2 by 32-byte columns alone
      {kW2Slabs, 16, 4, 1, 0},                  // the same w2 bytes, contiguous
      {kW13Rows | kW2Columns, 16, 4, 1, 0},     // the design
      {kW13Rows | kW2Slabs, 16, 4, 1, 0},       // the design's bytes, easy pattern
      {kW13Rows | kW2Columns, 16, 6, 1, 0},     // deeper ring
      {kW13Rows | kW2Columns, 16, 4, 0, 0},     // contiguous unit ranges per CTA
      {kW13Rows | kW2Columns, 8, 4, 1, 0},      // 16-byte columns, twice the units
      {kW13Rows | kW2Columns, 32, 4, 1, 0},     // 64-byte columns, half the units
      {kW13Rows | kW2Columns, 16, 4, 1, 600},   // a consumer that holds each stage ~0.35 us
      // The L2 fetches more than each 32-byte piece: the neighbouring units' columns of the same
      // w2 rows, which other SMs ask for at about the same time.
      {kW13Rows | kW2Columns, 16, 4, 1, 0, 128}, {kW13Rows | kW2Columns, 16, 4, 1, 0, 256},
      {kW13Rows | kW2Columns, 16, 4, 0, 0, 256},
  };
  for (const Model& m : models) {
    const size_t w13_bytes = size_t{2} * m.experts * 2 * m.inter * m.hidden;
    const size_t w2_bytes = size_t{2} * m.experts * m.hidden * m.inter;
    uint8_t *w13 = nullptr, *w2 = nullptr;
    DEV_CUDA_CHECK(cudaMalloc(&w13, w13_bytes));
    DEV_CUDA_CHECK(cudaMalloc(&w2, w2_bytes));
    DEV_CUDA_CHECK(cudaMemset(w13, 0x3c, w13_bytes));
    DEV_CUDA_CHECK(cudaMemset(w2, 0x3c, w2_bytes));
    const int sets = m.experts / m.active;  // disjoint sets, each cold after the others ran
    std::vector<int> expert_ids(m.experts);
    for (int e = 0; e < m.experts; ++e) expert_ids[e] = (e * 37) % m.experts;  // scattered
    int* experts_dev = nullptr;
    DEV_CUDA_CHECK(cudaMalloc(&experts_dev, m.experts * sizeof(int)));
    DEV_CUDA_CHECK(cudaMemcpy(experts_dev, expert_ids.data(), m.experts * sizeof(int),
                              cudaMemcpyHostToDevice));
    const size_t unique_full = (w13_bytes + w2_bytes) / m.experts * m.active;
    std::printf("\n## %s (E = %d, %d active, H = %d, I = %d): %.1f MB of weights, floor %.1f us\n",
                m.name, m.experts, m.active, m.hidden, m.inter, unique_full / 1e6,
                unique_full / ceiling * 1e6);
    for (const Case& c : cases) {
      if (m.inter % c.features != 0) continue;
      Params p{};
      p.w13 = w13;
      p.w2 = w2;
      p.active = m.active;
      p.hidden = m.hidden;
      p.inter = m.inter;
      p.features = c.features;
      p.parts = c.parts;
      p.stages = c.stages;
      p.interleaved = c.interleaved;
      p.hold_cycles = c.hold;
      if (!encode_w2_columns(&p.w2_columns, w2, m.experts, m.hidden, m.inter, c.features,
                             c.promotion)) {
        std::printf("w2 column tensor map rejected (F = %d)\n", c.features);
        continue;
      }
      const int units = units_of(p);
      float* partials = nullptr;
      __nv_bfloat16* out = nullptr;
      DEV_CUDA_CHECK(cudaMalloc(&partials, sizeof(float) * units * m.hidden));
      DEV_CUDA_CHECK(cudaMalloc(&out, sizeof(__nv_bfloat16) * m.hidden));
      p.partials = partials;
      const int smem = c.stages * kStageBytes + 1024;
      DEV_CUDA_CHECK(
          cudaFuncSetAttribute(stream_units, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
      cudaStream_t stream;
      DEV_CUDA_CHECK(cudaStreamCreate(&stream));
      std::vector<cudaGraphExec_t> graphs(sets);
      for (int s = 0; s < sets; ++s) {
        Params ps = p;
        ps.experts = experts_dev + s * m.active;
        cudaGraph_t graph;
        DEV_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
        stream_units<<<num_sms, 64, smem, stream>>>(ps);
        combine_partials<<<(m.hidden + kCombineRows - 1) / kCombineRows, 256, 0, stream>>>(
            partials, units, m.hidden, out);
        DEV_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
        DEV_CUDA_CHECK(cudaGraphInstantiate(&graphs[s], graph, 0));
        DEV_CUDA_CHECK(cudaGraphDestroy(graph));
      }
      const std::vector<float> times = dev::sorted_rotating_graph_times_ms(graphs, 4);
      const StagePlan plan = stage_plan(p);
      const double w13_unique = (c.parts & kW13Rows) ? w13_bytes / double(m.experts) * m.active : 0;
      const double w2_unique =
          (c.parts & (kW2Columns | kW2Slabs)) ? w2_bytes / double(m.experts) * m.active : 0;
      const double unique = w13_unique + w2_unique;
      const float ms = times[times.size() / 2];
      std::printf("parts %d F %2d stages %d %-11s hold %4d L2 promotion %3d: %4d units x %d "
                  "stages  median %6.2f us  best %6.2f us  %5.1f MB  %.3f TB/s  (%.2f of the "
                  "ceiling)\n",
                  c.parts, c.features, c.stages, c.interleaved ? "interleaved" : "contiguous",
                  c.hold, c.promotion, units, plan.total(), ms * 1e3, times[0] * 1e3, unique / 1e6,
                  unique / (ms * 1e-3) / 1e12, unique / (ms * 1e-3) / ceiling);
      for (cudaGraphExec_t g : graphs) DEV_CUDA_CHECK(cudaGraphExecDestroy(g));
      DEV_CUDA_CHECK(cudaStreamDestroy(stream));
      DEV_CUDA_CHECK(cudaFree(partials));
      DEV_CUDA_CHECK(cudaFree(out));
    }
    DEV_CUDA_CHECK(cudaFree(experts_dev));
    DEV_CUDA_CHECK(cudaFree(w13));
    DEV_CUDA_CHECK(cudaFree(w2));
  }
  return 0;
}
