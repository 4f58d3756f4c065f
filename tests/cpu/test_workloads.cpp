#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include <unistd.h>

#include "core/json.h"
#include "workloads/models.h"
#include "workloads/rng.h"
#include "workloads/routing.h"

namespace ramp::workloads {
namespace {

RoutingSpec spec_of(const std::string& name) {
  RoutingSpec spec;
  EXPECT_TRUE(RoutingSpec::parse(name, &spec)) << name;
  return spec;
}

Routing make(const std::string& name, int32_t tokens, int32_t experts, int32_t top_k,
             uint64_t seed = 1) {
  return generate_routing(spec_of(name), tokens, experts, top_k, seed);
}

// Properties every kind shares: sizes, ids in range, k distinct ids per token, weights positive
// and summing to 1 per token.
void expect_well_formed(const Routing& routing, const std::string& label) {
  const auto slots = static_cast<size_t>(routing.num_tokens) * routing.top_k;
  ASSERT_EQ(routing.topk_ids.size(), slots) << label;
  ASSERT_EQ(routing.topk_weights.size(), slots) << label;
  for (int32_t token = 0; token < routing.num_tokens; ++token) {
    std::set<int32_t> distinct;
    double weight_sum = 0.0;
    for (int32_t j = 0; j < routing.top_k; ++j) {
      const size_t slot = static_cast<size_t>(token) * routing.top_k + j;
      const int32_t expert = routing.topk_ids[slot];
      ASSERT_GE(expert, 0) << label << " slot " << slot;
      ASSERT_LT(expert, routing.num_experts) << label << " slot " << slot;
      distinct.insert(expert);
      ASSERT_GT(routing.topk_weights[slot], 0.0f) << label << " slot " << slot;
      weight_sum += routing.topk_weights[slot];
    }
    ASSERT_EQ(static_cast<int32_t>(distinct.size()), routing.top_k) << label << " token " << token;
    ASSERT_NEAR(weight_sum, 1.0, 1e-5) << label << " token " << token;
  }
}

double max_share(const Routing& routing) {
  const std::vector<int32_t> histogram = routing.histogram();
  return static_cast<double>(*std::max_element(histogram.begin(), histogram.end())) /
         static_cast<double>(routing.topk_ids.size());
}

TEST(Routing, EveryKindIsWellFormed) {
  const int32_t shapes[][3] = {{1, 8, 2}, {7, 64, 8}, {128, 64, 6}, {300, 128, 8}, {50, 4, 4},
                               {33, 16, 1}, {2048, 64, 8}};
  for (const std::string& name : all_routing_names()) {
    for (const auto& shape : shapes) {
      const Routing routing = make(name, shape[0], shape[1], shape[2], 99);
      expect_well_formed(routing, name + " T=" + std::to_string(shape[0]) +
                                      " E=" + std::to_string(shape[1]) +
                                      " k=" + std::to_string(shape[2]));
    }
  }
}

TEST(Routing, ZeroTokensGiveEmptyArrays) {
  for (const std::string& name : all_routing_names()) {
    const Routing routing = make(name, 0, 64, 8);
    EXPECT_TRUE(routing.topk_ids.empty()) << name;
    EXPECT_TRUE(routing.topk_weights.empty()) << name;
    EXPECT_EQ(routing.histogram(), std::vector<int32_t>(64, 0)) << name;
  }
}

TEST(Routing, BalancedHistogramIsExactWhenSlotsDivideEvenly) {
  const Routing routing = make("balanced", 32, 64, 8);
  EXPECT_EQ(routing.histogram(), std::vector<int32_t>(64, 4));
  EXPECT_EQ(routing.topk_ids[0], 0);
  EXPECT_EQ(routing.topk_ids[9], 9);
  EXPECT_EQ(routing.topk_ids[64], 0);

  // 5 * 6 = 30 slots over 8 experts: the first 30 mod 8 = 6 experts get one more.
  const std::vector<int32_t> uneven = make("balanced", 5, 8, 6).histogram();
  EXPECT_EQ(uneven, (std::vector<int32_t>{4, 4, 4, 4, 4, 4, 3, 3}));
}

TEST(Routing, HotUsesExactlyKExperts) {
  const Routing routing = make("hot", 1000, 64, 8, 5);
  const std::vector<int32_t> histogram = routing.histogram();
  EXPECT_EQ(std::count(histogram.begin(), histogram.end(), 1000), 8);
  EXPECT_EQ(std::count(histogram.begin(), histogram.end(), 0), 56);
  for (int32_t token = 1; token < routing.num_tokens; ++token) {
    EXPECT_TRUE(std::equal(routing.topk_ids.begin(), routing.topk_ids.begin() + 8,
                           routing.topk_ids.begin() + token * 8));
  }
}

TEST(Routing, WorstGivesEveryColdExpertExactlyOneToken) {
  const int32_t tokens = 4096, experts = 64, top_k = 8;
  const Routing routing = make("worst", tokens, experts, top_k, 11);
  const std::vector<int32_t> histogram = routing.histogram();
  const Routing hot = make("hot", tokens, experts, top_k, 11);
  const std::vector<int32_t> hot_histogram = hot.histogram();
  int32_t hot_experts = 0;
  for (int32_t expert = 0; expert < experts; ++expert) {
    if (hot_histogram[expert] > 0) {
      ++hot_experts;
      EXPECT_GE(histogram[expert], tokens - (experts - top_k)) << "hot expert " << expert;
    } else {
      EXPECT_EQ(histogram[expert], 1) << "cold expert " << expert;
    }
  }
  EXPECT_EQ(hot_experts, top_k);
  EXPECT_EQ(std::accumulate(histogram.begin(), histogram.end(), 0), tokens * top_k);
}

TEST(Routing, WorstEdgeCases) {
  // Fewer tokens than cold experts: only the first T cold experts get a token, and the last
  // hot expert, whose slot every token gave away, gets none.
  const std::vector<int32_t> few = make("worst", 10, 64, 8, 3).histogram();
  EXPECT_EQ(std::count(few.begin(), few.end(), 1), 10);
  EXPECT_EQ(std::count(few.begin(), few.end(), 10), 8 - 1);
  EXPECT_EQ(std::count(few.begin(), few.end(), 0), 64 - 10 - (8 - 1));
  // k == E: no cold experts, worst equals hot.
  EXPECT_EQ(make("worst", 20, 8, 8, 3).topk_ids, make("hot", 20, 8, 8, 3).topk_ids);
  // k == 1: the replaced tokens leave the hot expert entirely.
  const std::vector<int32_t> single = make("worst", 100, 16, 1, 3).histogram();
  EXPECT_EQ(std::count(single.begin(), single.end(), 1), 15);
  EXPECT_EQ(*std::max_element(single.begin(), single.end()), 100 - 15);
}

TEST(Routing, ZipfSkewGrowsWithTheExponent) {
  // k = 2 keeps the busiest expert far from the once-per-token cap of 1/k.
  const double uniform = max_share(make("uniform", 8192, 64, 2, 8));
  const double zipf_1_0 = max_share(make("zipf1.0", 8192, 64, 2, 8));
  const double zipf_1_5 = max_share(make("zipf1.5", 8192, 64, 2, 8));
  EXPECT_GT(zipf_1_0, 2.0 * uniform);
  EXPECT_GT(zipf_1_5, zipf_1_0 + 0.05);
  // zipf0 is uniform popularity.
  EXPECT_LT(max_share(make("zipf0.0", 8192, 64, 2, 8)), 1.5 / 64.0);
}

TEST(Routing, UniformLoadIsRoughlyEven) {
  const std::vector<int32_t> histogram = make("uniform", 8192, 64, 8, 4).histogram();
  // Expected 1024 per expert; the standard deviation is about 30.
  for (int32_t count : histogram) EXPECT_NEAR(count, 1024, 200);
}

TEST(Routing, SameSeedSameRoutingDifferentSeedDifferentRouting) {
  for (const std::string& name : all_routing_names()) {
    const Routing first = make(name, 256, 64, 8, 77);
    const Routing again = make(name, 256, 64, 8, 77);
    EXPECT_EQ(first.topk_ids, again.topk_ids) << name;
    EXPECT_EQ(first.topk_weights, again.topk_weights) << name;
    const Routing other = make(name, 256, 64, 8, 78);
    EXPECT_NE(first.topk_weights, other.topk_weights) << name;
    if (name != "balanced") {
      EXPECT_NE(first.topk_ids, other.topk_ids) << name;
    }
  }
}

// Pins the generators' exact output: if this changes, every stored profile, benchmark and
// golden file keyed by (kind, T, E, k, seed) silently changes meaning. Change it only on purpose.
TEST(Routing, GoldenIdsAreStableAcrossMachines) {
  const std::vector<std::pair<std::string, std::vector<int32_t>>> golden = {
      {"uniform", {59, 9, 45, 52, 50, 22, 12, 11, 14, 4, 36, 29, 9, 28, 46, 41}},
      {"zipf1.0", {51, 34, 50, 13, 50, 43, 48, 51, 17, 50, 51, 32, 34, 25, 29, 13}},
      {"zipf1.5", {51, 34, 13, 48, 50, 51, 48, 34, 51, 17, 50, 6, 34, 13, 25, 29}},
      {"hot", {59, 9, 45, 52, 59, 9, 45, 52, 59, 9, 45, 52, 59, 9, 45, 52}},
      {"worst", {59, 9, 45, 0, 59, 9, 45, 1, 59, 9, 45, 2, 59, 9, 45, 3}},
  };
  for (const auto& [name, ids] : golden) {
    EXPECT_EQ(make(name, 4, 64, 4, 12345).topk_ids, ids) << name;
  }
  const std::vector<float> weights = make("uniform", 1, 64, 4, 12345).topk_weights;
  EXPECT_EQ(weights, (std::vector<float>{0x1.672f96p-2f, 0x1.61442ep-2f, 0x1.46666p-3f,
                                          0x1.28b216p-3f}));
}

TEST(Rng, MatchesTheReferenceAlgorithms) {
  uint64_t state = 0;
  EXPECT_EQ(splitmix64_next(&state), 0xe220a8397b1dcdafull);  // published first output for 0
  Rng rng(0);
  EXPECT_EQ(rng.next_u64(), 11091344671253066420ull);
  EXPECT_EQ(rng.next_u64(), 13793997310169335082ull);
  EXPECT_EQ(rng.next_u64(), 1900383378846508768ull);
}

TEST(Rng, UniformIntCoversTheRangeWithoutBias) {
  Rng rng(3);
  std::vector<int> counts(7, 0);
  for (int i = 0; i < 70000; ++i) {
    const uint64_t value = rng.uniform_int(7);
    ASSERT_LT(value, 7u);
    ++counts[value];
  }
  for (int count : counts) EXPECT_NEAR(count, 10000, 500);
  EXPECT_EQ(rng.uniform_int(1), 0u);
  // A range just above 2^63 rejects almost half of all draws; it must still terminate.
  EXPECT_GE(rng.uniform_int((1ull << 63) + 1), 0u);
}

TEST(Rng, UniformDoublesStayInTheirIntervals) {
  Rng rng(5);
  for (int i = 0; i < 100000; ++i) {
    const double closed_open = rng.uniform_double();
    ASSERT_GE(closed_open, 0.0);
    ASSERT_LT(closed_open, 1.0);
    const double open = rng.uniform_open_double();
    ASSERT_GT(open, 0.0);
    ASSERT_LT(open, 1.0);
  }
}

TEST(Rng, ReproducibleLogAgreesWithStdLog) {
  const double values[] = {1e-300, 1e-20, 0x1.0p-53, 0.1, 0.5, 0.70710678, 0.9999999, 1.0,
                           1.0000001, 2.0, 3.0, 10.0, 64.0, 127.0, 1e20, 1e300};
  for (const double x : values) {
    EXPECT_NEAR(reproducible_log(x), std::log(x), 4e-16 * std::max(1.0, std::fabs(std::log(x))))
        << x;
  }
  EXPECT_EQ(reproducible_log(1.0), 0.0);
  EXPECT_EQ(reproducible_log(0.0), -INFINITY);
  EXPECT_TRUE(std::isnan(reproducible_log(-1.0)));
}

TEST(RoutingSpec, NamesRoundTrip) {
  for (const std::string& name : all_routing_names()) {
    EXPECT_EQ(spec_of(name).name(), name);
  }
  EXPECT_EQ(spec_of("zipf1").name(), "zipf1.0");
  EXPECT_EQ(spec_of("zipf0.75").name(), "zipf0.75");
  EXPECT_DOUBLE_EQ(spec_of("zipf2.25").zipf_exponent, 2.25);
  EXPECT_EQ(spec_of("zipf1.5").kind, RoutingKind::kZipf);
  EXPECT_EQ(spec_of("worst").kind, RoutingKind::kWorst);
  EXPECT_EQ(all_routing_names().size(), 6u);
}

TEST(RoutingSpec, RejectsUnknownNames) {
  for (const char* bad : {"", "zipf", "zipf-1", "zipf+1", "zipfnan", "zipfinf", "zipf1.5x",
                          "zipf 1", "Uniform", " hot", "worst ", "zipf1e999", "random"}) {
    RoutingSpec spec;
    spec.kind = RoutingKind::kHot;
    EXPECT_FALSE(RoutingSpec::parse(bad, &spec)) << bad;
    EXPECT_EQ(spec.kind, RoutingKind::kHot) << "spec changed by a rejected name: " << bad;
  }
}

TEST(FillRandom, Bf16IsBoundedDeterministicAndNeverAllZero) {
  std::vector<bf16> values(4096);
  fill_random_bf16(values, 9, 0.5f);
  float largest = 0.0f;
  bool any_negative = false;
  for (const bf16 value : values) {
    largest = std::max(largest, std::fabs(value.to_float()));
    any_negative = any_negative || value.to_float() < 0.0f;
  }
  EXPECT_LE(largest, 0.5f);
  EXPECT_GT(largest, 0.4f);
  EXPECT_TRUE(any_negative);

  std::vector<bf16> again(4096), other(4096);
  fill_random_bf16(again, 9, 0.5f);
  fill_random_bf16(other, 10, 0.5f);
  auto bits = [](const std::vector<bf16>& v) {
    std::vector<uint16_t> out;
    for (const bf16 x : v) out.push_back(x.bits);
    return out;
  };
  EXPECT_EQ(bits(values), bits(again));
  EXPECT_NE(bits(values), bits(other));

  std::vector<bf16> degenerate(16);
  fill_random_bf16(degenerate, 1, 0.0f);
  EXPECT_TRUE(std::any_of(degenerate.begin(), degenerate.end(),
                          [](bf16 x) { return x.to_float() != 0.0f; }));
}

TEST(FillRandom, FloatsStayInTheHalfOpenInterval) {
  std::vector<float> values(10000);
  fill_random_float(values, 4, -2.0f, 3.0f);
  for (const float value : values) {
    ASSERT_GE(value, -2.0f);
    ASSERT_LT(value, 3.0f);
  }
  EXPECT_LT(*std::min_element(values.begin(), values.end()), -1.9f);
  EXPECT_GT(*std::max_element(values.begin(), values.end()), 2.9f);
}

TEST(Models, BuiltinTableIsComplete) {
  EXPECT_EQ(builtin_models().size(), 7u);
  const ModelShape* model = find_model("qwen3-30b-a3b");
  ASSERT_NE(model, nullptr);
  EXPECT_EQ(model->shape.num_experts, 128);
  EXPECT_EQ(model->shape.top_k, 8);
  EXPECT_EQ(model->shape.hidden, 2048);
  EXPECT_EQ(model->shape.intermediate, 768);
  EXPECT_EQ(find_model("no-such-model"), nullptr);
  EXPECT_EQ(standard_token_counts(), (std::vector<int32_t>{1, 8, 32, 128, 512, 2048, 8192}));
}

TEST(Models, BuiltinTableMatchesSharedModelsJson) {
  const std::string path = std::string(RAMP_SHARED_DIR) + "/workloads/models.json";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " is absent";

  std::vector<ModelShape> loaded;
  const Status status = load_models_json(path, &loaded);
  ASSERT_TRUE(status.is_ok()) << status.to_string();
  ASSERT_EQ(loaded.size(), builtin_models().size());
  for (size_t i = 0; i < loaded.size(); ++i) {
    const MoeShape& file = loaded[i].shape;
    const MoeShape& builtin = builtin_models()[i].shape;
    EXPECT_EQ(loaded[i].name, builtin_models()[i].name);
    EXPECT_EQ(file.num_experts, builtin.num_experts) << loaded[i].name;
    EXPECT_EQ(file.top_k, builtin.top_k) << loaded[i].name;
    EXPECT_EQ(file.hidden, builtin.hidden) << loaded[i].name;
    EXPECT_EQ(file.intermediate, builtin.intermediate) << loaded[i].name;
  }

  json::Value document;
  ASSERT_TRUE(json::read_file(path, &document).is_ok());
  const json::Value* kernel = document.find("seed004_gemm");
  ASSERT_NE(kernel, nullptr);
  const KernelCase kernel_case = seed004_gemm_case();
  EXPECT_EQ(kernel->find("E")->as_int64(), kernel_case.E);
  EXPECT_EQ(kernel->find("k")->as_int64(), kernel_case.k);
  EXPECT_EQ(kernel->find("T")->as_int64(), kernel_case.T);
  EXPECT_EQ(kernel->find("N")->as_int64(), kernel_case.N);
  EXPECT_EQ(kernel->find("K")->as_int64(), kernel_case.K);
  std::vector<std::string> kernel_routings;
  for (const json::Value& name : kernel->find("routings")->as_array()) {
    kernel_routings.push_back(name.as_string());
  }
  EXPECT_EQ(kernel_routings, kernel_case.routings);

  std::vector<int32_t> tokens;
  for (const json::Value& count : document.find("tokens")->as_array()) {
    tokens.push_back(static_cast<int32_t>(count.as_int64()));
  }
  EXPECT_EQ(tokens, standard_token_counts());
  std::vector<std::string> routings;
  for (const json::Value& name : document.find("routings")->as_array()) {
    routings.push_back(name.as_string());
  }
  EXPECT_EQ(routings, all_routing_names());
}

class ModelsJsonErrors : public ::testing::Test {
 protected:
  void TearDown() override { std::filesystem::remove(path_); }

  std::string load_error(const std::string& contents) {
    std::ofstream(path_) << contents;
    std::vector<ModelShape> models;
    const Status status = load_models_json(path_, &models);
    EXPECT_FALSE(status.is_ok()) << contents;
    return status.message();
  }

  std::string path_ = (std::filesystem::temp_directory_path() /
                       ("ramp_models_test_" + std::to_string(::getpid()) + ".json"))
                          .string();
};

TEST_F(ModelsJsonErrors, NameTheFileModelAndField) {
  EXPECT_EQ(load_error(R"({"tokens": []})"), path_ + ": missing the \"models\" object");
  EXPECT_EQ(load_error(R"({"models": []})"), path_ + ": \"models\" must be an object, got array");
  EXPECT_EQ(load_error(R"({"models": {"m": {"E": 8, "k": 2, "H": 64}}})"),
            path_ + ": model \"m\": missing field \"I\"");
  EXPECT_EQ(load_error(R"({"models": {"m": {"E": 8, "k": "2", "H": 64, "I": 64}}})"),
            path_ + ": model \"m\": field \"k\" must be an integer, got \"2\"");
  EXPECT_EQ(load_error(R"({"models": {"m": {"E": 8, "k": 2, "H": -64, "I": 64}}})"),
            path_ + ": model \"m\": field \"H\" = -64 must be a positive 32-bit integer");
  EXPECT_EQ(load_error(R"({"models": {"m": {"E": 8, "k": 9, "H": 64, "I": 64}}})"),
            path_ + ": model \"m\": k = 9 exceeds E = 8");
  EXPECT_EQ(load_error(R"({"models": {"m": 3}})"),
            path_ + ": model \"m\" must be an object, got number");
  EXPECT_EQ(load_error("{\"models\": {,}}"),
            path_ + ": line 1, column 13: expected a string key in the object");
}

}  // namespace
}  // namespace ramp::workloads
