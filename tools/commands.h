// The `ramp` subcommands. Each takes the words after its name and returns the exit code:
// 0 success, 1 the job ran and failed (e.g. a wrong result), 2 bad arguments.
#pragma once

#include <string>
#include <vector>

namespace ramp::cli {

int run_plan_command(const std::vector<std::string>& argv);
int run_run_command(const std::vector<std::string>& argv);
int run_models_command(const std::vector<std::string>& argv);
int run_bench_command(const std::vector<std::string>& argv);
int run_configs_command(const std::vector<std::string>& argv);
int run_regions_command(const std::vector<std::string>& argv);
int run_profile_command(const std::vector<std::string>& argv);
int run_evaluate_command(const std::vector<std::string>& argv);
int run_sweep_command(const std::vector<std::string>& argv);

}  // namespace ramp::cli
