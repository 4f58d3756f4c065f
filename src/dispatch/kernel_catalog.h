// Which catalog entries this build compiles a kernel for. The CUDA backend instantiates the
// static batching kernel once per compiled entry (a launch where every task uses it) plus once
// for the builtin set (kBuiltinConfigs mixed per expert); host code reads the same predicate,
// so `ramp configs`, the profiler and the tests know what a launch can run without asking the
// GPU.
//
// RAMP_KERNEL_CATALOG (CMake): full (default: every entry, ~370 kernel instances over 16
// translation units) or subset (the builtin set plus one entry per kernel feature, for CPU CI's
// 2-core budget). A build without CUDA compiles none.
#pragma once

#include <cstdint>

#include "dispatch/builtin_configs.h"
#include "dispatch/catalog.h"

namespace ramp::dispatch {

enum class KernelCatalog { kNone, kSubset, kFull };

#if defined(RAMP_KERNEL_CATALOG_FULL)
inline constexpr KernelCatalog kKernelCatalog = KernelCatalog::kFull;
#elif defined(RAMP_KERNEL_CATALOG_SUBSET)
inline constexpr KernelCatalog kKernelCatalog = KernelCatalog::kSubset;
#else
inline constexpr KernelCatalog kKernelCatalog = KernelCatalog::kNone;
#endif

// Translation units the catalog's kernel instances are spread over (entry i goes to part
// i % kKernelCatalogParts); src/cuda/CMakeLists.txt generates this many.
inline constexpr int32_t kKernelCatalogParts = 16;

namespace kernel_catalog_detail {
constexpr TileConfig shape(Orientation orientation, int16_t tokens, int16_t features,
                           int8_t warpgroups, int8_t group, int8_t split) {
  TileConfig config;
  config.orientation = orientation;
  config.token_tile = tokens;
  config.feature_tile = features;
  config.k_tile = 64;
  config.consumer_warpgroups = warpgroups;
  config.group_m = group;
  config.split_k = split;
  config.stages = static_cast<int8_t>(derive_stages(config));
  return config;
}
}  // namespace kernel_catalog_detail

// Beyond the builtin set, one entry per code path the full catalog adds: one consumer
// warpgroup (normal and swapped), 128 MMA rows per warpgroup, 64-wide feature tiles, L2 group
// 1 and 16, swapped token tiles that are not powers of two and up to 256, split-K 2 and 4.
inline constexpr TileConfig kRepresentativeConfigs[] = {
    kernel_catalog_detail::shape(Orientation::kNormal, 64, 64, 1, 1, 1),
    kernel_catalog_detail::shape(Orientation::kNormal, 128, 128, 1, 8, 1),
    kernel_catalog_detail::shape(Orientation::kNormal, 256, 128, 2, 16, 1),
    kernel_catalog_detail::shape(Orientation::kNormal, 128, 256, 2, 8, 2),
    kernel_catalog_detail::shape(Orientation::kSwapped, 8, 64, 1, 8, 4),
    kernel_catalog_detail::shape(Orientation::kSwapped, 40, 64, 1, 8, 1),
    kernel_catalog_detail::shape(Orientation::kSwapped, 96, 128, 2, 8, 2),
    kernel_catalog_detail::shape(Orientation::kSwapped, 256, 128, 2, 8, 1),
};

constexpr bool in_representative_subset(int32_t index) {
  const TileConfig& config = kCatalogTable.entries[index];
  for (const TileConfig& builtin : kBuiltinConfigs) {
    if (builtin == config) return true;
  }
  for (const TileConfig& representative : kRepresentativeConfigs) {
    if (representative == config) return true;
  }
  return false;
}

// Whether catalog entry `index` has a kernel instance of its own in this build.
constexpr bool catalog_entry_compiled(int32_t index) {
  if (index < 0 || index >= kCatalogSize) return false;
  switch (kKernelCatalog) {
    case KernelCatalog::kFull: return true;
    case KernelCatalog::kSubset: return in_representative_subset(index);
    case KernelCatalog::kNone: return false;
  }
  return false;
}

}  // namespace ramp::dispatch
