"""CuPy arrays through ramp_moe.fused_moe on the CUDA backend (DLPack). Needs CuPy, a CUDA
device and a build with the CUDA backend; skips otherwise (CI has neither CuPy nor a GPU)."""

import numpy as np
import pytest

cupy = pytest.importorskip("cupy")

import ramp_moe  # noqa: E402
from moe_reference import make_problem, reference, relative_error  # noqa: E402


def _cupy_device_count():
    try:
        return cupy.cuda.runtime.getDeviceCount()
    except cupy.cuda.runtime.CUDARuntimeError:
        return 0


pytestmark = pytest.mark.skipif(
    not (_cupy_device_count() > 0 and ramp_moe.cuda_backend_built()
         and ramp_moe.cuda_device_available()),
    reason="needs a CUDA device and a build with the CUDA backend")

NAN_BITS = 0xFFFF  # bf16 NaN: an element left unwritten makes the relative error NaN


def cupy_problem(*shape, seed, routing="uniform"):
    """The NumPy problem, the same values as CuPy arrays (bf16 as uint16 bits), and what a
    non-torch CUDA caller passes besides: a poisoned out and a workspace."""
    problem = make_problem(*shape, seed=seed, routing=routing)
    arrays = {name: cupy.asarray(array) for name, array in problem.items()}
    num_experts, top_k, hidden, inter, num_tokens = shape
    extras = {
        "out": cupy.full((num_tokens, hidden), NAN_BITS, dtype=cupy.uint16),
        "workspace": cupy.empty(
            ramp_moe.workspace_bytes(num_experts, top_k, hidden, inter, num_tokens),
            dtype=cupy.uint8),
    }
    return problem, arrays, extras


@pytest.mark.parametrize("routing", ["uniform", "skewed", "one_expert"])
def test_cupy_matches_reference(routing):
    problem, arrays, extras = cupy_problem(8, 2, 256, 128, 33, seed=41, routing=routing)
    stream = cupy.cuda.get_current_stream()
    result = ramp_moe.fused_moe(**arrays, **extras, stream=stream.ptr)
    assert result is extras["out"]
    stream.synchronize()
    assert relative_error(cupy.asnumpy(result), reference(**problem)) <= 1e-2


def test_cupy_runs_on_the_given_stream_bitwise_deterministic():
    _, arrays, extras = cupy_problem(8, 2, 256, 128, 40, seed=42, routing="skewed")
    side = cupy.cuda.Stream(non_blocking=True)
    cupy.cuda.get_current_stream().synchronize()  # the inputs were written on the current one
    first = ramp_moe.fused_moe(**arrays, **extras, stream=side.ptr)
    second_out = cupy.full_like(extras["out"], NAN_BITS)
    ramp_moe.fused_moe(**arrays, out=second_out, workspace=extras["workspace"], stream=side.ptr)
    side.synchronize()
    np.testing.assert_array_equal(cupy.asnumpy(first), cupy.asnumpy(second_out))
    assert (cupy.asnumpy(first) != NAN_BITS).all()


def test_cupy_needs_out_and_workspace():
    _, arrays, extras = cupy_problem(8, 2, 256, 128, 4, seed=43)
    with pytest.raises(ValueError, match=r"^out= is required for arrays other than torch"):
        ramp_moe.fused_moe(**arrays, workspace=extras["workspace"])
    with pytest.raises(ValueError, match=r"^workspace= is required for CUDA arrays other than torch"):
        ramp_moe.fused_moe(**arrays, out=extras["out"])


def test_cupy_bad_id_is_reported_by_check_routing():
    _, arrays, extras = cupy_problem(8, 2, 256, 128, 6, seed=44)
    arrays["topk_ids"][3, 1] = 70
    stream = cupy.cuda.get_current_stream()
    with pytest.raises(ValueError, match=r"^invalid argument: topk_ids\[3\]\[1\] = 70 is outside \[0, 8\)$"):
        ramp_moe.fused_moe(**arrays, **extras, stream=stream.ptr, check_routing=True)


def test_cupy_and_numpy_arrays_cannot_mix():
    problem, arrays, extras = cupy_problem(8, 2, 256, 128, 4, seed=45)
    with pytest.raises(ValueError, match="w2 is on another device than hidden_states"):
        ramp_moe.fused_moe(**dict(arrays, w2=problem["w2"]), **extras)
