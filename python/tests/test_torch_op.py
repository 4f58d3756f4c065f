"""torch tensors through ramp_moe.fused_moe and torch.ops.ramp.fused_moe. CPU tests need torch;
CUDA tests also need a device with the CUDA backend built, and skip otherwise."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import ramp_moe  # noqa: E402  (after torch: registers torch.ops.ramp.fused_moe)
from moe_reference import make_problem, reference  # noqa: E402

needs_cuda = pytest.mark.skipif(
    not (torch.cuda.is_available() and ramp_moe.cuda_backend_built()
         and ramp_moe.cuda_device_available()),
    reason="needs a CUDA device and a build with the CUDA backend")


def torch_problem(device, *shape, seed=0, routing="uniform"):
    problem = make_problem(*shape, seed=seed, routing=routing)
    tensors = {}
    for name, array in problem.items():
        if array.dtype == np.uint16:  # bf16 bit patterns
            tensor = torch.from_numpy(np.ascontiguousarray(array).view(np.int16)).view(torch.bfloat16)
        else:
            tensor = torch.from_numpy(np.ascontiguousarray(array))
        tensors[name] = tensor.to(device)
    return problem, tensors


def relative_error(out, want):
    got = out.float().cpu().double().numpy()
    return np.linalg.norm(got - want) / np.linalg.norm(want)


@pytest.mark.parametrize("routing", ["uniform", "skewed", "duplicates"])
def test_cpu_tensors_match_reference(routing):
    problem, t = torch_problem("cpu", 8, 2, 128, 64, 21, seed=1, routing=routing)
    out = ramp_moe.fused_moe(t["hidden_states"], t["w1"], t["w2"], t["topk_weights"], t["topk_ids"])
    assert out.dtype == torch.bfloat16 and out.shape == (21, 128)
    assert relative_error(out, reference(**problem)) <= 1e-2


def test_custom_op_on_cpu_equals_the_function():
    _, t = torch_problem("cpu", 8, 2, 64, 64, 9, seed=2)
    op_out = torch.ops.ramp.fused_moe(t["hidden_states"], t["w1"], t["w2"], t["topk_weights"],
                                      t["topk_ids"])
    assert torch.equal(op_out, ramp_moe.fused_moe(**t))


def test_custom_op_passes_opcheck():
    _, t = torch_problem("cpu", 4, 2, 64, 64, 5, seed=3)
    torch.library.opcheck(torch.ops.ramp.fused_moe.default,
                          (t["hidden_states"], t["w1"], t["w2"], t["topk_weights"], t["topk_ids"]),
                          test_utils=("test_schema", "test_faketensor"))


def test_custom_op_under_torch_compile_on_cpu():
    _, t = torch_problem("cpu", 4, 2, 64, 64, 7, seed=4)

    def layer(hidden_states, w1, w2, topk_weights, topk_ids):
        return torch.ops.ramp.fused_moe(hidden_states * 1, w1, w2, topk_weights, topk_ids)

    compiled = torch.compile(layer, fullgraph=True, backend="eager")
    assert torch.equal(compiled(**t), ramp_moe.fused_moe(**t))


def test_bad_id_raises_value_error_with_the_cpp_message():
    _, t = torch_problem("cpu", 8, 2, 64, 64, 6, seed=5)
    t["topk_ids"][3, 1] = 70
    with pytest.raises(ValueError, match=r"^invalid argument: topk_ids\[3\]\[1\] = 70 is outside \[0, 8\)$"):
        torch.ops.ramp.fused_moe(**t)


def test_int64_ids_are_rejected():
    _, t = torch_problem("cpu", 8, 2, 64, 64, 6, seed=6)
    with pytest.raises(ValueError, match="topk_ids has dtype int64, expected int32"):
        ramp_moe.fused_moe(**dict(t, topk_ids=t["topk_ids"].long()))


def test_parameters_with_requires_grad_are_accepted():
    _, t = torch_problem("cpu", 4, 2, 64, 64, 3, seed=7)
    w1 = torch.nn.Parameter(t["w1"].float().to(torch.bfloat16))  # requires_grad=True
    assert torch.equal(ramp_moe.fused_moe(**dict(t, w1=w1)), ramp_moe.fused_moe(**t))


@needs_cuda
@pytest.mark.parametrize("routing", ["uniform", "skewed", "one_expert"])
def test_cuda_matches_reference(routing):
    problem, t = torch_problem("cuda", 8, 2, 256, 128, 33, seed=8, routing=routing)
    out = ramp_moe.fused_moe(**t)
    torch.cuda.synchronize()
    assert out.is_cuda
    assert relative_error(out, reference(**problem)) <= 1e-2


@needs_cuda
def test_cuda_runs_on_the_current_stream_and_in_a_graph():
    _, t = torch_problem("cuda", 8, 2, 256, 128, 16, seed=9)
    expected = ramp_moe.fused_moe(**t)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        on_side = torch.ops.ramp.fused_moe(**t)
    torch.cuda.current_stream().wait_stream(side)
    assert torch.equal(on_side, expected)

    graph = torch.cuda.CUDAGraph()
    static = {name: tensor.clone() for name, tensor in t.items()}
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up outside capture, as torch recommends
        torch.ops.ramp.fused_moe(**static)
    torch.cuda.current_stream().wait_stream(side)
    with torch.cuda.graph(graph):
        captured = torch.ops.ramp.fused_moe(**static)
    # New routing and inputs, same buffers: the replay re-plans on the device.
    _, fresh = torch_problem("cuda", 8, 2, 256, 128, 16, seed=10, routing="skewed")
    for name in static:
        static[name].copy_(fresh[name])
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(captured, ramp_moe.fused_moe(**fresh))


@needs_cuda
def test_cuda_under_torch_compile():
    _, t = torch_problem("cuda", 8, 2, 256, 128, 24, seed=11)

    def layer(hidden_states, w1, w2, topk_weights, topk_ids):
        return torch.ops.ramp.fused_moe(hidden_states, w1, w2, topk_weights, topk_ids) + 0

    compiled = torch.compile(layer, fullgraph=True, mode="reduce-overhead")
    for _ in range(3):
        out = compiled(**t)
    assert torch.equal(out, ramp_moe.fused_moe(**t))


@needs_cuda
def test_cuda_bad_id_is_reported_by_check_routing():
    _, t = torch_problem("cuda", 8, 2, 256, 128, 6, seed=12)
    t["topk_ids"][3, 1] = 70
    ramp_moe.fused_moe(**t)  # no host sync: the error is recorded on the device
    with pytest.raises(ValueError, match=r"^invalid argument: topk_ids\[3\]\[1\] = 70 is outside \[0, 8\)$"):
        ramp_moe.fused_moe(**t, check_routing=True)


@needs_cuda
def test_cuda_and_cpu_tensors_cannot_mix():
    _, t = torch_problem("cuda", 8, 2, 256, 128, 4, seed=13)
    with pytest.raises(ValueError, match="w2 is on another device than hidden_states"):
        ramp_moe.fused_moe(**dict(t, w2=t["w2"].cpu()))
