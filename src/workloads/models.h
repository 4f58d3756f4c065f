// The MoE layer shapes every benchmark, profile and test names (shared/workloads/models.json).
// The table is also compiled in, so a machine without the shared folder still knows the names;
// a test checks the two copies agree.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ramp/status.h"
#include "ramp/types.h"

namespace ramp::workloads {

struct ModelShape {
  std::string name;  // "qwen3-30b-a3b"
  MoeShape shape;
};

// The seven models of models.json, in file order.
const std::vector<ModelShape>& builtin_models();
// Null when no builtin model has that name.
const ModelShape* find_model(const std::string& name);

// Reads the "models" object of a models.json file (E, k, H, I per model; other top-level keys
// are ignored). Errors name the file, the model and the field.
Status load_models_json(const std::string& path, std::vector<ModelShape>* models);

// The static batching paper's kernel-level case ("seed004_gemm" in models.json): one grouped
// GEMM y[slot] = x[token] . W[e]^T with W[e] of shape [N, K].
struct KernelCase {
  int32_t E = 0, k = 0, T = 0, N = 0, K = 0;
  std::vector<std::string> routings;
};
KernelCase seed004_gemm_case();

// The batch sizes of models.json "tokens": 1, 8, 32, 128, 512, 2048, 8192.
const std::vector<int32_t>& standard_token_counts();

}  // namespace ramp::workloads
