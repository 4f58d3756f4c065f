#include "dispatch/candidate_selection.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "core/json.h"
#include "dispatch/builtin_configs.h"

namespace ramp::dispatch {

// Defined in the generated shipped_profiles_data.cpp (CMake embeds profiles/h100.json).
extern const char* const kShippedProfilesJson;

std::vector<Candidate> builtin_candidates() {
  std::vector<Candidate> candidates;
  for (int32_t c = 0; c < kNumBuiltinConfigs; ++c) {
    Candidate candidate;
    candidate.kind = kCandidateUniform;
    candidate.config = c;
    candidates.push_back(candidate);
  }
  Candidate mixed;
  mixed.kind = kCandidateMixed;
  mixed.config = -1;
  candidates.push_back(mixed);
  return candidates;
}

std::string candidate_name(const Candidate& candidate) {
  if (candidate.kind == kCandidateMixed) return "mixed";
  const TileConfig& config = kBuiltinConfigs[candidate.config];
  char text[64];
  std::snprintf(text, sizeof(text), "uniform %d (%s %dx%d)", candidate.config,
                config.orientation == Orientation::kSwapped ? "swapped" : "normal",
                config.token_tile, config.feature_tile);
  return text;
}

std::vector<int32_t> candidate_assignment(const Candidate& candidate,
                                          std::span<const int32_t> histogram,
                                          int32_t out_features, int32_t num_sms) {
  const int32_t num_experts = static_cast<int32_t>(histogram.size());
  const int32_t big =
      mixed_rule_big_tiles(kBuiltinConfigs, histogram.data(), num_experts, out_features);
  std::vector<int32_t> configs(histogram.size());
  for (size_t e = 0; e < histogram.size(); ++e) {
    configs[e] = candidate_config_of_expert(candidate, histogram[e], big, num_sms);
  }
  return configs;
}

CandidateFeatures candidate_features(const Candidate& candidate,
                                     std::span<const int32_t> histogram, int32_t out_features,
                                     int32_t num_sms) {
  const int32_t num_experts = static_cast<int32_t>(histogram.size());
  const int32_t big =
      mixed_rule_big_tiles(kBuiltinConfigs, histogram.data(), num_experts, out_features);
  return candidate_features(candidate, kBuiltinConfigs, histogram.data(), num_experts,
                            out_features, num_sms, big);
}

// ---------------------------------------------------------------------------------------------
// Fitting

namespace {

// NNLS fit of a, b, c, d, e, f to (features, microseconds), relative error (fit_relative_nnls,
// as fit_cost_model does for the four-term model).
Status fit_candidate(const std::vector<CandidateFeatures>& features,
                     const std::vector<double>& times, Candidate* candidate, FitStats* stats) {
  constexpr int32_t kTerms = 6;
  std::vector<double> terms;
  terms.reserve(features.size() * kTerms);
  for (const CandidateFeatures& f : features) {
    const double g = static_cast<double>(f.token_blocks);
    const double active = static_cast<double>(f.active_experts);
    terms.insert(terms.end(), {1.0, static_cast<double>(f.waves), g, std::log(g + 1.0), active,
                               std::log(active + 1.0)});
  }
  std::vector<double> x;
  RAMP_TRY(fit_relative_nnls(terms, kTerms, times, &x));
  candidate->a = x[0];
  candidate->b = x[1];
  candidate->c = x[2];
  candidate->d = x[3];
  candidate->e = x[4];
  candidate->f = x[5];
  std::vector<double> predicted;
  predicted.reserve(features.size());
  for (const CandidateFeatures& f : features) predicted.push_back(candidate_predict(*candidate, f));
  *stats = relative_fit_stats(predicted, times);
  return Status::ok();
}

Status check_request(const CandidateProfileRequest& request) {
  if (request.sm_count <= 0) return {ErrorCode::kInvalidArgument, "sm_count must be positive"};
  if (request.histograms.empty()) return {ErrorCode::kInvalidArgument, "no histograms"};
  if (request.candidates.empty() ||
      request.candidates.size() > static_cast<size_t>(kMaxCandidates)) {
    return {ErrorCode::kInvalidArgument,
            "between 1 and " + std::to_string(kMaxCandidates) + " candidates are needed"};
  }
  for (size_t h = 0; h < request.histograms.size(); ++h) {
    if (request.histograms[h].size() != static_cast<size_t>(request.shape.num_experts)) {
      return {ErrorCode::kShapeMismatch, "histogram " + std::to_string(h) + " has " +
                                             std::to_string(request.histograms[h].size()) +
                                             " experts, the shape " +
                                             std::to_string(request.shape.num_experts)};
    }
  }
  return Status::ok();
}

}  // namespace

Status fit_candidate_profile(const CandidateProfileRequest& request,
                             const std::vector<std::vector<double>>& measured, Profile* profile) {
  RAMP_TRY(check_request(request));
  if (measured.size() != request.histograms.size()) {
    return {ErrorCode::kShapeMismatch, "measured has " + std::to_string(measured.size()) +
                                           " rows, expected " +
                                           std::to_string(request.histograms.size())};
  }
  Profile result;
  result.device = request.device;
  result.sm_count = request.sm_count;
  result.shape = request.shape;
  for (size_t c = 0; c < request.candidates.size(); ++c) {
    CandidateProfileEntry entry;
    entry.candidate = request.candidates[c];
    std::vector<CandidateFeatures> features;
    std::vector<double> times;
    for (size_t h = 0; h < request.histograms.size(); ++h) {
      if (measured[h].size() != request.candidates.size()) {
        return {ErrorCode::kShapeMismatch, "measured row " + std::to_string(h) + " has " +
                                               std::to_string(measured[h].size()) + " columns"};
      }
      features.push_back(candidate_features(entry.candidate, request.histograms[h],
                                            request.shape.out_features, request.sm_count));
      times.push_back(measured[h][c]);
    }
    Status status = fit_candidate(features, times, &entry.candidate, &entry.stats);
    if (!status) {
      return Status(status.code(), candidate_name(entry.candidate) + ": " + status.message());
    }
    result.candidates.push_back(entry);
  }
  *profile = std::move(result);
  return Status::ok();
}

Status build_candidate_profile(const CandidateProfileRequest& request,
                               const CandidateMeasureFn& measure, Profile* profile,
                               std::vector<std::vector<double>>* measured) {
  RAMP_TRY(check_request(request));
  std::vector<std::vector<double>> table(request.histograms.size(),
                                         std::vector<double>(request.candidates.size(), 0.0));
  for (size_t h = 0; h < request.histograms.size(); ++h) {
    for (size_t c = 0; c < request.candidates.size(); ++c) {
      Status status = measure(static_cast<int32_t>(c), static_cast<int32_t>(h), &table[h][c]);
      if (!status) {
        return Status(status.code(), candidate_name(request.candidates[c]) + ", histogram " +
                                         std::to_string(h) + ": " + status.message());
      }
    }
  }
  RAMP_TRY(fit_candidate_profile(request, table, profile));
  if (measured != nullptr) *measured = std::move(table);
  return Status::ok();
}

// ---------------------------------------------------------------------------------------------
// Region fallback

namespace {

struct RegionEstimate {
  double total_us = 0.0;    // kRegionLaunchUs + max(compute, DRAM)
  double compute_us = 0.0;  // whole waves x mean tile time
};

RegionEstimate region_estimate(const Candidate& candidate, const GemmShape& shape,
                               std::span<const int32_t> histogram, const DeviceConstants& device) {
  const std::vector<int32_t> configs =
      candidate_assignment(candidate, histogram, shape.out_features, device.sm_count);
  const double sm_count = std::max(1, device.sm_count);
  const double flops_per_us = device.tensor_tflops * 1e6 / sm_count;            // per SM
  const double feed_bytes_per_us = kL2FeedRatio * device.copy_gbps * 1e3 / sm_count;  // per SM
  const double k = shape.in_features;
  double tile_us_sum = 0.0;
  int64_t tiles = 0;
  int64_t slots = 0;
  int32_t active = 0;
  for (size_t e = 0; e < histogram.size(); ++e) {
    const int32_t rows = histogram[e];
    if (rows <= 0) continue;
    const TileConfig& config = kBuiltinConfigs[configs[e]];
    const int64_t expert_tiles = config.tiles(rows, shape.out_features);
    const double flops = 2.0 * config.token_tile * config.feature_tile * k / config.split_k;
    const double bytes = 2.0 * (config.token_tile + config.feature_tile) * k / config.split_k;
    tile_us_sum += static_cast<double>(expert_tiles) *
                   std::max(flops / flops_per_us, bytes / feed_bytes_per_us);
    tiles += expert_tiles;
    slots += rows;
    ++active;
  }
  if (tiles == 0) return {kRegionLaunchUs, 0.0};
  const int64_t concurrent = static_cast<int64_t>(sm_count) * std::max(1, candidate.ctas_per_sm);
  const double waves = static_cast<double>((tiles + concurrent - 1) / concurrent);
  const double compute_us = waves * tile_us_sum / static_cast<double>(tiles);
  const double dram_bytes =
      2.0 * (static_cast<double>(active) * shape.out_features * k +
             static_cast<double>(slots) * (k + shape.out_features));
  const double dram_us = dram_bytes / (device.copy_gbps * 1e3);
  return {kRegionLaunchUs + std::max(compute_us, dram_us), compute_us};
}

}  // namespace

double region_estimate_us(const Candidate& candidate, const GemmShape& shape,
                          std::span<const int32_t> histogram, const DeviceConstants& device) {
  return region_estimate(candidate, shape, histogram, device).total_us;
}

int32_t select_candidate_by_regions(std::span<const Candidate> candidates, const GemmShape& shape,
                                    std::span<const int32_t> histogram,
                                    const DeviceConstants& device) {
  std::vector<RegionEstimate> estimates(candidates.size());
  double best_total = 0.0;
  for (size_t i = 0; i < candidates.size(); ++i) {
    estimates[i] = region_estimate(candidates[i], shape, histogram, device);
    if (i == 0 || estimates[i].total_us < best_total) best_total = estimates[i].total_us;
  }
  // Among the estimates within kRegionTieFraction of the best (a DRAM-bound launch ties every
  // candidate), the least compute wins, then table order.
  int32_t best = -1;
  for (size_t i = 0; i < candidates.size(); ++i) {
    if (estimates[i].total_us > best_total * (1.0 + kRegionTieFraction)) continue;
    if (best < 0 || estimates[i].compute_us < estimates[static_cast<size_t>(best)].compute_us) {
      best = static_cast<int32_t>(i);
    }
  }
  return best;
}

// ---------------------------------------------------------------------------------------------
// Shipped profiles and selection

const std::vector<Profile>& shipped_profiles() {
  static const std::vector<Profile> profiles = [] {
    std::vector<Profile> parsed;
    json::Value document;
    if (!json::parse(kShippedProfilesJson, &document)) return parsed;
    const json::Value* list = document.find("profiles");
    if (list == nullptr || !list->is_array()) return parsed;
    for (const json::Value& item : list->as_array()) {
      Profile profile;
      if (Profile::from_json(item, &profile) && !profile.candidates.empty()) {
        parsed.push_back(std::move(profile));
      }
    }
    return parsed;
  }();
  return profiles;
}

CandidateChoice choose_candidate(std::span<const Profile> profiles, const GemmShape& shape,
                                 std::span<const int32_t> histogram,
                                 const DeviceConstants& device) {
  CandidateChoice choice;
  const Profile* profile = find_profile(profiles, device.name, shape);
  if (profile != nullptr && !profile->candidates.empty()) {
    choice.index = profile->select_candidate(histogram);
    if (choice.index >= 0) {
      choice.candidate = profile->candidates[static_cast<size_t>(choice.index)].candidate;
      choice.from_profile = true;
      return choice;
    }
  }
  const std::vector<Candidate> candidates = builtin_candidates();
  choice.index = select_candidate_by_regions(candidates, shape, histogram, device);
  choice.candidate = candidates[static_cast<size_t>(choice.index)];
  return choice;
}

// ---------------------------------------------------------------------------------------------
// Evaluation

int32_t static_dispatch_choice(std::span<const Candidate> candidates,
                               std::span<const double> uniform_times) {
  int32_t best = -1;
  const size_t count = std::min(candidates.size(), uniform_times.size());
  for (size_t c = 0; c < count; ++c) {
    if (candidates[c].kind != kCandidateUniform) continue;
    if (best < 0 || uniform_times[c] < uniform_times[static_cast<size_t>(best)]) {
      best = static_cast<int32_t>(c);
    }
  }
  return best;
}

SelectionEvaluation evaluate_selection(const std::vector<std::vector<double>>& measured,
                                       std::span<const int32_t> selected,
                                       std::span<const int32_t> fallback,
                                       std::span<const int32_t> static_choice,
                                       int32_t mixed_index,
                                       std::span<const int32_t> speedup_rows,
                                       const EvaluationTargets& targets) {
  SelectionEvaluation result;
  result.selected = summarize_regret(selection_regrets(measured, selected));
  result.fallback = summarize_regret(selection_regrets(measured, fallback));
  result.static_dispatch = summarize_regret(selection_regrets(measured, static_choice));
  if (mixed_index >= 0) {
    const std::vector<int32_t> mixed(measured.size(), mixed_index);
    result.mixed = summarize_regret(selection_regrets(measured, mixed));
  }
  std::vector<double> speedups;
  for (const int32_t h : speedup_rows) {
    const std::vector<double>& row = measured[static_cast<size_t>(h)];
    speedups.push_back(row[static_cast<size_t>(static_choice[static_cast<size_t>(h)])] /
                       row[static_cast<size_t>(selected[static_cast<size_t>(h)])]);
  }
  result.speedup_count = static_cast<int32_t>(speedups.size());
  if (!speedups.empty()) {
    result.speedup_geomean = geometric_mean(speedups);
    result.speedup_min = *std::min_element(speedups.begin(), speedups.end());
    result.speedup_max = *std::max_element(speedups.begin(), speedups.end());
  }
  result.meets_regret = result.selected.mean <= targets.mean_regret &&
                        result.selected.p95 <= targets.p95_regret &&
                        result.selected.max <= targets.max_regret;
  result.meets_speedup = !speedups.empty() && result.speedup_geomean >= targets.speedup_geomean &&
                         result.speedup_min >= targets.speedup_min;
  result.meets_fallback = result.fallback.mean <= targets.fallback_mean_regret;
  return result;
}

}  // namespace ramp::dispatch
