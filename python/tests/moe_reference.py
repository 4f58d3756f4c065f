"""Random bf16 layer problems (as uint16 bit patterns) and the float64 reference of the contract."""

import numpy as np

import ramp_moe


def make_problem(num_experts, top_k, hidden, inter, num_tokens, seed, routing="uniform"):
    rng = np.random.default_rng(seed)
    problem = {
        "hidden_states": ramp_moe.bf16_bits(rng.standard_normal((num_tokens, hidden))),
        "w1": ramp_moe.bf16_bits(rng.standard_normal((num_experts, 2 * inter, hidden)) / np.sqrt(hidden)),
        "w2": ramp_moe.bf16_bits(rng.standard_normal((num_experts, hidden, inter)) / np.sqrt(inter)),
        "topk_weights": rng.uniform(0.1, 1.0, (num_tokens, top_k)).astype(np.float32),
    }
    if routing == "uniform":
        ids = np.array([rng.choice(num_experts, top_k, replace=False) for _ in range(num_tokens)])
    elif routing == "one_expert":  # every token on the same k experts, E-1 downwards
        ids = np.tile(np.arange(num_experts - 1, num_experts - 1 - top_k, -1), (num_tokens, 1))
    elif routing == "duplicates":  # a token may list an expert twice: both terms count
        ids = rng.integers(0, min(2, num_experts), (num_tokens, top_k))
    elif routing == "skewed":
        ids = np.minimum(rng.zipf(1.5, (num_tokens, top_k)) - 1, num_experts - 1)
    else:
        raise ValueError(routing)
    problem["topk_ids"] = np.ascontiguousarray(ids, dtype=np.int32).reshape(num_tokens, top_k)
    return problem


def reference(hidden_states, w1, w2, topk_weights, topk_ids):
    """out[t] = sum_j w[t,j] * w2[e] @ (silu(g) * u), [g; u] = w1[e] @ x[t], in float64."""
    x = ramp_moe.bf16_bits_to_float32(hidden_states).astype(np.float64)
    w13 = ramp_moe.bf16_bits_to_float32(w1).astype(np.float64)
    w2f = ramp_moe.bf16_bits_to_float32(w2).astype(np.float64)
    inter = w13.shape[1] // 2
    out = np.zeros(x.shape, dtype=np.float64)
    for t in range(x.shape[0]):
        for j in range(topk_ids.shape[1]):
            e = topk_ids[t, j]
            gate_up = w13[e] @ x[t]
            gate, up = gate_up[:inter], gate_up[inter:]
            out[t] += topk_weights[t, j] * (w2f[e] @ (gate / (1.0 + np.exp(-gate)) * up))
    return out


def relative_error(got_bits, want):
    got = ramp_moe.bf16_bits_to_float32(got_bits).astype(np.float64)
    norm = np.linalg.norm(want)
    return np.linalg.norm(got - want) / norm if norm else np.linalg.norm(got)
