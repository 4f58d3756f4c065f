// The CPU backend: executes a Plan CTA by CTA through the same TilePrefix mapping, tile
// coordinates and data flow the GPU kernel uses (gathered token rows, intermediate at the
// sorted row, router-weight scale in GEMM2, fixed-order combine). It is the executable
// specification of the kernel and the fallback when no GPU is present.
//
// Results are bitwise deterministic whatever the thread count: every output element is
// produced by exactly one tile, whose fp32 sums run in ascending k (see tile_gemm.h).
#pragma once

#include "core/plan.h"
#include "ramp/status.h"
#include "ramp/types.h"

namespace ramp::cpu {

// 0 = std::thread::hardware_concurrency().
inline constexpr int kDefaultThreads = 0;

// y[slot] = bf16(x[slot / k] · w[e]^T) for every slot, with plan gemm 0 (N = out_features,
// K = in_features) built from args.topk_ids.
Status run_grouped_gemm(const Plan& plan, const GroupedGemmArgs& args,
                        int num_threads = kDefaultThreads);

// The MoE layer with plan gemm 0 = GEMM1 (N = 2I, K = H, SiLU(gate)·up fused) and gemm 1 =
// GEMM2 (N = H, K = I, router weight fused), then the combine over each token's k slots.
Status run_moe_layer(const Plan& plan, const MoeShape& shape, const MoeLayerArgs& args,
                     int num_threads = kDefaultThreads);

}  // namespace ramp::cpu
