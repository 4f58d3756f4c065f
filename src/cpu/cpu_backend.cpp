#include "cpu/cpu_backend.h"

#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstddef>
#include <mutex>
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

int resolved_thread_count(int num_threads) {
  int count = num_threads;
  if (count == 0) count = static_cast<int>(std::thread::hardware_concurrency());
  return count > 0 ? count : 1;
}

}  // namespace

// Helpers sleep on `wake` between jobs; a job is published under the mutex with a new
// generation number, so a helper never runs the same job twice nor misses one (the caller
// waits for every helper before it publishes the next).
struct Executor::Impl {
  explicit Impl(int num_threads) : workers(resolved_thread_count(num_threads)) {
    helpers.reserve(workers.size() - 1);
    try {
      for (size_t h = 1; h < workers.size(); ++h) {
        helpers.emplace_back(&Impl::helper_loop, this, &workers[h]);
      }
    } catch (...) {
      stop();
      throw;
    }
  }
  ~Impl() { stop(); }

  // Runs body(item, worker) for every item in [0, count); workers pull items from one atomic
  // counter, so the split of items over threads varies run to run but each item's result does
  // not. Returns when every item is done.
  template <class Body>
  void parallel_for(int32_t count, const Body& body) {
    if (count <= 0) return;
    if (helpers.empty() || count == 1) {
      for (int32_t item = 0; item < count; ++item) body(item, workers[0]);
      return;
    }
    {
      std::lock_guard lock(mutex);
      job_body = &body;
      job_run = [](const void* erased, int32_t item, Worker& worker) {
        (*static_cast<const Body*>(erased))(item, worker);
      };
      job_count = count;
      next_item.store(0, std::memory_order_relaxed);
      helpers_busy = static_cast<int32_t>(helpers.size());
      ++generation;
    }
    wake.notify_all();
    drain(workers[0]);
    std::unique_lock lock(mutex);
    job_done.wait(lock, [&] { return helpers_busy == 0; });
  }

  void drain(Worker& worker) {
    for (int32_t item = next_item.fetch_add(1, std::memory_order_relaxed); item < job_count;
         item = next_item.fetch_add(1, std::memory_order_relaxed)) {
      job_run(job_body, item, worker);
    }
  }

  void helper_loop(Worker* worker) {
    uint64_t seen = 0;
    for (;;) {
      {
        std::unique_lock lock(mutex);
        wake.wait(lock, [&] { return stopping || generation != seen; });
        if (stopping) return;
        seen = generation;
      }
      drain(*worker);
      std::lock_guard lock(mutex);
      if (--helpers_busy == 0) job_done.notify_one();
    }
  }

  void stop() {
    {
      std::lock_guard lock(mutex);
      stopping = true;
    }
    wake.notify_all();
    for (std::thread& thread : helpers) thread.join();
    helpers.clear();
  }

  std::vector<Worker> workers;  // [0] belongs to the calling thread; sized once, never moved
  std::vector<std::thread> helpers;
  std::mutex mutex;
  std::condition_variable wake, job_done;
  uint64_t generation = 0;
  int32_t helpers_busy = 0;
  bool stopping = false;
  // The current job, written under `mutex` before `generation` changes.
  void (*job_run)(const void*, int32_t, Worker&) = nullptr;
  const void* job_body = nullptr;
  int32_t job_count = 0;
  std::atomic<int32_t> next_item{0};
};

Executor::Executor(int num_threads) : impl_(std::make_unique<Impl>(num_threads)) {}
Executor::~Executor() = default;
int Executor::num_threads() const { return static_cast<int>(impl_->workers.size()); }

namespace {

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

Status check_thread_count(int num_threads) {
  if (num_threads < 0) {
    return {ErrorCode::kInvalidArgument,
            "num_threads = " + std::to_string(num_threads) + " is negative (0 = all cores)"};
  }
  return Status::ok();
}

size_t round_up_to_alignment(size_t bytes) {
  return (bytes + kWorkspaceAlignment - 1) / kWorkspaceAlignment * kWorkspaceAlignment;
}

// The GPU's two workspaces: the intermediate at sorted rows (GEMM2 reads an expert's rows
// contiguously) and the weighted slot outputs, rounded to bf16 as the GPU stores them (the
// combine then sums the k rows in fp32 and rounds again).
struct LayerWorkspace {
  bf16* intermediate;  // [T*k, I]
  bf16* slot_out;      // [T*k, H]
};

size_t intermediate_bytes(const MoeShape& shape, int32_t num_tokens) {
  return round_up_to_alignment(sizeof(bf16) * static_cast<size_t>(num_tokens) * shape.top_k *
                               shape.intermediate);
}

Status check_workspace(const void* workspace, size_t workspace_bytes, size_t needed) {
  if (needed == 0) return Status::ok();
  if (workspace == nullptr) {
    return {ErrorCode::kInvalidArgument,
            "workspace is null (this call needs " + std::to_string(needed) + " bytes)"};
  }
  if (reinterpret_cast<uintptr_t>(workspace) % kWorkspaceAlignment != 0) {
    return {ErrorCode::kMisaligned, "workspace is not " + std::to_string(kWorkspaceAlignment) +
                                        "-byte aligned"};
  }
  if (workspace_bytes < needed) {
    return {ErrorCode::kInvalidArgument, "workspace_bytes = " + std::to_string(workspace_bytes) +
                                             " is smaller than the " + std::to_string(needed) +
                                             " bytes this call needs"};
  }
  return Status::ok();
}

// Owned storage for the allocating overload, aligned as the workspace contract requires.
struct alignas(kWorkspaceAlignment) WorkspaceLine {
  std::byte bytes[kWorkspaceAlignment];
};

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

size_t moe_layer_workspace_bytes(const MoeShape& shape, int32_t num_tokens) {
  if (num_tokens <= 0 || !validate_shape(shape).is_ok()) return 0;
  return intermediate_bytes(shape, num_tokens) +
         sizeof(bf16) * static_cast<size_t>(num_tokens) * shape.top_k * shape.hidden;
}

Status run_grouped_gemm(const Plan& plan, const GroupedGemmArgs& args, Executor& executor) {
  RAMP_TRY(validate_grouped_gemm_args(args));
  RAMP_TRY(validate_grouped_gemm_memory(args, nullptr, 0));
  RAMP_TRY(validate_routing_values(args.topk_ids, nullptr, args.num_tokens, args.top_k,
                                   args.num_experts));
  if (plan.num_gemms() != 1) {
    return {ErrorCode::kShapeMismatch, "grouped GEMM needs a plan with 1 gemm, plan has " +
                                           std::to_string(plan.num_gemms())};
  }
  RAMP_TRY(check_plan_gemm(plan, 0, args.out_features, args.in_features, "grouped GEMM"));
  RAMP_TRY(check_plan_routing(plan, args.topk_ids, args.num_tokens, args.top_k, args.num_experts));

  const RoutingView& routing = plan.routing();
  const int64_t n_total = args.out_features, k_total = args.in_features;
  executor.impl().parallel_for(plan.task_map(0).header->total_tiles, [&](int32_t block, Worker& w) {
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

Status run_grouped_gemm(const Plan& plan, const GroupedGemmArgs& args, int num_threads) {
  RAMP_TRY(check_thread_count(num_threads));
  Executor executor(num_threads);
  return run_grouped_gemm(plan, args, executor);
}

Status run_moe_layer(const Plan& plan, const MoeShape& shape, const MoeLayerArgs& args,
                     void* workspace, size_t workspace_bytes, Executor& executor) {
  RAMP_TRY(validate_shape(shape));
  RAMP_TRY(validate_layer_args(shape, args));
  const size_t needed = moe_layer_workspace_bytes(shape, args.num_tokens);
  RAMP_TRY(check_workspace(workspace, workspace_bytes, needed));
  RAMP_TRY(validate_layer_memory(shape, args, workspace, needed));
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
  if (args.num_tokens == 0) return Status::ok();

  const RoutingView& routing = plan.routing();
  const LayerRowStrides strides = layer_row_strides(shape, args);
  const int64_t hidden_stride = strides.hidden;
  const int64_t out_stride = strides.out;
  const LayerWorkspace scratch{
      static_cast<bf16*>(workspace),
      reinterpret_cast<bf16*>(static_cast<std::byte*>(workspace) +
                               intermediate_bytes(shape, args.num_tokens))};
  Executor::Impl& pool = executor.impl();

  // GEMM1: feature block f covers intermediate columns [f*F/2, (f+1)*F/2): the tile multiplies
  // the matching gate rows and up rows so SiLU(gate)·up is formed before anything is stored.
  pool.parallel_for(plan.task_map(0).header->total_tiles, [&](int32_t block, Worker& w) {
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
      bf16* row = scratch.intermediate + (tile.first_row + i) * int64_t{inter};
      for (int32_t j = 0; j < width; ++j) {
        row[first_column + j] = bf16::from_float(silu(w.gemm.at(i, j)) * w.gemm.at(i, width + j));
      }
    }
  });

  // GEMM2: an expert's intermediate rows are contiguous, so no gather; the router weight is
  // applied in the epilogue, per slot.
  pool.parallel_for(plan.task_map(1).header->total_tiles, [&](int32_t block, Worker& w) {
    const TileWork tile = locate_tile(plan, 1, block);
    w.a_rows.clear();
    for (int32_t row = tile.first_row; row < tile.end_row; ++row) {
      w.a_rows.push_back(scratch.intermediate + row * int64_t{inter});
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
      bf16* out_row = scratch.slot_out + slot * int64_t{hidden};
      for (int32_t j = 0; j < tile.end_feature - tile.first_feature; ++j) {
        out_row[tile.first_feature + j] = bf16::from_float(w.gemm.at(i, j) * weight);
      }
    }
  });

  // Combine: a token's k slot rows summed in fp32 in order j = 0, 1, ... (no atomics).
  constexpr int32_t kTokensPerItem = 16;
  pool.parallel_for(ceil_div(args.num_tokens, kTokensPerItem), [&](int32_t item, Worker&) {
    const int32_t end_token = min_i32((item + 1) * kTokensPerItem, args.num_tokens);
    for (int32_t token = item * kTokensPerItem; token < end_token; ++token) {
      const bf16* first = scratch.slot_out + int64_t{token} * top_k * hidden;
      bf16* out_row = args.out + token * out_stride;
      for (int32_t n = 0; n < hidden; ++n) {
        float sum = first[n].to_float();
        for (int32_t j = 1; j < top_k; ++j) sum += first[int64_t{j} * hidden + n].to_float();
        out_row[n] = bf16::from_float(sum);
      }
    }
  });
  return Status::ok();
}

Status run_moe_layer(const Plan& plan, const MoeShape& shape, const MoeLayerArgs& args,
                     int num_threads) {
  RAMP_TRY(check_thread_count(num_threads));
  const size_t bytes = moe_layer_workspace_bytes(shape, args.num_tokens);
  std::vector<WorkspaceLine> workspace(bytes / sizeof(WorkspaceLine) + 1);
  Executor executor(num_threads);
  return run_moe_layer(plan, shape, args, workspace.data(), bytes, executor);
}

}  // namespace ramp::cpu
