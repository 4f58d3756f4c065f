"""fused_moe over DLPack arrays, with the argument order of vLLM's fused_experts."""

from __future__ import annotations

import functools
import sys
import threading

from . import _C

_DLPACK_CPU = 1
_DLPACK_CUDA = 2
_BACKENDS = ("auto", "cpu", "cuda")

cuda_backend_built = _C.cuda_backend_built
cuda_device_available = _C.cuda_device_available


def fused_moe(hidden_states, w1, w2, topk_weights, topk_ids, out=None, backend="auto", *,
              workspace=None, stream=None, num_threads=0, check_routing=False):
    """The MoE layer: out[t] = sum_j topk_weights[t, j] * w2[e] @ (silu(g) * u),
    [g; u] = w1[e] @ hidden_states[t], e = topk_ids[t, j].

    Drop-in for vLLM's ``fused_experts(hidden_states, w1, w2, topk_weights, topk_ids)``
    (bf16, SiLU, unquantised):

      hidden_states [T, H] bf16 (row stride may exceed H), w1 [E, 2I, H] bf16 (gate rows then
      up rows: vLLM's w13), w2 [E, H, I] bf16, topk_weights [T, k] float32, topk_ids [T, k] int32.

    Any DLPack array works as input (torch, NumPy, CuPy, JAX). NumPy has no bfloat16: pass uint16
    arrays of bf16 bit patterns (see bf16_bits). ``out`` and ``workspace`` are written, so they
    must be writable: a JAX array there raises ValueError (JAX arrays are immutable). The
    arrays' memory picks the backend: CPU memory runs the CPU backend (synchronous), CUDA memory
    the CUDA backend, asynchronously on ``stream`` (torch: default
    torch.cuda.current_stream()). ``backend`` ("auto", "cpu", "cuda") only asserts which.

    ``out`` is allocated when omitted for torch and NumPy inputs; other frameworks pass ``out``
    (and, on CUDA, ``workspace`` of workspace_bytes(...) bytes, 256-byte aligned, and ``stream``).
    torch CUDA workspaces come from torch.empty and are cached per (device, stream), except
    during CUDA graph capture, where each call gets its own (owned by the graph's pool).
    CPU workspaces (workspace_bytes(..., backend="cpu") bytes, 64-byte aligned) come from
    torch.empty for torch inputs, NumPy otherwise, and are cached per Python thread; pass
    ``workspace`` to use your own. Each call still plans the routing and starts the CPU
    backend's ``num_threads`` threads (a C++ ramp::MoeLayer keeps its threads across calls).

    Raises ValueError naming the first offending argument or element (bad id, non-finite weight,
    shape, dtype, stride, alignment), RuntimeError for CUDA / device errors. On CUDA, bad ids and
    weights are found on the device without a host sync: the call returns, and
    ``check_routing=True`` (synchronises) raises the same ValueError the CPU path raises.
    """
    if backend not in _BACKENDS:
        raise ValueError(f"backend {backend!r} is not one of {', '.join(_BACKENDS)}")
    device_type, device_id = _dlpack_device(hidden_states, "hidden_states")
    on_cuda = device_type == _DLPACK_CUDA
    if backend != "auto" and backend != ("cuda" if on_cuda else "cpu"):
        raise ValueError(f"backend={backend!r} but hidden_states is in "
                         f"{'CUDA' if on_cuda else 'CPU'} memory; move the arrays or use "
                         f"backend='auto'")

    for name, array in (("out", out), ("workspace", workspace)):
        if array is not None and _is_jax_array(array):
            raise ValueError(_JAX_WRITE_MESSAGE.format(name=name))

    torch = _torch_module_of(hidden_states)
    if torch is not None:
        hidden_states, w1, w2, topk_weights, topk_ids = (
            t.detach() if isinstance(t, torch.Tensor) else t
            for t in (hidden_states, w1, w2, topk_weights, topk_ids))
        if out is None:
            out = torch.empty(hidden_states.shape, dtype=hidden_states.dtype,
                              device=hidden_states.device)
        if on_cuda:
            if stream is None:
                stream = torch.cuda.current_stream(hidden_states.device).cuda_stream
            if workspace is None:
                workspace = _torch_workspace(torch, hidden_states, w1, topk_ids, stream)
    elif out is None:
        numpy = sys.modules.get("numpy")
        if numpy is None or not isinstance(hidden_states, numpy.ndarray):
            hint = (" (JAX arrays are immutable: NumPy uint16 bits on CPU, CuPy or torch on "
                    "CUDA)" if _is_jax_array(hidden_states) else "")
            raise ValueError("out= is required for arrays other than torch tensors and NumPy "
                             "arrays: pass a writable [T, H] bf16 array on hidden_states' "
                             "device" + hint)
        out = numpy.empty(hidden_states.shape, dtype=hidden_states.dtype)
    if not on_cuda and workspace is None:
        workspace = _cpu_workspace(torch, hidden_states, w1, topk_ids)
    if torch is None and on_cuda and workspace is None and _num_tokens(hidden_states) > 0:
        raise ValueError("workspace= is required for CUDA arrays other than torch tensors: "
                         "ramp_moe.workspace_bytes(...) bytes of device memory")

    _C.fused_moe(hidden_states, w1, w2, topk_weights, topk_ids, out, workspace,
                 int(stream or 0), num_threads, check_routing)
    return out


def workspace_bytes(num_experts, top_k, hidden, intermediate, num_tokens, backend="cuda",
                    device_id=0):
    """Bytes of workspace a call with T <= num_tokens needs on ``backend`` ("cuda" or "cpu");
    0 when num_tokens is 0."""
    return _cached_workspace_bytes(num_experts, top_k, hidden, intermediate, num_tokens,
                                   backend, device_id)


def bf16_bits(values):
    """float array -> uint16 array of bf16 bit patterns, rounded to nearest even (as the GPU)."""
    import numpy as np
    floats = np.ascontiguousarray(values, dtype=np.float32)
    bits = floats.view(np.uint32)
    rounded = ((bits + np.uint32(0x7FFF) + ((bits >> 16) & np.uint32(1))) >> 16)
    quiet_nan = (bits >> 16) | np.uint32(0x0040)
    return np.where(np.isnan(floats), quiet_nan, rounded).astype(np.uint16)


def bf16_bits_to_float32(bits):
    """uint16 array of bf16 bit patterns -> float32 array (exact)."""
    import numpy as np
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def _dlpack_device(array, name):
    try:
        device_type, device_id = array.__dlpack_device__()
    except AttributeError:
        raise TypeError(f"{name} ({type(array).__name__}) is not a DLPack array") from None
    return int(device_type), int(device_id)


# JAX arrays are immutable, and JAX's DLPack capsules carry no read-only flag, so a JAX `out`
# would be overwritten in place behind JAX's back (a buffer JAX may share or have cached).
_JAX_WRITE_MESSAGE = (
    "{name} is a JAX array; JAX arrays are immutable and ramp_moe writes {name} in place: pass "
    "a writable array (NumPy on CPU, CuPy or torch on CUDA) and convert the result with "
    "jax.numpy.from_dlpack")


def _is_jax_array(array):
    return type(array).__module__.split(".")[0] in ("jax", "jaxlib")


def _torch_module_of(array):
    torch = sys.modules.get("torch")
    return torch if torch is not None and isinstance(array, torch.Tensor) else None


def _num_tokens(hidden_states):
    shape = getattr(hidden_states, "shape", ())
    return shape[0] if len(shape) == 2 else 1


_workspaces = {}


def _torch_workspace(torch, hidden_states, w1, topk_ids, stream, cached=True):
    # Malformed shapes get no workspace: the extension then reports the shape error itself.
    if hidden_states.dim() != 2 or w1.dim() != 3 or topk_ids.dim() != 2:
        return None
    num_tokens = hidden_states.shape[0]
    if num_tokens == 0:
        return None
    device = hidden_states.device
    needed = workspace_bytes(w1.shape[0], topk_ids.shape[1], hidden_states.shape[1],
                             w1.shape[1] // 2, num_tokens, "cuda", device.index or 0)
    if not cached or torch.cuda.is_current_stream_capturing():
        return torch.empty(needed, dtype=torch.uint8, device=device)
    key = (device.index, stream)
    cached = _workspaces.get(key)
    if cached is None or cached.numel() < needed:
        # Grow to the next power of two so a slowly rising T does not reallocate every call.
        cached = torch.empty(1 << (needed - 1).bit_length(), dtype=torch.uint8, device=device)
        _workspaces[key] = cached
    return cached


_cpu_workspaces = threading.local()


def _cpu_workspace(torch, hidden_states, w1, topk_ids):
    # The extension releases the GIL, so calls from several Python threads overlap: one
    # workspace per thread.
    hidden_shape, w1_shape, ids_shape = _shape(hidden_states), _shape(w1), _shape(topk_ids)
    # Malformed input gets no workspace: the extension then reports the first error itself.
    if len(hidden_shape) != 2 or len(w1_shape) != 3 or len(ids_shape) != 2 or hidden_shape[0] == 0:
        return None
    try:
        needed = workspace_bytes(w1_shape[0], ids_shape[1], hidden_shape[1], w1_shape[1] // 2,
                                 hidden_shape[0], "cpu")
    except ValueError:
        return None
    kind = "torch" if torch is not None else "numpy"
    cached = getattr(_cpu_workspaces, kind, None)
    if cached is None or cached.shape[0] < needed:
        # Grow to the next power of two so a slowly rising T does not reallocate every call.
        cached = _aligned_host_bytes(torch, 1 << (needed - 1).bit_length())
        setattr(_cpu_workspaces, kind, cached)
    return cached


def _shape(array):
    return tuple(getattr(array, "shape", ()))


def _aligned_host_bytes(torch, size):
    alignment = 64  # the CPU backend's workspace alignment (a cache line)
    if torch is not None:
        raw = torch.empty(size + alignment - 1, dtype=torch.uint8)
        start = -raw.data_ptr() % alignment
    else:
        try:
            import numpy
        except ImportError:
            raise ValueError("workspace= is required without NumPy or torch: "
                             "ramp_moe.workspace_bytes(..., backend='cpu') bytes of host "
                             "memory, 64-byte aligned") from None
        raw = numpy.empty(size + alignment - 1, dtype=numpy.uint8)
        start = -raw.ctypes.data % alignment
    return raw[start:start + size]


@functools.lru_cache(maxsize=256)
def _cached_workspace_bytes(num_experts, top_k, hidden, intermediate, num_tokens, backend,
                            device_id):
    return _C.workspace_bytes(num_experts, top_k, hidden, intermediate, num_tokens, backend,
                              device_id)
