// The CUDA backend: routing prep -> static batching GEMM(s) -> combine, all asynchronous on the
// caller's stream and graph-capturable (no host synchronisation, no host reads of device data,
// no allocation: the caller passes a workspace).
//
// Workspace layout (every part 256-byte aligned; the plan has plan.h's plan_layout(E, T*k,
// gemms) offsets from its start, so a copy of its bytes equals the host Plan):
//   decode-path scheduling words (core/decode_plan.h; fixed size and offset, kept between
//   calls) | plan | routing-prep scratch | [layer: intermediate [S, I] bf16 | slot_out [S, H] bf16]
//
// Structural errors (shapes, nulls, strides, alignment, workspace size) are returned before
// anything is launched. Value errors (ids outside [0, E), non-finite weights) are found on the
// device and read later with read_routing_status; a bad id is routed nowhere, never indexed.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "core/plan.h"
#include "ramp/status.h"
#include "ramp/types.h"

namespace ramp::cuda {

struct CudaOptions {
  ExpertOrder order = ExpertOrder::kHalfInterval;
  int32_t forced_config = -1;  // >= 0: every expert uses this builtin config (tests, profiling)
  // Routing-aware selection on the device (RaMP), opt-in: the routing prep picks each GEMM's
  // configs from the live histogram with the shipped cost-model profile for this GPU and GEMM
  // shape (profiles/h100.json). Where there is none (another GPU or shape) or the prep cannot
  // select (E > 256, or a batch whose tile counts exceed the sort-free prep), the builtin
  // per-expert rule is used: selected_configs() says which applies. Off by default: on the
  // H100 (2026-11-22) it chose correctly (the host's choice in every tested case) and adds
  // 3.2-3.4 us to the prep at T <= 256, but the layer was 0.989x the builtin rule's speed in
  // geometric mean over 56 cells (1.01-1.04x at T = 512..2048, 0.92-0.97x at T = 1); see
  // dev/kernel_notes.md (session 7) and bench/results/h100-2026-11-22l-ab-routing-aware.json.
  bool routing_aware = false;
  int32_t num_sms = 0;         // 0: the current device's SM count
  // Programmatic dependent launch between the call's own kernels (prep -> GEMM1 -> GEMM2 ->
  // combine): each kernel's launch and prologue overlap the previous one's tail. false: plain
  // stream order (for A/B timing, or a tool that cannot follow programmatic edges).
  bool overlap_kernels = true;
  // L2 group of the normal-orientation (128-row) tiles of the layer's GEMM1 and GEMM2: 0 (the
  // default) picks by rule -- dispatch::gemm1_l2_group for GEMM1, 8 for GEMM2 --, 8 forces the
  // builtin set, 1 its variant dispatch::kBuiltinConfigsGroup1 (a task's tiles walk the feature
  // blocks of one token block first). Same tiles and results, another order. Layer only.
  int32_t l2_group[2] = {0, 0};
  // Layer only: which batches take the two-kernel decode path (decode_layer.cuh) instead of
  // routing prep + two static batching GEMMs + combine. -1 (the default): the measured rule
  // decode_path_by_rule (core/decode_plan.h: T <= 16 and experts of <= 24 MiB of weights, or
  // T <= 2 and <= 48 MiB);
  // 0: never; N > 0: every batch of at most N tokens, whatever the shape. Always T x k <=
  // kDecodeMaxSlots, and never with forced_config or routing_aware (they ask for the general
  // path's configs). Same results within the layer tolerance, not bit for bit (another
  // summation order inside each dot product).
  int32_t decode_max_tokens = -1;
  // Decode path only: whether down_combine takes expert groups as gate_up finishes them and
  // gate_up takes units by ticket (core/decode_plan.h, "Scheduling words"). -1 (the default):
  // the measured rule decode_hand_over_by_rule (T >= 2); 0: off; 1: on. Same results bit for
  // bit either way.
  int32_t decode_hand_over = -1;
};

// How a call with these options picks its configs: "routing-aware (profile NAME)" or
// "builtin rule (why)", for logs and benchmark records. Host-only, no launch.
std::string selected_configs(const MoeShape& shape, int32_t num_tokens, const CudaOptions& options);

// True when moe_layer runs this call on the decode path.
bool uses_decode_path(const MoeShape& shape, int32_t num_tokens, const CudaOptions& options);

// True when the CUDA runtime sees at least one device.
bool device_available();
// SMs of the current device; 0 when there is none.
int32_t device_sm_count();

size_t grouped_gemm_workspace_bytes(int32_t num_experts, int32_t num_tokens, int32_t top_k);
size_t moe_layer_workspace_bytes(const MoeShape& shape, int32_t num_tokens);

// y[slot] = x[slot / k] . w[topk_ids[slot]]^T (all device pointers). T = 0 launches nothing.
Status grouped_gemm(const GroupedGemmArgs& args, void* workspace, size_t workspace_bytes,
                    cudaStream_t stream, const CudaOptions& options = {});

// The full layer (DESIGN.md section 1), all device pointers. T = 0 launches nothing.
Status moe_layer(const MoeShape& shape, const MoeLayerArgs& args, void* workspace,
                 size_t workspace_bytes, cudaStream_t stream, const CudaOptions& options = {});

// Where the plan starts in a workspace: after the decode path's scheduling words. A caller
// that lays out its own buffer for read_routing_status (the routing-prep tests) puts the plan
// there.
size_t workspace_plan_offset();

// Synchronises `stream` and turns the routing report of the last grouped_gemm / moe_layer that
// used `workspace` into the Status the host validation gives for the same input (same
// message). topk_ids / topk_weights are the device arrays that call read (weights may be null);
// only the offending element is copied back, to quote it.
Status read_routing_status(const void* workspace, int32_t num_experts, int32_t num_tokens,
                           int32_t top_k, const int32_t* topk_ids, const float* topk_weights,
                           cudaStream_t stream);

}  // namespace ramp::cuda
