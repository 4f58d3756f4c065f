// `ramp configs`: the tile-config catalog (RaMP's polymorphic design space), with the shared
// memory each entry needs and whether this build compiled a kernel for it.
#include <cstdio>

#include "cli_args.h"
#include "commands.h"
#include "dispatch/catalog.h"

namespace ramp::cli {

namespace {

constexpr const char* kConfigsHelp =
    "usage: ramp configs [options]\n"
    "Lists the tile-config catalog: index, config (orientation tokens x features, k tile,\n"
    "stages, consumer warpgroups, L2 group, split-K), bytes per pipeline stage, shared memory\n"
    "per CTA, fp32 accumulator registers per consumer thread, and whether this build compiled a\n"
    "kernel for it (RAMP_KERNEL_CATALOG=full: all; subset: the builtin set and one entry per\n"
    "kernel feature; no CUDA: none). Builtin entries are also in the set one layer launch mixes\n"
    "per expert (their index in kBuiltinConfigs).\n\n"
    "options:\n"
    "  --compiled          only the configs this build compiled\n"
    "  --n N --k K         only the configs that can run a GEMM with N output features and\n"
    "                      K input features (K a multiple of 64; split-K must divide K/64)\n"
    "  --help              this text\n\n"
    "examples:\n"
    "  ramp configs\n"
    "  ramp configs --n 1536 --k 2048 --compiled\n";

}  // namespace

int run_configs_command(const std::vector<std::string>& argv) {
  Args args;
  if (!args.parse(argv, {"n", "k"}, {"compiled", "help"})) {
    std::fprintf(stderr, "ramp configs: %s (see ramp configs --help)\n", args.error().c_str());
    return 2;
  }
  if (args.has("help")) {
    std::printf("%s", kConfigsHelp);
    return 0;
  }
  if (args.has("n") != args.has("k")) {
    std::fprintf(stderr, "ramp configs: --n and --k go together (see ramp configs --help)\n");
    return 2;
  }
  const bool compiled_only = args.has("compiled");
  std::vector<int32_t> indices;
  if (args.has("n")) {
    int64_t n = 0, k = 0;
    if (!args.integer("n", 0, 1, 1 << 20, &n) || !args.integer("k", 0, 1, 1 << 20, &k)) {
      std::fprintf(stderr, "ramp configs: %s\n", args.error().c_str());
      return 2;
    }
    dispatch::GemmShape shape;
    shape.out_features = static_cast<int32_t>(n);
    shape.in_features = static_cast<int32_t>(k);
    indices = dispatch::legal_entries(
        shape, compiled_only ? dispatch::EntryFilter::kCompiled : dispatch::EntryFilter::kAll);
  } else {
    for (size_t i = 0; i < dispatch::catalog().size(); ++i) {
      if (!compiled_only || dispatch::catalog()[i].compiled) {
        indices.push_back(static_cast<int32_t>(i));
      }
    }
  }

  std::printf("%5s  %-34s %8s %8s %5s  %s\n", "index", "config", "stage B", "smem B", "acc",
              "compiled");
  int32_t compiled_count = 0;
  for (const int32_t index : indices) {
    const dispatch::CatalogEntry& entry = dispatch::catalog()[static_cast<size_t>(index)];
    char compiled[32] = "no";
    if (entry.compiled) {
      ++compiled_count;
      if (entry.in_builtin_set()) {
        std::snprintf(compiled, sizeof(compiled), "yes (builtin %d)", entry.builtin_index);
      } else {
        std::snprintf(compiled, sizeof(compiled), "yes");
      }
    } else if (entry.in_builtin_set()) {
      std::snprintf(compiled, sizeof(compiled), "builtin %d (no CUDA)", entry.builtin_index);
    }
    std::printf("%5d  %-34s %8d %8d %5d  %s\n", index, entry.config.to_string().c_str(),
                dispatch::stage_bytes(entry.config), dispatch::shared_memory_bytes(entry.config),
                dispatch::accumulator_registers(entry.config), compiled);
  }
  std::printf("%zu configs listed (%d compiled in this build) of %zu in the catalog\n", indices.size(),
              compiled_count, dispatch::catalog().size());
  return 0;
}

}  // namespace ramp::cli
