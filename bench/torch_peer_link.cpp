#include "bench/torch_peer_link.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <sys/wait.h>

namespace ramp::bench {

namespace {

std::string shell_quote(const std::string& text) {
  std::string quoted = "'";
  for (char c : text) {
    if (c == '\'') {
      quoted += "'\\''";
    } else {
      quoted += c;
    }
  }
  return quoted + "'";
}

json::Value case_to_json(const BenchOptions& options, const TorchPeerCase& peer_case) {
  const CaseSpec& spec = peer_case.spec;
  json::Value value = json::Value::object();
  value.set("name", spec.name());
  value.set("E", spec.shape.num_experts);
  value.set("k", spec.shape.top_k);
  value.set("T", spec.num_tokens);
  if (options.kind == BenchKind::kGemm) {
    value.set("N", spec.shape.intermediate);
    value.set("K", spec.shape.hidden);
  } else {
    value.set("H", spec.shape.hidden);
    value.set("I", spec.shape.intermediate);
  }
  value.set("routing", spec.routing.name());
  json::Value ids = json::Value::array();
  json::Value weights = json::Value::array();
  for (int32_t id : peer_case.routing->topk_ids) ids.push_back(id);
  for (float w : peer_case.routing->topk_weights) weights.push_back(static_cast<double>(w));
  value.set("topk_ids", std::move(ids));
  value.set("topk_weights", std::move(weights));
  return value;
}

}  // namespace

std::string find_torch_peer_script(const std::string& explicit_path) {
  if (!explicit_path.empty()) return explicit_path;
  const std::filesystem::path local = "bench/peers/torch_peer.py";
  if (std::filesystem::exists(local)) return local.string();
#ifdef RAMP_SOURCE_DIR
  const std::filesystem::path configured =
      std::filesystem::path(RAMP_SOURCE_DIR) / "bench/peers/torch_peer.py";
  if (std::filesystem::exists(configured)) return configured.string();
#endif
  return {};
}

void run_torch_peer(const BenchOptions& options, const std::vector<TorchPeerCase>& cases,
                    TorchPeerRun* run) {
  *run = TorchPeerRun{};
  const std::string script = find_torch_peer_script(options.torch_script);
  if (script.empty() || !std::filesystem::exists(script)) {
    run->note = "torch peer script not found (bench/peers/torch_peer.py; --torch-script PATH)";
    return;
  }
  std::error_code error;
  const std::filesystem::path directory = std::filesystem::temp_directory_path(error);
  if (error) {
    run->note = "no temporary directory: " + error.message();
    return;
  }
  const std::string stem = "ramp-bench-" + std::to_string(getpid());
  const std::filesystem::path input = directory / (stem + "-torch-in.json");
  const std::filesystem::path output = directory / (stem + "-torch-out.json");

  json::Value request = json::Value::object();
  request.set("kind", options.kind == BenchKind::kGemm ? "gemm" : "layer");
  request.set("warmup", options.warmup);
  request.set("repeats", options.repeats);
  request.set("seed", static_cast<int64_t>(options.seed));
  request.set("verify_tokens", options.verify_tokens);
  json::Value case_list = json::Value::array();
  for (const TorchPeerCase& peer_case : cases) case_list.push_back(case_to_json(options, peer_case));
  request.set("cases", std::move(case_list));
  if (Status status = json::write_file(input.string(), request); !status.is_ok()) {
    run->note = "cannot write the torch peer's input: " + status.to_string();
    return;
  }
  std::filesystem::remove(output, error);

  const std::string command = "PYTHONUNBUFFERED=1 " + shell_quote(options.python) + " " +
                              shell_quote(script) + " --input " + shell_quote(input.string()) +
                              " --output " + shell_quote(output.string()) + " 2>&1";
  std::printf("torch peer: %s\n", command.c_str());
  std::fflush(stdout);
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) {
    run->note = "cannot start " + options.python;
    std::filesystem::remove(input, error);
    return;
  }
  char line[4096];
  while (std::fgets(line, sizeof(line), pipe) != nullptr) {
    std::printf("  [torch] %s", line);
    std::fflush(stdout);
  }
  const int wait_status = pclose(pipe);
  const int exit_code = WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : -1;
  std::filesystem::remove(input, error);

  if (exit_code == 127) {
    run->note = options.python + " not found";
    return;
  }
  if (!std::filesystem::exists(output)) {
    run->note = "torch peer exited with " + std::to_string(exit_code) + " and wrote no result";
    return;
  }
  Status status = json::read_file(output.string(), &run->result);
  std::filesystem::remove(output, error);
  if (!status.is_ok() || !run->result.is_object()) {
    run->note = "unreadable torch peer result: " + status.to_string();
    run->result = json::Value();
    return;
  }
  run->ran = true;
  if (const json::Value* top_error = run->result.find("error");
      top_error != nullptr && top_error->is_string()) {
    run->note = top_error->as_string();
  } else if (exit_code != 0) {
    run->note = "torch peer exited with " + std::to_string(exit_code);
  }
}

}  // namespace ramp::bench
