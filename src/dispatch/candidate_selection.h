// Host side of routing-aware dispatch over the selection candidates (candidates.h):
//  - the candidate set (every compiled config applied uniformly + the mixed builtin rule);
//  - the per-expert assignment a candidate implies (what a plan runs);
//  - fitting candidate profiles from a measured table (`ramp profile` measures it on a GPU;
//    tests pass a fake measure function);
//  - the region-analysis fallback among the same candidates, used when no profile exists for
//    the device and shape;
//  - the profiles shipped with the library (profiles/h100.json, embedded at build time) and the
//    one entry point that picks: shipped profile when there is one, else the region fallback;
//  - the evaluation summary (regret vs exhaustive search, speedup over static dispatch).
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "dispatch/candidates.h"
#include "dispatch/cost_model.h"
#include "dispatch/regions.h"

namespace ramp::dispatch {

// The candidates in table order: uniform 0..kNumBuiltinConfigs-1, then mixed. Coefficients 0.
std::vector<Candidate> builtin_candidates();
// "uniform 0 (normal 128x256)", "mixed".
std::string candidate_name(const Candidate& candidate);

// kBuiltinConfigs index per expert under the candidate (experts with no tokens get what the
// candidate gives 0 rows; they own no task either way).
std::vector<int32_t> candidate_assignment(const Candidate& candidate,
                                          std::span<const int32_t> histogram,
                                          int32_t out_features, int32_t num_sms);
// candidate_features on a host histogram with the host config table.
CandidateFeatures candidate_features(const Candidate& candidate,
                                     std::span<const int32_t> histogram, int32_t out_features,
                                     int32_t num_sms);

// ---- Fitting -----------------------------------------------------------------------------

struct CandidateProfileRequest {
  std::string device;
  int32_t sm_count = 0;
  GemmShape shape;
  std::vector<Candidate> candidates;             // builtin_candidates() normally
  std::vector<std::vector<int32_t>> histograms;  // the designed (fitting) set, each of size E
};

// Fits every candidate's four coefficients by NNLS (relative error) from
// measured[h][c] microseconds. measured must be histograms x candidates, times > 0.
Status fit_candidate_profile(const CandidateProfileRequest& request,
                             const std::vector<std::vector<double>>& measured, Profile* profile);

// Times one candidate on histogram `h` of the request (microseconds).
using CandidateMeasureFn = std::function<Status(int32_t candidate, int32_t histogram,
                                                double* microseconds)>;
// Measures the table (histogram-major) through `measure`, then fit_candidate_profile.
Status build_candidate_profile(const CandidateProfileRequest& request,
                               const CandidateMeasureFn& measure, Profile* profile,
                               std::vector<std::vector<double>>* measured = nullptr);

// ---- Region-analysis fallback ------------------------------------------------------------

// Estimated microseconds of a candidate from hardware constants alone (no fitting), built from
// the region variables: every tile streams its A and B operands (token_tile + feature_tile) x K
// bf16 through its SM and does 2 x token_tile x feature_tile x K padded FLOPs, so a tile costs
//   t_tile = max(FLOPs / (tensor rate / SMs), operand bytes / (kL2FeedRatio x copy rate / SMs));
// a launch costs its whole waves times the mean tile time (wave quantisation), but never less
// than streaming the active experts' weights plus token rows in and out once from DRAM:
//   T = kRegionLaunchUs + max(ceil(tiles / CTAs) x mean t_tile, DRAM bytes / copy rate).
// Worked example (H100: 795 TFLOP/s, 3020 GB/s, 132 SMs; olmoe-1b-7b GEMM1 N = 2048, K = 2048,
// 64 experts with 8 rows each, T = 64): uniform 0 (128x256) -> 64 x 8 = 512 tiles of
// 384 x 2048 x 2 B = 1.5 MiB operands each: feed 2.5 x 3020 / 132 = 57 GB/s per SM ->
// 27.5 us per tile, 4 waves -> 110 us; uniform 5 (swapped 8x128) -> 64 x 16 = 1024 tiles of
// 136 x 4 KiB = 0.56 MB -> 9.7 us, 8 waves -> 78 us; DRAM: 64 x 8 MiB weights = 537 MB ->
// 179 us bounds both, so the estimates tie at 3 + 179 us; among estimates within
// kRegionTieFraction of the best the least compute wins (78 us: uniform 5, the same kernel as
// the mixed rule here, which gives each 8-row expert swapped 8x128), then table order (uniform
// candidates before the mix).
inline constexpr double kRegionLaunchUs = 3.0;
inline constexpr double kL2FeedRatio = 2.5;       // L2 -> SM operand rate / DRAM copy rate
inline constexpr double kRegionTieFraction = 0.02;  // estimates this close count as a tie

double region_estimate_us(const Candidate& candidate, const GemmShape& shape,
                          std::span<const int32_t> histogram, const DeviceConstants& device);
// Index into `candidates` with the smallest estimate; among estimates within kRegionTieFraction
// of the best, the smallest compute part (waves x mean tile time), then the first in order.
// -1 when candidates is empty.
int32_t select_candidate_by_regions(std::span<const Candidate> candidates, const GemmShape& shape,
                                    std::span<const int32_t> histogram,
                                    const DeviceConstants& device);

// ---- Shipped profiles and the host selection entry point ---------------------------------

// Profiles embedded at build time from profiles/h100.json (empty when that file lists none).
const std::vector<Profile>& shipped_profiles();

struct CandidateChoice {
  Candidate candidate;
  int32_t index = -1;          // into the profile's candidates or builtin_candidates()
  bool from_profile = false;   // false: region-analysis fallback
};
// The candidate for one GEMM call on `device`: the profile's argmin when `profiles` holds one
// for (device.name, shape), else the region fallback among builtin_candidates().
CandidateChoice choose_candidate(std::span<const Profile> profiles, const GemmShape& shape,
                                 std::span<const int32_t> histogram,
                                 const DeviceConstants& device);

// ---- Evaluation --------------------------------------------------------------------------

struct EvaluationTargets {
  double mean_regret = 0.01, p95_regret = 0.03, max_regret = 0.08;
  double speedup_geomean = 1.15, speedup_min = 1.0;
  double fallback_mean_regret = 0.05;
};

struct SelectionEvaluation {
  RegretStats selected;   // the profile's choice
  RegretStats fallback;   // region fallback
  RegretStats mixed;      // the builtin mixed rule alone
  RegretStats static_dispatch;  // static batch-size dispatch
  int32_t speedup_count = 0;
  double speedup_geomean = 0.0, speedup_min = 0.0, speedup_max = 0.0;
  bool meets_regret = false, meets_speedup = false, meets_fallback = false;
};

// Static batch-size dispatch's pick at one T, from every candidate's time on uniform routing at
// that T: the fastest uniform candidate (one compiled config for every expert, what a
// batch-size-keyed table holds). The mixed candidate is left out: it chooses per expert from the
// live histogram, which is what static dispatch does not do. -1 when no candidate is uniform.
// Example: {uniform 0: 30 us, uniform 1: 20 us, mixed: 15 us} -> 1.
int32_t static_dispatch_choice(std::span<const Candidate> candidates,
                               std::span<const double> uniform_times);

// measured[h][c]: microseconds of candidate c on evaluation histogram h. selected, fallback,
// static_choice: the candidate each policy picks per histogram; mixed_index: the mixed
// candidate's column. speedup_rows: the histograms that count for the speedup target.
SelectionEvaluation evaluate_selection(const std::vector<std::vector<double>>& measured,
                                       std::span<const int32_t> selected,
                                       std::span<const int32_t> fallback,
                                       std::span<const int32_t> static_choice,
                                       int32_t mixed_index,
                                       std::span<const int32_t> speedup_rows,
                                       const EvaluationTargets& targets = {});

}  // namespace ramp::dispatch
