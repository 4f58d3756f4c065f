// The memory layout of a plan, shared by the host planner and the device routing-prep kernels:
// both write the same bytes at the same offsets, so a device plan can be copied back and
// compared with the host plan bit for bit.
//
// A plan has one routing part (histogram, stable per-expert slot lists) and one task map per
// GEMM (GEMM1 and GEMM2 of a layer differ in N, so in tile counts and maybe in configs).
//
//   routing:  RoutingHeader | expert_counts[E] | expert_offsets[E+1] | sorted_slots[S]
//   task map: TaskMapHeader | tasks[max_tasks] | tile_prefix[max_tasks] | chunk_last[chunks]
// with S = T*k slots and every array 16-byte aligned.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/host_device.h"

namespace ramp {

// Validation results written by the routing pass; the host reads them later (no sync on the
// hot path). A bad id is counted and named, never dereferenced.
enum RoutingErrorBits : int32_t {
  kRoutingBadExpertId = 1 << 0,
  kRoutingNonFiniteWeight = 1 << 1,
};

struct alignas(16) RoutingHeader {
  int32_t error_bits;        // RoutingErrorBits
  int32_t first_bad_id_slot; // smallest slot whose id is outside [0, E); INT32_MAX if none
  int32_t first_bad_weight_slot;  // smallest slot with a non-finite weight; INT32_MAX if none
  int32_t num_slots;         // S = T * k
};

struct alignas(16) TaskMapHeader {
  int32_t num_tasks;    // non-empty tasks (M in the paper)
  int32_t total_tiles;  // TilePrefix[num_tasks - 1], 0 when no task
  int32_t num_chunks;   // ceil(num_tasks / 32): entries of chunk_last in use
  // The GEMM kernel's tile counter: CTAs take tiles in order by incrementing it. Whoever writes
  // the plan writes 0, and the kernel's last taker resets it to 0, so it is 0 between launches.
  int32_t next_tile;
};

// One non-empty task: an expert's GEMM under one tile config. Its rows are the sorted slot
// positions [row_begin, row_begin + row_count) of that expert.
struct alignas(16) TaskDesc {
  int32_t expert;
  int32_t config;     // index into the launch's config set
  int32_t row_begin;  // = expert_offsets[expert]
  int32_t row_count;  // = expert_counts[expert]
};
static_assert(sizeof(TaskDesc) == 16, "TaskDesc is read with one 16-byte load");

struct RoutingView {
  RoutingHeader* header = nullptr;
  int32_t* expert_counts = nullptr;   // [E] tokens (slots) routed to each expert
  int32_t* expert_offsets = nullptr;  // [E+1] exclusive prefix of expert_counts
  int32_t* sorted_slots = nullptr;    // [S] slots grouped by expert, ascending inside an expert
  int32_t num_experts = 0;
  int32_t top_k = 0;
  int32_t num_slots = 0;
};

struct TaskMapView {
  TaskMapHeader* header = nullptr;
  TaskDesc* tasks = nullptr;       // [max_tasks], first num_tasks valid, in execution order
  int32_t* tile_prefix = nullptr;  // [max_tasks] inclusive prefix of tile counts (TilePrefix)
  int32_t* chunk_last = nullptr;   // [ceil(max_tasks/32)] tile_prefix at the end of each 32-chunk
  int32_t max_tasks = 0;
};

RAMP_HOST_DEVICE constexpr size_t align16(size_t bytes) { return (bytes + 15) & ~size_t{15}; }

struct RoutingLayout {
  size_t header = 0, expert_counts = 0, expert_offsets = 0, sorted_slots = 0, bytes = 0;
};
struct TaskMapLayout {
  size_t header = 0, tasks = 0, tile_prefix = 0, chunk_last = 0, bytes = 0;
};

RAMP_HOST_DEVICE inline RoutingLayout routing_layout(int32_t num_experts, int32_t num_slots) {
  RoutingLayout l;
  size_t at = 0;
  l.header = at;         at += align16(sizeof(RoutingHeader));
  l.expert_counts = at;  at += align16(sizeof(int32_t) * num_experts);
  l.expert_offsets = at; at += align16(sizeof(int32_t) * (num_experts + 1));
  l.sorted_slots = at;   at += align16(sizeof(int32_t) * (num_slots > 0 ? num_slots : 1));
  l.bytes = at;
  return l;
}

RAMP_HOST_DEVICE inline TaskMapLayout task_map_layout(int32_t max_tasks) {
  TaskMapLayout l;
  size_t at = 0;
  l.header = at;      at += align16(sizeof(TaskMapHeader));
  l.tasks = at;       at += align16(sizeof(TaskDesc) * max_tasks);
  l.tile_prefix = at; at += align16(sizeof(int32_t) * max_tasks);
  l.chunk_last = at;  at += align16(sizeof(int32_t) * ceil_div(max_tasks, 32));
  l.bytes = at;
  return l;
}

RAMP_HOST_DEVICE inline RoutingView routing_view_at(void* base, int32_t num_experts,
                                                    int32_t top_k, int32_t num_slots) {
  const RoutingLayout l = routing_layout(num_experts, num_slots);
  char* b = static_cast<char*>(base);
  RoutingView v;
  v.header = reinterpret_cast<RoutingHeader*>(b + l.header);
  v.expert_counts = reinterpret_cast<int32_t*>(b + l.expert_counts);
  v.expert_offsets = reinterpret_cast<int32_t*>(b + l.expert_offsets);
  v.sorted_slots = reinterpret_cast<int32_t*>(b + l.sorted_slots);
  v.num_experts = num_experts;
  v.top_k = top_k;
  v.num_slots = num_slots;
  return v;
}

RAMP_HOST_DEVICE inline TaskMapView task_map_view_at(void* base, int32_t max_tasks) {
  const TaskMapLayout l = task_map_layout(max_tasks);
  char* b = static_cast<char*>(base);
  TaskMapView v;
  v.header = reinterpret_cast<TaskMapHeader*>(b + l.header);
  v.tasks = reinterpret_cast<TaskDesc*>(b + l.tasks);
  v.tile_prefix = reinterpret_cast<int32_t*>(b + l.tile_prefix);
  v.chunk_last = reinterpret_cast<int32_t*>(b + l.chunk_last);
  v.max_tasks = max_tasks;
  return v;
}

// Rows of a task, in the three roles a GEMM row plays. For sorted position p of expert e:
//   slot  = sorted_slots[p]        (t*k + j)
//   token = slot / k               (the hidden row GEMM1 and the grouped GEMM gather)
// GEMM1 writes the intermediate at row p (contiguous per expert, so GEMM2 reads it without a
// gather); GEMM2 and the grouped GEMM write row `slot`, which the combine reads in order j.
RAMP_HOST_DEVICE inline int32_t slot_of_row(const RoutingView& routing, int32_t sorted_row) {
  return routing.sorted_slots[sorted_row];
}
RAMP_HOST_DEVICE inline int32_t token_of_slot(int32_t slot, int32_t top_k) { return slot / top_k; }

}  // namespace ramp
