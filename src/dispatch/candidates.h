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
// and its predicted time is RaMP's four-term model plus one term for the weights read:
//   T = a + b*waves + c*g + d*log(g + 1) + e*A.
// The e*A term goes beyond the paper: at small and mid T the GEMMs stream every active
// expert's weights from DRAM, a cost g alone cannot separate from tile work (g >= A, and
// uniform 8-token tiles have g >> A). On the H100 tables of 2026-11-22 it lowers the held-out
// mean regret of uniform-candidate selection from 3.1% to 1.8%; e = 0 is the paper's model.
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

RAMP_HOST_DEVICE inline double candidate_predict(const Candidate& candidate,
                                                 const CandidateFeatures& f) {
  const double g = static_cast<double>(f.token_blocks);
  return candidate.a + candidate.b * static_cast<double>(f.waves) + candidate.c * g +
         candidate.d * ::log(g + 1.0) + candidate.e * static_cast<double>(f.active_experts);
}

// Features of the experts that `candidate` (mixed) gives config `config`, as a uniform
// candidate of that config would see them.
RAMP_HOST_DEVICE inline CandidateFeatures group_features(const Candidate& candidate,
                                                         int32_t config, const TileConfig* configs,
                                                         const int32_t* histogram,
                                                         int32_t num_experts,
                                                         int32_t out_features, int32_t num_sms,
                                                         int32_t ctas_per_sm,
                                                         int32_t total_big_tiles) {
  CandidateFeatures f;
  for (int32_t e = 0; e < num_experts; ++e) {
    const int32_t rows = histogram[e];
    if (rows <= 0) continue;
    if (candidate_config_of_expert(candidate, rows, total_big_tiles, num_sms) != config) continue;
    f.token_blocks += configs[config].token_blocks(rows);
    f.tiles += configs[config].tiles(rows, out_features);
    ++f.active_experts;
  }
  const int64_t concurrent = static_cast<int64_t>(num_sms) * (ctas_per_sm > 0 ? ctas_per_sm : 1);
  f.waves = concurrent > 0 ? (f.tiles + concurrent - 1) / concurrent : 0;
  return f;
}

// Predicted microseconds of table entry `index` (see the composition rule above for mixed).
RAMP_HOST_DEVICE inline double predict_table_entry(const CandidateTable& table, int32_t index,
                                                   const TileConfig* configs,
                                                   const int32_t* histogram, int32_t num_experts,
                                                   int32_t out_features, int32_t num_sms,
                                                   int32_t total_big_tiles) {
  const Candidate& candidate = table.entries[index];
  const int32_t count = table.count < kMaxCandidates ? table.count : kMaxCandidates;
  if (candidate.kind == kCandidateMixed) {
    double launch = 0.0, sum = 0.0;
    bool composed = true, any = false;
    for (int32_t config = 0; config < kNumBuiltinConfigs && composed; ++config) {
      const CandidateFeatures f =
          group_features(candidate, config, configs, histogram, num_experts, out_features,
                         num_sms, candidate.ctas_per_sm, total_big_tiles);
      if (f.active_experts == 0) continue;
      int32_t uniform_index = -1;
      for (int32_t i = 0; i < count; ++i) {
        if (table.entries[i].kind == kCandidateUniform && table.entries[i].config == config) {
          uniform_index = i;
          break;
        }
      }
      if (uniform_index < 0) {
        composed = false;
        break;
      }
      const Candidate& uniform = table.entries[uniform_index];
      sum += candidate_predict(uniform, f) - uniform.a;
      launch = launch > uniform.a ? launch : uniform.a;
      any = true;
    }
    if (composed && any) return launch + sum;
  }
  return candidate_predict(candidate, candidate_features(candidate, configs, histogram,
                                                         num_experts, out_features, num_sms,
                                                         total_big_tiles));
}

// Index of the candidate with the smallest predicted time (first on ties); -1 when the table
// is empty. An empty histogram predicts every candidate's `a`.
RAMP_HOST_DEVICE inline int32_t select_candidate(const CandidateTable& table,
                                                 const TileConfig* configs,
                                                 const int32_t* histogram, int32_t num_experts,
                                                 int32_t out_features, int32_t num_sms) {
  const int32_t big = mixed_rule_big_tiles(configs, histogram, num_experts, out_features);
  int32_t best = -1;
  double best_time = 0.0;
  const int32_t count = table.count < kMaxCandidates ? table.count : kMaxCandidates;
  for (int32_t i = 0; i < count; ++i) {
    const double time = predict_table_entry(table, i, configs, histogram, num_experts,
                                            out_features, num_sms, big);
    if (best < 0 || time < best_time) {
      best = i;
      best_time = time;
    }
  }
  return best;
}

}  // namespace ramp::dispatch
