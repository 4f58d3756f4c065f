// Every bad-input class gets its own error, naming the first offending element or argument.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
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

// Which bytes a MemoryRows covers, one by one: what memory_rows_overlap must agree with.
std::vector<bool> covered_bytes(const MemoryRows& rows, size_t size) {
  std::vector<bool> bytes(size, false);
  for (int64_t r = 0; r < rows.rows; ++r) {
    for (int64_t b = 0; b < rows.row_bytes; ++b) {
      bytes.at(rows.begin + r * rows.stride + b) = true;
    }
  }
  return bytes;
}

TEST(MemoryRowsOverlap, WorkedExamples) {
  // The header's example: a [4, 64] bf16 view with a stride of 128 elements.
  const MemoryRows view{4096, 4, 128, 256};
  EXPECT_FALSE(memory_rows_overlap(view, {4096 + 128, 4, 128, 256}));  // the other half of each row
  EXPECT_TRUE(memory_rows_overlap(view, {4096 + 64, 4, 128, 256}));
  EXPECT_TRUE(memory_rows_overlap(view, view));
  // Touching is not overlapping: contiguous [0, 100) and [100, 200).
  EXPECT_FALSE(memory_rows_overlap({0, 1, 100, 100}, {100, 1, 100, 100}));
  EXPECT_TRUE(memory_rows_overlap({0, 1, 101, 101}, {100, 1, 100, 100}));
  // One byte in a gap of the strided view, and one byte in its last row.
  EXPECT_FALSE(memory_rows_overlap(view, {4096 + 3 * 256 + 200, 1, 1, 1}));
  EXPECT_TRUE(memory_rows_overlap(view, {4096 + 3 * 256 + 127, 1, 1, 1}));
  EXPECT_FALSE(memory_rows_overlap(view, {4096 + 3 * 256 + 128, 1, 1, 1}));  // past the end
  // Empty arrays overlap nothing.
  EXPECT_FALSE(memory_rows_overlap(view, {4096, 0, 128, 256}));
  EXPECT_FALSE(memory_rows_overlap({4096, 1, 0, 0}, view));
}

TEST(MemoryRowsOverlap, AgreesWithByteSetsOnRandomLayouts) {
  std::mt19937 rng(7);
  auto draw = [&](int64_t most) { return std::uniform_int_distribution<int64_t>(1, most)(rng); };
  int overlapping = 0, disjoint = 0;
  for (int trial = 0; trial < 4000; ++trial) {
    MemoryRows rows[2];
    for (MemoryRows& r : rows) {
      r.rows = draw(6);
      r.row_bytes = draw(24);
      r.stride = r.rows > 1 ? r.row_bytes + draw(40) - 1 : r.row_bytes;
      r.begin = static_cast<uintptr_t>(draw(200));
    }
    const size_t size = 200 + 6 * 64 + 64;
    const std::vector<bool> a = covered_bytes(rows[0], size), b = covered_bytes(rows[1], size);
    bool shared = false;
    for (size_t i = 0; i < size; ++i) shared = shared || (a[i] && b[i]);
    ASSERT_EQ(memory_rows_overlap(rows[0], rows[1]), shared) << "trial " << trial;
    ASSERT_EQ(memory_rows_overlap(rows[1], rows[0]), shared) << "trial " << trial;
    (shared ? overlapping : disjoint) += 1;
  }
  EXPECT_GT(overlapping, 500);  // both answers are exercised
  EXPECT_GT(disjoint, 500);
}

TEST(ValidateLayerMemory, NamesWhatOutOrTheWorkspaceOverlaps) {
  LayerFixture f;
  std::vector<bf16> workspace(4096);
  const size_t workspace_bytes = workspace.size() * sizeof(bf16);
  EXPECT_TRUE(validate_layer_memory(f.shape, f.args(), workspace.data(), workspace_bytes).is_ok());

  MoeLayerArgs args = f.args();
  args.out = f.hidden.data();  // in place
  Status status = validate_layer_memory(f.shape, args, workspace.data(), workspace_bytes);
  EXPECT_EQ(status.code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(status.message(),
            "out overlaps hidden: memory a call writes must not share bytes with its inputs or "
            "its other outputs (no in-place)");
  // w13 followed by room for out, in one allocation.
  const size_t w13_elements = f.w13.size();
  std::vector<bf16> w13_then_out(w13_elements + 3 * 128);
  args.w13 = w13_then_out.data();
  args.out = w13_then_out.data() + w13_elements - 128;  // out's first row is w13's last 128
  EXPECT_EQ(validate_layer_memory(f.shape, args, nullptr, 0).message().substr(0, 17),
            "out overlaps w13:");
  args.out = w13_then_out.data() + w13_elements;  // starts right after w13
  EXPECT_TRUE(validate_layer_memory(f.shape, args, nullptr, 0).is_ok());
  args = f.args();
  args.out = workspace.data() + 256;
  EXPECT_EQ(validate_layer_memory(f.shape, args, workspace.data(), workspace_bytes)
                .message()
                .substr(0, 22),
            "out overlaps workspace");
  // Only the bytes the call uses count: out right after them is fine.
  EXPECT_TRUE(validate_layer_memory(f.shape, args, workspace.data(), 512).is_ok());

  args = f.args();
  EXPECT_EQ(validate_layer_memory(f.shape, args, f.w2.data() + 64, 256).message().substr(0, 22),
            "workspace overlaps w2:");
  EXPECT_EQ(validate_layer_memory(f.shape, args, f.ids.data(), 64).message().substr(0, 28),
            "workspace overlaps topk_ids:");

  // hidden = buf[:, :H] and out = buf[:, H:] of one [T, 2H] buffer share no byte.
  std::vector<bf16> both(3 * 256);
  args.hidden = both.data();
  args.hidden_row_stride = 256;
  args.out = both.data() + 128;
  args.out_row_stride = 256;
  EXPECT_TRUE(validate_layer_memory(f.shape, args, workspace.data(), workspace_bytes).is_ok());
  args.out = both.data() + 64;  // half of each out row is hidden's
  EXPECT_EQ(validate_layer_memory(f.shape, args, nullptr, 0).message().substr(0, 20),
            "out overlaps hidden:");

  args = f.args();
  args.num_tokens = 0;
  args.out = f.hidden.data();  // nothing is written at T = 0
  EXPECT_TRUE(validate_layer_memory(f.shape, args, nullptr, 0).is_ok());
}

TEST(ValidateGroupedGemmMemory, YMustNotOverlapTheInputs) {
  std::vector<bf16> x(4 * 128), w(2 * 64 * 128), y(8 * 64);
  std::vector<int32_t> ids = {0, 1, 1, 0, 0, 1, 1, 0};
  GroupedGemmArgs args{4, 2, 2, 64, 128, x.data(), w.data(), ids.data(), y.data()};
  EXPECT_TRUE(validate_grouped_gemm_memory(args, nullptr, 0).is_ok());
  args.y = x.data();
  EXPECT_EQ(validate_grouped_gemm_memory(args, nullptr, 0).message().substr(0, 14),
            "y overlaps x: ");
  args.y = y.data();
  EXPECT_EQ(validate_grouped_gemm_memory(args, y.data() + 8, 64).message().substr(0, 22),
            "y overlaps workspace: ");
}

TEST(StatusText, CarriesTheCodeName) {
  const Status s(ErrorCode::kMisaligned, "x is not 16-byte aligned");
  EXPECT_EQ(s.to_string(), "misaligned pointer: x is not 16-byte aligned");
  EXPECT_EQ(Status::ok().to_string(), "ok");
}

}  // namespace
}  // namespace ramp
