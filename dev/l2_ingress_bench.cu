// Dev microbenchmark: how fast can one SM be fed from L2 when every SM pulls at once?
//
// Sessions 11-13 (dev/kernel_notes.md) found the gathered GEMMs bound at ~57 GB/s of L2 -> SM
// ingress per SM (cuBLAS's 8192^3 kernel: 67.5 GB/s with 1x2 multicast), and no explanation in
// any one L2 unit. This streams TMA boxes from an L2-resident buffer into a stage ring shaped
// like the 128x256x64 GEMM stage (a 128-row "token" box + a 256-row "weight" box) with no MMA,
// so what it measures is the feed alone:
//   - stages, stage shape (rows of each box), CTAs launched;
//   - consumers that hold each stage for a fixed number of cycles (standing in for the wgmma);
//   - the weight box multicast across a cluster of 2 (each CTA loads half of it for both), as
//     cuBLAS does.
// Build (sm_90a):
//   nvcc -std=c++17 -O3 -gencode arch=compute_90a,code=sm_90a -Isrc \
//        dev/l2_ingress_bench.cu -o l2_ingress_bench
// Run: l2_ingress_bench [iterations per CTA] -> one line per variant.
// Known defect: ptxas serialises the MMA consumer's wgmmas (C7515, a WARPGROUP.DEPBAR after each
// HGMMA); the "mma" rows are a lower bound (dev/kernel_notes.md, session 15).
#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

#include "dev_cuda_check.h"
#include "cuda/ptx/mbarrier.h"
#include "cuda/ptx/tma.h"
#include "cuda/ptx/wgmma.h"
#include "dev_cluster_ptx.h"
#include "dev_timing.h"

namespace {

using namespace ramp::cuda;
using dev::arrive_remote;
using dev::cluster_rank;
using dev::cluster_sync;
using dev::tma_load_2d_multicast;

constexpr int kRowBytes = 128;  // 64 bf16 of k: one 128-byte swizzle row
constexpr int kMaxStages = 8;
constexpr int kThreads = 384;   // one producer warpgroup, two consumer warpgroups (as the GEMM)
constexpr int kConsumerWarps = 8;
constexpr int kBufferRows = 4096;   // 4096 rows x 4096 k x 2 B = 32 MiB: L2-resident after warm-up
constexpr int kBufferK = 4096;

// One row of the table in main: what the ring and its consumers do.
struct Variant {
  const char* name;
  int stages;
  int token_rows;       // 0: no token box
  int weight_rows;      // rows of the weight part of a stage (256 or 0)
  int multicast;        // 1: clusters of 2 share the weight part
  int hold_cycles;      // consumers keep each stage this long after it is full
  int ctas;
  int hold_jitter = 0;  // plus 0..hold_jitter-1 cycles, varying by CTA and stage
  int tile_stages = 1;  // every tile_stages stages the consumers also pause for
  int epilogue_cycles = 0;  // this long (an epilogue), 0: never
  int mma = 0;  // consumers run the 128x256x64 wgmma mainloop (hold_cycles unused)
  int sleep_epilogue = 0;   // MMA mode: the pause is __nanosleep(epilogue_cycles / 2)
                            // instead of a clock64 spin
  int drain_every = 0;  // MMA mode: wgmma_wait_group<0> every this many stages (0: never),
  int drain_mode = 0;   // in both warpgroups (0), only warpgroup 0 (1), or warpgroup 1 half
                        // a period later (2)
};

struct Params {
  CUtensorMap weight_map;  // box 64 k x weight_box_rows
  CUtensorMap token_map;   // box 64 k x v.token_rows
  Variant v;
  int weight_box_rows;     // rows per weight box load (v.weight_rows, or half of it multicast)
  int iterations;
  float* sink;             // MMA mode: one value per CTA, so the MMAs are not dropped
};

// Spins for `cycles` (the consumers' stand-in for work).
__device__ __forceinline__ void spin(int cycles) {
  if (cycles <= 0) return;
  const long long until = clock64() + cycles;
  while (clock64() < until) {
  }
}

// One value per (CTA, stage), the same in every consumer thread: a cheap integer hash.
__device__ __forceinline__ int jitter_of(int stage_index, int jitter) {
  if (jitter <= 0) return 0;
  uint32_t h = blockIdx.x * 0x9E3779B9u ^ static_cast<uint32_t>(stage_index) * 0x85EBCA6Bu;
  h ^= h >> 13;
  h *= 0xC2B2AE35u;
  h ^= h >> 16;
  return static_cast<int>(h % static_cast<uint32_t>(jitter));
}

// kMma: the consumers run the GEMM's 128x256x64 mainloop on each stage (warpgroup w: token
// rows 64w..64w+63 x the 256 weight rows, 4 x m64n256k16, wait_group<1>, the previous stage
// released), holding no extra cycles; needs token_rows = 128, weight_rows = 256.
template <bool kMulticast, bool kMma>
__global__ void __launch_bounds__(kThreads, 1) stream_kernel(const __grid_constant__ Params p) {
  extern __shared__ __align__(1024) uint8_t shared[];
  const int token_bytes = p.v.token_rows * kRowBytes;
  const int weight_bytes = p.v.weight_rows * kRowBytes;
  const int stage_bytes = token_bytes + weight_bytes;
  uint64_t* full = reinterpret_cast<uint64_t*>(shared + p.v.stages * stage_bytes);
  uint64_t* empty = full + kMaxStages;
  const uint32_t rank = kMulticast ? cluster_rank() : 0;
  if (threadIdx.x == 0) {
    for (int s = 0; s < p.v.stages; ++s) {
      ptx::mbarrier_init(&full[s], 1);
      ptx::mbarrier_init(&empty[s], kMulticast ? 2 * kConsumerWarps : kConsumerWarps);
    }
    ptx::fence_mbarrier_init();
  }
  __syncthreads();
  if constexpr (kMulticast) cluster_sync();

  // Which rows a CTA reads: weight rows follow the cluster (both CTAs of a pair read the same
  // ones), token rows the CTA; both walk the buffer so that nothing repeats within a few stages.
  const int pair = kMulticast ? static_cast<int>(blockIdx.x / 2) : static_cast<int>(blockIdx.x);
  if (threadIdx.x == 0) {
    const uint32_t base = ptx::smem_address(shared);
    for (int i = 0; i < p.iterations; ++i) {
      const int stage = i % p.v.stages;
      if (i >= p.v.stages) {
        ptx::mbarrier_wait_parity(&empty[stage], ((i / p.v.stages) - 1) & 1);
      }
      ptx::mbarrier_arrive_expect_tx(&full[stage], stage_bytes);
      const uint32_t stage_base = base + stage * stage_bytes;
      const int k = (i % (kBufferK / 64)) * 64;
      const int step = i / (kBufferK / 64);
      if (p.v.weight_rows > 0) {
        const int weight_row = ((pair * 7 + step) * p.v.weight_rows) % kBufferRows;
        if constexpr (kMulticast) {
          const uint32_t half = rank * p.weight_box_rows * kRowBytes;
          tma_load_2d_multicast(stage_base + half, &p.weight_map, &full[stage], k,
                                weight_row + rank * p.weight_box_rows, 0x3);
        } else {
          ptx::tma_load_2d(stage_base, &p.weight_map, &full[stage], k, weight_row);
        }
      }
      if (p.v.token_rows > 0) {
        const int token_row =
            ((static_cast<int>(blockIdx.x) * 13 + step * 3) * p.v.token_rows) % kBufferRows;
        ptx::tma_load_2d(stage_base + weight_bytes, &p.token_map, &full[stage], k, token_row);
      }
    }
  } else if (threadIdx.x >= 128 && kMma) {
    const bool leader = (threadIdx.x & 31) == 0;
    const int consumer_wg = static_cast<int>(threadIdx.x / 128) - 1;
    const uint32_t base = ptx::smem_address(shared);
    auto release = [&](int stage) {
      if (leader) {
        ptx::mbarrier_arrive(&empty[stage]);
        if constexpr (kMulticast) arrive_remote(&empty[stage], rank ^ 1);
      }
    };
    float acc[128];
#pragma unroll
    for (int j = 0; j < 128; ++j) acc[j] = 0.0f;
    int previous = -1;
    for (int i = 0; i < p.iterations; ++i) {
      const int stage = i % p.v.stages;
      ptx::mbarrier_wait_parity(&full[stage], (i / p.v.stages) & 1);
      const uint32_t stage_base = base + stage * stage_bytes;
      const uint64_t desc_b = ptx::make_smem_desc_k_major_swizzle128(stage_base);
      const uint64_t desc_a = ptx::make_smem_desc_k_major_swizzle128(
          stage_base + weight_bytes + consumer_wg * 64 * kRowBytes);
#pragma unroll
      for (int j = 0; j < 128; ++j) ptx::wgmma_fence_operand(acc[j]);
      ptx::wgmma_fence();
#pragma unroll
      for (int k16 = 0; k16 < 4; ++k16) {
        ptx::Wgmma<256>::mma(acc, desc_a + 2 * k16, desc_b + 2 * k16, true);
      }
      ptx::wgmma_commit_group();
#pragma unroll
      for (int j = 0; j < 128; ++j) ptx::wgmma_fence_operand(acc[j]);
      ptx::wgmma_wait_group<1>();
      if (previous >= 0) release(previous);
      previous = stage;
      if (p.v.drain_every > 0) {
        const int offset = (p.v.drain_mode == 2 && consumer_wg == 1) ? p.v.drain_every / 2 : 0;
        const bool drains = p.v.drain_mode != 1 || consumer_wg == 0;
        if (drains && (i + offset) % p.v.drain_every == p.v.drain_every - 1) {
          ptx::wgmma_wait_group<0>();
#pragma unroll
          for (int j = 0; j < 128; ++j) ptx::wgmma_fence_operand(acc[j]);
        }
      }
      if (p.v.epilogue_cycles > 0 && i % p.v.tile_stages == p.v.tile_stages - 1) {
        ptx::wgmma_wait_group<0>();
#pragma unroll
        for (int j = 0; j < 128; ++j) ptx::wgmma_fence_operand(acc[j]);
        const int pause = p.v.epilogue_cycles + jitter_of(i, p.v.hold_jitter);
        if (p.v.sleep_epilogue) {
          __nanosleep(static_cast<unsigned>(pause / 2));
        } else {
          spin(pause);
        }
      }
    }
    ptx::wgmma_wait_group<0>();
    if (previous >= 0) release(previous);
#pragma unroll
    for (int j = 0; j < 128; ++j) ptx::wgmma_fence_operand(acc[j]);
    float total = 0.0f;
#pragma unroll
    for (int j = 0; j < 128; ++j) total += acc[j];
    if (total == 12345.0f) p.sink[blockIdx.x] = total;  // practically never: keeps the MMAs
  } else if (threadIdx.x >= 128) {
    const bool leader = (threadIdx.x & 31) == 0;
    for (int i = 0; i < p.iterations; ++i) {
      const int stage = i % p.v.stages;
      ptx::mbarrier_wait_parity(&full[stage], (i / p.v.stages) & 1);
      int hold = p.v.hold_cycles + jitter_of(i, p.v.hold_jitter);
      if (p.v.epilogue_cycles > 0 && i % p.v.tile_stages == p.v.tile_stages - 1) {
        hold += p.v.epilogue_cycles;
      }
      spin(hold);
      __syncwarp();
      if (leader) {
        ptx::mbarrier_arrive(&empty[stage]);
        if constexpr (kMulticast) arrive_remote(&empty[stage], rank ^ 1);
      }
    }
  }
  // A CTA's shared memory must outlive its peer's last multicast into it and remote arrivals.
  if constexpr (kMulticast) cluster_sync();
}

CUtensorMap make_map(void* base, int box_rows) {
  CUtensorMap map{};
  const cuuint64_t dims[2] = {kBufferK, kBufferRows};
  const cuuint64_t strides[1] = {kBufferK * 2};
  const cuuint32_t box[2] = {64, static_cast<cuuint32_t>(box_rows)};
  const cuuint32_t element_strides[2] = {1, 1};
  auto encode = ptx::encode_tiled_entry_point();
  if (encode == nullptr) {
    std::fprintf(stderr, "no cuTensorMapEncodeTiled\n");
    std::exit(1);
  }
  const CUresult r = encode(&map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, base, dims, strides, box,
                            element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE,
                            CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                            CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS) {
    std::fprintf(stderr, "encode failed %d\n", static_cast<int>(r));
    std::exit(1);
  }
  return map;
}


}  // namespace

int main(int argc, char** argv) {
  const int iterations = argc > 1 ? std::atoi(argv[1]) : 3000;
  int sms = 0;
  DEV_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  void* buffer = nullptr;
  const size_t buffer_bytes = size_t{kBufferRows} * kBufferK * 2;
  DEV_CUDA_CHECK(cudaMalloc(&buffer, buffer_bytes));
  DEV_CUDA_CHECK(cudaMemset(buffer, 0, buffer_bytes));
  float* sink = nullptr;
  DEV_CUDA_CHECK(cudaMalloc(&sink, 1024 * sizeof(float)));

  const int all = sms;
  const Variant variants[] = {
      // the GEMM's stage: 128 token rows + 256 weight rows, 4 stages
      {"gemm-stage 4x48K", 4, 128, 256, 0, 0, all},
      {"gemm-stage 3x48K", 3, 128, 256, 0, 0, all},
      {"gemm-stage 2x48K", 2, 128, 256, 0, 0, all},
      {"weights-only 4x32K", 4, 0, 256, 0, 0, all},
      {"weights-only 6x32K", 6, 0, 256, 0, 0, all},
      {"tokens-only 8x16K", 8, 128, 0, 0, 0, all},
      {"gemm-stage 4x48K hold 600", 4, 128, 256, 0, 600, all},
      {"gemm-stage 4x48K hold 1000", 4, 128, 256, 0, 1000, all},
      {"gemm-stage 4x48K multicast", 4, 128, 256, 1, 0, all},
      {"gemm-stage 4x48K multicast hold 1000", 4, 128, 256, 1, 1000, all},
      {"weights-only 4x32K multicast", 4, 0, 256, 1, 0, all},
      {"256+256 rows 3x64K", 3, 256, 256, 0, 0, all},
      {"256+256 rows 3x64K multicast", 3, 256, 256, 1, 0, all},
      // A GEMM-like consumer: ~1000 cycles of MMA per stage, jitter, a 3500-cycle epilogue per
      // 40-stage tile (seed004: K = 2560), with and without multicast.
      {"hold 1000 jitter 300", 4, 128, 256, 0, 1000, all, 300},
      {"hold 1000 jitter 300 multicast", 4, 128, 256, 1, 1000, all, 300},
      {"hold 1000 jitter 1000", 4, 128, 256, 0, 1000, all, 1000},
      {"hold 1000 jitter 1000 multicast", 4, 128, 256, 1, 1000, all, 1000},
      {"hold 1000 j300 epi 3500/40", 4, 128, 256, 0, 1000, all, 300, 40, 3500},
      {"hold 1000 j300 epi 3500/40 multicast", 4, 128, 256, 1, 1000, all, 300, 40, 3500},
      {"hold 1000 j300 epi 3500/12", 4, 128, 256, 0, 1000, all, 300, 12, 3500},
      {"hold 1000 j300 epi 3500/12 multicast", 4, 128, 256, 1, 1000, all, 300, 12, 3500},
      {"hold 700 j300 epi 3500/40", 4, 128, 256, 0, 700, all, 300, 40, 3500},
      {"hold 700 j300 epi 3500/40 multicast", 4, 128, 256, 1, 700, all, 300, 40, 3500},
      // Ring depth under a GEMM-like hold, and a tile with 2x the FLOPs per stage (256x256:
      // 2000 cycles of MMA per 64 KB stage, 1/3 fewer bytes per FLOP).
      {"hold 1000 j300 3x48K", 3, 128, 256, 0, 1000, all, 300},
      {"hold 1000 j300 2x48K", 2, 128, 256, 0, 1000, all, 300},
      {"hold 2000 j600 256+256 3x64K", 3, 256, 256, 0, 2000, all, 600},
      {"hold 2000 j600 256+256 3x64K multicast", 3, 256, 256, 1, 2000, all, 600},
      {"hold 2000 j600 256+256 2x64K", 2, 256, 256, 0, 2000, all, 600},
      {"hold 1000 j300 66 CTAs", 4, 128, 256, 0, 1000, all / 2, 300},
      // The real mainloop (MMA on every stage, no epilogue), then with a 3500-cycle pause per
      // 40 stages (seed004's tile: K = 2560) and jitter on it.
      {"mma 4x48K", 4, 128, 256, 0, 0, all, 0, 1, 0, 1},
      {"mma 4x48K multicast", 4, 128, 256, 1, 0, all, 0, 1, 0, 1},
      {"mma 3x48K", 3, 128, 256, 0, 0, all, 0, 1, 0, 1},
      {"mma 4x48K epi 3500/40 j500", 4, 128, 256, 0, 0, all, 500, 40, 3500, 1},
      {"mma 4x48K epi 3500/40 j500 multicast", 4, 128, 256, 1, 0, all, 500, 40, 3500, 1},
      {"mma 4x48K epi 3500/12 j500", 4, 128, 256, 0, 0, all, 500, 12, 3500, 1},
      {"mma 4x48K epi 3500/12 j500 multicast", 4, 128, 256, 1, 0, all, 500, 12, 3500, 1},
      {"mma 4x48K 66 CTAs", 4, 128, 256, 0, 0, all / 2, 0, 1, 0, 1},
      {"mma 4x48K drain only /40", 4, 128, 256, 0, 0, all, 0, 40, 1, 1},
      {"mma 4x48K epi 1750/40", 4, 128, 256, 0, 0, all, 0, 40, 1750, 1},
      {"mma 4x48K epi 3500/40", 4, 128, 256, 0, 0, all, 0, 40, 3500, 1},
      {"mma 4x48K epi 3500/40 sleep", 4, 128, 256, 0, 0, all, 0, 40, 3500, 1, 1},
      {"mma 4x48K epi 3500/40 66 CTAs", 4, 128, 256, 0, 0, all / 2, 0, 40, 3500, 1},
      {"mma 4x48K epi 7000/80", 4, 128, 256, 0, 0, all, 0, 80, 7000, 1},
      {"mma pure drain /40", 4, 128, 256, 0, 0, all, 0, 1, 0, 1, 0, 40, 0},
      {"mma pure drain /10", 4, 128, 256, 0, 0, all, 0, 1, 0, 1, 0, 10, 0},
      {"mma pure drain /160", 4, 128, 256, 0, 0, all, 0, 1, 0, 1, 0, 160, 0},
      {"mma pure drain /40 wg0 only", 4, 128, 256, 0, 0, all, 0, 1, 0, 1, 0, 40, 1},
      {"mma pure drain /40 staggered", 4, 128, 256, 0, 0, all, 0, 1, 0, 1, 0, 40, 2},
      {"mma pure drain /1", 4, 128, 256, 0, 0, all, 0, 1, 0, 1, 0, 1, 0},
      {"gemm-stage 4x48K 66 CTAs", 4, 128, 256, 0, 0, all / 2},
      {"gemm-stage 4x48K 33 CTAs", 4, 128, 256, 0, 0, all / 4},
      {"gemm-stage 4x48K 8 CTAs", 4, 128, 256, 0, 0, 8},
  };
  std::printf("# L2 -> SM ingress, %d SMs, %d stages per CTA, L2-resident 32 MiB buffer\n", sms,
              iterations);
  std::printf("%-40s %8s %10s %12s %10s %8s\n", "variant", "ms", "TB/s", "GB/s per SM", "us/stage",
              "TFLOP/s");
  for (const Variant& v : variants) {
    Params p{};
    p.v = v;
    p.weight_box_rows = v.multicast ? v.weight_rows / 2 : v.weight_rows;
    p.iterations = iterations;
    p.sink = sink;
    if (v.weight_rows > 0) p.weight_map = make_map(buffer, p.weight_box_rows);
    if (v.token_rows > 0) p.token_map = make_map(buffer, v.token_rows);
    const int stage_bytes = (v.token_rows + v.weight_rows) * kRowBytes;
    const int smem = v.stages * stage_bytes + 2 * kMaxStages * 8;
    cudaLaunchAttribute cluster;
    const cudaLaunchConfig_t config = dev::cluster_launch_config(
        dim3(static_cast<unsigned>(v.multicast ? v.ctas / 2 * 2 : v.ctas)), dim3(kThreads),
        static_cast<size_t>(smem), v.multicast ? 2 : 1, &cluster);
    auto kernel = v.multicast ? (v.mma ? &stream_kernel<true, true> : &stream_kernel<true, false>)
                              : (v.mma ? &stream_kernel<false, true> : &stream_kernel<false, false>);
    DEV_CUDA_CHECK(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    // Warm-up: the buffer into L2.
    const float best = dev::sorted_event_times_ms(1, 5, [&] {
      DEV_CUDA_CHECK(cudaLaunchKernelEx(&config, kernel, p));
    })[0];
    const double bytes = double(config.gridDim.x) * iterations * stage_bytes;
    const double flops = v.mma ? double(config.gridDim.x) * iterations * 2.0 * 128 * 256 * 64 : 0;
    std::printf("%-40s %8.3f %10.2f %12.1f %10.3f %8.1f\n", v.name, best, bytes / best / 1e9,
                bytes / best / 1e6 / config.gridDim.x, best * 1e3 / iterations,
                flops / best / 1e9);
  }
  DEV_CUDA_CHECK(cudaFree(buffer));
  DEV_CUDA_CHECK(cudaFree(sink));
  return 0;
}
