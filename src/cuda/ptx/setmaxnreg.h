// setmaxnreg: moves registers between warpgroups at run time (sm_90a). Takes effect only when
// the kernel has a register cap at entry (__launch_bounds__(threads, 1)).
#pragma once

#include <cstdint>

namespace ramp::cuda::ptx {

template <uint32_t kRegisters>
__device__ __forceinline__ void setmaxnreg_dec() {
  static_assert(kRegisters % 8 == 0 && kRegisters >= 24 && kRegisters <= 256);
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;" ::"n"(kRegisters));
}

template <uint32_t kRegisters>
__device__ __forceinline__ void setmaxnreg_inc() {
  static_assert(kRegisters % 8 == 0 && kRegisters >= 24 && kRegisters <= 256);
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" ::"n"(kRegisters));
}

}  // namespace ramp::cuda::ptx
