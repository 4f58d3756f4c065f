// `ramp bench`: measured speed of the kernel against the same-run ceilings and the peers.
// The measuring lives in bench/ (library ramp_bench, CUDA builds only); this file reads options.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <type_traits>
#include <vector>

#include "cli_args.h"
#include "commands.h"
#include "core/plan.h"
#include "workloads/models.h"
#include "workloads/routing.h"

#if RAMP_HAVE_CUDA
#include "bench/bench.h"
#endif

namespace ramp::cli {

namespace {

constexpr const char* kBenchHelp =
    "usage: ramp bench gemm|layer [options]\n"
    "Measures the kernel against the ceilings of the same run (cuBLAS bf16 8192^3 GEMM, a 2 GiB\n"
    "device-to-device copy) and against the peers (per-expert cuBLAS loop, dense cuBLAS of the\n"
    "same shape, torch._grouped_mm through bench/peers/torch_peer.py). Every kernel result is\n"
    "checked against the fp64 CPU reference on sampled tokens; a wrong result writes no file.\n"
    "Times: CUDA events, warm-up, median of --repeats, L2 flushed before each repeat, CUDA\n"
    "graph replay.\n\n"
    "  gemm    the static batching paper's grouped GEMM (models.json seed004_gemm: E=64 k=8\n"
    "          T=4096 N=3584 K=2560), routings balanced, hot, worst, zipf1.0\n"
    "  layer   the full MoE layer over models x tokens x routings; the default subset\n"
    "          (%s x T=%s x %s) runs in about 3 minutes\n\n"
    "options:\n"
    "  --out FILE.json       results file (default bench/results/<device>-<UTC date>-<kind>.json);\n"
    "                        FILE.json.partial holds the cases measured so far while it runs\n"
    "  --models A,B|all      layer: models from models.json\n"
    "  --models-json PATH    layer: read model shapes from this file\n"
    "  --tokens 1,32|all     layer: token counts (all = 1,8,32,128,512,2048,8192); gemm: one T\n"
    "  --routings A,B|all    routing kinds (balanced, uniform, zipf<S>, hot, worst)\n"
    "  --repeats N           timed repeats, median reported (default 30)\n"
    "  --warmup N            untimed runs first (default 5)\n"
    "  --seed S              routing and data seed (default 1)\n"
    "  --order ORDER         expert order: identity | half-interval | longest-first\n"
    "  --verify-tokens N     tokens checked against the fp64 reference per case (default 32)\n"
    "  --no-kernel           ceilings and peers only (the kernel's cases are marked skipped)\n"
    "  --no-overlap          launch the layer's kernels in plain stream order (no programmatic\n"
    "                        dependent launch), for A/B timing\n"
    "  --routing-aware       configs from the routing-aware selection on the device (shipped\n"
    "                        profile) instead of the builtin per-expert rule, for A/B timing\n"
    "  --l2-group G1,G2      layer: L2 group of GEMM1's and GEMM2's 128-row tiles, 1 or 8, or 0\n"
    "                        for the library's rule (default 0,0; CudaOptions::l2_group), for\n"
    "                        A/B timing\n"
    "  --decode-max-tokens N layer: batches of at most N tokens take the two-kernel decode path,\n"
    "                        whatever the shape; 0: never (default: the library's rule,\n"
    "                        CudaOptions::decode_max_tokens), for A/B timing\n"
    "  --decode-hand-over B  layer, decode path: 1 hands expert groups from GEMM1 to GEMM2 as\n"
    "                        they finish, 0 does not (default: the library's rule,\n"
    "                        CudaOptions::decode_hand_over), for A/B timing\n"
    "  --no-cublas-peer      gemm: skip the cuBLAS peers\n"
    "  --torch-peer          run the torch._grouped_mm peer (default)\n"
    "  --no-torch-peer       do not\n"
    "  --python PATH         interpreter for the torch peer (default python3)\n"
    "  --torch-script PATH   the peer script (default bench/peers/torch_peer.py)\n"
    "  --help                this text\n\n"
    "examples:\n"
    "  ramp bench gemm --out bench/results/h100-gemm.json\n"
    "  ramp bench gemm --routings worst --repeats 50 --no-torch-peer\n"
    "  ramp bench layer\n"
    "  ramp bench layer --models qwen3-30b-a3b,olmoe-1b-7b --tokens 512,2048 --routings zipf1.0\n"
    "  ramp bench layer --models all --tokens all --routings uniform --out layer-all.json\n";

const std::vector<std::string> kDefaultLayerModels = {"mixtral-8x7b", "qwen3-30b-a3b",
                                                      "deepseek-v2-lite", "olmoe-1b-7b",
                                                      "gpt-oss-120b"};
const std::vector<int32_t> kDefaultLayerTokens = {1, 128, 2048, 8192};
const std::vector<std::string> kDefaultLayerRoutings = {"uniform", "zipf1.0"};

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> items;
  std::string current;
  for (char c : text) {
    if (c == ',') {
      if (!current.empty()) items.push_back(current);
      current.clear();
    } else {
      current += c;
    }
  }
  if (!current.empty()) items.push_back(current);
  return items;
}

template <typename T>
std::string join(const std::vector<T>& items) {
  std::string text;
  for (const T& item : items) {
    if (!text.empty()) text += ",";
    if constexpr (std::is_same_v<T, std::string>) {
      text += item;
    } else {
      text += std::to_string(item);
    }
  }
  return text;
}

std::string command_line(const std::vector<std::string>& argv) {
  std::string line = "ramp bench";
  for (const std::string& word : argv) {
    line += " ";
    if (word.find_first_of(" \t'\"") == std::string::npos) {
      line += word;
    } else {
      line += "'" + word + "'";
    }
  }
  return line;
}

bool parse_token_list(const std::string& text, std::vector<int32_t>* tokens, std::string* error) {
  if (text == "all") {
    *tokens = workloads::standard_token_counts();
    return true;
  }
  tokens->clear();
  for (const std::string& item : split_list(text)) {
    char* end = nullptr;
    const long value = std::strtol(item.c_str(), &end, 10);
    if (end == item.c_str() || *end != '\0' || value < 0 || value > (1 << 22)) {
      *error = "--tokens: '" + item + "' is not a token count in [0, 4194304]";
      return false;
    }
    tokens->push_back(static_cast<int32_t>(value));
  }
  if (tokens->empty()) {
    *error = "--tokens: empty list";
    return false;
  }
  return true;
}

}  // namespace

int run_bench_command(const std::vector<std::string>& argv) {
  auto print_help = [] {
    std::printf(kBenchHelp, join(kDefaultLayerModels).c_str(), join(kDefaultLayerTokens).c_str(),
                join(kDefaultLayerRoutings).c_str());
  };
  if (argv.empty()) {
    print_help();
    return 2;
  }
  if (argv[0] == "--help" || argv[0] == "help") {
    print_help();
    return 0;
  }
  const std::string kind = argv[0];
  if (kind != "gemm" && kind != "layer") {
    std::fprintf(stderr, "ramp bench: unknown benchmark '%s' (gemm, layer; see ramp bench --help)\n",
                 kind.c_str());
    return 2;
  }
  const std::vector<std::string> rest(argv.begin() + 1, argv.end());
  Args args;
  if (!args.parse(rest,
                  {"out", "models", "models-json", "tokens", "routings", "repeats", "warmup",
                   "seed", "order", "verify-tokens", "python", "torch-script", "l2-group",
                   "decode-max-tokens", "decode-hand-over"},
                  {"no-kernel", "no-overlap", "routing-aware", "no-cublas-peer", "torch-peer",
                   "no-torch-peer", "help"})) {
    std::fprintf(stderr, "ramp bench: %s (see ramp bench --help)\n", args.error().c_str());
    return 2;
  }
  if (args.has("help")) {
    print_help();
    return 0;
  }
#if !RAMP_HAVE_CUDA
  std::fprintf(stderr,
               "ramp bench: this build has no CUDA backend (configured without nvcc, or with "
               "RAMP_ENABLE_CUDA=OFF)\n");
  return 2;
#else
  bench::BenchOptions options;
  options.kind = kind == "gemm" ? bench::BenchKind::kGemm : bench::BenchKind::kLayer;
  options.command_line = command_line(argv);
  options.out_path = args.text("out", "");
  int64_t repeats = 0, warmup = 0, seed = 0, verify_tokens = 0, decode_max_tokens = -1,
          decode_hand_over = -1;
  if (!args.integer("decode-max-tokens", -1, 0, 1 << 20, &decode_max_tokens) ||
      !args.integer("decode-hand-over", -1, 0, 1, &decode_hand_over) ||
      !args.integer("repeats", 30, 1, 100000, &repeats) ||
      !args.integer("warmup", 5, 0, 100000, &warmup) ||
      !args.integer("seed", 1, 0, INT64_MAX, &seed) ||
      !args.integer("verify-tokens", 32, 1, 1 << 20, &verify_tokens)) {
    std::fprintf(stderr, "ramp bench: %s\n", args.error().c_str());
    return 2;
  }
  options.repeats = static_cast<int>(repeats);
  options.warmup = static_cast<int>(warmup);
  options.seed = static_cast<uint64_t>(seed);
  options.verify_tokens = static_cast<int>(verify_tokens);
  options.decode_max_tokens = static_cast<int>(decode_max_tokens);
  options.decode_hand_over = static_cast<int>(decode_hand_over);
  if (const std::string order = args.text("order", "half-interval");
      !parse_expert_order(order, &options.order)) {
    std::fprintf(stderr, "ramp bench: unknown order '%s' (identity, half-interval, longest-first)\n",
                 order.c_str());
    return 2;
  }
  if (args.has("torch-peer") && args.has("no-torch-peer")) {
    std::fprintf(stderr, "ramp bench: --torch-peer and --no-torch-peer contradict each other\n");
    return 2;
  }
  options.run_kernel = !args.has("no-kernel");
  options.overlap_kernels = !args.has("no-overlap");
  options.routing_aware = args.has("routing-aware");
  if (args.has("l2-group")) {
    const std::string groups = args.text("l2-group", "");
    auto valid = [](char g) { return g == '0' || g == '1' || g == '8'; };
    if (groups.size() != 3 || groups[1] != ',' || !valid(groups[0]) || !valid(groups[2])) {
      std::fprintf(stderr, "ramp bench: --l2-group takes G1,G2 with each 0, 1 or 8, got '%s'\n",
                   groups.c_str());
      return 2;
    }
    options.l2_group[0] = groups[0] - '0';
    options.l2_group[1] = groups[2] - '0';
  }
  options.cublas_peer = !args.has("no-cublas-peer");
  options.torch_peer = !args.has("no-torch-peer");
  options.python = args.text("python", "python3");
  options.torch_script = args.text("torch-script", "");

  std::vector<std::string> routing_names;
  if (kind == "gemm") {
    const workloads::KernelCase kernel_case = workloads::seed004_gemm_case();
    routing_names = kernel_case.routings;
    if (args.has("models") || args.has("models-json")) {
      std::fprintf(stderr, "ramp bench gemm: --models does not apply (the case is seed004)\n");
      return 2;
    }
  } else {
    routing_names = kDefaultLayerRoutings;
  }
  if (args.has("routings")) {
    const std::string text = args.text("routings", "");
    routing_names = text == "all" ? workloads::all_routing_names() : split_list(text);
  }
  std::vector<workloads::RoutingSpec> routings;
  for (const std::string& name : routing_names) {
    workloads::RoutingSpec spec;
    if (!workloads::RoutingSpec::parse(name, &spec)) {
      std::fprintf(stderr,
                   "ramp bench: unknown routing '%s' (balanced, uniform, zipf<S>, hot, worst)\n",
                   name.c_str());
      return 2;
    }
    routings.push_back(spec);
  }
  if (routings.empty()) {
    std::fprintf(stderr, "ramp bench: --routings: empty list\n");
    return 2;
  }

  if (kind == "gemm") {
    const workloads::KernelCase kernel_case = workloads::seed004_gemm_case();
    int64_t tokens = 0;
    if (!args.integer("tokens", kernel_case.T, 0, 1 << 22, &tokens)) {
      std::fprintf(stderr, "ramp bench gemm: %s (one token count)\n", args.error().c_str());
      return 2;
    }
    for (const workloads::RoutingSpec& routing : routings) {
      bench::CaseSpec spec;
      spec.model = "seed004";
      spec.shape = MoeShape{kernel_case.E, kernel_case.k, kernel_case.K, kernel_case.N};
      spec.num_tokens = static_cast<int32_t>(tokens);
      spec.routing = routing;
      options.cases.push_back(spec);
    }
  } else {
    std::vector<workloads::ModelShape> table = workloads::builtin_models();
    if (args.has("models-json")) {
      if (Status status = workloads::load_models_json(args.text("models-json", ""), &table);
          !status.is_ok()) {
        std::fprintf(stderr, "ramp bench: %s\n", status.to_string().c_str());
        return 2;
      }
    }
    std::vector<std::string> model_names = kDefaultLayerModels;
    if (args.has("models")) {
      const std::string text = args.text("models", "");
      if (text == "all") {
        model_names.clear();
        for (const auto& model : table) model_names.push_back(model.name);
      } else {
        model_names = split_list(text);
      }
    }
    std::vector<int32_t> tokens = kDefaultLayerTokens;
    if (args.has("tokens")) {
      std::string error;
      if (!parse_token_list(args.text("tokens", ""), &tokens, &error)) {
        std::fprintf(stderr, "ramp bench: %s\n", error.c_str());
        return 2;
      }
    }
    // Model-major order: the bench keeps one model's weights on the device across its cases.
    for (const std::string& name : model_names) {
      const workloads::ModelShape* found = nullptr;
      for (const auto& model : table) {
        if (model.name == name) found = &model;
      }
      if (found == nullptr) {
        std::fprintf(stderr, "ramp bench: unknown model '%s' (see ramp models)\n", name.c_str());
        return 2;
      }
      if (found->shape.top_k > found->shape.num_experts) {
        std::fprintf(stderr, "ramp bench: model '%s' has top_k > num_experts\n", name.c_str());
        return 2;
      }
      for (int32_t t : tokens) {
        for (const workloads::RoutingSpec& routing : routings) {
          bench::CaseSpec spec;
          spec.model = found->name;
          spec.shape = found->shape;
          spec.num_tokens = t;
          spec.routing = routing;
          options.cases.push_back(spec);
        }
      }
    }
  }
  return bench::run_bench(options);
#endif
}

}  // namespace ramp::cli
