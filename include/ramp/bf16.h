// A host-side bfloat16 with the same bits as CUDA's __nv_bfloat16, so host buffers can be
// copied to the device unchanged. Conversion from float rounds to nearest even, as the GPU does.
#pragma once

#include <bit>
#include <cstdint>

namespace ramp {

struct bf16 {
  uint16_t bits = 0;

  static constexpr bf16 from_bits(uint16_t b) { return bf16{b}; }

  static constexpr bf16 from_float(float f) {
    uint32_t u = std::bit_cast<uint32_t>(f);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu) != 0) {
      return bf16{static_cast<uint16_t>((u >> 16) | 0x0040u)};  // keep NaN a (quiet) NaN
    }
    uint32_t rounding_bias = 0x7fffu + ((u >> 16) & 1u);
    return bf16{static_cast<uint16_t>((u + rounding_bias) >> 16)};
  }

  constexpr float to_float() const { return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16); }
};

static_assert(sizeof(bf16) == 2, "bf16 must match __nv_bfloat16 bit for bit");

// Rounds a float to the nearest bf16 value and back: the one rounding of the MoE intermediate.
constexpr float round_to_bf16(float f) { return bf16::from_float(f).to_float(); }

}  // namespace ramp
