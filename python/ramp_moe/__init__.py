"""ramp_moe: the routing-aware MoE layer of ramp, for Python.

    out = ramp_moe.fused_moe(hidden_states, w1, w2, topk_weights, topk_ids)

takes the arguments of vLLM's / SGLang's fused_experts (bf16, SiLU). With torch installed,
importing ramp_moe also registers torch.ops.ramp.fused_moe (torch.compile / CUDA graph safe).
"""

from ._api import (bf16_bits, bf16_bits_to_float32, cuda_backend_built, cuda_device_available,
                   fused_moe, workspace_bytes)

__all__ = ["fused_moe", "workspace_bytes", "bf16_bits", "bf16_bits_to_float32",
           "cuda_backend_built", "cuda_device_available"]

try:
    import torch as _torch
except ImportError:
    _torch = None
if _torch is not None:
    from . import torch as torch_ops  # noqa: F401  (registers torch.ops.ramp.fused_moe)
    __all__.append("torch_ops")
