"""JAX arrays through ramp_moe.fused_moe on the CPU backend (DLPack). JAX arrays are immutable,
so they may be inputs only: `out` and `workspace` must be writable arrays of another framework."""

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")

import ramp_moe  # noqa: E402
from moe_reference import make_problem, reference, relative_error  # noqa: E402

CPU = jax.devices("cpu")[0]


def as_jax(problem):
    """The same values as JAX arrays on the CPU, bf16 bit patterns as bfloat16."""
    arrays = {}
    for name, array in problem.items():
        value = jax.device_put(jnp.asarray(array), CPU)
        arrays[name] = value.view(jnp.bfloat16) if array.dtype == np.uint16 else value
    return arrays


def jax_problem(*shape, seed, routing="uniform"):
    problem = make_problem(*shape, seed=seed, routing=routing)
    return problem, as_jax(problem)


@pytest.mark.parametrize("routing", ["uniform", "skewed", "duplicates"])
def test_jax_inputs_give_the_numpy_bits(routing):
    problem, arrays = jax_problem(8, 2, 128, 64, 19, seed=31, routing=routing)
    assert arrays["hidden_states"].dtype == jnp.bfloat16
    out = np.full((19, 128), 0xFFFF, dtype=np.uint16)  # NaN bits: every element must be written
    result = ramp_moe.fused_moe(**arrays, out=out)
    assert result is out
    np.testing.assert_array_equal(out, ramp_moe.fused_moe(**problem))
    assert relative_error(out, reference(**problem)) <= 1e-2
    # The result as a JAX bf16 array, without a copy through float.
    as_jax = jnp.from_dlpack(out).view(jnp.bfloat16)
    np.testing.assert_array_equal(np.asarray(as_jax.view(jnp.uint16)), out)


def test_jax_out_is_refused_and_left_unchanged():
    _, arrays = jax_problem(8, 2, 64, 64, 5, seed=32)
    out = jnp.zeros((5, 64), dtype=jnp.bfloat16)
    with pytest.raises(ValueError, match=r"^out is a JAX array; JAX arrays are immutable"):
        ramp_moe.fused_moe(**arrays, out=out)
    assert not np.asarray(out.astype(jnp.float32)).any()


def test_jax_workspace_is_refused():
    _, arrays = jax_problem(8, 2, 64, 64, 5, seed=33)
    workspace = jnp.zeros((ramp_moe.workspace_bytes(8, 2, 64, 64, 5, backend="cpu"),),
                          dtype=jnp.uint8)
    with pytest.raises(ValueError, match=r"^workspace is a JAX array"):
        ramp_moe.fused_moe(**arrays, out=np.zeros((5, 64), dtype=np.uint16), workspace=workspace)


def test_jax_inputs_without_out_ask_for_a_writable_one():
    _, arrays = jax_problem(8, 2, 64, 64, 5, seed=34)
    with pytest.raises(ValueError, match=r"out= is required .* \(JAX arrays are immutable"):
        ramp_moe.fused_moe(**arrays)


def test_jax_bad_id_raises_the_validation_message():
    problem = make_problem(8, 2, 64, 64, 6, seed=35)
    problem["topk_ids"][3, 1] = 70
    arrays = as_jax(problem)
    out = np.full((6, 64), 0x7FC0, dtype=np.uint16)
    with pytest.raises(ValueError, match=r"^invalid argument: topk_ids\[3\]\[1\] = 70 is outside \[0, 8\)$"):
        ramp_moe.fused_moe(**arrays, out=out)
    assert (out == 0x7FC0).all()
