#include "cuda/cuda_backend.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "core/decode_plan.h"
#include "core/validation.h"
#include "cuda/combine.cuh"
#include "cuda/decode_layer.cuh"
#include "cuda/cuda_check.h"
#include "cuda/routing_prep.cuh"
#include "cuda/static_batching.h"
#include "dispatch/builtin_configs.h"
#include "dispatch/candidate_selection.h"

namespace ramp::cuda {

namespace {

constexpr size_t kWorkspaceAlignment = 256;
constexpr size_t align_workspace(size_t bytes) {
  return (bytes + kWorkspaceAlignment - 1) / kWorkspaceAlignment * kWorkspaceAlignment;
}

// The decode path's scheduling words sit at offset 0 of every workspace (grouped GEMM ones
// included, so a workspace shared between both kinds of call keeps them there), and the plan
// after them: nothing else of ramp writes there, and the words do not move when T changes
// (core/decode_plan.h says why that matters).
constexpr size_t kDecodeSyncOffset = 0;
constexpr size_t kPlanOffset = align_workspace(kDecodeSyncOffset + kDecodeSyncBytes);

struct WorkspaceLayout {
  PlanLayout plan;  // offsets from kPlanOffset
  size_t scratch = 0;
  size_t intermediate = 0;  // layer only
  size_t slot_out = 0;      // layer only
  size_t bytes = 0;
};

WorkspaceLayout workspace_layout(int32_t num_experts, int32_t num_slots, int32_t num_gemms,
                                 size_t intermediate_bytes, size_t slot_out_bytes) {
  WorkspaceLayout layout;
  layout.plan = plan_layout(num_experts, num_slots, num_gemms);
  size_t at = align_workspace(kPlanOffset + layout.plan.bytes);
  layout.scratch = at;
  at = align_workspace(at + routing_prep_scratch_bytes(num_experts, num_slots));
  layout.intermediate = at;
  at = align_workspace(at + intermediate_bytes);
  layout.slot_out = at;
  layout.bytes = align_workspace(at + slot_out_bytes);
  return layout;
}

WorkspaceLayout grouped_gemm_layout(int32_t num_experts, int32_t num_slots) {
  return workspace_layout(num_experts, num_slots, 1, 0, 0);
}

WorkspaceLayout layer_layout(const MoeShape& shape, int32_t num_slots) {
  return workspace_layout(shape.num_experts, num_slots, 2,
                          sizeof(bf16) * static_cast<size_t>(num_slots) * shape.intermediate,
                          sizeof(bf16) * static_cast<size_t>(num_slots) * shape.hidden);
}

Status check_workspace(const void* workspace, size_t workspace_bytes, size_t needed) {
  if (workspace == nullptr) return {ErrorCode::kInvalidArgument, "workspace is null"};
  if (reinterpret_cast<uintptr_t>(workspace) % kWorkspaceAlignment != 0) {
    return {ErrorCode::kMisaligned, "workspace is not 256-byte aligned"};
  }
  if (workspace_bytes < needed) {
    return {ErrorCode::kInvalidArgument, "workspace_bytes = " + std::to_string(workspace_bytes) +
                                             " is smaller than the " + std::to_string(needed) +
                                             " bytes this call needs"};
  }
  return Status::ok();
}

// The plan CTA holds every expert; reject more before any workspace arithmetic is trusted.
Status check_expert_count(int32_t num_experts) {
  if (num_experts > kMaxPrepExperts) {
    return {ErrorCode::kUnsupportedShape, "num_experts (E) = " + std::to_string(num_experts) +
                                              " exceeds the " + std::to_string(kMaxPrepExperts) +
                                              " experts the CUDA backend plans on the device"};
  }
  return Status::ok();
}

Status resolve_sm_count(const CudaOptions& options, int32_t* num_sms) {
  *num_sms = options.num_sms > 0 ? options.num_sms : device_sm_count();
  if (*num_sms < 1) return {ErrorCode::kNoDevice, "no CUDA device to run on"};
  return Status::ok();
}

// The grid of a graph-safe launch is fixed before the routing is known, so it needs the most
// tiles any routing of S slots can give. Under config c an expert with m rows has
// fb_c * ceil(m / tt_c) <= fb_c * (m + tt_c - 1) / tt_c tiles (fb: feature blocks times split-K,
// tt: token tile); summing the worst config per expert over at most min(E, S) non-empty experts
// bounds the total whichever configs the prep picks.
int32_t max_total_tiles(int32_t num_slots, int32_t num_experts, int32_t out_features) {
  double tiles_per_row = 0.0;
  double tiles_per_expert = 0.0;
  for (const TileConfig& config : dispatch::kBuiltinConfigs) {
    const double per_block = static_cast<double>(config.tiles_per_token_block(out_features));
    tiles_per_row = std::max(tiles_per_row, per_block / config.token_tile);
    tiles_per_expert = std::max(tiles_per_expert,
                                per_block * (config.token_tile - 1) / config.token_tile);
  }
  const double non_empty = std::min(num_experts, num_slots);
  const double bound = std::ceil(tiles_per_row * num_slots + tiles_per_expert * non_empty) + 1.0;
  return static_cast<int32_t>(
      std::min(bound, static_cast<double>(std::numeric_limits<int32_t>::max())));
}

// The current GPU's name, queried once per device.
std::string device_name() {
  static std::mutex mutex;
  static std::map<int, std::string> names;
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) {
    (void)cudaGetLastError();
    return {};
  }
  std::lock_guard<std::mutex> lock(mutex);
  auto found = names.find(device);
  if (found != names.end()) return found->second;
  cudaDeviceProp properties{};
  std::string name;
  if (cudaGetDeviceProperties(&properties, device) == cudaSuccess) {
    name = properties.name;
  } else {
    (void)cudaGetLastError();
  }
  names.emplace(device, name);
  return name;
}

// The shipped profile's candidate table for this GPU and GEMM shape (count 0 when there is
// none), looked up once per (device name, shape).
dispatch::CandidateTable selection_table(const dispatch::GemmShape& shape) {
  static std::mutex mutex;
  static std::map<std::tuple<std::string, int32_t, int32_t, int32_t, int32_t>,
                  dispatch::CandidateTable>
      tables;
  const std::string name = device_name();
  const auto key = std::make_tuple(name, shape.num_experts, shape.top_k, shape.out_features,
                                   shape.in_features);
  std::lock_guard<std::mutex> lock(mutex);
  auto found = tables.find(key);
  if (found != tables.end()) return found->second;
  dispatch::CandidateTable table;
  const dispatch::Profile* profile =
      dispatch::find_profile(dispatch::shipped_profiles(), name, shape);
  if (profile != nullptr) table = profile->candidate_table();
  tables.emplace(key, table);
  return table;
}

// A layer's two GEMMs: GEMM1 N = 2I, K = H; GEMM2 N = H, K = I. Sets prep's out_features too.
struct LayerGemmShapes {
  dispatch::GemmShape gemms[kMaxPrepGemms];
};
LayerGemmShapes layer_gemm_shapes(const MoeShape& shape, RoutingPrepArgs* prep) {
  const int32_t e = shape.num_experts, k = shape.top_k;
  const LayerGemmShapes shapes{{{e, k, 2 * shape.intermediate, shape.hidden},
                                {e, k, shape.hidden, shape.intermediate}}};
  for (int32_t g = 0; g < kMaxPrepGemms; ++g) {
    prep->out_features[g] = shapes.gemms[g].out_features;
  }
  return shapes;
}

// Fills prep.selection for the layer's or grouped GEMM's shapes when options ask for it, a
// profile exists for every GEMM and the prep can select; else leaves the builtin rule.
// *why (optional) receives which applied.
void attach_selection(RoutingPrepArgs* prep, const dispatch::GemmShape* shapes,
                      const CudaOptions& options, std::string* why) {
  auto say = [&](const std::string& text) {
    if (why != nullptr) *why = text;
  };
  if (!options.routing_aware) return say("builtin rule (routing_aware = false)");
  if (options.forced_config >= 0) return say("forced config " + std::to_string(options.forced_config));
  if (!routing_prep_can_select(*prep)) {
    return say("builtin rule (the device prep selects for E <= 256 only)");
  }
  dispatch::CandidateTable tables[kMaxPrepGemms];
  for (int32_t g = 0; g < prep->num_gemms; ++g) {
    tables[g] = selection_table(shapes[g]);
    if (tables[g].count == 0) {
      return say("builtin rule (no shipped profile for '" + device_name() + "' and " +
                 shapes[g].to_string() + ")");
    }
  }
  for (int32_t g = 0; g < prep->num_gemms; ++g) prep->selection[g] = tables[g];
  say("routing-aware (shipped profile for '" + device_name() + "')");
}

RoutingPrepArgs prep_args(void* workspace, const WorkspaceLayout& layout, const int32_t* topk_ids,
                          const float* topk_weights, int32_t num_tokens, int32_t top_k,
                          int32_t num_experts, int32_t num_sms, const CudaOptions& options) {
  char* base = static_cast<char*>(workspace);
  RoutingPrepArgs prep;
  prep.topk_ids = topk_ids;
  prep.topk_weights = topk_weights;
  prep.num_tokens = num_tokens;
  prep.top_k = top_k;
  prep.num_experts = num_experts;
  prep.routing = routing_view_at(base + kPlanOffset + layout.plan.routing, num_experts, top_k,
                                 num_tokens * top_k);
  prep.num_gemms = static_cast<int32_t>(layout.plan.task_maps.size());
  for (int32_t g = 0; g < prep.num_gemms; ++g) {
    prep.task_maps[g] =
        task_map_view_at(base + kPlanOffset + layout.plan.task_maps[g], num_experts);
  }
  prep.order = options.order;
  prep.forced_config = options.forced_config;
  prep.num_sms = num_sms;
  prep.scratch = base + layout.scratch;
  return prep;
}

// Copies topk_ids[slot] or topk_weights[slot] to a host array that holds it at index `slot`,
// the form routing_header_status quotes from.
template <class T>
Status copy_offending_value(const T* device_array, int32_t slot, int32_t num_slots,
                            cudaStream_t stream, std::vector<T>* host) {
  if (device_array == nullptr) return Status::ok();
  if (slot < 0 || slot >= num_slots) {
    return {ErrorCode::kInternal, "routing header names slot " + std::to_string(slot) +
                                      " outside [0, " + std::to_string(num_slots) + ")"};
  }
  host->assign(static_cast<size_t>(slot) + 1, T{});
  RAMP_CUDA_TRY(cudaMemcpyAsync(host->data() + slot, device_array + slot, sizeof(T),
                                cudaMemcpyDeviceToHost, stream));
  RAMP_CUDA_TRY(cudaStreamSynchronize(stream));
  return Status::ok();
}

}  // namespace

bool device_available() {
  int count = 0;
  const bool ok = cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
  (void)cudaGetLastError();  // a failed query must not look like a later launch's error
  return ok;
}

int32_t device_sm_count() {
  int device = 0;
  int sms = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return sms;
}

bool uses_decode_path(const MoeShape& shape, int32_t num_tokens, const CudaOptions& options) {
  if (!decode_path_fits(num_tokens, shape.top_k, shape.hidden) || options.forced_config >= 0 ||
      options.routing_aware) {
    return false;
  }
  if (options.decode_max_tokens < 0) {
    return decode_path_by_rule(num_tokens, shape.hidden, shape.intermediate);
  }
  return num_tokens <= options.decode_max_tokens;
}

std::string selected_configs(const MoeShape& shape, int32_t num_tokens,
                             const CudaOptions& options) {
  if (uses_decode_path(shape, num_tokens, options)) {
    return std::string("decode path (") +
           (options.decode_max_tokens < 0 ? "by rule" : "forced") +
           ": two kernels, mma.sync, no routing prep or combine launch)";
  }
  RoutingPrepArgs prep;
  prep.num_tokens = num_tokens;
  prep.top_k = shape.top_k;
  prep.num_experts = shape.num_experts;
  prep.num_gemms = 2;
  prep.forced_config = options.forced_config;
  const LayerGemmShapes shapes = layer_gemm_shapes(shape, &prep);
  std::string why;
  attach_selection(&prep, shapes.gemms, options, &why);
  return why;
}

size_t grouped_gemm_workspace_bytes(int32_t num_experts, int32_t num_tokens, int32_t top_k) {
  return grouped_gemm_layout(num_experts, num_tokens * top_k).bytes;
}

size_t moe_layer_workspace_bytes(const MoeShape& shape, int32_t num_tokens) {
  return layer_layout(shape, num_tokens * shape.top_k).bytes;
}

Status grouped_gemm(const GroupedGemmArgs& args, void* workspace, size_t workspace_bytes,
                    cudaStream_t stream, const CudaOptions& options) {
  RAMP_TRY(validate_grouped_gemm_args(args));
  RAMP_TRY(check_expert_count(args.num_experts));
  if (args.num_tokens == 0) return Status::ok();
  const int32_t num_slots = args.num_tokens * args.top_k;
  const WorkspaceLayout layout = grouped_gemm_layout(args.num_experts, num_slots);
  RAMP_TRY(check_workspace(workspace, workspace_bytes, layout.bytes));
  RAMP_TRY(validate_grouped_gemm_memory(args, workspace, layout.bytes));
  int32_t num_sms = 0;
  RAMP_TRY(resolve_sm_count(options, &num_sms));

  RoutingPrepArgs prep = prep_args(workspace, layout, args.topk_ids, nullptr, args.num_tokens,
                                   args.top_k, args.num_experts, num_sms, options);
  prep.out_features[0] = args.out_features;
  const dispatch::GemmShape shape{args.num_experts, args.top_k, args.out_features,
                                  args.in_features};
  attach_selection(&prep, &shape, options, nullptr);
  RAMP_TRY(launch_routing_prep(prep, stream));

  StaticBatchedGemm gemm{};
  gemm.epilogue = GemmEpilogue::kStoreBySlot;
  gemm.routing = prep.routing;
  gemm.task_map = prep.task_maps[0];
  gemm.a = args.x;
  gemm.a_row_stride = args.in_features;
  gemm.w = args.w;
  gemm.out_features = args.out_features;
  gemm.in_features = args.in_features;
  gemm.out = args.y;
  gemm.out_row_stride = args.out_features;
  gemm.topk_weights = nullptr;
  gemm.max_total_tiles = max_total_tiles(num_slots, args.num_experts, args.out_features);
  gemm.after_ramp_kernel = options.overlap_kernels;
  return launch_static_batched_gemm(gemm, stream);
}

Status moe_layer(const MoeShape& shape, const MoeLayerArgs& args, void* workspace,
                 size_t workspace_bytes, cudaStream_t stream, const CudaOptions& options) {
  RAMP_TRY(validate_layer_args(shape, args));
  RAMP_TRY(check_expert_count(shape.num_experts));
  for (int g = 0; g < 2; ++g) {
    if (options.l2_group[g] != 0 && options.l2_group[g] != 1 && options.l2_group[g] != 8) {
      return {ErrorCode::kInvalidArgument,
              "CudaOptions::l2_group[" + std::to_string(g) + "] = " +
                  std::to_string(options.l2_group[g]) +
                  " (0: by rule; the builtin set compiles groups 8 and 1)"};
    }
  }
  if (args.num_tokens == 0) return Status::ok();
  const int32_t num_slots = args.num_tokens * shape.top_k;
  const WorkspaceLayout layout = layer_layout(shape, num_slots);
  RAMP_TRY(check_workspace(workspace, workspace_bytes, layout.bytes));
  RAMP_TRY(validate_layer_memory(shape, args, workspace, layout.bytes));
  int32_t num_sms = 0;
  RAMP_TRY(resolve_sm_count(options, &num_sms));

  const LayerRowStrides strides = layer_row_strides(shape, args);
  char* base = static_cast<char*>(workspace);
  void* intermediate = base + layout.intermediate;  // [S, I] bf16 at the sorted row
  bf16* slot_out = reinterpret_cast<bf16*>(base + layout.slot_out);  // [S, H] bf16 by slot

  if (uses_decode_path(shape, args.num_tokens, options)) {
    DecodeLayerArgs decode;
    decode.topk_ids = args.topk_ids;
    decode.topk_weights = args.topk_weights;
    decode.num_tokens = args.num_tokens;
    decode.top_k = shape.top_k;
    decode.num_experts = shape.num_experts;
    decode.hidden = shape.hidden;
    decode.intermediate = shape.intermediate;
    decode.hidden_states = args.hidden;
    decode.hidden_row_stride = strides.hidden;
    decode.w13 = args.w13;
    decode.w2 = args.w2;
    decode.intermediate_out = static_cast<bf16*>(intermediate);  // [S, I] by slot here
    decode.header = routing_view_at(base + kPlanOffset + layout.plan.routing, shape.num_experts,
                                    shape.top_k, num_slots)
                        .header;
    decode.sync = reinterpret_cast<uint64_t*>(base + kDecodeSyncOffset);
    decode.out = args.out;
    decode.out_row_stride = strides.out;
    decode.num_sms = num_sms;
    decode.hand_over = options.decode_hand_over < 0 ? decode_hand_over_by_rule(args.num_tokens)
                                                    : options.decode_hand_over != 0;
    return launch_decode_layer(decode, stream);
  }

  RoutingPrepArgs prep =
      prep_args(workspace, layout, args.topk_ids, args.topk_weights, args.num_tokens,
                shape.top_k, shape.num_experts, num_sms, options);
  const LayerGemmShapes shapes = layer_gemm_shapes(shape, &prep);
  attach_selection(&prep, shapes.gemms, options, nullptr);
  RAMP_TRY(launch_routing_prep(prep, stream));

  StaticBatchedGemm gate_up{};
  gate_up.epilogue = GemmEpilogue::kSiluGateUp;
  gate_up.routing = prep.routing;
  gate_up.task_map = prep.task_maps[0];
  gate_up.a = args.hidden;
  gate_up.a_row_stride = strides.hidden;
  gate_up.w = args.w13;
  gate_up.out_features = 2 * shape.intermediate;
  gate_up.in_features = shape.hidden;
  gate_up.out = intermediate;
  gate_up.out_row_stride = shape.intermediate;
  gate_up.topk_weights = nullptr;
  gate_up.max_total_tiles = max_total_tiles(num_slots, shape.num_experts, gate_up.out_features);
  gate_up.after_ramp_kernel = options.overlap_kernels;
  const int32_t gemm1_group =
      options.l2_group[0] != 0
          ? options.l2_group[0]
          : dispatch::gemm1_l2_group(int64_t{2} * 2 * shape.intermediate * shape.hidden,
                                     num_slots, shape.num_experts);
  if (gemm1_group == 1) {
    gate_up.configs = dispatch::kBuiltinConfigsGroup1.configs;
    gate_up.num_configs = dispatch::kNumBuiltinConfigs;
  }
  RAMP_TRY(launch_static_batched_gemm(gate_up, stream));

  StaticBatchedGemm down{};
  down.epilogue = GemmEpilogue::kRouterWeighted;
  down.routing = prep.routing;
  down.task_map = prep.task_maps[1];
  down.a = intermediate;
  down.a_row_stride = shape.intermediate;
  down.w = args.w2;
  down.out_features = shape.hidden;
  down.in_features = shape.intermediate;
  down.out = slot_out;
  down.out_row_stride = shape.hidden;
  down.topk_weights = args.topk_weights;
  down.max_total_tiles = max_total_tiles(num_slots, shape.num_experts, down.out_features);
  down.after_ramp_kernel = options.overlap_kernels;
  if (options.l2_group[1] == 1) {
    down.configs = dispatch::kBuiltinConfigsGroup1.configs;
    down.num_configs = dispatch::kNumBuiltinConfigs;
  }
  RAMP_TRY(launch_static_batched_gemm(down, stream));

  CombineArgs combine;
  combine.slot_out = slot_out;
  combine.topk_ids = args.topk_ids;
  combine.num_experts = shape.num_experts;
  combine.num_tokens = args.num_tokens;
  combine.top_k = shape.top_k;
  combine.hidden = shape.hidden;
  combine.out = args.out;
  combine.out_row_stride = strides.out;
  combine.after_ramp_kernel = options.overlap_kernels;
  return launch_combine(combine, stream);
}

size_t workspace_plan_offset() { return kPlanOffset; }

Status read_routing_status(const void* workspace, int32_t num_experts, int32_t num_tokens,
                           int32_t top_k, const int32_t* topk_ids, const float* topk_weights,
                           cudaStream_t stream) {
  if (num_tokens == 0) return Status::ok();  // nothing was launched, so nothing was checked
  if (workspace == nullptr) return {ErrorCode::kInvalidArgument, "workspace is null"};
  const int32_t num_slots = num_tokens * top_k;
  const RoutingView routing = routing_view_at(static_cast<char*>(const_cast<void*>(workspace)) +
                                                  kPlanOffset,
                                              num_experts, top_k, num_slots);
  RoutingHeader header{};
  RAMP_CUDA_TRY(cudaMemcpyAsync(&header, routing.header, sizeof(header), cudaMemcpyDeviceToHost,
                                stream));
  RAMP_CUDA_TRY(cudaStreamSynchronize(stream));

  std::vector<int32_t> ids;
  std::vector<float> weights;
  if (header.error_bits & kRoutingBadExpertId) {
    RAMP_TRY(copy_offending_value(topk_ids, header.first_bad_id_slot, num_slots, stream, &ids));
  } else if (header.error_bits & kRoutingNonFiniteWeight) {
    RAMP_TRY(copy_offending_value(topk_weights, header.first_bad_weight_slot, num_slots, stream,
                                  &weights));
  }
  return routing_header_status(header, top_k, num_experts, ids.empty() ? nullptr : ids.data(),
                               weights.empty() ? nullptr : weights.data());
}

}  // namespace ramp::cuda
