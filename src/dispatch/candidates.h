// Selection candidates: what routing-aware dispatch chooses among for one GEMM call, and the
// wave cost model of each, in plain data that host and device code share (RAMP_HOST_DEVICE),
// so the routing-prep kernel can later run exactly the selection the host runs and tests.
//
// A candidate is a rule that gives every expert a compiled config (kBuiltinConfigs index):
//   kUniform c : every expert uses config c (one candidate per compiled config);
//   kMixed     : the builtin heterogeneous per-expert rule (choose_builtin_config).
// Its features on a histogram come from the per-expert assignment it implies:
//   g     = sum_e ceil(m_e / token_tile of e's config)                 (token blocks)
//   tiles = sum_e ceil(m_e / token_tile_e) * ceil(N / feature_tile_e) * split_k_e
//   waves = ceil(tiles / (num_sms * ctas_per_sm))
//   A     = experts with at least one token                              (weights streamed)
// and its predicted time is RaMP's four-term model plus two terms for the weights read:
//   T = a + b*waves + c*g + d*log(g + 1) + e*A + f*log(A + 1).
// The A terms go beyond the paper: at small and mid T the GEMMs stream every active expert's
// weights from DRAM, a cost g alone cannot separate from tile work (g >= A, and uniform
// 8-token tiles have g >> A); log(A + 1) lets that cost saturate once enough experts stream
// at once to fill the memory system. On the H100 tables of 2026-11-22 (held-out seed-2 rows,
// 7 models x 2 GEMMs pooled) e*A lowered the mean regret of uniform-candidate selection from
// 3.1% to 1.8%, and f*log(A + 1) the pooled regret of the full selection from 0.98% to 0.71%
// mean, 5.9% to 3.2% p95 (the max, 16%, did not move). e = f = 0 is the paper's model.
//
// The mixed candidate is predicted by composition (mixed_predict): its experts fall into
// groups by config, each group costs what the uniform candidate of that config predicts for
// those experts alone, less its launch term a, and the launch is paid once (the largest a):
//   T_mixed = max_c a_c + sum_c (T_uniform c(experts of c) - a_c).
// A single four-term fit cannot price a mix: g then counts blocks of 8 and of 256 tokens alike.
// Only when a config of the mix has no uniform candidate in the table does the mixed
// candidate's own fitted coefficients price it (on its own features).
//
// Worked example (olmoe-1b-7b GEMM1: E = 64 -> here 3 experts for brevity, N = 2048, 132 SMs,
// histogram {500, 40, 3}):
//   uniform 0 (normal 128x256): g = 4 + 1 + 1 = 6, tiles = 6 * 8 = 48, waves = 1
//   uniform 5 (swapped 8x128) : g = 63 + 5 + 1 = 69, tiles = 69 * 16 = 1104, waves = 9
//   mixed: big tiles = 32 (< 132) -> 500 rows use config 1 (128x128: 4 blocks x 16 = 64 tiles),
//          40 rows config 2 (swapped 64: 1 x 16 = 16), 3 rows config 5 (1 x 16 = 16):
//          g = 6, tiles = 96, waves = 1.
#pragma once

#include <math.h>
#include <stdint.h>

#include <utility>

#include "core/host_device.h"
#include "core/tile_config.h"
#include "dispatch/builtin_configs.h"

namespace ramp::dispatch {

inline constexpr int32_t kMaxCandidates = 16;

enum CandidateKind : int32_t {
  kCandidateUniform = 0,  // every expert uses `config`
  kCandidateMixed = 1,    // choose_builtin_config per expert (`config` unused, -1)
};

struct Candidate {
  int32_t kind = kCandidateUniform;
  int32_t config = 0;       // kBuiltinConfigs index (kUniform)
  int32_t ctas_per_sm = 1;  // concurrent CTAs per SM of the launch (one kernel shape: 1 today)
  int32_t reserved = 0;
  double a = 0.0, b = 0.0, c = 0.0, d = 0.0;  // microseconds per term (fitted, >= 0)
  double e = 0.0;                             // microseconds per active expert
  double f = 0.0;                             // microseconds per log(active experts + 1)
};

// The candidates of one GEMM shape on one device, as a fixed-size POD that can be copied into
// __constant__ or kernel-argument memory as is.
struct CandidateTable {
  int32_t count = 0;
  int32_t reserved[3] = {0, 0, 0};
  Candidate entries[kMaxCandidates];
};

struct CandidateFeatures {
  int64_t token_blocks = 0;  // g
  int64_t tiles = 0;
  int64_t waves = 0;         // whole waves (ceil)
  int64_t active_experts = 0;  // A
};

// The config the candidate gives an expert with `rows` tokens. total_big_tiles is the
// mixed rule's "fills the machine" count (mixed_rule_big_tiles), unused by uniform candidates.
RAMP_HOST_DEVICE inline int32_t candidate_config_of_expert(const Candidate& candidate,
                                                           int32_t rows, int32_t total_big_tiles,
                                                           int32_t num_sms) {
  if (candidate.kind == kCandidateMixed) return choose_builtin_config(rows, total_big_tiles, num_sms);
  return candidate.config;
}

// The mixed rule's 128x256-tile count over the histogram (assign_builtin_configs' first pass).
// `configs` is the compiled table (kBuiltinConfigs on the host, its __constant__ copy on the
// device).
RAMP_HOST_DEVICE inline int32_t mixed_rule_big_tiles(const TileConfig* configs,
                                                     const int32_t* histogram,
                                                     int32_t num_experts, int32_t out_features) {
  int32_t total = 0;
  for (int32_t e = 0; e < num_experts; ++e) {
    total += big_tiles_of_expert(configs[0], histogram[e], out_features);
  }
  return total;
}

RAMP_HOST_DEVICE inline CandidateFeatures candidate_features(
    const Candidate& candidate, const TileConfig* configs, const int32_t* histogram,
    int32_t num_experts, int32_t out_features, int32_t num_sms, int32_t total_big_tiles) {
  CandidateFeatures f;
  for (int32_t e = 0; e < num_experts; ++e) {
    const int32_t rows = histogram[e];
    if (rows <= 0) continue;
    const TileConfig& config =
        configs[candidate_config_of_expert(candidate, rows, total_big_tiles, num_sms)];
    f.token_blocks += config.token_blocks(rows);
    f.tiles += config.tiles(rows, out_features);
    ++f.active_experts;
  }
  const int64_t concurrent = static_cast<int64_t>(num_sms) *
                             (candidate.ctas_per_sm > 0 ? candidate.ctas_per_sm : 1);
  f.waves = concurrent > 0 ? (f.tiles + concurrent - 1) / concurrent : 0;
  return f;
}

// Products and sums rounded one at a time on both sides: nvcc would otherwise fuse them into
// FMAs, and the device's predictions would differ from the host's in the last bit.
RAMP_HOST_DEVICE inline double product_rn(double x, double y) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(x, y);
#else
  return x * y;
#endif
}
RAMP_HOST_DEVICE inline double sum_rn(double x, double y) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(x, y);
#else
  return x + y;
#endif
}

RAMP_HOST_DEVICE inline double candidate_predict(const Candidate& candidate,
                                                 const CandidateFeatures& f) {
  const double g = static_cast<double>(f.token_blocks);
  double t = sum_rn(candidate.a, product_rn(candidate.b, static_cast<double>(f.waves)));
  t = sum_rn(t, product_rn(candidate.c, g));
  t = sum_rn(t, product_rn(candidate.d, ::log(g + 1.0)));
  const double active = static_cast<double>(f.active_experts);
  t = sum_rn(t, product_rn(candidate.e, active));
  return sum_rn(t, product_rn(candidate.f, ::log(active + 1.0)));
}

// Everything the predictions need from a histogram, as integer sums over the experts, laid out
// flat (kSelectionSumFields words): per compiled config c, the token blocks if every active
// expert used it (uniform candidates), and the blocks and experts of the mixed rule's group of
// c; then the active experts. A config's tiles are its token blocks times its tiles per token
// block (TileConfig::tiles_per_token_block), so they need no sums of their own. Integer sums do not depend
// on the order they are added in, so the routing-prep kernel adds experts in parallel (32-bit
// words in shared memory) and reaches exactly the host's numbers (64-bit), and from there the
// same predictions and the same choice. The readers below take any array of integers (`Sums`
// indexes like a pointer).
inline constexpr int32_t kSelectionSumFields = 3 * kNumBuiltinConfigs + 1;
RAMP_HOST_DEVICE constexpr int32_t uniform_blocks_field(int32_t c) { return c; }
RAMP_HOST_DEVICE constexpr int32_t mixed_blocks_field(int32_t c) { return kNumBuiltinConfigs + c; }
RAMP_HOST_DEVICE constexpr int32_t mixed_active_field(int32_t c) {
  return 2 * kNumBuiltinConfigs + c;
}
inline constexpr int32_t kActiveExpertsField = 3 * kNumBuiltinConfigs;

// Token blocks of compiled config C for `rows`: the tile is a compile-time constant, so on the
// device the division is a shift (the prep's selection runs this for every expert and config).
template <int32_t C>
RAMP_HOST_DEVICE constexpr int32_t builtin_token_blocks(int32_t rows) {
  constexpr TileConfig config = kBuiltinConfigs[C];
  return config.token_blocks(rows);
}

// Adds what one expert with `rows` tokens contributes to every field; `mixed` is the config
// the builtin rule gives it (choose_builtin_config). Every config's terms are independent (no
// indexing by a runtime config), so the device computes them in parallel.
template <class Sum, int32_t... C>
RAMP_HOST_DEVICE inline void add_selection_terms(int32_t rows, int32_t mixed,
                                                 Sum (&sums)[kSelectionSumFields],
                                                 std::integer_sequence<int32_t, C...>) {
  if (rows <= 0) return;
  ((sums[uniform_blocks_field(C)] += static_cast<Sum>(builtin_token_blocks<C>(rows))), ...);
  ((sums[mixed_blocks_field(C)] +=
    static_cast<Sum>(C == mixed ? builtin_token_blocks<C>(rows) : 0)),
   ...);
  ((sums[mixed_active_field(C)] += static_cast<Sum>(C == mixed ? 1 : 0)), ...);
  sums[kActiveExpertsField] += static_cast<Sum>(1);
}
using BuiltinConfigIndices = std::make_integer_sequence<int32_t, kNumBuiltinConfigs>;

struct SelectionSums {
  int64_t fields[kSelectionSumFields] = {};
};

// The sums of a histogram. total_big_tiles: the mixed rule's "fills the machine" count
// (mixed_rule_big_tiles).
inline SelectionSums selection_sums(const int32_t* histogram, int32_t num_experts,
                                    int32_t num_sms, int32_t total_big_tiles) {
  SelectionSums sums;
  for (int32_t e = 0; e < num_experts; ++e) {
    add_selection_terms(histogram[e], choose_builtin_config(histogram[e], total_big_tiles, num_sms),
                        sums.fields, BuiltinConfigIndices{});
  }
  return sums;
}

RAMP_HOST_DEVICE inline CandidateFeatures features_of(int64_t blocks, int64_t tiles,
                                                      int64_t active, int32_t num_sms,
                                                      int32_t ctas_per_sm) {
  CandidateFeatures f;
  f.token_blocks = blocks;
  f.tiles = tiles;
  f.active_experts = active;
  const int64_t concurrent = static_cast<int64_t>(num_sms) * (ctas_per_sm > 0 ? ctas_per_sm : 1);
  if (concurrent <= 0) {
    f.waves = 0;
  } else if (tiles >= 0 && tiles + concurrent - 1 <= INT32_MAX) {
    // The same quotient by a 32-bit division: a 64-bit one is a long subroutine on the device.
    f.waves = static_cast<uint32_t>(tiles + concurrent - 1) / static_cast<uint32_t>(concurrent);
  } else {
    f.waves = (tiles + concurrent - 1) / concurrent;
  }
  return f;
}

// What one prediction reads: whose coefficients, which config's tiles, the token blocks and
// experts, and the CTAs per SM of the launch. Host and device make these first (short,
// different per candidate), then price() them: on the device every lane of the predicting
// warp runs that long part (two double logs, a division) at once, not one path after another.
struct PricingInput {
  int32_t coefficients;  // table index whose a..f price it; -1: nothing to price
  int32_t config;        // compiled config whose tiles per token block apply
  int32_t ctas_per_sm;
  int64_t blocks;
  int64_t active;
};

// A uniform candidate: its config's uniform fields, all active experts.
template <class Sums>
RAMP_HOST_DEVICE inline PricingInput uniform_pricing(const CandidateTable& table, int32_t index,
                                                     const Sums& sums) {
  const Candidate& candidate = table.entries[index];
  return PricingInput{index, candidate.config, candidate.ctas_per_sm,
                      static_cast<int64_t>(sums[uniform_blocks_field(candidate.config)]),
                      static_cast<int64_t>(sums[kActiveExpertsField])};
}

// The mixed candidate's group of `config` priced by uniform candidate `uniform_index` (-1 when
// the table has none for that config): the group's fields, the mixed launch's CTAs per SM.
template <class Sums>
RAMP_HOST_DEVICE inline PricingInput group_pricing(const Candidate& mixed, int32_t config,
                                                   int32_t uniform_index, const Sums& sums) {
  return PricingInput{uniform_index, config, mixed.ctas_per_sm,
                      static_cast<int64_t>(sums[mixed_blocks_field(config)]),
                      static_cast<int64_t>(sums[mixed_active_field(config)])};
}

// `configs` is the compiled table (kBuiltinConfigs on the host, its __constant__ copy on the
// device), read for the tiles per token block.
RAMP_HOST_DEVICE inline double price(const CandidateTable& table, const PricingInput& input,
                                     const TileConfig* configs, int32_t out_features,
                                     int32_t num_sms) {
  const int64_t tiles =
      input.blocks * configs[input.config].tiles_per_token_block(out_features);
  return candidate_predict(table.entries[input.coefficients],
                           features_of(input.blocks, tiles, input.active, num_sms,
                                       input.ctas_per_sm));
}

// Index of the first uniform candidate of `config` in the table; -1 when there is none.
RAMP_HOST_DEVICE inline int32_t uniform_candidate_of(const CandidateTable& table,
                                                     int32_t config) {
  const int32_t count = table.count < kMaxCandidates ? table.count : kMaxCandidates;
  for (int32_t i = 0; i < count; ++i) {
    if (table.entries[i].kind == kCandidateUniform && table.entries[i].config == config) return i;
  }
  return -1;
}

// One group of the mixed candidate's composition (the experts the builtin rule gives `config`):
// what the uniform candidate of that config predicts for them alone, less its launch term.
struct MixedGroupTerm {
  enum State : int32_t { kEmpty = 0, kPriced = 1, kUnpriced = 2 };  // kUnpriced: no uniform
  int32_t state;
  double cost;    // T_uniform c(experts of c) - a_c
  double launch;  // a_c
};
// Whether the group's input has anything to price (mixed_group_term reads the price then):
// experts in the group and a uniform candidate for its config.
RAMP_HOST_DEVICE inline bool group_is_priced(const PricingInput& input) {
  return input.active != 0 && input.coefficients >= 0;
}
// The term from the group's pricing input and, when it is priced, its price.
RAMP_HOST_DEVICE inline MixedGroupTerm mixed_group_term(const CandidateTable& table,
                                                        const PricingInput& input,
                                                        double priced) {
  if (!group_is_priced(input)) {
    return MixedGroupTerm{input.active == 0 ? MixedGroupTerm::kEmpty : MixedGroupTerm::kUnpriced,
                          0.0, 0.0};
  }
  const double launch = table.entries[input.coefficients].a;
  return MixedGroupTerm{MixedGroupTerm::kPriced, priced - launch, launch};
}

// The mixed candidate's prediction from its groups' terms (config order; see the composition
// rule above): max_c a_c + sum_c cost_c when every non-empty group is priced, else the mixed
// candidate's own coefficients on its own features. The device computes the terms in parallel
// and composes them here, so host and device add in the same order.
template <class Sums>
RAMP_HOST_DEVICE inline double compose_mixed(const Candidate& mixed, const MixedGroupTerm* terms,
                                             const Sums& sums, const TileConfig* configs,
                                             int32_t out_features, int32_t num_sms) {
  double launch = 0.0, sum = 0.0;
  bool composed = true, any = false;
  for (int32_t config = 0; config < kNumBuiltinConfigs; ++config) {
    if (terms[config].state == MixedGroupTerm::kEmpty) continue;
    if (terms[config].state == MixedGroupTerm::kUnpriced) {
      composed = false;
      break;
    }
    sum += terms[config].cost;
    launch = launch > terms[config].launch ? launch : terms[config].launch;
    any = true;
  }
  if (composed && any) return launch + sum;
  int64_t blocks = 0, tiles = 0, active = 0;
  for (int32_t config = 0; config < kNumBuiltinConfigs; ++config) {
    const int64_t config_blocks = static_cast<int64_t>(sums[mixed_blocks_field(config)]);
    blocks += config_blocks;
    tiles += config_blocks * configs[config].tiles_per_token_block(out_features);
    active += static_cast<int64_t>(sums[mixed_active_field(config)]);
  }
  return candidate_predict(mixed, features_of(blocks, tiles, active, num_sms, mixed.ctas_per_sm));
}

// Predicted microseconds of table entry `index` (see the composition rule above for mixed).
template <class Sums>
RAMP_HOST_DEVICE inline double predict_from_sums(const CandidateTable& table, int32_t index,
                                                 const Sums& sums, const TileConfig* configs,
                                                 int32_t out_features, int32_t num_sms) {
  const Candidate& candidate = table.entries[index];
  if (candidate.kind != kCandidateMixed) {
    return price(table, uniform_pricing(table, index, sums), configs, out_features, num_sms);
  }
  MixedGroupTerm terms[kNumBuiltinConfigs];
  for (int32_t config = 0; config < kNumBuiltinConfigs; ++config) {
    const PricingInput input =
        group_pricing(candidate, config, uniform_candidate_of(table, config), sums);
    terms[config] = mixed_group_term(
        table, input,
        group_is_priced(input) ? price(table, input, configs, out_features, num_sms) : 0.0);
  }
  return compose_mixed(candidate, terms, sums, configs, out_features, num_sms);
}

// The first-minimum rule every selection uses: candidate `time` at `index` replaces the best so
// far only when strictly faster, so ties go to the earlier table entry.
RAMP_HOST_DEVICE inline bool improves_on(double time, int32_t best, double best_time) {
  return best < 0 || time < best_time;
}

// Index of the candidate with the smallest predicted time (first on ties); -1 when the table
// is empty. An empty histogram predicts every candidate's `a`.
template <class Sums>
RAMP_HOST_DEVICE inline int32_t select_from_sums(const CandidateTable& table, const Sums& sums,
                                                 const TileConfig* configs, int32_t out_features,
                                                 int32_t num_sms) {
  int32_t best = -1;
  double best_time = 0.0;
  const int32_t count = table.count < kMaxCandidates ? table.count : kMaxCandidates;
  for (int32_t i = 0; i < count; ++i) {
    const double time = predict_from_sums(table, i, sums, configs, out_features, num_sms);
    if (improves_on(time, best, best_time)) {
      best = i;
      best_time = time;
    }
  }
  return best;
}

// The same on a histogram (the host's entry points; the device builds the sums in parallel).
// Candidates index the compiled table kBuiltinConfigs.
inline double predict_table_entry(const CandidateTable& table, int32_t index,
                                  const int32_t* histogram, int32_t num_experts,
                                  int32_t out_features, int32_t num_sms, int32_t total_big_tiles) {
  return predict_from_sums(table, index,
                           selection_sums(histogram, num_experts, num_sms, total_big_tiles).fields,
                           kBuiltinConfigs, out_features, num_sms);
}

inline int32_t select_candidate(const CandidateTable& table, const int32_t* histogram,
                                int32_t num_experts, int32_t out_features, int32_t num_sms) {
  const int32_t big = mixed_rule_big_tiles(kBuiltinConfigs, histogram, num_experts, out_features);
  return select_from_sums(table,
                          selection_sums(histogram, num_experts, num_sms, big).fields,
                          kBuiltinConfigs, out_features, num_sms);
}

}  // namespace ramp::dispatch
