// Naive references for tests and `ramp run` verification: the contract of DESIGN.md section 1
// evaluated in fp64 from the same bf16 inputs, with no intermediate rounding. They share no
// code with the backends (no plan, no tiles, no sorting), so a mapping or layout bug in a
// backend cannot cancel out. Multi-threaded over experts; the result does not depend on the
// thread count. Memory: one expert's weights in fp64 per thread, plus [T*k, H] fp64 for the layer.
#pragma once

#include <span>
#include <vector>

#include "ramp/bf16.h"
#include "ramp/types.h"

namespace ramp::cpu {

// [T*k, N]: y[slot] = x[slot / k] · w[topk_ids[slot]]^T. num_threads 0 = all cores.
std::vector<double> reference_grouped_gemm(const GroupedGemmArgs& args, int num_threads = 0);

// [T, H]: out[t] = sum_j topk_weights[t,j] · w2[e] · (silu(g) · u), [g; u] = w13[e] · hidden[t],
// e = topk_ids[t,j]; honours hidden_row_stride (args.out is not used).
std::vector<double> reference_moe_layer(const MoeShape& shape, const MoeLayerArgs& args,
                                        int num_threads = 0);

// ||got - want||_F / ||want||_F. +inf when any got value is NaN or inf, or the sizes differ;
// when want is all zero: 0 if got is too, else +inf.
double relative_frobenius_error(std::span<const bf16> got, std::span<const double> want);

}  // namespace ramp::cpu
