// Uses only the installed public API: one MoE layer through ramp::fused_moe on the CPU
// backend, checked against a naive fp64 evaluation of the contract written here, then one bad
// call checked for its error. Exit 0 = the package works.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "ramp/ramp.h"

namespace {

constexpr int32_t kExperts = 4, kTopK = 2, kHidden = 64, kInter = 64, kTokens = 5;

float pseudo_random(uint32_t* state) {
  *state = *state * 1664525u + 1013904223u;
  return static_cast<float>(*state >> 8) / static_cast<float>(1u << 24) - 0.5f;
}

std::vector<ramp::bf16> random_bf16(size_t count, uint32_t seed) {
  std::vector<ramp::bf16> values(count);
  for (ramp::bf16& v : values) v = ramp::bf16::from_float(pseudo_random(&seed));
  return values;
}

double silu(double x) { return x / (1.0 + std::exp(-x)); }

std::vector<double> reference(const std::vector<ramp::bf16>& hidden,
                              const std::vector<ramp::bf16>& w13,
                              const std::vector<ramp::bf16>& w2, const std::vector<int32_t>& ids,
                              const std::vector<float>& weights) {
  std::vector<double> out(size_t{kTokens} * kHidden, 0.0);
  std::vector<double> act(kInter);
  for (int32_t t = 0; t < kTokens; ++t) {
    for (int32_t j = 0; j < kTopK; ++j) {
      const int32_t e = ids[t * kTopK + j];
      for (int32_t i = 0; i < kInter; ++i) {
        double gate = 0.0, up = 0.0;
        for (int32_t h = 0; h < kHidden; ++h) {
          const double x = hidden[t * kHidden + h].to_float();
          gate += x * w13[(size_t(e) * 2 * kInter + i) * kHidden + h].to_float();
          up += x * w13[(size_t(e) * 2 * kInter + kInter + i) * kHidden + h].to_float();
        }
        act[i] = silu(gate) * up;
      }
      for (int32_t h = 0; h < kHidden; ++h) {
        double sum = 0.0;
        for (int32_t i = 0; i < kInter; ++i) {
          sum += act[i] * w2[(size_t(e) * kHidden + h) * kInter + i].to_float();
        }
        out[t * kHidden + h] += weights[t * kTopK + j] * sum;
      }
    }
  }
  return out;
}

}  // namespace

int main() {
  const ramp::MoeShape shape{kExperts, kTopK, kHidden, kInter};
  const std::vector<ramp::bf16> hidden = random_bf16(size_t{kTokens} * kHidden, 1);
  const std::vector<ramp::bf16> w13 = random_bf16(size_t{kExperts} * 2 * kInter * kHidden, 2);
  const std::vector<ramp::bf16> w2 = random_bf16(size_t{kExperts} * kHidden * kInter, 3);
  // Token 4 lists expert 3 twice: both terms count.
  const std::vector<int32_t> ids = {0, 1, 2, 3, 1, 2, 0, 3, 3, 3};
  const std::vector<float> weights = {0.6f, 0.4f, 0.5f, 0.5f, 0.9f, 0.1f, 0.3f, 0.7f, 0.25f, 0.75f};
  std::vector<ramp::bf16> out(size_t{kTokens} * kHidden);

  ramp::MoeLayerArgs args;
  args.num_tokens = kTokens;
  args.hidden = hidden.data();
  args.w13 = w13.data();
  args.w2 = w2.data();
  args.topk_ids = ids.data();
  args.topk_weights = weights.data();
  args.out = out.data();

  // The CPU backend wants its workspace 64-byte aligned; a vector of aligned lines gives that.
  struct alignas(64) CacheLine {
    std::byte bytes[64];
  };
  const size_t bytes = ramp::fused_moe_workspace_bytes(shape, kTokens, ramp::Backend::kCpu);
  std::vector<CacheLine> workspace(bytes / sizeof(CacheLine) + 1);
  const ramp::Status status =
      ramp::fused_moe(shape, args, ramp::Backend::kCpu, workspace.data(), bytes);
  if (!status.is_ok()) {
    std::fprintf(stderr, "fused_moe failed: %s\n", status.to_string().c_str());
    return 1;
  }
  const std::vector<double> want = reference(hidden, w13, w2, ids, weights);
  double diff = 0.0, norm = 0.0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double d = out[i].to_float() - want[i];
    diff += d * d;
    norm += want[i] * want[i];
  }
  const double error = std::sqrt(diff / norm);
  std::printf("ramp consumer: fused_moe on cpu, relative error %.2e (cuda backend built: %s)\n",
              error, ramp::cuda_backend_built() ? "yes" : "no");
  if (!(error <= 1e-2)) return 1;

  const std::vector<int32_t> bad_ids = {0, 1, 2, 3, 1, 9, 0, 3, 3, 3};
  args.topk_ids = bad_ids.data();
  const ramp::Status bad = ramp::fused_moe(shape, args, ramp::Backend::kCpu, nullptr, 0);
  std::printf("ramp consumer: bad id -> %s\n", bad.to_string().c_str());
  return bad.message() == "topk_ids[2][1] = 9 is outside [0, 4)" ? 0 : 1;
}
