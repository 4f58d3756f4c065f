// Index math of the small-batch ("decode") layer path, host+device: the CUDA kernels
// (src/cuda/decode_layer.cu) call exactly these functions, and tests/cpu/test_decode_plan.cpp
// checks them against the planner's stable counting sort and a CPU model of the mma.sync
// fragment layout.
//
// Why a second path: at T = 1..8 the layer streams the routed experts' weights once and does
// almost no arithmetic, so its time is the weight bytes over HBM bandwidth plus fixed costs. The
// general path pays those fixed costs four times (routing prep, GEMM1, GEMM2 and combine
// kernels, each with its launch, ramp and tail: ~27 us on every model at T = 1 on the H100,
// bench/results/h100-2026-11-22l-layer.json). The decode path has two kernels: GEMM1 finds
// its experts from topk_ids itself (no prep), and GEMM2 fetches its weights into shared memory
// while GEMM1 still runs and sums each token's k slots itself (no combine kernel).
//
// Both GEMMs run as mma.sync m16n8k16 (bf16 in, fp32 accumulate) from 16-byte loads (weights
// from shared memory, or global for GEMM2's rows that did not fit): 16 weight rows on the MMA's
// M axis, up to 8 tokens on N, 32 of K per step.
#pragma once

#include <cstdint>

#include "core/host_device.h"

namespace ramp {

// At most this many slots (T x k) take the decode path: the kernels hold the routing in
// shared memory, one slot per thread of a 256-thread CTA.
inline constexpr int32_t kDecodeMaxSlots = 256;
inline constexpr int32_t kDecodeThreads = 256;  // 8 warps per CTA (GEMM1: 7 and a producer)
inline constexpr int32_t kDecodeWarps = kDecodeThreads / 32;

inline constexpr int32_t kDecodeWeightRows = 16;  // mma M: weight rows per warp step
inline constexpr int32_t kDecodeTokenColumns = 8;  // mma N: tokens per warp step
inline constexpr int32_t kDecodeStepK = 32;        // two m16n8k16 per 16-byte load per lane
// GEMM1: a unit is 8 intermediate features; its 16 MMA rows are their 8 gate rows (MMA rows
// 0..7) and 8 up rows (8..15), so a lane holds gate and up of one feature and applies
// SiLU(gate) * up in registers.
inline constexpr int32_t kDecodeFeaturesPerUnit = kDecodeWeightRows / 2;

// Stable sort of the valid slots by expert: position of `slot` among the slots with a valid id,
// ordered by (expert, slot) -- what the planner's stable counting sort gives. A slot whose id is
// outside [0, E) gets -1 and takes part in nothing. O(S) per slot: S <= kDecodeMaxSlots.
// Example: ids {5, 2, 5, 9, 2}, E = 8: slot 0 -> 2 (after both 2s), slot 1 -> 0, slot 2 -> 3,
// slot 3 -> -1 (9 >= 8), slot 4 -> 1.
RAMP_HOST_DEVICE inline int32_t decode_sorted_position(const int32_t* ids, int32_t num_slots,
                                                       int32_t num_experts, int32_t slot) {
  const int32_t mine = ids[slot];
  if (static_cast<uint32_t>(mine) >= static_cast<uint32_t>(num_experts)) return -1;
  int32_t position = 0;
  for (int32_t other = 0; other < num_slots; ++other) {
    const int32_t id = ids[other];
    const bool valid = static_cast<uint32_t>(id) < static_cast<uint32_t>(num_experts);
    position += valid && (id < mine || (id == mine && other < slot)) ? 1 : 0;
  }
  return position;
}

// Expert groups straight from the ids, before any sort: group g of decode_sorted_position's
// order is expert group_expert[g], the g-th smallest distinct valid id. gate_up's producer warp
// uses these to start its first unit's copies at once when all slots fit one warp
// (kDecodeEarlyStartSlots). `id_of(m)` / `opens_of(m)` return slot m's id / opens-group flag;
// both functions call them for m = 0 .. num_slots - 1 in order whatever the slot, so the kernel
// can pass warp shuffles. O(S) per slot.
// Example: ids {5, 2, 5, 9, 2}, E = 8: slots 0 and 1 open groups (5, 2; slot 2 repeats 5, slot 3
// is invalid, slot 4 repeats 2); ranks: slot 0 -> 1, slot 1 -> 0, so group_expert = {2, 5}.
inline constexpr int32_t kDecodeEarlyStartSlots = 32;

// True when `slot` holds a valid id that no earlier slot holds.
template <class IdOf>
RAMP_HOST_DEVICE inline bool decode_opens_group(const IdOf& id_of, int32_t num_slots,
                                                int32_t num_experts, int32_t slot) {
  const int32_t mine = id_of(slot);
  bool opens = static_cast<uint32_t>(mine) < static_cast<uint32_t>(num_experts);
  for (int32_t other = 0; other < num_slots; ++other) {
    const int32_t id = id_of(other);
    opens = opens && !(other < slot && id == mine);
  }
  return opens;
}

// The group a group-opening `slot` opens: how many smaller valid ids open groups.
template <class IdOf, class OpensOf>
RAMP_HOST_DEVICE inline int32_t decode_group_of_opener(const IdOf& id_of, const OpensOf& opens_of,
                                                       int32_t num_slots, int32_t slot) {
  const int32_t mine = id_of(slot);
  int32_t rank = 0;
  for (int32_t other = 0; other < num_slots; ++other) {
    const int32_t id = id_of(other);
    const bool opens = opens_of(other);
    rank += opens && id < mine ? 1 : 0;
  }
  return rank;
}

// Where a lane's share of a 32-wide K step starts: lane l = 4 g + t loads 8 consecutive
// elements (16 bytes) of its weight rows g and g + 8 and of its token column g at k = 8 t.
RAMP_HOST_DEVICE constexpr int32_t decode_lane_k_offset(int32_t lane) { return 8 * (lane % 4); }

// Which 32-bit register (two bf16 each) of a lane's 16-byte load mma `half` (0 or 1) of the
// step takes as its first k pair (mma k 2t, 2t+1: a0 / a1 / b0) or its second (2t+8, 2t+9:
// a2 / a3 / b1). Any bijection of k works for a dot product as long as weights and tokens use
// the same one; this one makes each lane's share of both mmas a single 16-byte load.
// Example: lane t = 1 -> mma 0 sees actual k {8, 9, 10, 11} as its k {2, 3, 10, 11}.
RAMP_HOST_DEVICE constexpr int32_t decode_fragment_register(int32_t half, int32_t pair) {
  return 2 * half + pair;
}

// K steps [begin, end) of slice `slice` when `steps` steps are cut into `slices` near-equal
// contiguous slices. Example: 64 steps (K = 2048) in 8 slices -> slice 3 is [24, 32).
struct StepRange {
  int32_t begin, end;
};
RAMP_HOST_DEVICE inline StepRange decode_step_slice(int32_t steps, int32_t slices, int32_t slice) {
  return {static_cast<int32_t>(static_cast<int64_t>(steps) * slice / slices),
          static_cast<int32_t>(static_cast<int64_t>(steps) * (slice + 1) / slices)};
}

// GEMM2 splits each expert group's K (= I) into this many slices so that a CTA's 8 warps all
// have work when few experts are active. Example: mixtral T = 1 (2 groups) -> 4 slices each;
// qwen3-30b-a3b T = 1 (8 groups) -> 1.
RAMP_HOST_DEVICE inline int32_t decode_down_slices(int32_t num_groups, int32_t steps) {
  if (num_groups <= 0) return 1;
  const int32_t slices = kDecodeWarps / num_groups;
  return max_i32(1, min_i32(slices, steps));
}

// GEMM1's work units: (expert group, block of 8 intermediate features), features fastest, so
// consecutive CTAs stream consecutive rows of one expert.
struct DecodeUnit {
  int32_t group, feature_block;
};
RAMP_HOST_DEVICE inline DecodeUnit decode_gate_up_unit(int32_t unit, int32_t feature_blocks) {
  return {unit / feature_blocks, unit % feature_blocks};
}

// Which batches the decode path takes by default. It saves fixed costs (~12 us per layer on the
// H100: one routing prep, two kernel boundaries and the combine launch fewer) but its one CTA of
// each kernel per SM streams large experts slower than the general path's GEMMs: it pays for
// small experts at small T only. Measured on the H100, layer time general / decode:
// - session 8 (bench/results/h100-2026-11-22m-decode-variants.json): qwen3-30b-a3b (9 MiB of
//   weights per expert) T = 1 / 4 / 8: 1.32x / 1.04x / 0.98x; olmoe-1b-7b (12 MiB) 1.30x /
//   1.02x / 0.99x; deepseek-v2-lite (17 MiB) 1.26x / 1.00x / 0.95x; qwen3-235b-a22b (36 MiB)
//   T = 1: 0.98x; gpt-oss-120b (47 MiB) 0.83x; mixtral-8x7b (336 MiB) 0.90x.
// - session 9, with GEMM1's ring (h100-2026-11-22n-ab-decode-rule-tokens.json, uniform /
//   zipf1.0): T = 6 qwen3 1.03x / 1.06x, olmoe 1.04x / 1.09x, deepseek 1.01x / 1.04x; T = 8
//   0.98-1.01x; T = 16 0.91-0.94x; gpt-oss-120b 0.85-0.93x at T = 4..16 (0.99x at T = 1).
// - session 14, with the hand-over (decode_hand_over_by_rule; h100-2026-11-23c-ab-decode-path-
//   t8-16.json, 2 rounds, uniform / zipf1.0): T = 8 qwen3 1.09x / 1.13x, olmoe 1.10x / 1.13x,
//   deepseek 1.07x / 1.09x; T = 12 1.04-1.11x; T = 16 1.02-1.07x (deepseek uniform the least).
//   Beyond (h100-2026-11-23c-ab-decode-path-t16-32.json): T = 20 0.99-1.04x, T = 24 0.97-1.03x,
//   T = 32 0.93-1.01x, so the rule stops at 16.
// - The smallest batches pay for larger experts too. gpt-oss-120b (47.5 MiB) measured
//   1.004-1.016x at T = 1 with the 2-stage ring (h100-2026-11-23d-ab-gpt-oss-decode-path.json;
//   h100-2026-11-23e-ab-t1-decode-path-large-experts.json) and 0.84-0.92x at T = 2..8. With the
//   ring grown to 3 stages (below; h100-2026-11-23e-ab-gpt-oss-decode-path-three-stages.json, 2
//   rounds): T = 1 86.2 us (was 94.2 on either path), T = 2 1.015x / 1.066x (uniform / zipf1.0),
//   T = 4 0.953x / 0.977x, T = 8 0.92x. So T <= 2 takes the decode path up to 48 MiB per expert.
//   The larger models of models.json (H >= 3584) do not fit the decode path at all
//   (decode_path_fits), and session 8's 0.90x for mixtral-8x7b (336 MiB) says why a bound stays.
// Examples: qwen3-30b-a3b, T = 4: 3 x 2048 x 768 x 2 B = 9 MiB <= 24 MiB, T <= 16 -> decode
// path; gpt-oss-120b (3 x 2880 x 2880 x 2 B = 47.5 MiB): T = 2 -> decode path (<= 48 MiB),
// T = 4 -> general path (> 24 MiB).
inline constexpr int32_t kDecodeRuleMaxTokens = 16;
inline constexpr int64_t kDecodeRuleMaxExpertWeightBytes = int64_t{24} << 20;
inline constexpr int32_t kDecodeRuleMaxTokensLargeExperts = 2;
inline constexpr int64_t kDecodeRuleMaxLargeExpertWeightBytes = int64_t{48} << 20;
RAMP_HOST_DEVICE constexpr bool decode_path_by_rule(int32_t num_tokens, int32_t hidden,
                                                    int32_t intermediate) {
  const int64_t expert_weight_bytes = int64_t{3} * hidden * intermediate * 2;
  if (num_tokens < 1 || num_tokens > kDecodeRuleMaxTokens) return false;
  if (num_tokens <= kDecodeRuleMaxTokensLargeExperts) {
    return expert_weight_bytes <= kDecodeRuleMaxLargeExpertWeightBytes;
  }
  return expert_weight_bytes <= kDecodeRuleMaxExpertWeightBytes;
}

// GEMM1's weight ring (shared memory, filled by bulk copies from a producer warp): a stage holds
// 8 rows of w13 over the whole of K -- a unit's gate rows or its up rows -- each padded as
// decode_prefetch_row_bytes says. Alone the ring streams no faster than session 8's loads into
// registers (ncu, qwen3-30b-a3b T = 1: 60% vs 64% of DRAM peak); what it buys is one CTA of 8
// warps per SM, so that a down_combine CTA fits beside it (decode_layer.cu says why that pays).
// The ring takes kDecodeGateUpRingBytes; the rest of the SM's shared memory goes to GEMM2's
// prefetch. Measured on the H100 (session 9, layer time, qwen3-30b-a3b / olmoe-1b-7b /
// deepseek-v2-lite at T = 1..4): 3 stages (100 KB) beat 2 (68 KB: 0.96x, GEMM1 streams worse);
// 4 (134 KB) was 0.93x in an earlier version (less room for GEMM2's prefetch).
// A ring of only 2 stages (one unit in flight) streams worst of all: gpt-oss-120b (H = 2880,
// 46592-byte stages) took 94.2 us at T = 1 with 2 stages in the 100 KB and 86.2 us with 3 in
// 137 KB (1.09x, 4 rounds; qwen3-30b-a3b, whose ring did not change, 0.99-1.00x;
// bench/results/h100-2026-11-23e-ab-decode-ring-three-stages.json). And from T = 2 on, where the
// hand-over streams w2 beside GEMM1, 4 stages beat 3: H = 2048 (133120 bytes) over qwen3-30b-a3b,
// olmoe-1b-7b and deepseek-v2-lite at T = 2..16 1.014-1.052x (2.7-2.8% per round, 2 rounds), but
// at T = 1, where down_combine's prefetch (smaller beside a larger ring) overlaps GEMM1, 0.98-1.02x
// (qwen3-30b-a3b 0.984-0.999x; h100-2026-11-23e-ab-decode-ring-four-stages.json). So the ring
// grows, within kDecodeGateUpMaxRingBytes, to kDecodeGateUpMinStages stages at T = 1 and
// kDecodeGateUpMinStagesBatched from T = 2. Shapes with fewer than 2 stages in the 100 KB keep
// off the decode path (decode_path_fits): none was measured.
// Examples: H = 2048 -> rows of 64 steps: 4096 + 64 = 4160 bytes, stage 33280 bytes, 3 stages in
// 100 KB, 4 (133120 bytes) from T = 2; H = 2880 -> stage 46592 bytes, 2 in 100 KB, so 3 (139776
// bytes <= 150 KB; 4 do not fit); H = 7168 -> stage 115200 bytes: not even 2 stages fit, no
// decode path.
inline constexpr int32_t kDecodeGateUpRingBytes = 100 * 1024;
inline constexpr int32_t kDecodeGateUpMaxRingBytes = 150 * 1024;
inline constexpr int32_t kDecodeGateUpMinStages = 3;
inline constexpr int32_t kDecodeGateUpMinStagesBatched = 4;
inline constexpr int32_t kDecodeGateUpMaxStages = 8;
static_assert(kDecodeGateUpMaxRingBytes >= kDecodeGateUpRingBytes, "the ring only grows");

// GEMM2's w2 rows that its shared-memory prefetch cannot hold are pulled into L2 (evict-last,
// while GEMM1's w13 copies are marked evict-first) when all CTAs' rest together stay within
// this many bytes. Measured on the H100 (session 9, T = 1, rest over all CTAs): qwen3-30b-a3b
// (12.6 MB) 1.03x faster with it; olmoe-1b-7b (21 MB) and deepseek-v2-lite (23 MB) 0.96x
// slower, so the bound sits between.
// Example: qwen3-30b-a3b T = 1, 8 experts, 4 of them prefetched into shared memory: 128 CTAs x 4
// tasks x 16 rows x 1536 bytes = 12.6 MB <= 16 MiB; olmoe-1b-7b: 128 x 5 x 16 x 2048 = 21 MB.
inline constexpr int64_t kDecodeL2RestMaxBytes = int64_t{16} << 20;

// ---- Scheduling words: units taken by ticket, expert groups handed over as they finish ----
// With the hand-over (decode_hand_over_by_rule: T >= 2), gate_up deals its first round of
// units statically (unit = CTA index: the producer issues it before the CTA has sorted the
// routing) and takes every later unit from a ticket counter, so CTAs that DRAM serves faster
// take more units; and down_combine does not wait for all of gate_up: it multiplies an expert
// group as soon as gate_up has counted all of that group's units finished. Why (%globaltimer
// timeline, qwen3-30b-a3b T = 1, session 9): gate_up's CTAs ended between 22.8 and 29.8 us with
// 5 or 6 statically dealt units each, and down_combine did all of its 5-6 us of work after the
// last of them.
//
// Counters need a known start, and the caller's workspace promises none ("its contents before
// run() do not matter"); no kernel runs before gate_up to zero them. So every counter word
// carries the launch's epoch in its high 32 bits and its count in the low 32:
//   - a word whose epoch is not this launch's is stale, whatever it holds;
//   - gate_up's CTA 0 stamps every counter word (epoch, 0) before it counts on any (its producer
//     warp, right after issuing its first unit's copies);
//   - an atomic add that returns a stale word landed before that stamp, which overwrites it:
//     the adder tries again (decode_counted returns -1);
//   - a launch's epoch is the epoch word plus kDecodeEpochStep; the last down_combine CTA to
//     start (every gate_up CTA has read the word before down_combine can start, every
//     down_combine CTA reads it before counting itself started) writes it back, so the next
//     launch's epoch differs from every word this one left.
// The one failure is a coincidence: a word the caller left that already carries the next
// epoch in its high half *and* is counted on before CTA 0's stamp lands (the first ticket is
// taken after a unit has been issued, the first group count after a unit has been computed).
// The words live at offset 0 of the workspace, which nothing else of ramp writes, so after
// the first call only the caller's own writes between calls can put such a word there.
// Each word has a 128-byte line to itself: down_combine's CTAs poll the group words while
// gate_up's CTAs add to them and to the ticket, and words sharing a line would queue behind each
// other at one L2 slice.
inline constexpr int32_t kDecodeSyncWordsPerLine = 16;
inline constexpr int32_t kDecodeSyncEpochWord = 0;                           // last launch's epoch
inline constexpr int32_t kDecodeSyncTicketWord = 1 * kDecodeSyncWordsPerLine;    // units by ticket
inline constexpr int32_t kDecodeSyncStartedWord = 2 * kDecodeSyncWordsPerLine;  // down CTAs begun
inline constexpr int32_t kDecodeSyncCounterLines = 2 + kDecodeMaxSlots;  // the stamped words
inline constexpr int32_t kDecodeSyncWords = (1 + kDecodeSyncCounterLines) * kDecodeSyncWordsPerLine;
inline constexpr int32_t kDecodeSyncBytes = kDecodeSyncWords * 8;
// Word of stamped counter `i` (0: ticket, 1: down CTAs started, 2 + g: group g's units done).
RAMP_HOST_DEVICE constexpr int32_t decode_counter_word(int32_t i) {
  return (1 + i) * kDecodeSyncWordsPerLine;
}
RAMP_HOST_DEVICE constexpr int32_t decode_group_word(int32_t group) {
  return decode_counter_word(2 + group);
}
// Odd, so epochs repeat only after 2^32 launches and no launch's epoch equals the last one's.
inline constexpr uint32_t kDecodeEpochStep = 0x9E3779B9u;

RAMP_HOST_DEVICE constexpr uint32_t decode_launch_epoch(uint64_t epoch_word) {
  return static_cast<uint32_t>(epoch_word) + kDecodeEpochStep;
}
RAMP_HOST_DEVICE constexpr uint64_t decode_stamp(uint32_t epoch, uint32_t count) {
  return (static_cast<uint64_t>(epoch) << 32) | count;
}
// What an atomic add of 1 that returned `old` counted: the count it took (0 for the first add
// after the stamp), or -1 when the word was stale (add again).
// Example: epoch 7, old = stamp(7, 4) -> 4; old = stamp(6, 4), or anything without 7 on top,
// -> -1.
RAMP_HOST_DEVICE constexpr int64_t decode_counted(uint64_t old, uint32_t epoch) {
  return static_cast<uint32_t>(old >> 32) == epoch ? static_cast<int64_t>(old & 0xffffffffu)
                                                   : -1;
}
// The unit a ticket stands for: round 0 (units 0 .. grid - 1) is dealt by CTA index.
// Example: 132 CTAs, ticket 0 -> unit 132.
RAMP_HOST_DEVICE constexpr int32_t decode_ticket_unit(int64_t ticket, int32_t grid) {
  return static_cast<int32_t>(grid + ticket);
}

// When the decode path hands groups over (and takes units by ticket): from T = 2. Measured on
// the H100 (session 14, layer time, one binary, 2 alternating rounds;
// bench/results/h100-2026-11-23c-ab-decode-hand-over-on-off.json), on / off for qwen3-30b-a3b,
// olmoe-1b-7b and deepseek-v2-lite, uniform and zipf1.0: T = 2 1.00-1.03x, T = 4 1.04-1.08x,
// T = 6 1.08-1.11x, but T = 1 0.95-0.98x. At T = 1 (8 groups of one row) a %globaltimer timeline
// shows gate_up ending ~4 us later with the hand-over (the early groups' w2 rows now stream
// beside it) while down_combine's tail after gate_up shrinks from ~5 us to ~2 us, and the
// scheduling words add their DRAM round trips (the epoch word before down_combine may start).
// Example: T = 1 -> off; T = 2 -> on.
RAMP_HOST_DEVICE constexpr bool decode_hand_over_by_rule(int32_t num_tokens) {
  return num_tokens >= 2;
}

// Bytes of one weight row of `steps` K steps in the decode GEMM2's shared-memory prefetch. A
// quarter warp's 16-byte loads cover rows g and g + 1 (64 bytes each); the pad puts them in
// opposite halves of the 128-byte bank window, so they never share a bank.
// Example: I = 768, one slice -> 24 steps: 1536 + 64 = 1600 bytes (1600 mod 128 = 64).
RAMP_HOST_DEVICE constexpr int32_t decode_prefetch_row_bytes(int32_t steps) {
  return steps * kDecodeStepK * 2 + (steps % 2 == 0 ? 64 : 0);
}

RAMP_HOST_DEVICE constexpr int32_t decode_gate_up_stage_bytes(int32_t hidden) {
  return kDecodeFeaturesPerUnit * decode_prefetch_row_bytes(hidden / kDecodeStepK);
}

// Stages of GEMM1's ring for this H and T (the ring comment above: as many as 100 KB hold, grown
// within 150 KB to 3 at T = 1 and to 4 from T = 2); fewer than 2 (one unit's gate and up rows)
// means the decode path cannot run the shape.
RAMP_HOST_DEVICE constexpr int32_t decode_gate_up_stages(int32_t hidden, int32_t num_tokens) {
  const int32_t stage_bytes = decode_gate_up_stage_bytes(hidden);
  int32_t stages = kDecodeGateUpRingBytes / stage_bytes;
  if (stages < 2) return stages;
  const int32_t wanted = num_tokens >= 2 ? kDecodeGateUpMinStagesBatched : kDecodeGateUpMinStages;
  while (stages < wanted && int64_t{stages + 1} * stage_bytes <= kDecodeGateUpMaxRingBytes) {
    ++stages;
  }
  return stages < kDecodeGateUpMaxStages ? stages : kDecodeGateUpMaxStages;
}

}  // namespace ramp
