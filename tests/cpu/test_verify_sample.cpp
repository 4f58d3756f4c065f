// The tokens `ramp bench` checks against the fp64 reference (bench/verify_sample.h). A budget
// of 1 on a batch of more than one token once read the back of an empty list: `ramp bench layer
// --verify-tokens 1` crashed (found through dev/layer_breakdown.sh, which passes it).
#include <gtest/gtest.h>

#include <vector>

#include "bench/verify_sample.h"

namespace ramp::bench {
namespace {

TEST(VerifySample, WorkedExamples) {
  EXPECT_EQ(verify_sample_tokens(2048, 4), (std::vector<int32_t>{0, 1, 1024, 2047}));
  EXPECT_EQ(verify_sample_tokens(2048, 1), (std::vector<int32_t>{2047}));
  EXPECT_EQ(verify_sample_tokens(3, 32), (std::vector<int32_t>{0, 1, 2}));
  EXPECT_TRUE(verify_sample_tokens(0, 32).empty());
}

// Every budget and batch size: ascending, in range, no repeats, never more than the budget,
// and the last token always checked.
TEST(VerifySample, AscendingInRangeWithinBudget) {
  for (int32_t num_tokens : {1, 2, 3, 7, 64, 1000, 8192}) {
    for (int32_t budget = 1; budget <= 40; ++budget) {
      const std::vector<int32_t> tokens = verify_sample_tokens(num_tokens, budget);
      ASSERT_FALSE(tokens.empty()) << num_tokens << " " << budget;
      EXPECT_LE(static_cast<int32_t>(tokens.size()), budget);
      EXPECT_EQ(tokens.back(), num_tokens - 1) << num_tokens << " " << budget;
      EXPECT_GE(tokens.front(), 0);
      for (size_t i = 1; i < tokens.size(); ++i) EXPECT_LT(tokens[i - 1], tokens[i]);
    }
  }
}

}  // namespace
}  // namespace ramp::bench
