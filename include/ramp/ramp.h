// The MoE layer as applications call it. One header, no CUDA headers: device pointers and
// streams travel as plain pointers (a cudaStream_t is passed as void*).
//
//   out[t] = sum_j topk_weights[t,j] * w2[e] . (silu(g) * u),  [g; u] = w13[e] . hidden[t],
//   e = topk_ids[t,j]            (shapes and layouts: MoeShape / MoeLayerArgs in types.h)
//
// Two ways in:
//   * ramp::fused_moe(shape, args, backend, workspace, bytes, stream): one call, plans and runs.
//   * ramp::MoeLayer: construct once per layer shape, size the workspace once for the largest
//     batch, then per step plan(topk_ids, T) and run(args, workspace, bytes, stream).
//
// Backends:
//   kCpu   host pointers. Synchronous: run() returns when `out` is written. stream is ignored.
//   kCuda  device pointers, asynchronous on `stream` (nullptr = the legacy default stream), no
//          host synchronisation and no allocation, so a run() can be captured in a CUDA graph.
//          Only in builds configured with nvcc (cuda_backend_built()).
//   kAuto  kCuda when this build has it and a device is present, else kCpu. Resolved once, when
//          the MoeLayer is constructed (or per fused_moe call); backend() says which was chosen.
//
// Workspace: the caller owns it, on both backends. workspace_bytes(max_tokens) is enough for
// every call with T <= max_tokens. A call with T = 0 uses none and may pass null.
//   kCuda  device memory, 256-byte aligned (cudaMalloc's is).
//   kCpu   host memory, 64-byte aligned (a cache line: use std::aligned_alloc(64, ...) or a
//          vector of alignas(64) elements; malloc and std::vector<std::byte> promise only 16).
//          About T*k*(2*I + 4*H) bytes: the bf16 intermediate and the fp32 slot outputs.
// Its contents before run() do not matter. (kCuda keeps 33 KB of scheduling words for its
// small-batch path at the start of the workspace from one run() to the next; whatever the caller
// leaves there is accepted: core/decode_plan.h, "Scheduling words".)
//
// What a kCpu MoeLayer allocates: plan() builds the routing and tile schedule in host memory
// (std::vector storage, freshly allocated by every plan()). run() allocates nothing and starts
// no thread, except that the first run() starts the layer's worker threads (cpu_threads - 1 of
// them: the thread calling run() works too), which live until the layer is destroyed, and each
// thread's tile-packing buffers grow, once, the first time it meets a tile larger than any it
// has packed before (with a fixed shape and config set they stop growing after the first runs).
// fused_moe() on kCpu additionally plans and starts and joins its threads on every call.
//
// Bad input (every entry point returns a Status; nothing throws, nothing aborts):
//   * Structural errors — shape (E < 1, k outside [1, E], H or I not a positive multiple of 64),
//     T < 0, null or not 16-byte aligned pointers, row strides shorter than H or not a multiple
//     of 8, a workspace that is null, misaligned or too small — are returned before anything
//     runs, with a message naming the argument, e.g.
//     "unsupported shape: hidden (H) = 100 must be a positive multiple of 64 (...)".
//   * Value errors — an id outside [0, E), a non-finite router weight — on kCpu are returned by
//     plan()/run() before `out` is touched:
//     "invalid argument: topk_ids[3][1] = 70 is outside [0, 64)".
//     On kCuda they are found on the device (the host never reads device data on the hot path):
//     a bad id is routed nowhere and never dereferenced, the affected token's output is not a
//     valid result, and check_routing() later returns the same Status, same message.
//   * T = 0 is valid: nothing is read, written or launched.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "ramp/bf16.h"
#include "ramp/status.h"
#include "ramp/types.h"

namespace ramp {

enum class Backend { kAuto, kCpu, kCuda };

// "auto", "cpu", "cuda".
const char* backend_name(Backend backend);
// True when this library was built with the CUDA backend.
bool cuda_backend_built();
// True when the CUDA backend is built and the CUDA runtime sees a device.
bool cuda_device_available();
// kAuto -> kCuda or kCpu as described above. Asking for kCuda where it cannot run is an error
// (kNoDevice), as is an out-of-range enum value (kInvalidArgument).
Status resolve_backend(Backend requested, Backend* resolved);

struct MoeLayerOptions {
  // kCpu: threads that execute run(), the calling thread included; 0 = all cores. Started by
  // the first run() and kept until the layer is destroyed.
  int32_t cpu_threads = 0;
  // SM count the tile schedule is planned for; 0 = the current device's (kCuda) or 132 (kCpu,
  // an H100's, so the CPU executes the schedule the GPU would).
  int32_t num_sms = 0;
  // >= 0: every expert uses this builtin tile config (tests, profiling); -1: chosen per expert
  // from the live histogram.
  int32_t forced_config = -1;
};

// One layer's entry point. Not safe to call from two threads at once (plan() and run() share
// the plan); distinct MoeLayer objects are independent.
class MoeLayer {
 public:
  // Validates the shape and resolves the backend; the result is status(). A layer whose
  // status() is an error returns that same error from every call.
  explicit MoeLayer(const MoeShape& shape, Backend backend = Backend::kAuto,
                    const MoeLayerOptions& options = {});
  ~MoeLayer();
  MoeLayer(MoeLayer&&) noexcept;
  MoeLayer& operator=(MoeLayer&&) noexcept;
  MoeLayer(const MoeLayer&) = delete;
  MoeLayer& operator=(const MoeLayer&) = delete;

  const Status& status() const;
  const MoeShape& shape() const;
  Backend backend() const;  // the resolved backend: kCpu or kCuda (kAuto only if status() failed)

  // Bytes of workspace run() needs for any T <= max_tokens (see "Workspace" above; 0 when
  // status() is an error or max_tokens < 0, and on kCpu when max_tokens = 0).
  size_t workspace_bytes(int32_t max_tokens) const;

  // Prepares the routing of the next run(). topk_ids is [T, k] in the backend's memory.
  //   kCpu:  reads and validates the ids, builds the expert histogram, the stable per-expert
  //          slot lists and the tile schedule (allocates host memory for them).
  //   kCuda: reads nothing (device pointer): checks T and records (topk_ids, T). The histogram
  //          and schedule are built on the device inside run(), so every replay of a captured
  //          run() schedules for the ids it finds then.
  Status plan(const int32_t* topk_ids, int32_t num_tokens);

  // Runs the layer for the routing of the last plan(): args.num_tokens and args.topk_ids must be
  // the ones given to plan() (kInvalidArgument otherwise; on kCpu the ids' values must also be
  // unchanged). `stream` is a cudaStream_t on kCuda, ignored on kCpu. workspace may be null when
  // workspace_bytes(args.num_tokens) is 0; a null, misaligned or short workspace is an error
  // returned before anything is written.
  Status run(const MoeLayerArgs& args, void* workspace, size_t workspace_bytes,
             void* stream = nullptr);

  // The routing verdict of the last run() that used `workspace`:
  //   kCuda: synchronises `stream`, reads the device's error flag, and returns the Status the
  //          host check gives for the same ids and weights (only the offending element is copied
  //          back, to quote it). Not for use inside a stream capture.
  //   kCpu:  run() already validated synchronously; returns Ok.
  Status check_routing(const MoeLayerArgs& args, const void* workspace, void* stream = nullptr) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Workspace for fused_moe with T = num_tokens on `backend` (kAuto resolved as fused_moe does).
size_t fused_moe_workspace_bytes(const MoeShape& shape, int32_t num_tokens,
                                 Backend backend = Backend::kAuto);

// plan + run in one call, default options. Same pointers, workspace and error rules as MoeLayer.
Status fused_moe(const MoeShape& shape, const MoeLayerArgs& args, Backend backend,
                 void* workspace, size_t workspace_bytes, void* stream = nullptr);

}  // namespace ramp
