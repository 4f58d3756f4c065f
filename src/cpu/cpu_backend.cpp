#include "cpu/cpu_backend.h"

#include <atomic>
#include <cmath>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "core/task_mapping.h"
#include "core/validation.h"
#include "cpu/tile_gemm.h"

namespace ramp::cpu {
namespace {

// One thread's scratch: packed panels and the row pointers of the tile it is working on.
struct Worker {
  TileGemm gemm;
  std::vector<const bf16*> a_rows, b_rows;
};

// What a CTA with linear index `block` computes, found exactly as the kernel finds it:
// TilePrefix ballot -> task -> tile -> (token block, feature block).
struct TileWork {
  int32_t expert;
  int32_t first_row, end_row;  // sorted row positions [first_row, end_row) of the task's expert
  int32_t first_feature, end_feature;  // [first, end) in units of the GEMM's N, clipped to N
};

TileWork locate_tile(const Plan& plan, int32_t gemm_index, int32_t block) {
  const TaskMapView& map = plan.task_map(gemm_index);
  const GemmPlanSpec& gemm = plan.gemm(gemm_index);
  const TaskTile task_tile =
      map_block_to_task(map.tile_prefix, map.chunk_last, map.header->num_tasks, block, EmulatedBallot{});
  const TaskDesc& task = map.tasks[task_tile.task];
  const TileConfig& config = gemm.configs[task.config];
  const TileCoord coord = tile_coord(task_tile.tile, config.token_blocks(task.row_count),
                                     config.feature_blocks(gemm.out_features), config.group_m);
  const int32_t first_row = coord.token_block * config.token_tile;
  const int32_t first_feature = coord.feature_block * config.feature_tile;
  return TileWork{task.expert, task.row_begin + first_row,
                  task.row_begin + min_i32(first_row + config.token_tile, task.row_count),
                  first_feature, min_i32(first_feature + config.feature_tile, gemm.out_features)};
}

// Runs body(item, worker) for every item in [0, count); workers pull items from one atomic
// counter, so the split of items over threads varies run to run but each item's result does not.
template <class Body>
void parallel_for(int32_t count, std::vector<Worker>& workers, const Body& body) {
  std::atomic<int32_t> next{0};
  auto drain = [&](Worker* worker) {
    for (int32_t item = next.fetch_add(1, std::memory_order_relaxed); item < count;
         item = next.fetch_add(1, std::memory_order_relaxed)) {
      body(item, *worker);
    }
  };
  const int32_t helpers = min_i32(static_cast<int32_t>(workers.size()), count) - 1;
  std::vector<std::thread> threads;
  threads.reserve(helpers > 0 ? helpers : 0);
  for (int32_t h = 1; h <= helpers; ++h) threads.emplace_back(drain, &workers[h]);
  drain(&workers[0]);
  for (std::thread& thread : threads) thread.join();
}

Status make_workers(int num_threads, std::vector<Worker>* workers) {
  if (num_threads < 0) {
    return {ErrorCode::kInvalidArgument,
            "num_threads = " + std::to_string(num_threads) + " is negative (0 = all cores)"};
  }
  int count = num_threads;
  if (count == 0) count = static_cast<int>(std::thread::hardware_concurrency());
  workers->resize(count > 0 ? count : 1);
  return Status::ok();
}

// The plan must describe this call: same routing sizes, the same ids (a plan built from other
// ids would silently compute a wrong answer), and GEMM dimensions matching the arguments.
Status check_plan_routing(const Plan& plan, const int32_t* topk_ids, int32_t num_tokens,
                          int32_t top_k, int32_t num_experts) {
  const RoutingView& routing = plan.routing();
  if (plan.num_tokens() != num_tokens || routing.top_k != top_k ||
      routing.num_experts != num_experts) {
    return {ErrorCode::kShapeMismatch,
            "plan was built for T=" + std::to_string(plan.num_tokens()) + " k=" +
                std::to_string(routing.top_k) + " E=" + std::to_string(routing.num_experts) +
                ", arguments have T=" + std::to_string(num_tokens) + " k=" +
                std::to_string(top_k) + " E=" + std::to_string(num_experts)};
  }
  for (int32_t expert = 0; expert < num_experts; ++expert) {
    for (int32_t row = routing.expert_offsets[expert]; row < routing.expert_offsets[expert + 1];
         ++row) {
      const int32_t slot = routing.sorted_slots[row];
      if (topk_ids[slot] != expert) {
        return {ErrorCode::kInvalidArgument,
                "plan does not match topk_ids: it routes slot " + std::to_string(slot) +
                    " to expert " + std::to_string(expert) + ", topk_ids[" +
                    std::to_string(slot / top_k) + "][" + std::to_string(slot % top_k) +
                    "] = " + std::to_string(topk_ids[slot])};
      }
    }
  }
  return Status::ok();
}

Status check_plan_gemm(const Plan& plan, int32_t gemm_index, int32_t out_features,
                       int32_t in_features, const char* role) {
  const GemmPlanSpec& gemm = plan.gemm(gemm_index);
  if (gemm.out_features != out_features || gemm.in_features != in_features) {
    return {ErrorCode::kShapeMismatch,
            std::string("plan gemm ") + std::to_string(gemm_index) + " (" + role + ") is N=" +
                std::to_string(gemm.out_features) + " K=" + std::to_string(gemm.in_features) +
                ", expected N=" + std::to_string(out_features) + " K=" +
                std::to_string(in_features)};
  }
  for (size_t c = 0; c < gemm.configs.size(); ++c) {
    if (gemm.configs[c].split_k != 1) {
      return {ErrorCode::kUnsupportedShape,
              std::string("plan gemm ") + std::to_string(gemm_index) + " config " +
                  std::to_string(c) + " (" + gemm.configs[c].to_string() +
                  ") splits K; the CPU backend does not split K"};
    }
  }
  return Status::ok();
}

void load_tile_tokens(const RoutingView& routing, const TileWork& tile, const bf16* x,
                      int64_t row_stride, std::vector<const bf16*>* rows) {
  rows->clear();
  for (int32_t row = tile.first_row; row < tile.end_row; ++row) {
    const int32_t token = token_of_slot(slot_of_row(routing, row), routing.top_k);
    rows->push_back(x + token * row_stride);
  }
}

float silu(float x) { return x / (1.0f + std::exp(-x)); }

}  // namespace

Status run_grouped_gemm(const Plan& plan, const GroupedGemmArgs& args, int num_threads) {
  RAMP_TRY(validate_grouped_gemm_args(args));
  RAMP_TRY(validate_routing_values(args.topk_ids, nullptr, args.num_tokens, args.top_k,
                                   args.num_experts));
  if (plan.num_gemms() != 1) {
    return {ErrorCode::kShapeMismatch, "grouped GEMM needs a plan with 1 gemm, plan has " +
                                           std::to_string(plan.num_gemms())};
  }
  RAMP_TRY(check_plan_gemm(plan, 0, args.out_features, args.in_features, "grouped GEMM"));
  RAMP_TRY(check_plan_routing(plan, args.topk_ids, args.num_tokens, args.top_k, args.num_experts));
  std::vector<Worker> workers;
  RAMP_TRY(make_workers(num_threads, &workers));

  const RoutingView& routing = plan.routing();
  const int64_t n_total = args.out_features, k_total = args.in_features;
  parallel_for(plan.task_map(0).header->total_tiles, workers, [&](int32_t block, Worker& w) {
    const TileWork tile = locate_tile(plan, 0, block);
    load_tile_tokens(routing, tile, args.x, k_total, &w.a_rows);
    w.b_rows.clear();
    const bf16* weight = args.w + tile.expert * n_total * k_total;
    for (int32_t n = tile.first_feature; n < tile.end_feature; ++n) {
      w.b_rows.push_back(weight + n * k_total);
    }
    w.gemm.pack_a(w.a_rows, args.in_features);
    w.gemm.pack_b(w.b_rows, args.in_features);
    w.gemm.multiply();
    for (int32_t i = 0; i < tile.end_row - tile.first_row; ++i) {
      bf16* y_row = args.y + slot_of_row(routing, tile.first_row + i) * n_total;
      for (int32_t j = 0; j < tile.end_feature - tile.first_feature; ++j) {
        y_row[tile.first_feature + j] = bf16::from_float(w.gemm.at(i, j));
      }
    }
  });
  return Status::ok();
}

Status run_moe_layer(const Plan& plan, const MoeShape& shape, const MoeLayerArgs& args,
                     int num_threads) {
  RAMP_TRY(validate_shape(shape));
  RAMP_TRY(validate_layer_args(shape, args));
  RAMP_TRY(validate_routing_values(args.topk_ids, args.topk_weights, args.num_tokens,
                                   shape.top_k, shape.num_experts));
  if (plan.num_gemms() != 2) {
    return {ErrorCode::kShapeMismatch,
            "MoE layer needs a plan with 2 gemms, plan has " + std::to_string(plan.num_gemms())};
  }
  const int32_t hidden = shape.hidden, inter = shape.intermediate, top_k = shape.top_k;
  RAMP_TRY(check_plan_gemm(plan, 0, 2 * inter, hidden, "GEMM1"));
  RAMP_TRY(check_plan_gemm(plan, 1, hidden, inter, "GEMM2"));
  for (const TileConfig& config : plan.gemm(0).configs) {
    if (config.feature_tile % 2 != 0) {
      return {ErrorCode::kUnsupportedShape, "GEMM1 config " + config.to_string() +
                                                " has an odd feature tile; SiLU fusion pairs "
                                                "gate and up columns"};
    }
  }
  RAMP_TRY(check_plan_routing(plan, args.topk_ids, args.num_tokens, top_k, shape.num_experts));
  std::vector<Worker> workers;
  RAMP_TRY(make_workers(num_threads, &workers));
  if (args.num_tokens == 0) return Status::ok();

  const RoutingView& routing = plan.routing();
  const int64_t num_slots = static_cast<int64_t>(args.num_tokens) * top_k;
  const int64_t hidden_stride = args.hidden_row_stride != 0 ? args.hidden_row_stride : hidden;
  const int64_t out_stride = args.out_row_stride != 0 ? args.out_row_stride : hidden;
  // The GPU's two workspaces: the intermediate at sorted rows (GEMM2 reads an expert's rows
  // contiguously) and the weighted slot outputs in fp32 (the combine rounds once).
  std::vector<bf16> intermediate(num_slots * inter);
  std::vector<float> slot_out(num_slots * hidden);

  // GEMM1: feature block f covers intermediate columns [f*F/2, (f+1)*F/2): the tile multiplies
  // the matching gate rows and up rows so SiLU(gate)·up is formed before anything is stored.
  parallel_for(plan.task_map(0).header->total_tiles, workers, [&](int32_t block, Worker& w) {
    const TileWork tile = locate_tile(plan, 0, block);
    const int32_t first_column = tile.first_feature / 2;
    const int32_t end_column = min_i32(tile.end_feature / 2, inter);
    const int32_t width = end_column - first_column;
    if (width <= 0) return;
    load_tile_tokens(routing, tile, args.hidden, hidden_stride, &w.a_rows);
    const bf16* w13 = args.w13 + static_cast<int64_t>(tile.expert) * 2 * inter * hidden;
    w.b_rows.clear();
    for (int32_t c = first_column; c < end_column; ++c) w.b_rows.push_back(w13 + c * int64_t{hidden});
    for (int32_t c = first_column; c < end_column; ++c) {
      w.b_rows.push_back(w13 + (inter + c) * int64_t{hidden});
    }
    w.gemm.pack_a(w.a_rows, hidden);
    w.gemm.pack_b(w.b_rows, hidden);
    w.gemm.multiply();
    for (int32_t i = 0; i < tile.end_row - tile.first_row; ++i) {
      bf16* row = intermediate.data() + (tile.first_row + i) * int64_t{inter};
      for (int32_t j = 0; j < width; ++j) {
        row[first_column + j] = bf16::from_float(silu(w.gemm.at(i, j)) * w.gemm.at(i, width + j));
      }
    }
  });

  // GEMM2: an expert's intermediate rows are contiguous, so no gather; the router weight is
  // applied in the epilogue, per slot.
  parallel_for(plan.task_map(1).header->total_tiles, workers, [&](int32_t block, Worker& w) {
    const TileWork tile = locate_tile(plan, 1, block);
    w.a_rows.clear();
    for (int32_t row = tile.first_row; row < tile.end_row; ++row) {
      w.a_rows.push_back(intermediate.data() + row * int64_t{inter});
    }
    const bf16* w2 = args.w2 + static_cast<int64_t>(tile.expert) * hidden * inter;
    w.b_rows.clear();
    for (int32_t n = tile.first_feature; n < tile.end_feature; ++n) {
      w.b_rows.push_back(w2 + n * int64_t{inter});
    }
    w.gemm.pack_a(w.a_rows, inter);
    w.gemm.pack_b(w.b_rows, inter);
    w.gemm.multiply();
    for (int32_t i = 0; i < tile.end_row - tile.first_row; ++i) {
      const int32_t slot = slot_of_row(routing, tile.first_row + i);
      const float weight = args.topk_weights[slot];
      float* out_row = slot_out.data() + slot * int64_t{hidden};
      for (int32_t j = 0; j < tile.end_feature - tile.first_feature; ++j) {
        out_row[tile.first_feature + j] = w.gemm.at(i, j) * weight;
      }
    }
  });

  // Combine: a token's k slot rows summed in order j = 0, 1, ... (no atomics), rounded once.
  constexpr int32_t kTokensPerItem = 16;
  parallel_for(ceil_div(args.num_tokens, kTokensPerItem), workers, [&](int32_t item, Worker&) {
    const int32_t end_token = min_i32((item + 1) * kTokensPerItem, args.num_tokens);
    for (int32_t token = item * kTokensPerItem; token < end_token; ++token) {
      const float* first = slot_out.data() + int64_t{token} * top_k * hidden;
      bf16* out_row = args.out + token * out_stride;
      for (int32_t n = 0; n < hidden; ++n) {
        float sum = first[n];
        for (int32_t j = 1; j < top_k; ++j) sum += first[int64_t{j} * hidden + n];
        out_row[n] = bf16::from_float(sum);
      }
    }
  });
  return Status::ok();
}

}  // namespace ramp::cpu
