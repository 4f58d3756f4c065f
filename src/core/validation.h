// Argument checks shared by every backend. Each error names the first offending argument or
// element, e.g. "topk_ids[3][1] = 70 is outside [0, 64)".
//
// Two kinds of check: structural (shapes, null pointers, strides, alignment: no data is read,
// so it works on device pointers too) and value checks (ids, weights: read the host arrays; the
// CUDA backend runs the same checks on the device and reports through RoutingHeader).
#pragma once

#include <cstdint>

#include "core/plan_layout.h"
#include "ramp/status.h"
#include "ramp/types.h"

namespace ramp {

// The tiling contract of the kernels: every reduction dimension is a whole number of 64-element
// (128-byte) k-tiles, and every row starts 16-byte aligned.
inline constexpr int32_t kDimensionMultiple = 64;

// E >= 1, 1 <= k <= E, H and I positive multiples of 64.
Status validate_shape(const MoeShape& shape);

// T >= 0; pointers non-null when T > 0 (weights always); strides >= H; 16-byte alignment.
Status validate_layer_args(const MoeShape& shape, const MoeLayerArgs& args);

// Memory a call writes shares no byte with memory it reads, nor with other memory it writes:
// out (y) against every input and the workspace, the workspace against every input. On the GPU
// some CTAs write while others still read, so an overlap can give wrong results; in place
// (out == hidden) is not part of the contract on either backend. Views of one buffer whose rows
// interleave without sharing a byte are fine: hidden = buf[:, :H] and out = buf[:, H:] of a
// [T, 2H] buffer. Call after validate_layer_args (shapes, strides and pointers valid);
// workspace_bytes is the part the call uses; a null workspace is skipped. T = 0 passes.
Status validate_layer_memory(const MoeShape& shape, const MoeLayerArgs& args,
                             const void* workspace, size_t workspace_bytes);
Status validate_grouped_gemm_memory(const GroupedGemmArgs& args, const void* workspace,
                                    size_t workspace_bytes);

// `rows` byte ranges [begin + r * stride, begin + r * stride + row_bytes), r = 0 .. rows - 1:
// a strided 2D array, or a contiguous one as 1 row. stride >= row_bytes > 0 when rows > 1.
struct MemoryRows {
  uintptr_t begin = 0;
  int64_t rows = 0;
  int64_t row_bytes = 0;
  int64_t stride = 0;
};
// Whether some byte lies in both. Exact for any strides; O(min(rows)) when the two spans overlap.
// Example: a [4, 64] bf16 view with stride 128 elements (row_bytes 128, stride 256) and the
// same view shifted by 64 elements (begin + 128) interleave: no overlap; shifted by 32 elements
// (begin + 64): rows share bytes.
bool memory_rows_overlap(const MemoryRows& a, const MemoryRows& b);

// The row strides (elements) a layer call uses: the given ones, H where 0 asks for contiguous rows.
struct LayerRowStrides {
  int64_t hidden;
  int64_t out;
};
inline LayerRowStrides layer_row_strides(const MoeShape& shape, const MoeLayerArgs& args) {
  return {args.hidden_row_stride != 0 ? args.hidden_row_stride : shape.hidden,
          args.out_row_stride != 0 ? args.out_row_stride : shape.hidden};
}

// E >= 1, 1 <= k <= E, T >= 0, N a positive multiple of 8, K a positive multiple of 64.
// Reads no pointer: what a planner needs.
Status validate_grouped_gemm_shape(const GroupedGemmArgs& args);
// validate_grouped_gemm_shape plus pointers and alignment.
Status validate_grouped_gemm_args(const GroupedGemmArgs& args);

// Host values: every id in [0, E) and (when weights is non-null) every weight finite.
Status validate_routing_values(const int32_t* topk_ids, const float* topk_weights,
                               int32_t num_tokens, int32_t top_k, int32_t num_experts);

// Turns the device's routing report into the same Status the host check gives. topk_ids and
// topk_weights here are host copies, used only to quote the offending value in the message;
// either may be null.
Status routing_header_status(const RoutingHeader& header, int32_t top_k, int32_t num_experts,
                             const int32_t* topk_ids_host, const float* topk_weights_host);

}  // namespace ramp
