#include "cpu/tile_gemm.h"

#include <algorithm>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "core/host_device.h"

namespace ramp::cpu {
namespace {

// GCC/Clang vector extensions: explicit SIMD without intrinsics, so the same source vectorises
// on x86-64 (SSE2) and aarch64 (NEON) and each lane does exactly the scalar operations.
using f32x4 = float __attribute__((vector_size(16)));

inline f32x4 load4(const float* p) {
  f32x4 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
inline void store4(float* p, f32x4 v) { std::memcpy(p, &v, sizeof(v)); }

constexpr int32_t kMR = TileGemm::kMicroRows;
static_assert(kMR == 4, "the kernels load a k step's A values as one 4-wide vector");
constexpr int32_t kNarrow = 8;  // B panel width of the portable kernel (two 4-wide vectors)
constexpr int32_t kWide = 16;   // B panel width of the AVX2 kernel (two 8-wide vectors)

// K is walked in blocks so one B panel block (16 x 256 fp32 = 16 KiB at most) stays in L1
// while every A panel passes over it. Blocking K does not change any element's summation
// order: the partial sum is carried through C in ascending k.
constexpr int32_t kDepthBlock = 256;

// c[4][8] += a-panel · b-panel over `depth` steps; a is [depth][4], b is [depth][8].
inline void micro_tile(const float* a, const float* b, int32_t depth, float* c, int32_t c_stride) {
  f32x4 acc[kMR][2];
  for (int32_t r = 0; r < kMR; ++r) {
    acc[r][0] = load4(c + r * c_stride);
    acc[r][1] = load4(c + r * c_stride + 4);
  }
#pragma GCC unroll 4
  for (int32_t k = 0; k < depth; ++k) {
    const f32x4 b_low = load4(b + k * kNarrow);
    const f32x4 b_high = load4(b + k * kNarrow + 4);
    // One vector load for the four A values, broadcast from the register.
    const f32x4 a_values = load4(a + k * kMR);
    for (int32_t r = 0; r < kMR; ++r) {
      acc[r][0] += a_values[r] * b_low;
      acc[r][1] += a_values[r] * b_high;
    }
  }
  for (int32_t r = 0; r < kMR; ++r) {
    store4(c + r * c_stride, acc[r][0]);
    store4(c + r * c_stride + 4, acc[r][1]);
  }
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define RAMP_CPU_WIDE_KERNEL 1
// The same kernel on 8-wide vectors, compiled for AVX2 and chosen at run time, so the library
// stays a baseline x86-64 binary. AVX2 without FMA (and -ffp-contract=off) performs exactly
// the scalar multiply then add of each lane: results are bitwise those of micro_tile.
using f32x8 = float __attribute__((vector_size(32)));

__attribute__((target("avx2"))) void micro_tile_wide(const float* a, const float* b,
                                                     int32_t depth, float* c, int32_t c_stride) {
  f32x8 acc[kMR][2];
  for (int32_t r = 0; r < kMR; ++r) {
    __builtin_memcpy(&acc[r][0], c + r * c_stride, sizeof(f32x8));
    __builtin_memcpy(&acc[r][1], c + r * c_stride + 8, sizeof(f32x8));
  }
#pragma GCC unroll 4
  for (int32_t k = 0; k < depth; ++k) {
    f32x8 b_low, b_high;
    f32x4 a_values;
    __builtin_memcpy(&b_low, b + k * kWide, sizeof(f32x8));
    __builtin_memcpy(&b_high, b + k * kWide + 8, sizeof(f32x8));
    __builtin_memcpy(&a_values, a + k * kMR, sizeof(f32x4));
    for (int32_t r = 0; r < kMR; ++r) {
      acc[r][0] += a_values[r] * b_low;
      acc[r][1] += a_values[r] * b_high;
    }
  }
  for (int32_t r = 0; r < kMR; ++r) {
    __builtin_memcpy(c + r * c_stride, &acc[r][0], sizeof(f32x8));
    __builtin_memcpy(c + r * c_stride + 8, &acc[r][1], sizeof(f32x8));
  }
}

bool cpu_has_avx2() { return __builtin_cpu_supports("avx2"); }
#else
bool cpu_has_avx2() { return false; }
#endif

// One k step of `width` rows, scalar: the portable path and the tail after the SIMD blocks.
inline void pack_step(const bf16* const* rows, int32_t width, int32_t k, float* out) {
  for (int32_t lane = 0; lane < width; ++lane) out[lane] = rows[lane][k].to_float();
}

#if defined(__SSE2__)
// bf16 -> fp32 is "put the 16 bits in the high half": interleaving with zero words does the
// conversion and the transpose's last step at once.
inline void store_as_float(float* out, __m128i bf16x8) {
  const __m128i zero = _mm_setzero_si128();
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm_unpacklo_epi16(zero, bf16x8));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 4), _mm_unpackhi_epi16(zero, bf16x8));
}

inline __m128i load8(const bf16* row, int32_t k) {
  return _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + k));
}

// 8 k steps of 4 rows: a 4 x 8 transpose of 16-bit values, written as 32 fp32.
inline void pack_block4(const bf16* const* rows, int32_t k, float* out) {
  const __m128i r0 = load8(rows[0], k), r1 = load8(rows[1], k);
  const __m128i r2 = load8(rows[2], k), r3 = load8(rows[3], k);
  const __m128i t0 = _mm_unpacklo_epi16(r0, r1), t1 = _mm_unpackhi_epi16(r0, r1);
  const __m128i t2 = _mm_unpacklo_epi16(r2, r3), t3 = _mm_unpackhi_epi16(r2, r3);
  store_as_float(out + 0, _mm_unpacklo_epi32(t0, t2));   // k0, k1
  store_as_float(out + 8, _mm_unpackhi_epi32(t0, t2));   // k2, k3
  store_as_float(out + 16, _mm_unpacklo_epi32(t1, t3));  // k4, k5
  store_as_float(out + 24, _mm_unpackhi_epi32(t1, t3));  // k6, k7
}

// 8 k steps of 8 rows: an 8 x 8 transpose of 16-bit values; step i goes to out + i * stride.
inline void pack_block8(const bf16* const* rows, int32_t k, float* out, int32_t stride) {
  __m128i r[8];
  for (int32_t i = 0; i < 8; ++i) r[i] = load8(rows[i], k);
  __m128i t[8], u[8];
  for (int32_t i = 0; i < 4; ++i) {
    t[2 * i] = _mm_unpacklo_epi16(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm_unpackhi_epi16(r[2 * i], r[2 * i + 1]);
  }
  for (int32_t half = 0; half < 2; ++half) {  // rows 0-3, then rows 4-7
    const __m128i* th = t + 4 * half;
    u[4 * half + 0] = _mm_unpacklo_epi32(th[0], th[2]);  // k0, k1
    u[4 * half + 1] = _mm_unpackhi_epi32(th[0], th[2]);  // k2, k3
    u[4 * half + 2] = _mm_unpacklo_epi32(th[1], th[3]);  // k4, k5
    u[4 * half + 3] = _mm_unpackhi_epi32(th[1], th[3]);  // k6, k7
  }
  for (int32_t pair = 0; pair < 4; ++pair) {
    store_as_float(out + (2 * pair) * stride, _mm_unpacklo_epi64(u[pair], u[4 + pair]));
    store_as_float(out + (2 * pair + 1) * stride, _mm_unpackhi_epi64(u[pair], u[4 + pair]));
  }
}
#endif

// Writes bf16 rows as fp32 panels of `width` rows (4, 8 or 16), K-major: panel[k][lane].
// Missing rows of the last panel read `zero_row`, so padding needs no branch in the kernels.
void pack_panels(std::span<const bf16* const> rows, int32_t depth, int32_t width,
                 const bf16* zero_row, std::vector<float>* panels) {
  const int32_t count = static_cast<int32_t>(rows.size());
  const int32_t num_panels = ceil_div(count, width);
  panels->resize(static_cast<size_t>(num_panels) * depth * width);
  for (int32_t panel = 0; panel < num_panels; ++panel) {
    const bf16* lanes[kWide];
    for (int32_t lane = 0; lane < width; ++lane) {
      const int32_t row = panel * width + lane;
      lanes[lane] = row < count ? rows[row] : zero_row;
    }
    float* out = panels->data() + static_cast<size_t>(panel) * depth * width;
    int32_t k = 0;
#if defined(__SSE2__)
    for (; k + 8 <= depth; k += 8) {
      if (width == 4) {
        pack_block4(lanes, k, out + k * width);
      } else {
        for (int32_t group = 0; group < width; group += 8) {
          pack_block8(lanes + group, k, out + k * width + group, width);
        }
      }
    }
#endif
    for (; k < depth; ++k) pack_step(lanes, width, k, out + k * width);
  }
}

}  // namespace

TileGemm::TileGemm(bool allow_wide_kernel)
    : b_width_(allow_wide_kernel && cpu_has_avx2() ? kWide : kNarrow) {}

void TileGemm::pack_a(std::span<const bf16* const> rows, int32_t depth) {
  a_rows_ = static_cast<int32_t>(rows.size());
  depth_ = depth;
  zero_row_.resize(depth);  // value-initialised: zeros, and never written
  pack_panels(rows, depth, kMR, zero_row_.data(), &a_panels_);
}

void TileGemm::pack_b(std::span<const bf16* const> rows, int32_t depth) {
  b_rows_ = static_cast<int32_t>(rows.size());
  depth_ = depth;
  zero_row_.resize(depth);
  pack_panels(rows, depth, b_width_, zero_row_.data(), &b_panels_);
}

void TileGemm::multiply() {
  const int32_t a_panels = ceil_div(a_rows_, kMR);
  const int32_t b_panels = ceil_div(b_rows_, b_width_);
  c_stride_ = b_panels * b_width_;
  c_.assign(static_cast<size_t>(a_panels) * kMR * c_stride_, 0.0f);
  for (int32_t k0 = 0; k0 < depth_; k0 += kDepthBlock) {
    const int32_t depth = std::min(kDepthBlock, depth_ - k0);
    for (int32_t bp = 0; bp < b_panels; ++bp) {
      const float* b = b_panels_.data() + (static_cast<size_t>(bp) * depth_ + k0) * b_width_;
      for (int32_t ap = 0; ap < a_panels; ++ap) {
        const float* a = a_panels_.data() + (static_cast<size_t>(ap) * depth_ + k0) * kMR;
        float* c = c_.data() + static_cast<size_t>(ap) * kMR * c_stride_ + bp * b_width_;
#if defined(RAMP_CPU_WIDE_KERNEL)
        if (b_width_ == kWide) {
          micro_tile_wide(a, b, depth, c, c_stride_);
          continue;
        }
#endif
        micro_tile(a, b, depth, c, c_stride_);
      }
    }
  }
}

}  // namespace ramp::cpu
