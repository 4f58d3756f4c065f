#!/usr/bin/env python3
"""ramp_moe inside a Hugging Face model: logits against the stock experts, prefill / decode timing.

Builds a Qwen3-MoE (or OLMoE) causal LM from a config made here (the real MoE layer shape, few
layers, small vocabulary, random bf16 weights from a fixed seed: no download, no tokenizer),
swaps each sparse MoE block's expert computation for torch.ops.ramp.fused_moe (the router stays
transformers' own), and

  1. compares logits of the stock model and the swapped model (prefill, and one decode step with
     a KV cache): max abs diff, relative Frobenius error, top-1 agreement; also one MoE block
     alone on the same input;
  2. times prefill (batch x seq), decode (one token per step, KV cache) and the MoE block alone,
     stock vs ramp (eager, CUDA events, median of repeats after warm-up);
  3. writes a JSON result (--out) and prints a table. Exit status 1 when a correctness check fails.

  python3 bench/hf_e2e.py --out /tmp/hf_e2e.json                 # GPU, qwen3-30b-a3b MoE shape
  python3 bench/hf_e2e.py --model olmoe --layers 4
  python3 bench/hf_e2e.py --device cpu --tiny --no-timing         # CPU backend, tiny config

Works with transformers 4.x (experts as a ModuleList of gate_proj/up_proj/down_proj MLPs; the
block's forward is replaced, its routing reproduced line for line) and 5.x (fused experts module
with gate_up_proj [E, 2I, H] / down_proj [E, H, I] behind the experts-implementation registry;
only the experts module's forward is replaced, the stock router runs unchanged). "Stock" is the
implementation transformers picks by default (5.x: grouped_mm when torch has it) and, with 5.x,
also "eager" (the per-expert loop); --baselines chooses.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import types

import torch

# Pass criterion for the logits' relative Frobenius error. bf16 keeps 8 significant bits (a
# rounding is up to 2^-9 ~ 2e-3 relative). The stock experts and ramp round at different places:
# both round every expert's weighted output to bf16, but stock sums the k terms in bf16
# (index_add_) while ramp sums them in fp32 and rounds once; both round the SiLU product. One MoE
# layer therefore differs by a few 1e-3; over 2-4 layers the difference passes through attention
# and norms, and a token whose router sees a near-tie can pick another expert in a later layer, so
# logits differ by up to ~1e-2. A wrong expert, weight or missing term moves them by O(0.1-1).
LOGITS_REL_TOL = 2e-2
# The MoE block alone, same input for both: only the rounding difference above.
BLOCK_REL_TOL = 1e-2
# Share of (token, layer) rows of the prefill whose top-k expert set differs from stock's
# (near-ties flipped by rounding; it grows with depth: measured on an H100 1.3-2% at the qwen3
# and olmoe shapes with 2 layers, 4% with 4 layers). A wrong kernel is caught by the block and
# logits gates long before this one.
ROUTING_MISMATCH_TOL = 0.10

MODELS = {
    # qwen3-30b-a3b's MoE layer and attention (32 q heads, 4 kv heads, head_dim 128).
    "qwen3": dict(hidden=2048, inter=768, experts=128, top_k=8, norm_topk=True,
                  heads=32, kv_heads=4, head_dim=128),
    # olmoe-1b-7b's MoE layer and attention (16 heads, head_dim 128).
    "olmoe": dict(hidden=2048, inter=1024, experts=64, top_k=8, norm_topk=False,
                  heads=16, kv_heads=16, head_dim=128),
}
TINY = dict(hidden=256, inter=128, experts=8, top_k=4, heads=4, kv_heads=2, head_dim=64)


# ----------------------------------------------------------------------------- model

def make_config(model="qwen3", layers=2, vocab=4096, tiny=False):
    import transformers
    shape = dict(MODELS[model])
    if tiny:
        shape.update(TINY)
    common = dict(vocab_size=vocab, hidden_size=shape["hidden"], num_hidden_layers=layers,
                  num_attention_heads=shape["heads"], num_key_value_heads=shape["kv_heads"],
                  num_experts=shape["experts"], num_experts_per_tok=shape["top_k"],
                  norm_topk_prob=shape["norm_topk"], max_position_embeddings=8192,
                  hidden_act="silu", tie_word_embeddings=False, output_router_logits=False,
                  use_cache=True, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    if model == "qwen3":
        config = transformers.Qwen3MoeConfig(
            **common, head_dim=shape["head_dim"], moe_intermediate_size=shape["inter"],
            intermediate_size=3 * shape["inter"],  # the dense MLP: unused, every layer is sparse
            decoder_sparse_step=1, mlp_only_layers=[])
    else:
        config = transformers.OlmoeConfig(**common, intermediate_size=shape["inter"])
    config._attn_implementation = "sdpa"
    return config


def build_model(config, device, seed=0):
    """The causal LM in bf16 on ``device``, every >=2-D weight ~ N(0, 0.02), norms 1: our own
    init from ``seed`` so the weights do not depend on the transformers version's initialiser."""
    import transformers
    cls = (transformers.Qwen3MoeForCausalLM if config.model_type == "qwen3_moe"
           else transformers.OlmoeForCausalLM)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            model = cls(config)
    finally:
        torch.set_default_dtype(previous)
    # No .to(dtype): the RoPE inv_freq buffer stays fp32 as transformers makes it.
    model = model.to(device).eval()
    not_bf16 = [n for n, p in model.named_parameters() if p.dtype != torch.bfloat16]
    if not_bf16:
        raise RuntimeError(f"parameters not in bf16: {not_bf16[:4]}")
    generator = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for _, param in sorted(model.named_parameters()):
            if param.dim() >= 2:
                param.normal_(0.0, 0.02, generator=generator)
            else:
                param.fill_(1.0)  # RMSNorm weights (q_norm / k_norm included)
    model.requires_grad_(False)
    return model


def sparse_blocks(model):
    blocks = [layer.mlp for layer in model.model.layers]
    for index, block in enumerate(blocks):
        if not hasattr(block, "experts"):
            raise RuntimeError(f"layer {index} is not a sparse MoE layer ({type(block).__name__})")
    return blocks


# ----------------------------------------------------------------------------- the swap

def _unknown_structure(block, why):
    import transformers
    return RuntimeError(
        f"ramp swap: unknown MoE block structure in transformers {transformers.__version__}: "
        f"{type(block).__name__} ({why}); this script knows 4.x (ModuleList of gate_proj/up_proj/"
        f"down_proj experts) and 5.x (fused gate_up_proj/down_proj experts)")


def _check_silu(block, config):
    if getattr(config, "hidden_act", "silu") != "silu":
        raise _unknown_structure(block, f"hidden_act={config.hidden_act!r}, ramp computes SiLU")


def _pack_fused(block, experts):
    """transformers 5.x: experts.gate_up_proj / down_proj -> (w13 [E, 2I, H], w2 [E, H, I])."""
    if getattr(experts, "has_bias", False) or not getattr(experts, "has_gate", True):
        raise _unknown_structure(block, "experts with bias or without a gate")
    if getattr(experts, "has_post_expert_norm", False):
        raise _unknown_structure(block, "post-expert norm")
    apply_gate = getattr(type(experts), "_apply_gate", None)
    if apply_gate is not None:
        from transformers.integrations import moe as hf_moe
        if apply_gate is not getattr(hf_moe, "_default_apply_gate", apply_gate):
            raise _unknown_structure(block, "a custom _apply_gate")
    gate_up, down = experts.gate_up_proj.detach(), experts.down_proj.detach()
    if getattr(experts, "is_transposed", False):  # [E, H, 2I] and [E, I, H]
        gate_up, down = gate_up.transpose(1, 2), down.transpose(1, 2)
    if not getattr(experts, "is_concatenated", True):  # rows gate0, up0, gate1, up1, ...
        gate_up = torch.cat([gate_up[:, 0::2], gate_up[:, 1::2]], dim=1)
    # contiguous() is the parameter itself for the stock layout: no copy.
    return gate_up.contiguous(), down.contiguous()


def _pack_module_list(block):
    """transformers 4.x: ModuleList of MLPs with gate_proj/up_proj/down_proj Linear layers."""
    experts = block.experts
    for name in ("gate_proj", "up_proj", "down_proj"):
        if not all(isinstance(getattr(e, name, None), torch.nn.Linear) and
                   getattr(e, name).bias is None for e in experts):
            raise _unknown_structure(block, f"an expert without a bias-free {name} Linear")
    w13 = torch.stack([torch.cat([e.gate_proj.weight, e.up_proj.weight], dim=0) for e in experts])
    w2 = torch.stack([e.down_proj.weight for e in experts])
    return w13.detach().contiguous(), w2.detach().contiguous()


def _ramp_experts_forward(w13, w2):
    """transformers 5.x experts forward(hidden [T, H], top_k_index [T, k], top_k_weights [T, k])."""
    def forward(self, hidden_states, top_k_index, top_k_weights):
        out = torch.ops.ramp.fused_moe(hidden_states.contiguous(), w13, w2,
                                       top_k_weights.to(torch.float32),
                                       top_k_index.to(torch.int32))
        return out.to(hidden_states.dtype)
    return forward


def _ramp_block_forward_v4(w13, w2):
    """transformers 4.x Qwen3MoeSparseMoeBlock / OlmoeSparseMoeBlock forward, routing verbatim."""
    def forward(self, hidden_states):
        batch_size, sequence_length, hidden_dim = hidden_states.shape
        hidden_states = hidden_states.view(-1, hidden_dim)
        router_logits = self.gate(hidden_states)
        routing_weights = torch.nn.functional.softmax(router_logits, dim=1, dtype=torch.float)
        routing_weights, selected_experts = torch.topk(routing_weights, self.top_k, dim=-1)
        if self.norm_topk_prob:
            routing_weights /= routing_weights.sum(dim=-1, keepdim=True)
        # Stock casts the router weights to the activations' dtype (bf16) before using them.
        routing_weights = routing_weights.to(hidden_states.dtype)
        out = torch.ops.ramp.fused_moe(hidden_states.contiguous(), w13, w2,
                                       routing_weights.to(torch.float32),
                                       selected_experts.to(torch.int32))
        return out.reshape(batch_size, sequence_length, hidden_dim), router_logits
    return forward


class RampSwap:
    """Replaces the expert computation of every sparse MoE block of ``model`` by ramp_moe.

    Weights are packed once at construction (5.x stock layout: no copy). ``install()`` /
    ``remove()`` toggle between ramp and stock on the same model (same weights)."""

    def __init__(self, model, _corrupt_for_test=False):
        import ramp_moe  # noqa: F401  (registers torch.ops.ramp.fused_moe)
        self.entries = []  # (module whose forward is replaced, replacement)
        self.layout = None
        config = model.config
        for block in sparse_blocks(model):
            _check_silu(block, config)
            experts = block.experts
            if isinstance(experts, torch.nn.ModuleList):
                if not all(hasattr(block, a) for a in ("gate", "top_k", "norm_topk_prob")) or \
                        not isinstance(block.gate, torch.nn.Linear):
                    raise _unknown_structure(block, "a 4.x ModuleList block without gate/top_k/"
                                                    "norm_topk_prob")
                w13, w2 = _pack_module_list(block)
                target, make, layout = block, _ramp_block_forward_v4, "4.x module list"
            elif hasattr(experts, "gate_up_proj") and hasattr(experts, "down_proj"):
                w13, w2 = _pack_fused(block, experts)
                target, make, layout = experts, _ramp_experts_forward, "5.x fused experts"
            else:
                raise _unknown_structure(block, f"experts is {type(experts).__name__}")
            num_experts = w13.shape[0]
            if w13.shape[1] % 2 or w2.shape != (num_experts, w13.shape[2], w13.shape[1] // 2):
                raise _unknown_structure(block, f"w13 {tuple(w13.shape)} / w2 {tuple(w2.shape)}")
            if _corrupt_for_test:  # expert e gets expert e+1's down projection
                w2 = w2.roll(1, dims=0).contiguous()
            self.layout = layout
            self.entries.append((target, types.MethodType(make(w13, w2), target)))

    def install(self):
        for target, forward in self.entries:
            target.forward = forward  # the instance attribute shadows the class's forward

    def remove(self):
        for target, _ in self.entries:
            target.__dict__.pop("forward", None)

    def __enter__(self):
        self.install()
        return self

    def __exit__(self, *exc):
        self.remove()


# ----------------------------------------------------------------------------- baselines

def experts_implementations(model):
    """Stock implementations to compare against: transformers' default first, then eager."""
    current = getattr(model.config, "_experts_implementation", None)
    if current is None:
        return ["eager"]  # 4.x: the per-expert loop is the only one
    return [current] + (["eager"] if current != "eager" else [])


def set_stock(model, name):
    current = getattr(model.config, "_experts_implementation", None)
    if name == (current or "eager"):
        return
    if current is None:
        raise ValueError(f"transformers without an experts registry has no {name!r}")
    if hasattr(model, "set_experts_implementation"):
        model.set_experts_implementation(name)
    else:  # the experts' forward reads config._experts_implementation on every call
        model.config._experts_implementation = name


# ----------------------------------------------------------------------------- correctness

def _rel(diff, want):
    norm = want.norm().item()
    return diff.norm().item() / norm if norm else diff.norm().item()


def compare(got, want, top1=True, same_routing=None):
    """max abs / relative Frobenius difference of got against want. ``same_routing`` (bool per
    token row) adds the relative error over the rows whose every layer chose the same experts."""
    got, want = got.float(), want.float()
    diff = got - want
    result = {"max_abs_diff": diff.abs().max().item(), "rel_fro_err": _rel(diff, want),
              "ref_abs_max": want.abs().max().item()}
    if top1:  # logits: the share of positions whose argmax token agrees
        result["top1_agreement"] = (got.argmax(-1) == want.argmax(-1)).float().mean().item()
    if same_routing is not None:
        rows = same_routing.to(diff.device)
        flat_diff, flat_want = diff.reshape(rows.numel(), -1), want.reshape(rows.numel(), -1)
        result["rows_same_routing"] = rows.float().mean().item()
        result["rel_fro_err_same_routing"] = (_rel(flat_diff[rows], flat_want[rows])
                                              if rows.any() else None)
    return result


class RoutingRecorder:
    """Records each MoE layer's top-k expert sets (from the router's logits) while active."""

    def __init__(self, model):
        self.model, self.top_k = model, model.config.num_experts_per_tok
        self.calls, self.handles = [], []

    def _hook(self, layer):
        def hook(module, inputs, output):
            logits = output[0] if isinstance(output, tuple) else output
            ids = torch.topk(logits.float(), self.top_k, dim=-1).indices
            self.calls.append((layer, ids.sort(dim=-1).values.cpu()))
        return hook

    def __enter__(self):
        self.calls = []
        self.handles = [block.gate.register_forward_hook(self._hook(i))
                        for i, block in enumerate(sparse_blocks(self.model))]
        return self

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()


def same_routing(got, want):
    """Bool per token row: every layer chose the same expert set in both recorded runs (one
    forward each)."""
    same = None
    if len(got.calls) != len(want.calls):
        raise RuntimeError("routing recorders saw different calls")
    for (layer_a, a), (layer_b, b) in zip(got.calls, want.calls):
        if layer_a != layer_b or a.shape != b.shape:
            raise RuntimeError("routing recorders saw different calls")
        rows = (a == b).all(dim=-1)
        same = rows if same is None else same & rows
    return same


def routing_mismatch(got, want):
    """Share of (token, layer) rows whose expert set differs between two recorded runs."""
    rows = differ = 0
    for (_, a), (_, b) in zip(got.calls, want.calls):
        rows += a.shape[0]
        differ += (a != b).any(dim=-1).sum().item()
    return differ / rows if rows else 0.0


def _prefill(model, ids):
    from transformers import DynamicCache
    cache = DynamicCache()
    return model(input_ids=ids, past_key_values=cache, use_cache=True).logits, cache


def _decode(model, next_ids, cache):
    return model(input_ids=next_ids, past_key_values=cache, use_cache=True).logits


def check_correctness(model, swap, batch=2, seq=256, seed=1, baselines=None, control=True):
    """Stock vs ramp on fresh random ids, against each stock implementation in ``baselines``:

      prefill_logits           a prefill of batch x seq tokens, each side on its own;
      decode_logits            one decode step from the same (stock) KV cache;
      decode_logits_own_cache  one decode step, each side on the cache of its own prefill;
      moe_block_T<n>           the first MoE block alone on the same random input, n tokens.

    The router is transformers' own on both sides, but from layer 2 on it sees inputs that
    differ by bf16 rounding, so a token whose top-k has a near-tie may take another expert
    (routing_mismatch: the share of (token, layer) rows where that happened; rows_same_routing:
    the share of tokens that kept the same experts in every layer). Both choices are right, and
    on a decode step of 2 tokens one such flip dominates the error. Gates: prefill over all
    rows; the decode steps over the tokens with the same routing; the MoE blocks; the mismatch
    share; and, with ``control``, a deliberately wrong swap must fail. Returns {"pass": ...}."""
    device = next(model.parameters()).device
    generator = torch.Generator(device="cpu").manual_seed(seed)
    vocab = model.config.vocab_size
    ids = torch.randint(0, vocab, (batch, seq), generator=generator).to(device)
    next_ids = torch.randint(0, vocab, (batch, 1), generator=generator).to(device)
    block_xs = {n: torch.randn(1, n, model.config.hidden_size, generator=generator).to(
        device=device, dtype=torch.bfloat16) for n in sorted({1, batch, batch * seq})}
    block = sparse_blocks(model)[0]
    baselines = baselines or experts_implementations(model)
    rec = {name: RoutingRecorder(model) for name in (
        "ramp_prefill", "ramp_decode_own", "ramp_decode", "stock_prefill", "stock_decode")}
    checks = {}
    with torch.no_grad():
        with swap:
            with rec["ramp_prefill"]:
                ramp_prefill, ramp_cache = _prefill(model, ids)
            with rec["ramp_decode_own"]:
                ramp_decode_own = _decode(model, next_ids, ramp_cache)
            ramp_blocks = {n: _block_out(block(x)) for n, x in block_xs.items()}
        del ramp_cache
        for name in baselines:
            set_stock(model, name)
            with rec["stock_prefill"]:
                stock_prefill, stock_cache = _prefill(model, ids)
            shared_cache = copy.deepcopy(stock_cache)
            with rec["stock_decode"]:
                stock_decode = _decode(model, next_ids, stock_cache)
            with swap, rec["ramp_decode"]:
                ramp_decode = _decode(model, next_ids, shared_cache)
            del stock_cache, shared_cache
            check = {
                "prefill_logits": compare(ramp_prefill, stock_prefill, same_routing=same_routing(
                    rec["ramp_prefill"], rec["stock_prefill"])),
                "decode_logits": compare(ramp_decode, stock_decode, same_routing=same_routing(
                    rec["ramp_decode"], rec["stock_decode"])),
                "decode_logits_own_cache": compare(
                    ramp_decode_own, stock_decode,
                    same_routing=same_routing(rec["ramp_decode_own"], rec["stock_decode"])),
            }
            for n, x in block_xs.items():
                check[f"moe_block_T{n}"] = compare(ramp_blocks[n], _block_out(block(x)),
                                                   top1=False)
            check["routing_mismatch"] = routing_mismatch(rec["ramp_prefill"],
                                                         rec["stock_prefill"])
            checks[name] = check
            if control and name == baselines[0]:
                # Negative control: the same swap with each expert's down projection taken
                # from its neighbour must fail the check, else the check proves nothing.
                with RampSwap(model, _corrupt_for_test=True):
                    bad_prefill = model(input_ids=ids, use_cache=False).logits
                negative = compare(bad_prefill, stock_prefill)
                negative["detected"] = negative["rel_fro_err"] > LOGITS_REL_TOL
                del bad_prefill
        set_stock(model, baselines[0])
    failures = []
    for name, check in checks.items():
        for what, c in check.items():
            if what == "routing_mismatch":
                value, tol = c, ROUTING_MISMATCH_TOL
            elif what.startswith("moe_block"):
                value, tol = c["rel_fro_err"], BLOCK_REL_TOL
            elif what == "prefill_logits":
                value, tol = c["rel_fro_err"], LOGITS_REL_TOL
            else:  # decode: the tokens that kept their experts (none kept: a failure)
                value, tol = c["rel_fro_err_same_routing"], LOGITS_REL_TOL
            if value is None or value > tol:
                failures.append(f"{name} {what}: {value} > {tol}")
    result = {"pass": not failures, "failures": failures, "batch": batch, "seq": seq,
              "logits_rel_tol": LOGITS_REL_TOL, "block_rel_tol": BLOCK_REL_TOL,
              "routing_mismatch_tol": ROUTING_MISMATCH_TOL, "checks": checks}
    if control:
        result["negative_control"] = negative
        if not negative["detected"]:
            result["pass"] = False
            failures.append("negative control not detected: the check is not sensitive")
    return result


def _block_out(result):
    return result[0] if isinstance(result, tuple) else result  # 4.x returns (out, router_logits)


# ----------------------------------------------------------------------------- timing

def _time_ms(fn, device, warmup, repeats, setup=None):
    """Median milliseconds of fn() over ``repeats`` after ``warmup`` calls (setup() untimed)."""
    samples = []
    for i in range(warmup + repeats):
        if setup is not None:
            setup()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            elapsed = start.elapsed_time(end)
        else:
            begin = time.perf_counter()
            fn()
            elapsed = (time.perf_counter() - begin) * 1e3
        if i >= warmup:
            samples.append(elapsed)
    return statistics.median(samples)


def time_all(model, swap, prefill_sizes, decode_batches, decode_steps, prompt_len, warmup,
             repeats, baselines, seed=2):
    device = next(model.parameters()).device
    vocab, hidden = model.config.vocab_size, model.config.hidden_size
    generator = torch.Generator(device="cpu").manual_seed(seed)
    block = sparse_blocks(model)[0]
    variants = [(name, name) for name in baselines] + [("ramp", None)]
    results = {"prefill": [], "decode": [], "moe_block": []}

    def run_variants(fn):
        times = {}
        for label, stock_name in variants:
            if stock_name is None:
                with swap:
                    times[label] = fn(label)
            else:
                set_stock(model, stock_name)
                times[label] = fn(label)
        set_stock(model, baselines[0])
        return times

    from transformers import DynamicCache
    with torch.no_grad():
        for batch, seq in prefill_sizes:
            ids = torch.randint(0, vocab, (batch, seq), generator=generator).to(device)
            times = run_variants(lambda label: _time_ms(
                lambda: model(input_ids=ids, use_cache=False, logits_to_keep=1),
                device, warmup, repeats))
            results["prefill"].append({"batch": batch, "seq": seq, "tokens": batch * seq,
                                       "ms": times})
        for batch in decode_batches:
            prompt = torch.randint(0, vocab, (batch, prompt_len), generator=generator).to(device)
            steps = torch.randint(0, vocab, (batch, decode_steps), generator=generator).to(device)
            state = {}

            def setup():
                state["cache"] = DynamicCache()
                model(input_ids=prompt, past_key_values=state["cache"], use_cache=True,
                      logits_to_keep=1)

            def decode():
                for s in range(decode_steps):
                    model(input_ids=steps[:, s:s + 1], past_key_values=state["cache"],
                          use_cache=True)

            times = run_variants(lambda label: _time_ms(decode, device, max(1, warmup // 2),
                                                  repeats, setup))
            per_step = {k: v / decode_steps for k, v in times.items()}
            results["decode"].append({"batch": batch, "prompt": prompt_len,
                                      "steps": decode_steps, "ms_per_step": per_step})
        # The first MoE block alone (router + experts), eager and, on CUDA, replayed from a
        # CUDA graph (no Python or launch overhead: the GPU time) where the implementation
        # can be captured (not the stock per-expert loop, which syncs with the host).
        token_counts = sorted({b * s for b, s in prefill_sizes} | set(decode_batches))
        for tokens in token_counts:
            x = torch.randn(1, tokens, hidden, generator=generator).to(device, torch.bfloat16)
            row = {"tokens": tokens,
                   "ms": run_variants(lambda label: _time_ms(lambda: block(x), device, warmup,
                                                             repeats))}
            if device.type == "cuda":
                row["graph_ms"] = run_variants(
                    lambda label: None if label == "eager" else _graph_ms(lambda: block(x),
                                                                          device, repeats))
            results["moe_block"].append(row)
    for rows in results.values():
        for row in rows:
            for key, out in (("ms", "speedup"), ("ms_per_step", "speedup"),
                             ("graph_ms", "graph_speedup")):
                ms = row.get(key)
                if ms and ms.get("ramp"):
                    row[out] = {name: ms[name] / ms["ramp"] for name in baselines if ms.get(name)}
    return results


def _graph_ms(fn, device, repeats, replays=20):
    """Median ms of one replay of a CUDA graph of fn(); None when fn cannot be captured."""
    # The stock per-expert loop (eager) syncs with the host (nonzero): do not try it.
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()
    torch.cuda.current_stream(device).wait_stream(stream)
    torch.cuda.synchronize(device)
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph):
            fn()
    except Exception:  # a host sync inside: not capturable
        torch.cuda.synchronize(device)
        return None
    return _time_ms(lambda: [graph.replay() for _ in range(replays)], device, 2,
                    repeats) / replays


# ----------------------------------------------------------------------------- report

def git_commit():
    if os.environ.get("RAMP_GIT_COMMIT"):
        return os.environ["RAMP_GIT_COMMIT"]
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=os.path.dirname(
            os.path.abspath(__file__)), capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def print_tables(result):
    correctness = result["correctness"]
    print(f"correctness ({correctness['batch']}x{correctness['seq']} prefill + 1 decode step; "
          f"pass: logits rel <= {LOGITS_REL_TOL} (decode: same-routing rows), block rel <= "
          f"{BLOCK_REL_TOL}, routing mismatch <= {ROUTING_MISMATCH_TOL}): "
          f"{'PASS' if correctness['pass'] else 'FAIL'}")
    for failure in correctness["failures"]:
        print(f"  FAIL {failure}")
    print(f"  {'vs stock':<12} {'check':<24} {'max_abs':>9} {'rel_fro':>9} {'top1':>7} "
          f"{'rel_fro same-routing rows (share)':>34}")
    for name, checks in correctness["checks"].items():
        for what, c in checks.items():
            if not isinstance(c, dict):
                print(f"  {name:<12} {what:<24} {c:9.4f}  (share of token-layer rows)")
                continue
            top1 = f"{c['top1_agreement']:7.4f}" if "top1_agreement" in c else f"{'-':>7}"
            same = ""
            if c.get("rel_fro_err_same_routing") is not None:
                same = f"{c['rel_fro_err_same_routing']:9.3g} ({c['rows_same_routing']:.3f})"
            print(f"  {name:<12} {what:<24} {c['max_abs_diff']:9.3g} {c['rel_fro_err']:9.3g} "
                  f"{top1} {same:>34}")
    negative = correctness.get("negative_control")
    if negative:
        verdict = "detected" if negative["detected"] else "NOT detected"
        print(f"  negative control (expert e given expert e+1's w2): logits rel_fro "
              f"{negative['rel_fro_err']:.3g}, {verdict}")
    timing = result.get("timing")
    if not timing:
        return
    baselines = result["baselines"]
    head = "".join(f" {n + ' ms':>14}" for n in baselines) + f" {'ramp ms':>9}" + \
        "".join(f" {'x vs ' + n:>15}" for n in baselines)

    def line(label, ms):
        def cell(value, width, fmt):
            return f" {value:{width}{fmt}}" if value else f" {'-':>{width}}"
        ramp = ms.get("ramp")
        return f"  {label:<24}" + "".join(cell(ms.get(n), 14, ".3f") for n in baselines) + \
            cell(ramp, 9, ".3f") + "".join(
                cell(ms[n] / ramp if ms.get(n) and ramp else None, 15, ".2f") for n in baselines)
    print(f"timing (median of {result['args']['repeats']}; eager unless 'graph')")
    print(f"  {'':<24}{head}")
    for row in timing["prefill"]:
        print(line(f"prefill {row['batch']}x{row['seq']}", row["ms"]))
    for row in timing["decode"]:
        print(line(f"decode b={row['batch']} (/step)", row["ms_per_step"]))
    for row in timing["moe_block"]:
        print(line(f"moe block T={row['tokens']}", row["ms"]))
    for row in timing["moe_block"]:
        if "graph_ms" in row:
            print(line(f"moe block T={row['tokens']} graph", row["graph_ms"]))


def _pairs(text):
    out = []
    for item in text.split(","):
        batch, seq = item.lower().split("x")
        out.append((int(batch), int(seq)))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="qwen3")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--tiny", action="store_true",
                        help="hidden 256, I 128, 8 experts, top-4 (CPU-sized)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check-batch", type=int, default=None, help="default 2 (tiny: 2)")
    parser.add_argument("--check-seq", type=int, default=None, help="default 256 (tiny: 16)")
    parser.add_argument("--baselines", default=None,
                        help="comma list of stock experts implementations (default: "
                             "transformers' default, then eager)")
    parser.add_argument("--no-timing", action="store_true")
    parser.add_argument("--prefill", default=None, help="BxS list, default 1x128,4x512,1x2048")
    parser.add_argument("--decode-batches", default=None, help="default 1,8")
    parser.add_argument("--decode-steps", type=int, default=32)
    parser.add_argument("--prompt", type=int, default=128, help="prompt length before decode")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", default=None, help="write the JSON result here")
    args = parser.parse_args(argv)

    import transformers
    try:
        import ramp_moe
    except ImportError as error:
        sys.exit(f"hf_e2e: cannot import ramp_moe ({error}); build it: "
                 f"pip install --no-build-isolation . (see docs/usage.md)")
    device = torch.device(args.device)
    if device.type == "cuda" and not (ramp_moe.cuda_backend_built() and
                                      ramp_moe.cuda_device_available()):
        sys.exit("hf_e2e: ramp_moe was built without the CUDA backend or sees no device")
    check_batch = args.check_batch or 2
    check_seq = args.check_seq or (16 if args.tiny else 256)
    prefill = _pairs(args.prefill) if args.prefill else (
        [(1, 16), (2, 32)] if args.tiny else [(1, 128), (4, 512), (1, 2048)])
    decode_batches = [int(b) for b in (args.decode_batches or ("1,4" if args.tiny else "1,8"))
                      .split(",")]

    config = make_config(args.model, args.layers, args.vocab, args.tiny)
    begin = time.time()
    model = build_model(config, device, args.seed)
    swap = RampSwap(model)
    baselines = args.baselines.split(",") if args.baselines else experts_implementations(model)
    print(f"hf_e2e: {args.model}{' (tiny)' if args.tiny else ''}, {args.layers} layers, "
          f"H={config.hidden_size} E={config.num_experts} k={config.num_experts_per_tok}, "
          f"transformers {transformers.__version__} ({swap.layout}), torch {torch.__version__}, "
          f"{device} ({time.time() - begin:.1f} s to build); stock = {', '.join(baselines)}")

    correctness = check_correctness(model, swap, check_batch, check_seq, seed=args.seed + 1,
                                    baselines=baselines)
    result = {
        "what": "ramp_moe swapped into a Hugging Face MoE model: logits vs stock, timing",
        "device": (torch.cuda.get_device_name(device) if device.type == "cuda"
                   else platform.processor() or platform.machine()),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
        "git_commit": git_commit(),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "python": platform.python_version(),
                     "cuda": torch.version.cuda,
                     "ramp_moe_cuda_backend_built": bool(ramp_moe.cuda_backend_built())},
        "args": vars(args),
        "swap_layout": swap.layout,
        "baselines": baselines,
        "config": {k: getattr(config, k, None) for k in (
            "model_type", "num_hidden_layers", "hidden_size", "moe_intermediate_size",
            "intermediate_size", "num_experts", "num_experts_per_tok", "norm_topk_prob",
            "num_attention_heads", "num_key_value_heads", "head_dim", "vocab_size",
            "decoder_sparse_step", "mlp_only_layers")},
        "correctness": correctness,
    }
    if not args.no_timing:
        result["timing"] = time_all(model, swap, prefill, decode_batches, args.decode_steps,
                                    args.prompt, args.warmup, args.repeats, baselines,
                                    seed=args.seed + 2)
    result["wall_s"] = round(time.time() - begin, 1)
    print_tables(result)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
        print(f"hf_e2e: wrote {args.out}")
    return 0 if correctness["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
