// The static batching GEMM launcher: one launch runs every expert's GEMM of a plan (the static
// batching paper's Algorithm 4 on Hopper). A launch compiles a set of tile configs and each
// task picks one of them (TaskDesc.config = position in the set): the builtin set
// (dispatch::kBuiltinConfigs, mixed per expert by the layer's rule), or any single catalog entry
// this build compiled (dispatch/kernel_catalog.h), which every task then uses.
//
// Graph-safe: the grid is sized on the host from max_total_tiles and the SM count; the kernel
// reads the real tile count from task_map.header on the device, so no host read sits between
// routing and output.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "core/plan_layout.h"
#include "core/tile_config.h"
#include "ramp/status.h"

namespace ramp::cuda {

enum class GemmEpilogue {
  kStoreBySlot,     // grouped GEMM: y[slot][n] = bf16(acc)
  kSiluGateUp,      // layer GEMM1: intermediate[sorted_row][c] = bf16(silu(gate)*up), N = 2I
  kRouterWeighted,  // layer GEMM2: slot_out[slot][n] = bf16(acc * topk_weights[slot])
};

struct StaticBatchedGemm {
  GemmEpilogue epilogue;
  RoutingView routing;   // device pointers (into the workspace)
  TaskMapView task_map;  // device pointers
  const void* a;         // bf16 rows; kStoreBySlot/kSiluGateUp: hidden [T, K] gathered via
                         // token = slot / k; kRouterWeighted: intermediate [S, K] read at the
                         // sorted row (no gather)
  int64_t a_row_stride;  // elements
  const void* w;         // bf16 [E, N, K]
  int32_t out_features;  // N  (GEMM1: 2I)
  int32_t in_features;   // K  (multiple of 64)
  void* out;             // bf16
  int64_t out_row_stride;     // elements
  const float* topk_weights;  // kRouterWeighted only
  int32_t max_total_tiles;    // upper bound of total_tiles known on the host (for grid sizing);
                              // the kernel reads the real count from task_map.header on the device
  // The launch's config set, what TaskDesc.config indexes: null (or exactly kBuiltinConfigs)
  // for the builtin set, kBuiltinConfigsGroup1 for its L2-group-1 variant (same tile counts),
  // else one catalog entry compiled in this build. Anything else is
  // kUnsupportedShape (no kernel for it).
  const TileConfig* configs = nullptr;
  int32_t num_configs = 0;
  // Split-K scratch (fp32 partial tiles and arrival counters), needed when a config of the set
  // has split_k > 1: at least static_batched_gemm_split_scratch_bytes(...) bytes, 256-byte
  // aligned. The launch zeroes its counters first (a memset on the stream).
  void* split_scratch = nullptr;
  size_t split_scratch_bytes = 0;
  // The previous work on the stream is a kernel (the routing prep or the layer's GEMM1): launch
  // with programmatic dependent launch so this grid's prologue overlaps that kernel's tail (see
  // ptx/grid_dependency.h). Correct after anything; it only saves time after a kernel that
  // allows it early, as ours do.
  bool after_ramp_kernel = false;
};

// Requirements (else kUnsupportedShape / kMisaligned, nothing launched): K a multiple of 64;
// a, w 16-byte aligned and a_row_stride a multiple of 8; kSiluGateUp: N = 2I with I a multiple
// of 8. max_total_tiles <= 0 launches nothing.
// A launch of a builtin set whose experts average at most 64 rows (dispatch::streams_weights of
// routing.num_slots and num_experts) runs the kernel instance that marks one-reader weight tiles
// evict-first in L2; the results are the same either way.
Status launch_static_batched_gemm(const StaticBatchedGemm& gemm, cudaStream_t stream);

// Split-K scratch a launch of this config set needs for up to max_total_tiles tiles: 0 when no
// config splits K. configs null = the builtin set.
size_t static_batched_gemm_split_scratch_bytes(const TileConfig* configs, int32_t num_configs,
                                               int32_t max_total_tiles);

// Whether this build can launch the config set (see StaticBatchedGemm::configs); *why_not says
// what is missing otherwise.
bool static_batched_gemm_compiled(const TileConfig* configs, int32_t num_configs,
                                  std::string* why_not = nullptr);

}  // namespace ramp::cuda
