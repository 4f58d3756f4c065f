// `ramp`: plan, run and inspect routing-aware MoE kernels from the command line.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "commands.h"

namespace {

constexpr const char* kHelp =
    "usage: ramp <command> [options]\n\n"
    "commands:\n"
    "  run      run one MoE layer (or grouped GEMM) and verify it against an fp64 reference\n"
    "  plan     print the static batching plan (tasks, TilePrefix, tiles, waves) for a routing\n"
    "  models   list the built-in model shapes\n"
    "  bench    measure the kernel against same-run ceilings and the peers (GPU)\n"
    "  configs  list the tile-config catalog (shared memory, compiled in this build or not)\n"
    "  regions  region analysis of a routing: variables, rule verdicts, config per expert\n"
    "  profile  measure the selection candidates and fit the wave cost model (GPU)\n"
    "  evaluate regret and speedup of routing-aware selection on held-out routings (GPU)\n"
    "  sweep    time every compiled catalog entry alone on one layer problem (GPU)\n\n"
    "`ramp <command> --help` describes each command's options.\n\n"
    "examples:\n"
    "  ramp run                                   # olmoe-1b-7b, T=64, uniform routing\n"
    "  ramp run --backend cpu --model mixtral-8x7b --tokens 8\n"
    "  ramp plan --model qwen3-30b-a3b --tokens 256 --routing hot\n";

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "help") == 0) {
    std::printf("%s", kHelp);
    return argc < 2 ? 2 : 0;
  }
  const std::string command = argv[1];
  const std::vector<std::string> rest(argv + 2, argv + argc);
  if (command == "run") return ramp::cli::run_run_command(rest);
  if (command == "plan") return ramp::cli::run_plan_command(rest);
  if (command == "models") return ramp::cli::run_models_command(rest);
  if (command == "bench") return ramp::cli::run_bench_command(rest);
  if (command == "configs") return ramp::cli::run_configs_command(rest);
  if (command == "regions") return ramp::cli::run_regions_command(rest);
  if (command == "profile") return ramp::cli::run_profile_command(rest);
  if (command == "evaluate") return ramp::cli::run_evaluate_command(rest);
  if (command == "sweep") return ramp::cli::run_sweep_command(rest);
  std::fprintf(stderr, "ramp: unknown command '%s' (run, plan, models, bench, configs, regions, profile, evaluate, sweep; "
               "see ramp --help)\n",
               command.c_str());
  return 2;
}
