// `ramp plan`: what the static batching planner makes of a routing, without running anything.
#include <cstdio>
#include <iostream>

#include "commands.h"
#include "layer_problem.h"

namespace ramp::cli {

namespace {

constexpr const char* kPlanHelp =
    "usage: ramp plan [options]\n"
    "Builds the static batching plan for one routing and prints it: histogram statistics, tasks\n"
    "per tile config, TilePrefix length, CTAs (tiles) and waves on the given SM count.\n\n"
    "options:\n"
    "%s"
    "  --json              print the whole plan as JSON (routing arrays, tasks, TilePrefix)\n"
    "  --help              this text\n\n"
    "examples:\n"
    "  ramp plan --model qwen3-30b-a3b --tokens 256 --routing zipf1.5\n"
    "  ramp plan --model seed004 --tokens 4096 --routing worst --order longest-first\n"
    "  ramp plan --model mixtral-8x7b --tokens 8 --json\n";

}  // namespace

int run_plan_command(const std::vector<std::string>& argv) {
  Args args;
  std::set<std::string> options = kProblemOptions;
  if (!args.parse(argv, options, {"json", "help"})) {
    std::fprintf(stderr, "ramp plan: %s (see ramp plan --help)\n", args.error().c_str());
    return 2;
  }
  if (args.has("help")) {
    std::printf(kPlanHelp, kProblemHelp);
    return 0;
  }
  Problem problem;
  if (Status status = read_problem(args, &problem); !status.is_ok()) {
    std::fprintf(stderr, "ramp plan: %s\n", status.to_string().c_str());
    return 2;
  }
  Plan plan;
  if (Status status = build_plan(problem, &plan); !status.is_ok()) {
    std::fprintf(stderr, "ramp plan: %s\n", status.to_string().c_str());
    return 1;
  }
  if (args.has("json")) {
    std::cout << plan.to_json() << "\n";
    return 0;
  }
  std::cout << problem.describe() << "\n";
  plan.print(std::cout, problem.num_sms);
  return 0;
}

}  // namespace ramp::cli
