// Epilogues: accumulators (wgmma fragment order) -> global memory, straight from registers or
// staged in shared memory (coalesced row stores; tensor-store boxes for GEMM1's sorted rows).
//
// Fragment of one 64-row MMA block (a consumer warpgroup owns one, or two for 128-row normal
// tiles): warp w holds rows 16w + lane/4 (h = 0) and 16w + lane/4 + 8 (h = 1); accumulator
// 4i + 2h + e is column 8i + 2(lane%4) + e.
//   normal : MMA rows = tokens, columns = features
//   swapped: MMA rows = weight rows (features), columns = tokens
// GEMM1's weight tile interleaves gate and up rows in blocks of 8, so a gate value and its up
// value sit in the same thread in both orientations: normal -> column blocks 2b (gate) and
// 2b+1 (up); swapped -> h = 0 (gate) and h = 1 (up).
#pragma once

#include <cuda_bf16.h>

#include "cuda/ptx/bulk_copy.h"
#include "cuda/ptx/fence.h"
#include "cuda/ptx/mbarrier.h"
#include "cuda/ptx/named_barrier.h"
#include "cuda/ptx/tma.h"
#include "cuda/silu.cuh"
#include "cuda/static_batching_common.cuh"
#include "cuda/static_batching_schedule.cuh"

namespace ramp::cuda::detail {

// The fragment layout above, written once: the row (within a 64-row MMA block) of half h, and
// the column of accumulator pair i, element e.
__device__ __forceinline__ int fragment_row(int warp, int lane, int h) {
  return warp * 16 + (lane >> 2) + 8 * h;
}
__device__ __forceinline__ int fragment_column(int i, int lane, int e) {
  return 8 * i + 2 * (lane & 3) + e;
}
// Normal orientation: the first tile row of this warpgroup's 64-row MMA block r.
template <int kConfig>
__device__ __forceinline__ int row_block_base(int consumer_wg, int r) {
  return (consumer_wg * ConfigTraits<kConfig>::kRowBlocks + r) * 64;
}

// Where the token at sorted row `sorted_row` writes (its slot) and the router weight its GEMM2
// output is scaled by (1 for the grouped GEMM). Not for GEMM1, which writes sorted rows.
struct SlotAndWeight {
  int32_t slot;
  float weight;
};
template <GemmEpilogue kEpilogue>
__device__ __forceinline__ SlotAndWeight slot_and_weight(const KernelParams& params,
                                                         int32_t sorted_row) {
  static_assert(kEpilogue != GemmEpilogue::kSiluGateUp, "GEMM1 stores by sorted row");
  const int32_t slot = params.routing.sorted_slots[sorted_row];
  return {slot, kEpilogue == GemmEpilogue::kRouterWeighted ? params.topk_weights[slot] : 1.0f};
}

// Normal orientation, GEMM1: SiLU(gate) * up of output columns 8b + column_in_pair and the
// next one, fragment half h. The gate values are accumulators 8b + 2h (+1), their up values
// 8b + 4 + 2h (+1): column blocks 2b and 2b + 1 of the interleaved weight tile (file top).
template <int kAccumulators>
__device__ __forceinline__ float2 silu_pair(const float (&acc)[kAccumulators], int b, int h) {
  return make_float2(silu_times(acc[8 * b + 2 * h], acc[8 * b + 4 + 2 * h]),
                     silu_times(acc[8 * b + 2 * h + 1], acc[8 * b + 4 + 2 * h + 1]));
}

// Two adjacent output columns (n, n+1) of one row; `paired` when a vector store is legal.
__device__ __forceinline__ void store_pair(__nv_bfloat16* row, int32_t n, int32_t limit,
                                           float v0, float v1, bool paired) {
  if (paired && n + 1 < limit) {
    *reinterpret_cast<__nv_bfloat162*>(row + n) = __floats2bfloat162_rn(v0, v1);
  } else {
    if (n < limit) row[n] = __float2bfloat16_rn(v0);
    if (n + 1 < limit) row[n + 1] = __float2bfloat16_rn(v1);
  }
}

template <int kConfig, GemmEpilogue kEpilogue>
__device__ __forceinline__ void store_tile_normal(
    const KernelParams& params, const TileExtent& extent,
    const typename ConfigTraits<kConfig>::Accumulators& accumulators, int consumer_wg) {
  using Traits = ConfigTraits<kConfig>;
  const int warp = static_cast<int>((threadIdx.x / 32) & 3);
  const int lane = static_cast<int>(threadIdx.x & 31);
  const int column_in_pair = fragment_column(0, lane, 0);  // within each 8-column block
  const int32_t n_total = params.out_features;
#pragma unroll
  for (int r = 0; r < Traits::kRowBlocks; ++r) {
    const float(&acc)[Traits::kAccumulatorsPerBlock] = accumulators[r];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int row = row_block_base<kConfig>(consumer_wg, r) + fragment_row(warp, lane, h);
      if (row >= extent.valid_rows) continue;
      const int32_t sorted_row = extent.first_row + row;
      if constexpr (kEpilogue == GemmEpilogue::kSiluGateUp) {
        const int32_t intermediate = n_total / 2;
        __nv_bfloat16* out_row =
            static_cast<__nv_bfloat16*>(params.out) + sorted_row * params.out_row_stride;
        const int32_t column_base = extent.feature_block * (Traits::kFeatureTile / 2);
#pragma unroll
        for (int b = 0; b < Traits::kFeatureTile / 16; ++b) {
          const float2 v = silu_pair(acc, b, h);
          store_pair(out_row, column_base + 8 * b + column_in_pair, intermediate, v.x, v.y,
                     params.paired_stores);
        }
      } else {
        const auto [slot, weight] = slot_and_weight<kEpilogue>(params, sorted_row);
        const int32_t feature_base = extent.feature_block * Traits::kFeatureTile + column_in_pair;
        __nv_bfloat16* out_row =
            static_cast<__nv_bfloat16*>(params.out) + slot * params.out_row_stride;
#pragma unroll
        for (int i = 0; i < Traits::kFeatureTile / 8; ++i) {
          const float v0 = acc[4 * i + 2 * h], v1 = acc[4 * i + 2 * h + 1];
          if constexpr (kEpilogue == GemmEpilogue::kRouterWeighted) {
            store_pair(out_row, feature_base + 8 * i, n_total, v0 * weight, v1 * weight,
                       params.paired_stores);
          } else {
            store_pair(out_row, feature_base + 8 * i, n_total, v0, v1, params.paired_stores);
          }
        }
      }
    }
  }
}

// What the staged epilogue reads from global memory for this thread's rows: the router
// weights of its two fragment rows per 64-row block (GEMM2) and, for threads t < 64, where
// staging row t goes (GEMM2 and the grouped GEMM: the slot's row, through
// sorted_slots). consume_tile loads them before its mainloop, so these dependent loads
// overlap the MMAs instead of opening the epilogue: on the H100 (ncu, qwen3-30b-a3b T=8192
// GEMM2) ~6% of the kernel's warp samples waited on them there.
template <int kConfig>
struct StagedRows {
  float row_scale[ConfigTraits<kConfig>::kRowBlocks][2];
  char* out_row[ConfigTraits<kConfig>::kRowBlocks];
};

template <int kConfig, GemmEpilogue kEpilogue>
__device__ __forceinline__ StagedRows<kConfig> load_staged_rows(const KernelParams& params,
                                                               const TileExtent& extent,
                                                               int consumer_wg) {
  using Traits = ConfigTraits<kConfig>;
  constexpr bool kSilu = kEpilogue == GemmEpilogue::kSiluGateUp;
  const int thread = static_cast<int>(threadIdx.x & 127);
  const int warp = thread / 32;
  const int lane = thread & 31;
  StagedRows<kConfig> rows;
#pragma unroll
  for (int r = 0; r < Traits::kRowBlocks; ++r) {
    const int row_base = row_block_base<kConfig>(consumer_wg, r);
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int row = row_base + fragment_row(warp, lane, h);
      rows.row_scale[r][h] = 1.0f;
      if constexpr (kEpilogue == GemmEpilogue::kRouterWeighted) {
        if (row < extent.valid_rows) {
          rows.row_scale[r][h] = slot_and_weight<kEpilogue>(params, extent.first_row + row).weight;
        }
      }
    }
    // Thread t < 64 owns staging row t: tile row row_base + t.
    rows.out_row[r] = nullptr;
    if (thread < 64 && row_base + thread < extent.valid_rows) {
      const int32_t sorted_row = extent.first_row + row_base + thread;
      int64_t out_index = sorted_row;
      if constexpr (!kSilu) out_index = params.routing.sorted_slots[sorted_row];
      rows.out_row[r] =
          static_cast<char*>(params.out) + out_index * params.out_row_stride * int64_t{2};
    }
  }
  return rows;
}

// Normal orientation through shared memory: per 256-byte column pass the warpgroup writes its
// fragment (64 rows) into its staging rows, then copies them out with coalesced 16-byte stores
// (consecutive threads take consecutive chunks of a row: a warp writes two 256-byte row pieces
// per instruction). The copy-out's shared-memory reads are synchronous, so the next pass may
// rewrite the staging right after a barrier.
// Why not one bulk copy per row: the TMA unit also carries the producer's loads, and 64 copies
// per pass (two passes for a 256-wide tile, each waiting for the previous pass's copies to have
// read the staging) took ~6k cycles per tile on seed004 (clock64 timeline, dev/kernel_notes.md
// session 5); GEMM2 ran 1.04x faster with these stores (session 4).
// `rows`: load_staged_rows, loaded before the mainloop.
template <int kConfig, GemmEpilogue kEpilogue>
__device__ __forceinline__ void store_tile_normal_staged(
    const KernelParams& params, const TileExtent& extent,
    const typename ConfigTraits<kConfig>::Accumulators& accumulators,
    const StagedRows<kConfig>& rows, uint8_t* staging, int consumer_wg) {
  using Traits = ConfigTraits<kConfig>;
  constexpr bool kSilu = kEpilogue == GemmEpilogue::kSiluGateUp;
  constexpr bool kWeighted = kEpilogue == GemmEpilogue::kRouterWeighted;
  constexpr int kElementBytes = 2;  // every epilogue stores bf16
  constexpr int kOutColumns = kSilu ? Traits::kFeatureTile / 2 : Traits::kFeatureTile;
  constexpr int kPassColumnsMax = kStagingRowPayloadBytes / kElementBytes;
  constexpr int kPassColumns = kOutColumns < kPassColumnsMax ? kOutColumns : kPassColumnsMax;
  constexpr int kPasses = kOutColumns / kPassColumns;
  static_assert(kOutColumns % kPassColumns == 0);
  static_assert(!kSilu || kPasses == 1, "SiLU pairs gate/up columns across the whole tile");
  constexpr int kChunks = kPassColumns * kElementBytes / 16;  // 16-byte chunks of a pass row
  static_assert(kPassColumns * kElementBytes % 16 == 0, "pass rows are whole 16-byte chunks");
  static_assert(kStagingRowStride - kStagingRowPayloadBytes >= int{sizeof(char*)},
                "a staging row's pad carries its destination");

  const int thread = static_cast<int>(threadIdx.x & 127);
  const int warp = thread / 32;
  const int lane = thread & 31;
  const int column_in_pair = fragment_column(0, lane, 0);  // within each 8-column block
  const uint32_t barrier_id = 1 + static_cast<uint32_t>(consumer_wg);
  const int32_t column_limit = kSilu ? params.out_features / 2 : params.out_features;
  const int32_t tile_first_column = extent.feature_block * kOutColumns;

  // A warpgroup with 128 MMA rows stages them as two 64-row blocks, one after the other.
#pragma unroll
  for (int r = 0; r < Traits::kRowBlocks; ++r) {
    const float(&acc)[Traits::kAccumulatorsPerBlock] = accumulators[r];
    const int row_base = row_block_base<kConfig>(consumer_wg, r);
    if (row_base >= extent.valid_rows) break;  // warpgroup-uniform: nothing left to store
    const float(&row_scale)[2] = rows.row_scale[r];

#pragma unroll
    for (int pass = 0; pass < kPasses; ++pass) {
      // Every thread has finished reading the staging (previous pass or block).
      ptx::named_barrier_sync(barrier_id, kThreadsPerWarpgroup);
      // Staging row t is tile row row_base + t; thread t < 64 knows where it goes (null past
      // the task's end) and leaves that in the row's pad, so any thread can copy any row.
      if (pass == 0 && thread < 64) {
        *reinterpret_cast<char**>(staging + thread * kStagingRowStride + kStagingRowPayloadBytes) =
            rows.out_row[r];
      }
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        uint8_t* row = staging + fragment_row(warp, lane, h) * kStagingRowStride;
        if constexpr (kSilu) {
#pragma unroll
          for (int b = 0; b < Traits::kFeatureTile / 16; ++b) {
            *reinterpret_cast<__nv_bfloat162*>(row + (8 * b + column_in_pair) * 2) =
                __float22bfloat162_rn(silu_pair(acc, b, h));
          }
        } else {
#pragma unroll
          for (int i = pass * (kPassColumns / 8); i < (pass + 1) * (kPassColumns / 8); ++i) {
            const int column = 8 * i + column_in_pair - pass * kPassColumns;
            const float v0 = acc[4 * i + 2 * h], v1 = acc[4 * i + 2 * h + 1];
            *reinterpret_cast<__nv_bfloat162*>(row + column * 2) =
                kWeighted ? __floats2bfloat162_rn(v0 * row_scale[h], v1 * row_scale[h])
                          : __floats2bfloat162_rn(v0, v1);
          }
        }
      }
      ptx::named_barrier_sync(barrier_id, kThreadsPerWarpgroup);
      const int32_t first_column = tile_first_column + pass * kPassColumns;
      if (first_column >= column_limit) continue;  // warpgroup-uniform
      const int32_t bytes = min_i32(kPassColumns, column_limit - first_column) * kElementBytes;
#pragma unroll
      for (int round = 0; round < (64 * kChunks + kThreadsPerWarpgroup - 1) / kThreadsPerWarpgroup;
           ++round) {
        const int index = round * kThreadsPerWarpgroup + thread;
        if (index >= 64 * kChunks) break;
        const int row = index / kChunks;
        const int byte = (index % kChunks) * 16;
        const uint8_t* source = staging + row * kStagingRowStride;
        char* const destination =
            *reinterpret_cast<char* const*>(source + kStagingRowPayloadBytes);
        if (destination == nullptr || byte >= bytes) continue;
        char* dst = destination + static_cast<int64_t>(first_column) * kElementBytes;
        if (byte + 16 <= bytes) {
          *reinterpret_cast<uint4*>(dst + byte) = *reinterpret_cast<const uint4*>(source + byte);
        } else {
          // A row end that is not a multiple of 16 bytes (N edge) goes element by element.
          for (int32_t tail = byte; tail < bytes; tail += kElementBytes) {
            *reinterpret_cast<uint16_t*>(dst + tail) =
                *reinterpret_cast<const uint16_t*>(source + tail);
          }
        }
      }
    }
  }
}

// GEMM1 (SiLU(gate) * up), normal orientation, through shared memory and TMA tensor stores.
// Its outputs are sorted rows, so a 64-row block of a tile is a box of the intermediate: the
// warpgroup writes its fragment into the staging as boxes of 64 rows x 64 columns, 128-byte
// swizzled (conflict-free: the 8 rows a warp writes at once land in 8 different chunks), and
// one thread per box sends it with one tensor store. A block that its task ends inside goes
// row by row (1-row boxes; the swizzle follows the shared-memory address, so a row's box reads
// it in place): the rows after the task's end belong to the next task's tiles.
// On the H100 the 64 per-row bulk copies this replaces took ~2.5k cycles per tile to issue
// (clock64 timeline, dev/kernel_notes.md session 5). Tiles of fewer than 64 output columns
// (64-wide feature tiles) keep the row copies of store_tile_normal_staged.
// GEMM2 could store the same way if its rows were sorted rows: measured and not kept
// (dev/experiments/gemm2_sorted_rows_tensor_stores.patch).
template <int kConfig>
inline constexpr bool kSiluStoresByBox =
    (ConfigTraits<kConfig>::kFeatureTile / 2) % kStoreBoxColumns == 0;

template <int kConfig>
__device__ __forceinline__ void store_tile_silu_boxes(
    const KernelParams& params, const TileExtent& extent,
    const typename ConfigTraits<kConfig>::Accumulators& accumulators, uint8_t* staging,
    int consumer_wg) {
  using Traits = ConfigTraits<kConfig>;
  static_assert(kSiluStoresByBox<kConfig>);
  constexpr int kOutColumns = Traits::kFeatureTile / 2;
  constexpr int kBoxes = kOutColumns / kStoreBoxColumns;
  static_assert(kBoxes * kStoreBoxBytes <= kStagingBytesPerWarpgroup,
                "the staging holds one 64-row block's boxes");
  static_assert(kStoreBoxRows == 64, "a box holds one 64-row MMA block");

  const int thread = static_cast<int>(threadIdx.x & 127);
  const int warp = thread / 32;
  const int lane = thread & 31;
  const int column_in_pair = fragment_column(0, lane, 0);  // within each 8-column block
  const uint32_t barrier_id = 1 + static_cast<uint32_t>(consumer_wg);
  const int32_t column_limit = params.out_features / 2;
  const int32_t tile_first_column = extent.feature_block * kOutColumns;
  const uint32_t staging_base = ptx::smem_address(staging);
  // Output column 8c + column_in_pair (c: 8-column block): box c / 8, 16-byte chunk c % 8.
  auto staged_pair = [&](int c, int row) -> __nv_bfloat162* {
    const uint32_t offset = static_cast<uint32_t>((c / 8) * kStoreBoxBytes) +
                            swizzled_chunk_offset(row, c % 8) +
                            static_cast<uint32_t>(column_in_pair * 2);
    return reinterpret_cast<__nv_bfloat162*>(staging + offset);
  };

#pragma unroll
  for (int r = 0; r < Traits::kRowBlocks; ++r) {
    const float(&acc)[Traits::kAccumulatorsPerBlock] = accumulators[r];
    const int row_base = row_block_base<kConfig>(consumer_wg, r);
    if (row_base >= extent.valid_rows) break;  // warpgroup-uniform: nothing left to store
    const int rows_here = min_i32(kStoreBoxRows, extent.valid_rows - row_base);
    const int32_t first_sorted_row = extent.first_row + row_base;

    // The previous block's (or tile's) stores must have read the staging.
    if (thread < kStoreBoxRows) ptx::bulk_wait_group_read<0>();
    ptx::named_barrier_sync(barrier_id, kThreadsPerWarpgroup);
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int row = fragment_row(warp, lane, h);
#pragma unroll
      for (int b = 0; b < Traits::kFeatureTile / 16; ++b) {
        *staged_pair(b, row) = __float22bfloat162_rn(silu_pair(acc, b, h));
      }
    }
    ptx::fence_proxy_async_shared();  // the tensor stores read the staging (async proxy)
    ptx::named_barrier_sync(barrier_id, kThreadsPerWarpgroup);

    if (rows_here == kStoreBoxRows) {
      if (thread < kBoxes) {
        const int32_t column = tile_first_column + thread * kStoreBoxColumns;
        if (column < column_limit) {
          ptx::tma_store_2d(&params.out_box_map,
                            staging_base + static_cast<uint32_t>(thread * kStoreBoxBytes), column,
                            first_sorted_row);
          ptx::bulk_commit_group();
        }
      }
    } else if (thread < rows_here) {
#pragma unroll
      for (int box = 0; box < kBoxes; ++box) {
        const int32_t column = tile_first_column + box * kStoreBoxColumns;
        if (column < column_limit) {
          ptx::tma_store_2d(&params.out_row_map,
                            staging_base + static_cast<uint32_t>(box * kStoreBoxBytes +
                                                                 thread * kRowBytes),
                            column, first_sorted_row + thread);
        }
      }
      ptx::bulk_commit_group();
    }
  }
}

// The swapped epilogue's per-token reads (slot, router weight) for this thread's token
// columns, loaded before the mainloop like StagedRows: in a decode GEMM2 every CTA runs one
// short tile, so these dependent loads would otherwise add their latency to the kernel's end.
// Only tiles of <= 64 tokens (at most 32 registers); wider ones load in the epilogue.
template <int kConfig>
struct SwappedTokens {
  static constexpr bool kHoisted = ConfigTraits<kConfig>::kTokenTile <= 64;
  static constexpr int kColumns = kHoisted ? ConfigTraits<kConfig>::kTokenTile / 4 : 1;
  int32_t slot[kColumns];
  float weight[kColumns];
};

template <int kConfig, GemmEpilogue kEpilogue>
__device__ __forceinline__ SwappedTokens<kConfig> load_swapped_tokens(const KernelParams& params,
                                                                     const TileExtent& extent) {
  using Traits = ConfigTraits<kConfig>;
  SwappedTokens<kConfig> tokens{};
  if constexpr (SwappedTokens<kConfig>::kHoisted && kEpilogue != GemmEpilogue::kSiluGateUp) {
    const int lane = static_cast<int>(threadIdx.x & 31);
#pragma unroll
    for (int i = 0; i < Traits::kTokenTile / 8; ++i) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int token = fragment_column(i, lane, e);
        SlotAndWeight read{-1, 1.0f};
        if (token < extent.valid_rows) {
          read = slot_and_weight<kEpilogue>(params, extent.first_row + token);
        }
        tokens.slot[2 * i + e] = read.slot;
        tokens.weight[2 * i + e] = read.weight;
      }
    }
  }
  return tokens;
}

// `tokens`: load_swapped_tokens, loaded before the mainloop.
template <int kConfig, GemmEpilogue kEpilogue>
__device__ __forceinline__ void store_tile_swapped(
    const KernelParams& params, const TileExtent& extent,
    const typename ConfigTraits<kConfig>::Accumulators& accumulators,
    const SwappedTokens<kConfig>& tokens, int consumer_wg) {
  using Traits = ConfigTraits<kConfig>;
  const float(&acc)[Traits::kAccumulatorsPerBlock] = accumulators[0];  // 64 weight rows
  const int warp = static_cast<int>((threadIdx.x / 32) & 3);
  const int lane = static_cast<int>(threadIdx.x & 31);
  const int32_t n_total = params.out_features;
  const int weight_row_lo = consumer_wg * 64 + fragment_row(warp, lane, 0);
#pragma unroll
  for (int i = 0; i < Traits::kTokenTile / 8; ++i) {
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int token = fragment_column(i, lane, e);
      if (token >= extent.valid_rows) continue;
      const int32_t sorted_row = extent.first_row + token;
      if constexpr (kEpilogue == GemmEpilogue::kSiluGateUp) {
        // Weight rows 16w + r (gate) and 16w + 8 + r (up) of this warp: intermediate column
        // f F/2 + 32 wg + 8 w + r.
        const int32_t column = extent.feature_block * (Traits::kFeatureTile / 2) +
                               consumer_wg * 32 + warp * 8 + (lane >> 2);
        if (column < n_total / 2) {
          __nv_bfloat16* out_row =
              static_cast<__nv_bfloat16*>(params.out) + sorted_row * params.out_row_stride;
          out_row[column] = __float2bfloat16_rn(silu_times(acc[4 * i + e], acc[4 * i + 2 + e]));
        }
      } else {
        SlotAndWeight read;
        if constexpr (SwappedTokens<kConfig>::kHoisted) {
          read = {tokens.slot[2 * i + e], tokens.weight[2 * i + e]};
        } else {
          read = slot_and_weight<kEpilogue>(params, sorted_row);
        }
        const auto [slot, weight] = read;
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int32_t feature =
              extent.feature_block * Traits::kFeatureTile + weight_row_lo + 8 * h;
          if (feature >= n_total) continue;
          static_cast<__nv_bfloat16*>(params.out)[slot * params.out_row_stride + feature] =
              __float2bfloat16_rn(acc[4 * i + 2 * h + e] * weight);
        }
      }
    }
  }
}

}  // namespace ramp::cuda::detail
