// Which tokens `ramp bench` checks against the fp64 CPU reference (host only, so the CPU tests
// run exactly what the benchmark does).
#pragma once

#include <cstdint>
#include <vector>

namespace ramp::bench {

// All tokens when T <= budget; else the first half of the budget (where `worst` routing puts
// its one-token experts) and the rest spread evenly up to the last token, ascending, no repeats.
// Example: T = 2048, budget 4 -> {0, 1, 1024, 2047}; budget 1 -> {2047}.
inline std::vector<int32_t> verify_sample_tokens(int32_t num_tokens, int32_t budget) {
  std::vector<int32_t> tokens;
  if (num_tokens <= budget) {
    for (int32_t t = 0; t < num_tokens; ++t) tokens.push_back(t);
    return tokens;
  }
  const int32_t head = budget / 2;
  for (int32_t t = 0; t < head; ++t) tokens.push_back(t);
  const int32_t tail = budget - head;
  for (int32_t i = 0; i < tail; ++i) {
    const int64_t t = head + (static_cast<int64_t>(num_tokens - 1 - head) * (i + 1)) / tail;
    // A budget of 1 has no head: the first tail token starts the list.
    if (tokens.empty() || t > tokens.back()) tokens.push_back(static_cast<int32_t>(t));
  }
  return tokens;
}

}  // namespace ramp::bench
