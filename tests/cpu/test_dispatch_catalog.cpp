#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <string>

#include "dispatch/builtin_configs.h"
#include "dispatch/catalog.h"
#include "dispatch/kernel_catalog.h"

namespace ramp::dispatch {
namespace {

TileConfig shape_of(Orientation orientation, int tokens, int features, int warpgroups) {
  TileConfig config;
  config.orientation = orientation;
  config.token_tile = static_cast<int16_t>(tokens);
  config.feature_tile = static_cast<int16_t>(features);
  config.k_tile = 64;
  config.consumer_warpgroups = static_cast<int8_t>(warpgroups);
  config.stages = 0;  // derive_stages ignores it
  return config;
}

TEST(DispatchCatalog, HasAtLeastAHundredDistinctPrintableEntries) {
  const std::vector<CatalogEntry>& entries = catalog();
  EXPECT_GE(entries.size(), 100u);
  std::set<std::string> names;
  for (const CatalogEntry& entry : entries) {
    const std::string name = entry.config.to_string();
    EXPECT_FALSE(name.empty());
    EXPECT_TRUE(names.insert(name).second) << "duplicate catalog entry " << name;
    TileConfig parsed;
    ASSERT_TRUE(parse_tile_config(name, &parsed)) << name;
    EXPECT_EQ(parsed, entry.config) << name;
  }
}

TEST(DispatchCatalog, EveryEntryIsIssuableWithDerivedStages) {
  for (const CatalogEntry& entry : catalog()) {
    const TileConfig& c = entry.config;
    EXPECT_TRUE(is_issuable(c)) << c.to_string();
    EXPECT_EQ(c.stages, derive_stages(c)) << c.to_string();
    EXPECT_LE(shared_memory_bytes(c), kMaxSharedBytesPerBlock) << c.to_string();
    EXPECT_EQ(c.k_tile, 64);
    if (c.orientation == Orientation::kNormal) {
      // Normal: tokens are the MMA M side, 64 (or 128) rows per consumer warpgroup.
      EXPECT_TRUE(c.token_tile == 64 * c.consumer_warpgroups ||
                  c.token_tile == 128 * c.consumer_warpgroups)
          << c.to_string();
    } else {
      EXPECT_EQ(c.feature_tile, 64 * c.consumer_warpgroups) << c.to_string();
      EXPECT_EQ(c.token_tile % 8, 0);
      EXPECT_LE(c.token_tile, 256);
    }
  }
}

TEST(DispatchCatalog, BuiltinFlagsMatchTheBuiltinConfigs) {
  int32_t in_set = 0;
  for (const CatalogEntry& entry : catalog()) {
    if (!entry.in_builtin_set()) continue;
    ++in_set;
    ASSERT_LT(entry.builtin_index, kNumBuiltinConfigs);
    EXPECT_EQ(kBuiltinConfigs[entry.builtin_index], entry.config);
  }
  EXPECT_EQ(in_set, kNumBuiltinConfigs);
  for (int32_t b = 0; b < kNumBuiltinConfigs; ++b) {
    const int32_t index = find_in_catalog(kBuiltinConfigs[b]);
    ASSERT_GE(index, 0) << "builtin " << b << " (" << kBuiltinConfigs[b].to_string()
                        << ") is not in the catalog";
    EXPECT_EQ(catalog()[static_cast<size_t>(index)].builtin_index, b);
    EXPECT_EQ(catalog_index_of(kBuiltinConfigs[b]), index);  // the compile-time lookup agrees
  }
}

// The compiled flags follow the build's RAMP_KERNEL_CATALOG: all entries (full), the builtin
// set plus one entry per kernel feature (subset, CI), none (no CUDA). The issue asks for at
// least 100 compiled configurations in a full build.
TEST(DispatchCatalog, CompiledFlagsFollowTheKernelCatalog) {
  const std::vector<int32_t>& compiled = compiled_catalog_indices();
  int32_t flagged = 0;
  for (size_t i = 0; i < catalog().size(); ++i) {
    const bool listed =
        std::find(compiled.begin(), compiled.end(), static_cast<int32_t>(i)) != compiled.end();
    EXPECT_EQ(catalog()[i].compiled, listed) << i;
    flagged += catalog()[i].compiled ? 1 : 0;
  }
  EXPECT_GE(kCatalogSize, 100);
  switch (kKernelCatalog) {
    case KernelCatalog::kFull:
      EXPECT_EQ(flagged, kCatalogSize);
      break;
    case KernelCatalog::kSubset: {
      // Every builtin and every representative entry, nothing else.
      int32_t expected = kNumBuiltinConfigs;
      for (const TileConfig& representative : kRepresentativeConfigs) {
        const int32_t index = find_in_catalog(representative);
        ASSERT_GE(index, 0) << representative.to_string() << " is not a catalog entry";
        EXPECT_TRUE(catalog()[static_cast<size_t>(index)].compiled) << index;
        EXPECT_LT(catalog()[static_cast<size_t>(index)].builtin_index, 0)
            << "representative " << index << " duplicates a builtin";
        ++expected;
      }
      EXPECT_EQ(flagged, expected);
      break;
    }
    case KernelCatalog::kNone:
      EXPECT_EQ(flagged, 0);
      break;
  }
}

// The compile-time table and the runtime list are the same entries in the same order.
TEST(DispatchCatalog, CompileTimeTableEqualsTheList) {
  ASSERT_EQ(catalog().size(), static_cast<size_t>(kCatalogSize));
  for (int32_t i = 0; i < kCatalogSize; ++i) {
    EXPECT_EQ(catalog()[static_cast<size_t>(i)].config, kCatalogTable.entries[i]) << i;
  }
}

TEST(DispatchCatalog, StageDerivationWorkedExample) {
  // normal 128x256, 2 warpgroups: 49152 B per stage; 232448 - 34816 - 384 = 197248 -> 4.
  const TileConfig large = shape_of(Orientation::kNormal, 128, 256, 2);
  EXPECT_EQ(stage_bytes(large), 49152);
  EXPECT_EQ(fixed_shared_bytes(2, kCatalogMaxStages), 2 * 17408 + 16 * 8 + 256);
  EXPECT_EQ(derive_stages(large), 4);
  // The builtin configs' stage counts are exactly what the derivation gives.
  EXPECT_EQ(derive_stages(shape_of(Orientation::kNormal, 128, 128, 2)), 6);
  EXPECT_EQ(derive_stages(shape_of(Orientation::kSwapped, 64, 128, 2)), 8);
  EXPECT_EQ(derive_stages(shape_of(Orientation::kSwapped, 8, 128, 2)), 8);  // 11 fit, capped
  // 1 warpgroup frees 17408 B of staging: 64x256 -> 214904 / 40960 = 5.
  EXPECT_EQ(derive_stages(shape_of(Orientation::kNormal, 64, 256, 1)), 5);
  // A stage too big for two copies: 0 (not issuable).
  EXPECT_EQ(derive_stages(shape_of(Orientation::kNormal, 512, 512, 2)), 0);
  for (int32_t b = 0; b < kNumBuiltinConfigs; ++b) {
    EXPECT_EQ(derive_stages(kBuiltinConfigs[b]), kBuiltinConfigs[b].stages) << b;
  }
}

TEST(DispatchCatalog, SharedMemoryAndOccupancy) {
  TileConfig large = shape_of(Orientation::kNormal, 128, 256, 2);
  large.stages = 4;
  EXPECT_EQ(shared_memory_bytes(large), 4 * 49152 + 2 * 17408 + 4 * 16 + 256);
  EXPECT_EQ(ctas_per_sm(large, 228 * 1024), 1);
  EXPECT_EQ(accumulator_registers(large), 128);
  // 128 rows per warpgroup x 256 features would need 256 accumulators per thread.
  EXPECT_FALSE(is_issuable(shape_of(Orientation::kNormal, 256, 256, 2)));
  EXPECT_TRUE(is_issuable(shape_of(Orientation::kNormal, 256, 128, 2)));
  // Swapped M side must be 64 rows per warpgroup (or 128); 96 is not.
  EXPECT_FALSE(is_issuable(shape_of(Orientation::kSwapped, 8, 96, 1)));
  // MMA N must be a multiple of 8.
  EXPECT_FALSE(is_issuable(shape_of(Orientation::kSwapped, 12, 128, 2)));
}

TEST(DispatchCatalog, LegalityForAGemmShape) {
  GemmShape shape{128, 8, 1536, 2048};  // qwen3-30b-a3b GEMM1: k depth 32
  TileConfig config = catalog()[0].config;
  config.split_k = 4;
  EXPECT_TRUE(fits_gemm(config, shape));
  // K = 704: k depth 11, prime, so no split divides it.
  GemmShape odd_depth{64, 6, 2048, 704};
  std::string why;
  EXPECT_FALSE(fits_gemm(config, odd_depth, &why));
  EXPECT_NE(why.find("split_k 4"), std::string::npos) << why;
  config.split_k = 1;
  EXPECT_TRUE(fits_gemm(config, odd_depth));
  // K not a multiple of 64.
  EXPECT_FALSE(fits_gemm(config, GemmShape{8, 2, 1024, 100}, &why));
  EXPECT_NE(why.find("k_tile"), std::string::npos) << why;
  // A 256-wide feature tile on N = 64 would compute 3/4 padding.
  TileConfig wide = shape_of(Orientation::kNormal, 128, 256, 2);
  wide.stages = 4;
  EXPECT_FALSE(fits_gemm(wide, GemmShape{8, 2, 64, 1024}));

  const std::vector<int32_t> all = legal_entries(odd_depth, EntryFilter::kAll);
  const std::vector<int32_t> builtin = legal_entries(odd_depth, EntryFilter::kBuiltinSet);
  const std::vector<int32_t> compiled = legal_entries(odd_depth, EntryFilter::kCompiled);
  EXPECT_FALSE(all.empty());
  EXPECT_EQ(builtin.size(), static_cast<size_t>(kNumBuiltinConfigs));
  for (const int32_t index : all) {
    EXPECT_EQ(catalog()[static_cast<size_t>(index)].config.split_k, 1);
  }
  for (const int32_t index : builtin) {
    EXPECT_TRUE(catalog()[static_cast<size_t>(index)].in_builtin_set());
  }
  for (const int32_t index : compiled) EXPECT_TRUE(catalog()[static_cast<size_t>(index)].compiled);
  EXPECT_LE(compiled.size(), all.size());
}

TEST(DispatchCatalog, ParseRejectsNonCanonicalText) {
  TileConfig config;
  EXPECT_TRUE(parse_tile_config("swapped 8x128 k64 s8 wg2 g8 sk1", &config));
  EXPECT_EQ(config, kBuiltinConfigs[5]);
  EXPECT_FALSE(parse_tile_config("sideways 8x128 k64 s8 wg2 g8 sk1", &config));
  EXPECT_FALSE(parse_tile_config("swapped 8x128 k64 s8 wg2 g8", &config));
  EXPECT_FALSE(parse_tile_config("swapped  8x128 k64 s8 wg2 g8 sk1", &config));
  EXPECT_FALSE(parse_tile_config("swapped 8x128 k64 s8 wg2 g8 sk1 extra", &config));
  EXPECT_FALSE(parse_tile_config("swapped 8x128 k64 s8 wg2 g0 sk1", &config));
}

}  // namespace
}  // namespace ramp::dispatch
