// `ramp run`: one MoE layer (or the seed paper's grouped GEMM) on a backend, verified against
// the fp64 reference.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>

#include "commands.h"
#include "cpu/cpu_backend.h"
#include "cpu/reference.h"
#include "layer_problem.h"

#if RAMP_HAVE_CUDA
#include "device_runner.h"
#endif

namespace ramp::cli {

namespace {

constexpr const char* kRunHelp =
    "usage: ramp run [options]\n"
    "Runs one MoE layer (GEMM1 + SiLU(gate)*up, GEMM2 + router weight, combine) on random data,\n"
    "checks it against an fp64 reference and prints time, GFLOP/s and the relative error.\n"
    "With no options: olmoe-1b-7b, T=64, uniform routing, on the GPU if there is one, else on\n"
    "the CPU backend.\n\n"
    "options:\n"
    "%s"
    "  --backend B         auto | cpu | cuda (default auto: cuda when a GPU is present)\n"
    "  --threads N         CPU backend threads (default: all cores)\n"
    "  --repeats N         timed runs; the median is reported (default 1 on the CPU, 20 on GPU)\n"
    "  --no-verify         skip the fp64 reference (it costs more than the run itself)\n"
    "  --help              this text\n\n"
    "examples:\n"
    "  ramp run\n"
    "  ramp run --backend cpu --model qwen3-30b-a3b --tokens 16 --routing zipf1.5\n"
    "  ramp run --model seed004 --tokens 256 --routing worst\n";

enum class Backend { kCpu, kCuda };

bool cuda_available() {
#if RAMP_HAVE_CUDA
  return device_present();
#else
  return false;
#endif
}

}  // namespace

int run_run_command(const std::vector<std::string>& argv) {
  Args args;
  std::set<std::string> options = kProblemOptions;
  options.insert({"backend", "threads", "repeats"});
  if (!args.parse(argv, options, {"no-verify", "help"})) {
    std::fprintf(stderr, "ramp run: %s (see ramp run --help)\n", args.error().c_str());
    return 2;
  }
  if (args.has("help")) {
    std::printf(kRunHelp, kProblemHelp);
    return 0;
  }
  Problem problem;
  if (Status status = read_problem(args, &problem); !status.is_ok()) {
    std::fprintf(stderr, "ramp run: %s\n", status.to_string().c_str());
    return 2;
  }
  const std::string backend_name = args.text("backend", "auto");
  Backend backend;
  if (backend_name == "cpu") {
    backend = Backend::kCpu;
  } else if (backend_name == "cuda") {
    if (!cuda_available()) {
      std::fprintf(stderr, "ramp run: --backend cuda: %s\n",
#if RAMP_HAVE_CUDA
                   "no usable CUDA device (Hopper, sm_90) is present"
#else
                   "this build has no CUDA backend (configured without nvcc, or with RAMP_ENABLE_CUDA=OFF)"
#endif
      );
      return 2;
    }
    backend = Backend::kCuda;
  } else if (backend_name == "auto") {
    backend = cuda_available() ? Backend::kCuda : Backend::kCpu;
  } else {
    std::fprintf(stderr, "ramp run: unknown backend '%s' (auto, cpu, cuda)\n", backend_name.c_str());
    return 2;
  }
  int64_t threads = 0, repeats = 0;
  if (!args.integer("threads", 0, 0, 1024, &threads) ||
      !args.integer("repeats", backend == Backend::kCpu ? 1 : 20, 1, 100000, &repeats)) {
    std::fprintf(stderr, "ramp run: %s\n", args.error().c_str());
    return 2;
  }

  std::printf("%s\n", problem.describe().c_str());
  ProblemData data = make_data(problem);
  std::vector<double> times_ms;
  if (backend == Backend::kCpu) {
    std::printf("backend: cpu (%s threads)\n",
                threads == 0 ? "all" : std::to_string(threads).c_str());
    for (int64_t r = 0; r < repeats; ++r) {
      const auto start = std::chrono::steady_clock::now();
      Plan plan;
      Status status = build_plan(problem, &plan);
      if (status.is_ok()) {
        status = problem.grouped_gemm
                     ? cpu::run_grouped_gemm(plan, data.gemm_args(problem), static_cast<int>(threads))
                     : cpu::run_moe_layer(plan, problem.shape, data.layer_args(),
                                          static_cast<int>(threads));
      }
      if (!status.is_ok()) {
        std::fprintf(stderr, "ramp run: %s\n", status.to_string().c_str());
        return 1;
      }
      times_ms.push_back(
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
    }
  } else {
#if RAMP_HAVE_CUDA
    std::printf("backend: cuda (warm L2, plan on the device included)\n");
    Status status = run_problem_on_device(problem, data, static_cast<int>(repeats), &times_ms);
    if (!status.is_ok()) {
      std::fprintf(stderr, "ramp run: %s\n", status.to_string().c_str());
      return 1;
    }
#endif
  }
  std::sort(times_ms.begin(), times_ms.end());
  const double median_ms = times_ms[times_ms.size() / 2];
  std::printf("time: %.3f ms (median of %zu, plan included)  %.1f GFLOP/s\n", median_ms,
              times_ms.size(), problem.useful_flops() / (median_ms * 1e6));

  if (args.has("no-verify")) return 0;
  const std::vector<double> reference =
      problem.grouped_gemm ? cpu::reference_grouped_gemm(data.gemm_args(problem))
                           : cpu::reference_moe_layer(problem.shape, data.layer_args());
  const double error = cpu::relative_frobenius_error(data.out, reference);
  const double tolerance = problem.grouped_gemm ? 5e-3 : 1e-2;
  const bool pass = error <= tolerance;
  std::printf("relative Frobenius error vs fp64 reference: %.2e (tolerance %.0e)  %s\n", error,
              tolerance, pass ? "PASS" : "FAIL");
  return pass ? 0 : 1;
}

}  // namespace ramp::cli
