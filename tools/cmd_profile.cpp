// `ramp profile` and `ramp evaluate`: RaMP's wave cost model, measured and checked on the GPU.
//
// profile : for each GEMM of a model's layer (GEMM1 N=2I K=H with the SiLU epilogue, GEMM2
//           N=H K=I router-weighted), times every selection candidate (candidates.h: the 6
//           compiled configs applied to every expert, and the mixed builtin rule) on the
//           FITTING SET below, fits T = a + b*waves + c*g + d*log(g+1) + e*A per candidate by
//           NNLS (candidates.h)
//           and writes the profiles (JSON keyed by device name and GEMM shape).
// evaluate: times every candidate on the HELD-OUT SET below (other seed, other token counts,
//           other skews) and reports the regret of the profile's selection and of the region
//           fallback against exhaustive search, and the speedup over static batch-size
//           dispatch.
//
// FITTING SET (seed 1): T in {1, 3, 8, 24, 48, 96, 192, 384, 768, 1536, 3072, 6144} x routings
//   {uniform, zipf0.6, zipf1.2, zipf2.0, hot, worst, balanced} (--quick: T in {1, 8, 48, 192,
//   768, 3072} x {uniform, zipf1.2, hot, worst}).
// HELD-OUT SET (seed 2): T in {16, 64, 128, 256, 512, 1024, 2048, 4096} x routings
//   {uniform, zipf0.8, zipf1.0, zipf1.5, hot, worst}. No T and no skew of it is fitted on.
// Static batch-size dispatch at T = the compiled config fastest on uniform routing (seed 2) at
// T, applied to every expert (a uniform candidate; the mixed candidate chooses per expert from
// the histogram, so it is no static choice). Also reported: the speedup over the fastest of all
// candidates on uniform routing, the mixed rule included (the definition before session 14).
// Speedup target rows: T in {64, 256, 1024, 2048} x {zipf1.5, hot, worst}.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "cli_args.h"
#include "commands.h"
#include "core/json.h"
#include "dispatch/candidate_selection.h"
#include "workloads/models.h"
#include "workloads/routing.h"

#if RAMP_HAVE_CUDA
#include "candidate_timer.h"
#endif

namespace ramp::cli {

namespace {

using dispatch::Candidate;
using dispatch::GemmShape;
using dispatch::Profile;

constexpr const char* kProfileHelp =
    "usage: ramp profile --model NAME | --models all [--out FILE] [--quick] [--repeats N]\n"
    "Measures every selection candidate (each compiled config applied to every expert, and the\n"
    "mixed per-expert rule) on both GEMMs of each model's layer over the designed fitting set\n"
    "(seed 1; T in {1,3,8,24,48,96,192,384,768,1536,3072,6144} x {uniform, zipf0.6, zipf1.2,\n"
    "zipf2.0, hot, worst, balanced}), fits the wave cost model per candidate by NNLS and writes\n"
    "the profiles (device name + GEMM shape) as JSON. GPU only. Progress on stderr.\n\n"
    "options:\n"
    "  --model NAME     one model of `ramp models`\n"
    "  --models all     every model\n"
    "  --out FILE       profile file (default profiles/<device>.json)\n"
    "  --quick          a smaller fitting set (T in {1,8,48,192,768,3072} x 4 routings)\n"
    "  --repeats N      timed repeats per measurement, median kept (default 5)\n"
    "  --tables-out F   also save the measured times (JSON) for refitting without a GPU\n"
    "  --tables-in F    fit from saved times instead of measuring (no GPU needed)\n\n"
    "example:\n"
    "  ramp profile --model olmoe-1b-7b --out p.json\n";

constexpr const char* kEvaluateHelp =
    "usage: ramp evaluate --model NAME | --models all --profile FILE [--out FILE] [--repeats N]\n"
    "                     [--seed S]\n"
    "Times every candidate exhaustively on held-out histograms (seed S >= 2, default 2; T in\n"
    "{16,64,128,256,512,1024,2048,4096} x {uniform, zipf0.8, zipf1.0, zipf1.5, hot, worst})\n"
    "and reports per model and GEMM the regret of the profile's selection (mean, p95, max;\n"
    "targets 1%, 3%, 8%), of the region fallback (target mean 5%) and of the mixed rule alone,\n"
    "and the speedup of the selection over static batch-size dispatch (the compiled config fastest\n"
    "on uniform routing at that T, for every expert) on zipf1.5, hot and worst at T in\n"
    "{64,256,1024,2048} (targets geomean 1.15x, never slower; also shown: over the fastest\n"
    "candidate on uniform routing, the mixed per-expert rule included). GPU only, unless --tables-in F re-evaluates saved times\n"
    "(--tables-out F saves them). Without --profile the profiles shipped in the library are\n"
    "used.\n\n"
    "example:\n"
    "  ramp evaluate --model olmoe-1b-7b --profile p.json --out e.json\n";

struct HistogramSpec {
  int32_t tokens = 0;
  std::string routing;
  uint64_t seed = 1;
};

std::vector<HistogramSpec> fitting_set(bool quick) {
  const std::vector<int32_t> tokens =
      quick ? std::vector<int32_t>{1, 8, 48, 192, 768, 3072}
            : std::vector<int32_t>{1, 3, 8, 24, 48, 96, 192, 384, 768, 1536, 3072, 6144};
  const std::vector<std::string> routings =
      quick ? std::vector<std::string>{"uniform", "zipf1.2", "hot", "worst"}
            : std::vector<std::string>{"uniform", "zipf0.6", "zipf1.2", "zipf2.0",
                                       "hot",     "worst",   "balanced"};
  std::vector<HistogramSpec> specs;
  for (const int32_t t : tokens) {
    for (const std::string& r : routings) specs.push_back({t, r, 1});
  }
  return specs;
}

const std::vector<int32_t> kSpeedupTokens = {64, 256, 1024, 2048};
const std::set<std::string> kSpeedupRoutings = {"zipf1.5", "hot", "worst"};

// seed: 2 by default; any seed but the fitting set's 1 keeps the rows held out.
std::vector<HistogramSpec> evaluation_set(uint64_t seed) {
  std::vector<HistogramSpec> specs;
  for (const int32_t t : {16, 64, 128, 256, 512, 1024, 2048, 4096}) {
    for (const char* r : {"uniform", "zipf0.8", "zipf1.0", "zipf1.5", "hot", "worst"}) {
      specs.push_back({t, r, seed});
    }
  }
  return specs;
}

// One line on stderr, redrawn: [#####.....] done/total label, elapsed and estimate.
class ProgressBar {
 public:
  explicit ProgressBar(int64_t total) : total_(std::max<int64_t>(total, 1)) {
    start_ = std::chrono::steady_clock::now();
  }
  void update(int64_t done, const std::string& label) {
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    const double fraction = static_cast<double>(done) / static_cast<double>(total_);
    const int width = 30;
    const int filled = static_cast<int>(fraction * width);
    std::string bar(static_cast<size_t>(filled), '#');
    bar.resize(width, '.');
    const double eta = done > 0 ? elapsed * (1.0 - fraction) / fraction : 0.0;
    std::fprintf(stderr, "\r[%s] %lld/%lld %-40s %5.0fs elapsed, ~%4.0fs left ", bar.c_str(),
                 static_cast<long long>(done), static_cast<long long>(total_), label.c_str(),
                 elapsed, eta);
    std::fflush(stderr);
  }
  void finish() { std::fprintf(stderr, "\n"); }

 private:
  int64_t total_;
  std::chrono::steady_clock::time_point start_;
};

struct ModelTables {
  std::vector<std::vector<int32_t>> histograms;
  // [gemm][histogram][candidate] microseconds
  std::vector<std::vector<double>> times[2];
  std::string device;
  int32_t sm_count = 0;
};

GemmShape gemm_shape(const MoeShape& shape, int gemm) {
  return gemm == 0 ? GemmShape{shape.num_experts, shape.top_k, 2 * shape.intermediate, shape.hidden}
                   : GemmShape{shape.num_experts, shape.top_k, shape.hidden, shape.intermediate};
}

#if RAMP_HAVE_CUDA
// Times every candidate on every histogram of `specs`, both GEMMs.
Status measure_model(const workloads::ModelShape& model, const std::vector<HistogramSpec>& specs,
                     int repeats, ProgressBar* bar, int64_t* done, ModelTables* tables) {
  int32_t max_tokens = 1;
  for (const HistogramSpec& spec : specs) max_tokens = std::max(max_tokens, spec.tokens);
  TimerOptions options;
  options.repeats = repeats;
  std::unique_ptr<CandidateTimer> timer;
  RAMP_TRY(CandidateTimer::create(model.shape, max_tokens, options, &timer));
  tables->device = timer->device_name();
  tables->sm_count = timer->sm_count();
  const std::vector<Candidate> candidates = dispatch::builtin_candidates();
  const MoeShape& shape = model.shape;
  for (const HistogramSpec& spec : specs) {
    workloads::RoutingSpec routing_spec;
    if (!workloads::RoutingSpec::parse(spec.routing, &routing_spec)) {
      return {ErrorCode::kInvalidArgument, "unknown routing " + spec.routing};
    }
    const workloads::Routing routing = workloads::generate_routing(
        routing_spec, spec.tokens, shape.num_experts, shape.top_k, spec.seed);
    const std::vector<int32_t> histogram = routing.histogram();
    RAMP_TRY(timer->set_routing(routing.topk_ids, routing.topk_weights, spec.tokens));
    // Candidates that give every expert the same config as an earlier one run the same kernel:
    // measured once, so noise cannot make identical choices look different.
    std::vector<double> row1, row2;
    std::vector<std::vector<int32_t>> seen1, seen2;
    for (const Candidate& candidate : candidates) {
      const std::vector<int32_t> configs1 = dispatch::candidate_assignment(
          candidate, histogram, 2 * shape.intermediate, tables->sm_count);
      const std::vector<int32_t> configs2 =
          dispatch::candidate_assignment(candidate, histogram, shape.hidden, tables->sm_count);
      const auto same1 = std::find(seen1.begin(), seen1.end(), configs1);
      const auto same2 = std::find(seen2.begin(), seen2.end(), configs2);
      double t1 = 0.0, t2 = 0.0;
      Status status = timer->time_gemms(configs1, configs2, same1 == seen1.end() ? &t1 : nullptr,
                                        same2 == seen2.end() ? &t2 : nullptr);
      if (!status) {
        return Status(status.code(), model.name + " T=" + std::to_string(spec.tokens) + " " +
                                         spec.routing + " " +
                                         dispatch::candidate_name(candidate) + ": " +
                                         status.message());
      }
      if (same1 != seen1.end()) t1 = row1[static_cast<size_t>(same1 - seen1.begin())];
      if (same2 != seen2.end()) t2 = row2[static_cast<size_t>(same2 - seen2.begin())];
      seen1.push_back(configs1);
      seen2.push_back(configs2);
      row1.push_back(t1);
      row2.push_back(t2);
      ++*done;
      bar->update(*done, model.name + " T=" + std::to_string(spec.tokens) + " " + spec.routing);
    }
    tables->histograms.push_back(histogram);
    tables->times[0].push_back(row1);
    tables->times[1].push_back(row2);
  }
  return Status::ok();
}
#endif


// ---- Measured tables: saved with --tables-out, refitted / re-evaluated with --tables-in ----
// {"format": "ramp-measurements-1", "device", "sm_count", "models": [{"model", "E", "k", "H",
//  "I", "rows": [{"T", "routing", "seed", "histogram": [E], "gemm1_us": [7], "gemm2_us": [7]}]}]}

struct MeasuredModel {
  workloads::ModelShape model;
  std::vector<HistogramSpec> specs;
  ModelTables tables;
};

json::Value int_array(const std::vector<int32_t>& values) {
  json::Value list = json::Value::array();
  for (const int32_t v : values) list.push_back(v);
  return list;
}

json::Value double_array(const std::vector<double>& values) {
  json::Value list = json::Value::array();
  for (const double v : values) list.push_back(v);
  return list;
}

Status write_tables(const std::string& path, const std::vector<MeasuredModel>& measured) {
  json::Value root;
  root.set("format", "ramp-measurements-1");
  root.set("date", utc_now());
  root.set("git_commit", git_commit());
  root.set("device", measured.empty() ? std::string() : measured[0].tables.device);
  root.set("sm_count", measured.empty() ? 0 : measured[0].tables.sm_count);
  json::Value candidates = json::Value::array();
  for (const Candidate& c : dispatch::builtin_candidates()) {
    candidates.push_back(dispatch::candidate_name(c));
  }
  root.set("candidates", std::move(candidates));
  json::Value models = json::Value::array();
  for (const MeasuredModel& m : measured) {
    json::Value item;
    item.set("model", m.model.name)
        .set("E", m.model.shape.num_experts)
        .set("k", m.model.shape.top_k)
        .set("H", m.model.shape.hidden)
        .set("I", m.model.shape.intermediate);
    json::Value rows = json::Value::array();
    for (size_t h = 0; h < m.specs.size(); ++h) {
      json::Value row;
      row.set("T", m.specs[h].tokens)
          .set("routing", m.specs[h].routing)
          .set("seed", static_cast<int64_t>(m.specs[h].seed));
      row.set("histogram", int_array(m.tables.histograms[h]));
      row.set("gemm1_us", double_array(m.tables.times[0][h]));
      row.set("gemm2_us", double_array(m.tables.times[1][h]));
      rows.push_back(std::move(row));
    }
    item.set("rows", std::move(rows));
    models.push_back(std::move(item));
  }
  root.set("models", std::move(models));
  return json::write_file(path, root);
}

Status bad_tables(const std::string& path, const std::string& what) {
  return {ErrorCode::kInvalidArgument, path + ": " + what};
}

bool read_ints(const json::Value* value, std::vector<int32_t>* out) {
  if (value == nullptr || !value->is_array()) return false;
  out->clear();
  for (const json::Value& v : value->as_array()) {
    int64_t i = 0;
    if (!v.get_int64(&i)) return false;
    out->push_back(static_cast<int32_t>(i));
  }
  return true;
}

bool read_doubles(const json::Value* value, std::vector<double>* out) {
  if (value == nullptr || !value->is_array()) return false;
  out->clear();
  for (const json::Value& v : value->as_array()) {
    if (!v.is_number()) return false;
    out->push_back(v.as_double());
  }
  return true;
}

// Loads the tables of `wanted` models (all in the file when wanted is empty).
Status read_tables(const std::string& path, const std::vector<workloads::ModelShape>& wanted,
                   std::vector<MeasuredModel>* measured) {
  json::Value root;
  RAMP_TRY(json::read_file(path, &root));
  const json::Value* format = root.find("format");
  if (format == nullptr || !format->is_string() || format->as_string() != "ramp-measurements-1") {
    return bad_tables(path, "\"format\" must be \"ramp-measurements-1\"");
  }
  const json::Value* device = root.find("device");
  const json::Value* sms = root.find("sm_count");
  int64_t sm_count = 0;
  if (device == nullptr || !device->is_string() || sms == nullptr || !sms->get_int64(&sm_count)) {
    return bad_tables(path, "needs \"device\" and \"sm_count\"");
  }
  const json::Value* models = root.find("models");
  if (models == nullptr || !models->is_array()) return bad_tables(path, "needs \"models\"");
  const size_t num_candidates = dispatch::builtin_candidates().size();
  for (const json::Value& item : models->as_array()) {
    const json::Value* name = item.find("model");
    if (name == nullptr || !name->is_string()) return bad_tables(path, "a model has no name");
    const workloads::ModelShape* model = workloads::find_model(name->as_string());
    if (model == nullptr) return bad_tables(path, "unknown model " + name->as_string());
    bool keep = wanted.empty();
    for (const workloads::ModelShape& w : wanted) keep = keep || w.name == model->name;
    if (!keep) continue;
    MeasuredModel m;
    m.model = *model;
    m.tables.device = device->as_string();
    m.tables.sm_count = static_cast<int32_t>(sm_count);
    const json::Value* rows = item.find("rows");
    if (rows == nullptr || !rows->is_array()) return bad_tables(path, model->name + ": no rows");
    for (const json::Value& row : rows->as_array()) {
      HistogramSpec spec;
      int64_t tokens = 0, seed = 0;
      const json::Value* t = row.find("T");
      const json::Value* r = row.find("routing");
      const json::Value* sd = row.find("seed");
      std::vector<int32_t> histogram;
      std::vector<double> t1, t2;
      if (t == nullptr || !t->get_int64(&tokens) || r == nullptr || !r->is_string() ||
          sd == nullptr || !sd->get_int64(&seed) || !read_ints(row.find("histogram"), &histogram) ||
          histogram.size() != static_cast<size_t>(model->shape.num_experts) ||
          !read_doubles(row.find("gemm1_us"), &t1) || !read_doubles(row.find("gemm2_us"), &t2) ||
          t1.size() != num_candidates || t2.size() != num_candidates) {
        return bad_tables(path, model->name + ": a malformed row");
      }
      spec.tokens = static_cast<int32_t>(tokens);
      spec.routing = r->as_string();
      spec.seed = static_cast<uint64_t>(seed);
      m.specs.push_back(spec);
      m.tables.histograms.push_back(std::move(histogram));
      m.tables.times[0].push_back(std::move(t1));
      m.tables.times[1].push_back(std::move(t2));
    }
    measured->push_back(std::move(m));
  }
  if (measured->empty()) return bad_tables(path, "holds none of the requested models");
  return Status::ok();
}

// The tables of `models` over `specs`: from --tables-in when given, else measured on the GPU
// (saved to --tables-out when given).
Status obtain_tables(Args& args, const std::vector<workloads::ModelShape>& models,
                     const std::vector<HistogramSpec>& specs, int repeats,
                     std::vector<MeasuredModel>* measured) {
  if (args.has("tables-in")) {
    return read_tables(args.text("tables-in", ""),
                       args.has("models") ? std::vector<workloads::ModelShape>{} : models,
                       measured);
  }
#if !RAMP_HAVE_CUDA
  (void)specs;
  (void)repeats;
  return {ErrorCode::kNoDevice, "measuring needs the CUDA backend (this build has none); "
                                   "--tables-in FILE refits saved measurements"};
#else
  ProgressBar bar(static_cast<int64_t>(models.size() * specs.size() *
                                       dispatch::builtin_candidates().size()));
  int64_t done = 0;
  for (const workloads::ModelShape& model : models) {
    MeasuredModel m;
    m.model = model;
    m.specs = specs;
    const auto start = std::chrono::steady_clock::now();
    Status status = measure_model(model, specs, repeats, &bar, &done, &m.tables);
    if (!status) {
      bar.finish();
      return status;
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::fprintf(stderr, "\n%s: %zu histograms x %zu candidates x 2 GEMMs in %.1f s\n",
                 model.name.c_str(), specs.size(), dispatch::builtin_candidates().size(),
                 seconds);
    measured->push_back(std::move(m));
  }
  bar.finish();
  if (args.has("tables-out")) RAMP_TRY(write_tables(args.text("tables-out", ""), *measured));
  return Status::ok();
#endif
}

bool read_models(Args& args, const char* command, std::vector<workloads::ModelShape>* models) {
  if (args.has("models")) {
    if (args.text("models", "") != "all") {
      std::fprintf(stderr, "ramp %s: --models takes only 'all'\n", command);
      return false;
    }
    *models = workloads::builtin_models();
    return true;
  }
  const std::string name = args.text("model", "olmoe-1b-7b");
  const workloads::ModelShape* model = workloads::find_model(name);
  if (model == nullptr) {
    std::fprintf(stderr, "ramp %s: unknown model '%s' (see ramp models)\n", command, name.c_str());
    return false;
  }
  models->assign(1, *model);
  return true;
}

json::Value regret_json(const dispatch::RegretStats& stats) {
  json::Value value;
  value.set("count", stats.count).set("mean", stats.mean).set("p95", stats.p95).set("max", stats.max);
  return value;
}

json::Value speedup_json(const dispatch::SelectionEvaluation& eval) {
  json::Value speedup;
  speedup.set("count", eval.speedup_count)
      .set("geomean", eval.speedup_geomean)
      .set("min", eval.speedup_min)
      .set("max", eval.speedup_max);
  return speedup;
}

}  // namespace

int run_profile_command(const std::vector<std::string>& argv) {
  Args args;
  if (!args.parse(argv, {"model", "models", "out", "repeats", "tables-in", "tables-out"},
                  {"quick", "help"})) {
    std::fprintf(stderr, "ramp profile: %s (see ramp profile --help)\n", args.error().c_str());
    return 2;
  }
  if (args.has("help")) {
    std::printf("%s", kProfileHelp);
    return 0;
  }
  std::vector<workloads::ModelShape> models;
  if (!read_models(args, "profile", &models)) return 2;
  int64_t repeats = 5;
  if (!args.integer("repeats", 5, 1, 1000, &repeats)) {
    std::fprintf(stderr, "ramp profile: %s\n", args.error().c_str());
    return 2;
  }
  const std::vector<HistogramSpec> specs = fitting_set(args.has("quick"));
  const std::vector<Candidate> candidates = dispatch::builtin_candidates();
  std::vector<MeasuredModel> measured;
  Status status = obtain_tables(args, models, specs, static_cast<int>(repeats), &measured);
  if (!status) {
    std::fprintf(stderr, "ramp profile: %s\n", status.to_string().c_str());
    return 1;
  }
  std::vector<Profile> profiles;
  std::string device;
  for (const MeasuredModel& m : measured) {
    const ModelTables& tables = m.tables;
    device = tables.device;
    std::printf("%s: %zu fitting histograms x %zu candidates x 2 GEMMs\n", m.model.name.c_str(),
                m.specs.size(), candidates.size());
    for (int gemm = 0; gemm < 2; ++gemm) {
      dispatch::CandidateProfileRequest request;
      request.device = tables.device;
      request.sm_count = tables.sm_count;
      request.shape = gemm_shape(m.model.shape, gemm);
      request.candidates = candidates;
      request.histograms = tables.histograms;
      Profile profile;
      status = dispatch::fit_candidate_profile(request, tables.times[gemm], &profile);
      if (!status) {
        std::fprintf(stderr, "ramp profile: %s GEMM%d: %s\n", m.model.name.c_str(), gemm + 1,
                     status.to_string().c_str());
        return 1;
      }
      std::printf("  GEMM%d %s\n", gemm + 1, profile.shape.to_string().c_str());
      for (const dispatch::CandidateProfileEntry& entry : profile.candidates) {
        const Candidate& c = entry.candidate;
        std::printf(
            "    %-28s a=%8.2f b=%8.2f c=%8.4f d=%8.3f e=%7.3f f=%7.3f  fit rms %5.1f%% max "
            "%5.1f%%\n",
                    dispatch::candidate_name(c).c_str(), c.a, c.b, c.c, c.d, c.e, c.f,
                    100.0 * entry.stats.rms_relative_error,
                    100.0 * entry.stats.max_relative_error);
      }
      profiles.push_back(std::move(profile));
    }
  }
  std::string out = args.text("out", "");
  if (out.empty()) {
    std::string name = device;
    for (char& ch : name) {
      if (ch == ' ') ch = '-';
    }
    out = "profiles/" + name + ".json";
  }
  status = dispatch::write_profiles(out, profiles);
  if (!status) {
    std::fprintf(stderr, "ramp profile: %s\n", status.to_string().c_str());
    return 1;
  }
  std::printf("wrote %s (%zu profiles, device \"%s\")\n", out.c_str(), profiles.size(),
              device.c_str());
  return 0;
}

int run_evaluate_command(const std::vector<std::string>& argv) {
  Args args;
  if (!args.parse(argv,
                  {"model", "models", "out", "profile", "repeats", "seed", "tables-in",
                   "tables-out"},
                  {"help"})) {
    std::fprintf(stderr, "ramp evaluate: %s (see ramp evaluate --help)\n", args.error().c_str());
    return 2;
  }
  if (args.has("help")) {
    std::printf("%s", kEvaluateHelp);
    return 0;
  }
  std::vector<workloads::ModelShape> models;
  if (!read_models(args, "evaluate", &models)) return 2;
  int64_t repeats = 5;
  int64_t seed = 2;
  if (!args.integer("repeats", 5, 1, 1000, &repeats) ||
      !args.integer("seed", 2, 2, INT64_MAX, &seed)) {
    std::fprintf(stderr, "ramp evaluate: %s (the fitting set uses seed 1)\n",
                 args.error().c_str());
    return 2;
  }
  std::vector<Profile> profiles;
  if (args.has("profile")) {
    Status status = dispatch::read_profiles(args.text("profile", ""), &profiles);
    if (!status) {
      std::fprintf(stderr, "ramp evaluate: %s\n", status.to_string().c_str());
      return 2;
    }
  } else {
    profiles = dispatch::shipped_profiles();
  }
  const std::vector<HistogramSpec> specs = evaluation_set(static_cast<uint64_t>(seed));
  std::vector<MeasuredModel> measured;
  Status measure_status =
      obtain_tables(args, models, specs, static_cast<int>(repeats), &measured);
  if (!measure_status) {
    std::fprintf(stderr, "ramp evaluate: %s\n", measure_status.to_string().c_str());
    return 1;
  }
  const std::vector<Candidate> candidates = dispatch::builtin_candidates();
  int32_t mixed_index = -1;
  for (size_t c = 0; c < candidates.size(); ++c) {
    if (candidates[c].kind == dispatch::kCandidateMixed) mixed_index = static_cast<int32_t>(c);
  }
  json::Value root;
  root.set("kind", "ramp-evaluate");
  root.set("date", utc_now());
  root.set("command", joined_command("evaluate", argv));
  root.set("git_commit", git_commit());
  root.set("profile", args.has("profile") ? args.text("profile", "") : "(shipped)");
  root.set("held_out_set",
           "seed " + std::to_string(seed) +
               "; T in {16,64,128,256,512,1024,2048,4096} x {uniform, zipf0.8, zipf1.0, "
               "zipf1.5, hot, worst}; fitting used seed 1, T in {1,3,8,24,48,96,192,384,768,"
               "1536,3072,6144}, {uniform, zipf0.6, zipf1.2, zipf2.0, hot, worst, balanced}");
  root.set("static_dispatch", "per T: the compiled config (uniform candidate) fastest on uniform "
                              "routing (seed " + std::to_string(seed) + ") at T");
  root.set("static_dispatch_incl_mixed", "per T: the candidate fastest on uniform routing (seed " +
                                             std::to_string(seed) +
                                             ") at T, the mixed per-expert rule included");
  root.set("speedup_rows", "T in {64,256,1024,2048} x {zipf1.5, hot, worst}");
  json::Value candidate_names = json::Value::array();
  for (const Candidate& c : candidates) candidate_names.push_back(dispatch::candidate_name(c));
  root.set("candidates", std::move(candidate_names));
  json::Value results = json::Value::array();
  bool all_met = true;
  std::string device;
  std::vector<std::string> table_lines;
  for (const MeasuredModel& m : measured) {
    const workloads::ModelShape& model = m.model;
    const ModelTables& tables = m.tables;
    device = tables.device;
    dispatch::DeviceConstants constants = dispatch::DeviceConstants::h100();
    constants.name = tables.device;
    constants.sm_count = tables.sm_count;
    for (int gemm = 0; gemm < 2; ++gemm) {
      const GemmShape shape = gemm_shape(model.shape, gemm);
      const Profile* profile = dispatch::find_profile(profiles, tables.device, shape);
      const auto& measured = tables.times[gemm];
      std::vector<int32_t> selected, fallback, static_choice, static_incl_mixed, speedup_rows;
      json::Value rows = json::Value::array();
      for (size_t h = 0; h < m.specs.size(); ++h) {
        const std::vector<int32_t>& histogram = tables.histograms[h];
        const int32_t fallback_index =
            dispatch::select_candidate_by_regions(candidates, shape, histogram, constants);
        const int32_t profile_index =
            profile != nullptr ? profile->select_candidate(histogram) : fallback_index;
        // Static dispatch: the fastest uniform candidate (one compiled config for every expert)
        // on the uniform row of this T; and the fastest of all candidates there.
        int32_t static_index = 0, static_any_index = 0;
        for (size_t u = 0; u < m.specs.size(); ++u) {
          if (m.specs[u].tokens == m.specs[h].tokens && m.specs[u].routing == "uniform") {
            const auto& row = measured[u];
            static_any_index = static_cast<int32_t>(
                std::min_element(row.begin(), row.end()) - row.begin());
            static_index = dispatch::static_dispatch_choice(candidates, row);
            if (static_index < 0) static_index = static_any_index;
          }
        }
        selected.push_back(profile_index);
        fallback.push_back(fallback_index);
        static_choice.push_back(static_index);
        static_incl_mixed.push_back(static_any_index);
        if (std::find(kSpeedupTokens.begin(), kSpeedupTokens.end(), m.specs[h].tokens) !=
                kSpeedupTokens.end() &&
            kSpeedupRoutings.count(m.specs[h].routing) > 0) {
          speedup_rows.push_back(static_cast<int32_t>(h));
        }
        json::Value row;
        row.set("T", m.specs[h].tokens).set("routing", m.specs[h].routing);
        json::Value times = json::Value::array();
        for (const double t : measured[h]) times.push_back(t);
        row.set("times_us", std::move(times));
        const auto best = std::min_element(measured[h].begin(), measured[h].end());
        row.set("best", static_cast<int32_t>(best - measured[h].begin()));
        row.set("selected", profile_index).set("fallback", fallback_index).set("static", static_index);
        row.set("static_incl_mixed", static_any_index);
        rows.push_back(std::move(row));
      }
      const dispatch::SelectionEvaluation eval = dispatch::evaluate_selection(
          measured, selected, fallback, static_choice, mixed_index, speedup_rows);
      const dispatch::SelectionEvaluation eval_incl_mixed = dispatch::evaluate_selection(
          measured, selected, fallback, static_incl_mixed, mixed_index, speedup_rows);
      all_met = all_met && eval.meets_regret && eval.meets_speedup && eval.meets_fallback &&
                profile != nullptr;
      json::Value item;
      item.set("model", model.name).set("gemm", gemm + 1).set("shape", shape.to_string());
      item.set("profile_found", profile != nullptr);
      item.set("regret_selected", regret_json(eval.selected));
      item.set("regret_fallback", regret_json(eval.fallback));
      item.set("regret_mixed_rule", regret_json(eval.mixed));
      item.set("regret_static", regret_json(eval.static_dispatch));
      item.set("speedup_over_static", speedup_json(eval));
      item.set("speedup_over_static_incl_mixed", speedup_json(eval_incl_mixed));
      json::Value met;
      met.set("regret", eval.meets_regret)
          .set("speedup", eval.meets_speedup)
          .set("fallback", eval.meets_fallback);
      item.set("targets_met", std::move(met));
      item.set("rows", std::move(rows));
      results.push_back(std::move(item));
      char line[400];
      std::snprintf(line, sizeof(line),
                    "%-17s G%d %6.2f%% %6.2f%% %6.2f%% | %6.2f%% %6.2f%% | %6.2f%% | %5.3fx %5.3fx | "
                    "%5.3fx %5.3fx | %s%s%s%s",
                    model.name.c_str(), gemm + 1, 100 * eval.selected.mean, 100 * eval.selected.p95,
                    100 * eval.selected.max, 100 * eval.fallback.mean, 100 * eval.fallback.max,
                    100 * eval.mixed.mean, eval.speedup_geomean, eval.speedup_min,
                    eval_incl_mixed.speedup_geomean, eval_incl_mixed.speedup_min,
                    profile == nullptr ? "NO PROFILE " : "", eval.meets_regret ? "R" : "r",
                    eval.meets_speedup ? "S" : "s", eval.meets_fallback ? "F" : "f");
      table_lines.push_back(line);
    }
  }
  root.set("device", device);
  root.set("results", std::move(results));
  root.set("all_targets_met", all_met);
  std::printf("model             GEMM  regret mean    p95    max | fallback mean max | mixed mean "
              "| speedup geo   min | incl. mixed geo min | targets (R regret, S speedup, F "
              "fallback; lower case = missed)\n");
  for (const std::string& line : table_lines) std::printf("%s\n", line.c_str());
  std::printf("all targets met: %s\n", all_met ? "yes" : "no");
  const std::string out = args.text("out", "");
  if (!out.empty()) {
    Status status = json::write_file(out, root);
    if (!status) {
      std::fprintf(stderr, "ramp evaluate: %s\n", status.to_string().c_str());
      return 1;
    }
    std::printf("wrote %s\n", out.c_str());
  }
  return 0;
}

}  // namespace ramp::cli
