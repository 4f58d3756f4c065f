#include "core/plan.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <numeric>
#include <ostream>
#include <sstream>

#include "core/validation.h"

namespace ramp {

const char* expert_order_name(ExpertOrder order) {
  switch (order) {
    case ExpertOrder::kIdentity: return "identity";
    case ExpertOrder::kHalfInterval: return "half-interval";
    case ExpertOrder::kLongestFirst: return "longest-first";
  }
  return "unknown";
}

bool parse_expert_order(const std::string& name, ExpertOrder* order) {
  for (ExpertOrder candidate :
       {ExpertOrder::kIdentity, ExpertOrder::kHalfInterval, ExpertOrder::kLongestFirst}) {
    if (name == expert_order_name(candidate)) {
      *order = candidate;
      return true;
    }
  }
  return false;
}

PlanLayout plan_layout(int32_t num_experts, int32_t num_slots, int32_t num_gemms) {
  PlanLayout layout;
  layout.routing = 0;
  size_t at = routing_layout(num_experts, num_slots).bytes;
  const size_t task_map_bytes = task_map_layout(num_experts).bytes;
  for (int32_t g = 0; g < num_gemms; ++g) {
    layout.task_maps.push_back(at);
    at += task_map_bytes;
  }
  layout.bytes = at;
  return layout;
}

void build_routing(const int32_t* topk_ids, int32_t num_tokens, RoutingView routing) {
  const int32_t num_slots = num_tokens * routing.top_k;
  *routing.header = RoutingHeader{0, std::numeric_limits<int32_t>::max(),
                                  std::numeric_limits<int32_t>::max(), num_slots};
  std::fill_n(routing.expert_counts, routing.num_experts, 0);
  for (int32_t slot = 0; slot < num_slots; ++slot) ++routing.expert_counts[topk_ids[slot]];
  routing.expert_offsets[0] = 0;
  for (int32_t e = 0; e < routing.num_experts; ++e) {
    routing.expert_offsets[e + 1] = routing.expert_offsets[e] + routing.expert_counts[e];
  }
  // Counting sort, visiting slots in ascending order: stable, so the result does not depend on
  // who computed it (the device pass must produce the same order).
  std::vector<int32_t> cursor(routing.expert_offsets, routing.expert_offsets + routing.num_experts);
  for (int32_t slot = 0; slot < num_slots; ++slot) {
    routing.sorted_slots[cursor[topk_ids[slot]]++] = slot;
  }
}

std::vector<int32_t> order_experts(std::span<const int32_t> tiles_per_expert, ExpertOrder order) {
  std::vector<int32_t> busy_first;
  for (int32_t e = 0; e < static_cast<int32_t>(tiles_per_expert.size()); ++e) {
    if (tiles_per_expert[e] > 0) busy_first.push_back(e);
  }
  if (order == ExpertOrder::kIdentity) return busy_first;
  std::stable_sort(busy_first.begin(), busy_first.end(), [&](int32_t a, int32_t b) {
    return tiles_per_expert[a] > tiles_per_expert[b];
  });
  if (order == ExpertOrder::kLongestFirst) return busy_first;

  std::vector<int32_t> interleaved(busy_first.size());
  const int32_t num_tasks = static_cast<int32_t>(busy_first.size());
  for (int32_t rank = 0; rank < num_tasks; ++rank) {
    interleaved[half_interval_position(rank, num_tasks)] = busy_first[rank];
  }
  return interleaved;
}

void build_task_map(const RoutingView& routing, const GemmPlanSpec& gemm, ExpertOrder order,
                    TaskMapView task_map) {
  const int32_t num_experts = routing.num_experts;
  std::vector<int32_t> tiles(num_experts, 0);
  for (int32_t e = 0; e < num_experts; ++e) {
    const int32_t config = gemm.expert_config.empty() ? 0 : gemm.expert_config[e];
    tiles[e] = gemm.configs[config].tiles(routing.expert_counts[e], gemm.out_features);
  }
  const std::vector<int32_t> ordered = order_experts(tiles, order);

  // Unused entries stay zero: the device pass zero-fills the same bytes.
  std::memset(task_map.tasks, 0, sizeof(TaskDesc) * task_map.max_tasks);
  std::memset(task_map.tile_prefix, 0, sizeof(int32_t) * task_map.max_tasks);
  std::memset(task_map.chunk_last, 0, sizeof(int32_t) * ceil_div(task_map.max_tasks, 32));

  const int32_t num_tasks = static_cast<int32_t>(ordered.size());
  int32_t running = 0;
  for (int32_t task = 0; task < num_tasks; ++task) {
    const int32_t e = ordered[task];
    const int32_t config = gemm.expert_config.empty() ? 0 : gemm.expert_config[e];
    task_map.tasks[task] =
        TaskDesc{e, config, routing.expert_offsets[e], routing.expert_counts[e]};
    running += tiles[e];
    task_map.tile_prefix[task] = running;
  }
  const int32_t num_chunks = ceil_div(num_tasks, 32);
  for (int32_t chunk = 0; chunk < num_chunks; ++chunk) {
    task_map.chunk_last[chunk] = task_map.tile_prefix[min_i32(chunk * 32 + 31, num_tasks - 1)];
  }
  *task_map.header = TaskMapHeader{num_tasks, running, num_chunks, 0};
}

namespace {

Status check_request(const PlanRequest& request) {
  if (request.num_experts < 1) {
    return {ErrorCode::kInvalidArgument,
            "num_experts = " + std::to_string(request.num_experts) + " must be >= 1"};
  }
  if (request.top_k < 1 || request.top_k > request.num_experts) {
    return {ErrorCode::kInvalidArgument, "top_k = " + std::to_string(request.top_k) +
                                             " must be in [1, num_experts = " +
                                             std::to_string(request.num_experts) + "]"};
  }
  if (request.num_tokens < 0) {
    return {ErrorCode::kInvalidArgument,
            "num_tokens = " + std::to_string(request.num_tokens) + " must be >= 0"};
  }
  if (static_cast<int64_t>(request.num_tokens) * request.top_k >
      std::numeric_limits<int32_t>::max()) {
    return {ErrorCode::kUnsupportedShape, "num_tokens * top_k overflows int32 slot indices"};
  }
  if (request.num_tokens > 0 && request.topk_ids == nullptr) {
    return {ErrorCode::kInvalidArgument, "topk_ids is null"};
  }
  if (request.gemms.empty()) return {ErrorCode::kInvalidArgument, "a plan needs at least one GEMM"};
  for (size_t g = 0; g < request.gemms.size(); ++g) {
    const GemmPlanSpec& gemm = request.gemms[g];
    const std::string where = "gemm " + std::to_string(g) + ": ";
    if (gemm.out_features < 1 || gemm.in_features < 1) {
      return {ErrorCode::kInvalidArgument, where + "out_features and in_features must be >= 1"};
    }
    if (gemm.configs.empty()) return {ErrorCode::kInvalidArgument, where + "no tile config"};
    for (size_t c = 0; c < gemm.configs.size(); ++c) {
      const TileConfig& config = gemm.configs[c];
      if (config.token_tile < 1 || config.feature_tile < 1 || config.k_tile < 1 ||
          config.split_k < 1 || config.group_m < 1) {
        return {ErrorCode::kInvalidArgument,
                where + "config " + std::to_string(c) + " (" + config.to_string() +
                    ") has a non-positive tile extent"};
      }
    }
    if (!gemm.expert_config.empty()) {
      if (static_cast<int32_t>(gemm.expert_config.size()) != request.num_experts) {
        return {ErrorCode::kShapeMismatch, where + "expert_config has " +
                                               std::to_string(gemm.expert_config.size()) +
                                               " entries, expected num_experts = " +
                                               std::to_string(request.num_experts)};
      }
      for (int32_t e = 0; e < request.num_experts; ++e) {
        const int32_t config = gemm.expert_config[e];
        if (config < 0 || config >= static_cast<int32_t>(gemm.configs.size())) {
          return {ErrorCode::kInvalidArgument,
                  where + "expert_config[" + std::to_string(e) + "] = " + std::to_string(config) +
                      " is outside [0, " + std::to_string(gemm.configs.size()) + ")"};
        }
      }
    }
  }
  return Status::ok();
}

}  // namespace

Status Plan::build(const PlanRequest& request, Plan* plan) {
  RAMP_TRY(check_request(request));
  // The planner indexes histograms with the ids, so it checks them itself: a bad id must never
  // be dereferenced, whoever forgot to validate.
  RAMP_TRY(validate_routing_values(request.topk_ids, nullptr, request.num_tokens, request.top_k,
                                   request.num_experts));

  const int32_t num_slots = request.num_tokens * request.top_k;
  const int32_t num_gemms = static_cast<int32_t>(request.gemms.size());
  const PlanLayout layout = plan_layout(request.num_experts, num_slots, num_gemms);

  Plan built;
  built.storage_.assign(layout.bytes / sizeof(Chunk16), Chunk16{});
  std::byte* base = built.storage_.data()->bytes;
  built.routing_ = routing_view_at(base + layout.routing, request.num_experts, request.top_k,
                                   num_slots);
  build_routing(request.topk_ids, request.num_tokens, built.routing_);
  for (int32_t g = 0; g < num_gemms; ++g) {
    TaskMapView task_map = task_map_view_at(base + layout.task_maps[g], request.num_experts);
    build_task_map(built.routing_, request.gemms[g], request.order, task_map);
    built.task_maps_.push_back(task_map);
  }
  built.gemms_ = request.gemms;
  built.order_ = request.order;
  built.num_tokens_ = request.num_tokens;
  *plan = std::move(built);
  return Status::ok();
}

std::span<const std::byte> Plan::bytes() const {
  return {storage_.empty() ? nullptr : storage_.data()->bytes, storage_.size() * sizeof(Chunk16)};
}

void Plan::print(std::ostream& os, int32_t num_sms) const {
  const int32_t num_experts = routing_.num_experts;
  std::vector<int32_t> counts(routing_.expert_counts, routing_.expert_counts + num_experts);
  const int32_t active = static_cast<int32_t>(
      std::count_if(counts.begin(), counts.end(), [](int32_t c) { return c > 0; }));
  std::vector<int32_t> sorted = counts;
  std::sort(sorted.begin(), sorted.end());
  os << "routing: T=" << num_tokens_ << " k=" << routing_.top_k << " E=" << num_experts
     << " slots=" << routing_.num_slots << " order=" << expert_order_name(order_) << "\n";
  os << "  experts with tokens: " << active << "/" << num_experts << "; tokens per expert min "
     << sorted.front() << ", median " << sorted[sorted.size() / 2] << ", max " << sorted.back()
     << ", mean " << static_cast<double>(routing_.num_slots) / num_experts << "\n";
  for (int32_t g = 0; g < num_gemms(); ++g) {
    const TaskMapView& map = task_maps_[g];
    const GemmPlanSpec& gemm = gemms_[g];
    const int32_t total_tiles = map.header->total_tiles;
    os << "gemm " << g << ": N=" << gemm.out_features << " K=" << gemm.in_features
       << "  tasks=" << map.header->num_tasks << " (TilePrefix length)"
       << "  chunks=" << map.header->num_chunks << "  tiles=" << total_tiles << "  waves on "
       << num_sms << " SMs=" << static_cast<double>(total_tiles) / num_sms << "\n";
    std::vector<int32_t> tasks_per_config(gemm.configs.size(), 0);
    std::vector<int64_t> tiles_per_config(gemm.configs.size(), 0);
    for (int32_t t = 0; t < map.header->num_tasks; ++t) {
      const int32_t config = map.tasks[t].config;
      ++tasks_per_config[config];
      tiles_per_config[config] += map.tile_prefix[t] - (t > 0 ? map.tile_prefix[t - 1] : 0);
    }
    for (size_t c = 0; c < gemm.configs.size(); ++c) {
      if (tasks_per_config[c] == 0) continue;
      os << "  config " << c << " [" << gemm.configs[c].to_string() << "]: "
         << tasks_per_config[c] << " tasks, " << tiles_per_config[c] << " tiles\n";
    }
  }
}

namespace {

template <class T>
void append_array(std::ostringstream& out, const T* values, int32_t count) {
  out << "[";
  for (int32_t i = 0; i < count; ++i) out << (i ? "," : "") << values[i];
  out << "]";
}

}  // namespace

std::string Plan::to_json() const {
  std::ostringstream out;
  out << "{\"num_tokens\":" << num_tokens_ << ",\"top_k\":" << routing_.top_k
      << ",\"num_experts\":" << routing_.num_experts << ",\"order\":\""
      << expert_order_name(order_) << "\",\"expert_counts\":";
  append_array(out, routing_.expert_counts, routing_.num_experts);
  out << ",\"expert_offsets\":";
  append_array(out, routing_.expert_offsets, routing_.num_experts + 1);
  out << ",\"sorted_slots\":";
  append_array(out, routing_.sorted_slots, routing_.num_slots);
  out << ",\"gemms\":[";
  for (int32_t g = 0; g < num_gemms(); ++g) {
    const TaskMapView& map = task_maps_[g];
    const GemmPlanSpec& gemm = gemms_[g];
    out << (g ? "," : "") << "{\"out_features\":" << gemm.out_features
        << ",\"in_features\":" << gemm.in_features << ",\"configs\":[";
    for (size_t c = 0; c < gemm.configs.size(); ++c) {
      out << (c ? "," : "") << "\"" << gemm.configs[c].to_string() << "\"";
    }
    out << "],\"num_tasks\":" << map.header->num_tasks
        << ",\"total_tiles\":" << map.header->total_tiles << ",\"tasks\":[";
    for (int32_t t = 0; t < map.header->num_tasks; ++t) {
      const TaskDesc& task = map.tasks[t];
      out << (t ? "," : "") << "{\"expert\":" << task.expert << ",\"config\":" << task.config
          << ",\"row_begin\":" << task.row_begin << ",\"row_count\":" << task.row_count << "}";
    }
    out << "],\"tile_prefix\":";
    append_array(out, map.tile_prefix, map.header->num_tasks);
    out << ",\"chunk_last\":";
    append_array(out, map.chunk_last, map.header->num_chunks);
    out << "}";
  }
  out << "]}";
  return out.str();
}

}  // namespace ramp
