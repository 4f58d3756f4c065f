// `ramp sweep`: times every compiled catalog entry alone on one layer problem (both GEMMs), next
// to the builtin per-expert rule, and ranks them: how much the catalog beyond the builtin set
// could buy on this histogram. The measurement RaMP's selection relies on, without a model.
#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "cli_args.h"
#include "commands.h"
#include "core/json.h"
#include "dispatch/catalog.h"
#include "dispatch/config_selection.h"
#include "layer_problem.h"

#if RAMP_HAVE_CUDA
#include "candidate_timer.h"
#endif

namespace ramp::cli {

namespace {

constexpr const char* kSweepHelp =
    "usage: ramp sweep [options]\n"
    "Times each compiled catalog entry (`ramp configs --compiled`) that fits the layer's GEMM1\n"
    "(N = 2I, K = H, SiLU epilogue) and GEMM2 (N = H, K = I, router-weighted epilogue), every\n"
    "expert using that entry in its own launch, and the builtin per-expert rule, on one routing.\n"
    "Prints the fastest entries per GEMM with their ratio to the builtin rule. GEMM launches only\n"
    "(CUDA graph replay, L2 flushed, median of --repeats). Layer models only: seed004 (one\n"
    "grouped GEMM, no layer) is refused.\n\n"
    "options:\n"
    "%s"
    "  --repeats N         timed repeats per measurement (default 10)\n"
    "  --top N             entries printed per GEMM (default 8)\n"
    "  --out FILE.json     every measurement as JSON\n"
    "  --help              this text\n\n"
    "examples:\n"
    "  ramp sweep --model qwen3-30b-a3b --tokens 1\n"
    "  ramp sweep --model deepseek-v2-lite --tokens 2048 --routing zipf1.0 --out sweep.json\n";

}  // namespace

int run_sweep_command(const std::vector<std::string>& argv) {
  Args args;
  std::set<std::string> options = kProblemOptions;
  options.insert({"repeats", "top", "out"});
  if (!args.parse(argv, options, {"help"})) {
    std::fprintf(stderr, "ramp sweep: %s (see ramp sweep --help)\n", args.error().c_str());
    return 2;
  }
  if (args.has("help")) {
    std::printf(kSweepHelp, kProblemHelp);
    return 0;
  }
  Problem problem;
  if (const Status status = read_problem(args, &problem); !status.is_ok()) {
    std::fprintf(stderr, "ramp sweep: %s\n", status.to_string().c_str());
    return 2;
  }
  int64_t repeats = 10, top = 8;
  if (!args.integer("repeats", 10, 1, 1000, &repeats) || !args.integer("top", 8, 1, 1000, &top)) {
    std::fprintf(stderr, "ramp sweep: %s\n", args.error().c_str());
    return 2;
  }
  if (problem.grouped_gemm || problem.num_tokens < 1) {
    std::fprintf(stderr, "ramp sweep: needs a layer model and --tokens >= 1\n");
    return 2;
  }
#if !RAMP_HAVE_CUDA
  std::fprintf(stderr, "ramp sweep: this build has no CUDA backend\n");
  return 1;
#else
  const MoeShape& s = problem.shape;
  TimerOptions timer_options;
  timer_options.repeats = static_cast<int>(repeats);
  std::unique_ptr<CandidateTimer> timer;
  if (const Status status = CandidateTimer::create(s, problem.num_tokens, timer_options, &timer);
      !status.is_ok()) {
    std::fprintf(stderr, "ramp sweep: %s\n", status.to_string().c_str());
    return 1;
  }
  if (const Status status = timer->set_routing(problem.routing.topk_ids,
                                               problem.routing.topk_weights, problem.num_tokens);
      !status.is_ok()) {
    std::fprintf(stderr, "ramp sweep: %s\n", status.to_string().c_str());
    return 1;
  }
  std::printf("%s\ndevice: %s\n", problem.describe().c_str(), timer->device_name().c_str());

  // The builtin rule, as the layer plans it.
  const std::vector<int32_t> histogram = problem.routing.histogram();
  const dispatch::GemmShape shapes[2] = {{s.num_experts, s.top_k, 2 * s.intermediate, s.hidden},
                                         {s.num_experts, s.top_k, s.hidden, s.intermediate}};
  double builtin_us[2] = {0, 0};
  {
    std::vector<int32_t> rule[2];
    for (int g = 0; g < 2; ++g) {
      rule[g] = dispatch::assign_builtin_configs(histogram, shapes[g].out_features,
                                                 timer->sm_count());
    }
    if (const Status status = timer->time_gemms(rule[0], rule[1], &builtin_us[0], &builtin_us[1]);
        !status.is_ok()) {
      std::fprintf(stderr, "ramp sweep: builtin rule: %s\n", status.to_string().c_str());
      return 1;
    }
  }

  struct Measured {
    int32_t entry;
    double us;
  };
  json::Value gemms = json::Value::array();
  for (int g = 0; g < 2; ++g) {
    std::vector<Measured> measured;
    for (const int32_t entry : dispatch::legal_entries(shapes[g], dispatch::EntryFilter::kCompiled)) {
      double us = 0;
      const Status status = g == 0 ? timer->time_catalog_entries(entry, -1, &us, nullptr)
                                   : timer->time_catalog_entries(-1, entry, nullptr, &us);
      if (!status.is_ok()) {
        std::fprintf(stderr, "ramp sweep: entry %d: %s\n", entry, status.to_string().c_str());
        return 1;
      }
      measured.push_back({entry, us});
    }
    std::sort(measured.begin(), measured.end(),
              [](const Measured& a, const Measured& b) { return a.us < b.us; });
    std::printf("\nGEMM%d  %s: builtin rule %.1f us; %zu compiled entries, fastest:\n", g + 1,
                shapes[g].to_string().c_str(), builtin_us[g], measured.size());
    std::printf("  %5s  %-34s %9s %9s\n", "index", "config", "us", "builtin/x");
    for (size_t i = 0; i < measured.size() && i < static_cast<size_t>(top); ++i) {
      std::printf("  %5d  %-34s %9.1f %9.3f\n", measured[i].entry,
                  dispatch::kCatalogTable.entries[measured[i].entry].to_string().c_str(),
                  measured[i].us, builtin_us[g] / measured[i].us);
    }
    json::Value entries = json::Value::array();
    for (const Measured& m : measured) {
      json::Value item;
      item.set("index", m.entry)
          .set("config", dispatch::kCatalogTable.entries[m.entry].to_string())
          .set("us", m.us);
      entries.push_back(std::move(item));
    }
    json::Value gemm;
    gemm.set("shape", shapes[g].to_string()).set("builtin_rule_us", builtin_us[g]);
    gemm.set("entries", std::move(entries));
    gemms.push_back(std::move(gemm));
  }
  if (args.has("out")) {
    json::Value root;
    root.set("kind", "catalog-sweep").set("device", timer->device_name());
    root.set("date", utc_now()).set("command", joined_command("sweep", argv));
    root.set("git_commit", git_commit());
    root.set("problem", problem.describe()).set("repeats", repeats);
    root.set("gemms", std::move(gemms));
    if (const Status status = json::write_file(args.text("out", ""), root); !status.is_ok()) {
      std::fprintf(stderr, "ramp sweep: %s\n", status.to_string().c_str());
      return 1;
    }
  }
  return 0;
#endif
}

}  // namespace ramp::cli
