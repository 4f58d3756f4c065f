// Routing prep on the device: validation, histogram, stable counting sort and one task map per
// GEMM (configs, expert order, TilePrefix, chunk index), written in plan_layout.h's byte layout.
// For valid routing the bytes equal the host Plan's (plan.cpp) for the same input and configs.
//
// Asynchronous, deterministic and graph-capturable: no host synchronisation, no host reads, and
// no atomics whose order reaches the output (histogram atomics only add counts). Bad ids and
// non-finite weights set RoutingHeader.error_bits and name the smallest offending slot; a bad id
// is routed nowhere (counted in no expert, never used as an index).
//
// Launches: S <= kPrepChunkSlots: one CTA does everything (one launch). E <= 256 (the usual
// case) takes the sort-free kernel (prep_fast: warp ballots rank the slots, a comparison count
// orders the experts, both GEMMs' task maps in one pass, five barriers); larger E the CUB radix
// sort kernel (128, 256 or 512 threads by max(S, E)). Larger S: chunk histograms -> plan (one
// CTA, with the per-expert scan over chunks when E <= 256, else a separate scan launch) ->
// stable scatter. The last kernel triggers programmatic dependent launch at its start.
// Measured on H100 (graph replay of 50 preps, 2 GEMMs, zipf1.0, E=128 k=8; an empty one-CTA
// kernel costs 0.8 us there): see RoutingPrep.ReportLatency.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "core/plan.h"
#include "core/plan_layout.h"
#include "dispatch/candidates.h"
#include "ramp/status.h"

namespace ramp::cuda {

inline constexpr int32_t kMaxPrepGemms = 2;  // a layer's GEMM1 and GEMM2
// Slots one CTA sorts at once, and the most experts the plan CTA holds (8 per thread).
inline constexpr int32_t kPrepChunkSlots = 4096;
inline constexpr int32_t kMaxPrepExperts = 4096;

struct RoutingPrepArgs {
  const int32_t* topk_ids = nullptr;    // device [T, k]
  const float* topk_weights = nullptr;  // device [T, k]; null: no weight check (grouped GEMM)
  int32_t num_tokens = 0;
  int32_t top_k = 0;
  int32_t num_experts = 0;
  RoutingView routing;  // device views into the plan (routing_view_at / task_map_view_at)
  int32_t num_gemms = 0;
  TaskMapView task_maps[kMaxPrepGemms];
  int32_t out_features[kMaxPrepGemms] = {};  // N of each GEMM (tile counting)
  ExpertOrder order = ExpertOrder::kHalfInterval;
  int32_t forced_config = -1;  // >= 0: every expert uses this builtin config
  int32_t num_sms = 0;         // the machine size the builtin config rule assumes (> 0)
  // Routing-aware selection per GEMM (dispatch/candidates.h): with count > 0 the prep sums the
  // histogram's selection terms, picks the candidate with the smallest predicted time exactly
  // as dispatch::select_candidate does on the host, and gives every expert that candidate's
  // config. count == 0: the builtin rule. A forced_config >= 0 wins over both. Supported for
  // E <= 256 (the sort-free prep kernels); larger E with a table is an error.
  dispatch::CandidateTable selection[kMaxPrepGemms];
  void* scratch = nullptr;     // routing_prep_scratch_bytes, 16-byte aligned; may be null if 0
};

// Device scratch beyond the plan itself (0 for S <= kPrepChunkSlots).
size_t routing_prep_scratch_bytes(int32_t num_experts, int32_t num_slots);

// Whether the prep can run routing-aware selection (args.selection) for this shape: the
// sort-free kernels hold it, E <= 256 and every task's tile count below 2^23.
bool routing_prep_can_select(const RoutingPrepArgs& args);

// Checks the arguments' structure (E <= kMaxPrepExperts, gemm count, config index, SM count,
// selection tables only where routing_prep_can_select) and enqueues the prep on `stream`.
// Values (ids, weights) are checked on the device.
Status launch_routing_prep(const RoutingPrepArgs& args, cudaStream_t stream);

}  // namespace ramp::cuda
