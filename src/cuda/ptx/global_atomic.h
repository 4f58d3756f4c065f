// Global-memory words shared between CTAs of running grids (the decode path's scheduling words,
// core/decode_plan.h): GPU-scope atomics, an acquiring load to poll with, and a relaxed store.
// Relaxed and acquire operations at .gpu scope are "strong" in the PTX memory model, so they
// may race with each other on one word by design.
#pragma once

#include <cstdint>

namespace ramp::cuda::ptx {

// Adds `value` and returns what the word held before.
__device__ __forceinline__ uint64_t atomic_add_relaxed(uint64_t* word, uint64_t value) {
  uint64_t old;
  asm volatile("atom.relaxed.gpu.global.add.u64 %0, [%1], %2;"
               : "=l"(old)
               : "l"(word), "l"(value)
               : "memory");
  return old;
}

// The same with acquire-release semantics: the adders' earlier accesses happen before the later
// accesses of whoever reads the sum (used where the last of many adders writes a word the others
// read before adding).
__device__ __forceinline__ uint64_t atomic_add_acq_rel(uint64_t* word, uint64_t value) {
  uint64_t old;
  asm volatile("atom.acq_rel.gpu.global.add.u64 %0, [%1], %2;"
               : "=l"(old)
               : "l"(word), "l"(value)
               : "memory");
  return old;
}

__device__ __forceinline__ void store_relaxed(uint64_t* word, uint64_t value) {
  asm volatile("st.relaxed.gpu.global.u64 [%0], %1;" ::"l"(word), "l"(value) : "memory");
}

__device__ __forceinline__ uint64_t load_relaxed(const uint64_t* word) {
  uint64_t value;
  asm volatile("ld.relaxed.gpu.global.u64 %0, [%1];" : "=l"(value) : "l"(word) : "memory");
  return value;
}

// Orders this thread's earlier memory operations (and, being cumulative, those it has seen from
// others, e.g. across a warp barrier) before its later ones, at GPU scope: a release when a
// relaxed atomic follows.
__device__ __forceinline__ void fence_acq_rel_gpu() {
  asm volatile("fence.acq_rel.gpu;" ::: "memory");
}

// Loads after this one (in this thread) see everything the writer made visible before the
// release (or the fence before the relaxed atomic) that produced the value read.
__device__ __forceinline__ uint64_t load_acquire(const uint64_t* word) {
  uint64_t value;
  asm volatile("ld.acquire.gpu.global.u64 %0, [%1];" : "=l"(value) : "l"(word) : "memory");
  return value;
}

}  // namespace ramp::cuda::ptx
