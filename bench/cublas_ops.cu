#include "bench/cublas_ops.h"

#include <cublas_v2.h>

#include <algorithm>
#include <string>

#include "cuda/cuda_check.h"

namespace ramp::bench {

namespace {

Status cublas_status(cublasStatus_t status, const char* what) {
  if (status == CUBLAS_STATUS_SUCCESS) return Status::ok();
  return Status(ErrorCode::kCudaError, std::string(what) + " failed: " +
                                           cublasGetStatusName(status) + " (" +
                                           cublasGetStatusString(status) + ")");
}

#define BENCH_CUBLAS_TRY(expr) RAMP_TRY(cublas_status((expr), #expr))

constexpr size_t kCublasWorkspaceBytes = size_t{64} << 20;

// One warp-wide 16-byte copy loop per sorted row: rows are K bf16 = K/8 uint4.
__global__ void gather_rows_kernel(const uint4* x, const int32_t* sorted_tokens, uint4* x_sorted,
                                   int64_t rows, int64_t vectors_per_row) {
  const int64_t row = blockIdx.x * static_cast<int64_t>(blockDim.y) + threadIdx.y;
  if (row >= rows) return;
  const uint4* source = x + static_cast<int64_t>(sorted_tokens[row]) * vectors_per_row;
  uint4* destination = x_sorted + row * vectors_per_row;
  for (int64_t v = threadIdx.x; v < vectors_per_row; v += blockDim.x) destination[v] = source[v];
}

}  // namespace

struct Cublas::Impl {
  cublasHandle_t handle = nullptr;
  DeviceBuffer workspace;
};

Cublas::Cublas() : impl_(std::make_unique<Impl>()) {}
Cublas::~Cublas() {
  if (impl_->handle != nullptr) cublasDestroy(impl_->handle);
}

Status Cublas::init(cudaStream_t stream) {
  BENCH_CUBLAS_TRY(cublasCreate(&impl_->handle));
  BENCH_CUBLAS_TRY(cublasSetStream(impl_->handle, stream));
  RAMP_TRY(impl_->workspace.allocate(kCublasWorkspaceBytes));
  BENCH_CUBLAS_TRY(
      cublasSetWorkspace(impl_->handle, impl_->workspace.data(), impl_->workspace.bytes()));
  return Status::ok();
}

Status Cublas::gemm_xwt(const bf16* x, const bf16* w, bf16* y, int64_t m, int64_t n, int64_t k,
                        int64_t ldx, int64_t ldw, int64_t ldy) {
  // Column-major view of row-major data: y^T [n, m] = w [n, k] . x^T [k, m], i.e. "TN".
  const float alpha = 1.0f, beta = 0.0f;
  BENCH_CUBLAS_TRY(cublasGemmEx(impl_->handle, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n),
                                static_cast<int>(m), static_cast<int>(k), &alpha, w,
                                CUDA_R_16BF, static_cast<int>(ldw), x, CUDA_R_16BF,
                                static_cast<int>(ldx), &beta, y, CUDA_R_16BF,
                                static_cast<int>(ldy), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  return Status::ok();
}

Status measure_ceilings(Cublas& cublas, cudaStream_t stream, L2Flusher* flusher, int repeats,
                        Ceilings* ceilings) {
  const int64_t n = ceilings->gemm_size;
  {
    DeviceBuffer a, b, c;
    const size_t elements = static_cast<size_t>(n) * n;
    RAMP_TRY(a.allocate(elements * sizeof(bf16)));
    RAMP_TRY(b.allocate(elements * sizeof(bf16)));
    RAMP_TRY(c.allocate(elements * sizeof(bf16)));
    RAMP_TRY(fill_random_bf16_device(a.as<bf16>(), elements, 101, 1.0f, stream));
    RAMP_TRY(fill_random_bf16_device(b.as<bf16>(), elements, 102, 1.0f, stream));
    TimingOptions options;
    options.warmup = 5;
    options.repeats = repeats;
    options.use_graph = false;  // one launch of ~1.4 ms: launch cost is noise
    options.flush_l2 = false;   // 3 x 128 MiB operands: the L2 holds a small part of them
    RAMP_TRY(time_device_op(
        [&](cudaStream_t) {
          return cublas.gemm_xwt(a.as<bf16>(), b.as<bf16>(), c.as<bf16>(), n, n, n, n, n, n);
        },
        options, stream, flusher, &ceilings->gemm_timing));
    ceilings->gemm_tflops = 2.0 * n * n * n / (ceilings->gemm_timing.median_ms * 1e9);
  }
  {
    ceilings->copy_bytes = size_t{2} << 30;
    DeviceBuffer source, destination;
    RAMP_TRY(source.allocate(ceilings->copy_bytes));
    RAMP_TRY(destination.allocate(ceilings->copy_bytes));
    RAMP_TRY(fill_random_bf16_device(source.as<bf16>(), ceilings->copy_bytes / 2, 103, 1.0f,
                                     stream));
    TimingOptions options;
    options.warmup = 3;
    options.repeats = repeats;
    options.use_graph = false;
    options.flush_l2 = false;
    RAMP_TRY(time_device_op(
        [&](cudaStream_t s) {
          RAMP_CUDA_TRY(cudaMemcpyAsync(destination.data(), source.data(), ceilings->copy_bytes,
                                        cudaMemcpyDeviceToDevice, s));
          return Status::ok();
        },
        options, stream, flusher, &ceilings->copy_timing));
    ceilings->copy_gbps =
        2.0 * static_cast<double>(ceilings->copy_bytes) / (ceilings->copy_timing.median_ms * 1e6);
  }
  return Status::ok();
}

Status CublasExpertLoop::setup(const GroupedGemmArgs& device_args,
                               const std::vector<int32_t>& host_topk_ids) {
  args_ = device_args;
  const int64_t experts = args_.num_experts;
  const int64_t slots = static_cast<int64_t>(args_.num_tokens) * args_.top_k;
  if (static_cast<int64_t>(host_topk_ids.size()) != slots) {
    return Status(ErrorCode::kShapeMismatch, "cuBLAS peer: topk_ids has " +
                                                 std::to_string(host_topk_ids.size()) +
                                                 " entries, expected T*k = " +
                                                 std::to_string(slots));
  }
  if (args_.in_features % 8 != 0) {
    return Status(ErrorCode::kUnsupportedShape, "cuBLAS peer: K must be a multiple of 8");
  }
  // Stable counting sort of slots by expert (host, untimed).
  expert_offsets_.assign(experts + 1, 0);
  for (int32_t e : host_topk_ids) ++expert_offsets_[e + 1];
  for (int64_t e = 0; e < experts; ++e) expert_offsets_[e + 1] += expert_offsets_[e];
  std::vector<int64_t> cursor(expert_offsets_.begin(), expert_offsets_.end() - 1);
  std::vector<int32_t> sorted_tokens(slots);
  sorted_row_of_slot_.assign(slots, 0);
  for (int64_t slot = 0; slot < slots; ++slot) {
    const int64_t row = cursor[host_topk_ids[slot]]++;
    sorted_tokens[row] = static_cast<int32_t>(slot / args_.top_k);
    sorted_row_of_slot_[slot] = row;
  }
  RAMP_TRY(sorted_tokens_.allocate(std::max<int64_t>(slots, 1) * sizeof(int32_t)));
  RAMP_TRY(x_sorted_.allocate(std::max<int64_t>(slots, 1) * args_.in_features * sizeof(bf16)));
  RAMP_TRY(y_sorted_.allocate(std::max<int64_t>(slots, 1) * args_.out_features * sizeof(bf16)));
  if (slots > 0) {
    RAMP_CUDA_TRY(cudaMemcpy(sorted_tokens_.data(), sorted_tokens.data(),
                             slots * sizeof(int32_t), cudaMemcpyHostToDevice));
  }
  return Status::ok();
}

int32_t CublasExpertLoop::active_experts() const {
  int32_t active = 0;
  for (size_t e = 0; e + 1 < expert_offsets_.size(); ++e) {
    active += expert_offsets_[e + 1] > expert_offsets_[e] ? 1 : 0;
  }
  return active;
}

Status CublasExpertLoop::enqueue(Cublas& cublas, cudaStream_t stream) const {
  const int64_t slots = expert_offsets_.back();
  if (slots == 0) return Status::ok();
  const int64_t K = args_.in_features, N = args_.out_features;
  const dim3 block(32, 8);
  const dim3 grid(static_cast<unsigned>((slots + block.y - 1) / block.y));
  gather_rows_kernel<<<grid, block, 0, stream>>>(
      reinterpret_cast<const uint4*>(args_.x), sorted_tokens_.as<const int32_t>(),
      x_sorted_.as<uint4>(), slots, K / 8);
  RAMP_CUDA_TRY(cudaGetLastError());
  for (int64_t e = 0; e + 1 < static_cast<int64_t>(expert_offsets_.size()); ++e) {
    const int64_t begin = expert_offsets_[e], rows = expert_offsets_[e + 1] - begin;
    if (rows == 0) continue;
    RAMP_TRY(cublas.gemm_xwt(x_sorted_.as<bf16>() + begin * K, args_.w + e * N * K,
                             y_sorted_.as<bf16>() + begin * N, rows, N, K, K, K, N));
  }
  return Status::ok();
}

}  // namespace ramp::bench
