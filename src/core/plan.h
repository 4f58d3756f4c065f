// The host planner: routing -> histogram -> stable per-expert slot lists -> per-GEMM task maps
// (sigma, TilePrefix, chunk index). It writes the exact byte layout of plan_layout.h, the same
// one the device routing-prep kernels write, so either side's plan drives either backend.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <span>
#include <string>
#include <vector>

#include "core/expert_order.h"
#include "core/plan_layout.h"
#include "core/tile_config.h"
#include "ramp/status.h"

namespace ramp {

const char* expert_order_name(ExpertOrder order);
bool parse_expert_order(const std::string& name, ExpertOrder* order);

// One GEMM of the plan: its N (features per expert, tile counting) and K, the tile configs
// compiled into its launch, and which of them each expert uses.
struct GemmPlanSpec {
  int32_t out_features = 0;            // N (GEMM1 of a layer: 2I, gate and up)
  int32_t in_features = 0;             // K
  std::vector<TileConfig> configs;     // the launch's config set (at least one)
  std::vector<int32_t> expert_config;  // [E] index into configs; empty = config 0 for all
};

struct PlanRequest {
  const int32_t* topk_ids = nullptr;  // [T, k] host memory, already validated
  int32_t num_tokens = 0;
  int32_t top_k = 0;
  int32_t num_experts = 0;
  ExpertOrder order = ExpertOrder::kIdentity;
  std::vector<GemmPlanSpec> gemms;    // one task map each (grouped GEMM: 1, layer: 2)
};

// Byte offsets of a whole plan: routing, then one task map per GEMM.
struct PlanLayout {
  size_t routing = 0;
  std::vector<size_t> task_maps;
  size_t bytes = 0;
};
PlanLayout plan_layout(int32_t num_experts, int32_t num_slots, int32_t num_gemms);

// Stage 1: histogram and the stable counting sort (slots ascending inside an expert).
// Precondition: every id in [0, E). Writes header, expert_counts, expert_offsets, sorted_slots.
void build_routing(const int32_t* topk_ids, int32_t num_tokens, RoutingView routing);

// Stage 2: the non-empty experts in execution order, given each expert's tile count.
std::vector<int32_t> order_experts(std::span<const int32_t> tiles_per_expert, ExpertOrder order);

// Stage 3: tasks, TilePrefix and chunk index of one GEMM.
void build_task_map(const RoutingView& routing, const GemmPlanSpec& gemm, ExpertOrder order,
                    TaskMapView task_map);

class Plan {
 public:
  Plan() = default;
  Plan(Plan&&) = default;  // views point into storage_, whose buffer a move keeps
  Plan& operator=(Plan&&) = default;
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;

  // Validates the request's structure (not the ids: see validation.h) and builds the plan.
  static Status build(const PlanRequest& request, Plan* plan);

  const RoutingView& routing() const { return routing_; }
  int32_t num_gemms() const { return static_cast<int32_t>(task_maps_.size()); }
  const TaskMapView& task_map(int32_t gemm) const { return task_maps_[gemm]; }
  const GemmPlanSpec& gemm(int32_t gemm) const { return gemms_[gemm]; }
  ExpertOrder order() const { return order_; }
  int32_t num_tokens() const { return num_tokens_; }

  // The plan exactly as it lies in a device workspace (plan_layout offsets).
  std::span<const std::byte> bytes() const;

  // Human-readable summary: histogram stats, tasks per config, TilePrefix length, tiles and
  // waves on num_sms multiprocessors.
  void print(std::ostream& os, int32_t num_sms = 132) const;
  // Everything, for debugging: routing arrays, tasks, TilePrefix, configs.
  std::string to_json() const;

 private:
  struct alignas(16) Chunk16 { std::byte bytes[16]; };
  std::vector<Chunk16> storage_;
  RoutingView routing_;
  std::vector<TaskMapView> task_maps_;
  std::vector<GemmPlanSpec> gemms_;
  ExpertOrder order_ = ExpertOrder::kIdentity;
  int32_t num_tokens_ = 0;
};

}  // namespace ramp
