#include "workloads/routing.h"

#include <algorithm>
#include <cassert>
#include <charconv>
#include <cmath>
#include <numeric>

#include "workloads/rng.h"

namespace ramp::workloads {
namespace {

// Independent streams of one routing seed: changing how weights are drawn never changes ids.
constexpr uint64_t kIdStream = 1;
constexpr uint64_t kWeightStream = 2;

constexpr std::string_view kZipfPrefix = "zipf";

// Writes k distinct experts, uniformly chosen, into out[0..k): the first k steps of a
// Fisher–Yates shuffle of `pool`. The pool stays a permutation of all experts, so it can be
// reused for the next token without resetting.
void pick_distinct_uniform(Rng& rng, std::vector<int32_t>& pool, int32_t top_k, int32_t* out) {
  const auto pool_size = static_cast<uint64_t>(pool.size());
  for (int32_t j = 0; j < top_k; ++j) {
    const uint64_t chosen = static_cast<uint64_t>(j) + rng.uniform_int(pool_size - j);
    std::swap(pool[j], pool[chosen]);
    out[j] = pool[j];
  }
}

std::vector<int32_t> identity_permutation(int32_t num_experts) {
  std::vector<int32_t> experts(num_experts);
  std::iota(experts.begin(), experts.end(), 0);
  return experts;
}

void fill_balanced(Routing& routing) {
  const int64_t slots = static_cast<int64_t>(routing.num_tokens) * routing.top_k;
  for (int64_t slot = 0; slot < slots; ++slot) {
    routing.topk_ids[slot] = static_cast<int32_t>(slot % routing.num_experts);
  }
}

void fill_uniform(Routing& routing, Rng& rng) {
  std::vector<int32_t> pool = identity_permutation(routing.num_experts);
  for (int32_t token = 0; token < routing.num_tokens; ++token) {
    pick_distinct_uniform(rng, pool, routing.top_k,
                          routing.topk_ids.data() + static_cast<int64_t>(token) * routing.top_k);
  }
}

// Gumbel top-k: the k largest log p_e + Gumbel noise are a sample of k distinct experts without
// replacement, each draw proportional to p among those left. Normalising p is unnecessary (it
// shifts every key equally).
void fill_zipf(Routing& routing, Rng& rng, double exponent) {
  const int32_t num_experts = routing.num_experts;
  std::vector<int32_t> expert_by_rank = identity_permutation(num_experts);
  for (int32_t i = num_experts - 1; i > 0; --i) {
    std::swap(expert_by_rank[i], expert_by_rank[rng.uniform_int(static_cast<uint64_t>(i) + 1)]);
  }
  std::vector<double> log_popularity(num_experts);
  for (int32_t rank = 0; rank < num_experts; ++rank) {
    const double log_rank = reproducible_log(static_cast<double>(rank + 1));
    log_popularity[expert_by_rank[rank]] = -(exponent * log_rank);
  }

  std::vector<double> keys(num_experts);
  std::vector<int32_t> order(num_experts);
  for (int32_t token = 0; token < routing.num_tokens; ++token) {
    for (int32_t expert = 0; expert < num_experts; ++expert) {
      const double negative_log_u = -reproducible_log(rng.uniform_open_double());
      const double gumbel = -reproducible_log(negative_log_u);
      keys[expert] = log_popularity[expert] + gumbel;
    }
    std::iota(order.begin(), order.end(), 0);
    // Ties (practically impossible) go to the lower expert id, so the choice is a pure function
    // of the keys rather than of the sort implementation.
    std::partial_sort(order.begin(), order.begin() + routing.top_k, order.end(),
                      [&](int32_t a, int32_t b) {
                        return keys[a] != keys[b] ? keys[a] > keys[b] : a < b;
                      });
    std::copy_n(order.begin(), routing.top_k,
                routing.topk_ids.begin() + static_cast<int64_t>(token) * routing.top_k);
  }
}

std::vector<int32_t> pick_hot_experts(Routing& routing, Rng& rng) {
  std::vector<int32_t> pool = identity_permutation(routing.num_experts);
  std::vector<int32_t> hot(routing.top_k);
  pick_distinct_uniform(rng, pool, routing.top_k, hot.data());
  return hot;
}

void fill_hot(Routing& routing, const std::vector<int32_t>& hot) {
  for (int32_t token = 0; token < routing.num_tokens; ++token) {
    std::copy(hot.begin(), hot.end(),
              routing.topk_ids.begin() + static_cast<int64_t>(token) * routing.top_k);
  }
}

void fill_worst(Routing& routing, Rng& rng) {
  const std::vector<int32_t> hot = pick_hot_experts(routing, rng);
  fill_hot(routing, hot);
  std::vector<bool> is_hot(routing.num_experts, false);
  for (int32_t expert : hot) is_hot[expert] = true;
  int32_t token = 0;
  for (int32_t expert = 0; expert < routing.num_experts && token < routing.num_tokens; ++expert) {
    if (is_hot[expert]) continue;
    const int64_t first_slot_of_token = static_cast<int64_t>(token) * routing.top_k;
    routing.topk_ids[first_slot_of_token + routing.top_k - 1] = expert;
    ++token;
  }
}

void fill_weights(Routing& routing, uint64_t seed) {
  Rng rng(derive_seed(seed, kWeightStream));
  std::vector<double> raw(routing.top_k);
  for (int32_t token = 0; token < routing.num_tokens; ++token) {
    double sum = 0.0;
    for (double& weight : raw) {
      weight = rng.uniform_open_double();
      sum += weight;
    }
    float* token_weights =
        routing.topk_weights.data() + static_cast<int64_t>(token) * routing.top_k;
    for (int32_t j = 0; j < routing.top_k; ++j) {
      token_weights[j] = static_cast<float>(raw[j] / sum);
    }
  }
}

}  // namespace

bool RoutingSpec::parse(const std::string& name, RoutingSpec* spec) {
  RoutingSpec parsed;
  if (name == "balanced") {
    parsed.kind = RoutingKind::kBalanced;
  } else if (name == "uniform") {
    parsed.kind = RoutingKind::kUniform;
  } else if (name == "hot") {
    parsed.kind = RoutingKind::kHot;
  } else if (name == "worst") {
    parsed.kind = RoutingKind::kWorst;
  } else if (name.starts_with(kZipfPrefix)) {
    const char* first = name.data() + kZipfPrefix.size();
    const char* last = name.data() + name.size();
    double exponent = 0.0;
    // from_chars, unlike strtod, ignores the locale and rejects leading spaces and '+'.
    const auto [end, error] = std::from_chars(first, last, exponent);
    if (first == last || error != std::errc() || end != last) return false;
    if (!std::isfinite(exponent) || exponent < 0.0) return false;
    parsed.kind = RoutingKind::kZipf;
    parsed.zipf_exponent = exponent;
  } else {
    return false;
  }
  *spec = parsed;
  return true;
}

std::string RoutingSpec::name() const {
  switch (kind) {
    case RoutingKind::kBalanced: return "balanced";
    case RoutingKind::kUniform: return "uniform";
    case RoutingKind::kHot: return "hot";
    case RoutingKind::kWorst: return "worst";
    case RoutingKind::kZipf: {
      // Shortest text that parses back to the same double; "1" becomes "1.0" to match the
      // names used in models.json.
      char buffer[64];
      const auto [end, error] = std::to_chars(buffer, buffer + sizeof(buffer), zipf_exponent);
      std::string number = error == std::errc() ? std::string(buffer, end) : std::string("?");
      if (number.find_first_of(".eEn") == std::string::npos) number += ".0";
      return std::string(kZipfPrefix) + number;
    }
  }
  return "unknown";
}

std::vector<int32_t> Routing::histogram() const {
  std::vector<int32_t> slots_per_expert(num_experts, 0);
  for (int32_t expert : topk_ids) {
    assert(expert >= 0 && expert < num_experts);
    if (expert >= 0 && expert < num_experts) ++slots_per_expert[expert];
  }
  return slots_per_expert;
}

Routing generate_routing(const RoutingSpec& spec, int32_t num_tokens, int32_t num_experts,
                         int32_t top_k, uint64_t seed) {
  assert(num_tokens >= 0 && top_k >= 1 && top_k <= num_experts);
  Routing routing;
  if (num_tokens < 0 || top_k < 1 || top_k > num_experts) return routing;
  routing.num_tokens = num_tokens;
  routing.top_k = top_k;
  routing.num_experts = num_experts;
  const auto slots = static_cast<size_t>(num_tokens) * static_cast<size_t>(top_k);
  routing.topk_ids.assign(slots, 0);
  routing.topk_weights.assign(slots, 0.0f);

  Rng rng(derive_seed(seed, kIdStream));
  switch (spec.kind) {
    case RoutingKind::kBalanced: fill_balanced(routing); break;
    case RoutingKind::kUniform: fill_uniform(routing, rng); break;
    case RoutingKind::kZipf: fill_zipf(routing, rng, spec.zipf_exponent); break;
    case RoutingKind::kHot: fill_hot(routing, pick_hot_experts(routing, rng)); break;
    case RoutingKind::kWorst: fill_worst(routing, rng); break;
  }
  fill_weights(routing, seed);
  return routing;
}

const std::vector<std::string>& all_routing_names() {
  static const std::vector<std::string> names = {"balanced", "uniform", "zipf1.0",
                                                 "zipf1.5",  "hot",     "worst"};
  return names;
}

void fill_random_bf16(std::span<bf16> values, uint64_t seed, float scale) {
  Rng rng(seed);
  bool any_nonzero = false;
  for (bf16& value : values) {
    const double centred = 2.0 * rng.uniform_double() - 1.0;  // 2u is exact: no rounding to fuse
    value = bf16::from_float(static_cast<float>(centred * static_cast<double>(scale)));
    any_nonzero = any_nonzero || (value.bits & 0x7fffu) != 0;
  }
  // A zero buffer hides indexing bugs (every wrong row reads the same zeros), so even a
  // degenerate scale yields one visible value.
  if (!values.empty() && !any_nonzero) {
    values[0] = bf16::from_float(scale != 0.0f ? std::fabs(scale) : 1.0f);
    if ((values[0].bits & 0x7fffu) == 0) values[0] = bf16::from_float(1.0f);
  }
}

void fill_random_float(std::span<float> values, uint64_t seed, float lo, float hi) {
  Rng rng(seed);
  const double width = static_cast<double>(hi) - static_cast<double>(lo);
  for (float& value : values) {
    const double offset = width * rng.uniform_double();
    const double sample = static_cast<double>(lo) + offset;
    // Rounding to float can reach hi when the interval is narrow; keep the half-open promise.
    const float rounded = static_cast<float>(sample);
    value = rounded < hi ? rounded : std::nextafter(hi, lo);
  }
}

}  // namespace ramp::workloads
