// Proxy fences: order generic-proxy shared-memory traffic (cp.async, st.shared) against the
// async proxy (wgmma operand reads, TMA).
#pragma once

namespace ramp::cuda::ptx {

__device__ __forceinline__ void fence_proxy_async_shared() {
  asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
}

}  // namespace ramp::cuda::ptx
