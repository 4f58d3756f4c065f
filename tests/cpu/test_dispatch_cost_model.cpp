#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <unistd.h>

#include "dispatch/builtin_configs.h"
#include "dispatch/catalog.h"
#include "dispatch/cost_model.h"
#include "workloads/routing.h"

namespace ramp::dispatch {
namespace {

// ---- Helpers --------------------------------------------------------------------------------

// Histograms of the kinds a profile measures: every routing kind at several batch sizes.
std::vector<std::vector<int32_t>> designed_histograms(int32_t experts, int32_t top_k) {
  std::vector<std::vector<int32_t>> histograms;
  uint64_t seed = 1;
  for (const std::string& kind : workloads::all_routing_names()) {
    workloads::RoutingSpec spec;
    EXPECT_TRUE(workloads::RoutingSpec::parse(kind, &spec));
    for (const int32_t tokens : {1, 8, 32, 128, 512, 2048, 8192}) {
      histograms.push_back(
          workloads::generate_routing(spec, tokens, experts, top_k, seed++).histogram());
    }
  }
  return histograms;
}

std::vector<double> row_major(const std::vector<std::array<double, 4>>& rows) {
  std::vector<double> a;
  for (const auto& row : rows) a.insert(a.end(), row.begin(), row.end());
  return a;
}

double residual_norm(const std::vector<double>& a, int32_t rows, int32_t cols,
                     const std::vector<double>& b, const std::vector<double>& x) {
  double sum = 0.0;
  for (int32_t i = 0; i < rows; ++i) {
    double r = -b[static_cast<size_t>(i)];
    for (int32_t j = 0; j < cols; ++j) r += a[static_cast<size_t>(i * cols + j)] * x[static_cast<size_t>(j)];
    sum += r * r;
  }
  return std::sqrt(sum);
}

// Exhaustive NNLS for small column counts: the best feasible unconstrained least-squares
// solution over every subset of columns (the optimum is one of them).
std::vector<double> brute_force_nnls(const std::vector<double>& a, int32_t rows, int32_t cols,
                                     const std::vector<double>& b) {
  std::vector<double> best(static_cast<size_t>(cols), 0.0);
  double best_norm = residual_norm(a, rows, cols, b, best);
  for (int32_t mask = 1; mask < (1 << cols); ++mask) {
    std::vector<int32_t> subset;
    for (int32_t j = 0; j < cols; ++j) {
      if (mask & (1 << j)) subset.push_back(j);
    }
    const int32_t p = static_cast<int32_t>(subset.size());
    // Normal equations with Gauss-Jordan (fine for the well-conditioned random test data).
    std::vector<double> m(static_cast<size_t>(p * (p + 1)), 0.0);
    for (int32_t r = 0; r < p; ++r) {
      for (int32_t c = 0; c < p; ++c) {
        for (int32_t i = 0; i < rows; ++i) {
          m[static_cast<size_t>(r * (p + 1) + c)] +=
              a[static_cast<size_t>(i * cols + subset[r])] * a[static_cast<size_t>(i * cols + subset[c])];
        }
      }
      for (int32_t i = 0; i < rows; ++i) {
        m[static_cast<size_t>(r * (p + 1) + p)] += a[static_cast<size_t>(i * cols + subset[r])] * b[static_cast<size_t>(i)];
      }
    }
    for (int32_t k = 0; k < p; ++k) {
      const double pivot = m[static_cast<size_t>(k * (p + 1) + k)];
      for (int32_t c = 0; c <= p; ++c) m[static_cast<size_t>(k * (p + 1) + c)] /= pivot;
      for (int32_t r = 0; r < p; ++r) {
        if (r == k) continue;
        const double factor = m[static_cast<size_t>(r * (p + 1) + k)];
        for (int32_t c = 0; c <= p; ++c) {
          m[static_cast<size_t>(r * (p + 1) + c)] -= factor * m[static_cast<size_t>(k * (p + 1) + c)];
        }
      }
    }
    std::vector<double> x(static_cast<size_t>(cols), 0.0);
    bool feasible = true;
    for (int32_t k = 0; k < p; ++k) {
      x[static_cast<size_t>(subset[k])] = m[static_cast<size_t>(k * (p + 1) + p)];
      if (x[static_cast<size_t>(subset[k])] < 0.0) feasible = false;
    }
    if (!feasible) continue;
    const double norm = residual_norm(a, rows, cols, b, x);
    if (norm < best_norm) {
      best_norm = norm;
      best = x;
    }
  }
  return best;
}

// ---- Features -------------------------------------------------------------------------------

TEST(DispatchCostModel, WaveFeaturesWorkedExample) {
  // builtin 0 (128x256) on N = 1024: 4 feature blocks. Rows {0, 3, 130, 64}: g = 0+1+2+1 = 4,
  // tiles = 16 -> 1 wave on 132 CTAs; 2 waves once tiles exceed 132.
  const std::vector<int32_t> histogram = {0, 3, 130, 64};
  const WaveFeatures f = wave_features(kBuiltinConfigs[0], histogram, 1024, 132);
  EXPECT_EQ(f.token_blocks, 4.0);
  EXPECT_EQ(f.tiles, 16.0);
  EXPECT_EQ(f.waves, 1.0);
  const WaveFeatures g = wave_features(kBuiltinConfigs[0], std::vector<int32_t>{128 * 34}, 1024, 132);
  EXPECT_EQ(g.tiles, 136.0);
  EXPECT_EQ(g.waves, 2.0);
  TileConfig split = kBuiltinConfigs[0];
  split.split_k = 4;
  EXPECT_EQ(wave_features(split, histogram, 1024, 132).tiles, 64.0);
  const auto terms = cost_terms(f);
  EXPECT_EQ(terms[0], 1.0);
  EXPECT_EQ(terms[1], 1.0);
  EXPECT_EQ(terms[2], 4.0);
  EXPECT_DOUBLE_EQ(terms[3], std::log(5.0));
  const CostCoefficients c{10.0, 20.0, 0.5, 3.0};
  EXPECT_DOUBLE_EQ(c.predict(f), 10.0 + 20.0 + 2.0 + 3.0 * std::log(5.0));
}

// ---- NNLS -----------------------------------------------------------------------------------

TEST(DispatchNnls, MatchesExhaustiveSearchOnRandomProblems) {
  std::mt19937_64 rng(7);
  std::normal_distribution<double> normal(0.0, 1.0);
  for (int trial = 0; trial < 200; ++trial) {
    const int32_t rows = 6 + trial % 20, cols = 1 + trial % 5;
    std::vector<double> a(static_cast<size_t>(rows * cols)), b(static_cast<size_t>(rows));
    for (double& v : a) v = normal(rng);
    for (double& v : b) v = normal(rng);
    const NnlsResult result = solve_nnls(a, rows, cols, b);
    ASSERT_TRUE(result.converged) << trial;
    const std::vector<double> expected = brute_force_nnls(a, rows, cols, b);
    for (int32_t j = 0; j < cols; ++j) {
      EXPECT_GE(result.x[static_cast<size_t>(j)], 0.0);
      EXPECT_NEAR(result.x[static_cast<size_t>(j)], expected[static_cast<size_t>(j)], 1e-9)
          << "trial " << trial << " column " << j;
    }
    EXPECT_NEAR(result.residual_norm, residual_norm(a, rows, cols, b, expected), 1e-9);
  }
}

TEST(DispatchNnls, ClampsACoefficientThatWantsToBeNegative) {
  // b = 2*c0 - 1*c1 + 3*c2: unconstrained least squares recovers -1, NNLS must return 0 there
  // and satisfy the KKT conditions (no descent direction into the free columns).
  std::mt19937_64 rng(3);
  std::uniform_real_distribution<double> uniform(0.5, 2.0);
  const int32_t rows = 40, cols = 3;
  std::vector<double> a(static_cast<size_t>(rows * cols)), b(static_cast<size_t>(rows));
  for (int32_t i = 0; i < rows; ++i) {
    for (int32_t j = 0; j < cols; ++j) a[static_cast<size_t>(i * cols + j)] = uniform(rng);
    b[static_cast<size_t>(i)] = 2 * a[static_cast<size_t>(i * cols)] - a[static_cast<size_t>(i * cols + 1)] +
                                3 * a[static_cast<size_t>(i * cols + 2)];
  }
  const NnlsResult result = solve_nnls(a, rows, cols, b);
  ASSERT_TRUE(result.converged);
  EXPECT_EQ(result.x[1], 0.0);
  // KKT: gradient A^T (A x - b) is 0 on positive coordinates and >= 0 on zero ones.
  for (int32_t j = 0; j < cols; ++j) {
    double gradient = 0.0;
    for (int32_t i = 0; i < rows; ++i) {
      double r = -b[static_cast<size_t>(i)];
      for (int32_t c = 0; c < cols; ++c) r += a[static_cast<size_t>(i * cols + c)] * result.x[static_cast<size_t>(c)];
      gradient += a[static_cast<size_t>(i * cols + j)] * r;
    }
    if (result.x[static_cast<size_t>(j)] > 0.0) {
      EXPECT_NEAR(gradient, 0.0, 1e-9) << j;
    } else {
      EXPECT_GE(gradient, -1e-9) << j;
    }
  }
}

TEST(DispatchNnls, HandlesDuplicatedAndCollinearColumns) {
  // Columns: c0, c0 again, 2*c0 (all collinear), c3 independent, plus an all-zero column.
  const int32_t rows = 12, cols = 5;
  std::vector<double> a(static_cast<size_t>(rows * cols)), b(static_cast<size_t>(rows));
  for (int32_t i = 0; i < rows; ++i) {
    const double c0 = 1.0 + i, c3 = std::sin(0.7 * i) + 2.0;
    a[static_cast<size_t>(i * cols + 0)] = c0;
    a[static_cast<size_t>(i * cols + 1)] = c0;
    a[static_cast<size_t>(i * cols + 2)] = 2.0 * c0;
    a[static_cast<size_t>(i * cols + 3)] = c3;
    a[static_cast<size_t>(i * cols + 4)] = 0.0;
    b[static_cast<size_t>(i)] = 5.0 * c0 + 1.5 * c3;
  }
  const NnlsResult result = solve_nnls(a, rows, cols, b);
  ASSERT_TRUE(result.converged);
  for (const double x : result.x) EXPECT_GE(x, 0.0);
  EXPECT_EQ(result.x[4], 0.0);
  // The collinear group carries 5 * c0 between them; c3 gets its 1.5.
  EXPECT_NEAR(result.x[0] + result.x[1] + 2.0 * result.x[2], 5.0, 1e-9);
  EXPECT_NEAR(result.x[3], 1.5, 1e-9);
  EXPECT_LT(result.residual_norm, 1e-9);
}

TEST(DispatchNnls, EmptyAndZeroProblems) {
  const std::vector<double> a = {0.0, 0.0, 0.0, 0.0};
  const std::vector<double> b = {1.0, 2.0};
  const NnlsResult result = solve_nnls(a, 2, 2, b);
  EXPECT_TRUE(result.converged);
  EXPECT_EQ(result.x, (std::vector<double>{0.0, 0.0}));
  EXPECT_NEAR(result.residual_norm, std::sqrt(5.0), 1e-12);
  EXPECT_TRUE(solve_nnls({}, 0, 3, {}).converged);
}

// ---- Fitting on the model's own timings -----------------------------------------------------

struct SyntheticProfile {
  std::vector<WaveFeatures> features;
  std::vector<double> times;
};

SyntheticProfile synthesize(const TileConfig& config, const GemmShape& shape,
                            const CostCoefficients& truth, double noise, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> jitter(-noise, noise);
  SyntheticProfile profile;
  for (const auto& histogram : designed_histograms(shape.num_experts, shape.top_k)) {
    const WaveFeatures f = wave_features(config, histogram, shape.out_features, 132);
    profile.features.push_back(f);
    profile.times.push_back(truth.predict(f) * (1.0 + jitter(rng)));
  }
  return profile;
}

TEST(DispatchCostModel, RecoversCoefficientsFromNoiselessTimings) {
  const GemmShape shape{128, 8, 1536, 2048};
  const CostCoefficients truth{8.0, 12.5, 0.05, 1.7};
  for (const int32_t builtin : {0, 1, 5}) {
    const SyntheticProfile p = synthesize(kBuiltinConfigs[builtin], shape, truth, 0.0, 1);
    CostFit fit;
    ASSERT_TRUE(fit_cost_model(p.features, p.times, &fit).is_ok());
    EXPECT_NEAR(fit.coefficients.a, truth.a, 1e-6 * truth.a) << builtin;
    EXPECT_NEAR(fit.coefficients.b, truth.b, 1e-6 * truth.b) << builtin;
    EXPECT_NEAR(fit.coefficients.c, truth.c, 1e-6 * truth.c) << builtin;
    EXPECT_NEAR(fit.coefficients.d, truth.d, 1e-6 * truth.d) << builtin;
    EXPECT_LT(fit.stats.max_relative_error, 1e-9);
    EXPECT_EQ(fit.stats.samples, static_cast<int32_t>(p.times.size()));
  }
}

TEST(DispatchCostModel, NoisyTimingsPredictWithinTheNoise) {
  const GemmShape shape{64, 8, 2048, 1024};  // olmoe GEMM1-like
  const CostCoefficients truth{6.0, 9.0, 0.02, 2.5};
  const SyntheticProfile p = synthesize(kBuiltinConfigs[1], shape, truth, 0.02, 5);
  CostFit fit;
  ASSERT_TRUE(fit_cost_model(p.features, p.times, &fit).is_ok());
  EXPECT_GE(fit.coefficients.a, 0.0);
  EXPECT_GE(fit.coefficients.d, 0.0);
  EXPECT_NEAR(fit.coefficients.b, truth.b, 0.15 * truth.b);
  EXPECT_LT(fit.stats.rms_relative_error, 0.02);
  EXPECT_LT(fit.stats.max_relative_error, 0.04);
  // Held-out histograms (other seeds): predictions within a few percent of the truth.
  for (uint64_t seed = 100; seed < 110; ++seed) {
    const auto histogram =
        workloads::generate_routing(workloads::RoutingSpec{workloads::RoutingKind::kZipf, 1.2},
                                    static_cast<int32_t>(seed * 37), 64, 8, seed)
            .histogram();
    const WaveFeatures f = wave_features(kBuiltinConfigs[1], histogram, shape.out_features, 132);
    EXPECT_NEAR(fit.coefficients.predict(f) / truth.predict(f), 1.0, 0.03) << seed;
  }
}

TEST(DispatchCostModel, ATermThatShouldBeZeroFitsToZero) {
  // Timings with no log term, and a negative one: NNLS clamps d at exactly 0 in the second.
  const GemmShape shape{128, 8, 1536, 2048};
  const TileConfig& config = kBuiltinConfigs[1];
  const SyntheticProfile zero = synthesize(config, shape, {5.0, 10.0, 0.04, 0.0}, 0.0, 2);
  CostFit fit;
  ASSERT_TRUE(fit_cost_model(zero.features, zero.times, &fit).is_ok());
  EXPECT_NEAR(fit.coefficients.d, 0.0, 1e-6);
  EXPECT_NEAR(fit.coefficients.b, 10.0, 1e-5);

  SyntheticProfile negative = zero;
  for (size_t i = 0; i < negative.times.size(); ++i) {
    negative.times[i] -= 0.3 * std::log(negative.features[i].token_blocks + 1.0);
  }
  ASSERT_TRUE(fit_cost_model(negative.features, negative.times, &fit).is_ok());
  EXPECT_EQ(fit.coefficients.d, 0.0);
  EXPECT_GE(fit.coefficients.a, 0.0);
  EXPECT_GE(fit.coefficients.b, 0.0);
  EXPECT_GE(fit.coefficients.c, 0.0);
}

TEST(DispatchCostModel, CollinearProfileStillFits) {
  // Every histogram fits in one wave: the waves column equals the constant column, so a and b
  // are not separately identifiable. The fit must still reproduce the timings.
  const GemmShape shape{8, 2, 1024, 4096};
  std::vector<WaveFeatures> features;
  std::vector<double> times;
  const CostCoefficients truth{4.0, 6.0, 0.3, 1.0};
  for (int32_t rows = 1; rows <= 40; ++rows) {
    const std::vector<int32_t> histogram = {rows, rows / 2, 0, 1, 0, 0, rows / 3, 0};
    const WaveFeatures f = wave_features(kBuiltinConfigs[5], histogram, shape.out_features, 132);
    ASSERT_EQ(f.waves, 1.0);
    features.push_back(f);
    times.push_back(truth.predict(f));
  }
  CostFit fit;
  ASSERT_TRUE(fit_cost_model(features, times, &fit).is_ok());
  EXPECT_NEAR(fit.coefficients.a + fit.coefficients.b, 10.0, 1e-6);
  EXPECT_NEAR(fit.coefficients.c, 0.3, 1e-6);
  EXPECT_NEAR(fit.coefficients.d, 1.0, 1e-6);
  EXPECT_LT(fit.stats.max_relative_error, 1e-9);
}

TEST(DispatchCostModel, FitRejectsBadInput) {
  CostFit fit;
  const std::vector<WaveFeatures> one(1);
  EXPECT_FALSE(fit_cost_model(one, std::vector<double>{}, &fit).is_ok());
  EXPECT_FALSE(fit_cost_model({}, {}, &fit).is_ok());
  EXPECT_FALSE(fit_cost_model(one, std::vector<double>{0.0}, &fit).is_ok());
  EXPECT_FALSE(fit_cost_model(one, std::vector<double>{std::nan("")}, &fit).is_ok());
}

// ---- Profiles and selection -----------------------------------------------------------------

Profile example_profile() {
  Profile profile;
  profile.device = "NVIDIA H100 80GB HBM3";
  profile.sm_count = 132;
  profile.shape = {128, 8, 1536, 2048};
  // Startup-heavy large tiles, cheap-to-start swapped tiles: small batches favour swapped.
  profile.entries.push_back({kBuiltinConfigs[0], 1, {30.0, 40.0, 0.02, 0.0}, {24, 0.011, 0.03}});
  profile.entries.push_back({kBuiltinConfigs[1], 1, {20.0, 30.0, 0.03, 0.5}, {24, 0.012, 0.031}});
  profile.entries.push_back({kBuiltinConfigs[5], 1, {5.0, 25.0, 0.1, 1.0 / 3.0}, {24, 0.0123456789, 0.1}});
  return profile;
}

TEST(DispatchProfile, SelectionIsTheArgminOfPredictions) {
  const Profile profile = example_profile();
  for (const int32_t tokens : {1, 8, 64, 512, 4096}) {
    const auto histogram =
        workloads::generate_routing(workloads::RoutingSpec{}, tokens, 128, 8, 11).histogram();
    const std::vector<double> predictions = profile.predict_all(histogram);
    ASSERT_EQ(predictions.size(), 3u);
    size_t best = 0;
    for (size_t i = 1; i < predictions.size(); ++i) {
      if (predictions[i] < predictions[best]) best = i;
    }
    EXPECT_EQ(profile.select(histogram), static_cast<int32_t>(best)) << tokens;
    for (size_t i = 0; i < predictions.size(); ++i) {
      const WaveFeatures f = wave_features(profile.entries[i].config, histogram, 1536, 132);
      EXPECT_DOUBLE_EQ(predictions[i], profile.entries[i].coefficients.predict(f));
    }
  }
  // Decode: the swapped config (index 2) has the cheapest start.
  EXPECT_EQ(profile.select(std::vector<int32_t>(128, 0)), 2);
  Profile empty;
  EXPECT_EQ(empty.select(std::vector<int32_t>{1, 2}), -1);
}

TEST(DispatchProfile, JsonRoundTripIsBitwise) {
  Profile profile = example_profile();
  profile.entries[2].coefficients.c = 0.1 + 0.2;  // 0.30000000000000004
  profile.entries[1].coefficients.d = std::nextafter(1.0, 2.0);
  profile.entries[0].coefficients.b = 1e-300;
  profile.entries[0].coefficients.a = 123456789012345680000.0;
  const std::string text = profile.to_json().dump();
  json::Value parsed_value;
  ASSERT_TRUE(json::parse(text, &parsed_value).is_ok());
  Profile parsed;
  ASSERT_TRUE(Profile::from_json(parsed_value, &parsed).is_ok());
  EXPECT_EQ(parsed.device, profile.device);
  EXPECT_EQ(parsed.sm_count, profile.sm_count);
  EXPECT_EQ(parsed.shape, profile.shape);
  ASSERT_EQ(parsed.entries.size(), profile.entries.size());
  for (size_t i = 0; i < profile.entries.size(); ++i) {
    const ProfileEntry& a = profile.entries[i];
    const ProfileEntry& b = parsed.entries[i];
    EXPECT_EQ(a.config, b.config);
    EXPECT_EQ(a.ctas_per_sm, b.ctas_per_sm);
    // EXPECT_EQ on doubles is exact equality: the writer prints shortest round-trip digits.
    EXPECT_EQ(a.coefficients.a, b.coefficients.a);
    EXPECT_EQ(a.coefficients.b, b.coefficients.b);
    EXPECT_EQ(a.coefficients.c, b.coefficients.c);
    EXPECT_EQ(a.coefficients.d, b.coefficients.d);
    EXPECT_EQ(a.stats.samples, b.stats.samples);
    EXPECT_EQ(a.stats.rms_relative_error, b.stats.rms_relative_error);
    EXPECT_EQ(a.stats.max_relative_error, b.stats.max_relative_error);
  }
  EXPECT_EQ(parsed.to_json().dump(), text);
}

TEST(DispatchProfile, FileRoundTripAndLookup) {
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("ramp_profile_test_" + std::to_string(getpid()) + ".json"))
                               .string();
  Profile gemm1 = example_profile();
  Profile gemm2 = example_profile();
  gemm2.shape = {128, 8, 2048, 768};
  const std::vector<Profile> profiles = {gemm1, gemm2};
  ASSERT_TRUE(write_profiles(path, profiles).is_ok());
  std::vector<Profile> loaded;
  ASSERT_TRUE(read_profiles(path, &loaded).is_ok());
  std::filesystem::remove(path);
  ASSERT_EQ(loaded.size(), 2u);
  const Profile* found = find_profile(loaded, "NVIDIA H100 80GB HBM3", GemmShape{128, 8, 2048, 768});
  ASSERT_NE(found, nullptr);
  EXPECT_EQ(found->shape.in_features, 768);
  EXPECT_EQ(find_profile(loaded, "NVIDIA H200", gemm1.shape), nullptr);
}

TEST(DispatchProfile, FromJsonNamesTheBadField) {
  json::Value value = example_profile().to_json();
  value.find("configs")->as_array()[1].set("c", -1.0);
  Profile parsed;
  Status status = Profile::from_json(value, &parsed);
  ASSERT_FALSE(status.is_ok());
  EXPECT_NE(status.message().find("configs[1]"), std::string::npos) << status.message();
  EXPECT_NE(status.message().find("\"c\""), std::string::npos) << status.message();

  value = example_profile().to_json();
  value.find("configs")->as_array()[0].set("config", "normal 128x256");
  status = Profile::from_json(value, &parsed);
  ASSERT_FALSE(status.is_ok());
  EXPECT_NE(status.message().find("config string"), std::string::npos) << status.message();
}

// ---- Regret ---------------------------------------------------------------------------------

TEST(DispatchRegret, RegretAndSummary) {
  EXPECT_DOUBLE_EQ(regret(10.0, 10.0), 0.0);
  EXPECT_NEAR(regret(11.0, 10.0), 0.1, 1e-15);

  // 20 regrets 0.00, 0.01, ..., 0.19: mean 0.095, p95 = 19th smallest = 0.18, max 0.19.
  std::vector<double> regrets;
  for (int i = 19; i >= 0; --i) regrets.push_back(i / 100.0);
  const RegretStats stats = summarize_regret(regrets);
  EXPECT_EQ(stats.count, 20);
  EXPECT_NEAR(stats.mean, 0.095, 1e-12);
  EXPECT_DOUBLE_EQ(stats.p95, 0.18);
  EXPECT_DOUBLE_EQ(stats.max, 0.19);

  const RegretStats single = summarize_regret(std::vector<double>{0.5});
  EXPECT_EQ(single.p95, 0.5);
  const RegretStats none = summarize_regret({});
  EXPECT_EQ(none.count, 0);
  EXPECT_EQ(none.max, 0.0);
}

TEST(DispatchRegret, SelectionRegretsAgainstTheMeasuredBest) {
  const std::vector<std::vector<double>> measured = {
      {10.0, 12.0, 9.0},   // chose 2: best
      {20.0, 19.0, 25.0},  // chose 0: 20/19 - 1
      {5.0, 5.0, 5.5},     // chose 2: 10%
  };
  const std::vector<int32_t> chosen = {2, 0, 2};
  const std::vector<double> r = selection_regrets(measured, chosen);
  ASSERT_EQ(r.size(), 3u);
  EXPECT_DOUBLE_EQ(r[0], 0.0);
  EXPECT_DOUBLE_EQ(r[1], 20.0 / 19.0 - 1.0);
  EXPECT_DOUBLE_EQ(r[2], 5.5 / 5.0 - 1.0);
}

TEST(DispatchRegret, SpeedupsOverStaticAndGeometricMean) {
  const std::vector<std::vector<double>> measured = {{10.0, 20.0}, {30.0, 15.0}};
  const std::vector<int32_t> chosen = {0, 1};
  const std::vector<int32_t> static_choice = {0, 0};
  const std::vector<double> speedups = speedups_over_static(measured, chosen, static_choice);
  EXPECT_EQ(speedups, (std::vector<double>{1.0, 2.0}));
  EXPECT_NEAR(geometric_mean(speedups), std::sqrt(2.0), 1e-12);
  EXPECT_EQ(geometric_mean({}), 0.0);
}

// ---- End to end on a synthetic GPU ------------------------------------------------------------

// A stand-in for the device: each config's time is the wave model with its own coefficients,
// times (1 + uniform noise). Large tiles start slowly but run fewer waves; swapped tiles start
// fast but pay per token block.
struct SyntheticDevice {
  std::vector<TileConfig> configs;
  std::vector<CostCoefficients> truth;
  double noise = 0.0;
  mutable std::mt19937_64 rng{99};

  Status measure(const TileConfig& config, std::span<const int32_t> histogram, int32_t n,
                 double* microseconds) const {
    for (size_t c = 0; c < configs.size(); ++c) {
      if (configs[c] == config) {
        std::uniform_real_distribution<double> jitter(-noise, noise);
        *microseconds = truth[c].predict(wave_features(config, histogram, n, 132)) * (1.0 + jitter(rng));
        return Status::ok();
      }
    }
    return {ErrorCode::kInvalidArgument, "not compiled"};
  }
};

TEST(DispatchProfile, BuildProfileThenSelectWithSmallRegretOnHeldOutHistograms) {
  SyntheticDevice gpu;
  gpu.configs = {kBuiltinConfigs[0], kBuiltinConfigs[1], kBuiltinConfigs[5]};
  gpu.truth = {{40.0, 30.0, 0.01, 2.0}, {25.0, 22.0, 0.02, 1.0}, {6.0, 18.0, 0.08, 0.5}};
  gpu.noise = 0.01;
  ProfileRequest request;
  request.device = "synthetic";
  request.sm_count = 132;
  request.shared_bytes_per_sm = 228 * 1024;
  request.shape = {64, 8, 2048, 1024};
  request.configs = gpu.configs;
  request.histograms = designed_histograms(64, 8);
  const auto measure = [&](const TileConfig& config, std::span<const int32_t> histogram,
                           double* microseconds) {
    return gpu.measure(config, histogram, request.shape.out_features, microseconds);
  };
  Profile profile;
  std::vector<std::vector<double>> measured;
  ASSERT_TRUE(build_profile(request, measure, &profile, &measured).is_ok());
  ASSERT_EQ(profile.entries.size(), 3u);
  ASSERT_EQ(measured.size(), request.histograms.size());
  for (const ProfileEntry& entry : profile.entries) {
    EXPECT_EQ(entry.ctas_per_sm, 1);
    EXPECT_LT(entry.stats.rms_relative_error, 0.01);
  }

  // Held out: other token counts and seeds.
  std::vector<std::vector<double>> held_out_times;
  std::vector<int32_t> chosen;
  uint64_t seed = 1000;
  for (const std::string& kind : workloads::all_routing_names()) {
    workloads::RoutingSpec spec;
    ASSERT_TRUE(workloads::RoutingSpec::parse(kind, &spec));
    for (const int32_t tokens : {3, 20, 100, 300, 1000, 3000}) {
      const auto histogram = workloads::generate_routing(spec, tokens, 64, 8, seed++).histogram();
      std::vector<double> row;
      for (const TileConfig& config : gpu.configs) {
        double t = 0.0;
        ASSERT_TRUE(gpu.measure(config, histogram, 2048, &t).is_ok());
        row.push_back(t);
      }
      held_out_times.push_back(row);
      chosen.push_back(profile.select(histogram));
    }
  }
  const RegretStats stats = summarize_regret(selection_regrets(held_out_times, chosen));
  EXPECT_EQ(stats.count, 36);
  // The held-out set must exercise a real choice, not one config that always wins.
  EXPECT_GE(std::set<int32_t>(chosen.begin(), chosen.end()).size(), 2u);
  EXPECT_LT(stats.mean, 0.01);
  EXPECT_LT(stats.max, 0.05);
}

TEST(DispatchProfile, BuildProfileReportsTheFailingMeasurement) {
  ProfileRequest request;
  request.device = "synthetic";
  request.sm_count = 132;
  request.shared_bytes_per_sm = 228 * 1024;
  request.shape = {4, 2, 1024, 1024};
  request.configs = {kBuiltinConfigs[2]};
  request.histograms = {{1, 2, 3, 4}, {0, 0, 0, 8}};
  const auto failing = [](const TileConfig&, std::span<const int32_t> histogram, double* t) {
    *t = 10.0;
    return histogram[3] == 8 ? Status(ErrorCode::kCudaError, "launch failed") : Status::ok();
  };
  Profile profile;
  const Status status = build_profile(request, failing, &profile);
  ASSERT_FALSE(status.is_ok());
  EXPECT_NE(status.message().find("swapped 64x128"), std::string::npos) << status.message();
  EXPECT_NE(status.message().find("histogram 1"), std::string::npos) << status.message();

  request.histograms = {{1, 2, 3}};
  EXPECT_EQ(build_profile(request, failing, &profile).code(), ErrorCode::kShapeMismatch);
}

}  // namespace
}  // namespace ramp::dispatch
