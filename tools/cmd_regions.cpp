// `ramp regions`: RaMP's performance-region analysis for one routing. Prints the variables the
// rules read, each rule's verdict, and the config the region selector picks per expert (the
// dispatcher's choice when no fitted profile exists).
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <string>

#include "commands.h"
#include "dispatch/catalog.h"
#include "dispatch/regions.h"
#include "layer_problem.h"

namespace ramp::cli {

namespace {

constexpr const char* kRegionsHelp =
    "usage: ramp regions [options]\n"
    "Region analysis of each GEMM of the problem (a layer has GEMM1 N=2I K=H and GEMM2 N=H K=I):\n"
    "histogram, weight bytes vs L2, arithmetic intensity vs the ridge point, waves and k depth\n"
    "of the configs involved, the verdict of each rule (swap-AB, split-K, large tiles, L2\n"
    "grouping) and the config the region selector picks per expert.\n\n"
    "options:\n"
    "%s"
    "  --candidates SET    catalog | builtin: configs the selector may pick per expert (default\n"
    "                      catalog; builtin = the set one layer launch mixes, kBuiltinConfigs)\n"
    "  --device-name NAME  device constants (defaults: H100 SXM, with the --sms count):\n"
    "  --l2-mib MIB        L2 size (default 50)\n"
    "  --smem-kib KIB      shared memory per SM (default 228)\n"
    "  --tflops R          measured bf16 tensor rate (default 795)\n"
    "  --gbps R            measured copy bandwidth, read + write (default 3020)\n"
    "  --experts           also list every expert: rows -> config\n"
    "  --help              this text\n\n"
    "examples:\n"
    "  ramp regions --model qwen3-30b-a3b --tokens 256 --routing hot\n"
    "  ramp regions --model mixtral-8x7b --tokens 1 --candidates builtin\n";

constexpr double kMiB = 1024.0 * 1024.0;

bool read_double_option(Args& args, const std::string& name, double fallback, double* out) {
  if (!args.has(name)) {
    *out = fallback;
    return true;
  }
  const std::string text = args.text(name, "");
  char* end = nullptr;
  const double value = std::strtod(text.c_str(), &end);
  if (end == text.c_str() || *end != '\0' || !(value > 0.0)) return false;
  *out = value;
  return true;
}

void print_config_variables(const TileConfig& config, const dispatch::GemmShape& shape,
                            std::span<const int32_t> histogram,
                            const dispatch::DeviceConstants& device) {
  const dispatch::ConfigVariables v = dispatch::config_variables(config, shape, histogram, device);
  std::printf("    %-34s %7lld %7lld %7.2f %7d %10.1f %10.2f\n", config.to_string().c_str(),
              static_cast<long long>(v.token_blocks), static_cast<long long>(v.tiles), v.waves,
              v.k_depth, v.tile_intensity, static_cast<double>(v.tile_weight_bytes) / kMiB);
}

void analyze_gemm(const char* title, const dispatch::GemmShape& shape,
                  std::span<const int32_t> histogram, const dispatch::DeviceConstants& device,
                  bool builtin_only, bool list_experts) {
  const std::vector<int32_t> candidates = dispatch::legal_entries(
      shape, builtin_only ? dispatch::EntryFilter::kBuiltinSet : dispatch::EntryFilter::kAll);
  std::printf("\n%s  %s\n", title, shape.to_string().c_str());
  if (candidates.empty()) {
    std::printf("  no %s config fits this GEMM\n", builtin_only ? "builtin" : "catalog");
    return;
  }
  const dispatch::RegionSelection selection =
      dispatch::select_by_regions(shape, histogram, device, candidates);
  const dispatch::ShapeVariables& v = selection.variables;
  const dispatch::RuleVerdicts& r = selection.verdicts;

  std::printf("  histogram    : %lld slots, %d of %d experts active, busiest %d rows\n",
              static_cast<long long>(v.slots), v.active_experts, shape.num_experts, v.max_rows);
  std::printf("  weights      : %.2f MiB per expert, %.1f MiB active (L2 %.0f MiB: %.2fx)\n",
              static_cast<double>(v.expert_weight_bytes) / kMiB,
              static_cast<double>(v.active_weight_bytes) / kMiB,
              static_cast<double>(device.l2_bytes) / kMiB,
              static_cast<double>(v.active_weight_bytes) / static_cast<double>(device.l2_bytes));
  std::printf("  roofline     : %.3f GFLOP over %.1f MB minimal traffic = %.1f FLOP/B vs ridge "
              "%.0f: %s\n",
              v.flops * 1e-9, v.min_bytes * 1e-6, v.intensity, v.ridge,
              v.compute_bound ? "compute-bound" : "memory-bound");

  std::printf("  variables    (each config over the whole histogram):\n"
              "    %-34s %7s %7s %7s %7s %10s %10s\n",
              "config", "g", "tiles", "waves", "k depth", "tile F/B", "tile MiB");
  std::map<int32_t, int32_t> experts_per_config;
  for (const int32_t index : selection.expert_config) {
    if (index >= 0) ++experts_per_config[index];
  }
  for (const auto& [index, count] : experts_per_config) {
    print_config_variables(dispatch::catalog()[static_cast<size_t>(index)].config, shape,
                           histogram, device);
  }
  // The large-tile rule counts 128x256 tiles whether or not the selector picked them.
  TileConfig large;
  large.token_tile = 128;
  large.feature_tile = 256;
  large.stages = static_cast<int8_t>(dispatch::derive_stages(large));
  std::printf("    (reference)\n");
  print_config_variables(large, shape, histogram, device);

  std::printf("  rules        :\n");
  std::printf("    swap-AB     : helps %d of %d active experts (rows <= 64: a 128-row tile pads >= 50%%)\n", r.experts_swap_ab,
              v.active_experts);
  std::printf("    split-K     : %s (waves %.2f before splitting; helps below 0.5 when the k "
              "depth %d >= 2 x stages) -> split %d\n",
              r.split_k ? "yes" : "no", r.waves_before_split, shape.in_features / 64,
              r.split_k_factor);
  std::printf("    large tiles : %s (%lld 128x256 tiles of the normal-orientation experts vs %d SMs; "
              "%s)\n",
              r.large_tiles ? "yes" : "no", static_cast<long long>(r.large_tiles_count),
              device.sm_count, v.compute_bound ? "compute-bound" : "memory-bound");
  std::printf("    L2 grouping : helps %d of %d active experts (several token blocks and task "
              "weights above the L2 share)\n",
              r.experts_l2_grouping, v.active_experts);

  std::printf("  selection    (%s):\n    %-34s %7s %12s %7s  %s\n",
              builtin_only ? "builtin set" : "catalog", "config", "experts", "rows",
              "tiles", "compiled");
  int64_t total_tiles = 0;
  for (const auto& [index, count] : experts_per_config) {
    const dispatch::CatalogEntry& entry = dispatch::catalog()[static_cast<size_t>(index)];
    int32_t lo = 0, hi = 0;
    int64_t tiles = 0;
    bool first = true;
    for (size_t e = 0; e < histogram.size(); ++e) {
      if (selection.expert_config[e] != index) continue;
      const int32_t rows = histogram[e];
      lo = first ? rows : std::min(lo, rows);
      hi = first ? rows : std::max(hi, rows);
      first = false;
      tiles += entry.config.tiles(rows, shape.out_features);
    }
    total_tiles += tiles;
    const std::string range = std::to_string(lo) + ".." + std::to_string(hi);
    char compiled[32] = "no";
    if (entry.in_builtin_set()) {
      std::snprintf(compiled, sizeof(compiled), "yes (builtin %d)", entry.builtin_index);
    } else if (entry.compiled) {
      std::snprintf(compiled, sizeof(compiled), "yes (alone)");
    }
    std::printf("    %-34s %7d %12s %7lld  %s\n", entry.config.to_string().c_str(), count,
                range.c_str(), static_cast<long long>(tiles), compiled);
    // What the rules asked for when the candidate set lacks it (e.g. split-K, not compiled yet).
    std::set<std::string> wishes;
    for (size_t e = 0; e < histogram.size(); ++e) {
      if (selection.expert_config[e] == index && !(selection.desired[e] == entry.config)) {
        wishes.insert(selection.desired[e].to_string());
      }
    }
    for (const std::string& wish : wishes) std::printf("      rules asked for %s\n", wish.c_str());
  }
  std::printf("    total: %lld tiles = %.2f waves on %d SMs\n", static_cast<long long>(total_tiles),
              static_cast<double>(total_tiles) / device.sm_count, device.sm_count);

  if (list_experts) {
    std::printf("  experts      :\n");
    for (size_t e = 0; e < histogram.size(); ++e) {
      const int32_t index = selection.expert_config[e];
      std::printf("    expert %4zu: %6d rows -> %s\n", e, histogram[e],
                  index < 0 ? "(no tokens)"
                            : dispatch::catalog()[static_cast<size_t>(index)].config.to_string().c_str());
    }
  }
}

}  // namespace

int run_regions_command(const std::vector<std::string>& argv) {
  Args args;
  std::set<std::string> options = kProblemOptions;
  options.insert({"candidates", "device-name", "l2-mib", "smem-kib", "tflops", "gbps"});
  if (!args.parse(argv, options, {"experts", "help"})) {
    std::fprintf(stderr, "ramp regions: %s (see ramp regions --help)\n", args.error().c_str());
    return 2;
  }
  if (args.has("help")) {
    std::printf(kRegionsHelp, kProblemHelp);
    return 0;
  }
  Problem problem;
  if (Status status = read_problem(args, &problem); !status.is_ok()) {
    std::fprintf(stderr, "ramp regions: %s\n", status.to_string().c_str());
    return 2;
  }
  const std::string candidates = args.text("candidates", "catalog");
  if (candidates != "catalog" && candidates != "builtin") {
    std::fprintf(stderr, "ramp regions: --candidates must be catalog or builtin, got '%s'\n",
                 candidates.c_str());
    return 2;
  }

  dispatch::DeviceConstants device = dispatch::DeviceConstants::h100();
  device.sm_count = problem.num_sms;
  device.name = args.text("device-name", device.name);
  double l2_mib = 0, smem_kib = 0;
  if (!read_double_option(args, "l2-mib", 50.0, &l2_mib) ||
      !read_double_option(args, "smem-kib", 228.0, &smem_kib) ||
      !read_double_option(args, "tflops", device.tensor_tflops, &device.tensor_tflops) ||
      !read_double_option(args, "gbps", device.copy_gbps, &device.copy_gbps)) {
    std::fprintf(stderr, "ramp regions: --l2-mib, --smem-kib, --tflops and --gbps take a "
                         "positive number\n");
    return 2;
  }
  device.l2_bytes = static_cast<int64_t>(l2_mib * kMiB);
  device.shared_bytes_per_sm = static_cast<int64_t>(smem_kib * 1024.0);

  std::printf("%s\n", problem.describe().c_str());
  std::printf("device: %s (ridge %.0f FLOP/B)\n", device.to_string().c_str(),
              device.ridge_flops_per_byte());
  const std::vector<int32_t> histogram = problem.routing.histogram();
  const MoeShape& s = problem.shape;
  const bool builtin_only = candidates == "builtin";
  const bool list_experts = args.has("experts");
  if (problem.grouped_gemm) {
    analyze_gemm("GEMM", {s.num_experts, s.top_k, s.intermediate, s.hidden}, histogram, device,
                 builtin_only, list_experts);
  } else {
    analyze_gemm("GEMM1", {s.num_experts, s.top_k, 2 * s.intermediate, s.hidden}, histogram,
                 device, builtin_only, list_experts);
    analyze_gemm("GEMM2", {s.num_experts, s.top_k, s.hidden, s.intermediate}, histogram, device,
                 builtin_only, list_experts);
  }
  return 0;
}

}  // namespace ramp::cli
