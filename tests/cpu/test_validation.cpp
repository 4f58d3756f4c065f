// Every bad-input class gets its own error, naming the first offending element or argument.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "core/validation.h"

namespace ramp {
namespace {

struct LayerFixture {
  MoeShape shape{8, 2, 128, 64, DType::kBF16};
  int32_t num_tokens = 3;
  std::vector<bf16> hidden = std::vector<bf16>(3 * 128);
  std::vector<bf16> w13 = std::vector<bf16>(8 * 128 * 128);
  std::vector<bf16> w2 = std::vector<bf16>(8 * 128 * 64);
  std::vector<int32_t> ids = {0, 1, 2, 3, 4, 5};
  std::vector<float> weights = std::vector<float>(6, 0.5f);
  std::vector<bf16> out = std::vector<bf16>(3 * 128);

  MoeLayerArgs args() {
    MoeLayerArgs a;
    a.num_tokens = num_tokens;
    a.hidden = hidden.data();
    a.w13 = w13.data();
    a.w2 = w2.data();
    a.topk_ids = ids.data();
    a.topk_weights = weights.data();
    a.out = out.data();
    return a;
  }
};

TEST(ValidateShape, AcceptsEveryPublicModelShapeClass) {
  EXPECT_TRUE(validate_shape({64, 8, 2048, 1024}).is_ok());
  EXPECT_TRUE(validate_shape({128, 4, 2880, 2880}).is_ok());
  EXPECT_TRUE(validate_shape({1, 1, 64, 64}).is_ok());
}

TEST(ValidateShape, NamesTheBadDimension) {
  Status s = validate_shape({0, 1, 64, 64});
  EXPECT_EQ(s.code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "num_experts (E) = 0 must be >= 1");
  s = validate_shape({8, 9, 64, 64});
  EXPECT_EQ(s.message(), "top_k (k) = 9 must be in [1, E = 8]");
  s = validate_shape({8, 0, 64, 64});
  EXPECT_EQ(s.code(), ErrorCode::kInvalidArgument);
  s = validate_shape({8, 2, 100, 64});
  EXPECT_EQ(s.code(), ErrorCode::kUnsupportedShape);
  EXPECT_NE(s.message().find("hidden (H) = 100"), std::string::npos);
  s = validate_shape({8, 2, 64, 0});
  EXPECT_EQ(s.code(), ErrorCode::kUnsupportedShape);
  EXPECT_NE(s.message().find("intermediate (I) = 0"), std::string::npos);
}

TEST(ValidateLayerArgs, AcceptsAWellFormedCall) {
  LayerFixture f;
  EXPECT_TRUE(validate_layer_args(f.shape, f.args()).is_ok());
}

TEST(ValidateLayerArgs, ZeroTokensNeedsNoTokenBuffers) {
  LayerFixture f;
  MoeLayerArgs a = f.args();
  a.num_tokens = 0;
  a.hidden = nullptr;
  a.out = nullptr;
  a.topk_ids = nullptr;
  a.topk_weights = nullptr;
  EXPECT_TRUE(validate_layer_args(f.shape, a).is_ok());
}

TEST(ValidateLayerArgs, NullMisalignedAndStrides) {
  LayerFixture f;
  MoeLayerArgs a = f.args();
  a.hidden = nullptr;
  EXPECT_EQ(validate_layer_args(f.shape, a).message(), "hidden is null");

  a = f.args();
  a.out = f.out.data() + 1;  // 2 bytes off
  Status s = validate_layer_args(f.shape, a);
  EXPECT_EQ(s.code(), ErrorCode::kMisaligned);
  EXPECT_NE(s.message().find("out ("), std::string::npos) << s.message();

  a = f.args();
  a.hidden_row_stride = 64;
  s = validate_layer_args(f.shape, a);
  EXPECT_EQ(s.code(), ErrorCode::kShapeMismatch);
  EXPECT_EQ(s.message(), "hidden_row_stride = 64 is smaller than the row length 128");

  a = f.args();
  a.out_row_stride = 132;
  s = validate_layer_args(f.shape, a);
  EXPECT_EQ(s.code(), ErrorCode::kMisaligned);
  EXPECT_NE(s.message().find("out_row_stride = 132"), std::string::npos);

  a = f.args();
  a.num_tokens = -1;
  EXPECT_EQ(validate_layer_args(f.shape, a).code(), ErrorCode::kInvalidArgument);

  a = f.args();
  a.num_tokens = std::numeric_limits<int32_t>::max();
  EXPECT_EQ(validate_layer_args(f.shape, a).code(), ErrorCode::kUnsupportedShape);
}

TEST(ValidateRoutingValues, NamesTheFirstBadIdAndWeight) {
  std::vector<int32_t> ids = {0, 1, 2, -1, 9, 3};
  std::vector<float> weights = {0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f};
  Status s = validate_routing_values(ids.data(), weights.data(), 3, 2, 8);
  EXPECT_EQ(s.code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "topk_ids[1][1] = -1 is outside [0, 8)");

  ids = {0, 1, 2, 3, 4, 5};
  weights[4] = std::numeric_limits<float>::quiet_NaN();
  weights[5] = std::numeric_limits<float>::infinity();
  s = validate_routing_values(ids.data(), weights.data(), 3, 2, 8);
  EXPECT_EQ(s.message(), "topk_weights[2][0] = nan is not finite");

  weights[4] = 0.5f;
  s = validate_routing_values(ids.data(), weights.data(), 3, 2, 8);
  EXPECT_EQ(s.message(), "topk_weights[2][1] = inf is not finite");

  EXPECT_TRUE(validate_routing_values(ids.data(), nullptr, 3, 2, 8).is_ok());
  // k > E
  EXPECT_EQ(validate_routing_values(ids.data(), nullptr, 1, 6, 4).code(),
            ErrorCode::kInvalidArgument);
}

TEST(ValidateRoutingValues, DuplicateExpertsInOneTokenAreValid) {
  const std::vector<int32_t> ids = {3, 3};
  EXPECT_TRUE(validate_routing_values(ids.data(), nullptr, 1, 2, 8).is_ok());
}

TEST(RoutingHeaderStatus, GivesTheHostMessage) {
  const std::vector<int32_t> ids = {0, 1, 2, 70, 4, 5};
  RoutingHeader header{kRoutingBadExpertId | kRoutingNonFiniteWeight, 3, 1, 6};
  EXPECT_EQ(routing_header_status(header, 2, 64, ids.data(), nullptr).message(),
            validate_routing_values(ids.data(), nullptr, 3, 2, 64).message());
  // Without a host copy the message still names the element.
  EXPECT_EQ(routing_header_status(header, 2, 64, nullptr, nullptr).message(),
            "topk_ids[1][1] is outside [0, 64)");
  header.error_bits = kRoutingNonFiniteWeight;
  EXPECT_EQ(routing_header_status(header, 2, 64, nullptr, nullptr).message(),
            "topk_weights[0][1] is not finite");
  header.error_bits = 0;
  EXPECT_TRUE(routing_header_status(header, 2, 64, nullptr, nullptr).is_ok());
}

TEST(ValidateGroupedGemmArgs, ChecksTheTilingContract) {
  std::vector<bf16> x(4 * 128), w(2 * 64 * 128), y(8 * 64);
  std::vector<int32_t> ids = {0, 1, 1, 0, 0, 1, 1, 0};
  GroupedGemmArgs args{4, 2, 2, 64, 128, x.data(), w.data(), ids.data(), y.data()};
  EXPECT_TRUE(validate_grouped_gemm_args(args).is_ok());
  GroupedGemmArgs bad = args;
  bad.in_features = 100;
  EXPECT_EQ(validate_grouped_gemm_args(bad).code(), ErrorCode::kUnsupportedShape);
  bad = args;
  bad.out_features = 60;
  EXPECT_EQ(validate_grouped_gemm_args(bad).code(), ErrorCode::kUnsupportedShape);
  bad = args;
  bad.top_k = 3;
  EXPECT_EQ(validate_grouped_gemm_args(bad).code(), ErrorCode::kInvalidArgument);
  bad = args;
  bad.y = nullptr;
  EXPECT_EQ(validate_grouped_gemm_args(bad).message(), "y is null");
}

TEST(StatusText, CarriesTheCodeName) {
  const Status s(ErrorCode::kMisaligned, "x is not 16-byte aligned");
  EXPECT_EQ(s.to_string(), "misaligned pointer: x is not 16-byte aligned");
  EXPECT_EQ(Status::ok().to_string(), "ok");
}

}  // namespace
}  // namespace ramp
