// The tile configs compiled into the static batching kernel, in the order the kernel's config
// switch uses (a task's `config` field indexes this array). The kernel static_asserts that its
// compiled list matches, so the planner, the CPU backend and the GPU agree on every tile shape.
//
// Every config runs with one producer and two consumer warpgroups (384 threads), so configs can
// share one launch: a CTA's shape never depends on its task.
#pragma once

#include <cstdint>

#include "core/host_device.h"
#include "core/tile_config.h"

namespace ramp::dispatch {

inline constexpr TileConfig kBuiltinConfigs[] = {
    // orientation           tokens features k  stages wgs group splitk
    {Orientation::kNormal,   128,   256,     64, 4,     2,  8,    1},  // 0: busy experts
    {Orientation::kNormal,   128,   128,     64, 6,     2,  8,    1},  // 1: mid experts, more tiles
    {Orientation::kSwapped,  64,    128,     64, 8,     2,  8,    1},  // 2: 33..64 tokens
    {Orientation::kSwapped,  32,    128,     64, 8,     2,  8,    1},  // 3: 17..32 tokens
    {Orientation::kSwapped,  16,    128,     64, 8,     2,  8,    1},  // 4: 9..16 tokens
    {Orientation::kSwapped,  8,     128,     64, 8,     2,  8,    1},  // 5: 1..8 tokens (decode)
};
inline constexpr int32_t kNumBuiltinConfigs =
    static_cast<int32_t>(sizeof(kBuiltinConfigs) / sizeof(kBuiltinConfigs[0]));

// The builtin set with another L2 group on its normal-orientation configs. Tile counts are those
// of kBuiltinConfigs, so a plan made for one runs on the other: only the order of a task's
// tiles differs (tile_coord), and with it which tiles share L2 at a time. The kernel compiles
// the group-1 variant (tiles of a task walk the feature blocks of one token block first) as a
// set of its own; CudaOptions::l2_group picks it per GEMM of the layer.
struct BuiltinConfigList {
  TileConfig configs[kNumBuiltinConfigs];
};
constexpr BuiltinConfigList builtin_configs_with_normal_group(int8_t group) {
  BuiltinConfigList list{};
  for (int32_t c = 0; c < kNumBuiltinConfigs; ++c) {
    list.configs[c] = kBuiltinConfigs[c];
    if (list.configs[c].orientation == Orientation::kNormal) list.configs[c].group_m = group;
  }
  return list;
}
inline constexpr BuiltinConfigList kBuiltinConfigsGroup1 = builtin_configs_with_normal_group(1);

// L2 group for the layer's GEMM1 launch of the builtin set (8: kBuiltinConfigs, 1:
// kBuiltinConfigsGroup1), from what the batch size and shape give before the routing is known.
// Group 1 walks all feature blocks of one token block before the next, so consecutive CTAs
// share the gathered token rows and the expert's whole weight is re-read from L2 by every token
// block: that pays when the expert's weights stay in L2 (<= 16 MiB) and experts average at
// least 4 token blocks of 128; otherwise group 8 (a weight tile shared by 8 token blocks).
// Measured on the H100 (bench/results/h100-2026-11-22f-layer-l2-group-*.json, GEMM1 group 1
// vs 8, layer time): qwen3-30b-a3b T=8192 (6 MiB per expert, 512 rows) 1.035x / 1.072x
// (uniform / zipf1.0), olmoe-1b-7b T=8192 (8 MiB, 1024 rows) 1.035x / 1.045x, deepseek-v2-lite
// T=8192 (11 MiB, 768 rows) 1.013x / 1.015x; but mixtral-8x7b T=8192 (224 MiB) 0.785x and
// gpt-oss-120b T=8192 (32 MiB) 0.779x. GEMM2 (K = I) gained nowhere (geomean 0.99 at T=8192).
// Example: qwen3-30b-a3b T=8192: 2I x H x 2 B = 6 MiB, 8192 x 8 / 128 = 512 rows = 4 blocks
// -> 1. mixtral-8x7b T=8192: 224 MiB -> 8.
inline constexpr int64_t kGroup1MaxExpertWeightBytes = int64_t{16} << 20;
inline constexpr int32_t kGroup1MinAverageTokenBlocks = 4;
RAMP_HOST_DEVICE inline int32_t gemm1_l2_group(int64_t expert_weight_bytes, int64_t num_slots,
                                               int32_t num_experts) {
  const int64_t average_rows = num_experts > 0 ? num_slots / num_experts : 0;
  const bool fits = expert_weight_bytes <= kGroup1MaxExpertWeightBytes;
  const bool deep = average_rows >= int64_t{kGroup1MinAverageTokenBlocks} * 128;
  return fits && deep ? 1 : 8;
}

// Whether a launch streams its weights: experts average at most 64 rows (an expert of 64 rows
// fits one token block of the config choose_builtin_config gives it), so nearly every weight
// tile has one reader and its lines are dead once read. The kernel then marks the weight tiles of one-block tasks evict-first in L2
// (static_batching_producer.cuh, issue_weight_tile). Decided on the host from the batch size,
// before the routing is known, so the launch picks the kernel instance: launches that do not
// stream run code without the hint (its presence alone cost seed004 0.5-1%).
// Measured on the H100, layer A/B against the code without it
// (bench/results/h100-2026-11-23h-ab-streaming-weights-kept.json): T = 32 / 128 / 512 / 2048
// cells 1.006x / 1.020x / 1.014x / 0.997x (deepseek-v2-lite, qwen3-30b-a3b, olmoe-1b-7b at
// T = 512 uniform 1.035-1.047x; gpt-oss-120b T = 2048 uniform 0.988x), seed004 unchanged. With
// the hint wherever a task had one block, cells whose experts hold ~128 rows lost 3-5%
// (mixtral-8x7b T = 512, qwen3-30b-a3b / qwen3-235b-a22b T = 2048).
// Example: qwen3-30b-a3b T = 512: 512 x 8 = 4096 slots <= 64 x 128 -> streams; T = 2048: 16384
// slots > 8192 -> does not. mixtral-8x7b T = 512: 1024 slots > 64 x 8 -> does not.
inline constexpr int32_t kStreamingMaxAverageRows = 64;
RAMP_HOST_DEVICE inline bool streams_weights(int64_t num_slots, int32_t num_experts) {
  return num_experts > 0 && num_slots <= int64_t{kStreamingMaxAverageRows} * num_experts;
}

// Experts with more rows than the largest swapped token tile use the normal orientation.
inline constexpr int32_t kSwappedMaxRows = 64;

// What one expert adds to choose_builtin_config's "fills the machine" count: its 128x256 tiles
// when it will use the normal orientation. `big` is kBuiltinConfigs[0], passed in because
// device code reads its own (__constant__) copy of the table.
// Example: 500 rows, N = 2048 -> 4 token blocks x 8 feature blocks = 32; 40 rows -> 0.
RAMP_HOST_DEVICE inline int32_t big_tiles_of_expert(const TileConfig& big, int32_t rows,
                                                    int32_t out_features) {
  return rows > kSwappedMaxRows ? big.tiles(rows, out_features) : 0;
}

// The rule used until a fitted cost model exists (RaMP's region analysis replaces it): few
// tokens -> swapped orientation with the smallest token tile that holds them (no padding of a
// 128-row tile with 3 real tokens); more -> 128x256 tiles when they still fill the machine,
// else 128x128 for twice the tiles.
// Example, N = 2048 features, 132 SMs: 3 tokens -> config 5 (swapped 8); 40 tokens -> config 2;
// 500 tokens -> 4 token blocks x 8 feature blocks = 32 tiles of 128x256 per expert; with 64
// such experts 2048 tiles >= 132, so config 0.
RAMP_HOST_DEVICE inline int32_t choose_builtin_config(int32_t rows, int32_t total_big_tiles,
                                                      int32_t num_sms) {
  if (rows <= 8) return 5;
  if (rows <= 16) return 4;
  if (rows <= 32) return 3;
  if (rows <= kSwappedMaxRows) return 2;
  return total_big_tiles >= num_sms ? 0 : 1;
}

}  // namespace ramp::dispatch
