// The CPU backend: executes a Plan CTA by CTA through the same TilePrefix mapping, tile
// coordinates and data flow the GPU kernel uses (gathered token rows, intermediate at the
// sorted row, router-weight scale in GEMM2, fixed-order combine). It is the executable
// specification of the kernel and the fallback when no GPU is present.
//
// Results are bitwise deterministic whatever the thread count: every output element is
// produced by exactly one tile, whose fp32 sums run in ascending k (see tile_gemm.h).
//
// Memory and threads. The overloads taking an Executor and a workspace allocate nothing and
// start no thread: the layer's scratch lives in the caller's workspace and the work runs on
// the Executor's persistent threads. Only each thread's packing buffers (TileGemm panels and
// row pointers, kept in the Executor) grow, the first time a tile larger than any before is
// executed; with the same configs and shape they stop growing after the first call. The
// overloads taking `num_threads` are conveniences for tests and tools: they allocate the
// workspace and start (and join) an Executor's threads on every call.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "core/plan.h"
#include "ramp/status.h"
#include "ramp/types.h"

namespace ramp::cpu {

// 0 = std::thread::hardware_concurrency().
inline constexpr int kDefaultThreads = 0;

// A cache line: the intermediate and slot-output arrays start on one so that no two threads
// writing neighbouring rows share a line at the boundary between them.
inline constexpr size_t kWorkspaceAlignment = 64;

// Kept alive across calls so that a call starts no thread. Runs one call at a time: two
// threads must not run work on the same Executor concurrently.
class Executor {
 public:
  // num_threads = 0: all cores. The calling thread is one of them, so num_threads - 1 helper
  // threads are started here and joined by the destructor. May throw std::system_error when
  // the system refuses a thread (the API turns that into a Status).
  explicit Executor(int num_threads = kDefaultThreads);
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  int num_threads() const;

  struct Impl;  // defined in cpu_backend.cpp
  Impl& impl() { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

// Bytes of host workspace run_moe_layer needs for T = num_tokens (and every smaller T): the
// bf16 intermediate [T*k, I] and the fp32 weighted slot outputs [T*k, H]. 0 for T <= 0 or an
// invalid shape.
size_t moe_layer_workspace_bytes(const MoeShape& shape, int32_t num_tokens);

// y[slot] = bf16(x[slot / k] · w[e]^T) for every slot, with plan gemm 0 (N = out_features,
// K = in_features) built from args.topk_ids. Needs no workspace: tiles write y directly.
Status run_grouped_gemm(const Plan& plan, const GroupedGemmArgs& args, Executor& executor);
Status run_grouped_gemm(const Plan& plan, const GroupedGemmArgs& args,
                        int num_threads = kDefaultThreads);

// The MoE layer with plan gemm 0 = GEMM1 (N = 2I, K = H, SiLU(gate)·up fused) and gemm 1 =
// GEMM2 (N = H, K = I, router weight fused), then the combine over each token's k slots.
// workspace: host memory, kWorkspaceAlignment-aligned, at least
// moe_layer_workspace_bytes(shape, args.num_tokens) bytes; its contents on entry do not matter.
// It may be null only when that size is 0. A null, misaligned or short workspace is an error
// returned before anything is written.
Status run_moe_layer(const Plan& plan, const MoeShape& shape, const MoeLayerArgs& args,
                     void* workspace, size_t workspace_bytes, Executor& executor);
Status run_moe_layer(const Plan& plan, const MoeShape& shape, const MoeLayerArgs& args,
                     int num_threads = kDefaultThreads);

}  // namespace ramp::cpu
