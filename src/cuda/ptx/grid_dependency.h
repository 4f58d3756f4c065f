// Programmatic dependent launch (sm_90): lets the next kernel on the stream start its prologue
// while this one finishes. Both instructions are no-ops for a kernel launched without the
// programmatic-stream-serialization attribute, so a kernel may always call them.
//
// The rule that keeps it correct: a kernel launched with the attribute calls
// wait_for_previous_grid() before it reads anything the previous kernel writes and before it
// writes anything the previous kernel reads. The wait returns once every CTA of the previous
// grid has exited and its memory operations are visible; since the previous kernel obeyed the
// same rule, the whole chain before it has completed too.
#pragma once

namespace ramp::cuda::ptx {

// Blocks until the grid this launch depends on has completed and flushed its memory.
__device__ __forceinline__ void wait_for_previous_grid() {
  asm volatile("griddepcontrol.wait;" ::: "memory");
}

// Allows the next grid on the stream (if launched programmatically) to be scheduled now. It
// says nothing about this grid's memory: the dependent still waits for completion to read it.
__device__ __forceinline__ void allow_next_grid_launch() {
  asm volatile("griddepcontrol.launch_dependents;" :::);
}

}  // namespace ramp::cuda::ptx
