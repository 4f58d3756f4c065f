// Host-side helpers that turn a routing into plan requests with the builtin config set.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/plan.h"
#include "dispatch/catalog.h"
#include "dispatch/regions.h"
#include "ramp/types.h"

namespace ramp::dispatch {

// SM count assumed when planning without a device (H100 SXM: 132).
inline constexpr int32_t kDefaultSmCount = 132;

// expert_config for one GEMM with `out_features` N: choose_builtin_config per expert, where the
// "fills the machine" test counts 128x256 tiles over all non-empty experts with > 64 rows.
std::vector<int32_t> assign_builtin_configs(std::span<const int32_t> expert_counts,
                                            int32_t out_features, int32_t num_sms);

// forced_config value of build_layer_plan / build_grouped_gemm_plan that asks for routing-aware
// selection on the host: assign_routing_aware_configs per GEMM, on an H100 with num_sms SMs.
inline constexpr int32_t kRoutingAwareConfigs = -2;

// Routing-aware per-expert configs for one GEMM call (RaMP selection, host side): the candidate
// (uniform compiled config or the mixed builtin rule, candidates.h) that the shipped profile for
// (device.name, shape) predicts fastest on this histogram, else the region-analysis fallback's
// candidate; then that candidate's per-expert assignment. The CUDA routing prep runs the same
// selection on the device with CudaOptions::routing_aware (shipped profiles only, no region
// fallback there).
std::vector<int32_t> assign_routing_aware_configs(const GemmShape& shape,
                                                  std::span<const int32_t> expert_counts,
                                                  const DeviceConstants& device);

// The two GEMMs of a layer (GEMM1: N = 2I, K = H; GEMM2: N = H, K = I) with the builtin set.
// forced_config >= 0 gives every expert that config (tests force each config in turn);
// kRoutingAwareConfigs selects per GEMM with assign_routing_aware_configs; -1 (any other
// negative value) is the builtin rule.
Status build_layer_plan(const MoeShape& shape, const int32_t* topk_ids, int32_t num_tokens,
                        ExpertOrder order, int32_t num_sms, int32_t forced_config, Plan* plan);
// Reads args' sizes and topk_ids only (no data pointer is needed to plan).
Status build_grouped_gemm_plan(const GroupedGemmArgs& args, ExpertOrder order, int32_t num_sms,
                               int32_t forced_config, Plan* plan);

}  // namespace ramp::dispatch
