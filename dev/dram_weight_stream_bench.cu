// Dev microbenchmark: how fast do the GEMMs' weight boxes stream from DRAM?
//
// The layer's mid-T cells are memory-bound by the roofline (qwen3-235b-a22b T = 2048: 3.2 GB of
// w13 in 1.32 ms, 2.4 TB/s, against 3.0 TB/s for cudaMemcpy) while their SMs take in ~42 GB/s
// each, below the ~57 GB/s the L2 feeds them (sessions 11-15). One suspect is the access
// pattern: a weight tile's stage is a TMA box of 256 rows x 128 bytes, rows K x 2 bytes apart,
// so each request touches 256 DRAM rows for 128 bytes each. This streams a 4 GiB weight tensor
// once per launch through a ring shaped like the GEMM's weight part (one CTA per SM, 256-row
// boxes, tiles of 256 rows x all of K taken in order from a counter) with no MMA, and compares:
//   rowmajor K  the tensor as the caller gives it, [rows, K], K = 2048 / 4096 / 14336
//   packed      the same bytes laid out box after box: every box is 32 KiB contiguous
//   readers R   R CTAs take each tile (R token blocks sharing a weight tile), from the counter
//   static      tile = CTA / R + j x (CTAs / R): the readers of a tile are neighbouring CTAs
//   multicast   clusters of 2, each CTA loads half of every box into both (one L2 read, 2 SMs)
//   sides       tiles split by the L2 side of the SM (measured: latency of dependent atomics),
//               so both readers of a tile sit on the same side of the L2
//   tok / hold  the rest of a GEMM stage: a 128-row token box (L2-resident) and a consumer that
//               holds each stage for the MMA's time (clock64 cycles)
// against a plain 16-byte-load read of the same buffer. Prints TB/s of unique bytes.
// Results: bench/results/h100-2026-11-23g-dram-weight-stream.txt.
// Build: nvcc -std=c++17 -O3 -gencode arch=compute_90a,code=sm_90a -Isrc \
//          dev/dram_weight_stream_bench.cu -o dram_weight_stream_bench
#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <vector>

#include "dev_cuda_check.h"
#include "dev_read_ceiling.h"
#include "cuda/ptx/mbarrier.h"
#include "cuda/ptx/tma.h"
#include "dev_cluster_ptx.h"
#include "dev_timing.h"

namespace {

using namespace ramp::cuda;

constexpr int kRowBytes = 128;
constexpr int kMaxStages = 12;
constexpr size_t kBufferBytes = size_t{4} << 30;

enum Mode { kCounter = 0, kStatic = 1, kMulticast = 2, kSides = 3 };

struct Params {
  CUtensorMap map;
  int packed;       // 0: [rows, K] row-major; 1: box after box
  int box_rows;     // rows per box (= rows per tile)
  int k_blocks;     // K / 64
  int num_tiles;    // rows / box_rows
  int readers;      // CTAs per tile
  int stages;
  int mode;
  int* counters;          // kCounter: [0]; kSides: [side]
  const int* side_of_sm;  // kSides
  // The rest of a GEMM stage: a 128-row token box from a small (L2-resident) tensor, and the
  // consumer holding each stage for hold_cycles (the 128x256x64 MMA: ~1400 cycles at 1980 MHz).
  CUtensorMap token_map;
  int token_rows;   // 0 or 128
  int hold_cycles;
};

__device__ __forceinline__ int sm_id() {
  int id;
  asm volatile("mov.u32 %0, %%smid;" : "=r"(id));
  return id;
}

// The j-th tile of this CTA, or -1 when it has no more.
__device__ __forceinline__ int next_tile(const Params& p, int j) {
  if (p.mode == kCounter) {
    const int tile = atomicAdd(&p.counters[0], 1) / p.readers;
    return tile < p.num_tiles ? tile : -1;
  }
  if (p.mode == kSides) {
    const int side = p.side_of_sm[sm_id()];
    const int tile = 2 * (atomicAdd(&p.counters[side], 1) / p.readers) + side;
    return tile < p.num_tiles ? tile : -1;
  }
  const int groups = static_cast<int>(gridDim.x) / p.readers;
  const int tile = static_cast<int>(blockIdx.x) / p.readers + j * groups;
  return tile < p.num_tiles ? tile : -1;
}

// Multicast: readers = 2 = the cluster; both CTAs walk the same static tiles, each loading half
// of every box into both, and a stage is free when both CTAs' consumers have released it.
template <bool kCluster>
__global__ void __launch_bounds__(64, 1) stream_weights(const __grid_constant__ Params p) {
  extern __shared__ __align__(1024) uint8_t shared[];
  const int weight_bytes = p.box_rows * kRowBytes;
  const int stage_bytes = weight_bytes + p.token_rows * kRowBytes;
  uint64_t* full = reinterpret_cast<uint64_t*>(shared + p.stages * stage_bytes);
  uint64_t* empty = full + kMaxStages;
  int* tile_of_stage = reinterpret_cast<int*>(empty + kMaxStages);
  const uint32_t rank = kCluster ? dev::cluster_rank() : 0;
  if (threadIdx.x == 0) {
    for (int s = 0; s < p.stages; ++s) {
      ptx::mbarrier_init(&full[s], 1);
      ptx::mbarrier_init(&empty[s], kCluster ? 2 : 1);
    }
    ptx::fence_mbarrier_init();
  }
  __syncthreads();
  if constexpr (kCluster) dev::cluster_sync();
  if (threadIdx.x == 0) {
    ptx::tma_prefetch_descriptor(&p.map);
    const uint32_t base = ptx::smem_address(shared);
    int i = 0;
    auto next_stage = [&](int* stage) {
      *stage = i % p.stages;
      if (i >= p.stages) ptx::mbarrier_wait_parity(&empty[*stage], ((i / p.stages) - 1) & 1);
    };
    for (int j = 0;; ++j) {
      const int tile = next_tile(p, j);
      if (tile < 0) break;
      for (int kb = 0; kb < p.k_blocks; ++kb, ++i) {
        int stage;
        next_stage(&stage);
        tile_of_stage[stage] = tile;
        ptx::mbarrier_arrive_expect_tx(&full[stage], stage_bytes);
        const uint32_t dst = base + stage * stage_bytes;
        const int row = p.packed ? (tile * p.k_blocks + kb) * p.box_rows : tile * p.box_rows;
        const int k = p.packed ? 0 : kb * 64;
        if constexpr (kCluster) {
          const int half = p.box_rows / 2;
          dev::tma_load_2d_multicast(dst + rank * half * kRowBytes, &p.map, &full[stage], k,
                                     row + static_cast<int>(rank) * half, 0x3);
        } else {
          ptx::tma_load_2d(dst, &p.map, &full[stage], k, row);
        }
        if (p.token_rows > 0) {  // token block (tile mod 8): the same 8 blocks over and over
          ptx::tma_load_2d(dst + weight_bytes, &p.token_map, &full[stage], kb * 64,
                           (tile % 8) * p.token_rows);
        }
      }
    }
    int stage;
    next_stage(&stage);
    tile_of_stage[stage] = -1;
    ptx::mbarrier_arrive(&full[stage]);
  } else if (threadIdx.x == 32) {
    for (int i = 0;; ++i) {
      const int stage = i % p.stages;
      ptx::mbarrier_wait_parity(&full[stage], (i / p.stages) & 1);
      if (tile_of_stage[stage] < 0) break;
      if (p.hold_cycles > 0) {
        const long long until = clock64() + p.hold_cycles;
        while (clock64() < until) {
        }
      }
      ptx::mbarrier_arrive(&empty[stage]);
      if constexpr (kCluster) dev::arrive_remote(&empty[stage], rank ^ 1);
    }
  }
  if constexpr (kCluster) dev::cluster_sync();
}

// Latency of 32 dependent atomics on one word from this SM, one CTA at a time (turn order), so
// the SMs do not disturb each other: SMs near the word's L2 side answer in ~300 cycles, the
// others in ~500 (session 12).
__global__ void measure_atomic_latency(int* word, int* turn, long long* cycles_of_sm) {
  if (threadIdx.x != 0) return;
  while (atomicAdd(turn, 0) != static_cast<int>(blockIdx.x)) {
  }
  int value = 0;
  const long long start = clock64();
  for (int i = 0; i < 32; ++i) value = atomicAdd(word, value & 1);
  const long long cycles = clock64() - start;
  cycles_of_sm[sm_id()] = cycles + (value & 0);
  __threadfence();
  atomicAdd(turn, 1);
}

template <class F>
float median_ms(F&& launch, int reps) {
  return dev::sorted_event_times_ms(1, reps, launch)[reps / 2];
}

}  // namespace

int main() {
  cudaDeviceProp prop;
  DEV_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  const int num_sms = prop.multiProcessorCount;
  void* buffer = nullptr;
  int* counters = nullptr;
  DEV_CUDA_CHECK(cudaMalloc(&buffer, kBufferBytes));
  DEV_CUDA_CHECK(cudaMalloc(&counters, 4 * sizeof(int)));
  DEV_CUDA_CHECK(cudaMemset(buffer, 0x3c, kBufferBytes));
  const int reps = 5;
  std::printf("# %s, %d SMs, %zu MiB streamed once per launch; TB/s of unique bytes\n", prop.name,
              num_sms, kBufferBytes >> 20);

  // L2 side of every SM.
  const int sm_slots = 1024;
  long long* cycles_dev = nullptr;
  int* side_dev = nullptr;
  DEV_CUDA_CHECK(cudaMalloc(&cycles_dev, sm_slots * sizeof(long long)));
  DEV_CUDA_CHECK(cudaMalloc(&side_dev, sm_slots * sizeof(int)));
  DEV_CUDA_CHECK(cudaMemset(counters, 0, 4 * sizeof(int)));
  const int one_per_sm = 200 * 1024;
  DEV_CUDA_CHECK(cudaFuncSetAttribute(measure_atomic_latency,
                                      cudaFuncAttributeMaxDynamicSharedMemorySize, one_per_sm));
  measure_atomic_latency<<<num_sms, 32, one_per_sm>>>(counters, counters + 1, cycles_dev);
  DEV_CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<long long> cycles(num_sms);
  DEV_CUDA_CHECK(cudaMemcpy(cycles.data(), cycles_dev, num_sms * sizeof(long long), cudaMemcpyDeviceToHost));
  const long long lo = *std::min_element(cycles.begin(), cycles.end());
  const long long hi = *std::max_element(cycles.begin(), cycles.end());
  std::vector<int> side(sm_slots, 0);
  int far = 0;
  for (int sm = 0; sm < num_sms; ++sm) {
    side[sm] = cycles[sm] * 2 > lo + hi ? 1 : 0;
    far += side[sm];
  }
  DEV_CUDA_CHECK(cudaMemcpy(side_dev, side.data(), sm_slots * sizeof(int), cudaMemcpyHostToDevice));
  std::printf("# 32 dependent atomics: %lld..%lld cycles; %d SMs near, %d far\n", lo, hi,
              num_sms - far, far);

  const float read_ms = median_ms(
      [&] {
        dev::read_all<<<num_sms * 4, 512>>>(static_cast<const int4*>(buffer), kBufferBytes / 16, counters);
      },
      reps);
  std::printf("%-30s %8.3f ms %6.3f TB/s\n", "16-byte loads (ld.cs)", read_ms,
              kBufferBytes / (read_ms * 1e-3) / 1e12);

  struct Case {
    int packed, k, box_rows, readers, stages, mode, token_rows = 0, hold = 0;
  };
  const char* mode_names[] = {"counter", "static", "multicast", "sides"};
  const Case cases[] = {
      {0, 4096, 256, 1, 4, kCounter}, {0, 4096, 256, 2, 4, kCounter}, {0, 4096, 256, 2, 4, kStatic},
      {0, 4096, 256, 1, 4, kCounter, 128, 0}, {0, 4096, 256, 2, 4, kCounter, 128, 0},
      {0, 4096, 256, 1, 4, kCounter, 128, 700}, {0, 4096, 256, 2, 4, kCounter, 128, 700},
      {0, 4096, 256, 1, 4, kCounter, 128, 1000}, {0, 4096, 256, 2, 4, kCounter, 128, 1000},
      {0, 4096, 256, 1, 4, kCounter, 128, 1400}, {0, 4096, 256, 2, 4, kCounter, 128, 1400},
      {0, 4096, 256, 2, 4, kStatic, 128, 1400}, {0, 4096, 256, 2, 4, kMulticast, 128, 1400},
      {0, 4096, 256, 1, 4, kCounter, 0, 1400}, {0, 4096, 256, 2, 4, kCounter, 0, 1400},
  };
  for (const Case& c : cases) {
    Params p{};
    p.packed = c.packed;
    p.box_rows = c.box_rows;
    p.k_blocks = c.k / 64;
    const uint64_t rows = kBufferBytes / (2 * uint64_t(c.k));
    p.num_tiles = static_cast<int>(rows / c.box_rows);
    p.readers = c.readers;
    p.stages = c.stages;
    p.mode = c.mode;
    p.counters = counters;
    p.side_of_sm = side_dev;
    p.token_rows = c.token_rows;
    p.hold_cycles = c.hold;
    {
      const uint64_t dims[2] = {static_cast<uint64_t>(c.k), 8 * 128};
      const uint64_t strides[1] = {2 * static_cast<uint64_t>(c.k)};
      const uint32_t token_box[2] = {64, 128};
      if (!ptx::encode_bf16_tile_map_swizzle128(&p.token_map, buffer, 2, dims, strides, token_box)) {
        std::printf("token tensor map rejected\n");
        return 1;
      }
    }
    const bool cluster = c.mode == kMulticast;
    const uint32_t box[2] = {64, static_cast<uint32_t>(cluster ? c.box_rows / 2 : c.box_rows)};
    bool ok;
    if (c.packed) {
      const uint64_t dims[2] = {64, kBufferBytes / kRowBytes};
      const uint64_t strides[1] = {kRowBytes};
      ok = ptx::encode_bf16_tile_map_swizzle128(&p.map, buffer, 2, dims, strides, box);
    } else {
      const uint64_t dims[2] = {static_cast<uint64_t>(c.k), rows};
      const uint64_t strides[1] = {2 * static_cast<uint64_t>(c.k)};
      ok = ptx::encode_bf16_tile_map_swizzle128(&p.map, buffer, 2, dims, strides, box);
    }
    if (!ok) {
      std::printf("tensor map rejected\n");
      return 1;
    }
    const int smem = c.stages * (c.box_rows + c.token_rows) * kRowBytes + 1024;
    DEV_CUDA_CHECK(cudaFuncSetAttribute(stream_weights<false>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    DEV_CUDA_CHECK(cudaFuncSetAttribute(stream_weights<true>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    DEV_CUDA_CHECK(cudaFuncSetAttribute(stream_weights<true>, cudaFuncAttributeNonPortableClusterSizeAllowed, 1));
    const size_t bytes = uint64_t(p.num_tiles) * c.box_rows * c.k * 2;
    const float ms = median_ms(
        [&] {
          DEV_CUDA_CHECK(cudaMemsetAsync(counters, 0, 4 * sizeof(int)));
          cudaLaunchAttribute attribute;
          const cudaLaunchConfig_t config = dev::cluster_launch_config(
              dim3(num_sms), dim3(64), smem, cluster ? 2 : 1, &attribute);
          DEV_CUDA_CHECK(cudaLaunchKernelEx(
              &config, cluster ? stream_weights<true> : stream_weights<false>, p));
        },
        reps);
    char name[64];
    std::snprintf(name, sizeof(name), "%s K=%d box %d r%d s%d %s tok%d hold%d",
                  c.packed ? "packed" : "rowmajor", c.k, c.box_rows, c.readers, c.stages,
                  mode_names[c.mode], c.token_rows, c.hold);
    std::printf("%-52s %8.3f ms %6.3f TB/s  %5.1f us/stage\n", name, ms, bytes / (ms * 1e-3) / 1e12,
                ms * 1e3 / (double(p.num_tiles) * c.readers * p.k_blocks / num_sms));
  }
  return 0;
}
