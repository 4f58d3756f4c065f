// Dev experiment: does giving an expert's last, mostly empty token block its own task with a
// small swapped tile pay? With the builtin rule an expert of m > 64 rows runs ceil(m / 128)
// blocks of the 128-row normal tile; at T = 2048 uniform, qwen3-30b-a3b's experts hold
// 128 +- 11 rows, so about half of them run a second block of 1..32 rows: 1.45x the rows' MMA
// and a second full read of the expert's weights through the SMs. Split, the tail of t <= max
// rows becomes a task of its own with the swapped config choose_builtin_config(t) (8..64
// tokens on the MMA N axis), i.e. the same kernel and launch, another plan.
//
// For each layer cell this times the layer's two GEMM launches (host plans, the builtin set,
// L2 flushed before every launch, variants interleaved launch by launch) for:
//   base      the builtin rule's plan (what the layer runs today; GEMM1's L2 group by rule)
//   adjacent  tails split, each tail task right after its expert's main task
//   at_end    tails split, all tail tasks after every main task (small tiles fill the last wave)
// and checks every variant's outputs against base's (relative L2 error, NaN-poisoned outputs).
//
// Build (after ninja -C build-gpu):
//   nvcc -std=c++20 -O3 -gencode arch=compute_90a,code=sm_90a -Iinclude -Isrc -Ibench -Idev \
//     dev/bench_tail_split.cu build-gpu/bench/libramp_bench.a build-gpu/src/cuda/libramp_cuda.a \
//     build-gpu/src/dispatch/libramp_dispatch.a build-gpu/src/workloads/libramp_workloads.a \
//     build-gpu/src/core/libramp_core.a -lcuda -o build-exp/bench_tail_split
// Results: bench/results/h100-2026-11-23g-tail-split.txt (splitting loses: 0.92-0.95x).
// Usage: bench_tail_split [repeats=15] [max_tail=64] [models=all] [tokens=512,2048,8192]
//                         [routings=uniform,zipf1.0]
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "core/plan.h"
#include "dev_cuda_check.h"
#include "cuda/static_batching.h"
#include "device_utils.h"
#include "dispatch/builtin_configs.h"
#include "dispatch/config_selection.h"
#include "workloads/models.h"
#include "workloads/routing.h"

using namespace ramp;

// Library calls return a Status; a failure prints it with where it happened and exits.
#define DEV_STATUS_CHECK(expr)                                                                \
  do {                                                                                        \
    const ramp::Status dev_status_ = (expr);                                                  \
    if (!dev_status_.is_ok()) {                                                               \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #expr,                     \
                   dev_status_.to_string().c_str());                                          \
      std::exit(1);                                                                           \
    }                                                                                         \
  } while (0)

namespace {

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> items;
  std::stringstream stream(text);
  std::string item;
  while (std::getline(stream, item, ',')) items.push_back(item);
  return items;
}

enum Variant { kBase = 0, kAdjacent = 1, kAtEnd = 2, kNumVariants = 3 };

// One task map with room for two tasks per expert, built from base's tasks.
std::vector<TaskDesc> split_tasks(const TaskMapView& base, Variant variant, int32_t max_tail) {
  std::vector<TaskDesc> mains, tails, ordered;
  for (int32_t t = 0; t < base.header->num_tasks; ++t) {
    const TaskDesc task = base.tasks[t];
    const TileConfig& config = dispatch::kBuiltinConfigs[task.config];
    const int32_t tail = task.row_count % config.token_tile;
    const bool split = variant != kBase && config.orientation == Orientation::kNormal &&
                       task.row_count > config.token_tile && tail > 0 && tail <= max_tail;
    if (!split) {
      mains.push_back(task);
      ordered.push_back(task);
      continue;
    }
    const TaskDesc main{task.expert, task.config, task.row_begin, task.row_count - tail};
    const TaskDesc rest{task.expert, dispatch::choose_builtin_config(tail, 0, 132),
                        task.row_begin + task.row_count - tail, tail};
    mains.push_back(main);
    tails.push_back(rest);
    ordered.push_back(main);
    ordered.push_back(rest);
  }
  if (variant == kAtEnd) {
    ordered = mains;
    ordered.insert(ordered.end(), tails.begin(), tails.end());
  }
  return ordered;
}

void write_task_map(const std::vector<TaskDesc>& tasks, int32_t out_features, TaskMapView map) {
  std::memset(map.tasks, 0, sizeof(TaskDesc) * map.max_tasks);
  std::memset(map.tile_prefix, 0, sizeof(int32_t) * map.max_tasks);
  std::memset(map.chunk_last, 0, sizeof(int32_t) * ceil_div(map.max_tasks, 32));
  int32_t running = 0;
  const int32_t num_tasks = static_cast<int32_t>(tasks.size());
  for (int32_t t = 0; t < num_tasks; ++t) {
    map.tasks[t] = tasks[t];
    running += dispatch::kBuiltinConfigs[tasks[t].config].tiles(tasks[t].row_count, out_features);
    map.tile_prefix[t] = running;
  }
  const int32_t chunks = ceil_div(num_tasks, 32);
  for (int32_t c = 0; c < chunks; ++c) {
    map.chunk_last[c] = map.tile_prefix[min_i32(c * 32 + 31, num_tasks - 1)];
  }
  *map.header = TaskMapHeader{num_tasks, running, chunks, 0};
}

__global__ void relative_error_parts(const bf16* got, const bf16* want, size_t count,
                                     double* sums) {
  double diff = 0, norm = 0, nan = 0;
  for (size_t i = blockIdx.x * size_t{blockDim.x} + threadIdx.x; i < count;
       i += size_t{gridDim.x} * blockDim.x) {
    const float g = __bfloat162float(reinterpret_cast<const __nv_bfloat16*>(got)[i]);
    const float w = __bfloat162float(reinterpret_cast<const __nv_bfloat16*>(want)[i]);
    if (isnan(g)) {
      nan += 1;
      continue;
    }
    diff += double(g - w) * double(g - w);
    norm += double(w) * double(w);
  }
  atomicAdd(&sums[0], diff);
  atomicAdd(&sums[1], norm);
  atomicAdd(&sums[2], nan);
}

struct Compare {
  double rel_error = 0, nans = 0;
};
Compare compare(const void* got, const void* want, size_t count, double* sums_dev) {
  DEV_CUDA_CHECK(cudaMemset(sums_dev, 0, 3 * sizeof(double)));
  relative_error_parts<<<1024, 256>>>(static_cast<const bf16*>(got), static_cast<const bf16*>(want),
                                      count, sums_dev);
  double sums[3];
  DEV_CUDA_CHECK(cudaMemcpy(sums, sums_dev, sizeof(sums), cudaMemcpyDeviceToHost));
  return {std::sqrt(sums[0] / std::max(sums[1], 1e-300)), sums[2]};
}

}  // namespace

int main(int argc, char** argv) {
  const int repeats = argc > 1 ? std::atoi(argv[1]) : 15;
  const int32_t max_tail = argc > 2 ? std::atoi(argv[2]) : 64;
  std::vector<std::string> model_names;
  if (argc > 3 && std::string(argv[3]) != "all") {
    model_names = split_list(argv[3]);
  } else {
    for (const auto& m : workloads::builtin_models()) model_names.push_back(m.name);
  }
  std::vector<int32_t> token_counts;
  for (const auto& t : split_list(argc > 4 ? argv[4] : "512,2048,8192")) {
    token_counts.push_back(std::atoi(t.c_str()));
  }
  const std::vector<std::string> routings = split_list(argc > 5 ? argv[5] : "uniform,zipf1.0");

  cudaDeviceProp prop;
  DEV_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  const int32_t num_sms = prop.multiProcessorCount;
  std::printf("# %s, %d SMs; repeats %d, max tail %d; times in us (median), ratio = base / variant\n",
              prop.name, num_sms, repeats, max_tail);
  std::printf("%-18s %5s %-8s %4s %6s %6s %9s %9s %9s %7s %7s %9s %9s\n", "model", "T", "routing",
              "gemm", "tasks", "split", "base", "adjacent", "at_end", "adj_x", "end_x", "err_adj",
              "err_end");

  bench::L2Flusher flusher;
  DEV_STATUS_CHECK(flusher.init());
  double* sums_dev = nullptr;
  DEV_CUDA_CHECK(cudaMalloc(&sums_dev, 3 * sizeof(double)));
  cudaEvent_t start, stop;
  DEV_CUDA_CHECK(cudaEventCreate(&start));
  DEV_CUDA_CHECK(cudaEventCreate(&stop));

  std::vector<double> log_ratio_sum(kNumVariants, 0.0);
  int cells = 0;
  for (const std::string& model_name : model_names) {
    const workloads::ModelShape* model = workloads::find_model(model_name);
    if (model == nullptr) {
      std::fprintf(stderr, "unknown model %s\n", model_name.c_str());
      return 2;
    }
    const MoeShape shape = model->shape;
    const int32_t E = shape.num_experts, k = shape.top_k, H = shape.hidden, I = shape.intermediate;
    const int32_t max_tokens = *std::max_element(token_counts.begin(), token_counts.end());
    const size_t max_slots = size_t(max_tokens) * k;
    bench::DeviceBuffer hidden, w13, w2, weights, intermediate[kNumVariants], slot_out[kNumVariants];
    DEV_STATUS_CHECK(hidden.allocate(size_t(max_tokens) * H * 2));
    DEV_STATUS_CHECK(w13.allocate(size_t(E) * 2 * I * H * 2));
    DEV_STATUS_CHECK(w2.allocate(size_t(E) * H * I * 2));
    DEV_STATUS_CHECK(weights.allocate(max_slots * 4));
    for (int v = 0; v < kNumVariants; ++v) {
      DEV_STATUS_CHECK(intermediate[v].allocate(max_slots * I * 2));
      DEV_STATUS_CHECK(slot_out[v].allocate(max_slots * H * 2));
    }
    DEV_STATUS_CHECK(bench::fill_random_bf16_device(hidden.as<bf16>(), size_t(max_tokens) * H, 1, 1.0f, nullptr));
    DEV_STATUS_CHECK(bench::fill_random_bf16_device(w13.as<bf16>(), size_t(E) * 2 * I * H, 2, 0.05f, nullptr));
    DEV_STATUS_CHECK(bench::fill_random_bf16_device(w2.as<bf16>(), size_t(E) * H * I, 3, 0.05f, nullptr));

    for (const int32_t T : token_counts) {
      for (const std::string& routing_name : routings) {
        workloads::RoutingSpec spec;
        if (!workloads::RoutingSpec::parse(routing_name, &spec)) {
          std::fprintf(stderr, "unknown routing %s\n", routing_name.c_str());
          return 2;
        }
        const workloads::Routing routing = workloads::generate_routing(spec, T, E, k, 7);
        const int32_t S = T * k;
        DEV_CUDA_CHECK(cudaMemcpy(weights.data(), routing.topk_weights.data(), size_t(S) * 4,
                              cudaMemcpyHostToDevice));
        Plan plan;
        DEV_STATUS_CHECK(dispatch::build_layer_plan(shape, routing.topk_ids.data(), T,
                                                ExpertOrder::kHalfInterval, num_sms, -1, &plan));
        // Plan buffer per variant: routing as base's, task maps with 2E entries.
        const RoutingLayout routing_layout_bytes = routing_layout(E, S);
        const TaskMapLayout map_layout = task_map_layout(2 * E);
        const size_t plan_bytes = routing_layout_bytes.bytes + 2 * map_layout.bytes;
        std::vector<TaskDesc> tasks[kNumVariants][2];
        bench::DeviceBuffer plan_dev[kNumVariants];
        for (int v = 0; v < kNumVariants; ++v) {
          std::vector<std::byte> host(plan_bytes + 16);
          const std::span<const std::byte> base_bytes = plan.bytes();
          std::memcpy(host.data(), base_bytes.data(), routing_layout_bytes.bytes);
          for (int g = 0; g < 2; ++g) {
            tasks[v][g] = split_tasks(plan.task_map(g), static_cast<Variant>(v), max_tail);
            const int32_t n = g == 0 ? 2 * I : H;
            write_task_map(tasks[v][g], n,
                           task_map_view_at(host.data() + routing_layout_bytes.bytes +
                                                g * map_layout.bytes, 2 * E));
          }
          DEV_STATUS_CHECK(plan_dev[v].allocate(plan_bytes));
          DEV_CUDA_CHECK(cudaMemcpy(plan_dev[v].data(), host.data(), plan_bytes, cudaMemcpyHostToDevice));
        }
        const int32_t group1 = dispatch::gemm1_l2_group(int64_t{2} * 2 * I * H, S, E);
        cuda::StaticBatchedGemm gemms[kNumVariants][2];
        for (int v = 0; v < kNumVariants; ++v) {
          char* base = plan_dev[v].as<char>();
          const RoutingView routing_view = routing_view_at(base, E, k, S);
          for (int g = 0; g < 2; ++g) {
            cuda::StaticBatchedGemm& gemm = gemms[v][g];
            gemm = {};
            gemm.routing = routing_view;
            gemm.task_map = task_map_view_at(base + routing_layout_bytes.bytes + g * map_layout.bytes, 2 * E);
            int32_t total = 0;
            for (const TaskDesc& t : tasks[v][g]) {
              total += dispatch::kBuiltinConfigs[t.config].tiles(t.row_count, g == 0 ? 2 * I : H);
            }
            gemm.max_total_tiles = total;
            if (g == 0) {
              gemm.epilogue = cuda::GemmEpilogue::kSiluGateUp;
              gemm.a = hidden.data();
              gemm.a_row_stride = H;
              gemm.w = w13.data();
              gemm.out_features = 2 * I;
              gemm.in_features = H;
              gemm.out = intermediate[v].data();
              gemm.out_row_stride = I;
              if (group1 == 1) {
                gemm.configs = dispatch::kBuiltinConfigsGroup1.configs;
                gemm.num_configs = dispatch::kNumBuiltinConfigs;
              }
            } else {
              gemm.epilogue = cuda::GemmEpilogue::kRouterWeighted;
              gemm.a = intermediate[kBase].data();  // every variant reads base's GEMM1 output
              gemm.a_row_stride = I;
              gemm.w = w2.data();
              gemm.out_features = H;
              gemm.in_features = I;
              gemm.out = slot_out[v].data();
              gemm.out_row_stride = H;
              gemm.topk_weights = weights.as<float>();
            }
          }
        }
        // Correctness: poison, run each variant once, compare with base.
        for (int v = 0; v < kNumVariants; ++v) {
          DEV_STATUS_CHECK(bench::fill_bf16_bits_device(intermediate[v].as<bf16>(), size_t(S) * I, 0x7fc0, nullptr));
          DEV_STATUS_CHECK(bench::fill_bf16_bits_device(slot_out[v].as<bf16>(), size_t(S) * H, 0x7fc0, nullptr));
        }
        for (int g = 0; g < 2; ++g) {
          for (int v = 0; v < kNumVariants; ++v) DEV_STATUS_CHECK(cuda::launch_static_batched_gemm(gemms[v][g], nullptr));
          DEV_CUDA_CHECK(cudaDeviceSynchronize());
        }
        Compare errors[kNumVariants][2];
        for (int v = 0; v < kNumVariants; ++v) {
          errors[v][0] = compare(intermediate[v].data(), intermediate[kBase].data(), size_t(S) * I, sums_dev);
          errors[v][1] = compare(slot_out[v].data(), slot_out[kBase].data(), size_t(S) * H, sums_dev);
        }
        if (errors[kBase][0].nans > 0 || errors[kBase][1].nans > 0) {
          std::printf("base left %g / %g unwritten elements\n", errors[kBase][0].nans, errors[kBase][1].nans);
          return 1;
        }
        for (int g = 0; g < 2; ++g) {
          std::vector<float> times[kNumVariants];
          for (int r = -2; r < repeats; ++r) {
            for (int i = 0; i < kNumVariants; ++i) {
              const int v = (r & 1) ? kNumVariants - 1 - i : i;  // alternate the order
              DEV_STATUS_CHECK(flusher.flush(nullptr));
              DEV_CUDA_CHECK(cudaEventRecord(start));
              DEV_STATUS_CHECK(cuda::launch_static_batched_gemm(gemms[v][g], nullptr));
              DEV_CUDA_CHECK(cudaEventRecord(stop));
              DEV_CUDA_CHECK(cudaEventSynchronize(stop));
              float ms = 0;
              DEV_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
              if (r >= 0) times[v].push_back(ms * 1000.0f);
            }
          }
          double median[kNumVariants];
          for (int v = 0; v < kNumVariants; ++v) {
            std::sort(times[v].begin(), times[v].end());
            median[v] = times[v][times[v].size() / 2];
            log_ratio_sum[v] += std::log(median[kBase] / median[v]);
          }
          ++cells;
          const int32_t splits = static_cast<int32_t>(tasks[kAdjacent][g].size()) -
                                 static_cast<int32_t>(tasks[kBase][g].size());
          std::printf("%-18s %5d %-8s %4d %6zu %6d %9.1f %9.1f %9.1f %7.3f %7.3f %9.2e %9.2e%s\n",
                      model_name.c_str(), T, routing_name.c_str(), g + 1, tasks[kBase][g].size(),
                      splits, median[kBase], median[kAdjacent], median[kAtEnd],
                      median[kBase] / median[kAdjacent], median[kBase] / median[kAtEnd],
                      errors[kAdjacent][g].rel_error, errors[kAtEnd][g].rel_error,
                      errors[kAdjacent][g].nans + errors[kAtEnd][g].nans > 0 ? "  UNWRITTEN" : "");
          std::fflush(stdout);
        }
      }
    }
  }
  std::printf("# geomean base / variant over %d GEMMs: adjacent %.4f, at_end %.4f\n", cells,
              std::exp(log_ratio_sum[kAdjacent] / cells), std::exp(log_ratio_sum[kAtEnd] / cells));
  return 0;
}
