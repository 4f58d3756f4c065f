// run_bench: ceilings, our kernel, the peers, the correctness check, the results file.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bench/bench.h"
#include "bench/cublas_ops.h"
#include "bench/device_utils.h"
#include "bench/timing.h"
#include "bench/torch_peer_link.h"
#include "bench/verify_sample.h"
#include "core/json.h"
#include "cpu/reference.h"
#include "cuda/cuda_backend.h"
#include "cuda/cuda_check.h"

namespace ramp::bench {

std::string CaseSpec::name() const {
  return model + "/T=" + std::to_string(num_tokens) + "/" + routing.name();
}

namespace {

constexpr double kGemmTolerance = 5e-3;   // DESIGN.md section 7
constexpr double kLayerTolerance = 1e-2;
constexpr uint16_t kPoisonBits = 0x7fc0;  // bf16 NaN

bool is_bf16_finite(bf16 value) { return (value.bits & 0x7f80u) != 0x7f80u; }

// A measured time of one implementation of a case.
struct Measurement {
  std::string status = "skipped";  // ok | skipped | error
  std::string note;
  Timing timing;
  // Correctness (ours and the cuBLAS loop): fp64 reference on sampled tokens + a full scan
  // that every output element was written.
  bool verified = false;
  bool verify_pass = false;
  double rel_error = 0;
  double tolerance = 0;
  int tokens_checked = 0;
  int64_t unwritten = 0;
};

struct CaseResult {
  CaseSpec spec;
  workloads::Routing routing;
  int32_t active_experts = 0;
  int32_t max_load = 0;
  double flops = 0;
  double min_bytes = 0;
  double floor_ms = 0;
  bool compute_bound = false;
  Measurement ramp;
  Measurement cublas_loop;
  Measurement cublas_dense;
  Measurement torch;
};

std::string utc_now(const char* format) {
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  char buffer[64];
  std::strftime(buffer, sizeof(buffer), format, &utc);
  return buffer;
}

std::string slug(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (std::isalnum(static_cast<unsigned char>(c))) {
      out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    } else if (!out.empty() && out.back() != '-') {
      out += '-';
    }
  }
  while (!out.empty() && out.back() == '-') out.pop_back();
  return out;
}

void git_commit(std::string* commit, std::string* source) {
  if (const char* env = std::getenv("RAMP_GIT_COMMIT"); env != nullptr && *env != '\0') {
    *commit = env;
    *source = "env RAMP_GIT_COMMIT";
    return;
  }
#ifdef RAMP_GIT_COMMIT_AT_CONFIGURE
  *commit = RAMP_GIT_COMMIT_AT_CONFIGURE;
  *source = "cmake configure time (may be older than the build)";
#else
  *commit = "unknown";
  *source = "none (set RAMP_GIT_COMMIT)";
#endif
}

// Host copies of weights, filled one expert at a time: the reference reads only the experts
// the sampled tokens use, so a 6 GiB weight tensor never needs a full copy.
class LazyHostWeights {
 public:
  void reset(const bf16* device, int64_t experts, int64_t elements_per_expert) {
    device_ = device;
    per_expert_ = elements_per_expert;
    // Default-initialised uint16_t: pages are committed only where an expert is copied.
    storage_.reset(new uint16_t[static_cast<size_t>(experts * per_expert_)]);
    present_.assign(experts, false);
  }
  Status require(const std::vector<int32_t>& ids) {
    for (int32_t e : ids) {
      if (present_[e]) continue;
      RAMP_CUDA_TRY(cudaMemcpy(storage_.get() + e * per_expert_, device_ + e * per_expert_,
                               per_expert_ * sizeof(bf16), cudaMemcpyDeviceToHost));
      present_[e] = true;
    }
    return Status::ok();
  }
  const bf16* data() const { return reinterpret_cast<const bf16*>(storage_.get()); }

 private:
  const bf16* device_ = nullptr;
  int64_t per_expert_ = 0;
  std::unique_ptr<uint16_t[]> storage_;
  std::vector<bool> present_;
};

// Device weights of the model being measured, kept across its cases.
struct ModelWeights {
  std::string model;
  DeviceBuffer w13;  // layer [E, 2I, H]; grouped GEMM: w [E, N, K]
  DeviceBuffer w2;   // layer [E, H, I]
  LazyHostWeights host_w13;
  LazyHostWeights host_w2;
};

struct Context {
  const BenchOptions* options = nullptr;
  cudaStream_t stream = nullptr;
  DeviceInfo device;
  L2Flusher flusher;
  Cublas cublas;
  Ceilings ceilings;
  TimingOptions timing;
  size_t flush_bytes = 0;
  bool kernel_usable = true;
  std::string kernel_note;
};

Status prepare_weights(Context& ctx, const CaseSpec& spec, ModelWeights* weights) {
  if (weights->model == spec.model) return Status::ok();
  weights->w13.reset();
  weights->w2.reset();
  weights->model = spec.model;
  const MoeShape& s = spec.shape;
  const int64_t E = s.num_experts, H = s.hidden, I = s.intermediate;
  const uint64_t seed = ctx.options->seed * 1000 + 17;
  if (ctx.options->kind == BenchKind::kGemm) {
    RAMP_TRY(weights->w13.allocate(E * I * H * sizeof(bf16)));
    RAMP_TRY(fill_random_bf16_device(weights->w13.as<bf16>(), E * I * H, seed,
                                     1.0f / std::sqrt(static_cast<float>(H)), ctx.stream));
    weights->host_w13.reset(weights->w13.as<const bf16>(), E, I * H);
  } else {
    RAMP_TRY(weights->w13.allocate(E * 2 * I * H * sizeof(bf16)));
    RAMP_TRY(weights->w2.allocate(E * H * I * sizeof(bf16)));
    RAMP_TRY(fill_random_bf16_device(weights->w13.as<bf16>(), E * 2 * I * H, seed,
                                     1.0f / std::sqrt(static_cast<float>(H)), ctx.stream));
    RAMP_TRY(fill_random_bf16_device(weights->w2.as<bf16>(), E * H * I, seed + 1,
                                     1.0f / std::sqrt(static_cast<float>(I)), ctx.stream));
    weights->host_w13.reset(weights->w13.as<const bf16>(), E, 2 * I * H);
    weights->host_w2.reset(weights->w2.as<const bf16>(), E, H * I);
  }
  RAMP_CUDA_TRY(cudaStreamSynchronize(ctx.stream));
  return Status::ok();
}

template <typename T>
Status upload(const std::vector<T>& host, DeviceBuffer* device) {
  RAMP_TRY(device->allocate(std::max<size_t>(host.size(), 1) * sizeof(T)));
  if (!host.empty()) {
    RAMP_CUDA_TRY(
        cudaMemcpy(device->data(), host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
  }
  return Status::ok();
}

template <typename T>
Status download(const DeviceBuffer& device, size_t count, std::vector<T>* host) {
  host->resize(count);
  if (count > 0) {
    RAMP_CUDA_TRY(cudaMemcpy(host->data(), device.data(), count * sizeof(T), cudaMemcpyDeviceToHost));
  }
  return Status::ok();
}

int64_t count_unwritten(const std::vector<bf16>& values) {
  int64_t bad = 0;
  for (bf16 v : values) bad += is_bf16_finite(v) ? 0 : 1;
  return bad;
}

void record_error(Measurement* m, const Status& status) {
  m->status = "error";
  m->note = status.to_string();
}

// ---- grouped GEMM -------------------------------------------------------------------------

struct GemmBuffers {
  DeviceBuffer x, ids, y, workspace;
  std::vector<bf16> host_x;
  GroupedGemmArgs args{};
};

// Checks a [slots, N] bf16 output whose row for `slot` is row_of(slot) against the reference.
template <typename RowOf>
Status verify_gemm_output(Context& ctx, ModelWeights& weights, const CaseResult& result,
                          const GemmBuffers& buffers, const std::vector<bf16>& y_host,
                          RowOf row_of, Measurement* m) {
  const CaseSpec& spec = result.spec;
  const int32_t k = spec.shape.top_k, N = spec.shape.intermediate, K = spec.shape.hidden;
  const std::vector<int32_t> tokens =
      verify_sample_tokens(spec.num_tokens, ctx.options->verify_tokens);
  const int32_t n = static_cast<int32_t>(tokens.size());
  std::vector<bf16> x_sub(static_cast<size_t>(n) * K);
  std::vector<int32_t> ids_sub(static_cast<size_t>(n) * k);
  std::vector<bf16> got(static_cast<size_t>(n) * k * N);
  for (int32_t i = 0; i < n; ++i) {
    const int64_t t = tokens[i];
    std::copy_n(buffers.host_x.begin() + t * K, K, x_sub.begin() + int64_t{i} * K);
    for (int32_t j = 0; j < k; ++j) {
      ids_sub[int64_t{i} * k + j] = result.routing.topk_ids[t * k + j];
      const int64_t row = row_of(t * k + j);
      std::copy_n(y_host.begin() + row * N, N, got.begin() + (int64_t{i} * k + j) * N);
    }
  }
  RAMP_TRY(weights.host_w13.require(ids_sub));
  const GroupedGemmArgs sub{n, k, spec.shape.num_experts, N, K, x_sub.data(),
                            weights.host_w13.data(), ids_sub.data(), nullptr};
  const std::vector<double> reference = cpu::reference_grouped_gemm(sub);
  m->verified = true;
  m->tokens_checked = n;
  m->tolerance = kGemmTolerance;
  m->rel_error = cpu::relative_frobenius_error(got, reference);
  m->unwritten = count_unwritten(y_host);
  m->verify_pass = m->unwritten == 0 && m->rel_error <= m->tolerance;
  return Status::ok();
}

Status run_ramp_gemm(Context& ctx, ModelWeights& weights, GemmBuffers& buffers,
                     CaseResult* result) {
  Measurement& m = result->ramp;
  const CaseSpec& spec = result->spec;
  const GroupedGemmArgs& args = buffers.args;
  const size_t workspace_bytes = cuda::grouped_gemm_workspace_bytes(
      spec.shape.num_experts, spec.num_tokens, spec.shape.top_k);
  RAMP_TRY(buffers.workspace.allocate(workspace_bytes));
  cuda::CudaOptions cuda_options;
  cuda_options.order = ctx.options->order;
  cuda_options.overlap_kernels = ctx.options->overlap_kernels;
  cuda_options.routing_aware = ctx.options->routing_aware;
  cuda_options.l2_group[0] = ctx.options->l2_group[0];
  cuda_options.l2_group[1] = ctx.options->l2_group[1];
  cuda_options.num_sms = ctx.device.sm_count;

  const size_t y_count = static_cast<size_t>(spec.num_tokens) * spec.shape.top_k * args.out_features;
  RAMP_TRY(fill_bf16_bits_device(buffers.y.as<bf16>(), y_count, kPoisonBits, ctx.stream));
  RAMP_TRY(cuda::grouped_gemm(args, buffers.workspace.data(), workspace_bytes, ctx.stream,
                              cuda_options));
  RAMP_TRY(cuda::read_routing_status(buffers.workspace.data(), args.num_experts, args.num_tokens,
                                     args.top_k, args.topk_ids, nullptr, ctx.stream));
  RAMP_CUDA_TRY(cudaStreamSynchronize(ctx.stream));
  std::vector<bf16> y_host;
  RAMP_TRY(download(buffers.y, y_count, &y_host));
  RAMP_TRY(verify_gemm_output(ctx, weights, *result, buffers, y_host,
                              [](int64_t slot) { return slot; }, &m));
  if (!m.verify_pass) {
    m.status = "error";
    m.note = "wrong result: not timed";
    return Status::ok();
  }
  RAMP_TRY(time_device_op(
      [&](cudaStream_t stream) {
        return cuda::grouped_gemm(args, buffers.workspace.data(), workspace_bytes, stream,
                                  cuda_options);
      },
      ctx.timing, ctx.stream, &ctx.flusher, &m.timing));
  m.status = "ok";
  m.note = "routing prep (histogram, sort, plan) inside the timed call";
  if (!m.timing.graph) m.note += "; not a graph: " + m.timing.graph_note;
  return Status::ok();
}

Status run_cublas_gemm_peers(Context& ctx, ModelWeights& weights, GemmBuffers& buffers,
                             CaseResult* result) {
  const CaseSpec& spec = result->spec;
  const GroupedGemmArgs& args = buffers.args;
  {
    Measurement& m = result->cublas_loop;
    CublasExpertLoop loop;
    RAMP_TRY(loop.setup(args, result->routing.topk_ids));
    const size_t slots = static_cast<size_t>(spec.num_tokens) * spec.shape.top_k;
    RAMP_TRY(time_device_op([&](cudaStream_t stream) { return loop.enqueue(ctx.cublas, stream); },
                            ctx.timing, ctx.stream, &ctx.flusher, &m.timing));
    std::vector<bf16> y_sorted;
    y_sorted.resize(slots * args.out_features);
    if (slots > 0) {
      RAMP_CUDA_TRY(cudaMemcpy(y_sorted.data(), loop.output(), y_sorted.size() * sizeof(bf16),
                               cudaMemcpyDeviceToHost));
    }
    RAMP_TRY(verify_gemm_output(ctx, weights, *result, buffers, y_sorted,
                                [&](int64_t slot) { return loop.sorted_row_of_slot(slot); }, &m));
    m.status = m.verify_pass ? "ok" : "error";
    m.note = "timed: row gather + one cublasGemmEx per non-empty expert (graph); not timed: "
             "slot sort, histogram read-back, scatter to slot order";
    if (!m.timing.graph) m.note += "; not a graph: " + m.timing.graph_note;
  }
  {
    // Same FLOPs as one dense GEMM (all slots on expert 0): what the tensor cores give this
    // M x N x K when nothing is irregular.
    Measurement& m = result->cublas_dense;
    const int64_t slots = static_cast<int64_t>(spec.num_tokens) * spec.shape.top_k;
    if (slots > 0) {
      DeviceBuffer x_dense;
      const int64_t K = args.in_features, N = args.out_features;
      RAMP_TRY(x_dense.allocate(slots * K * sizeof(bf16)));
      RAMP_TRY(fill_random_bf16_device(x_dense.as<bf16>(), slots * K, 4242, 1.0f, ctx.stream));
      RAMP_TRY(time_device_op(
          [&](cudaStream_t) {
            return ctx.cublas.gemm_xwt(x_dense.as<bf16>(), args.w, buffers.y.as<bf16>(), slots,
                                       N, K, K, K, N);
          },
          ctx.timing, ctx.stream, &ctx.flusher, &m.timing));
      m.status = "ok";
      m.note = "one dense [T*k, K] x [K, N] GEMM, same FLOPs, one expert's weights";
    }
  }
  return Status::ok();
}

Status run_gemm_case(Context& ctx, ModelWeights& weights, CaseResult* result) {
  const CaseSpec& spec = result->spec;
  const int64_t T = spec.num_tokens, k = spec.shape.top_k;
  const int64_t N = spec.shape.intermediate, K = spec.shape.hidden;
  RAMP_TRY(prepare_weights(ctx, spec, &weights));
  GemmBuffers buffers;
  RAMP_TRY(buffers.x.allocate(std::max<int64_t>(T * K, 1) * sizeof(bf16)));
  RAMP_TRY(fill_random_bf16_device(buffers.x.as<bf16>(), T * K, ctx.options->seed * 1000 + T,
                                   1.0f, ctx.stream));
  RAMP_TRY(download(buffers.x, T * K, &buffers.host_x));
  RAMP_TRY(upload(result->routing.topk_ids, &buffers.ids));
  RAMP_TRY(buffers.y.allocate(std::max<int64_t>(T * k * N, 1) * sizeof(bf16)));
  buffers.args = GroupedGemmArgs{spec.num_tokens,
                                 spec.shape.top_k,
                                 spec.shape.num_experts,
                                 spec.shape.intermediate,
                                 spec.shape.hidden,
                                 buffers.x.as<const bf16>(),
                                 weights.w13.as<const bf16>(),
                                 buffers.ids.as<const int32_t>(),
                                 buffers.y.as<bf16>()};
  if (ctx.kernel_usable) {
    if (Status status = run_ramp_gemm(ctx, weights, buffers, result); !status.is_ok()) {
      record_error(&result->ramp, status);
    }
  } else {
    result->ramp.note = ctx.kernel_note;
  }
  if (ctx.options->cublas_peer) {
    if (Status status = run_cublas_gemm_peers(ctx, weights, buffers, result); !status.is_ok()) {
      record_error(&result->cublas_loop, status);
    }
  }
  return Status::ok();
}

// ---- MoE layer ----------------------------------------------------------------------------

Status run_layer_case(Context& ctx, ModelWeights& weights, CaseResult* result) {
  const CaseSpec& spec = result->spec;
  const MoeShape& shape = spec.shape;
  const int64_t T = spec.num_tokens, H = shape.hidden, k = shape.top_k;
  if (!ctx.kernel_usable) {
    result->ramp.note = ctx.kernel_note;
    return Status::ok();
  }
  RAMP_TRY(prepare_weights(ctx, spec, &weights));
  Measurement& m = result->ramp;
  DeviceBuffer hidden, ids, topk_weights, out, workspace;
  RAMP_TRY(hidden.allocate(std::max<int64_t>(T * H, 1) * sizeof(bf16)));
  RAMP_TRY(fill_random_bf16_device(hidden.as<bf16>(), T * H, ctx.options->seed * 1000 + T, 1.0f,
                                   ctx.stream));
  RAMP_TRY(upload(result->routing.topk_ids, &ids));
  RAMP_TRY(upload(result->routing.topk_weights, &topk_weights));
  RAMP_TRY(out.allocate(std::max<int64_t>(T * H, 1) * sizeof(bf16)));
  const size_t workspace_bytes = cuda::moe_layer_workspace_bytes(shape, spec.num_tokens);
  RAMP_TRY(workspace.allocate(workspace_bytes));

  MoeLayerArgs args;
  args.num_tokens = spec.num_tokens;
  args.hidden = hidden.as<const bf16>();
  args.w13 = weights.w13.as<const bf16>();
  args.w2 = weights.w2.as<const bf16>();
  args.topk_ids = ids.as<const int32_t>();
  args.topk_weights = topk_weights.as<const float>();
  args.out = out.as<bf16>();
  cuda::CudaOptions cuda_options;
  cuda_options.order = ctx.options->order;
  cuda_options.overlap_kernels = ctx.options->overlap_kernels;
  cuda_options.routing_aware = ctx.options->routing_aware;
  cuda_options.l2_group[0] = ctx.options->l2_group[0];
  cuda_options.l2_group[1] = ctx.options->l2_group[1];
  cuda_options.num_sms = ctx.device.sm_count;
  cuda_options.decode_max_tokens = ctx.options->decode_max_tokens;
  cuda_options.decode_hand_over = ctx.options->decode_hand_over;

  RAMP_TRY(fill_bf16_bits_device(out.as<bf16>(), T * H, kPoisonBits, ctx.stream));
  RAMP_TRY(cuda::moe_layer(shape, args, workspace.data(), workspace_bytes, ctx.stream,
                           cuda_options));
  RAMP_TRY(cuda::read_routing_status(workspace.data(), shape.num_experts, spec.num_tokens,
                                     shape.top_k, args.topk_ids, args.topk_weights, ctx.stream));
  RAMP_CUDA_TRY(cudaStreamSynchronize(ctx.stream));
  std::vector<bf16> out_host, hidden_host;
  RAMP_TRY(download(out, T * H, &out_host));
  RAMP_TRY(download(hidden, T * H, &hidden_host));

  const std::vector<int32_t> tokens =
      verify_sample_tokens(spec.num_tokens, ctx.options->verify_tokens);
  const int32_t n = static_cast<int32_t>(tokens.size());
  std::vector<bf16> hidden_sub(static_cast<size_t>(n) * H), got(static_cast<size_t>(n) * H);
  std::vector<int32_t> ids_sub(static_cast<size_t>(n) * k);
  std::vector<float> weights_sub(static_cast<size_t>(n) * k);
  for (int32_t i = 0; i < n; ++i) {
    const int64_t t = tokens[i];
    std::copy_n(hidden_host.begin() + t * H, H, hidden_sub.begin() + int64_t{i} * H);
    std::copy_n(out_host.begin() + t * H, H, got.begin() + int64_t{i} * H);
    std::copy_n(result->routing.topk_ids.begin() + t * k, k, ids_sub.begin() + int64_t{i} * k);
    std::copy_n(result->routing.topk_weights.begin() + t * k, k,
                weights_sub.begin() + int64_t{i} * k);
  }
  RAMP_TRY(weights.host_w13.require(ids_sub));
  RAMP_TRY(weights.host_w2.require(ids_sub));
  MoeLayerArgs sub;
  sub.num_tokens = n;
  sub.hidden = hidden_sub.data();
  sub.w13 = weights.host_w13.data();
  sub.w2 = weights.host_w2.data();
  sub.topk_ids = ids_sub.data();
  sub.topk_weights = weights_sub.data();
  const std::vector<double> reference = cpu::reference_moe_layer(shape, sub);
  m.verified = true;
  m.tokens_checked = n;
  m.tolerance = kLayerTolerance;
  m.rel_error = cpu::relative_frobenius_error(got, reference);
  m.unwritten = count_unwritten(out_host);
  m.verify_pass = m.unwritten == 0 && m.rel_error <= m.tolerance;
  if (!m.verify_pass) {
    m.status = "error";
    m.note = "wrong result: not timed";
    return Status::ok();
  }
  RAMP_TRY(time_device_op(
      [&](cudaStream_t stream) {
        return cuda::moe_layer(shape, args, workspace.data(), workspace_bytes, stream,
                               cuda_options);
      },
      ctx.timing, ctx.stream, &ctx.flusher, &m.timing));
  m.status = "ok";
  m.note = "whole layer (routing prep, GEMM1+SiLU*up, GEMM2+weight, combine) under graph replay";
  if (!m.timing.graph) m.note = "NOT a graph (" + m.timing.graph_note + ")";
  m.note += "; configs: " + cuda::selected_configs(shape, spec.num_tokens, cuda_options);
  return Status::ok();
}

// ---- roofline, merge, output --------------------------------------------------------------

void fill_roofline(const Context& ctx, BenchKind kind, CaseResult* result) {
  const CaseSpec& spec = result->spec;
  const MoeShape& s = spec.shape;
  const std::vector<int32_t> histogram = result->routing.histogram();
  result->active_experts = 0;
  result->max_load = 0;
  for (int32_t load : histogram) {
    result->active_experts += load > 0 ? 1 : 0;
    result->max_load = std::max(result->max_load, load);
  }
  const double slots = static_cast<double>(spec.num_tokens) * s.top_k;
  const double H = s.hidden, I = s.intermediate, T = spec.num_tokens;
  if (kind == BenchKind::kGemm) {  // H = K, I = N
    result->flops = 2.0 * slots * I * H;
    result->min_bytes = 2.0 * (result->active_experts * I * H + T * H + slots * I);
  } else {
    result->flops = 6.0 * slots * H * I;
    result->min_bytes = 2.0 * (result->active_experts * 3.0 * I * H + 2.0 * T * H);
  }
  const double compute_ms = result->flops / (ctx.ceilings.gemm_tflops * 1e9);
  const double memory_ms = result->min_bytes / (ctx.ceilings.copy_gbps * 1e6);
  result->compute_bound = compute_ms >= memory_ms;
  result->floor_ms = std::max(compute_ms, memory_ms);
}

void merge_torch(const TorchPeerRun& run, std::vector<CaseResult>* results) {
  for (CaseResult& result : *results) {
    Measurement& m = result.torch;
    if (!run.ran) {
      m.note = run.note;
      continue;
    }
    const json::Value* cases = run.result.find("cases");
    const json::Value* found = nullptr;
    if (cases != nullptr && cases->is_array()) {
      for (const json::Value& c : cases->as_array()) {
        const json::Value* name = c.find("name");
        if (name != nullptr && name->is_string() && name->as_string() == result.spec.name()) {
          found = &c;
        }
      }
    }
    if (found == nullptr) {
      m.note = run.note.empty() ? "no torch result for this case" : run.note;
      continue;
    }
    const json::Value* status = found->find("status");
    const json::Value* time = found->find("time_ms");
    const json::Value* note = found->find("note");
    const json::Value* graph = found->find("graph");
    const json::Value* check = found->find("check_rel_error");
    if (note != nullptr && note->is_string()) m.note = note->as_string();
    if (status != nullptr && status->is_string()) m.status = status->as_string();
    if (time != nullptr && time->is_number()) m.timing.median_ms = time->as_double();
    for (const char* key : {"min_ms", "max_ms"}) {
      const json::Value* v = found->find(key);
      if (v != nullptr && v->is_number()) {
        (std::string(key) == "min_ms" ? m.timing.min_ms : m.timing.max_ms) = v->as_double();
      }
    }
    if (graph != nullptr && graph->is_bool()) m.timing.graph = graph->as_bool();
    if (check != nullptr && check->is_number()) {
      m.verified = true;
      m.rel_error = check->as_double();
    }
  }
}

bool gave_wrong_result(const Measurement& m) { return m.verified && !m.verify_pass; }
bool failed_to_run(const Measurement& m) { return m.status == "error"; }

json::Value timing_json(const Timing& timing) {
  json::Value value = json::Value::object();
  value.set("median_ms", timing.median_ms);
  value.set("min_ms", timing.min_ms);
  value.set("max_ms", timing.max_ms);
  value.set("repeats", timing.repeats);
  return value;
}

json::Value measurement_json(const Context& ctx, const CaseResult& result, const Measurement& m,
                             const Measurement* ours) {
  json::Value value = json::Value::object();
  value.set("status", m.status);
  if (!m.note.empty()) value.set("note", m.note);
  if (m.status != "ok") return value;
  const double ms = m.timing.median_ms;
  const double tflops = result.flops / (ms * 1e9);
  value.set("time_ms", ms);
  value.set("min_ms", m.timing.min_ms);
  value.set("max_ms", m.timing.max_ms);
  value.set("cuda_graph", m.timing.graph);
  value.set("tflops", tflops);
  value.set("ratio_to_cublas_ceiling", tflops / ctx.ceilings.gemm_tflops);
  value.set("efficiency", result.floor_ms / ms);
  if (ours != nullptr && ours->status == "ok") {
    value.set("ramp_speedup", ms / ours->timing.median_ms);  // > 1: ours is faster
  }
  if (m.verified) {
    json::Value verify = json::Value::object();
    verify.set("rel_error", m.rel_error);
    if (m.tolerance > 0) verify.set("tolerance", m.tolerance);
    if (m.tokens_checked > 0) verify.set("tokens_checked", m.tokens_checked);
    if (m.tolerance > 0) verify.set("unwritten_elements", m.unwritten);
    if (m.tolerance > 0) verify.set("pass", m.verify_pass);
    value.set("verify", std::move(verify));
  }
  return value;
}

json::Value results_json(const Context& ctx, const std::vector<CaseResult>& results,
                         const TorchPeerRun& torch_run, const std::string& date) {
  const BenchOptions& options = *ctx.options;
  json::Value root = json::Value::object();
  root.set("schema", "ramp-bench/1");
  root.set("kind", options.kind == BenchKind::kGemm ? "gemm" : "layer");
  json::Value device = json::Value::object();
  device.set("name", ctx.device.name);
  device.set("sm_count", ctx.device.sm_count);
  device.set("compute_capability",
             std::to_string(ctx.device.major) + "." + std::to_string(ctx.device.minor));
  device.set("l2_bytes", ctx.device.l2_bytes);
  device.set("memory_bytes", static_cast<int64_t>(ctx.device.memory_bytes));
  root.set("device", std::move(device));
  root.set("date_utc", date);
  root.set("command", options.command_line);
  std::string commit, source;
  git_commit(&commit, &source);
  root.set("git_commit", commit);
  root.set("git_commit_source", source);

  json::Value settings = json::Value::object();
  settings.set("warmup", options.warmup);
  settings.set("repeats", options.repeats);
  settings.set("statistic", "median");
  settings.set("l2_flush_bytes", static_cast<int64_t>(ctx.flush_bytes));
  settings.set("expert_order", expert_order_name(options.order));
  settings.set("overlap_kernels", options.overlap_kernels);
  settings.set("routing_aware", options.routing_aware);
  settings.set("l2_group", std::to_string(options.l2_group[0]) + "," +
                               std::to_string(options.l2_group[1]));
  settings.set("decode_max_tokens", options.decode_max_tokens);  // -1: the library's rule
  settings.set("decode_hand_over", options.decode_hand_over);    // -1: the library's rule
  settings.set("seed", static_cast<int64_t>(options.seed));
  settings.set("verify_tokens", options.verify_tokens);
  root.set("settings", std::move(settings));

  json::Value ceilings = json::Value::object();
  json::Value gemm = timing_json(ctx.ceilings.gemm_timing);
  gemm.set("what", "cuBLAS cublasGemmEx bf16 8192^3, fp32 accumulate, random data");
  gemm.set("tflops", ctx.ceilings.gemm_tflops);
  ceilings.set("gemm", std::move(gemm));
  json::Value copy = timing_json(ctx.ceilings.copy_timing);
  copy.set("what", "cudaMemcpyAsync device to device; GB/s = (read + write bytes) / time");
  copy.set("buffer_bytes", static_cast<int64_t>(ctx.ceilings.copy_bytes));
  copy.set("gbps", ctx.ceilings.copy_gbps);
  ceilings.set("copy", std::move(copy));
  root.set("ceilings", std::move(ceilings));

  json::Value torch = json::Value::object();
  torch.set("ran", torch_run.ran);
  if (!torch_run.note.empty()) torch.set("note", torch_run.note);
  if (torch_run.ran) {
    for (const char* key : {"torch_version", "cuda_version", "device", "grouped_mm_signature"}) {
      if (const json::Value* v = torch_run.result.find(key); v != nullptr) torch.set(key, *v);
    }
  }
  root.set("torch_peer", std::move(torch));

  json::Value cases = json::Value::array();
  for (const CaseResult& result : results) {
    const CaseSpec& spec = result.spec;
    json::Value c = json::Value::object();
    c.set("name", spec.name());
    c.set("model", spec.model);
    json::Value shape = json::Value::object();
    shape.set("E", spec.shape.num_experts);
    shape.set("k", spec.shape.top_k);
    if (options.kind == BenchKind::kGemm) {
      shape.set("N", spec.shape.intermediate);
      shape.set("K", spec.shape.hidden);
    } else {
      shape.set("H", spec.shape.hidden);
      shape.set("I", spec.shape.intermediate);
    }
    c.set("shape", std::move(shape));
    c.set("routing", spec.routing.name());
    c.set("tokens", spec.num_tokens);
    c.set("active_experts", result.active_experts);
    c.set("max_expert_load", result.max_load);
    c.set("useful_flops", result.flops);
    c.set("min_bytes", result.min_bytes);
    c.set("floor_ms", result.floor_ms);
    c.set("floor_bound", result.compute_bound ? "compute" : "memory");
    c.set("ramp", measurement_json(ctx, result, result.ramp, nullptr));
    json::Value peers = json::Value::object();
    if (options.kind == BenchKind::kGemm && options.cublas_peer) {
      peers.set("cublas_expert_loop",
                measurement_json(ctx, result, result.cublas_loop, &result.ramp));
      peers.set("cublas_dense_same_shape",
                measurement_json(ctx, result, result.cublas_dense, &result.ramp));
    }
    peers.set("torch_grouped_mm", measurement_json(ctx, result, result.torch, &result.ramp));
    c.set("peers", std::move(peers));
    cases.push_back(std::move(c));
  }
  root.set("cases", std::move(cases));
  return root;
}

std::string cell_ms(const Measurement& m) {
  if (m.status != "ok") return m.status == "skipped" ? "-" : "ERR";
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%.3f", m.timing.median_ms);
  return buffer;
}

void print_table(const Context& ctx, const std::vector<CaseResult>& results) {
  const bool gemm = ctx.options->kind == BenchKind::kGemm;
  std::printf("\nceilings: cuBLAS bf16 8192^3 %.0f TFLOP/s, D2D copy %.0f GB/s  (%s, %d SMs)\n",
              ctx.ceilings.gemm_tflops, ctx.ceilings.copy_gbps, ctx.device.name.c_str(),
              ctx.device.sm_count);
  std::printf("%-34s %9s %7s %6s %5s %6s %9s %9s %9s %8s %8s\n", "case", "floor ms", "ramp ms",
              "TF/s", "%ceil", "eff", gemm ? "cublasLp" : "-", "torch ms", "best eff",
              "speedup", "check");
  for (const CaseResult& r : results) {
    const Measurement& ours = r.ramp;
    const bool ok = ours.status == "ok";
    double best_peer_ms = 0;
    for (const Measurement* peer : {&r.cublas_loop, &r.torch}) {
      if (peer->status == "ok" && (best_peer_ms == 0 || peer->timing.median_ms < best_peer_ms)) {
        best_peer_ms = peer->timing.median_ms;
      }
    }
    char tflops[16] = "-", ceil[16] = "-", eff[16] = "-", best_eff[16] = "-", speedup[16] = "-",
         check[24] = "-";
    if (ok) {
      const double t = r.flops / (ours.timing.median_ms * 1e9);
      std::snprintf(tflops, sizeof(tflops), "%.0f", t);
      std::snprintf(ceil, sizeof(ceil), "%.0f%%", 100.0 * t / ctx.ceilings.gemm_tflops);
      std::snprintf(eff, sizeof(eff), "%.2f", r.floor_ms / ours.timing.median_ms);
    }
    if (best_peer_ms > 0) {
      std::snprintf(best_eff, sizeof(best_eff), "%.2f", r.floor_ms / best_peer_ms);
      if (ok) std::snprintf(speedup, sizeof(speedup), "%.2fx", best_peer_ms / ours.timing.median_ms);
    }
    if (ours.verified) {
      std::snprintf(check, sizeof(check), "%s %.0e", ours.verify_pass ? "ok" : "FAIL",
                    ours.rel_error);
    }
    std::printf("%-34s %9.3f %7s %6s %5s %6s %9s %9s %9s %8s %8s\n", r.spec.name().c_str(),
                r.floor_ms, cell_ms(ours).c_str(), tflops, ceil, eff,
                gemm ? cell_ms(r.cublas_loop).c_str() : "-", cell_ms(r.torch).c_str(), best_eff,
                speedup, check);
  }
  std::printf("eff = roofline floor / time; speedup = best peer time / ramp time\n");
  for (const CaseResult& r : results) {
    for (const auto& [label, m] : {std::pair<const char*, const Measurement*>{"ramp", &r.ramp},
                                   {"cublas loop", &r.cublas_loop},
                                   {"torch", &r.torch}}) {
      if (m->status == "error") {
        std::printf("  %s %s: %s\n", r.spec.name().c_str(), label, m->note.c_str());
      }
    }
  }
}

}  // namespace

int run_bench(const BenchOptions& options) {
  int device_count = 0;
  if (cudaGetDeviceCount(&device_count) != cudaSuccess || device_count == 0) {
    cudaGetLastError();
    std::fprintf(stderr, "ramp bench: no CUDA device is present; nothing to measure\n");
    return 2;
  }
  auto fail = [](const char* what, const Status& status) {
    std::fprintf(stderr, "ramp bench: %s: %s\n", what, status.to_string().c_str());
    return 1;
  };
  Context ctx;
  ctx.options = &options;
  ctx.timing.warmup = options.warmup;
  ctx.timing.repeats = options.repeats;
  if (Status s = query_device(&ctx.device); !s.is_ok()) return fail("device query", s);
  if (cudaStreamCreateWithFlags(&ctx.stream, cudaStreamNonBlocking) != cudaSuccess) {
    std::fprintf(stderr, "ramp bench: cannot create a CUDA stream\n");
    return 1;
  }
  if (!options.run_kernel) {
    ctx.kernel_usable = false;
    ctx.kernel_note = "skipped: --no-kernel";
  } else if (ctx.device.major != 9) {
    ctx.kernel_usable = false;
    ctx.kernel_note = "skipped: the kernel is built for sm_90a only; this device is sm_" +
                      std::to_string(ctx.device.major) + std::to_string(ctx.device.minor);
  }
  if (Status s = ctx.flusher.init(); !s.is_ok()) return fail("L2 flush buffer", s);
  ctx.flush_bytes = ctx.flusher.bytes();
  if (Status s = ctx.cublas.init(ctx.stream); !s.is_ok()) return fail("cuBLAS", s);

  const std::string date = utc_now("%Y-%m-%dT%H:%M:%SZ");
  std::printf("ramp bench on %s (%d SMs), %s\n", ctx.device.name.c_str(), ctx.device.sm_count,
              date.c_str());
  if (Status s = measure_ceilings(ctx.cublas, ctx.stream, &ctx.flusher,
                                  std::max(options.repeats, 10), &ctx.ceilings);
      !s.is_ok()) {
    return fail("ceilings", s);
  }
  std::printf("ceilings: cuBLAS bf16 8192^3 %.1f TFLOP/s, D2D copy %.0f GB/s\n",
              ctx.ceilings.gemm_tflops, ctx.ceilings.copy_gbps);

  std::string path = options.out_path;
  if (path.empty()) {
    path = "bench/results/" + slug(ctx.device.name) + "-" + utc_now("%Y%m%d-%H%M") + "-" +
           (options.kind == BenchKind::kGemm ? "gemm" : "layer") + ".json";
  }
  std::error_code error;
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, error);
  // A run that is killed (a time limit on the GPU machine) keeps what it measured: after each
  // case, while every case so far is verified, the results so far go to PATH.partial (marked
  // "partial", no torch peer yet: it runs after the kernel's cases). Removed when the full file
  // is written, or as soon as a case is wrong or fails (a wrong run leaves no result file).
  const std::string partial_path = path + ".partial";
  bool partial_valid = true;
  TorchPeerRun pending_torch;
  pending_torch.note = "not run yet: partial results, the torch peer runs after the kernel's cases";

  std::vector<CaseResult> results;
  results.reserve(options.cases.size());
  {
    ModelWeights weights;
    for (const CaseSpec& spec : options.cases) {
      CaseResult result;
      result.spec = spec;
      result.routing = workloads::generate_routing(spec.routing, spec.num_tokens,
                                                   spec.shape.num_experts, spec.shape.top_k,
                                                   options.seed);
      fill_roofline(ctx, options.kind, &result);
      const Status status = options.kind == BenchKind::kGemm
                                ? run_gemm_case(ctx, weights, &result)
                                : run_layer_case(ctx, weights, &result);
      if (!status.is_ok()) record_error(&result.ramp, status);
      cudaGetLastError();
      std::printf("  %-34s ramp %s ms (%s)%s%s\n", spec.name().c_str(),
                  cell_ms(result.ramp).c_str(), result.ramp.status.c_str(),
                  result.ramp.verified ? (result.ramp.verify_pass ? ", verified" : ", WRONG")
                                       : "",
                  options.kind == BenchKind::kGemm
                      ? (", cuBLAS loop " + cell_ms(result.cublas_loop) + " ms").c_str()
                      : "");
      std::fflush(stdout);
      const bool case_valid = !gave_wrong_result(result.ramp) && !failed_to_run(result.ramp);
      results.push_back(std::move(result));
      if (partial_valid && !case_valid) {
        partial_valid = false;
        std::filesystem::remove(partial_path, error);
      }
      if (partial_valid) {
        json::Value partial = results_json(ctx, results, pending_torch, date);
        partial.set("partial", "cases measured before the run ended: " +
                                   std::to_string(results.size()) + " of " +
                                   std::to_string(options.cases.size()));
        if (Status s = json::write_file(partial_path, partial); !s.is_ok()) {
          std::fprintf(stderr, "ramp bench: could not write %s: %s\n", partial_path.c_str(),
                       s.to_string().c_str());
        }
      }
    }
  }
  // Give the torch process the memory back.
  ctx.flusher = L2Flusher();
  cudaDeviceSynchronize();

  TorchPeerRun torch_run;
  if (options.torch_peer) {
    std::vector<TorchPeerCase> peer_cases;
    for (const CaseResult& result : results) peer_cases.push_back({result.spec, &result.routing});
    run_torch_peer(options, peer_cases, &torch_run);
    if (!torch_run.note.empty()) std::printf("torch peer: %s\n", torch_run.note.c_str());
  } else {
    torch_run.note = "skipped: --no-torch-peer";
  }
  merge_torch(torch_run, &results);

  print_table(ctx, results);

  int wrong = 0, failed = 0;
  for (const CaseResult& r : results) {
    if (gave_wrong_result(r.ramp)) ++wrong;
    if (failed_to_run(r.ramp)) ++failed;
  }
  if (wrong > 0 || failed > 0) {
    std::fprintf(stderr,
                 "ramp bench: %d case(s) gave a wrong result and %d failed; no results file "
                 "written\n",
                 wrong, failed);
    std::filesystem::remove(partial_path, error);
    return 1;
  }
  const json::Value root = results_json(ctx, results, torch_run, date);
  if (Status s = json::write_file(path, root); !s.is_ok()) return fail("writing results", s);
  std::filesystem::remove(partial_path, error);
  std::printf("results: %s\n", path.c_str());
  cudaStreamDestroy(ctx.stream);
  return 0;
}

}  // namespace ramp::bench
