#include "cpu/reference.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <thread>

#include "core/validation.h"

namespace ramp::cpu {
namespace {

using f64x2 = double __attribute__((vector_size(16)));

f64x2 load2(const double* p) {
  f64x2 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// y[i][j] = a[i] · b[j] in fp64, a [m, depth] and b [n, depth] row-major, y [m, n].
// Blocked 3 x 4 with two k lanes each, only so the references stay fast enough for tests under
// AddressSanitizer (each load is reused 3 or 4 times); the summation order is irrelevant at
// fp64 against the tolerances the references serve.
void multiply_transposed(const double* a, int64_t m, const double* b, int64_t n, int64_t depth,
                         double* y) {
  constexpr int64_t kRows = 3, kCols = 4;
  const int64_t vector_depth = depth & ~int64_t{1};
  for (int64_t i0 = 0; i0 < m; i0 += kRows) {
    for (int64_t j0 = 0; j0 < n; j0 += kCols) {
      // Rows and columns past the edge repeat the last one; their results are dropped.
      const double* a_rows[kRows];
      const double* b_rows[kCols];
      for (int64_t r = 0; r < kRows; ++r) a_rows[r] = a + std::min(i0 + r, m - 1) * depth;
      for (int64_t c = 0; c < kCols; ++c) b_rows[c] = b + std::min(j0 + c, n - 1) * depth;
      f64x2 acc[kRows][kCols] = {};
      for (int64_t k = 0; k < vector_depth; k += 2) {
        f64x2 a_values[kRows];
        for (int64_t r = 0; r < kRows; ++r) a_values[r] = load2(a_rows[r] + k);
        for (int64_t c = 0; c < kCols; ++c) {
          const f64x2 b_values = load2(b_rows[c] + k);
          for (int64_t r = 0; r < kRows; ++r) acc[r][c] += a_values[r] * b_values;
        }
      }
      for (int64_t r = 0; r < kRows && i0 + r < m; ++r) {
        for (int64_t c = 0; c < kCols && j0 + c < n; ++c) {
          double sum = acc[r][c][0] + acc[r][c][1];
          for (int64_t k = vector_depth; k < depth; ++k) sum += a_rows[r][k] * b_rows[c][k];
          y[(i0 + r) * n + j0 + c] = sum;
        }
      }
    }
  }
}

void to_double(const bf16* source, int64_t n, double* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = source[i].to_float();
}

// Calls body(expert, slots routed to it) for every expert, experts spread over threads. Work is
// grouped by expert only so each weight matrix is converted to fp64 once; every slot's result
// is computed by the same operations whichever thread runs it.
template <class Body>
void for_each_expert(const int32_t* topk_ids, int64_t num_slots, int32_t num_experts,
                     int num_threads, const Body& body) {
  std::vector<std::vector<int64_t>> slots(num_experts);
  for (int64_t slot = 0; slot < num_slots; ++slot) slots[topk_ids[slot]].push_back(slot);
  std::atomic<int32_t> next{0};
  auto drain = [&] {
    for (int32_t e = next.fetch_add(1); e < num_experts; e = next.fetch_add(1)) {
      if (!slots[e].empty()) body(e, slots[e]);
    }
  };
  int threads = num_threads > 0 ? num_threads : static_cast<int>(std::thread::hardware_concurrency());
  threads = std::clamp(threads, 1, std::max(num_experts, 1));
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(drain);
  drain();
  for (std::thread& thread : pool) thread.join();
}

}  // namespace

std::vector<double> reference_grouped_gemm(const GroupedGemmArgs& args, int num_threads) {
  const int64_t num_slots = int64_t{args.num_tokens} * args.top_k;
  const int64_t n_total = args.out_features, k_total = args.in_features;
  std::vector<double> y(num_slots * n_total);
  for_each_expert(args.topk_ids, num_slots, args.num_experts, num_threads,
                  [&](int32_t expert, const std::vector<int64_t>& slots) {
    const int64_t m = static_cast<int64_t>(slots.size());
    std::vector<double> weight(n_total * k_total), x(m * k_total), y_rows(m * n_total);
    to_double(args.w + expert * n_total * k_total, n_total * k_total, weight.data());
    for (int64_t i = 0; i < m; ++i) {
      to_double(args.x + slots[i] / args.top_k * k_total, k_total, x.data() + i * k_total);
    }
    multiply_transposed(x.data(), m, weight.data(), n_total, k_total, y_rows.data());
    for (int64_t i = 0; i < m; ++i) {
      std::copy_n(y_rows.data() + i * n_total, n_total, y.data() + slots[i] * n_total);
    }
  });
  return y;
}

std::vector<double> reference_moe_layer(const MoeShape& shape, const MoeLayerArgs& args,
                                        int num_threads) {
  const int64_t hidden = shape.hidden, inter = shape.intermediate, top_k = shape.top_k;
  const int64_t hidden_stride = layer_row_strides(shape, args).hidden;
  const int64_t num_slots = int64_t{args.num_tokens} * top_k;
  // Each slot's weighted expert output, summed per token afterwards in the order j = 0..k-1.
  std::vector<double> slot_out(num_slots * hidden);
  for_each_expert(args.topk_ids, num_slots, shape.num_experts, num_threads,
                  [&](int32_t expert, const std::vector<int64_t>& slots) {
    const int64_t m = static_cast<int64_t>(slots.size());
    std::vector<double> w13(2 * inter * hidden), w2(hidden * inter), x(m * hidden);
    to_double(args.w13 + expert * 2 * inter * hidden, 2 * inter * hidden, w13.data());
    to_double(args.w2 + expert * hidden * inter, hidden * inter, w2.data());
    for (int64_t i = 0; i < m; ++i) {
      to_double(args.hidden + slots[i] / top_k * hidden_stride, hidden, x.data() + i * hidden);
    }
    std::vector<double> gate_up(m * 2 * inter), activation(m * inter), y(m * hidden);
    multiply_transposed(x.data(), m, w13.data(), 2 * inter, hidden, gate_up.data());
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t c = 0; c < inter; ++c) {
        const double gate = gate_up[i * 2 * inter + c];
        const double up = gate_up[i * 2 * inter + inter + c];
        activation[i * inter + c] = gate / (1.0 + std::exp(-gate)) * up;
      }
    }
    multiply_transposed(activation.data(), m, w2.data(), hidden, inter, y.data());
    for (int64_t i = 0; i < m; ++i) {
      const double weight = args.topk_weights[slots[i]];
      for (int64_t n = 0; n < hidden; ++n) slot_out[slots[i] * hidden + n] = weight * y[i * hidden + n];
    }
  });
  std::vector<double> out(int64_t{args.num_tokens} * hidden, 0.0);
  for (int64_t slot = 0; slot < num_slots; ++slot) {
    double* out_row = out.data() + slot / top_k * hidden;
    for (int64_t n = 0; n < hidden; ++n) out_row[n] += slot_out[slot * hidden + n];
  }
  return out;
}

double relative_frobenius_error(std::span<const bf16> got, std::span<const double> want) {
  constexpr double kInf = std::numeric_limits<double>::infinity();
  if (got.size() != want.size()) return kInf;
  double diff_squared = 0.0, want_squared = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double value = got[i].to_float();
    if (!std::isfinite(value)) return kInf;
    const double diff = value - want[i];
    diff_squared += diff * diff;
    want_squared += want[i] * want[i];
  }
  if (want_squared == 0.0) return diff_squared == 0.0 ? 0.0 : kInf;
  return std::sqrt(diff_squared / want_squared);
}

}  // namespace ramp::cpu
