#include "ramp/status.h"

namespace ramp {

const char* error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::kOk: return "ok";
    case ErrorCode::kInvalidArgument: return "invalid argument";
    case ErrorCode::kShapeMismatch: return "shape mismatch";
    case ErrorCode::kUnsupportedShape: return "unsupported shape";
    case ErrorCode::kMisaligned: return "misaligned pointer";
    case ErrorCode::kCudaError: return "CUDA error";
    case ErrorCode::kNoDevice: return "no device";
    case ErrorCode::kInternal: return "internal error";
  }
  return "unknown error";
}

std::string Status::to_string() const {
  if (is_ok()) return "ok";
  return std::string(error_code_name(code_)) + ": " + message_;
}

}  // namespace ramp
