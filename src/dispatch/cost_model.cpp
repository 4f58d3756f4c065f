#include "dispatch/cost_model.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace ramp::dispatch {

// ---------------------------------------------------------------------------------------------
// Features and prediction

WaveFeatures wave_features(const TileConfig& config, std::span<const int32_t> histogram,
                           int32_t out_features, int32_t concurrent_ctas) {
  int64_t token_blocks = 0;
  for (const int32_t rows : histogram) token_blocks += config.token_blocks(rows);
  const int64_t tiles = token_blocks * config.tiles_per_token_block(out_features);
  WaveFeatures features;
  features.token_blocks = static_cast<double>(token_blocks);
  features.tiles = static_cast<double>(tiles);
  features.waves = static_cast<double>(ceil_div64(tiles, std::max(1, concurrent_ctas)));
  return features;
}

std::array<double, kCostTerms> cost_terms(const WaveFeatures& features) {
  return {1.0, features.waves, features.token_blocks, std::log(features.token_blocks + 1.0)};
}

double CostCoefficients::predict(const WaveFeatures& features) const {
  const std::array<double, kCostTerms> terms = cost_terms(features);
  return a * terms[0] + b * terms[1] + c * terms[2] + d * terms[3];
}

// ---------------------------------------------------------------------------------------------
// NNLS

namespace {

// Column-major dense matrix, small enough that clarity beats blocking.
struct Matrix {
  int32_t rows = 0, cols = 0;
  std::vector<double> values;
  double& at(int32_t r, int32_t c) { return values[static_cast<size_t>(c) * rows + r]; }
  double at(int32_t r, int32_t c) const { return values[static_cast<size_t>(c) * rows + r]; }
};

// Relative size of a QR diagonal below which a column counts as a combination of the
// columns before it (unit-norm columns: |R_00| is about 1).
constexpr double kRankTolerance = 1e-9;

// Least squares on the given columns of `a` by Householder QR with column pivoting. Columns
// found dependent get 0, so exactly collinear columns split nothing between them.
std::vector<double> least_squares(const Matrix& a, const std::vector<int32_t>& columns,
                                  std::span<const double> b) {
  const int32_t m = a.rows;
  const int32_t p = static_cast<int32_t>(columns.size());
  Matrix r{m, p, std::vector<double>(static_cast<size_t>(m) * p)};
  for (int32_t j = 0; j < p; ++j) {
    for (int32_t i = 0; i < m; ++i) r.at(i, j) = a.at(i, columns[j]);
  }
  std::vector<double> qtb(b.begin(), b.end());
  std::vector<int32_t> order(p);
  std::iota(order.begin(), order.end(), 0);

  int32_t rank = 0;
  double first_diagonal = 0.0;
  for (int32_t k = 0; k < std::min(m, p); ++k) {
    // Pivot: the remaining column with the largest norm below row k.
    int32_t pivot = k;
    double pivot_norm = -1.0;
    for (int32_t j = k; j < p; ++j) {
      double norm = 0.0;
      for (int32_t i = k; i < m; ++i) norm += r.at(i, j) * r.at(i, j);
      if (norm > pivot_norm) {
        pivot_norm = norm;
        pivot = j;
      }
    }
    if (pivot != k) {
      for (int32_t i = 0; i < m; ++i) std::swap(r.at(i, k), r.at(i, pivot));
      std::swap(order[k], order[pivot]);
    }
    const double alpha = std::sqrt(pivot_norm);
    if (k == 0) first_diagonal = alpha;
    if (alpha == 0.0 || alpha <= kRankTolerance * first_diagonal) break;
    // Householder reflection v = x + sign(x0) |x| e0 zeroes column k below the diagonal.
    const double sign = r.at(k, k) >= 0.0 ? 1.0 : -1.0;
    std::vector<double> v(static_cast<size_t>(m - k));
    for (int32_t i = k; i < m; ++i) v[static_cast<size_t>(i - k)] = r.at(i, k);
    v[0] += sign * alpha;
    const double v_norm2 = std::inner_product(v.begin(), v.end(), v.begin(), 0.0);
    auto reflect = [&](auto&& element) {
      double dot = 0.0;
      for (int32_t i = k; i < m; ++i) dot += v[static_cast<size_t>(i - k)] * element(i);
      const double scale = 2.0 * dot / v_norm2;
      for (int32_t i = k; i < m; ++i) element(i) -= scale * v[static_cast<size_t>(i - k)];
    };
    for (int32_t j = k; j < p; ++j) reflect([&](int32_t i) -> double& { return r.at(i, j); });
    reflect([&](int32_t i) -> double& { return qtb[static_cast<size_t>(i)]; });
    rank = k + 1;
  }

  std::vector<double> y(static_cast<size_t>(rank), 0.0);
  for (int32_t i = rank - 1; i >= 0; --i) {
    double sum = qtb[static_cast<size_t>(i)];
    for (int32_t j = i + 1; j < rank; ++j) sum -= r.at(i, j) * y[static_cast<size_t>(j)];
    y[static_cast<size_t>(i)] = sum / r.at(i, i);
  }
  std::vector<double> z(static_cast<size_t>(p), 0.0);
  for (int32_t i = 0; i < rank; ++i) z[static_cast<size_t>(order[i])] = y[static_cast<size_t>(i)];
  return z;
}

// w = A^T (b - A x): the negative gradient of 0.5 ||Ax - b||^2.
std::vector<double> negative_gradient(const Matrix& a, std::span<const double> b,
                                      const std::vector<double>& x) {
  std::vector<double> residual(b.begin(), b.end());
  for (int32_t j = 0; j < a.cols; ++j) {
    if (x[static_cast<size_t>(j)] == 0.0) continue;
    for (int32_t i = 0; i < a.rows; ++i) residual[static_cast<size_t>(i)] -= a.at(i, j) * x[static_cast<size_t>(j)];
  }
  std::vector<double> w(static_cast<size_t>(a.cols), 0.0);
  for (int32_t j = 0; j < a.cols; ++j) {
    for (int32_t i = 0; i < a.rows; ++i) w[static_cast<size_t>(j)] += a.at(i, j) * residual[static_cast<size_t>(i)];
  }
  return w;
}

}  // namespace

NnlsResult solve_nnls(std::span<const double> a_row_major, int32_t rows, int32_t cols,
                      std::span<const double> b) {
  NnlsResult result;
  result.x.assign(static_cast<size_t>(std::max(cols, 0)), 0.0);
  if (rows <= 0 || cols <= 0) {
    result.converged = true;
    return result;
  }

  Matrix a{rows, cols, std::vector<double>(static_cast<size_t>(rows) * cols)};
  std::vector<double> scale(static_cast<size_t>(cols), 0.0);
  for (int32_t j = 0; j < cols; ++j) {
    double norm2 = 0.0;
    for (int32_t i = 0; i < rows; ++i) {
      const double value = a_row_major[static_cast<size_t>(i) * cols + j];
      a.at(i, j) = value;
      norm2 += value * value;
    }
    scale[static_cast<size_t>(j)] = std::sqrt(norm2);
    if (norm2 > 0.0) {
      for (int32_t i = 0; i < rows; ++i) a.at(i, j) /= scale[static_cast<size_t>(j)];
    }
  }

  double b_norm = 0.0;
  for (const double value : b) b_norm += value * value;
  b_norm = std::sqrt(b_norm);
  // With unit columns |w_j| <= ||r|| <= ||b||; below this w_j is rounding, not descent.
  const double tolerance =
      10.0 * std::numeric_limits<double>::epsilon() * std::max(rows, cols) * std::max(1.0, b_norm);

  std::vector<double>& x = result.x;
  std::vector<bool> passive(static_cast<size_t>(cols), false);
  // Columns that failed to enter at the current x (their unconstrained step came out <= 0
  // because of rounding); retried once x changes. Without this a column can bounce forever.
  std::vector<bool> blocked(static_cast<size_t>(cols), false);
  const int32_t max_outer = 3 * cols + 10;
  std::vector<double> w = negative_gradient(a, b, x);

  for (;;) {
    int32_t enter = -1;
    for (int32_t j = 0; j < cols; ++j) {
      const size_t sj = static_cast<size_t>(j);
      if (passive[sj] || blocked[sj] || scale[sj] == 0.0) continue;
      if (w[sj] > tolerance && (enter < 0 || w[sj] > w[static_cast<size_t>(enter)])) enter = j;
    }
    if (enter < 0) {
      result.converged = true;
      break;
    }
    if (result.iterations >= max_outer) break;
    ++result.iterations;
    passive[static_cast<size_t>(enter)] = true;

    bool first_step = true;
    bool x_changed = false;
    for (int32_t inner = 0; inner < 3 * cols + 10; ++inner) {
      std::vector<int32_t> free_columns;
      for (int32_t j = 0; j < cols; ++j) {
        if (passive[static_cast<size_t>(j)]) free_columns.push_back(j);
      }
      const std::vector<double> solution = least_squares(a, free_columns, b);
      std::vector<double> z(static_cast<size_t>(cols), 0.0);
      bool feasible = true;
      for (size_t i = 0; i < free_columns.size(); ++i) {
        z[static_cast<size_t>(free_columns[i])] = solution[i];
        if (solution[i] <= 0.0) feasible = false;
      }
      if (feasible) {
        x = z;
        x_changed = true;
        break;
      }
      if (first_step && z[static_cast<size_t>(enter)] <= 0.0) {
        passive[static_cast<size_t>(enter)] = false;
        blocked[static_cast<size_t>(enter)] = true;
        break;
      }
      first_step = false;
      // Step from x toward z until the first free coordinate reaches 0, then pin it there.
      double alpha = 1.0;
      int32_t leaving = -1;
      for (const int32_t j : free_columns) {
        const size_t sj = static_cast<size_t>(j);
        if (z[sj] > 0.0) continue;
        const double step = x[sj] / (x[sj] - z[sj]);
        if (leaving < 0 || step < alpha) {
          alpha = step;
          leaving = j;
        }
      }
      double largest = 0.0;
      for (const int32_t j : free_columns) {
        const size_t sj = static_cast<size_t>(j);
        x[sj] += alpha * (z[sj] - x[sj]);
        largest = std::max(largest, std::fabs(x[sj]));
      }
      x_changed = true;
      for (const int32_t j : free_columns) {
        const size_t sj = static_cast<size_t>(j);
        if (j == leaving || x[sj] <= 10.0 * std::numeric_limits<double>::epsilon() * largest) {
          x[sj] = 0.0;
          passive[sj] = false;
        }
      }
    }
    if (x_changed) std::fill(blocked.begin(), blocked.end(), false);
    w = negative_gradient(a, b, x);
  }

  for (int32_t j = 0; j < cols; ++j) {
    const size_t sj = static_cast<size_t>(j);
    x[sj] = scale[sj] > 0.0 ? x[sj] / scale[sj] : 0.0;
  }
  double residual2 = 0.0;
  for (int32_t i = 0; i < rows; ++i) {
    double value = -b[static_cast<size_t>(i)];
    for (int32_t j = 0; j < cols; ++j) {
      value += a_row_major[static_cast<size_t>(i) * cols + j] * x[static_cast<size_t>(j)];
    }
    residual2 += value * value;
  }
  result.residual_norm = std::sqrt(residual2);
  return result;
}

// ---------------------------------------------------------------------------------------------
// Fitting

Status fit_relative_nnls(std::span<const double> terms, int32_t cols,
                         std::span<const double> times, std::vector<double>* x) {
  const int32_t rows = static_cast<int32_t>(times.size());
  std::vector<double> a(terms.begin(), terms.end());
  const std::vector<double> b(static_cast<size_t>(rows), 1.0);
  for (int32_t i = 0; i < rows; ++i) {
    const double t = times[static_cast<size_t>(i)];
    if (!(t > 0.0) || !std::isfinite(t)) {
      return {ErrorCode::kInvalidArgument,
              "time[" + std::to_string(i) + "] = " + std::to_string(t) + " must be > 0 and finite"};
    }
    for (int32_t j = 0; j < cols; ++j) a[static_cast<size_t>(i) * cols + j] /= t;
  }
  NnlsResult solution = solve_nnls(a, rows, cols, b);
  if (!solution.converged) {
    return {ErrorCode::kInternal, "NNLS did not converge in " +
                                      std::to_string(solution.iterations) + " iterations"};
  }
  *x = std::move(solution.x);
  return Status::ok();
}

FitStats relative_fit_stats(std::span<const double> predicted, std::span<const double> times) {
  FitStats stats;
  double sum2 = 0.0;
  for (size_t i = 0; i < times.size(); ++i) {
    const double error = (predicted[i] - times[i]) / times[i];
    sum2 += error * error;
    stats.max_relative_error = std::max(stats.max_relative_error, std::fabs(error));
  }
  stats.samples = static_cast<int32_t>(times.size());
  stats.rms_relative_error = times.empty() ? 0.0 : std::sqrt(sum2 / static_cast<double>(times.size()));
  return stats;
}

Status fit_cost_model(std::span<const WaveFeatures> features, std::span<const double> times_us,
                      CostFit* fit) {
  if (features.size() != times_us.size()) {
    return {ErrorCode::kShapeMismatch, std::to_string(features.size()) + " feature rows but " +
                                           std::to_string(times_us.size()) + " times"};
  }
  if (features.empty()) return {ErrorCode::kInvalidArgument, "no measurements to fit"};
  std::vector<double> terms;
  terms.reserve(features.size() * kCostTerms);
  for (const WaveFeatures& f : features) {
    const std::array<double, kCostTerms> row = cost_terms(f);
    terms.insert(terms.end(), row.begin(), row.end());
  }
  std::vector<double> x;
  RAMP_TRY(fit_relative_nnls(terms, kCostTerms, times_us, &x));
  CostFit result;
  result.coefficients = {x[0], x[1], x[2], x[3]};
  std::vector<double> predicted;
  predicted.reserve(features.size());
  for (const WaveFeatures& f : features) predicted.push_back(result.coefficients.predict(f));
  result.stats = relative_fit_stats(predicted, times_us);
  *fit = result;
  return Status::ok();
}

// ---------------------------------------------------------------------------------------------
// Profiles

double Profile::predict(size_t entry, std::span<const int32_t> histogram) const {
  const ProfileEntry& e = entries[entry];
  return e.coefficients.predict(
      wave_features(e.config, histogram, shape.out_features, sm_count * e.ctas_per_sm));
}

std::vector<double> Profile::predict_all(std::span<const int32_t> histogram) const {
  std::vector<double> times(entries.size());
  for (size_t i = 0; i < entries.size(); ++i) times[i] = predict(i, histogram);
  return times;
}

int32_t Profile::select(std::span<const int32_t> histogram) const {
  int32_t best = -1;
  double best_time = 0.0;
  for (size_t i = 0; i < entries.size(); ++i) {
    const double time = predict(i, histogram);
    if (best < 0 || time < best_time) {
      best = static_cast<int32_t>(i);
      best_time = time;
    }
  }
  return best;
}

CandidateTable Profile::candidate_table() const {
  CandidateTable table;
  for (const CandidateProfileEntry& entry : candidates) {
    if (table.count >= kMaxCandidates) break;
    table.entries[table.count++] = entry.candidate;
  }
  return table;
}

int32_t Profile::select_candidate(std::span<const int32_t> histogram) const {
  const CandidateTable table = candidate_table();
  return dispatch::select_candidate(table, histogram.data(),
                                    static_cast<int32_t>(histogram.size()), shape.out_features,
                                    sm_count);
}

namespace {
// The fields read_fit_stats reads back.
void write_fit_stats(const FitStats& stats, json::Value* item) {
  item->set("samples", stats.samples)
      .set("rms_relative_error", stats.rms_relative_error)
      .set("max_relative_error", stats.max_relative_error);
}
}  // namespace

json::Value Profile::to_json() const {
  json::Value value;
  value.set("device", device);
  value.set("sm_count", sm_count);
  json::Value shape_value;
  shape_value.set("E", shape.num_experts)
      .set("k", shape.top_k)
      .set("N", shape.out_features)
      .set("K", shape.in_features);
  value.set("shape", std::move(shape_value));
  json::Value configs = json::Value::array();
  for (const ProfileEntry& entry : entries) {
    json::Value item;
    item.set("config", entry.config.to_string());
    item.set("ctas_per_sm", entry.ctas_per_sm);
    item.set("a", entry.coefficients.a)
        .set("b", entry.coefficients.b)
        .set("c", entry.coefficients.c)
        .set("d", entry.coefficients.d);
    write_fit_stats(entry.stats, &item);
    configs.push_back(std::move(item));
  }
  value.set("configs", std::move(configs));
  json::Value candidate_list = json::Value::array();
  for (const CandidateProfileEntry& entry : candidates) {
    const Candidate& c = entry.candidate;
    json::Value item;
    item.set("kind", c.kind == kCandidateMixed ? "mixed" : "uniform");
    item.set("config", c.config);
    item.set("ctas_per_sm", c.ctas_per_sm);
    item.set("a", c.a).set("b", c.b).set("c", c.c).set("d", c.d).set("e", c.e).set("f", c.f);
    write_fit_stats(entry.stats, &item);
    candidate_list.push_back(std::move(item));
  }
  value.set("candidates", std::move(candidate_list));
  return value;
}

namespace {

Status invalid(const std::string& message) { return {ErrorCode::kInvalidArgument, message}; }

Status read_int(const json::Value& object, const std::string& where, const char* key, int64_t lo,
                int64_t hi, int32_t* out) {
  const json::Value* field = object.find(key);
  int64_t integer = 0;
  if (field == nullptr || !field->get_int64(&integer) || integer < lo || integer > hi) {
    return invalid(where + ": \"" + key + "\" must be an integer in [" + std::to_string(lo) +
                   ", " + std::to_string(hi) + "]");
  }
  *out = static_cast<int32_t>(integer);
  return Status::ok();
}

Status read_double(const json::Value& object, const std::string& where, const char* key,
                   bool non_negative, double* out) {
  const json::Value* field = object.find(key);
  if (field == nullptr || !field->is_number() || (non_negative && field->as_double() < 0.0)) {
    return invalid(where + ": \"" + key + "\" must be a" + (non_negative ? " non-negative" : "") +
                   " number");
  }
  *out = field->as_double();
  return Status::ok();
}

// A profile entry's fit statistics (FitStats: "samples", "rms_relative_error",
// "max_relative_error").
Status read_fit_stats(const json::Value& item, const std::string& where, FitStats* stats) {
  RAMP_TRY(read_int(item, where, "samples", 0, std::numeric_limits<int32_t>::max(),
                    &stats->samples));
  RAMP_TRY(read_double(item, where, "rms_relative_error", true, &stats->rms_relative_error));
  return read_double(item, where, "max_relative_error", true, &stats->max_relative_error);
}

}  // namespace

Status Profile::from_json(const json::Value& value, Profile* profile) {
  if (!value.is_object()) return invalid("profile: must be an object");
  Profile parsed;
  const json::Value* device_name = value.find("device");
  if (device_name == nullptr || !device_name->is_string()) {
    return invalid("profile: \"device\" must be a string");
  }
  parsed.device = device_name->as_string();
  const std::string where = "profile \"" + parsed.device + "\"";
  RAMP_TRY(read_int(value, where, "sm_count", 1, 4096, &parsed.sm_count));
  const json::Value* shape_value = value.find("shape");
  if (shape_value == nullptr || !shape_value->is_object()) {
    return invalid(where + ": \"shape\" must be an object");
  }
  constexpr int64_t kMaxDim = std::numeric_limits<int32_t>::max();
  RAMP_TRY(read_int(*shape_value, where + " shape", "E", 1, kMaxDim, &parsed.shape.num_experts));
  RAMP_TRY(read_int(*shape_value, where + " shape", "k", 1, kMaxDim, &parsed.shape.top_k));
  RAMP_TRY(read_int(*shape_value, where + " shape", "N", 1, kMaxDim, &parsed.shape.out_features));
  RAMP_TRY(read_int(*shape_value, where + " shape", "K", 1, kMaxDim, &parsed.shape.in_features));
  const json::Value* configs = value.find("configs");
  if (configs == nullptr || !configs->is_array()) {
    return invalid(where + ": \"configs\" must be an array");
  }
  for (size_t i = 0; i < configs->size(); ++i) {
    const json::Value& item = configs->as_array()[i];
    const std::string item_where = where + " configs[" + std::to_string(i) + "]";
    if (!item.is_object()) return invalid(item_where + ": must be an object");
    ProfileEntry entry;
    const json::Value* name = item.find("config");
    if (name == nullptr || !name->is_string() || !parse_tile_config(name->as_string(), &entry.config)) {
      return invalid(item_where +
                     ": \"config\" must be a config string like \"normal 128x256 k64 s4 wg2 g8 sk1\"");
    }
    RAMP_TRY(read_int(item, item_where, "ctas_per_sm", 1, 64, &entry.ctas_per_sm));
    RAMP_TRY(read_double(item, item_where, "a", true, &entry.coefficients.a));
    RAMP_TRY(read_double(item, item_where, "b", true, &entry.coefficients.b));
    RAMP_TRY(read_double(item, item_where, "c", true, &entry.coefficients.c));
    RAMP_TRY(read_double(item, item_where, "d", true, &entry.coefficients.d));
    RAMP_TRY(read_fit_stats(item, item_where, &entry.stats));
    parsed.entries.push_back(entry);
  }
  // "candidates" is optional (profiles written before selection candidates existed).
  const json::Value* candidate_list = value.find("candidates");
  if (candidate_list != nullptr) {
    if (!candidate_list->is_array()) return invalid(where + ": \"candidates\" must be an array");
    if (candidate_list->size() > static_cast<size_t>(kMaxCandidates)) {
      return invalid(where + ": more than " + std::to_string(kMaxCandidates) + " candidates");
    }
    for (size_t i = 0; i < candidate_list->size(); ++i) {
      const json::Value& item = candidate_list->as_array()[i];
      const std::string item_where = where + " candidates[" + std::to_string(i) + "]";
      if (!item.is_object()) return invalid(item_where + ": must be an object");
      CandidateProfileEntry entry;
      Candidate& c = entry.candidate;
      const json::Value* kind = item.find("kind");
      if (kind == nullptr || !kind->is_string() ||
          (kind->as_string() != "uniform" && kind->as_string() != "mixed")) {
        return invalid(item_where + ": \"kind\" must be \"uniform\" or \"mixed\"");
      }
      c.kind = kind->as_string() == "mixed" ? kCandidateMixed : kCandidateUniform;
      RAMP_TRY(read_int(item, item_where, "config", c.kind == kCandidateMixed ? -1 : 0,
                        kNumBuiltinConfigs - 1, &c.config));
      RAMP_TRY(read_int(item, item_where, "ctas_per_sm", 1, 64, &c.ctas_per_sm));
      RAMP_TRY(read_double(item, item_where, "a", true, &c.a));
      RAMP_TRY(read_double(item, item_where, "b", true, &c.b));
      RAMP_TRY(read_double(item, item_where, "c", true, &c.c));
      RAMP_TRY(read_double(item, item_where, "d", true, &c.d));
      if (item.find("e") != nullptr) RAMP_TRY(read_double(item, item_where, "e", true, &c.e));
      if (item.find("f") != nullptr) RAMP_TRY(read_double(item, item_where, "f", true, &c.f));
      RAMP_TRY(read_fit_stats(item, item_where, &entry.stats));
      parsed.candidates.push_back(entry);
    }
  }
  *profile = std::move(parsed);
  return Status::ok();
}

namespace {
constexpr const char* kProfileFormat = "ramp-profile-1";
}

Status write_profiles(const std::string& path, std::span<const Profile> profiles) {
  json::Value document;
  document.set("format", kProfileFormat);
  json::Value list = json::Value::array();
  for (const Profile& profile : profiles) list.push_back(profile.to_json());
  document.set("profiles", std::move(list));
  return json::write_file(path, document);
}

Status read_profiles(const std::string& path, std::vector<Profile>* profiles) {
  json::Value document;
  RAMP_TRY(json::read_file(path, &document));
  const json::Value* format = document.find("format");
  if (format == nullptr || !format->is_string() || format->as_string() != kProfileFormat) {
    return invalid(path + ": \"format\" must be \"" + kProfileFormat + "\"");
  }
  const json::Value* list = document.find("profiles");
  if (list == nullptr || !list->is_array()) return invalid(path + ": \"profiles\" must be an array");
  std::vector<Profile> parsed;
  for (const json::Value& item : list->as_array()) {
    Profile profile;
    Status status = Profile::from_json(item, &profile);
    if (!status) return invalid(path + ": " + status.message());
    parsed.push_back(std::move(profile));
  }
  *profiles = std::move(parsed);
  return Status::ok();
}

const Profile* find_profile(std::span<const Profile> profiles, const std::string& device,
                            const GemmShape& shape) {
  for (const Profile& profile : profiles) {
    if (profile.device == device && profile.shape == shape) return &profile;
  }
  return nullptr;
}

// ---------------------------------------------------------------------------------------------
// Building a profile

Status build_profile(const ProfileRequest& request, const MeasureFn& measure, Profile* profile,
                     std::vector<std::vector<double>>* measured) {
  if (request.sm_count <= 0) return invalid("build_profile: sm_count must be positive");
  if (request.histograms.empty()) return invalid("build_profile: no histograms to measure");
  for (size_t h = 0; h < request.histograms.size(); ++h) {
    if (request.histograms[h].size() != static_cast<size_t>(request.shape.num_experts)) {
      return {ErrorCode::kShapeMismatch,
              "build_profile: histogram " + std::to_string(h) + " has " +
                  std::to_string(request.histograms[h].size()) + " experts, the shape " +
                  std::to_string(request.shape.num_experts)};
    }
  }
  std::vector<std::vector<double>> table(request.histograms.size(),
                                         std::vector<double>(request.configs.size(), 0.0));
  Profile result;
  result.device = request.device;
  result.sm_count = request.sm_count;
  result.shape = request.shape;
  for (size_t c = 0; c < request.configs.size(); ++c) {
    const TileConfig& config = request.configs[c];
    ProfileEntry entry;
    entry.config = config;
    entry.ctas_per_sm = ctas_per_sm(config, request.shared_bytes_per_sm);
    std::vector<WaveFeatures> features;
    std::vector<double> times;
    for (size_t h = 0; h < request.histograms.size(); ++h) {
      double microseconds = 0.0;
      Status status = measure(config, request.histograms[h], &microseconds);
      if (!status) {
        return Status(status.code(), config.to_string() + ", histogram " + std::to_string(h) +
                                         ": " + status.message());
      }
      table[h][c] = microseconds;
      features.push_back(wave_features(config, request.histograms[h], request.shape.out_features,
                                       request.sm_count * entry.ctas_per_sm));
      times.push_back(microseconds);
    }
    CostFit fit;
    Status status = fit_cost_model(features, times, &fit);
    if (!status) return Status(status.code(), config.to_string() + ": " + status.message());
    entry.coefficients = fit.coefficients;
    entry.stats = fit.stats;
    result.entries.push_back(entry);
  }
  *profile = std::move(result);
  if (measured != nullptr) *measured = std::move(table);
  return Status::ok();
}

// ---------------------------------------------------------------------------------------------
// Evaluation

double regret(double selected_time, double best_time) { return selected_time / best_time - 1.0; }

RegretStats summarize_regret(std::span<const double> regrets) {
  RegretStats stats;
  stats.count = static_cast<int32_t>(regrets.size());
  if (regrets.empty()) return stats;
  std::vector<double> sorted(regrets.begin(), regrets.end());
  std::sort(sorted.begin(), sorted.end());
  stats.mean = std::accumulate(sorted.begin(), sorted.end(), 0.0) / static_cast<double>(sorted.size());
  // Integer nearest rank: 0.95 * n in floating point can land just above an integer.
  const size_t rank = (95 * sorted.size() + 99) / 100;
  stats.p95 = sorted[std::max<size_t>(rank, 1) - 1];
  stats.max = sorted.back();
  return stats;
}

std::vector<double> selection_regrets(const std::vector<std::vector<double>>& measured,
                                      std::span<const int32_t> chosen) {
  std::vector<double> regrets;
  regrets.reserve(measured.size());
  for (size_t h = 0; h < measured.size() && h < chosen.size(); ++h) {
    const std::vector<double>& row = measured[h];
    if (row.empty()) continue;
    const double best = *std::min_element(row.begin(), row.end());
    regrets.push_back(regret(row[static_cast<size_t>(chosen[h])], best));
  }
  return regrets;
}

std::vector<double> speedups_over_static(const std::vector<std::vector<double>>& measured,
                                         std::span<const int32_t> chosen,
                                         std::span<const int32_t> static_choice) {
  std::vector<double> speedups;
  for (size_t h = 0; h < measured.size() && h < chosen.size() && h < static_choice.size(); ++h) {
    const std::vector<double>& row = measured[h];
    speedups.push_back(row[static_cast<size_t>(static_choice[h])] /
                       row[static_cast<size_t>(chosen[h])]);
  }
  return speedups;
}

double geometric_mean(std::span<const double> values) {
  if (values.empty()) return 0.0;
  double log_sum = 0.0;
  for (const double value : values) log_sum += std::log(value);
  return std::exp(log_sum / static_cast<double>(values.size()));
}

}  // namespace ramp::dispatch
