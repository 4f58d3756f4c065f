// Shapes and argument bundles of the public API. Plain structs, no CUDA headers: the same
// structs describe host buffers (CPU backend) and device buffers (CUDA backend).
#pragma once

#include <cstdint>
#include <string>

#include "ramp/bf16.h"

namespace ramp {

enum class DType : int8_t { kBF16 = 0 };
const char* dtype_name(DType dtype);

// One MoE layer's shape. w13 is [E, 2I, H] (rows 0..I-1 gate, I..2I-1 up: vLLM's layout),
// w2 is [E, H, I].
struct MoeShape {
  int32_t num_experts = 0;   // E
  int32_t top_k = 0;         // k: experts per token
  int32_t hidden = 0;        // H
  int32_t intermediate = 0;  // I, per expert, unsharded
  DType dtype = DType::kBF16;

  // "E=64 k=8 H=2048 I=1024 bf16"
  std::string to_string() const;
};

// The full layer: out[t] = sum_j topk_weights[t,j] * w2[e] . (silu(g) * u), [g; u] = w13[e] . hidden[t].
// Row strides are in elements; 0 means contiguous (= H).
struct MoeLayerArgs {
  int32_t num_tokens = 0;            // T (0 is valid: nothing is computed)
  const bf16* hidden = nullptr;      // [T, H]
  int64_t hidden_row_stride = 0;
  const bf16* w13 = nullptr;         // [E, 2I, H]
  const bf16* w2 = nullptr;          // [E, H, I]
  const int32_t* topk_ids = nullptr; // [T, k], each in [0, E)
  const float* topk_weights = nullptr;  // [T, k], finite
  bf16* out = nullptr;               // [T, H]; shares no byte with the inputs (no in-place)
  int64_t out_row_stride = 0;
};

// One grouped GEMM, the static batching paper's kernel case:
// y[slot] = x[slot / k] . w[topk_ids[slot]]^T for every slot = t*k + j.
struct GroupedGemmArgs {
  int32_t num_tokens = 0;            // T
  int32_t top_k = 0;                 // k
  int32_t num_experts = 0;           // E
  int32_t out_features = 0;          // N
  int32_t in_features = 0;           // K
  const bf16* x = nullptr;           // [T, K]
  const bf16* w = nullptr;           // [E, N, K]
  const int32_t* topk_ids = nullptr; // [T, k]
  bf16* y = nullptr;                 // [T*k, N], row = slot
};

}  // namespace ramp
