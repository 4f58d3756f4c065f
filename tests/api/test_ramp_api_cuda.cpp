// The public API on the CUDA backend, through the bundled library only (ctest label `gpu`; every
// test skips without a device).
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "../gpu/gpu_test_support.h"
#include "api_test_data.h"
#include "cpu/reference.h"
#include "ramp/ramp.h"

namespace ramp {
namespace {

using testing::DeviceBuffer;

const MoeShape kShape{8, 2, 256, 128};

// Device copies of a LayerData, addressed by the same MoeLayerArgs layout.
struct DeviceLayer {
  DeviceBuffer hidden, w13, w2, ids, weights, out;
  MoeLayerArgs args;

  explicit DeviceLayer(const LayerData& data)
      : hidden(data.hidden.size() * sizeof(bf16)), w13(data.w13.size() * sizeof(bf16)),
        w2(data.w2.size() * sizeof(bf16)), ids(data.ids.size() * sizeof(int32_t)),
        weights(data.weights.size() * sizeof(float)), out(data.out.size() * sizeof(bf16)) {
    args.num_tokens = data.num_tokens;
    args.hidden = hidden.as<bf16>();
    args.w13 = w13.as<bf16>();
    args.w2 = w2.as<bf16>();
    args.topk_ids = ids.as<int32_t>();
    args.topk_weights = weights.as<float>();
    args.out = out.as<bf16>();
  }

  // Inputs only: the buffers keep their addresses, as a captured graph needs.
  cudaError_t upload(const LayerData& data, cudaStream_t stream) {
    cudaError_t error = cudaSuccess;
    auto copy = [&](void* to, const void* from, size_t bytes) {
      if (error == cudaSuccess) error = cudaMemcpyAsync(to, from, bytes, cudaMemcpyHostToDevice, stream);
    };
    copy(hidden.as(), data.hidden.data(), hidden.bytes());
    copy(w13.as(), data.w13.data(), w13.bytes());
    copy(w2.as(), data.w2.data(), w2.bytes());
    copy(ids.as(), data.ids.data(), ids.bytes());
    copy(weights.as(), data.weights.data(), weights.bytes());
    return error;
  }

  std::vector<bf16> download(cudaStream_t stream) const {
    std::vector<bf16> host(out.bytes() / sizeof(bf16));
    cudaMemcpyAsync(host.data(), out.as(), out.bytes(), cudaMemcpyDeviceToHost, stream);
    cudaStreamSynchronize(stream);
    return host;
  }
};

class StreamFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    RAMP_SKIP_WITHOUT_DEVICE();
    RAMP_ASSERT_CUDA(cudaStreamCreate(&stream_));
  }
  void TearDown() override {
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }
  cudaStream_t stream_ = nullptr;
};

using RampApiCuda = StreamFixture;

TEST_F(RampApiCuda, AutoPicksCuda) {
  EXPECT_EQ(MoeLayer(kShape).backend(), Backend::kCuda);
}

TEST_F(RampApiCuda, FusedMoeMatchesReference) {
  LayerData data(kShape, 37, 1);
  DeviceLayer device(data);
  RAMP_ASSERT_CUDA(device.upload(data, stream_));
  const size_t bytes = fused_moe_workspace_bytes(kShape, data.num_tokens, Backend::kCuda);
  DeviceBuffer workspace(bytes);
  const Status status = fused_moe(kShape, device.args, Backend::kCuda, workspace.as(), bytes, stream_);
  ASSERT_TRUE(status.is_ok()) << status.to_string();
  const std::vector<bf16> out = device.download(stream_);
  EXPECT_LE(cpu::relative_frobenius_error(out, cpu::reference_moe_layer(kShape, data.args())), 1e-2);
}

TEST_F(RampApiCuda, CapturedRunReplansForTheRoutingOfEachReplay) {
  const int32_t tokens = 40;
  LayerData first(kShape, tokens, 2);
  DeviceLayer device(first);
  RAMP_ASSERT_CUDA(device.upload(first, stream_));
  MoeLayer layer(kShape, Backend::kCuda);
  ASSERT_TRUE(layer.status().is_ok());
  const size_t bytes = layer.workspace_bytes(64);  // sized for the largest batch, used for 40
  DeviceBuffer workspace(bytes);
  ASSERT_TRUE(layer.plan(device.args.topk_ids, tokens).is_ok());

  cudaGraph_t graph = nullptr;
  RAMP_ASSERT_CUDA(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
  const Status captured = layer.run(device.args, workspace.as(), bytes, stream_);
  RAMP_ASSERT_CUDA(cudaStreamEndCapture(stream_, &graph));
  ASSERT_TRUE(captured.is_ok()) << captured.to_string();
  cudaGraphExec_t exec = nullptr;
  RAMP_ASSERT_CUDA(cudaGraphInstantiate(&exec, graph, 0));

  LayerData second(kShape, tokens, 3);
  for (size_t i = 0; i < second.ids.size(); ++i) second.ids[i] = i % 3 == 0 ? 7 : second.ids[i];
  RAMP_ASSERT_CUDA(device.upload(second, stream_));
  RAMP_ASSERT_CUDA(cudaGraphLaunch(exec, stream_));
  const std::vector<bf16> replayed = device.download(stream_);
  EXPECT_TRUE(layer.check_routing(device.args, workspace.as(), stream_).is_ok());

  ASSERT_TRUE(layer.run(device.args, workspace.as(), bytes, stream_).is_ok());
  const std::vector<bf16> eager = device.download(stream_);
  EXPECT_EQ(std::memcmp(replayed.data(), eager.data(), eager.size() * sizeof(bf16)), 0);
  EXPECT_LE(cpu::relative_frobenius_error(eager, cpu::reference_moe_layer(kShape, second.args())),
            1e-2);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
}

TEST_F(RampApiCuda, BadIdIsReportedByCheckRoutingWithTheHostMessage) {
  LayerData data(kShape, 6, 4);
  data.ids[7] = 70;
  DeviceLayer device(data);
  RAMP_ASSERT_CUDA(device.upload(data, stream_));
  MoeLayer layer(kShape, Backend::kCuda);
  const size_t bytes = layer.workspace_bytes(data.num_tokens);
  DeviceBuffer workspace(bytes);
  ASSERT_TRUE(layer.plan(device.args.topk_ids, data.num_tokens).is_ok());
  ASSERT_TRUE(layer.run(device.args, workspace.as(), bytes, stream_).is_ok());  // no host sync
  const Status routing = layer.check_routing(device.args, workspace.as(), stream_);
  EXPECT_EQ(routing.to_string(), "invalid argument: topk_ids[3][1] = 70 is outside [0, 8)");
}

// Workspace and overlap errors: returned by run() before anything is launched.
TEST_F(RampApiCuda, WorkspaceAndOverlapErrorsAreReturnedBeforeAnyLaunch) {
  LayerData data(kShape, 6, 5);
  DeviceLayer device(data);
  MoeLayer layer(kShape, Backend::kCuda);
  ASSERT_TRUE(layer.plan(device.args.topk_ids, data.num_tokens).is_ok());
  const size_t bytes = layer.workspace_bytes(data.num_tokens);
  DeviceBuffer workspace(bytes);
  EXPECT_EQ(layer.run(device.args, nullptr, 0, stream_).message(), "workspace is null");
  const Status small = layer.run(device.args, workspace.as(), bytes - 256, stream_);
  EXPECT_EQ(small.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(small.message().find("is smaller than the"), std::string::npos) << small.message();

  MoeLayerArgs args = device.args;
  args.out = device.hidden.as<bf16>();  // in place
  EXPECT_EQ(layer.run(args, workspace.as(), bytes, stream_).to_string(),
            "invalid argument: out overlaps hidden: memory a call writes must not share bytes "
            "with its inputs or its other outputs (no in-place)");
  args.out = workspace.as<bf16>();
  EXPECT_EQ(layer.run(args, workspace.as(), bytes, stream_).message().substr(0, 22),
            "out overlaps workspace");
  EXPECT_EQ(cudaStreamQuery(stream_), cudaSuccess);  // nothing was launched
}

TEST_F(RampApiCuda, ZeroTokensLaunchesNothing) {
  MoeLayer layer(kShape, Backend::kCuda);
  LayerData data(kShape, 0, 6);
  DeviceLayer device(data);
  MoeLayerArgs args = device.args;
  args.hidden = nullptr;
  args.out = nullptr;
  args.topk_ids = nullptr;
  args.topk_weights = nullptr;
  ASSERT_TRUE(layer.plan(nullptr, 0).is_ok());
  EXPECT_TRUE(layer.run(args, nullptr, 0, stream_).is_ok());
  EXPECT_TRUE(layer.check_routing(args, nullptr, stream_).is_ok());
}

}  // namespace
}  // namespace ramp
