// Random host data for one MoE layer call, shared by the API tests (host and device).
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "ramp/types.h"

namespace ramp {

struct LayerData {
  MoeShape shape;
  int32_t num_tokens = 0;
  std::vector<bf16> hidden, w13, w2, out;
  std::vector<int32_t> ids;
  std::vector<float> weights;

  LayerData(const MoeShape& layer_shape, int32_t tokens, uint32_t seed)
      : shape(layer_shape), num_tokens(tokens) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> value(-1.0f, 1.0f);
    auto fill = [&](std::vector<bf16>* v, size_t count) {
      v->resize(count);
      for (bf16& x : *v) x = bf16::from_float(value(rng));
    };
    fill(&hidden, size_t(tokens) * shape.hidden);
    fill(&w13, size_t(shape.num_experts) * 2 * shape.intermediate * shape.hidden);
    fill(&w2, size_t(shape.num_experts) * shape.hidden * shape.intermediate);
    out.assign(size_t(tokens) * shape.hidden, bf16::from_float(NAN));
    ids.resize(size_t(tokens) * shape.top_k);
    weights.resize(ids.size());
    std::uniform_int_distribution<int32_t> expert(0, shape.num_experts - 1);
    for (size_t i = 0; i < ids.size(); ++i) {
      ids[i] = expert(rng);
      weights[i] = 0.5f + 0.5f * value(rng);
    }
  }

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

}  // namespace ramp
