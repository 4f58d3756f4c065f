// SiLU(gate) * up, the activation of GEMM1's epilogue in both layer paths (static batching
// kernel and decode path), written once so both round alike.
#pragma once

namespace ramp::cuda {

// The fast reciprocal-based division (MUFU.RCP, ~2 ulp), not the IEEE-rounded `/`: the IEEE
// division's range checks and slow path made GEMM1's epilogue 11k cycles per 128x256 tile on the
// H100 (clock64 timeline, dev/experiments/timeline.patch), 4.6k with __fdividef; olmoe-1b-7b
// T=2048 layer 1.16x (dev/kernel_notes.md, session 5). For a denominator beyond 2^126
// (gate < -87) __fdividef returns 0, which is SiLU's limit there.
__device__ __forceinline__ float silu_times(float gate, float up) {
  return __fdividef(gate, 1.0f + __expf(-gate)) * up;
}

}  // namespace ramp::cuda
