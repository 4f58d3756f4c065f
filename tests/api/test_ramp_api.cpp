// The public API (include/ramp/ramp.h) on the CPU backend, through the bundled library only.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "api_test_data.h"
#include "cpu/reference.h"
#include "ramp/ramp.h"

#if RAMP_API_TESTS_WITH_CUDA
#include "cuda/cuda_backend.h"
#endif

namespace ramp {
namespace {

const MoeShape kShape{8, 2, 128, 64};

// Host memory on a 64-byte boundary, as the CPU backend requires, filled with NaN bytes so a
// result that read scratch before writing it would show.
class HostWorkspace {
 public:
  explicit HostWorkspace(size_t bytes) : lines_(bytes / sizeof(Line) + 2), bytes_(bytes) {
    std::memset(lines_.data(), 0xff, lines_.size() * sizeof(Line));
  }
  void* data() { return lines_.data(); }
  size_t bytes() const { return bytes_; }

 private:
  struct alignas(64) Line {
    unsigned char bytes[64];
  };
  std::vector<Line> lines_;
  size_t bytes_;
};

Status fused_moe_cpu(LayerData& data) {
  HostWorkspace workspace(fused_moe_workspace_bytes(data.shape, data.num_tokens, Backend::kCpu));
  return fused_moe(data.shape, data.args(), Backend::kCpu, workspace.data(), workspace.bytes());
}

double error_vs_reference(LayerData& data) {
  return cpu::relative_frobenius_error(data.out, cpu::reference_moe_layer(data.shape, data.args()));
}

TEST(RampApi, FusedMoeMatchesReferenceOnSeveralRoutings) {
  for (int routing = 0; routing < 4; ++routing) {
    LayerData data(kShape, 37, 100 + routing);
    if (routing == 1) std::fill(data.ids.begin(), data.ids.end(), 5);  // every slot, one expert
    if (routing == 2) {
      for (size_t i = 0; i < data.ids.size(); ++i) data.ids[i] = (i / 2) % 3;  // duplicates
    }
    if (routing == 3) {
      for (size_t i = 0; i < data.ids.size(); ++i) data.ids[i] = i % 2 ? 7 : 0;  // two experts
    }
    ASSERT_TRUE(fused_moe_cpu(data).is_ok());
    EXPECT_LE(error_vs_reference(data), 1e-2) << "routing " << routing;
  }
}

TEST(RampApi, ZeroTokensIsValidAndTouchesNothing) {
  LayerData data(kShape, 0, 1);
  MoeLayerArgs args = data.args();
  args.hidden = nullptr;
  args.out = nullptr;
  args.topk_ids = nullptr;
  args.topk_weights = nullptr;
  EXPECT_TRUE(fused_moe(kShape, args, Backend::kCpu, nullptr, 0).is_ok());
  MoeLayer layer(kShape, Backend::kCpu);
  ASSERT_TRUE(layer.plan(nullptr, 0).is_ok());
  EXPECT_TRUE(layer.run(args, nullptr, 0).is_ok());
}

TEST(RampApi, LayerPlanThenRunEqualsFusedMoeBitwise) {
  LayerData data(kShape, 50, 7);
  ASSERT_TRUE(fused_moe_cpu(data).is_ok());
  const std::vector<bf16> fused = data.out;

  MoeLayerOptions options;
  options.cpu_threads = 2;
  MoeLayer layer(kShape, Backend::kCpu, options);
  ASSERT_TRUE(layer.status().is_ok());
  EXPECT_EQ(layer.backend(), Backend::kCpu);
  HostWorkspace workspace(layer.workspace_bytes(data.num_tokens));
  ASSERT_TRUE(layer.plan(data.ids.data(), data.num_tokens).is_ok());
  for (int repeat = 0; repeat < 2; ++repeat) {  // a plan serves several runs of its routing
    std::fill(data.out.begin(), data.out.end(), bf16::from_float(NAN));
    ASSERT_TRUE(layer.run(data.args(), workspace.data(), workspace.bytes()).is_ok());
    EXPECT_EQ(std::memcmp(data.out.data(), fused.data(), fused.size() * sizeof(bf16)), 0);
  }
  EXPECT_TRUE(layer.check_routing(data.args(), nullptr).is_ok());

  MoeLayer moved = std::move(layer);
  EXPECT_TRUE(moved.run(data.args(), workspace.data(), workspace.bytes()).is_ok());
}

// The kCpu contract: workspace_bytes(max) is non-zero, exactly that many bytes serve T = max
// and every smaller T, and the workspace's contents on entry do not change the result.
TEST(RampApi, CpuWorkspaceSizedForMaxTokensServesEverySmallerBatch) {
  constexpr int32_t kMaxTokens = 64;
  MoeLayerOptions options;
  options.cpu_threads = 3;
  MoeLayer layer(kShape, Backend::kCpu, options);
  const size_t bytes = layer.workspace_bytes(kMaxTokens);
  EXPECT_GT(bytes, 0u);
  EXPECT_EQ(bytes, fused_moe_workspace_bytes(kShape, kMaxTokens, Backend::kCpu));
  EXPECT_EQ(layer.workspace_bytes(0), 0u);
  EXPECT_EQ(layer.workspace_bytes(-1), 0u);
  size_t previous = 0;
  for (int32_t tokens = 0; tokens <= kMaxTokens; ++tokens) {
    EXPECT_GE(layer.workspace_bytes(tokens), previous) << "T=" << tokens;
    previous = layer.workspace_bytes(tokens);
  }

  HostWorkspace workspace(bytes);
  for (int32_t tokens : {kMaxTokens, 1, 17, kMaxTokens - 1, 0}) {
    LayerData data(kShape, tokens, 300 + tokens);
    ASSERT_TRUE(fused_moe_cpu(data).is_ok());
    const std::vector<bf16> want = data.out;
    std::fill(data.out.begin(), data.out.end(), bf16::from_float(NAN));
    ASSERT_TRUE(layer.plan(data.ids.data(), tokens).is_ok());
    ASSERT_TRUE(layer.run(data.args(), workspace.data(), bytes).is_ok()) << "T=" << tokens;
    if (tokens == 0) continue;
    EXPECT_EQ(std::memcmp(data.out.data(), want.data(), want.size() * sizeof(bf16)), 0)
        << "T=" << tokens;
    EXPECT_LE(error_vs_reference(data), 1e-2);
  }
}

TEST(RampApi, CpuWorkspaceNullMisalignedOrShortIsRejectedBeforeWriting) {
  LayerData data(kShape, 9, 11);
  MoeLayer layer(kShape, Backend::kCpu);
  const size_t bytes = layer.workspace_bytes(data.num_tokens);
  HostWorkspace workspace(bytes + 64);
  ASSERT_TRUE(layer.plan(data.ids.data(), data.num_tokens).is_ok());

  Status status = layer.run(data.args(), nullptr, bytes);
  EXPECT_EQ(status.code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(status.message(), "workspace is null (this call needs " + std::to_string(bytes) +
                                  " bytes)");
  status = layer.run(data.args(), static_cast<char*>(workspace.data()) + 16, bytes);
  EXPECT_EQ(status.code(), ErrorCode::kMisaligned);
  EXPECT_EQ(status.message(), "workspace is not 64-byte aligned");
  status = layer.run(data.args(), workspace.data(), bytes - 1);
  EXPECT_EQ(status.code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(status.message(), "workspace_bytes = " + std::to_string(bytes - 1) +
                                  " is smaller than the " + std::to_string(bytes) +
                                  " bytes this call needs");
  EXPECT_EQ(fused_moe(kShape, data.args(), Backend::kCpu, nullptr, 0).code(),
            ErrorCode::kInvalidArgument);
  for (const bf16& v : data.out) EXPECT_TRUE(std::isnan(v.to_float()));  // never written
  const auto* scratch = static_cast<const unsigned char*>(workspace.data());
  EXPECT_EQ(std::count(scratch, scratch + bytes, 0xff), static_cast<ptrdiff_t>(bytes))
      << "a rejected call wrote into the short workspace";
}

// In place (out == hidden) and out inside the workspace: an error before anything is written,
// on the one-call path and on plan/run alike.
TEST(RampApi, OverlappingOutIsRejectedBeforeWriting) {
  LayerData data(kShape, 6, 5);
  const std::vector<bf16> hidden_before = data.hidden;
  MoeLayerArgs in_place = data.args();
  in_place.out = data.hidden.data();
  HostWorkspace workspace(fused_moe_workspace_bytes(kShape, data.num_tokens, Backend::kCpu));
  Status status =
      fused_moe(kShape, in_place, Backend::kCpu, workspace.data(), workspace.bytes());
  EXPECT_EQ(status.to_string(),
            "invalid argument: out overlaps hidden: memory a call writes must not share bytes "
            "with its inputs or its other outputs (no in-place)");
  MoeLayer layer(kShape, Backend::kCpu);
  ASSERT_TRUE(layer.plan(data.ids.data(), data.num_tokens).is_ok());
  EXPECT_EQ(layer.run(in_place, workspace.data(), workspace.bytes()).code(),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(std::memcmp(data.hidden.data(), hidden_before.data(),
                        hidden_before.size() * sizeof(bf16)),
            0);

  MoeLayerArgs into_workspace = data.args();
  into_workspace.out = static_cast<bf16*>(workspace.data());
  status = layer.run(into_workspace, workspace.data(), workspace.bytes());
  EXPECT_EQ(status.message().substr(0, 22), "out overlaps workspace");
  const auto* scratch = static_cast<const unsigned char*>(workspace.data());
  EXPECT_EQ(std::count(scratch, scratch + workspace.bytes(), 0xff),
            static_cast<ptrdiff_t>(workspace.bytes()))
      << "a rejected call wrote into the workspace";
  for (const bf16& v : data.out) EXPECT_TRUE(std::isnan(v.to_float()));  // never written
}

TEST(RampApi, RunMustFollowAMatchingPlan) {
  LayerData data(kShape, 20, 3);
  MoeLayer layer(kShape, Backend::kCpu);
  Status status = layer.run(data.args(), nullptr, 0);
  EXPECT_EQ(status.code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(status.message(), "run() before plan(): plan(topk_ids, T) first");

  ASSERT_TRUE(layer.plan(data.ids.data(), data.num_tokens).is_ok());
  MoeLayerArgs fewer = data.args();
  fewer.num_tokens = 10;
  status = layer.run(fewer, nullptr, 0);  // the plan check comes before the workspace's
  EXPECT_EQ(status.message(), "run() arguments differ from the last plan(): plan had T=20, run has T=10");

  // Same pointer, changed ids: the plan no longer describes the routing.
  data.ids[3] = (data.ids[3] + 1) % kShape.num_experts;
  HostWorkspace workspace(layer.workspace_bytes(data.num_tokens));
  status = layer.run(data.args(), workspace.data(), workspace.bytes());
  EXPECT_EQ(status.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(status.message().find("plan does not match topk_ids"), std::string::npos)
      << status.message();
}

TEST(RampApi, BadInputReturnsTheValidationMessage) {
  LayerData data(kShape, 6, 5);
  data.ids[7] = 70;  // token 3, slot 1
  Status status = fused_moe(kShape, data.args(), Backend::kCpu, nullptr, 0);
  EXPECT_EQ(status.to_string(), "invalid argument: topk_ids[3][1] = 70 is outside [0, 8)");
  MoeLayer layer(kShape, Backend::kCpu);
  EXPECT_EQ(layer.plan(data.ids.data(), data.num_tokens).message(),
            "topk_ids[3][1] = 70 is outside [0, 8)");
  data.ids[7] = 1;

  data.weights[4] = NAN;
  status = fused_moe_cpu(data);
  EXPECT_EQ(status.message(), "topk_weights[2][0] = nan is not finite");
  data.weights[4] = 1.0f;

  for (const bf16& v : data.out) EXPECT_TRUE(std::isnan(v.to_float()));  // never written

  MoeLayerArgs args = data.args();
  args.out = nullptr;
  EXPECT_EQ(fused_moe(kShape, args, Backend::kCpu, nullptr, 0).message(), "out is null");
  args = data.args();
  args.hidden = data.hidden.data() + 1;
  EXPECT_EQ(fused_moe(kShape, args, Backend::kCpu, nullptr, 0).code(), ErrorCode::kMisaligned);

  const MoeShape bad_shape{8, 2, 100, 64};
  MoeLayer bad_layer(bad_shape, Backend::kCpu);
  EXPECT_EQ(bad_layer.status().code(), ErrorCode::kUnsupportedShape);
  EXPECT_EQ(bad_layer.plan(data.ids.data(), data.num_tokens).code(), ErrorCode::kUnsupportedShape);
  EXPECT_EQ(bad_layer.workspace_bytes(16), 0u);
  EXPECT_EQ(MoeLayer(MoeShape{8, 9, 128, 64}, Backend::kCpu).status().message(),
            "top_k (k) = 9 must be in [1, E = 8]");
  MoeLayerOptions negative;
  negative.cpu_threads = -1;
  EXPECT_EQ(MoeLayer(kShape, Backend::kCpu, negative).status().code(), ErrorCode::kInvalidArgument);
}

TEST(RampApi, BackendResolution) {
  Backend resolved = Backend::kAuto;
  ASSERT_TRUE(resolve_backend(Backend::kCpu, &resolved).is_ok());
  EXPECT_EQ(resolved, Backend::kCpu);
  ASSERT_TRUE(resolve_backend(Backend::kAuto, &resolved).is_ok());
  EXPECT_EQ(resolved, cuda_device_available() ? Backend::kCuda : Backend::kCpu);
  EXPECT_EQ(resolve_backend(static_cast<Backend>(7), &resolved).code(), ErrorCode::kInvalidArgument);
  if (!cuda_device_available()) {
    const Status status = resolve_backend(Backend::kCuda, &resolved);
    EXPECT_EQ(status.code(), ErrorCode::kNoDevice);
    EXPECT_EQ(MoeLayer(kShape, Backend::kCuda).status().code(), ErrorCode::kNoDevice);
    LayerData data(kShape, 4, 1);
    EXPECT_EQ(fused_moe(kShape, data.args(), Backend::kCuda, nullptr, 0).code(),
              ErrorCode::kNoDevice);
  }
  EXPECT_STREQ(backend_name(Backend::kCuda), "cuda");
}

#if RAMP_API_TESTS_WITH_CUDA
// ramp.h promises workspace_bytes(max_tokens) covers every smaller T (host arithmetic only).
TEST(RampApi, CudaWorkspaceForMaxTokensCoversEverySmallerBatch) {
  for (const MoeShape& shape : {kShape, MoeShape{128, 8, 2048, 768}, MoeShape{1, 1, 64, 64}}) {
    size_t previous = 0;
    for (int32_t tokens = 0; tokens <= 4096; tokens += tokens < 64 ? 1 : 37) {
      const size_t bytes = cuda::moe_layer_workspace_bytes(shape, tokens);
      EXPECT_GE(bytes, previous) << shape.to_string() << " T=" << tokens;
      previous = bytes;
    }
  }
}
#endif

}  // namespace
}  // namespace ramp
