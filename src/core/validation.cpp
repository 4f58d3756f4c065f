#include "core/validation.h"

#include <cmath>
#include <cstdio>
#include <limits>
#include <string>

namespace ramp {

namespace {

std::string quoted_pointer(const void* pointer) {
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%p", pointer);
  return buffer;
}

std::string element_name(const char* array, int32_t slot, int32_t top_k) {
  return std::string(array) + "[" + std::to_string(slot / top_k) + "][" +
         std::to_string(slot % top_k) + "]";
}

Status check_aligned(const char* name, const void* pointer) {
  if (reinterpret_cast<uintptr_t>(pointer) % 16 != 0) {
    return {ErrorCode::kMisaligned, std::string(name) + " (" + quoted_pointer(pointer) +
                                        ") is not 16-byte aligned"};
  }
  return Status::ok();
}

Status check_pointer(const char* name, const void* pointer, bool needs_alignment) {
  if (pointer == nullptr) return {ErrorCode::kInvalidArgument, std::string(name) + " is null"};
  return needs_alignment ? check_aligned(name, pointer) : Status::ok();
}

// A bf16 row stride: at least the row length, and a multiple of 8 elements so every row starts
// 16-byte aligned (the kernels load rows with 16-byte copies).
Status check_row_stride(const char* name, int64_t stride, int32_t row_length) {
  if (stride < row_length) {
    return {ErrorCode::kShapeMismatch, std::string(name) + " = " + std::to_string(stride) +
                                           " is smaller than the row length " +
                                           std::to_string(row_length)};
  }
  if (stride % 8 != 0) {
    return {ErrorCode::kMisaligned, std::string(name) + " = " + std::to_string(stride) +
                                        " elements is not a multiple of 8 (rows must start "
                                        "16-byte aligned)"};
  }
  return Status::ok();
}

Status check_multiple_of_64(const char* name, int32_t value) {
  if (value < 1 || value % kDimensionMultiple != 0) {
    return {ErrorCode::kUnsupportedShape,
            std::string(name) + " = " + std::to_string(value) +
                " must be a positive multiple of 64 (the kernels' 128-byte k-tile)"};
  }
  return Status::ok();
}

Status check_experts_and_top_k(int32_t num_experts, int32_t top_k) {
  if (num_experts < 1) {
    return {ErrorCode::kInvalidArgument,
            "num_experts (E) = " + std::to_string(num_experts) + " must be >= 1"};
  }
  if (top_k < 1 || top_k > num_experts) {
    return {ErrorCode::kInvalidArgument, "top_k (k) = " + std::to_string(top_k) +
                                             " must be in [1, E = " +
                                             std::to_string(num_experts) + "]"};
  }
  return Status::ok();
}

Status check_num_tokens(int32_t num_tokens, int32_t top_k) {
  if (num_tokens < 0) {
    return {ErrorCode::kInvalidArgument,
            "num_tokens (T) = " + std::to_string(num_tokens) + " must be >= 0"};
  }
  if (static_cast<int64_t>(num_tokens) * top_k > std::numeric_limits<int32_t>::max()) {
    return {ErrorCode::kUnsupportedShape,
            "num_tokens * top_k = " + std::to_string(static_cast<int64_t>(num_tokens) * top_k) +
                " overflows the int32 slot index"};
  }
  return Status::ok();
}

std::string id_message(int32_t slot, int32_t top_k, int32_t num_experts, const int32_t* ids) {
  std::string message = element_name("topk_ids", slot, top_k);
  if (ids != nullptr) message += " = " + std::to_string(ids[slot]);
  return message + " is outside [0, " + std::to_string(num_experts) + ")";
}

std::string weight_message(int32_t slot, int32_t top_k, const float* weights) {
  std::string message = element_name("topk_weights", slot, top_k);
  if (weights != nullptr) {
    char value[32];
    std::snprintf(value, sizeof(value), "%g", static_cast<double>(weights[slot]));
    message += std::string(" = ") + value;
  }
  return message + " is not finite";
}

}  // namespace

Status validate_shape(const MoeShape& shape) {
  RAMP_TRY(check_experts_and_top_k(shape.num_experts, shape.top_k));
  RAMP_TRY(check_multiple_of_64("hidden (H)", shape.hidden));
  RAMP_TRY(check_multiple_of_64("intermediate (I)", shape.intermediate));
  if (shape.dtype != DType::kBF16) {
    return {ErrorCode::kUnsupportedShape, std::string("dtype ") + dtype_name(shape.dtype) +
                                              " is not supported (bf16 only)"};
  }
  return Status::ok();
}

Status validate_layer_args(const MoeShape& shape, const MoeLayerArgs& args) {
  RAMP_TRY(validate_shape(shape));
  RAMP_TRY(check_num_tokens(args.num_tokens, shape.top_k));
  RAMP_TRY(check_pointer("w13", args.w13, true));
  RAMP_TRY(check_pointer("w2", args.w2, true));
  if (args.num_tokens == 0) return Status::ok();  // nothing is read or written
  RAMP_TRY(check_pointer("hidden", args.hidden, true));
  RAMP_TRY(check_pointer("topk_ids", args.topk_ids, false));
  RAMP_TRY(check_pointer("topk_weights", args.topk_weights, false));
  RAMP_TRY(check_pointer("out", args.out, true));
  const LayerRowStrides strides = layer_row_strides(shape, args);
  RAMP_TRY(check_row_stride("hidden_row_stride", strides.hidden, shape.hidden));
  RAMP_TRY(check_row_stride("out_row_stride", strides.out, shape.hidden));
  return Status::ok();
}

Status validate_grouped_gemm_shape(const GroupedGemmArgs& args) {
  RAMP_TRY(check_experts_and_top_k(args.num_experts, args.top_k));
  RAMP_TRY(check_num_tokens(args.num_tokens, args.top_k));
  RAMP_TRY(check_multiple_of_64("in_features (K)", args.in_features));
  if (args.out_features < 1 || args.out_features % 8 != 0) {
    return {ErrorCode::kUnsupportedShape,
            "out_features (N) = " + std::to_string(args.out_features) +
                " must be a positive multiple of 8 (output rows are stored in 16-byte vectors)"};
  }
  return Status::ok();
}

Status validate_grouped_gemm_args(const GroupedGemmArgs& args) {
  RAMP_TRY(validate_grouped_gemm_shape(args));
  RAMP_TRY(check_pointer("w", args.w, true));
  if (args.num_tokens == 0) return Status::ok();
  RAMP_TRY(check_pointer("x", args.x, true));
  RAMP_TRY(check_pointer("topk_ids", args.topk_ids, false));
  RAMP_TRY(check_pointer("y", args.y, true));
  return Status::ok();
}

Status validate_routing_values(const int32_t* topk_ids, const float* topk_weights,
                               int32_t num_tokens, int32_t top_k, int32_t num_experts) {
  RAMP_TRY(check_experts_and_top_k(num_experts, top_k));
  RAMP_TRY(check_num_tokens(num_tokens, top_k));
  const int32_t num_slots = num_tokens * top_k;
  if (num_slots > 0 && topk_ids == nullptr) {
    return {ErrorCode::kInvalidArgument, "topk_ids is null"};
  }
  for (int32_t slot = 0; slot < num_slots; ++slot) {
    if (topk_ids[slot] < 0 || topk_ids[slot] >= num_experts) {
      return {ErrorCode::kInvalidArgument, id_message(slot, top_k, num_experts, topk_ids)};
    }
  }
  if (topk_weights != nullptr) {
    for (int32_t slot = 0; slot < num_slots; ++slot) {
      if (!std::isfinite(topk_weights[slot])) {
        return {ErrorCode::kInvalidArgument, weight_message(slot, top_k, topk_weights)};
      }
    }
  }
  return Status::ok();
}

Status routing_header_status(const RoutingHeader& header, int32_t top_k, int32_t num_experts,
                             const int32_t* topk_ids_host, const float* topk_weights_host) {
  // Ids are reported before weights, as the host check does.
  if (header.error_bits & kRoutingBadExpertId) {
    return {ErrorCode::kInvalidArgument,
            id_message(header.first_bad_id_slot, top_k, num_experts, topk_ids_host)};
  }
  if (header.error_bits & kRoutingNonFiniteWeight) {
    return {ErrorCode::kInvalidArgument,
            weight_message(header.first_bad_weight_slot, top_k, topk_weights_host)};
  }
  return Status::ok();
}

}  // namespace ramp
