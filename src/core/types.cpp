#include "ramp/types.h"

#include <cstdio>

namespace ramp {

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kBF16: return "bf16";
  }
  return "unknown";
}

std::string MoeShape::to_string() const {
  char buffer[128];
  std::snprintf(buffer, sizeof(buffer), "E=%d k=%d H=%d I=%d %s", num_experts, top_k, hidden,
                intermediate, dtype_name(dtype));
  return buffer;
}

}  // namespace ramp
