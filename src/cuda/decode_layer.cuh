// The small-batch ("decode") layer path: the whole MoE layer in two kernels for T x k <=
// kDecodeMaxSlots (core/decode_plan.h says why and holds the index math).
//
//   1. gate_up (one CTA per SM): every CTA reads topk_ids and sorts the valid slots by expert
//      itself (no prep kernel); CTA 0 writes the RoutingHeader the host reads later. CTAs take
//      (expert, 8 features) units, the first by CTA index and, with the hand-over, the rest from
//      a ticket counter (else by CTA index too); a producer warp bulk-copies each unit's 8 gate
//      rows and 8 up rows into a shared-memory ring (L2 evict-first), 7 warps split K,
//      SiLU(gate) * up is stored in bf16 at intermediate[slot][feature], and, with the
//      hand-over, the unit is counted on its expert group.
//   2. down_combine (programmatic dependent launch, launched once every gate_up CTA has
//      started; one of its CTAs fits beside a gate_up CTA on each SM): a CTA owns 16 rows of H.
//      It bulk-copies the w2 rows of its first tasks into shared memory (as many as fit) and
//      pulls the rest into L2 (evict-last) when the rest is small, both while gate_up still
//      streams; then it multiplies each expert group as soon as gate_up has counted all of the
//      group's units (with the hand-over; else once gate_up has ended), applies the router
//      weight (rounded to bf16 once per slot, as the general path's slot outputs), and sums each
//      token's k slots in ascending j in fp32: out is bitwise what the general path's combine
//      makes of the same slot values.
// The hand-over (DecodeLayerArgs::hand_over, from T = 2 by default) counts on epoch-stamped
// words in the workspace that need no zeroing (core/decode_plan.h, "Scheduling words").
//
// Same contract as the general path: deterministic (fixed summation orders; the atomics only
// decide which CTA computes a unit and when, never what it computes), graph-capturable (grids
// fixed by T and the shape), a bad id is routed nowhere and named in the header, every element
// of out is written.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "core/plan_layout.h"
#include "ramp/bf16.h"
#include "ramp/status.h"

namespace ramp::cuda {

struct DecodeLayerArgs {
  const int32_t* topk_ids = nullptr;    // [T, k]
  const float* topk_weights = nullptr;  // [T, k]
  int32_t num_tokens = 0;
  int32_t top_k = 0;
  int32_t num_experts = 0;
  int32_t hidden = 0;        // H, a multiple of 64
  int32_t intermediate = 0;  // I, a multiple of 64
  const bf16* hidden_states = nullptr;  // [T, H], rows hidden_row_stride apart (16-byte aligned)
  int64_t hidden_row_stride = 0;
  const bf16* w13 = nullptr;  // [E, 2I, H]
  const bf16* w2 = nullptr;   // [E, H, I]
  bf16* intermediate_out = nullptr;  // workspace [T*k, I] by slot
  RoutingHeader* header = nullptr;   // workspace
  // workspace: kDecodeSyncWords scheduling words (core/decode_plan.h), 8-byte aligned, at an
  // offset no other part of ramp writes and that does not move with T
  uint64_t* sync = nullptr;
  bf16* out = nullptr;               // [T, H], rows out_row_stride apart
  int64_t out_row_stride = 0;
  int32_t num_sms = 0;
  // down_combine takes each expert group as soon as gate_up has finished it, and gate_up takes
  // units by ticket (the scheduling words in `sync`); false: units by CTA index, and
  // down_combine waits for all of gate_up (`sync` untouched). The launch turns it into the
  // kernels' template parameter; the kernels do not read it.
  bool hand_over = false;
};

// True when the decode path can run this call: T x k slots fit its shared-memory routing and
// two stages of 8 rows of H fit gate_up's ring (core/decode_plan.h).
bool decode_path_fits(int32_t num_tokens, int32_t top_k, int32_t hidden);

// Launches both kernels on `stream`. Arguments were validated by the layer entry point.
Status launch_decode_layer(const DecodeLayerArgs& args, cudaStream_t stream);

}  // namespace ramp::cuda
