"""ramp_moe.fused_moe on the CPU backend through NumPy's DLPack (bf16 as uint16 bit patterns)."""

import zlib

import numpy as np
import pytest

import ramp_moe
from moe_reference import make_problem, reference, relative_error

SHAPES = [  # E, k, H, I, T
    (8, 2, 128, 64, 37),
    (4, 4, 64, 128, 5),
    (16, 1, 64, 64, 1),
]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("routing", ["uniform", "one_expert", "duplicates", "skewed"])
def test_matches_float64_reference(shape, routing):
    problem = make_problem(*shape, seed=zlib.crc32(repr((shape, routing)).encode()), routing=routing)
    out = ramp_moe.fused_moe(**problem)
    assert out.dtype == np.uint16 and out.shape == problem["hidden_states"].shape
    assert relative_error(out, reference(**problem)) <= 1e-2


def test_positional_arguments_follow_vllm_fused_experts():
    p = make_problem(8, 2, 64, 64, 6, seed=1)
    by_position = ramp_moe.fused_moe(p["hidden_states"], p["w1"], p["w2"], p["topk_weights"],
                                     p["topk_ids"])
    np.testing.assert_array_equal(by_position, ramp_moe.fused_moe(**p))


def test_writes_into_out_and_honours_row_strides():
    p = make_problem(8, 2, 128, 64, 9, seed=2)
    wide = np.zeros((9, 192), dtype=np.uint16)
    wide[:, :128] = p["hidden_states"]
    out_wide = np.full((9, 256), 0xFFFF, dtype=np.uint16)
    strided = dict(p, hidden_states=wide[:, :128])
    result = ramp_moe.fused_moe(**strided, out=out_wide[:, :128], backend="cpu")
    assert np.shares_memory(result, out_wide)
    np.testing.assert_array_equal(out_wide[:, :128], ramp_moe.fused_moe(**p))
    assert (out_wide[:, 128:] == 0xFFFF).all()  # nothing outside the view is written


def test_bitwise_deterministic_across_runs_and_threads():
    p = make_problem(8, 2, 128, 128, 64, seed=3, routing="skewed")
    first = ramp_moe.fused_moe(**p, num_threads=1)
    for threads in (1, 2, 0):
        np.testing.assert_array_equal(ramp_moe.fused_moe(**p, num_threads=threads), first)


def test_out_sharing_memory_with_an_input_raises():
    p = make_problem(8, 2, 64, 64, 6, seed=8)
    before = p["hidden_states"].copy()
    with pytest.raises(ValueError, match=r"^invalid argument: out overlaps hidden: .*\(no in-place\)$"):
        ramp_moe.fused_moe(**p, out=p["hidden_states"])
    np.testing.assert_array_equal(p["hidden_states"], before)
    # Interleaved views of one buffer share no byte: hidden = buf[:, :H], out = buf[:, H:].
    both = np.zeros((6, 128), dtype=np.uint16)
    both[:, :64] = p["hidden_states"]
    result = ramp_moe.fused_moe(**dict(p, hidden_states=both[:, :64]), out=both[:, 64:])
    np.testing.assert_array_equal(result, ramp_moe.fused_moe(**p))


def test_zero_tokens_is_valid():
    p = make_problem(4, 2, 64, 64, 0, seed=4)
    assert ramp_moe.fused_moe(**p).shape == (0, 64)


def test_bad_expert_id_raises_the_validation_message():
    p = make_problem(8, 2, 64, 64, 6, seed=5)
    p["topk_ids"][3, 1] = 70
    out = np.full((6, 64), 0x7FC0, dtype=np.uint16)
    with pytest.raises(ValueError, match=r"^invalid argument: topk_ids\[3\]\[1\] = 70 is outside \[0, 8\)$"):
        ramp_moe.fused_moe(**p, out=out)
    assert (out == 0x7FC0).all()  # out is not touched on error
    p["topk_ids"][3, 1] = -1
    with pytest.raises(ValueError, match=r"topk_ids\[3\]\[1\] = -1 is outside \[0, 8\)"):
        ramp_moe.fused_moe(**p)


def test_non_finite_weight_raises():
    p = make_problem(8, 2, 64, 64, 6, seed=6)
    p["topk_weights"][2, 0] = np.inf
    with pytest.raises(ValueError, match=r"^invalid argument: topk_weights\[2\]\[0\] = inf is not finite$"):
        ramp_moe.fused_moe(**p)


def test_untileable_hidden_size_raises():
    p = make_problem(4, 2, 96, 64, 3, seed=7)
    with pytest.raises(ValueError, match=r"^unsupported shape: hidden \(H\) = 96 must be a positive multiple of 64"):
        ramp_moe.fused_moe(**p)


def test_k_larger_than_e_raises():
    p = make_problem(4, 2, 64, 64, 3, seed=8)
    p["topk_ids"] = np.zeros((3, 5), dtype=np.int32)
    p["topk_weights"] = np.ones((3, 5), dtype=np.float32)
    with pytest.raises(ValueError, match=r"top_k \(k\) = 5 must be in \[1, E = 4\]"):
        ramp_moe.fused_moe(**p)


@pytest.mark.parametrize("field, bad, message", [
    ("w2", lambda p: p["w2"][:, :, :32].copy(), r"w2 has shape \[4, 64, 32\], expected \[4, 64, 64\]"),
    ("w1", lambda p: p["w1"][:, :, :32].copy(), r"w1 has shape \[4, 128, 32\], expected \[4, 128, 64\]"),
    ("topk_ids", lambda p: p["topk_ids"][:2].copy(), r"topk_ids has shape \[2, 2\], expected \[3, 2\]"),
    ("topk_weights", lambda p: p["topk_weights"][:, :1].copy(), r"topk_weights has shape \[3, 1\]"),
    ("hidden_states", lambda p: p["hidden_states"][None], r"hidden_states has shape \[1, 3, 64\], expected \[T, H\]"),
    ("topk_ids", lambda p: p["topk_ids"].astype(np.int64), r"topk_ids has dtype int64, expected int32"),
    ("topk_weights", lambda p: p["topk_weights"].astype(np.float64), r"topk_weights has dtype float64, expected float32"),
    ("hidden_states", lambda p: ramp_moe.bf16_bits_to_float32(p["hidden_states"]), r"hidden_states has dtype float32, expected bfloat16"),
    ("w1", lambda p: np.asfortranarray(p["w1"]), r"w1 is not contiguous"),
    ("hidden_states", lambda p: np.repeat(p["hidden_states"], 2, axis=1)[:, ::2], r"hidden_states must have unit stride"),
])
def test_bad_arguments_raise_value_error(field, bad, message):
    p = make_problem(4, 2, 64, 64, 3, seed=9)
    p[field] = bad(p)
    with pytest.raises(ValueError, match=message):
        ramp_moe.fused_moe(**p)


def test_misaligned_hidden_raises():
    p = make_problem(4, 2, 64, 64, 3, seed=10)
    buffer = np.zeros(3 * 64 + 8, dtype=np.uint16)
    shifted = buffer[1:1 + 3 * 64].reshape(3, 64)
    shifted[...] = p["hidden_states"]
    with pytest.raises(ValueError, match=r"^misaligned pointer: hidden \(0x[0-9a-f]+\) is not 16-byte aligned$"):
        ramp_moe.fused_moe(**dict(p, hidden_states=shifted))


def test_backend_must_match_the_memory():
    p = make_problem(4, 2, 64, 64, 3, seed=11)
    with pytest.raises(ValueError, match="backend='cuda' but hidden_states is in CPU memory"):
        ramp_moe.fused_moe(**p, backend="cuda")
    with pytest.raises(ValueError, match="backend 'gpu' is not one of auto, cpu, cuda"):
        ramp_moe.fused_moe(**p, backend="gpu")
    with pytest.raises(TypeError, match="is not a DLPack array"):
        ramp_moe.fused_moe(**dict(p, hidden_states=[[0] * 64] * 3))


def test_cpu_workspace_bytes_grow_with_tokens_and_are_zero_for_none():
    sizes = [ramp_moe.workspace_bytes(8, 2, 128, 64, t, backend="cpu") for t in (0, 1, 37, 1024)]
    assert sizes[0] == 0 and 0 < sizes[1] < sizes[2] < sizes[3]


def _aligned_poisoned_bytes(size, offset=0):
    raw = np.full(size + 128, 0xFF, dtype=np.uint8)
    start = -raw.ctypes.data % 64 + offset
    return raw[start:start + size]


def test_caller_cpu_workspace_gives_the_same_bits():
    p = make_problem(8, 2, 128, 64, 37, seed=12)
    want = ramp_moe.fused_moe(**p)
    # Sized for a larger batch, filled with NaN bytes: neither may change a bit.
    workspace = _aligned_poisoned_bytes(ramp_moe.workspace_bytes(8, 2, 128, 64, 100, backend="cpu"))
    np.testing.assert_array_equal(ramp_moe.fused_moe(**p, workspace=workspace), want)


def test_bad_cpu_workspace_raises_before_writing():
    p = make_problem(8, 2, 128, 64, 5, seed=13)
    needed = ramp_moe.workspace_bytes(8, 2, 128, 64, 5, backend="cpu")
    out = np.full((5, 128), 0xFFFF, dtype=np.uint16)
    with pytest.raises(ValueError, match=f"workspace_bytes = {needed - 64} is smaller than the "
                                         f"{needed} bytes this call needs"):
        ramp_moe.fused_moe(**p, out=out, workspace=_aligned_poisoned_bytes(needed - 64))
    with pytest.raises(ValueError, match="workspace is not 64-byte aligned"):
        ramp_moe.fused_moe(**p, out=out, workspace=_aligned_poisoned_bytes(needed, offset=8))
    assert (out == 0xFFFF).all()


def test_bf16_bits_round_to_nearest_even():
    values = np.array([1.0, 1.00390625, 1.01171875, -2.5, np.inf, 0.0], dtype=np.float32)
    bits = ramp_moe.bf16_bits(values)
    np.testing.assert_array_equal(ramp_moe.bf16_bits_to_float32(bits),
                                  np.array([1.0, 1.0, 1.015625, -2.5, np.inf, 0.0], np.float32))
    assert np.isnan(ramp_moe.bf16_bits_to_float32(ramp_moe.bf16_bits(np.array([np.nan]))))[0]
