#!/usr/bin/env python3
"""torch._grouped_mm peer for `ramp bench`.

`ramp bench` writes the cases, with every case's expert ids and router weights, to a JSON file
and runs this script on it, so both sides time the identical routing. The script times, per case:

  gemm   sort slots by expert -> gather token rows -> torch._grouped_mm(x_sorted, w^T, offs)
         (output left in expert-sorted order, as the peer's own MoE code keeps it)
  layer  sort -> gather -> grouped_mm GEMM1 -> silu(gate) * up -> grouped_mm GEMM2
         -> router weight -> scatter-add into [T, H]

Routing prep (sort, histogram, offsets) is inside the timed region, as it is inside our call.
Times: CUDA events around each repeat, warm-up first, median of the repeats, the L2 flushed
(by reading a buffer 4x its size) before each repeat, replayed from a CUDA graph when capture
works. Each case is checked against fp32 math on a few sampled tokens, so a fast wrong peer is
reported as such.

usage: torch_peer.py --input CASES.json --output RESULT.json
"""

import argparse
import json
import math
import sys
import traceback

CHECK_TOLERANCE = 2e-2  # bf16 operands and an eager bf16 silu*up: well under this when right


def write(path, payload):
    with open(path, "w") as f:
        json.dump(payload, f, indent=1)


def grouped_mm_signature(torch):
    try:
        return str(torch.ops.aten._grouped_mm.default._schema)
    except Exception:  # the schema is informative only
        return "unknown"


class Timer:
    def __init__(self, torch, warmup, repeats):
        self.torch = torch
        self.warmup = warmup
        self.repeats = max(repeats, 1)
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        l2_bytes = getattr(props, "L2_cache_size", 50 << 20) or (50 << 20)
        flush_bytes = max(4 * l2_bytes, 256 << 20)
        self.flush_buffer = torch.zeros(flush_bytes // 4, dtype=torch.float32, device="cuda")

    def flush(self):
        # A read, not a write: dirty flush lines would be written back inside the timed region.
        self.flush_buffer.sum()

    def time(self, op):
        """Returns (median_ms, min_ms, max_ms, graph_used, note)."""
        torch = self.torch
        note = ""
        graph = None
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                op()
        torch.cuda.current_stream().wait_stream(side)
        torch.cuda.synchronize()
        try:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                op()
            graph.replay()
            torch.cuda.synchronize()
        except Exception as error:  # some torch versions cannot capture an op: time it eagerly
            graph = None
            note = "not a graph (capture failed: %s)" % str(error).splitlines()[0][:200]
            torch.cuda.synchronize()
        run = graph.replay if graph is not None else op
        for _ in range(self.warmup):
            run()
        torch.cuda.synchronize()
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(self.repeats)]
        stops = [torch.cuda.Event(enable_timing=True) for _ in range(self.repeats)]
        for i in range(self.repeats):
            self.flush()
            starts[i].record()
            run()
            stops[i].record()
        torch.cuda.synchronize()
        samples = sorted(s.elapsed_time(e) for s, e in zip(starts, stops))
        n = len(samples)
        median = samples[n // 2] if n % 2 else 0.5 * (samples[n // 2 - 1] + samples[n // 2])
        return median, samples[0], samples[-1], graph is not None, note


def sample_tokens(num_tokens, budget):
    if num_tokens <= budget:
        return list(range(num_tokens))
    head = budget // 2
    tokens = list(range(head))
    tail = budget - head
    for i in range(tail):
        t = head + ((num_tokens - 1 - head) * (i + 1)) // tail
        if t > tokens[-1]:
            tokens.append(t)
    return tokens


def relative_error(got, want):
    got = got.double()
    want = want.double()
    if not bool(got.isfinite().all()):
        return math.inf
    norm = want.norm().item()
    return (got - want).norm().item() / norm if norm > 0 else (0.0 if got.norm().item() == 0 else math.inf)


class WeightCache:
    """One model's weights at a time: the cases come model by model."""

    def __init__(self, torch):
        self.torch = torch
        self.key = None
        self.tensors = None

    def get(self, key, make):
        if key != self.key:
            self.tensors = None
            self.torch.cuda.empty_cache()
            self.tensors = make()
            self.key = key
        return self.tensors


def routing_prep(torch, ids, num_experts, top_k):
    """Stable sort of slots by expert, int32 group end offsets, each sorted row's token."""
    order = torch.sort(ids, stable=True).indices
    counts = torch.zeros(num_experts, dtype=torch.int32, device=ids.device)
    counts.index_add_(0, ids, torch.ones_like(ids))
    offs = torch.cumsum(counts, 0, dtype=torch.int32)
    tokens = torch.div(order, top_k, rounding_mode="floor")
    return order, offs, tokens


def run_gemm_case(torch, timer, cache, case, seed, verify_tokens):
    E, k, T, N, K = case["E"], case["k"], case["T"], case["N"], case["K"]
    gen = torch.Generator(device="cuda").manual_seed(seed)
    w = cache.get(("gemm", E, N, K), lambda: torch.randn(
        E, N, K, device="cuda", dtype=torch.bfloat16, generator=gen) * (K ** -0.5))
    w_t = w.transpose(-2, -1)  # [E, K, N], K contiguous: the layout CUTLASS takes
    x = torch.randn(T, K, device="cuda", dtype=torch.bfloat16, generator=gen)
    ids = torch.tensor(case["topk_ids"], dtype=torch.int32, device="cuda")
    out = {}

    def op():
        order, offs, tokens = routing_prep(torch, ids, E, k)
        x_sorted = x.index_select(0, tokens)
        out["y"] = torch._grouped_mm(x_sorted, w_t, offs=offs)
        out["order"] = order

    median, low, high, graph, note = timer.time(op)
    torch.cuda.synchronize()
    # Check: row of slot s sits at the position of s in the sorted order.
    order = out["order"].long()
    position = torch.empty_like(order)
    position[order] = torch.arange(order.numel(), device="cuda")
    got, want = [], []
    for t in sample_tokens(T, verify_tokens):
        for j in range(k):
            slot = t * k + j
            e = case["topk_ids"][slot]
            got.append(out["y"][position[slot]].float())
            want.append(w[e].float() @ x[t].float())
    error = relative_error(torch.stack(got), torch.stack(want))
    return median, low, high, graph, note, error


def run_layer_case(torch, timer, cache, case, seed, verify_tokens):
    import torch.nn.functional as F

    E, k, T, H, I = case["E"], case["k"], case["T"], case["H"], case["I"]
    gen = torch.Generator(device="cuda").manual_seed(seed)

    def make():
        w13 = torch.randn(E, 2 * I, H, device="cuda", dtype=torch.bfloat16, generator=gen) * (H ** -0.5)
        w2 = torch.randn(E, H, I, device="cuda", dtype=torch.bfloat16, generator=gen) * (I ** -0.5)
        return w13, w2

    w13, w2 = cache.get(("layer", E, H, I), make)
    w13_t = w13.transpose(-2, -1)  # [E, H, 2I]
    w2_t = w2.transpose(-2, -1)    # [E, I, H]
    hidden = torch.randn(T, H, device="cuda", dtype=torch.bfloat16, generator=gen)
    ids = torch.tensor(case["topk_ids"], dtype=torch.int32, device="cuda")
    router = torch.tensor(case["topk_weights"], dtype=torch.float32, device="cuda")
    out = {}

    def op():
        order, offs, tokens = routing_prep(torch, ids, E, k)
        x_sorted = hidden.index_select(0, tokens)
        gate_up = torch._grouped_mm(x_sorted, w13_t, offs=offs)         # [S, 2I]
        act = F.silu(gate_up[:, :I]) * gate_up[:, I:]                   # bf16, as eager torch does
        down = torch._grouped_mm(act, w2_t, offs=offs)                   # [S, H]
        weighted = down.float() * router.index_select(0, order).unsqueeze(1)
        combined = torch.zeros(T, H, device="cuda", dtype=torch.float32)
        combined.index_add_(0, tokens, weighted)
        out["out"] = combined.to(torch.bfloat16)

    median, low, high, graph, note = timer.time(op)
    torch.cuda.synchronize()
    got, want = [], []
    for t in sample_tokens(T, verify_tokens):
        acc = torch.zeros(H, device="cuda", dtype=torch.float32)
        x = hidden[t].float()
        for j in range(k):
            e = case["topk_ids"][t * k + j]
            g = w13[e, :I].float() @ x
            u = w13[e, I:].float() @ x
            acc += case["topk_weights"][t * k + j] * (w2[e].float() @ (F.silu(g) * u))
        got.append(out["out"][t].float())
        want.append(acc)
    error = relative_error(torch.stack(got), torch.stack(want))
    return median, low, high, graph, note, error


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="cases JSON written by ramp bench")
    parser.add_argument("--output", required=True, help="where to write the timings")
    args = parser.parse_args()
    result = {"cases": []}

    try:
        import torch
    except Exception as error:
        result["error"] = "torch is not importable: %s" % error
        write(args.output, result)
        print(result["error"])
        return 3
    result["torch_version"] = torch.__version__
    result["cuda_version"] = torch.version.cuda
    if not torch.cuda.is_available():
        result["error"] = "torch %s sees no CUDA device" % torch.__version__
        write(args.output, result)
        print(result["error"])
        return 3
    result["device"] = torch.cuda.get_device_name()
    if not hasattr(torch, "_grouped_mm"):
        result["error"] = "torch %s has no torch._grouped_mm (added in 2.8)" % torch.__version__
        write(args.output, result)
        print(result["error"])
        return 3
    result["grouped_mm_signature"] = grouped_mm_signature(torch)

    with open(args.input) as f:
        request = json.load(f)
    kind = request["kind"]
    warmup, repeats = request.get("warmup", 5), request.get("repeats", 30)
    seed, verify_tokens = request.get("seed", 1), request.get("verify_tokens", 32)
    timer = Timer(torch, warmup, repeats)
    cache = WeightCache(torch)
    run_case = run_gemm_case if kind == "gemm" else run_layer_case
    print("torch %s on %s: %d %s cases" % (torch.__version__, result["device"], len(request["cases"]), kind))

    for case in request["cases"]:
        entry = {"name": case["name"]}
        if case["T"] == 0:
            entry.update(status="skipped", note="T = 0")
            result["cases"].append(entry)
            continue
        try:
            median, low, high, graph, note, error = run_case(torch, timer, cache, case, seed, verify_tokens)
            entry.update(time_ms=median, min_ms=low, max_ms=high, graph=graph,
                         check_rel_error=error if math.isfinite(error) else None)
            if not math.isfinite(error) or error > CHECK_TOLERANCE:
                entry.update(status="error", note="wrong result (rel error %s vs fp32 math)" % error)
            else:
                entry.update(status="ok", note=note or ("cuda graph replay" if graph else ""))
            print("  %-34s %8.3f ms  %s  check %.1e" % (case["name"], median, "graph" if graph else "eager", error))
        except Exception as error:
            message = str(error).splitlines()[0][:300] if str(error) else type(error).__name__
            entry.update(status="error", note="%s: %s" % (type(error).__name__, message))
            print("  %-34s error: %s" % (case["name"], entry["note"]))
            traceback.print_exc(limit=2, file=sys.stdout)
            torch.cuda.synchronize()
        result["cases"].append(entry)
        sys.stdout.flush()

    write(args.output, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
