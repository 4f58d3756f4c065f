// Selection candidates (candidates.h), their profiles, the region fallback among them and the
// evaluation summary (candidate_selection.h).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <vector>

#include "dispatch/candidate_selection.h"
#include "dispatch/config_selection.h"
#include "workloads/models.h"
#include "workloads/routing.h"

namespace ramp::dispatch {
namespace {

Candidate uniform(int32_t config, double a = 0, double b = 0, double c = 0, double d = 0) {
  Candidate candidate;
  candidate.kind = kCandidateUniform;
  candidate.config = config;
  candidate.a = a;
  candidate.b = b;
  candidate.c = c;
  candidate.d = d;
  return candidate;
}

Candidate mixed(double a = 0, double b = 0, double c = 0, double d = 0) {
  Candidate candidate = uniform(-1, a, b, c, d);
  candidate.kind = kCandidateMixed;
  return candidate;
}

// The worked example of candidates.h: N = 2048, 132 SMs, histogram {500, 40, 3}.
TEST(Candidates, FeaturesOfTheWorkedExample) {
  const std::vector<int32_t> histogram = {500, 40, 3};
  const CandidateFeatures u0 = candidate_features(uniform(0), histogram, 2048, 132);
  EXPECT_EQ(u0.token_blocks, 6);
  EXPECT_EQ(u0.tiles, 48);
  EXPECT_EQ(u0.waves, 1);
  const CandidateFeatures u5 = candidate_features(uniform(5), histogram, 2048, 132);
  EXPECT_EQ(u5.token_blocks, 69);
  EXPECT_EQ(u5.tiles, 1104);
  EXPECT_EQ(u5.waves, 9);
  const CandidateFeatures m = candidate_features(mixed(), histogram, 2048, 132);
  EXPECT_EQ(m.token_blocks, 6);
  EXPECT_EQ(m.tiles, 96);
  EXPECT_EQ(m.waves, 1);
  EXPECT_EQ(candidate_assignment(mixed(), histogram, 2048, 132), (std::vector<int32_t>{1, 2, 5}));
  EXPECT_EQ(candidate_assignment(uniform(3), histogram, 2048, 132),
            (std::vector<int32_t>{3, 3, 3}));
  // The mixed candidate is exactly the builtin rule.
  EXPECT_EQ(candidate_assignment(mixed(), histogram, 2048, 132),
            assign_builtin_configs(histogram, 2048, 132));
  // Two CTAs per SM halve the waves (rounded up).
  Candidate two = uniform(5);
  two.ctas_per_sm = 2;
  EXPECT_EQ(candidate_features(two, histogram, 2048, 132).waves, 5);
}

TEST(Candidates, SelectionIsTheArgminWithFirstOnTies) {
  const std::vector<int32_t> histogram = {500, 40, 3};
  CandidateTable table;
  table.count = 3;
  table.entries[0] = uniform(0, 10, 5);  // 10 + 5 * 1 = 15
  table.entries[1] = uniform(5, 2, 5);   // 2 + 5 * 9 = 47
  table.entries[2] = mixed(4, 5);        // 4 + 5 * 1 = 9
  EXPECT_EQ(select_candidate(table, histogram.data(), 3, 2048, 132), 2);
  table.entries[2].c = 1.0;  // + 6 token blocks: 15, a tie with entry 0, which comes first
  EXPECT_EQ(select_candidate(table, histogram.data(), 3, 2048, 132), 0);
  table.entries[2].c = 0.0;
  table.entries[2].d = 1.0;  // + log(7) = 1.95: 10.95 < 15
  EXPECT_NEAR(candidate_predict(table.entries[2],
                                candidate_features(mixed(), histogram, 2048, 132)),
              9.0 + std::log(7.0), 1e-12);
  EXPECT_EQ(select_candidate(table, histogram.data(), 3, 2048, 132), 2);
  CandidateTable empty;
  EXPECT_EQ(select_candidate(empty, histogram.data(), 3, 2048, 132), -1);
}

// candidates.h: a mix costs the launch once plus each config group as its uniform candidate.
TEST(Candidates, MixedIsPricedByComposingItsConfigGroups) {
  const std::vector<int32_t> histogram = {500, 40, 3};  // mixed -> configs 1, 2, 5
  CandidateTable table;
  for (int32_t c = 0; c < kNumBuiltinConfigs; ++c) {
    table.entries[table.count++] = uniform(c, /*a=*/c + 1.0, /*b=*/1.0, 0.0, 0.0);
    table.entries[table.count - 1].e = 1.0;
  }
  table.entries[table.count++] = mixed(100.0);
  const int32_t big = mixed_rule_big_tiles(kBuiltinConfigs, histogram.data(), 3, 2048);
  // Groups: config 1 (500 rows: 64 tiles, 1 wave, 1 expert) -> 1 + 1; config 2 (16 tiles) ->
  // 1 + 1; config 5 (16 tiles) -> 1 + 1; launch = the largest a among 1, 2, 5 = 6.
  EXPECT_DOUBLE_EQ(predict_table_entry(table, table.count - 1, histogram.data(),
                                       3, 2048, 132, big),
                   6.0 + 6.0);
  // Without uniform candidates for its configs, the mixed entry's own coefficients price it.
  CandidateTable alone;
  alone.entries[alone.count++] = mixed(100.0);
  EXPECT_DOUBLE_EQ(
      predict_table_entry(alone, 0, histogram.data(), 3, 2048, 132, big), 100.0);
}

// A fake GPU: each candidate's time is its own six-term model (plus 1% deterministic
// "noise"), so the fit must recover the model and the profile must select like it.
struct FakeDevice {
  GemmShape shape{64, 8, 2048, 2048};
  int32_t sms = 132;
  std::vector<Candidate> truth = [] {
    std::vector<Candidate> c = builtin_candidates();
    for (size_t i = 0; i < c.size(); ++i) {
      c[i].a = 5.0 + static_cast<double>(i);
      c[i].b = 20.0 + 3.0 * static_cast<double>(i);
      c[i].c = 0.05 * static_cast<double>(i + 1);
      c[i].d = 1.0;
      c[i].e = 2.0;
      c[i].f = 3.0;
    }
    return c;
  }();
  // Mixed launches cost what their config groups cost (candidates.h's composition rule).
  double time(int32_t c, std::span<const int32_t> histogram, int32_t h) const {
    const double noise = 1.0 + 0.01 * ((h * 7 + c * 3) % 3 - 1);
    CandidateTable table;
    for (const Candidate& candidate : truth) table.entries[table.count++] = candidate;
    const int32_t e = static_cast<int32_t>(histogram.size());
    return predict_table_entry(
               table, c, histogram.data(), e, shape.out_features, sms,
               mixed_rule_big_tiles(kBuiltinConfigs, histogram.data(), e, shape.out_features)) *
           noise;
  }
};

CandidateProfileRequest fake_request(const FakeDevice& device) {
  CandidateProfileRequest request;
  request.device = "Fake GPU";
  request.sm_count = device.sms;
  request.shape = device.shape;
  request.candidates = builtin_candidates();
  for (const int32_t tokens : {1, 8, 64, 256, 1024, 4096}) {
    for (const char* name : {"uniform", "zipf1.2", "hot"}) {
      workloads::RoutingSpec spec;
      EXPECT_TRUE(workloads::RoutingSpec::parse(name, &spec));
      request.histograms.push_back(
          workloads::generate_routing(spec, tokens, 64, 8, 1).histogram());
    }
  }
  return request;
}

TEST(CandidateProfile, FitsAFakeDeviceAndRoundTripsThroughJson) {
  const FakeDevice device;
  const CandidateProfileRequest request = fake_request(device);
  Profile profile;
  std::vector<std::vector<double>> measured;
  ASSERT_TRUE(build_candidate_profile(
      request,
      [&](int32_t c, int32_t h, double* us) {
        *us = device.time(c, request.histograms[static_cast<size_t>(h)], h);
        return Status::ok();
      },
      &profile, &measured));
  ASSERT_EQ(profile.candidates.size(), static_cast<size_t>(kNumBuiltinConfigs + 1));
  ASSERT_EQ(measured.size(), request.histograms.size());
  for (const CandidateProfileEntry& entry : profile.candidates) {
    if (entry.candidate.kind == kCandidateUniform) EXPECT_LT(entry.stats.rms_relative_error, 0.02);
    EXPECT_EQ(entry.stats.samples, static_cast<int32_t>(request.histograms.size()));
  }
  // The fitted profile picks the truly fastest candidate (or one within the noise).
  for (size_t h = 0; h < request.histograms.size(); ++h) {
    const int32_t chosen = profile.select_candidate(request.histograms[h]);
    double best = 1e30;
    for (size_t c = 0; c < profile.candidates.size(); ++c) {
      best = std::min(best, device.time(static_cast<int32_t>(c), request.histograms[h], 0));
    }
    EXPECT_LE(device.time(chosen, request.histograms[h], 0), best * 1.03) << "histogram " << h;
  }

  // JSON round trip, through a file and find_profile.
  Profile parsed;
  ASSERT_TRUE(Profile::from_json(profile.to_json(), &parsed));
  ASSERT_EQ(parsed.candidates.size(), profile.candidates.size());
  for (size_t c = 0; c < parsed.candidates.size(); ++c) {
    EXPECT_EQ(parsed.candidates[c].candidate.kind, profile.candidates[c].candidate.kind);
    EXPECT_EQ(parsed.candidates[c].candidate.config, profile.candidates[c].candidate.config);
    EXPECT_DOUBLE_EQ(parsed.candidates[c].candidate.b, profile.candidates[c].candidate.b);
    EXPECT_DOUBLE_EQ(parsed.candidates[c].candidate.e, profile.candidates[c].candidate.e);
    EXPECT_DOUBLE_EQ(parsed.candidates[c].candidate.f, profile.candidates[c].candidate.f);
    EXPECT_DOUBLE_EQ(parsed.candidates[c].stats.rms_relative_error,
                     profile.candidates[c].stats.rms_relative_error);
  }
  const std::string path =
      (std::filesystem::temp_directory_path() / "ramp_candidate_profile.json").string();
  ASSERT_TRUE(write_profiles(path, std::vector<Profile>{profile}));
  std::vector<Profile> loaded;
  ASSERT_TRUE(read_profiles(path, &loaded));
  std::remove(path.c_str());
  const Profile* found = find_profile(loaded, "Fake GPU", device.shape);
  ASSERT_NE(found, nullptr);
  EXPECT_EQ(found->select_candidate(request.histograms[5]),
            profile.select_candidate(request.histograms[5]));
  EXPECT_EQ(find_profile(loaded, "Other GPU", device.shape), nullptr);

  // choose_candidate: the profile for its device, the region fallback for any other.
  DeviceConstants constants = DeviceConstants::h100();
  constants.name = "Fake GPU";
  constants.sm_count = 132;
  const CandidateChoice from_profile =
      choose_candidate(loaded, device.shape, request.histograms[5], constants);
  EXPECT_TRUE(from_profile.from_profile);
  EXPECT_EQ(from_profile.index, profile.select_candidate(request.histograms[5]));
  constants.name = "Unknown GPU";
  const CandidateChoice fallback =
      choose_candidate(loaded, device.shape, request.histograms[5], constants);
  EXPECT_FALSE(fallback.from_profile);
  EXPECT_EQ(fallback.index, select_candidate_by_regions(builtin_candidates(), device.shape,
                                                        request.histograms[5], constants));
}

TEST(CandidateProfile, RejectsBadInput) {
  const FakeDevice device;
  CandidateProfileRequest request = fake_request(device);
  Profile profile;
  std::vector<std::vector<double>> table(request.histograms.size(),
                                         std::vector<double>(request.candidates.size() - 1, 1.0));
  EXPECT_FALSE(fit_candidate_profile(request, table, &profile));  // one column short
  request.histograms[0].pop_back();
  EXPECT_FALSE(fit_candidate_profile(request, table, &profile));
  json::Value bad = Profile().to_json();
  json::Value item;
  item.set("kind", "sideways");
  json::Value list = json::Value::array();
  list.push_back(item);
  bad.set("candidates", list);
  bad.set("sm_count", 132);
  json::Value shape;
  shape.set("E", 8).set("k", 2).set("N", 128).set("K", 64);
  bad.set("shape", shape);
  EXPECT_FALSE(Profile::from_json(bad, &profile));
}

// The worked example of candidate_selection.h: olmoe GEMM1 at T = 64 uniform-ish (8 rows each).
TEST(RegionFallback, WorkedExampleIsDramBoundAndPicksTheLeastCompute) {
  const GemmShape shape{64, 8, 2048, 2048};
  const DeviceConstants h100 = DeviceConstants::h100();
  const std::vector<int32_t> histogram(64, 8);
  const double dram_us = 2.0 * (64.0 * 2048 * 2048 + 512.0 * 4096) / (3020.0 * 1e3);
  EXPECT_NEAR(dram_us, 179.1, 0.5);
  for (const Candidate& c : builtin_candidates()) {
    // Never below the DRAM bound; exactly it for 128x256, 8-token tiles and the mix (the wide
    // 192/256-token swapped tiles pad 8 rows to 192+ and compute past it).
    const double estimate = region_estimate_us(c, shape, histogram, h100);
    EXPECT_GE(estimate, kRegionLaunchUs + dram_us - 1e-6) << candidate_name(c);
    if (c.kind == kCandidateMixed || c.config == 0 || c.config == 5) {
      EXPECT_NEAR(estimate, kRegionLaunchUs + dram_us, 1e-6) << candidate_name(c);
    }
  }
  // All tie on DRAM; the least compute is 8-token tiles (uniform 5, which the mix equals here).
  EXPECT_EQ(select_candidate_by_regions(builtin_candidates(), shape, histogram, h100), 5);
  // Nothing routed: only the launch.
  const std::vector<int32_t> empty(64, 0);
  EXPECT_DOUBLE_EQ(region_estimate_us(uniform(0), shape, empty, h100), kRegionLaunchUs);
}

TEST(RegionFallback, ComputeBoundPrefillAvoidsTinyTilesAndTiesGoToMixed) {
  const GemmShape shape{8, 2, 28672, 4096};  // mixtral-8x7b GEMM1
  const DeviceConstants h100 = DeviceConstants::h100();
  const std::vector<int32_t> histogram(8, 2048);
  const std::vector<Candidate> candidates = builtin_candidates();
  const double big = region_estimate_us(uniform(0), shape, histogram, h100);
  const double tiny = region_estimate_us(uniform(5), shape, histogram, h100);
  EXPECT_GT(tiny, 5.0 * big);  // 8-token tiles re-stream the weights 16x more often
  // Every expert is busy and 128x256 tiles fill the machine: the mixed rule is uniform 0, the
  // estimates tie exactly and the tie goes to the first in table order.
  EXPECT_DOUBLE_EQ(region_estimate_us(mixed(), shape, histogram, h100), big);
  const int32_t chosen = select_candidate_by_regions(candidates, shape, histogram, h100);
  EXPECT_TRUE(chosen == 0 || chosen == 1) << chosen;
  // Ties within kRegionTieFraction: reversed order still picks the least compute.
  const std::vector<Candidate> reversed = {candidates[5], candidates[0]};
  EXPECT_EQ(select_candidate_by_regions(reversed, shape, histogram, h100), 1);
  EXPECT_EQ(select_candidate_by_regions(std::vector<Candidate>{}, shape, histogram, h100), -1);
}

TEST(RoutingAwareConfigs, WithoutAProfileUseTheRegionFallback) {
  const GemmShape shape{64, 8, 2048, 2048};
  DeviceConstants device = DeviceConstants::h100();
  device.name = "No Such GPU";
  const std::vector<int32_t> histogram = {300, 0, 5, 40, 9, 17, 1, 2};
  const GemmShape small{8, 2, 2048, 2048};
  const int32_t index = select_candidate_by_regions(builtin_candidates(), small, histogram, device);
  EXPECT_EQ(assign_routing_aware_configs(small, histogram, device),
            candidate_assignment(builtin_candidates()[static_cast<size_t>(index)], histogram,
                                 2048, device.sm_count));
  (void)shape;
  // The planning path: kRoutingAwareConfigs builds a valid plan.
  MoeShape moe{8, 2, 2048, 1024};
  const std::vector<int32_t> ids = {0, 3, 3, 5, 0, 7, 2, 0};
  Plan plan;
  ASSERT_TRUE(build_layer_plan(moe, ids.data(), 4, ExpertOrder::kHalfInterval, 132,
                               kRoutingAwareConfigs, &plan));
  EXPECT_EQ(plan.num_gemms(), 2);
}

// The worked example of static_dispatch_choice, and its edges: the mixed candidate is never the
// static choice even when fastest; no uniform candidate -> -1.
TEST(Evaluation, StaticDispatchTakesTheFastestSingleConfig) {
  Candidate uniform0, uniform1, mixed;
  uniform0.config = 0;
  uniform1.config = 1;
  mixed.kind = kCandidateMixed;
  mixed.config = -1;
  const std::vector<Candidate> candidates = {uniform0, uniform1, mixed};
  EXPECT_EQ(static_dispatch_choice(candidates, std::vector<double>{30.0, 20.0, 15.0}), 1);
  EXPECT_EQ(static_dispatch_choice(candidates, std::vector<double>{10.0, 20.0, 15.0}), 0);
  const std::vector<Candidate> only_mixed = {mixed};
  EXPECT_EQ(static_dispatch_choice(only_mixed, std::vector<double>{1.0}), -1);
}

TEST(Evaluation, SummarisesASyntheticTable) {
  // 4 histograms x 3 candidates (column 2 = mixed).
  const std::vector<std::vector<double>> measured = {
      {10.0, 20.0, 11.0},  // best 0
      {30.0, 15.0, 15.0},  // best 1 (tie with 2)
      {40.0, 50.0, 20.0},  // best 2
      {10.0, 10.5, 12.0},  // best 0
  };
  const std::vector<int32_t> selected = {0, 2, 2, 1};          // regrets 0, 0, 0, 5%
  const std::vector<int32_t> fallback = {2, 2, 0, 0};          // 10%, 0, 100%, 0
  const std::vector<int32_t> static_choice = {0, 0, 0, 0};     // 0, 100%, 100%, 0
  const std::vector<int32_t> speedup_rows = {1, 2, 3};
  const SelectionEvaluation eval =
      evaluate_selection(measured, selected, fallback, static_choice, 2, speedup_rows);
  EXPECT_EQ(eval.selected.count, 4);
  EXPECT_NEAR(eval.selected.mean, 0.0125, 1e-12);
  EXPECT_NEAR(eval.selected.p95, 0.05, 1e-12);
  EXPECT_NEAR(eval.selected.max, 0.05, 1e-12);
  EXPECT_NEAR(eval.fallback.mean, 0.275, 1e-12);
  EXPECT_NEAR(eval.mixed.mean, (0.1 + 0.0 + 0.0 + 0.2) / 4, 1e-12);
  EXPECT_NEAR(eval.static_dispatch.mean, 0.5, 1e-12);
  // Speedups on rows 1..3: 30/15 = 2, 40/20 = 2, 10/10.5.
  EXPECT_EQ(eval.speedup_count, 3);
  EXPECT_NEAR(eval.speedup_geomean, std::cbrt(4.0 * 10.0 / 10.5), 1e-12);
  EXPECT_NEAR(eval.speedup_min, 10.0 / 10.5, 1e-12);
  EXPECT_DOUBLE_EQ(eval.speedup_max, 2.0);
  EXPECT_FALSE(eval.meets_regret);    // mean 1.25% > 1%
  EXPECT_FALSE(eval.meets_speedup);   // slower on row 3
  EXPECT_FALSE(eval.meets_fallback);  // 27.5% > 5%
  EvaluationTargets loose;
  loose.mean_regret = 0.02;
  loose.p95_regret = 0.051;
  loose.max_regret = 0.051;
  loose.speedup_min = 0.9;
  loose.fallback_mean_regret = 0.3;
  const SelectionEvaluation met =
      evaluate_selection(measured, selected, fallback, static_choice, 2, speedup_rows, loose);
  EXPECT_TRUE(met.meets_regret);
  EXPECT_TRUE(met.meets_speedup);
  EXPECT_TRUE(met.meets_fallback);
}

// Issue #4 ships an H100 profile for both GEMMs of every model in models.json; a re-profile that
// dropped a model, or fitted a candidate from nothing, would otherwise only show on the GPU as a
// silent fall back to the region estimate.
TEST(ShippedProfiles, CoverBothGemmsOfEveryModelOnTheH100) {
  const std::string h100 = "NVIDIA H100 80GB HBM3";
  for (const workloads::ModelShape& model : workloads::builtin_models()) {
    const MoeShape& m = model.shape;
    const GemmShape gemms[2] = {{m.num_experts, m.top_k, 2 * m.intermediate, m.hidden},
                                {m.num_experts, m.top_k, m.hidden, m.intermediate}};
    for (const GemmShape& gemm : gemms) {
      const Profile* profile = find_profile(shipped_profiles(), h100, gemm);
      ASSERT_NE(profile, nullptr) << model.name << " " << gemm.to_string();
      EXPECT_EQ(profile->sm_count, 132) << model.name;
      // One uniform candidate per builtin config and the mixed rule.
      ASSERT_EQ(profile->candidates.size(), static_cast<size_t>(kNumBuiltinConfigs + 1))
          << model.name << " " << gemm.to_string();
      for (const CandidateProfileEntry& entry : profile->candidates) {
        EXPECT_GT(entry.stats.samples, 0) << model.name;
        const Candidate& c = entry.candidate;
        for (const double coefficient : {c.a, c.b, c.c, c.d, c.e, c.f}) {
          EXPECT_TRUE(std::isfinite(coefficient) && coefficient >= 0.0) << model.name;
        }
        EXPECT_GT(c.a + c.b + c.c + c.d + c.e + c.f, 0.0) << model.name << ": predicts 0 us";
      }
    }
  }
}

}  // namespace
}  // namespace ramp::dispatch
