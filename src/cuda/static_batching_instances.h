// The kernel instances of this build, as host function pointers: one entry for the builtin set
// and one per compiled catalog entry (dispatch/kernel_catalog.h). The instances live in their
// own translation units (static_batching_builtin.cu and the generated
// static_batching_catalog_part_<p>.cu files), so the catalog compiles in parallel.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "cuda/static_batching.h"
#include "dispatch/kernel_catalog.h"
#include "ramp/status.h"

namespace ramp::cuda::detail {

struct KernelParams;

using SetLauncher = Status (*)(const KernelParams& params, int32_t max_total_tiles,
                               bool after_ramp_kernel, cudaStream_t stream);

struct SetLaunchers {
  SetLauncher by_epilogue[3] = {};  // indexed by GemmEpilogue
  // The instances for launches that stream their weights (dispatch::streams_weights): builtin
  // sets only; null for catalog entries, whose launches all take by_epilogue.
  SetLauncher streaming_by_epilogue[3] = {};
  int32_t largest_tile_floats = 0;  // split-K partial tile size of the set
  bool split_k = false;             // some config of the set splits K
  bool compiled() const { return by_epilogue[0] != nullptr; }
};

// static_batching_builtin.cu: kBuiltinConfigs and kBuiltinConfigsGroup1.
SetLaunchers builtin_set_launchers();
SetLaunchers builtin_group1_set_launchers();

// Generated part kPart: fills table[i] (table has dispatch::kCatalogSize entries) for its
// compiled entries.
template <int kPart>
void register_catalog_part(SetLaunchers* table);

// Every compiled catalog entry's launchers (empty entries for the others), built on first use.
const SetLaunchers* catalog_launchers();

}  // namespace ramp::cuda::detail
