// The static batching GEMM launcher (see static_batching.h): validates the call, builds the
// kernel parameters (tensor maps, split-K scratch) and calls the instance of the requested
// config set (static_batching_instances.h); the kernel itself is static_batching_kernel.cuh.
#include "cuda/static_batching.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "cuda/cuda_check.h"
#include "cuda/ptx/tma.h"
#include "cuda/static_batching_common.cuh"
#include "cuda/static_batching_instances.h"
#include "dispatch/kernel_catalog.h"

namespace ramp::cuda {
namespace detail {

Status invalid(ErrorCode code, const std::string& what) {
  return Status(code, "launch_static_batched_gemm: " + what);
}

bool aligned(const void* pointer, uintptr_t bytes) {
  return (reinterpret_cast<uintptr_t>(pointer) & (bytes - 1)) == 0;
}

// Weight maps, one per feature tile (TMA box height). GEMM1 views w13[e] as
// (k, row-in-8, gate/up, 8-row block) so one copy brings gate rows c..c+7 followed by up rows
// I+c..I+c+7, block after block: the interleave the SiLU epilogue needs.
Status encode_weight_maps(const StaticBatchedGemm& gemm, KernelParams* params) {
  const uint64_t k = static_cast<uint64_t>(gemm.in_features);
  const uint64_t n = static_cast<uint64_t>(gemm.out_features);
  const uint64_t experts = static_cast<uint64_t>(gemm.routing.num_experts);
  const uint64_t row_bytes = k * 2;
  for (int index = 0; index < kNumWeightMaps; ++index) {
    const uint32_t feature_tile = static_cast<uint32_t>(weight_map_feature_tile(index));
    bool ok;
    if (gemm.epilogue == GemmEpilogue::kSiluGateUp) {
      const uint64_t intermediate = n / 2;
      const uint64_t dims[5] = {k, 8, 2, intermediate / 8, experts};
      const uint64_t strides[4] = {row_bytes, intermediate * row_bytes, 8 * row_bytes,
                                   n * row_bytes};
      const uint32_t box[5] = {static_cast<uint32_t>(kKTile), 8, 2, feature_tile / 16, 1};
      ok = ptx::encode_bf16_tile_map_swizzle128(&params->weight_maps[index], gemm.w, 5, dims,
                                                strides, box);
    } else {
      const uint64_t dims[3] = {k, n, experts};
      const uint64_t strides[2] = {row_bytes, n * row_bytes};
      const uint32_t box[3] = {static_cast<uint32_t>(kKTile), feature_tile, 1};
      ok = ptx::encode_bf16_tile_map_swizzle128(&params->weight_maps[index], gemm.w, 3, dims,
                                                strides, box);
    }
    if (!ok) {
      return invalid(ErrorCode::kCudaError,
                     "cuTensorMapEncodeTiled rejected the weight tensor (or no driver entry "
                     "point); N=" + std::to_string(n) + " K=" + std::to_string(k));
    }
  }
  return Status::ok();
}

// `a` as a [rows, K] tensor read one row per copy (box 64 x 1): hidden [T, K] for the gathers,
// the intermediate [S, K] for GEMM2.
Status encode_token_map(const StaticBatchedGemm& gemm, KernelParams* params) {
  const int64_t slots = gemm.routing.num_slots;
  int64_t rows = gemm.epilogue == GemmEpilogue::kRouterWeighted ? slots : slots / gemm.routing.top_k;
  if (rows < 1) rows = 1;  // no tile reads it then; the map just has to be valid
  const uint64_t dims[2] = {static_cast<uint64_t>(gemm.in_features), static_cast<uint64_t>(rows)};
  const uint64_t strides[1] = {static_cast<uint64_t>(gemm.a_row_stride) * 2};
  const uint32_t box[2] = {static_cast<uint32_t>(kKTile), 1};
  if (!ptx::encode_bf16_tile_map_swizzle128(&params->token_map, gemm.a, 2, dims, strides, box)) {
    return invalid(ErrorCode::kCudaError,
                   "cuTensorMapEncodeTiled rejected the token rows (a) or no driver entry point");
  }
  return Status::ok();
}

// `a` as boxes of kRowBoxRows consecutive rows (token_rows_by_box): GEMM2's intermediate
// [S, K]. Rows past S read as zeros.
Status encode_row_box_map(const StaticBatchedGemm& gemm, KernelParams* params) {
  const int64_t rows = gemm.routing.num_slots < 1 ? 1 : gemm.routing.num_slots;
  const uint64_t dims[2] = {static_cast<uint64_t>(gemm.in_features), static_cast<uint64_t>(rows)};
  const uint64_t strides[1] = {static_cast<uint64_t>(gemm.a_row_stride) * 2};
  const uint32_t box[2] = {static_cast<uint32_t>(kKTile), static_cast<uint32_t>(kRowBoxRows)};
  if (!ptx::encode_bf16_tile_map_swizzle128(&params->row_box_map, gemm.a, 2, dims, strides, box)) {
    return invalid(ErrorCode::kCudaError,
                   "cuTensorMapEncodeTiled rejected the sorted token rows (a) or no driver entry "
                   "point; rows=" + std::to_string(rows) + " K=" + std::to_string(gemm.in_features));
  }
  return Status::ok();
}

// GEMM1's output, the intermediate [S, columns = I] in sorted rows, for the epilogue's tensor
// stores (KernelParams::out_box_map / out_row_map).
Status encode_sorted_output_maps(const StaticBatchedGemm& gemm, int32_t columns,
                                 KernelParams* params) {
  const int64_t rows = gemm.routing.num_slots < 1 ? 1 : gemm.routing.num_slots;
  const uint64_t dims[2] = {static_cast<uint64_t>(columns), static_cast<uint64_t>(rows)};
  const uint64_t strides[1] = {static_cast<uint64_t>(gemm.out_row_stride) * 2};
  const uint32_t box[2] = {static_cast<uint32_t>(kStoreBoxColumns),
                           static_cast<uint32_t>(kStoreBoxRows)};
  const uint32_t row[2] = {static_cast<uint32_t>(kStoreBoxColumns), 1};
  if (!ptx::encode_bf16_tile_map_swizzle128(&params->out_box_map, gemm.out, 2, dims, strides, box) ||
      !ptx::encode_bf16_tile_map_swizzle128(&params->out_row_map, gemm.out, 2, dims, strides, row)) {
    return invalid(ErrorCode::kCudaError,
                   "cuTensorMapEncodeTiled rejected the sorted-row output or no driver entry "
                   "point; rows=" + std::to_string(rows) + " columns=" + std::to_string(columns) +
                       " row stride=" + std::to_string(gemm.out_row_stride));
  }
  return Status::ok();
}

const SetLaunchers* catalog_launchers() {
  static const std::vector<SetLaunchers> table = [] {
    std::vector<SetLaunchers> entries(static_cast<size_t>(dispatch::kCatalogSize));
    [&]<int... kParts>(std::integer_sequence<int, kParts...>) {
      (register_catalog_part<kParts>(entries.data()), ...);
    }(std::make_integer_sequence<int, dispatch::kKernelCatalogParts>{});
    return entries;
  }();
  return table.data();
}

bool equals_list(const TileConfig* configs, int32_t num_configs, const TileConfig* list) {
  if (num_configs != dispatch::kNumBuiltinConfigs) return false;
  for (int32_t c = 0; c < num_configs; ++c) {
    if (!(configs[c] == list[c])) return false;
  }
  return true;
}

// The launchers of the set, or why there are none.
Status find_launchers(const TileConfig* configs, int32_t num_configs, SetLaunchers* launchers) {
  if (configs == nullptr || equals_list(configs, num_configs, dispatch::kBuiltinConfigs)) {
    *launchers = builtin_set_launchers();
    return Status::ok();
  }
  if (equals_list(configs, num_configs, dispatch::kBuiltinConfigsGroup1.configs)) {
    *launchers = builtin_group1_set_launchers();
    return Status::ok();
  }
  if (num_configs != 1) {
    return invalid(ErrorCode::kUnsupportedShape,
                   "a launch compiles either the builtin config set (kBuiltinConfigs, or its "
                   "L2-group-1 variant) or one catalog entry; got a set of " +
                       std::to_string(num_configs) + " configs");
  }
  const int32_t index = dispatch::catalog_index_of(configs[0]);
  if (index < 0) {
    return invalid(ErrorCode::kUnsupportedShape,
                   "config '" + configs[0].to_string() + "' is not in the catalog (ramp configs)");
  }
  const SetLaunchers& entry = catalog_launchers()[index];
  if (!entry.compiled()) {
    return invalid(ErrorCode::kUnsupportedShape,
                   "catalog entry " + std::to_string(index) + " '" + configs[0].to_string() +
                       "' is not compiled in this build (RAMP_KERNEL_CATALOG=subset compiles "
                       "the builtin set and a representative subset; configure with full)");
  }
  *launchers = entry;
  return Status::ok();
}

size_t split_counter_bytes(int32_t max_total_tiles) {
  return sizeof(int32_t) * 2 * static_cast<size_t>(max_total_tiles > 0 ? max_total_tiles : 0);
}

}  // namespace detail

size_t static_batched_gemm_split_scratch_bytes(const TileConfig* configs, int32_t num_configs,
                                               int32_t max_total_tiles) {
  // From the configs themselves (not the instance table): the size is known whether or not
  // this build compiled the set.
  bool splits = false;
  int64_t largest_tile = 0;
  const TileConfig* set = configs != nullptr ? configs : dispatch::kBuiltinConfigs;
  const int32_t count = configs != nullptr ? num_configs : dispatch::kNumBuiltinConfigs;
  for (int32_t c = 0; c < count; ++c) {
    splits = splits || set[c].split_k > 1;
    largest_tile = std::max<int64_t>(largest_tile, int64_t{set[c].token_tile} * set[c].feature_tile);
  }
  if (!splits || max_total_tiles <= 0) return 0;
  const size_t partials = sizeof(float) * static_cast<size_t>(largest_tile) *
                          static_cast<size_t>(max_total_tiles);
  return (partials + 255) / 256 * 256 + detail::split_counter_bytes(max_total_tiles);
}

bool static_batched_gemm_compiled(const TileConfig* configs, int32_t num_configs,
                                  std::string* why_not) {
  detail::SetLaunchers launchers;
  const Status status = detail::find_launchers(configs, num_configs, &launchers);
  if (!status.is_ok() && why_not != nullptr) *why_not = status.message();
  return status.is_ok();
}

Status launch_static_batched_gemm(const StaticBatchedGemm& gemm, cudaStream_t stream) {
  using detail::aligned;
  using detail::invalid;
  if (gemm.max_total_tiles <= 0) return Status::ok();
  detail::SetLaunchers launchers;
  RAMP_TRY(detail::find_launchers(gemm.configs, gemm.num_configs, &launchers));
  if (gemm.in_features <= 0 || gemm.in_features % detail::kKTile != 0) {
    return invalid(ErrorCode::kUnsupportedShape,
                   "in_features K=" + std::to_string(gemm.in_features) +
                       " must be a positive multiple of 64");
  }
  {
    const TileConfig* set = gemm.configs != nullptr ? gemm.configs : dispatch::kBuiltinConfigs;
    const int32_t count = gemm.configs != nullptr ? gemm.num_configs : dispatch::kNumBuiltinConfigs;
    for (int32_t c = 0; c < count; ++c) {
      if (!dispatch::split_divides_depth(set[c], gemm.in_features)) {
        return invalid(ErrorCode::kUnsupportedShape,
                       "config '" + set[c].to_string() + "' splits K into " +
                           std::to_string(set[c].split_k) + ", which does not divide K/64 = " +
                           std::to_string(gemm.in_features / detail::kKTile));
      }
    }
  }
  if (gemm.out_features <= 0) {
    return invalid(ErrorCode::kUnsupportedShape,
                   "out_features N=" + std::to_string(gemm.out_features) + " must be positive");
  }
  if (gemm.epilogue == GemmEpilogue::kSiluGateUp && gemm.out_features % 16 != 0) {
    return invalid(ErrorCode::kUnsupportedShape,
                   "GEMM1 out_features 2I=" + std::to_string(gemm.out_features) +
                       " needs I a multiple of 8 (gate/up rows are interleaved in blocks of 8)");
  }
  if (gemm.routing.num_experts <= 0 || gemm.routing.top_k <= 0) {
    return invalid(ErrorCode::kInvalidArgument, "routing view has no experts or top_k <= 0");
  }
  if (gemm.a == nullptr || gemm.w == nullptr || gemm.out == nullptr ||
      gemm.task_map.header == nullptr || gemm.routing.sorted_slots == nullptr) {
    return invalid(ErrorCode::kInvalidArgument, "a null pointer among a, w, out, plan views");
  }
  if (gemm.epilogue == GemmEpilogue::kRouterWeighted && gemm.topk_weights == nullptr) {
    return invalid(ErrorCode::kInvalidArgument, "kRouterWeighted needs topk_weights");
  }
  if (!aligned(gemm.a, 16) || !aligned(gemm.w, 16) || gemm.a_row_stride % 8 != 0) {
    return invalid(ErrorCode::kMisaligned,
                   "a and w must be 16-byte aligned and a_row_stride a multiple of 8 elements "
                   "(16-byte row loads)");
  }
  const size_t out_element = 2;  // bf16 for every epilogue
  if (!aligned(gemm.out, out_element)) {
    return invalid(ErrorCode::kMisaligned, "out is not aligned to its element size");
  }

  detail::KernelParams params{};
  RAMP_TRY(detail::encode_weight_maps(gemm, &params));
  if constexpr (detail::kTokenRowsByTma) RAMP_TRY(detail::encode_token_map(gemm, &params));
  if (gemm.epilogue == GemmEpilogue::kRouterWeighted) {
    RAMP_TRY(detail::encode_row_box_map(gemm, &params));
  }
  params.routing = gemm.routing;
  params.task_map = gemm.task_map;
  params.a = static_cast<const __nv_bfloat16*>(gemm.a);
  params.a_row_stride = gemm.a_row_stride;
  params.out_features = gemm.out_features;
  params.in_features = gemm.in_features;
  params.out = gemm.out;
  params.out_row_stride = gemm.out_row_stride;
  params.topk_weights = gemm.topk_weights;
  const int32_t stored_columns = gemm.epilogue == GemmEpilogue::kSiluGateUp
                                     ? gemm.out_features / 2
                                     : gemm.out_features;
  params.paired_stores = aligned(gemm.out, 2 * out_element) && gemm.out_row_stride % 2 == 0 &&
                         stored_columns % 2 == 0;
  params.bulk_stores = aligned(gemm.out, 16) && (gemm.out_row_stride * out_element) % 16 == 0;
  if (params.bulk_stores && gemm.epilogue == GemmEpilogue::kSiluGateUp) {
    RAMP_TRY(detail::encode_sorted_output_maps(gemm, stored_columns, &params));
  }

  bool overlap = gemm.after_ramp_kernel;
  if (launchers.split_k) {
    const size_t needed =
        static_batched_gemm_split_scratch_bytes(gemm.configs, gemm.num_configs, gemm.max_total_tiles);
    if (gemm.split_scratch == nullptr || !aligned(gemm.split_scratch, 256) ||
        gemm.split_scratch_bytes < needed) {
      return invalid(ErrorCode::kInvalidArgument,
                     "a split-K config needs split_scratch of " + std::to_string(needed) +
                         " bytes, 256-byte aligned (static_batched_gemm_split_scratch_bytes); got " +
                         std::to_string(gemm.split_scratch_bytes) + " bytes at " +
                         (gemm.split_scratch == nullptr ? "null" : "an address"));
    }
    const size_t counters = detail::split_counter_bytes(gemm.max_total_tiles);
    char* scratch = static_cast<char*>(gemm.split_scratch);
    params.split_partials = reinterpret_cast<float*>(scratch);
    params.split_counters = reinterpret_cast<int32_t*>(scratch + (needed - counters));
    params.split_tile_floats = launchers.largest_tile_floats;
    RAMP_CUDA_TRY(cudaMemsetAsync(params.split_counters, 0, counters, stream));
    overlap = false;  // the memset sits between the previous kernel and this one
  }
  const int epilogue = static_cast<int>(gemm.epilogue);
  if (epilogue < 0 || epilogue > 2) return invalid(ErrorCode::kInvalidArgument, "unknown epilogue");
  // The one place the streaming choice becomes a kernel instance (builtin sets only).
  const bool streams = dispatch::streams_weights(gemm.routing.num_slots, gemm.routing.num_experts) &&
                       launchers.streaming_by_epilogue[epilogue] != nullptr;
  const detail::SetLauncher launch =
      streams ? launchers.streaming_by_epilogue[epilogue] : launchers.by_epilogue[epilogue];
  return launch(params, gemm.max_total_tiles, overlap, stream);
}

}  // namespace ramp::cuda
