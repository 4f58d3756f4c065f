// ramp_moe._C: the MoE layer over DLPack arrays (torch, NumPy, CuPy, JAX, ...). Shapes are read
// from the arrays and checked against each other here; everything else (values, strides,
// alignment, the workspace) is checked by the C++ API, whose Status becomes the exception:
// ValueError for bad input, RuntimeError for CUDA, device and internal errors.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <stdexcept>
#include <string>

#include "ramp/ramp.h"

#if RAMP_PY_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace nb = nanobind;

namespace {

using InArray = nb::ndarray<nb::ro>;
using OutArray = nb::ndarray<>;

constexpr int kDlpackCpu = 1;
constexpr int kDlpackCuda = 2;

[[noreturn]] void raise(const ramp::Status& status) {
  switch (status.code()) {
    case ramp::ErrorCode::kInvalidArgument:
    case ramp::ErrorCode::kShapeMismatch:
    case ramp::ErrorCode::kUnsupportedShape:
    case ramp::ErrorCode::kMisaligned:
      throw std::invalid_argument(status.to_string());
    default:
      throw std::runtime_error(status.to_string());
  }
}

void throw_if_error(const ramp::Status& status) {
  if (!status.is_ok()) raise(status);
}

ramp::Status shape_error(std::string message) {
  return {ramp::ErrorCode::kShapeMismatch, std::move(message)};
}

template <class Array>
std::string shape_text(const Array& array) {
  std::string text = "[";
  for (size_t d = 0; d < array.ndim(); ++d) {
    if (d) text += ", ";
    text += std::to_string(array.shape(d));
  }
  return text + "]";
}

std::string dtype_text(nb::dlpack::dtype dtype) {
  switch (static_cast<nb::dlpack::dtype_code>(dtype.code)) {
    case nb::dlpack::dtype_code::Int: return "int" + std::to_string(dtype.bits);
    case nb::dlpack::dtype_code::UInt: return "uint" + std::to_string(dtype.bits);
    case nb::dlpack::dtype_code::Float: return "float" + std::to_string(dtype.bits);
    case nb::dlpack::dtype_code::Bfloat: return "bfloat" + std::to_string(dtype.bits);
    default: return "dtype code " + std::to_string(dtype.code) + "/" + std::to_string(dtype.bits);
  }
}

bool has_dtype(nb::dlpack::dtype dtype, nb::dlpack::dtype_code code, int bits) {
  return dtype.code == static_cast<uint8_t>(code) && dtype.bits == bits && dtype.lanes == 1;
}

// bf16 arrays, or uint16 arrays holding bf16 bit patterns (NumPy has no bfloat16).
template <class Array>
ramp::Status check_bf16(const char* name, const Array& array) {
  if (has_dtype(array.dtype(), nb::dlpack::dtype_code::Bfloat, 16) ||
      has_dtype(array.dtype(), nb::dlpack::dtype_code::UInt, 16)) {
    return ramp::Status::ok();
  }
  return {ramp::ErrorCode::kInvalidArgument,
          std::string(name) + " has dtype " + dtype_text(array.dtype()) +
              ", expected bfloat16 (or uint16 holding bf16 bits)"};
}

template <class Array>
ramp::Status check_dtype(const char* name, const Array& array, nb::dlpack::dtype_code code,
                         int bits, const char* expected) {
  if (has_dtype(array.dtype(), code, bits)) return ramp::Status::ok();
  return {ramp::ErrorCode::kInvalidArgument, std::string(name) + " has dtype " +
                                                 dtype_text(array.dtype()) + ", expected " +
                                                 expected};
}

template <class Array>
ramp::Status check_shape(const char* name, const Array& array,
                         std::initializer_list<int64_t> want, const char* meaning) {
  bool same = array.ndim() == want.size();
  size_t d = 0;
  for (int64_t extent : want) {
    if (same && static_cast<int64_t>(array.shape(d)) != extent) same = false;
    ++d;
  }
  if (same) return ramp::Status::ok();
  std::string expected = "[";
  d = 0;
  for (int64_t extent : want) expected += (d++ ? ", " : "") + std::to_string(extent);
  return shape_error(std::string(name) + " has shape " + shape_text(array) + ", expected " +
                     expected + "] (" + meaning + ")");
}

// Row-major with unit strides: the kernels index these arrays densely. An empty array is never
// read, and exporters give its strides arbitrary values.
template <class Array>
ramp::Status check_contiguous(const char* name, const Array& array) {
  if (array.size() == 0) return ramp::Status::ok();
  int64_t expected = 1;
  for (size_t d = array.ndim(); d-- > 0;) {
    if (array.shape(d) > 1 && array.stride(d) != expected) {
      return shape_error(std::string(name) + " is not contiguous (row-major)");
    }
    expected *= static_cast<int64_t>(array.shape(d));
  }
  return ramp::Status::ok();
}

// [T, H] with unit column stride; the row stride may be larger than H.
template <class Array>
ramp::Status row_stride(const char* name, const Array& array, int64_t* stride) {
  if (array.size() == 0) {
    *stride = static_cast<int64_t>(array.shape(1));
    return ramp::Status::ok();
  }
  if (array.shape(1) > 1 && array.stride(1) != 1) {
    return shape_error(std::string(name) + " must have unit stride along its last dimension");
  }
  *stride = array.shape(0) > 1 ? array.stride(0) : static_cast<int64_t>(array.shape(1));
  return ramp::Status::ok();
}

template <class Array>
ramp::Status check_device(const char* name, const Array& array, int device_type, int device_id) {
  if (array.device_type() == device_type && array.device_id() == device_id) {
    return ramp::Status::ok();
  }
  return {ramp::ErrorCode::kInvalidArgument,
          std::string(name) + " is on another device than hidden_states (DLPack device " +
              std::to_string(array.device_type()) + ":" + std::to_string(array.device_id()) +
              ", hidden_states " + std::to_string(device_type) + ":" + std::to_string(device_id) +
              ")"};
}

struct Call {
  ramp::MoeShape shape;
  ramp::MoeLayerArgs args;
  ramp::Backend backend = ramp::Backend::kCpu;
  int device_id = 0;
};

ramp::Status describe_call(const InArray& hidden, const InArray& w1, const InArray& w2,
                           const InArray& topk_weights, const InArray& topk_ids,
                           const OutArray& out, Call* call) {
  if (hidden.ndim() != 2) {
    return shape_error("hidden_states has shape " + shape_text(hidden) + ", expected [T, H]");
  }
  if (w1.ndim() != 3) return shape_error("w1 has shape " + shape_text(w1) + ", expected [E, 2I, H]");
  if (topk_ids.ndim() != 2) {
    return shape_error("topk_ids has shape " + shape_text(topk_ids) + ", expected [T, k]");
  }
  const int64_t tokens = static_cast<int64_t>(hidden.shape(0));
  const int64_t hidden_size = static_cast<int64_t>(hidden.shape(1));
  const int64_t experts = static_cast<int64_t>(w1.shape(0));
  const int64_t top_k = static_cast<int64_t>(topk_ids.shape(1));
  if (w1.shape(1) % 2 != 0) {
    return shape_error("w1 has shape " + shape_text(w1) +
                       ": its middle extent 2I must be even (gate rows, then up rows)");
  }
  const int64_t inter = static_cast<int64_t>(w1.shape(1)) / 2;
  for (int64_t extent : {tokens, hidden_size, experts, top_k, inter}) {
    if (extent > INT32_MAX) return shape_error("an extent exceeds int32: " + std::to_string(extent));
  }

  const int device_type = hidden.device_type();
  if (device_type != kDlpackCpu && device_type != kDlpackCuda) {
    return {ramp::ErrorCode::kInvalidArgument,
            "hidden_states is on DLPack device type " + std::to_string(device_type) +
                "; ramp runs on CPU (1) and CUDA (2) memory"};
  }
  RAMP_TRY(check_device("w1", w1, device_type, hidden.device_id()));
  RAMP_TRY(check_device("w2", w2, device_type, hidden.device_id()));
  RAMP_TRY(check_device("topk_weights", topk_weights, device_type, hidden.device_id()));
  RAMP_TRY(check_device("topk_ids", topk_ids, device_type, hidden.device_id()));
  RAMP_TRY(check_device("out", out, device_type, hidden.device_id()));

  RAMP_TRY(check_bf16("hidden_states", hidden));
  RAMP_TRY(check_bf16("w1", w1));
  RAMP_TRY(check_bf16("w2", w2));
  RAMP_TRY(check_bf16("out", out));
  RAMP_TRY(check_dtype("topk_weights", topk_weights, nb::dlpack::dtype_code::Float, 32, "float32"));
  RAMP_TRY(check_dtype("topk_ids", topk_ids, nb::dlpack::dtype_code::Int, 32,
                       "int32 (convert with .to(torch.int32) / .astype(np.int32))"));

  RAMP_TRY(check_shape("w1", w1, {experts, 2 * inter, hidden_size},
                       "E, 2I from w1; H from hidden_states"));
  RAMP_TRY(check_shape("w2", w2, {experts, hidden_size, inter}, "E, H, I"));
  RAMP_TRY(check_shape("topk_ids", topk_ids, {tokens, top_k}, "T from hidden_states"));
  RAMP_TRY(check_shape("topk_weights", topk_weights, {tokens, top_k}, "T, k from topk_ids"));
  RAMP_TRY(check_shape("out", out, {tokens, hidden_size}, "same as hidden_states"));
  RAMP_TRY(check_contiguous("w1", w1));
  RAMP_TRY(check_contiguous("w2", w2));
  RAMP_TRY(check_contiguous("topk_ids", topk_ids));
  RAMP_TRY(check_contiguous("topk_weights", topk_weights));

  call->shape = ramp::MoeShape{static_cast<int32_t>(experts), static_cast<int32_t>(top_k),
                               static_cast<int32_t>(hidden_size), static_cast<int32_t>(inter)};
  ramp::MoeLayerArgs& args = call->args;
  args.num_tokens = static_cast<int32_t>(tokens);
  args.hidden = static_cast<const ramp::bf16*>(hidden.data());
  RAMP_TRY(row_stride("hidden_states", hidden, &args.hidden_row_stride));
  args.w13 = static_cast<const ramp::bf16*>(w1.data());
  args.w2 = static_cast<const ramp::bf16*>(w2.data());
  args.topk_ids = static_cast<const int32_t*>(topk_ids.data());
  args.topk_weights = static_cast<const float*>(topk_weights.data());
  args.out = static_cast<ramp::bf16*>(out.data());
  RAMP_TRY(row_stride("out", out, &args.out_row_stride));
  call->backend = device_type == kDlpackCuda ? ramp::Backend::kCuda : ramp::Backend::kCpu;
  call->device_id = hidden.device_id();
  return ramp::Status::ok();
}

#if RAMP_PY_WITH_CUDA
// This extension carries its own (static) CUDA runtime, whose current device is not the
// caller's: select the arrays' device explicitly.
ramp::Status use_device(int device_id) {
  const cudaError_t error = cudaSetDevice(device_id);
  if (error != cudaSuccess) {
    return {ramp::ErrorCode::kCudaError, std::string("cudaSetDevice(") +
                                             std::to_string(device_id) +
                                             "): " + cudaGetErrorString(error)};
  }
  return ramp::Status::ok();
}
#else
ramp::Status use_device(int) { return ramp::Status::ok(); }
#endif

void fused_moe(const InArray& hidden, const InArray& w1, const InArray& w2,
               const InArray& topk_weights, const InArray& topk_ids, const OutArray& out,
               std::optional<OutArray> workspace, uintptr_t stream, int32_t num_threads,
               bool check_routing) {
  Call call;
  throw_if_error(describe_call(hidden, w1, w2, topk_weights, topk_ids, out, &call));
  void* workspace_data = nullptr;
  size_t workspace_bytes = 0;
  if (workspace) {
    if (workspace->device_type() != hidden.device_type() ||
        workspace->device_id() != hidden.device_id()) {
      throw std::invalid_argument("invalid argument: workspace is on another device than hidden_states");
    }
    workspace_data = workspace->data();
    workspace_bytes = workspace->nbytes();
  }
  if (call.backend == ramp::Backend::kCuda) throw_if_error(use_device(call.device_id));

  ramp::MoeLayerOptions options;
  options.cpu_threads = num_threads;
  ramp::MoeLayer layer(call.shape, call.backend, options);
  throw_if_error(layer.status());
  void* stream_pointer = reinterpret_cast<void*>(stream);
  ramp::Status status;
  {
    nb::gil_scoped_release release;
    status = layer.plan(call.args.topk_ids, call.args.num_tokens);
    if (status.is_ok()) status = layer.run(call.args, workspace_data, workspace_bytes, stream_pointer);
    if (status.is_ok() && check_routing) {
      status = layer.check_routing(call.args, workspace_data, stream_pointer);
    }
  }
  throw_if_error(status);
}

size_t workspace_bytes(int32_t num_experts, int32_t top_k, int32_t hidden, int32_t intermediate,
                       int32_t num_tokens, const std::string& backend, int device_id) {
  ramp::Backend requested = ramp::Backend::kAuto;
  if (backend == "cpu") {
    requested = ramp::Backend::kCpu;
  } else if (backend == "cuda") {
    requested = ramp::Backend::kCuda;
    throw_if_error(use_device(device_id));
  } else {
    throw std::invalid_argument("invalid argument: backend '" + backend + "' is not cpu or cuda");
  }
  const ramp::MoeLayer layer(ramp::MoeShape{num_experts, top_k, hidden, intermediate}, requested);
  throw_if_error(layer.status());
  return layer.workspace_bytes(num_tokens);
}

}  // namespace

NB_MODULE(_C, m) {
  m.doc() = "ramp MoE layer over DLPack arrays; use ramp_moe.fused_moe, not this module directly";
  m.def("fused_moe", &fused_moe, nb::arg("hidden_states"), nb::arg("w1"), nb::arg("w2"),
        nb::arg("topk_weights"), nb::arg("topk_ids"), nb::arg("out"),
        nb::arg("workspace").none() = nb::none(), nb::arg("stream") = 0,
        nb::arg("num_threads") = 0, nb::arg("check_routing") = false,
        "Runs the layer into `out`; arrays' device picks the backend. Raises ValueError on bad "
        "input, RuntimeError on CUDA errors.");
  m.def("workspace_bytes", &workspace_bytes, nb::arg("num_experts"), nb::arg("top_k"),
        nb::arg("hidden"), nb::arg("intermediate"), nb::arg("num_tokens"), nb::arg("backend"),
        nb::arg("device_id") = 0);
  m.def("cuda_backend_built", &ramp::cuda_backend_built);
  m.def("cuda_device_available", &ramp::cuda_device_available);
}
