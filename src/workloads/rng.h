// A seeded random generator whose output is the same on every machine and compiler, so a
// (kind, T, E, k, seed) routing or a seeded weight buffer can be regenerated anywhere.
// std::mt19937 would be reproducible, but std:: distributions are implementation-defined, so
// everything here is spelled out: splitmix64 expands the seed, xoshiro256** produces the stream
// (both public-domain algorithms by Vigna et al.), and the conversions below use only integer
// operations and single IEEE-754 double operations, which round identically everywhere.
//
// Floating-point expressions are split into one operation per statement on purpose: a compiler
// allowed to contract a*b+c into a fused multiply-add (clang's default on aarch64) would
// otherwise round differently from one that is not.
#pragma once

#include <cassert>
#include <cmath>
#include <cstdint>

namespace ramp::workloads {

// One splitmix64 step: a good 64-bit mixer, used to expand seeds and derive independent streams.
inline uint64_t splitmix64_next(uint64_t* state) {
  *state += 0x9e3779b97f4a7c15ull;
  uint64_t z = *state;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Derives the seed of an independent sub-stream (e.g. ids vs weights of one routing), so adding
// draws to one stream never shifts the values of another.
inline uint64_t derive_seed(uint64_t seed, uint64_t stream) {
  uint64_t state = seed ^ (stream * 0xd1342543de82ef95ull);
  return splitmix64_next(&state);
}

class Rng {
 public:
  explicit Rng(uint64_t seed) {
    uint64_t expander = seed;
    for (uint64_t& word : state_) word = splitmix64_next(&expander);
    // splitmix64 never yields four zero words in a row, but the all-zero state would be a fixed
    // point of xoshiro, so make the impossible case explicitly harmless.
    if ((state_[0] | state_[1] | state_[2] | state_[3]) == 0) state_[0] = 1;
  }

  // xoshiro256**
  uint64_t next_u64() {
    const uint64_t result = rotate_left(state_[1] * 5, 7) * 9;
    const uint64_t shifted = state_[1] << 17;
    state_[2] ^= state_[0];
    state_[3] ^= state_[1];
    state_[1] ^= state_[2];
    state_[0] ^= state_[3];
    state_[2] ^= shifted;
    state_[3] = rotate_left(state_[3], 45);
    return result;
  }

  // Uniform in [0, 1), every multiple of 2^-53 equally likely (the top 53 bits, exactly).
  double uniform_double() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

  // Uniform in (0, 1): never 0, so log(u) is finite. (2m + 1) * 2^-53 with m < 2^52 is exact.
  double uniform_open_double() {
    const uint64_t odd = ((next_u64() >> 12) << 1) | 1u;
    return static_cast<double>(odd) * 0x1.0p-53;
  }

  // Uniform in [0, n) without modulo bias: draws below 2^64 mod n are rejected so the
  // remaining range is a whole number of copies of [0, n).
  uint64_t uniform_int(uint64_t n) {
    assert(n > 0);
    const uint64_t reject_below = (0 - n) % n;  // == 2^64 mod n
    for (;;) {
      const uint64_t draw = next_u64();
      if (draw >= reject_below) return draw % n;
    }
  }

 private:
  static uint64_t rotate_left(uint64_t x, int bits) { return (x << bits) | (x >> (64 - bits)); }

  uint64_t state_[4];
};

// Natural logarithm from basic IEEE operations only, so sampling that compares logarithms (Zipf
// popularity, Gumbel keys) makes the same choices whatever libm the machine has (std::log is
// not required to be correctly rounded, and implementations differ in the last bit).
// Accurate to a few ulp for finite x > 0; returns -inf for 0 and NaN for negative input.
inline double reproducible_log(double x) {
  if (!(x > 0)) return x == 0 ? -INFINITY : NAN;
  if (std::isinf(x)) return x;
  int exponent = 0;
  double mantissa = std::frexp(x, &exponent);  // exact: x = mantissa * 2^exponent, [0.5, 1)
  if (mantissa < 0.70710678118654752) {
    mantissa = mantissa * 2.0;  // exact
    exponent -= 1;
  }
  // log(m) = 2 atanh(f) with f = (m-1)/(m+1), |f| <= 0.172: the odd series converges fast.
  const double numerator = mantissa - 1.0;
  const double denominator = mantissa + 1.0;
  const double f = numerator / denominator;
  const double f_squared = f * f;
  double series = 1.0 / 23.0;
  for (int odd = 21; odd >= 1; odd -= 2) {
    const double scaled = series * f_squared;
    series = scaled + 1.0 / static_cast<double>(odd);
  }
  const double twice_f = 2.0 * f;
  const double log_mantissa = twice_f * series;
  // ln 2 split into a high part with trailing zero bits (exponent * high is exact) and a low part.
  const double ln2_high = 6.93147180369123816490e-01;
  const double ln2_low = 1.90821492927058770002e-10;
  const double exponent_as_double = static_cast<double>(exponent);
  const double high = exponent_as_double * ln2_high;
  const double low = exponent_as_double * ln2_low;
  const double low_sum = low + log_mantissa;
  return high + low_sum;
}

}  // namespace ramp::workloads
