// RaMP's wave cost model: the time of config c on histogram h is
//   T(c, h) = a_c + b_c * waves + c_c * g + d_c * log(g + 1)
// (launch and prologue, full waves, per-token-block traffic, sub-wave effects), where
//   g     = sum_e ceil(m_e / token_tile_c)                   token blocks
//   tiles = g * ceil(N / feature_tile_c) * split_k_c
//   waves = ceil(tiles / (SMs * CTAs per SM)).
// The four coefficients are fitted per config by non-negative least squares from a short
// profile over designed histograms; a Profile holds them for one device and one GEMM shape and
// round-trips through JSON. Selection is the argmin of the predictions.
//
// Later (beyond the paper): a per-expert heterogeneous choice needs a model of mixed-config
// launches (waves of the combined grid, g per config); the per-call argmin here is the base.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "core/json.h"
#include "core/tile_config.h"
#include "dispatch/candidates.h"
#include "dispatch/catalog.h"
#include "ramp/status.h"

namespace ramp::dispatch {

struct WaveFeatures {
  double token_blocks = 0.0;  // g
  double tiles = 0.0;
  double waves = 0.0;         // whole waves (ceil)
};
// concurrent_ctas = SMs * CTAs per SM of the config.
WaveFeatures wave_features(const TileConfig& config, std::span<const int32_t> histogram,
                           int32_t out_features, int32_t concurrent_ctas);

inline constexpr int kCostTerms = 4;
// The design-matrix row of one measurement: {1, waves, g, log(g + 1)}.
std::array<double, kCostTerms> cost_terms(const WaveFeatures& features);

struct CostCoefficients {
  double a = 0.0, b = 0.0, c = 0.0, d = 0.0;  // microseconds per term
  double predict(const WaveFeatures& features) const;
};

// ---- Non-negative least squares ------------------------------------------------------------

struct NnlsResult {
  std::vector<double> x;        // >= 0
  double residual_norm = 0.0;   // ||A x - b||_2
  int32_t iterations = 0;       // outer iterations (columns freed)
  bool converged = false;       // false only when the iteration cap stopped it
};
// min ||A x - b||_2 subject to x >= 0, by Lawson and Hanson's active-set method. A is row-major,
// rows x cols. Columns are scaled to unit norm internally (NNLS is invariant under positive
// column scaling, and unit columns make the tolerances meaningful); an all-zero column gets 0.
// The least-squares step on the free columns uses Householder QR with column pivoting and
// leaves numerically dependent columns at 0, so duplicated or collinear columns are fine.
NnlsResult solve_nnls(std::span<const double> a, int32_t rows, int32_t cols,
                      std::span<const double> b);

// ---- Fitting one config ---------------------------------------------------------------------

struct FitStats {
  int32_t samples = 0;
  double rms_relative_error = 0.0;  // sqrt(mean(((pred - t) / t)^2))
  double max_relative_error = 0.0;
};

struct CostFit {
  CostCoefficients coefficients;
  FitStats stats;
};

// The relative-error NNLS both cost models fit with: `terms` is the design matrix (row-major,
// times.size() rows x cols), each row weighted by 1 / t so a 10 us decode call matters as much
// to selection as a 5 ms prefill; *x gets the non-negative coefficients. Times must be > 0
// and finite (kInvalidArgument names the first that is not).
Status fit_relative_nnls(std::span<const double> terms, int32_t cols,
                         std::span<const double> times, std::vector<double>* x);
// How well predictions match the times: samples, rms and max of (pred - t) / t.
FitStats relative_fit_stats(std::span<const double> predicted, std::span<const double> times);

// Fits the four coefficients to (features, measured microseconds) pairs. Rows are weighted by
// 1 / t so the fit minimises relative error: a 10 us decode call matters as much to selection
// as a 5 ms prefill. Times must be > 0.
Status fit_cost_model(std::span<const WaveFeatures> features, std::span<const double> times_us,
                      CostFit* fit);

// ---- Profiles -------------------------------------------------------------------------------

struct ProfileEntry {
  TileConfig config;
  int32_t ctas_per_sm = 1;  // as measured; waves use sm_count * ctas_per_sm
  CostCoefficients coefficients;
  FitStats stats;
};

// One fitted selection candidate (candidates.h): the coefficients live in the Candidate.
struct CandidateProfileEntry {
  Candidate candidate;
  FitStats stats;
};

struct Profile {
  std::string device;  // DeviceConstants::name of the GPU it was measured on
  int32_t sm_count = 0;
  GemmShape shape;
  std::vector<ProfileEntry> entries;               // per catalog config (JSON "configs")
  std::vector<CandidateProfileEntry> candidates;   // selection candidates (JSON "candidates")

  // The candidates as the POD table select_candidate reads (at most kMaxCandidates).
  CandidateTable candidate_table() const;
  // Index into `candidates` with the smallest predicted time on the compiled configs; -1 when
  // there are none.
  int32_t select_candidate(std::span<const int32_t> histogram) const;

  double predict(size_t entry, std::span<const int32_t> histogram) const;
  // Predicted microseconds of every entry, in entry order.
  std::vector<double> predict_all(std::span<const int32_t> histogram) const;
  // Entry with the smallest prediction (first on ties); -1 when there are no entries.
  int32_t select(std::span<const int32_t> histogram) const;

  json::Value to_json() const;
  static Status from_json(const json::Value& value, Profile* profile);
};

// A profile file holds the profiles of several shapes (a layer has two GEMMs) and devices:
// {"format": "ramp-profile-1", "profiles": [...]}.
Status write_profiles(const std::string& path, std::span<const Profile> profiles);
Status read_profiles(const std::string& path, std::vector<Profile>* profiles);
// The profile for a device name and shape, or null.
const Profile* find_profile(std::span<const Profile> profiles, const std::string& device,
                            const GemmShape& shape);

// ---- Building a profile ---------------------------------------------------------------------

// Measures one config on one histogram: median microseconds of the GEMM (the GPU side of
// `ramp profile` supplies it; tests supply the model itself plus noise).
using MeasureFn = std::function<Status(const TileConfig& config,
                                       std::span<const int32_t> histogram, double* microseconds)>;

struct ProfileRequest {
  std::string device;
  int32_t sm_count = 0;
  int64_t shared_bytes_per_sm = 0;  // fixes each config's CTAs per SM
  GemmShape shape;
  std::vector<TileConfig> configs;                  // e.g. prune_for_profiling's entries
  std::vector<std::vector<int32_t>> histograms;     // the designed set, each of size E
};

// Measures every (config, histogram) pair, fits each config, and returns the profile.
// *measured, when given, receives the table [histogram][config] in microseconds, for
// evaluation and for saving next to the profile. Stops at the first failed measurement.
Status build_profile(const ProfileRequest& request, const MeasureFn& measure, Profile* profile,
                     std::vector<std::vector<double>>* measured = nullptr);

// ---- Evaluation -----------------------------------------------------------------------------

// selected / best - 1: 0 when the selection is the fastest measured config.
double regret(double selected_time, double best_time);

struct RegretStats {
  int32_t count = 0;
  double mean = 0.0;
  double p95 = 0.0;  // nearest rank: the ceil(0.95 n)-th smallest
  double max = 0.0;
};
RegretStats summarize_regret(std::span<const double> regrets);

// For each histogram h, measured[h][c] is the time of config c and chosen[h] the selected c.
// Returns the regret of each choice against the fastest config of its row.
std::vector<double> selection_regrets(const std::vector<std::vector<double>>& measured,
                                      std::span<const int32_t> chosen);

// Speedup of the chosen config over static batch-size dispatch (the config a batch-size-keyed
// table holds: the fastest on uniform routing at that batch size), per histogram:
// measured[h][static_choice[h]] / measured[h][chosen[h]].
std::vector<double> speedups_over_static(const std::vector<std::vector<double>>& measured,
                                         std::span<const int32_t> chosen,
                                         std::span<const int32_t> static_choice);
// exp(mean(log x)); 0 for an empty span. Speedups average geometrically.
double geometric_mean(std::span<const double> values);

}  // namespace ramp::dispatch
