// `ramp models`: the model shapes every benchmark and test names.
#include <cstdio>

#include "cli_args.h"
#include "commands.h"
#include "workloads/models.h"

namespace ramp::cli {

int run_models_command(const std::vector<std::string>& argv) {
  Args args;
  if (!args.parse(argv, {}, {"help"})) {
    std::fprintf(stderr, "ramp models: %s (see ramp models --help)\n", args.error().c_str());
    return 2;
  }
  if (args.has("help")) {
    std::printf("usage: ramp models\nLists the built-in MoE layer shapes (shared/workloads/models.json).\n");
    return 0;
  }
  std::printf("%-18s %5s %3s %6s %6s  %s\n", "model", "E", "k", "H", "I", "expert weights (GiB)");
  for (const auto& model : workloads::builtin_models()) {
    const MoeShape& s = model.shape;
    const double bytes = 3.0 * s.num_experts * s.hidden * s.intermediate * 2;
    std::printf("%-18s %5d %3d %6d %6d  %.2f\n", model.name.c_str(), s.num_experts, s.top_k,
                s.hidden, s.intermediate, bytes / (1u << 30));
  }
  const workloads::KernelCase kernel_case = workloads::seed004_gemm_case();
  std::printf("%-18s %5d %3d  N=%d K=%d T=%d (grouped GEMM; --model seed004)\n", "seed004",
              kernel_case.E, kernel_case.k, kernel_case.N, kernel_case.K, kernel_case.T);
  return 0;
}

}  // namespace ramp::cli
