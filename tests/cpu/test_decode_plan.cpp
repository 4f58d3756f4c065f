// The decode path's index math (core/decode_plan.h), which its CUDA kernels call as is: the
// per-slot sort against the planner's stable counting sort, the mma fragment mapping against a
// CPU model of mma.sync m16n8k16's documented layout, K slices, and the prefetch row padding.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "core/decode_plan.h"
#include "core/plan.h"

namespace ramp {
namespace {

std::vector<int32_t> sorted_by_decode_positions(const std::vector<int32_t>& ids,
                                                int32_t num_experts) {
  const int32_t num_slots = static_cast<int32_t>(ids.size());
  std::vector<int32_t> sorted(num_slots, -1);
  int32_t valid = 0;
  for (int32_t slot = 0; slot < num_slots; ++slot) {
    const int32_t position = decode_sorted_position(ids.data(), num_slots, num_experts, slot);
    if (position < 0) continue;
    EXPECT_LT(position, num_slots);
    EXPECT_EQ(sorted[position], -1) << "two slots at position " << position;
    sorted[position] = slot;
    ++valid;
  }
  sorted.resize(valid);
  return sorted;
}

TEST(DecodePlan, SortedPositionWorkedExample) {
  const std::vector<int32_t> ids = {5, 2, 5, 9, 2};
  const int32_t want[] = {2, 0, 3, -1, 1};
  for (int32_t slot = 0; slot < 5; ++slot) {
    EXPECT_EQ(decode_sorted_position(ids.data(), 5, 8, slot), want[slot]) << "slot " << slot;
  }
}

// Valid routings: the positions give exactly the planner's sorted_slots (stable counting sort).
TEST(DecodePlan, SortedPositionsEqualThePlannersStableSort) {
  std::mt19937 rng(11);
  for (const auto& [num_tokens, top_k, num_experts] :
       std::vector<std::tuple<int32_t, int32_t, int32_t>>{
           {1, 8, 128}, {8, 8, 128}, {3, 6, 64}, {32, 8, 8}, {16, 1, 1}, {64, 4, 512}}) {
    std::uniform_int_distribution<int32_t> expert(0, num_experts - 1);
    std::vector<int32_t> ids(static_cast<size_t>(num_tokens) * top_k);
    for (auto& id : ids) id = expert(rng);
    const std::vector<TileConfig> configs = {{Orientation::kSwapped, 8, 128, 64, 8, 2, 8, 1}};
    PlanRequest request{ids.data(), num_tokens, top_k, num_experts, ExpertOrder::kIdentity,
                        {GemmPlanSpec{256, 128, configs, {}}}};
    Plan plan;
    ASSERT_TRUE(Plan::build(request, &plan).is_ok());
    const RoutingView& routing = plan.routing();
    const std::vector<int32_t> want(routing.sorted_slots,
                                    routing.sorted_slots + routing.num_slots);
    EXPECT_EQ(sorted_by_decode_positions(ids, num_experts), want)
        << "T=" << num_tokens << " k=" << top_k << " E=" << num_experts;
  }
}

// gate_up's early start names group g's expert from the ids alone: it must be the expert of the
// g-th group in decode_sorted_position's order, and every distinct valid id opens exactly one
// group (at its first slot), bad ids none.
TEST(DecodePlan, GroupOpenersNameTheSortedGroups) {
  const std::vector<int32_t> example = {5, 2, 5, 9, 2};
  auto example_id = [&](int32_t m) { return example[m]; };
  const bool want_opens[] = {true, true, false, false, false};
  for (int32_t slot = 0; slot < 5; ++slot) {
    EXPECT_EQ(decode_opens_group(example_id, 5, 8, slot), want_opens[slot]) << slot;
  }
  auto example_opens = [&](int32_t m) { return decode_opens_group(example_id, 5, 8, m); };
  EXPECT_EQ(decode_group_of_opener(example_id, example_opens, 5, 0), 1);
  EXPECT_EQ(decode_group_of_opener(example_id, example_opens, 5, 1), 0);

  std::mt19937 rng(23);
  for (const auto& [num_slots, num_experts] : std::vector<std::pair<int32_t, int32_t>>{
           {1, 128}, {8, 128}, {6, 64}, {32, 8}, {32, 512}, {16, 1}, {24, 16}}) {
    for (int trial = 0; trial < 20; ++trial) {
      // Mostly valid ids, some out of range on either side.
      std::uniform_int_distribution<int32_t> id(-2, num_experts + 1);
      std::vector<int32_t> ids(num_slots);
      for (auto& value : ids) value = id(rng);
      auto id_of = [&](int32_t m) { return ids[m]; };
      auto opens_of = [&](int32_t m) {
        return decode_opens_group(id_of, num_slots, num_experts, m);
      };
      // The groups in decode_sorted_position's order: the sorted slots' experts, deduplicated.
      std::vector<int32_t> group_expert;
      for (const int32_t slot : sorted_by_decode_positions(ids, num_experts)) {
        if (group_expert.empty() || group_expert.back() != ids[slot]) {
          group_expert.push_back(ids[slot]);
        }
      }
      std::vector<int32_t> named(group_expert.size(), -1);
      for (int32_t slot = 0; slot < num_slots; ++slot) {
        if (!opens_of(slot)) continue;
        const int32_t group = decode_group_of_opener(id_of, opens_of, num_slots, slot);
        ASSERT_GE(group, 0);
        ASSERT_LT(group, static_cast<int32_t>(named.size()));
        EXPECT_EQ(named[group], -1) << "two openers of group " << group;
        named[group] = ids[slot];
      }
      EXPECT_EQ(named, group_expert) << "S=" << num_slots << " E=" << num_experts;
    }
  }
}

// Ids outside [0, E) take part in nothing; the rest keep (expert, slot) order.
TEST(DecodePlan, BadIdsAreLeftOut) {
  const std::vector<int32_t> ids = {3, -1, 0, 7, 3, 1 << 30, 0, 8};
  std::vector<int32_t> want;
  for (int32_t slot = 0; slot < static_cast<int32_t>(ids.size()); ++slot) {
    if (ids[slot] >= 0 && ids[slot] < 8) want.push_back(slot);
  }
  std::stable_sort(want.begin(), want.end(), [&](int32_t a, int32_t b) { return ids[a] < ids[b]; });
  EXPECT_EQ(sorted_by_decode_positions(ids, 8), want);
  EXPECT_EQ(decode_sorted_position(ids.data(), 8, 8, 1), -1);
  EXPECT_EQ(decode_sorted_position(ids.data(), 8, 8, 7), -1);
}

// mma.sync m16n8k16 (PTX ISA, "Matrix Fragments for mma.m16n8k16" with .bf16): lane 4 g + t
// holds A[g][2t..2t+1] (a0), A[g+8][2t..2t+1] (a1), A[g][2t+8..2t+9] (a2), A[g+8][2t+8..2t+9]
// (a3), B[2t..2t+1][g] (b0), B[2t+8..2t+9][g] (b1), and gets D[g][2t..2t+1], D[g+8][2t..2t+1].
// Here the lanes' registers are filled as the decode kernels fill them (16-byte loads at
// decode_lane_k_offset, registers picked by decode_fragment_register), the two mmas of a step
// are evaluated from those registers by the documented layout, and the result must be the
// plain 16 x 8 product over the step's 32 k.
TEST(DecodePlan, FragmentMappingComputesTheDotProducts) {
  std::mt19937 rng(5);
  std::uniform_int_distribution<int32_t> value(-8, 8);
  double weights[16][32], tokens[8][32];
  for (auto& row : weights) for (double& w : row) w = value(rng);
  for (auto& row : tokens) for (double& x : row) x = value(rng);

  // What a lane's 16-byte load holds: element i (register i / 2, half i % 2) = k offset + i.
  auto lane_k = [](int32_t lane, int32_t reg, int32_t element) {
    return decode_lane_k_offset(lane) + 2 * reg + element;
  };
  double d[16][8] = {};
  std::vector<int32_t> k_uses(32, 0);
  for (int32_t half = 0; half < 2; ++half) {
    double a[16][16], b[16][8];  // the mma's logical operands, rebuilt from the lanes
    for (int32_t lane = 0; lane < 32; ++lane) {
      const int32_t g = lane / 4, t = lane % 4;
      for (int32_t pair = 0; pair < 2; ++pair) {
        const int32_t reg = decode_fragment_register(half, pair);
        for (int32_t e = 0; e < 2; ++e) {
          const int32_t mma_k = 2 * t + 8 * pair + e;  // a0/a2 and b0/b1 positions
          const int32_t actual_k = lane_k(lane, reg, e);
          a[g][mma_k] = weights[g][actual_k];          // low row: a0 / a2
          a[g + 8][mma_k] = weights[g + 8][actual_k];  // high row: a1 / a3
          b[mma_k][g] = tokens[g][actual_k];           // token column g: b0 / b1
          if (g == 0) ++k_uses[actual_k];
        }
      }
    }
    for (int32_t row = 0; row < 16; ++row) {
      for (int32_t column = 0; column < 8; ++column) {
        for (int32_t k = 0; k < 16; ++k) d[row][column] += a[row][k] * b[k][column];
      }
    }
  }
  for (int32_t k = 0; k < 32; ++k) EXPECT_EQ(k_uses[k], 1) << "k " << k;
  for (int32_t row = 0; row < 16; ++row) {
    for (int32_t column = 0; column < 8; ++column) {
      double want = 0.0;
      for (int32_t k = 0; k < 32; ++k) want += weights[row][k] * tokens[column][k];
      EXPECT_EQ(d[row][column], want) << "row " << row << " column " << column;
    }
  }
}

TEST(DecodePlan, StepSlicesCoverEveryStepOnce) {
  EXPECT_EQ(decode_step_slice(64, 8, 3).begin, 24);
  EXPECT_EQ(decode_step_slice(64, 8, 3).end, 32);
  for (int32_t steps : {1, 2, 7, 24, 64, 90, 448}) {
    for (int32_t slices : {1, 2, 3, 4, 8}) {
      int32_t next = 0;
      for (int32_t s = 0; s < slices; ++s) {
        const StepRange range = decode_step_slice(steps, slices, s);
        EXPECT_EQ(range.begin, next) << steps << " steps, slice " << s << " of " << slices;
        EXPECT_GE(range.end, range.begin);
        EXPECT_LE(range.end - range.begin, steps / slices + 1);
        next = range.end;
      }
      EXPECT_EQ(next, steps);
    }
  }
}

TEST(DecodePlan, DownSlicesFillTheWarps) {
  EXPECT_EQ(decode_down_slices(2, 448), 4);  // mixtral T = 1
  EXPECT_EQ(decode_down_slices(8, 24), 1);   // qwen3-30b-a3b T = 1
  EXPECT_EQ(decode_down_slices(3, 24), 2);
  EXPECT_EQ(decode_down_slices(1, 2), 2);    // never more slices than steps
  EXPECT_EQ(decode_down_slices(0, 24), 1);
  for (int32_t groups = 1; groups <= 8; ++groups) {
    EXPECT_LE(groups * decode_down_slices(groups, 1000), kDecodeWarps);
  }
}

TEST(DecodePlan, GateUpUnitsWalkFeaturesFirst) {
  EXPECT_EQ(decode_gate_up_unit(0, 96).group, 0);
  EXPECT_EQ(decode_gate_up_unit(95, 96).feature_block, 95);
  EXPECT_EQ(decode_gate_up_unit(96, 96).group, 1);
  EXPECT_EQ(decode_gate_up_unit(96, 96).feature_block, 0);
}

// The default rule's worked examples (decode_plan.h) and its boundaries (tokens, and bytes per
// expert for one token and for more).
TEST(DecodePlan, RuleTakesSmallExpertsAtSmallBatches) {
  EXPECT_TRUE(decode_path_by_rule(2, 2048, 768));     // qwen3-30b-a3b: 9 MiB per expert
  EXPECT_TRUE(decode_path_by_rule(1, 2880, 2880));    // gpt-oss-120b: 47.5 MiB, one token
  EXPECT_TRUE(decode_path_by_rule(2, 2880, 2880));    // ... or two
  EXPECT_FALSE(decode_path_by_rule(3, 2880, 2880));   // ... but not three
  EXPECT_TRUE(decode_path_by_rule(4, 2048, 1408));    // deepseek-v2-lite: 16.5 MiB
  EXPECT_TRUE(decode_path_by_rule(16, 2048, 768));
  EXPECT_FALSE(decode_path_by_rule(17, 2048, 768));
  EXPECT_FALSE(decode_path_by_rule(0, 2048, 768));
  EXPECT_TRUE(decode_path_by_rule(3, 4096, 1024));    // exactly 24 MiB
  EXPECT_FALSE(decode_path_by_rule(3, 4096, 1088));
  EXPECT_TRUE(decode_path_by_rule(1, 4096, 1088));    // one or two tokens: up to 48 MiB
  EXPECT_TRUE(decode_path_by_rule(2, 4096, 2048));    // exactly 48 MiB
  EXPECT_FALSE(decode_path_by_rule(2, 4096, 2112));
  EXPECT_FALSE(decode_path_by_rule(1, 4096, 14336));  // mixtral-8x7b: 336 MiB
}

// Rows g and g + 1 of a prefetched block are read by one quarter warp (64 bytes each): their
// offsets must differ by 64 modulo the 128-byte bank window, and stay 16-byte aligned for the
// bulk copies.
TEST(DecodePlan, PrefetchRowsAvoidBankConflicts) {
  EXPECT_EQ(decode_prefetch_row_bytes(24), 1600);
  for (int32_t steps = 1; steps <= 512; ++steps) {
    const int32_t bytes = decode_prefetch_row_bytes(steps);
    EXPECT_EQ(bytes % 128, 64) << steps;
    EXPECT_GE(bytes, steps * kDecodeStepK * 2);
  }
}

// GEMM1's ring: 8 padded rows of H per stage, as many stages as kDecodeGateUpRingBytes holds,
// grown within kDecodeGateUpMaxRingBytes to 3 stages at T = 1 and 4 from T = 2; the decode path
// needs two (one unit's gate and up rows).
TEST(DecodePlan, GateUpRingHoldsWholeStages) {
  EXPECT_EQ(decode_gate_up_stage_bytes(2048), 33280);  // 8 x (4096 + 64)
  EXPECT_EQ(decode_gate_up_stages(2048, 1), 3);        // qwen3-30b-a3b, olmoe, deepseek
  EXPECT_EQ(decode_gate_up_stages(2048, 2), 4);        // 133120 bytes
  EXPECT_EQ(decode_gate_up_stages(2048, 16), 4);
  EXPECT_EQ(decode_gate_up_stage_bytes(2880), 46592);  // gpt-oss-120b: 8 x (5760 + 64)
  EXPECT_EQ(decode_gate_up_stages(2880, 1), 3);        // 2 in 100 KB, grown to 3 (139776 bytes)
  EXPECT_EQ(decode_gate_up_stages(2880, 2), 3);        // 4 would take 186368 bytes
  EXPECT_EQ(decode_gate_up_stage_bytes(3136), 50688);  // 2 in 100 KB, 3 = 152064 <= 150 KB
  EXPECT_EQ(decode_gate_up_stages(3136, 1), 3);
  EXPECT_EQ(decode_gate_up_stage_bytes(3200), 51712);  // 1 in 100 KB: not grown, no decode path
  EXPECT_EQ(decode_gate_up_stages(3200, 2), 1);
  EXPECT_LT(decode_gate_up_stages(4096, 1), 2);  // mixtral, qwen3-235b: no decode path
  for (int32_t tokens = 1; tokens <= 2; ++tokens) {
    for (int32_t hidden = 64; hidden <= 8192; hidden += 64) {
      const int32_t stages = decode_gate_up_stages(hidden, tokens);
      const int32_t in_base_ring = std::min(
          kDecodeGateUpRingBytes / decode_gate_up_stage_bytes(hidden), kDecodeGateUpMaxStages);
      EXPECT_LE(int64_t{stages} * decode_gate_up_stage_bytes(hidden), kDecodeGateUpMaxRingBytes)
          << hidden;
      if (in_base_ring < 2) {
        EXPECT_EQ(stages, in_base_ring) << hidden;  // never grown onto the decode path
      } else {
        EXPECT_GE(stages, in_base_ring) << hidden;
        if (stages > in_base_ring) {
          EXPECT_LE(stages, tokens >= 2 ? kDecodeGateUpMinStagesBatched : kDecodeGateUpMinStages)
              << hidden;
        }
      }
      EXPECT_LE(stages, kDecodeGateUpMaxStages) << hidden;
      EXPECT_EQ(decode_gate_up_stage_bytes(hidden) % 16, 0) << hidden;  // bulk-copy alignment
      EXPECT_GE(decode_gate_up_stage_bytes(hidden), kDecodeFeaturesPerUnit * hidden * 2) << hidden;
    }
  }
}

// ---- Scheduling words (decode_plan.h): the protocol both kernels run, on a model of the GPU ----
TEST(DecodePlan, HandOverFromTwoTokens) {
  EXPECT_FALSE(decode_hand_over_by_rule(1));
  EXPECT_TRUE(decode_hand_over_by_rule(2));
  EXPECT_TRUE(decode_hand_over_by_rule(6));
}

TEST(DecodePlan, SchedulingWordsWorkedExamples) {
  EXPECT_EQ(decode_counted(decode_stamp(7, 4), 7), 4);
  EXPECT_EQ(decode_counted(decode_stamp(6, 4), 7), -1);
  EXPECT_EQ(decode_counted(0, 7), -1);
  EXPECT_EQ(decode_counted(decode_stamp(7, 0), 7), 0);
  EXPECT_EQ(decode_ticket_unit(0, 132), 132);
  // The next launch's epoch is never the epoch its words were stamped with last time.
  for (const uint64_t word : {uint64_t{0}, ~uint64_t{0}, uint64_t{0x0101010101010101},
                              uint64_t{kDecodeEpochStep}, decode_stamp(5, 5)}) {
    EXPECT_NE(decode_launch_epoch(word), static_cast<uint32_t>(word)) << word;
  }
  EXPECT_EQ(kDecodeSyncBytes % 128, 0);
  // Every stamped word on a line of its own, none on the epoch word's.
  EXPECT_EQ(decode_counter_word(0), kDecodeSyncTicketWord);
  EXPECT_EQ(decode_counter_word(1), kDecodeSyncStartedWord);
  EXPECT_EQ(decode_group_word(0), decode_counter_word(2));
  EXPECT_LT(decode_group_word(kDecodeMaxSlots - 1), kDecodeSyncWords);
  for (int32_t i = 0; i < kDecodeSyncCounterLines; ++i) {
    EXPECT_EQ(decode_counter_word(i) % kDecodeSyncWordsPerLine, 0);
    EXPECT_NE(decode_counter_word(i) / kDecodeSyncWordsPerLine, 0);
  }
}

// Launches of the decode path on one workspace, modelled as CTAs whose steps interleave in a
// random order (no timing assumed: any step of any CTA may come first), over starting contents
// the caller might leave: zeros, all ones, a ramp of integers, random bytes. Each launch must
// compute every unit exactly once, let down_combine read a group only once all of its units are
// done, never deadlock, and leave the epoch word for the next launch.
class SchedulingModel {
 public:
  SchedulingModel(std::vector<uint64_t>* words, int32_t grid, int32_t groups,
                  int32_t feature_blocks, int32_t down_grid, uint64_t seed)
      : words_(*words), grid_(grid), groups_(groups), feature_blocks_(feature_blocks),
        down_grid_(down_grid), random_(seed) {}

  // Returns an empty string when the launch kept every rule, else what broke.
  std::string launch() {
    const int32_t units = groups_ * feature_blocks_;
    done_.assign(static_cast<size_t>(units), 0);
    struct Gate {
      int32_t step = 0;  // 0 read epoch, 1 stamps (CTA 0), 2 static unit, 3 ticket, 4 exit
      int32_t stamp = 0;
      uint32_t epoch = 0;
      int32_t unit = -1;     // unit computed, whose group count is still to be added
    };
    struct Down {
      int32_t step = 0;  // 0 read epoch, 1 count started, 2 wait for group `group`, 3 exit
      int32_t group = 0;
      uint32_t epoch = 0;
    };
    std::vector<Gate> gates(static_cast<size_t>(grid_));
    std::vector<Down> downs(static_cast<size_t>(down_grid_));
    const uint32_t launch_epoch = decode_launch_epoch(words_[kDecodeSyncEpochWord]);
    int32_t gates_started = 0;
    auto add = [&](int32_t word) {
      const uint64_t old = words_[static_cast<size_t>(word)];
      words_[static_cast<size_t>(word)] = old + 1;
      return old;
    };
    for (int64_t moves = 0;; ++moves) {
      if (moves > 1000000) return "no progress";
      std::vector<int32_t> ready;  // gate CTAs 0..grid-1, then down CTAs
      for (int32_t c = 0; c < grid_; ++c) {
        if (gates[c].step < 4) ready.push_back(c);
      }
      // down_combine starts once every gate_up CTA has read the epoch (programmatic launch).
      for (int32_t d = 0; d < down_grid_ && gates_started == grid_; ++d) {
        const Down& down = downs[d];
        if (down.step == 3) continue;
        if (down.step == 2 &&
            words_[static_cast<size_t>(decode_group_word(down.group))] !=
                decode_stamp(down.epoch, static_cast<uint32_t>(feature_blocks_))) {
          continue;  // spinning
        }
        ready.push_back(grid_ + d);
      }
      if (ready.empty()) break;
      const size_t pick = std::uniform_int_distribution<size_t>(0, ready.size() - 1)(random_);
      const int32_t actor = ready[pick];
      if (actor < grid_) {
        Gate& gate = gates[actor];
        if (gate.step == 0) {
          gate.epoch = decode_launch_epoch(words_[kDecodeSyncEpochWord]);
          ++gates_started;
          gate.step = actor == 0 ? 1 : 2;
        } else if (gate.step == 1) {  // one stamp per move, in the kernel's order
          words_[static_cast<size_t>(decode_counter_word(gate.stamp))] =
              decode_stamp(gate.epoch, 0);
          if (++gate.stamp == kDecodeSyncCounterLines) gate.step = 2;
        } else if (gate.unit >= 0) {  // count the computed unit on its group
          const int32_t group = gate.unit / feature_blocks_;
          if (decode_counted(add(decode_group_word(group)), gate.epoch) >= 0) gate.unit = -1;
        } else if (gate.step == 2) {
          gate.step = 3;
          if (actor < units) compute(actor, &gate.unit);
        } else {  // gate.step == 3
          const int64_t ticket = decode_counted(add(kDecodeSyncTicketWord), gate.epoch);
          if (ticket < 0) continue;  // stale: add again
          const int32_t unit = decode_ticket_unit(ticket, grid_);
          if (unit >= units) {
            gate.step = 4;
          } else {
            compute(unit, &gate.unit);
          }
        }
      } else {
        Down& down = downs[actor - grid_];
        if (down.step == 0) {
          down.epoch = decode_launch_epoch(words_[kDecodeSyncEpochWord]);
          if (down.epoch != launch_epoch) return "down_combine read another epoch";
          down.step = 1;
        } else if (down.step == 1) {
          const int64_t started = decode_counted(add(kDecodeSyncStartedWord), down.epoch);
          if (started < 0) continue;
          if (started == down_grid_ - 1) words_[kDecodeSyncEpochWord] = down.epoch;
          down.step = groups_ > 0 ? 2 : 3;
        } else {  // step 2: the group's count is complete: read its rows
          for (int32_t f = 0; f < feature_blocks_; ++f) {
            if (done_[static_cast<size_t>(down.group * feature_blocks_ + f)] != 1) {
              return "group " + std::to_string(down.group) + " read before unit " +
                     std::to_string(f) + " was done";
            }
          }
          if (++down.group == groups_) down.step = 3;
        }
      }
    }
    for (const Gate& gate : gates) {
      if (gate.step != 4) return "gate_up did not finish (deadlock)";
    }
    for (const Down& down : downs) {
      if (down.step != 3) return "down_combine did not finish (deadlock)";
    }
    for (int32_t u = 0; u < units; ++u) {
      if (done_[static_cast<size_t>(u)] != 1) {
        return "unit " + std::to_string(u) + " computed " +
               std::to_string(done_[static_cast<size_t>(u)]) + " times";
      }
    }
    if (static_cast<uint32_t>(words_[kDecodeSyncEpochWord]) != launch_epoch) {
      return "the epoch word was not written back";
    }
    return "";
  }

 private:
  void compute(int32_t unit, int32_t* pending) {
    ++done_[static_cast<size_t>(unit)];
    *pending = unit;
  }
  std::vector<uint64_t>& words_;
  int32_t grid_, groups_, feature_blocks_, down_grid_;
  std::mt19937_64 random_;
  std::vector<int32_t> done_;
};

TEST(DecodePlan, SchedulingWordsSurviveAnyStartingContentsAndAnyInterleaving) {
  std::mt19937_64 random(20261123);
  std::vector<std::vector<uint64_t>> starts;
  starts.emplace_back(kDecodeSyncWords, 0);
  starts.emplace_back(kDecodeSyncWords, ~uint64_t{0});
  std::vector<uint64_t> ramp_words(kDecodeSyncWords);
  std::iota(ramp_words.begin(), ramp_words.end(), uint64_t{0});
  starts.push_back(ramp_words);
  std::vector<uint64_t> noise(kDecodeSyncWords);
  for (uint64_t& w : noise) w = random();
  starts.push_back(noise);
  int32_t launches = 0;
  for (const auto& start : starts) {
    std::vector<uint64_t> words = start;
    // Several launches on the same words, with shapes that change between them (T changes
    // the groups; a grid larger than the units leaves CTAs with tickets only).
    const int32_t shapes[][4] = {{6, 3, 4, 4}, {8, 1, 5, 2}, {4, 5, 3, 3}, {12, 2, 4, 1},
                                 {5, 0, 4, 2}, {3, 4, 6, 5}};
    for (const auto& s : shapes) {
      for (int repeat = 0; repeat < 20; ++repeat) {
        SchedulingModel model(&words, s[0], s[1], s[2], s[3], random());
        const std::string broken = model.launch();
        ASSERT_EQ(broken, "") << "start " << (&start - starts.data()) << " grid " << s[0]
                              << " groups " << s[1] << " repeat " << repeat;
        ++launches;
      }
    }
  }
  EXPECT_EQ(launches, 4 * 6 * 20);
}

// The model above must be able to fail: a launch that does not stamp (epoch reused) breaks it.
TEST(DecodePlan, SchedulingModelCatchesAReusedEpoch) {
  std::vector<uint64_t> words(kDecodeSyncWords, 0);
  SchedulingModel first(&words, 6, 3, 4, 4, 1);
  ASSERT_EQ(first.launch(), "");
  // Roll the epoch word back, as if the last down_combine CTA had not written it: the words the
  // first launch left are then current for the second, which must be caught.
  words[kDecodeSyncEpochWord] =
      static_cast<uint32_t>(words[kDecodeSyncEpochWord]) - kDecodeEpochStep;
  bool caught = false;
  for (uint64_t seed = 0; seed < 50 && !caught; ++seed) {
    std::vector<uint64_t> copy = words;
    SchedulingModel second(&copy, 6, 3, 4, 4, seed);
    caught = second.launch() != "";
  }
  EXPECT_TRUE(caught);
}

}  // namespace
}  // namespace ramp
