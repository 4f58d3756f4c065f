// mma.sync (warp-wide tensor-core MMA, sm_80+): the decode path's GEMMs. At T <= 8 a layer
// does too little arithmetic for wgmma's 64-row tiles and shared-memory operands to pay;
// mma.sync takes its operands from registers loaded straight from global memory.
#pragma once

#include <cstdint>

namespace ramp::cuda::ptx {

// D = A . B + D for one m16n8k16 tile: bf16 A (row-major 16 x 16, 4 registers of 2 elements),
// bf16 B (column-major 16 x 8, 2 registers), fp32 accumulators (4 per lane). Fragment layout
// (lane = 4 g + t): a0 = A[g][2t..2t+1], a1 = A[g+8][2t..2t+1], a2 = A[g][2t+8..2t+9],
// a3 = A[g+8][2t+8..2t+9]; b0 = B[2t..2t+1][g], b1 = B[2t+8..2t+9][g]; d0..d1 = D[g][2t..2t+1],
// d2..d3 = D[g+8][2t..2t+1].
__device__ __forceinline__ void mma_m16n8k16_bf16(float (&d)[4], uint32_t a0, uint32_t a1,
                                                  uint32_t a2, uint32_t a3, uint32_t b0,
                                                  uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

}  // namespace ramp::cuda::ptx
