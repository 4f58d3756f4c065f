#include "workloads/models.h"

#include <limits>

#include "core/json.h"

namespace ramp::workloads {
namespace {

ModelShape make_model(std::string name, int32_t experts, int32_t top_k, int32_t hidden,
                      int32_t intermediate) {
  ModelShape model;
  model.name = std::move(name);
  model.shape.num_experts = experts;
  model.shape.top_k = top_k;
  model.shape.hidden = hidden;
  model.shape.intermediate = intermediate;
  return model;
}

Status invalid(const std::string& message) {
  return Status(ErrorCode::kInvalidArgument, message);
}

// Reads one required positive int32 field of a model entry.
Status read_dimension(const json::Value& entry, const std::string& where, const char* field,
                      int32_t* out) {
  const json::Value* value = entry.find(field);
  if (value == nullptr) return invalid(where + ": missing field \"" + field + "\"");
  int64_t integer = 0;
  if (!value->get_int64(&integer)) {
    return invalid(where + ": field \"" + field + "\" must be an integer, got " + value->dump());
  }
  if (integer <= 0 || integer > std::numeric_limits<int32_t>::max()) {
    return invalid(where + ": field \"" + field + "\" = " + std::to_string(integer) +
                   " must be a positive 32-bit integer");
  }
  *out = static_cast<int32_t>(integer);
  return Status::ok();
}

}  // namespace

const std::vector<ModelShape>& builtin_models() {
  static const std::vector<ModelShape> models = {
      make_model("mixtral-8x7b", 8, 2, 4096, 14336),
      make_model("qwen2-57b-a14b", 64, 8, 3584, 2560),
      make_model("deepseek-v2-lite", 64, 6, 2048, 1408),
      make_model("qwen3-30b-a3b", 128, 8, 2048, 768),
      make_model("olmoe-1b-7b", 64, 8, 2048, 1024),
      make_model("gpt-oss-120b", 128, 4, 2880, 2880),
      make_model("qwen3-235b-a22b", 128, 8, 4096, 1536),
  };
  return models;
}

const ModelShape* find_model(const std::string& name) {
  for (const ModelShape& model : builtin_models()) {
    if (model.name == name) return &model;
  }
  return nullptr;
}

Status load_models_json(const std::string& path, std::vector<ModelShape>* models) {
  json::Value document;
  RAMP_TRY(json::read_file(path, &document));
  if (!document.is_object()) return invalid(path + ": the top level must be an object");
  const json::Value* table = document.find("models");
  if (table == nullptr) return invalid(path + ": missing the \"models\" object");
  if (!table->is_object()) {
    return invalid(path + ": \"models\" must be an object, got " + json::type_name(table->type()));
  }
  std::vector<ModelShape> loaded;
  for (const auto& [name, entry] : table->as_object()) {
    const std::string where = path + ": model \"" + name + "\"";
    if (!entry.is_object()) {
      return invalid(where + " must be an object, got " + json::type_name(entry.type()));
    }
    ModelShape model;
    model.name = name;
    RAMP_TRY(read_dimension(entry, where, "E", &model.shape.num_experts));
    RAMP_TRY(read_dimension(entry, where, "k", &model.shape.top_k));
    RAMP_TRY(read_dimension(entry, where, "H", &model.shape.hidden));
    RAMP_TRY(read_dimension(entry, where, "I", &model.shape.intermediate));
    if (model.shape.top_k > model.shape.num_experts) {
      return invalid(where + ": k = " + std::to_string(model.shape.top_k) +
                     " exceeds E = " + std::to_string(model.shape.num_experts));
    }
    loaded.push_back(std::move(model));
  }
  *models = std::move(loaded);
  return Status::ok();
}

KernelCase seed004_gemm_case() {
  KernelCase kernel_case;
  kernel_case.E = 64;
  kernel_case.k = 8;
  kernel_case.T = 4096;
  kernel_case.N = 3584;
  kernel_case.K = 2560;
  kernel_case.routings = {"balanced", "hot", "worst", "zipf1.0"};
  return kernel_case;
}

const std::vector<int32_t>& standard_token_counts() {
  static const std::vector<int32_t> counts = {1, 8, 32, 128, 512, 2048, 8192};
  return counts;
}

}  // namespace ramp::workloads
