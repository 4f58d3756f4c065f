// The CPU backend's micro-GEMM: one CTA tile, C[rows][cols] = A[rows][K] · B[cols][K]^T, bf16
// inputs, fp32 accumulation.
//
// Each output element is one fp32 chain acc = ((0 + a0*b0) + a1*b1) + ... in ascending k, with
// no fused multiply-add (the library builds with -ffp-contract=off). The sum therefore does not
// depend on the tile shape, the thread count, the vector width or the machine: a row's result
// is the same whichever tile, batch or config computes it. Speed comes from computing many
// independent elements at once (an outer-product register tile), not from reassociating K.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "ramp/bf16.h"

namespace ramp::cpu {

class TileGemm {
 public:
  // Register tile: 4 A rows x 8 B rows (baseline x86-64 / portable, 8 four-wide accumulators)
  // or 4 x 16 (AVX2, chosen at run time when the CPU has it; same results bit for bit).
  static constexpr int32_t kMicroRows = 4;

  // allow_wide_kernel = false forces the portable kernel (tests compare the two).
  explicit TileGemm(bool allow_wide_kernel = true);
  bool uses_wide_kernel() const { return b_width_ == 16; }

  // Converts the tile's rows to fp32 once, into K-major panels the inner loop streams through.
  // Every pointer must address `depth` readable bf16 values. Rows past the end of the tile are
  // padded with zeros so the inner loop never branches on the edge.
  void pack_a(std::span<const bf16* const> rows, int32_t depth);
  void pack_b(std::span<const bf16* const> rows, int32_t depth);

  // C = A · B^T over the packed rows. Requires pack_a and pack_b with the same depth.
  void multiply();

  int32_t rows() const { return a_rows_; }
  int32_t cols() const { return b_rows_; }
  float at(int32_t row, int32_t col) const { return c_[static_cast<size_t>(row) * c_stride_ + col]; }

 private:
  std::vector<float> a_panels_;  // [ceil(rows/4)][depth][4]
  std::vector<float> b_panels_;  // [ceil(cols/width)][depth][width], width = b_width_
  std::vector<float> c_;         // [rows padded][cols padded]
  std::vector<bf16> zero_row_;   // [depth] zeros: the source of padding rows
  int32_t b_width_ = 8;
  int32_t a_rows_ = 0, b_rows_ = 0, depth_ = 0, c_stride_ = 0;
};

}  // namespace ramp::cpu
