#include "core/validation.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <initializer_list>
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

int64_t floor_div(int64_t a, int64_t b) {  // b > 0
  return a / b - ((a % b != 0) && (a < 0) ? 1 : 0);
}

MemoryRows contiguous_bytes(const void* begin, int64_t bytes) {
  return {reinterpret_cast<uintptr_t>(begin), 1, bytes, bytes};
}

template <class T>
MemoryRows contiguous(const T* begin, int64_t elements) {
  return contiguous_bytes(begin, elements * static_cast<int64_t>(sizeof(T)));
}

MemoryRows bf16_rows(const bf16* begin, int64_t rows, int64_t row_elements,
                     int64_t stride_elements) {
  constexpr int64_t kBytes = sizeof(bf16);
  return {reinterpret_cast<uintptr_t>(begin), rows, row_elements * kBytes,
          stride_elements * kBytes};
}

// A null workspace covers nothing.
MemoryRows workspace_memory(const void* workspace, size_t workspace_bytes) {
  return workspace != nullptr ? contiguous_bytes(workspace, static_cast<int64_t>(workspace_bytes))
                              : MemoryRows{};
}

struct NamedMemory {
  const char* name;
  MemoryRows rows;
};

// The first of `others` that `written` overlaps, as a Status naming both.
Status check_disjoint(const NamedMemory& written, std::initializer_list<NamedMemory> others) {
  for (const NamedMemory& other : others) {
    if (memory_rows_overlap(written.rows, other.rows)) {
      return {ErrorCode::kInvalidArgument,
              std::string(written.name) + " overlaps " + other.name + ": memory a call writes " +
                  "must not share bytes with its inputs or its other outputs (no in-place)"};
    }
  }
  return Status::ok();
}

}  // namespace

bool memory_rows_overlap(const MemoryRows& a, const MemoryRows& b) {
  if (a.rows <= 0 || b.rows <= 0 || a.row_bytes <= 0 || b.row_bytes <= 0) return false;
  if ((a.rows > 1 && a.stride < a.row_bytes) || (b.rows > 1 && b.stride < b.row_bytes)) {
    return true;  // not the strided rows this describes: say overlap rather than guess
  }
  // Offsets from a's start (user-space addresses are below 2^63).
  const int64_t b_begin = static_cast<int64_t>(b.begin) - static_cast<int64_t>(a.begin);
  const int64_t a_end = (a.rows - 1) * a.stride + a.row_bytes;
  const int64_t b_end = b_begin + (b.rows - 1) * b.stride + b.row_bytes;
  if (b_end <= 0 || b_begin >= a_end) return false;  // the spans do not meet
  // Walk the array with fewer rows; for each of its rows, the other's rows that could meet it
  // lie in [first, last].
  const bool walk_a = a.rows <= b.rows;
  const MemoryRows& walked = walk_a ? a : b;
  const MemoryRows& other = walk_a ? b : a;
  const int64_t walked_begin = walk_a ? 0 : b_begin;
  const int64_t other_begin = walk_a ? b_begin : 0;
  for (int64_t r = 0; r < walked.rows; ++r) {
    const int64_t lo = walked_begin + r * walked.stride;  // [lo, lo + row_bytes)
    if (other.rows == 1) {
      if (other_begin < lo + walked.row_bytes && lo < other_begin + other.row_bytes) return true;
      continue;
    }
    // other's row t meets [lo, hi) iff other_begin + t*stride < hi and
    // other_begin + t*stride + row_bytes > lo.
    const int64_t first = floor_div(lo - other.row_bytes - other_begin, other.stride) + 1;
    const int64_t last = floor_div(lo + walked.row_bytes - 1 - other_begin, other.stride);
    if (std::max<int64_t>(first, 0) <= std::min<int64_t>(last, other.rows - 1)) return true;
  }
  return false;
}

Status validate_layer_memory(const MoeShape& shape, const MoeLayerArgs& args,
                             const void* workspace, size_t workspace_bytes) {
  if (args.num_tokens == 0) return Status::ok();
  const LayerRowStrides strides = layer_row_strides(shape, args);
  const int64_t num_slots = int64_t{args.num_tokens} * shape.top_k;
  const int64_t expert_elements = int64_t{shape.hidden} * shape.intermediate;
  const NamedMemory hidden{"hidden", bf16_rows(args.hidden, args.num_tokens, shape.hidden,
                                               strides.hidden)};
  const NamedMemory w13{"w13", contiguous(args.w13, 2 * expert_elements * shape.num_experts)};
  const NamedMemory w2{"w2", contiguous(args.w2, expert_elements * shape.num_experts)};
  const NamedMemory ids{"topk_ids", contiguous(args.topk_ids, num_slots)};
  const NamedMemory weights{"topk_weights", contiguous(args.topk_weights, num_slots)};
  const NamedMemory out{"out", bf16_rows(args.out, args.num_tokens, shape.hidden, strides.out)};
  const NamedMemory scratch{"workspace", workspace_memory(workspace, workspace_bytes)};
  RAMP_TRY(check_disjoint(out, {hidden, w13, w2, ids, weights, scratch}));
  return check_disjoint(scratch, {hidden, w13, w2, ids, weights});
}

Status validate_grouped_gemm_memory(const GroupedGemmArgs& args, const void* workspace,
                                    size_t workspace_bytes) {
  if (args.num_tokens == 0) return Status::ok();
  const int64_t num_slots = int64_t{args.num_tokens} * args.top_k;
  const NamedMemory x{"x", bf16_rows(args.x, args.num_tokens, args.in_features, args.in_features)};
  const NamedMemory w{"w", contiguous(args.w, int64_t{args.num_experts} * args.out_features *
                                                 args.in_features)};
  const NamedMemory ids{"topk_ids", contiguous(args.topk_ids, num_slots)};
  const NamedMemory y{"y", bf16_rows(args.y, num_slots, args.out_features, args.out_features)};
  const NamedMemory scratch{"workspace", workspace_memory(workspace, workspace_bytes)};
  RAMP_TRY(check_disjoint(y, {x, w, ids, scratch}));
  return check_disjoint(scratch, {x, w, ids});
}

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
