// Status: the one error type of the public API. Every entry point returns a Status; an error
// names the first offending argument or element so a caller can fix its input without a
// debugger. No exceptions cross the API (engines compile with -fno-exceptions).
#pragma once

#include <string>
#include <utility>

namespace ramp {

enum class ErrorCode {
  kOk = 0,
  kInvalidArgument,   // a value outside its domain (bad expert id, non-finite weight, k > E)
  kShapeMismatch,     // sizes or strides disagree between arguments
  kUnsupportedShape,  // valid MoE, but no kernel tiles it (e.g. H not a multiple of 64)
  kMisaligned,        // a pointer the kernel loads with 16-byte accesses is not 16-byte aligned
  kCudaError,         // the CUDA runtime reported an error
  kNoDevice,          // the CUDA backend was asked for and no usable GPU is present
  kInternal,          // a broken invariant inside the library (a bug: please report it)
};

const char* error_code_name(ErrorCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(ErrorCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok() { return {}; }
  bool is_ok() const { return code_ == ErrorCode::kOk; }
  explicit operator bool() const { return is_ok(); }
  ErrorCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "invalid argument: topk_ids[3][1] = 70 is outside [0, 64)"
  std::string to_string() const;

 private:
  ErrorCode code_ = ErrorCode::kOk;
  std::string message_;
};

}  // namespace ramp

// Propagates a failing Status to the caller. The one error-check family of the library; the
// CUDA variant (RAMP_CUDA_TRY) lives in src/cuda/cuda_check.h and adds file and line.
#define RAMP_TRY(expr)                                    \
  do {                                                    \
    ::ramp::Status ramp_status_ = (expr);                 \
    if (!ramp_status_.is_ok()) return ramp_status_;       \
  } while (0)
