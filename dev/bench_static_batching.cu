// Dev benchmark: the static batching grouped GEMM on the seed004 case (T=4096, E=64, k=8,
// N=3584, K=2560) for several routings, against the same-run cuBLAS bf16 8192^3 rate.
// Usage: bench_static_batching [reps=20] [configs: list of -1 (builtin) or 0..5]
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "dev_cuda_check.h"
#include "dev_timing.h"
#include "core/plan.h"
#include "cuda/static_batching.h"
#include "dispatch/builtin_configs.h"
#include "dispatch/config_selection.h"
#include "workloads/routing.h"

using namespace ramp;

template <class F>
double median_ms(int reps, F&& launch) {
  return dev::sorted_event_times_ms(3, reps, launch)[reps / 2];
}

__global__ void fill_bf16(__nv_bfloat16* data, size_t n, uint32_t seed, float scale) {
  for (size_t i = blockIdx.x * size_t{blockDim.x} + threadIdx.x; i < n; i += size_t{gridDim.x} * blockDim.x) {
    uint32_t h = static_cast<uint32_t>(i) * 2654435761u ^ seed;
    h ^= h >> 13; h *= 0x5bd1e995u; h ^= h >> 15;
    data[i] = __float2bfloat16((static_cast<float>(h & 0xffff) / 65535.0f * 2.0f - 1.0f) * scale);
  }
}

double cublas_tflops(int reps) {
  const int n = 8192;
  __nv_bfloat16 *a, *b, *c;
  DEV_CUDA_CHECK(cudaMalloc(&a, size_t{n} * n * 2));
  DEV_CUDA_CHECK(cudaMalloc(&b, size_t{n} * n * 2));
  DEV_CUDA_CHECK(cudaMalloc(&c, size_t{n} * n * 2));
  fill_bf16<<<1024, 256>>>(a, size_t{n} * n, 1, 1.0f);
  fill_bf16<<<1024, 256>>>(b, size_t{n} * n, 2, 1.0f);
  cublasHandle_t handle;
  cublasCreate(&handle);
  const float alpha = 1, beta = 0;
  const double ms = median_ms(reps, [&] {
    cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, n, n, n, &alpha, a, CUDA_R_16BF, n, b,
                 CUDA_R_16BF, n, &beta, c, CUDA_R_16BF, n, CUBLAS_COMPUTE_32F,
                 CUBLAS_GEMM_DEFAULT);
  });
  cublasDestroy(handle);
  cudaFree(a); cudaFree(b); cudaFree(c);
  return 2.0 * n * n * double(n) / (ms * 1e-3) / 1e12;
}

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::atoi(argv[1]) : 20;
  std::vector<int> configs;
  for (int i = 2; i < argc; ++i) configs.push_back(std::atoi(argv[i]));
  if (configs.empty()) configs = {-1};
  const int T = 4096, E = 64, k = 8, N = 3584, K = 2560;
  const int64_t S = int64_t{T} * k;

  const double cublas = cublas_tflops(reps);
  std::printf("cuBLAS bf16 8192^3: %.1f TFLOP/s\n", cublas);

  __nv_bfloat16 *x, *w, *y;
  DEV_CUDA_CHECK(cudaMalloc(&x, size_t{T} * K * 2));
  DEV_CUDA_CHECK(cudaMalloc(&w, size_t{E} * N * K * 2));
  DEV_CUDA_CHECK(cudaMalloc(&y, size_t(S) * N * 2));
  fill_bf16<<<1024, 256>>>(x, size_t{T} * K, 3, 1.0f);
  fill_bf16<<<1024, 256>>>(w, size_t{E} * N * K, 4, 0.05f);
  DEV_CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<__nv_bfloat16> x_host(size_t{T} * K);
  DEV_CUDA_CHECK(cudaMemcpy(x_host.data(), x, x_host.size() * 2, cudaMemcpyDeviceToHost));

  std::printf("%-10s %-8s %6s %9s %9s %7s %10s\n", "routing", "config", "tiles", "ms", "TFLOP/s",
              "vs_cub", "spot_err");
  for (const std::string routing_name : {"balanced", "hot", "worst", "zipf1.0"}) {
    workloads::RoutingSpec spec;
    workloads::RoutingSpec::parse(routing_name, &spec);
    const workloads::Routing routing = workloads::generate_routing(spec, T, E, k, 42);
    for (const int config : configs) {
      GroupedGemmArgs args;
      args.num_tokens = T; args.top_k = k; args.num_experts = E;
      args.out_features = N; args.in_features = K;
      args.topk_ids = routing.topk_ids.data();
      Plan plan;
      const Status st = dispatch::build_grouped_gemm_plan(args, ExpertOrder::kHalfInterval,
                                                          dispatch::kDefaultSmCount, config, &plan);
      if (!st.is_ok()) { std::printf("plan: %s\n", st.to_string().c_str()); return 1; }
      const auto bytes = plan.bytes();
      void* plan_dev;
      DEV_CUDA_CHECK(cudaMalloc(&plan_dev, bytes.size()));
      DEV_CUDA_CHECK(cudaMemcpy(plan_dev, bytes.data(), bytes.size(), cudaMemcpyHostToDevice));
      const PlanLayout layout = plan_layout(E, int32_t(S), 1);
      cuda::StaticBatchedGemm gemm{};
      gemm.epilogue = cuda::GemmEpilogue::kStoreBySlot;
      gemm.routing = routing_view_at(static_cast<char*>(plan_dev) + layout.routing, E, k, int32_t(S));
      gemm.task_map = task_map_view_at(static_cast<char*>(plan_dev) + layout.task_maps[0],
                                       plan.task_map(0).max_tasks);
      gemm.a = x; gemm.a_row_stride = K; gemm.w = w;
      gemm.out_features = N; gemm.in_features = K;
      gemm.out = y; gemm.out_row_stride = N;
      gemm.max_total_tiles = plan.task_map(0).header->total_tiles;
      DEV_CUDA_CHECK(cudaMemset(y, 0xff, size_t(S) * N * 2));
      const Status launched = cuda::launch_static_batched_gemm(gemm, nullptr);
      if (!launched.is_ok()) { std::printf("launch: %s\n", launched.to_string().c_str()); return 1; }
      DEV_CUDA_CHECK(cudaDeviceSynchronize());
      // Spot check: 16 slots x all N in double.
      double err = 0, norm = 0;
      std::vector<__nv_bfloat16> w_row(K), y_row(N);
      for (int i = 0; i < 16; ++i) {
        const int64_t slot = (int64_t{i} * 2053 + 7) % S;
        const int e = routing.topk_ids[slot];
        DEV_CUDA_CHECK(cudaMemcpy(y_row.data(), y + slot * N, N * 2, cudaMemcpyDeviceToHost));
        for (int n = 0; n < N; n += 7) {
          DEV_CUDA_CHECK(cudaMemcpy(w_row.data(), w + (int64_t{e} * N + n) * K, K * 2, cudaMemcpyDeviceToHost));
          double acc = 0;
          for (int kk = 0; kk < K; ++kk)
            acc += double(__bfloat162float(x_host[(slot / k) * K + kk])) * __bfloat162float(w_row[kk]);
          const double got = __bfloat162float(y_row[n]);
          err += (got - acc) * (got - acc);
          norm += acc * acc;
        }
      }
      const double ms = median_ms(reps, [&] { (void)cuda::launch_static_batched_gemm(gemm, nullptr); });
      DEV_CUDA_CHECK(cudaGetLastError());
      const double tflops = 2.0 * double(S) * N * K / (ms * 1e-3) / 1e12;
      std::printf("%-10s %-8d %6d %9.3f %9.1f %7.3f %10.2e\n", routing_name.c_str(), config,
                  gemm.max_total_tiles, ms, tflops, tflops / cublas, std::sqrt(err / norm));
      cudaFree(plan_dev);
    }
  }
  return 0;
}
