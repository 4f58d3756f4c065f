// The builtin set's kernel instances (kBuiltinConfigs mixed per expert: the layer's rule and
// the routing-aware candidates) and its L2-group-1 variant, in a translation unit of their own
// so they compile in parallel with the catalog parts.
#include "cuda/static_batching_kernel.cuh"

namespace ramp::cuda::detail {

SetLaunchers builtin_set_launchers() { return set_launchers<BuiltinSet, true>(); }
SetLaunchers builtin_group1_set_launchers() { return set_launchers<BuiltinGroup1Set, true>(); }

}  // namespace ramp::cuda::detail
