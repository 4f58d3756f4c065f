// The builtin set's kernel instances (kBuiltinConfigs mixed per expert: the layer's rule and
// the routing-aware candidates), in a translation unit of their own so they compile in
// parallel with the catalog parts.
#include "cuda/static_batching_kernel.cuh"

namespace ramp::cuda::detail {

SetLaunchers builtin_set_launchers() { return set_launchers<BuiltinSet>(); }

}  // namespace ramp::cuda::detail
