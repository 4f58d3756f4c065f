"""torch.ops.ramp.fused_moe: the layer as a torch.library custom op.

A custom op (not a plain Python call) so torch.compile treats it as one opaque node and CUDA
graphs capture it: the fake implementation gives the output's shape without running anything.
Registered when ramp_moe is imported with torch available.
"""

import torch

from . import _api


@torch.library.custom_op("ramp::fused_moe", mutates_args=())
def fused_moe(hidden_states: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor,
              topk_weights: torch.Tensor, topk_ids: torch.Tensor) -> torch.Tensor:
    """vLLM's fused_experts(hidden_states, w1, w2, topk_weights, topk_ids) for bf16 + SiLU."""
    # A fresh workspace per call (the caching allocator makes it cheap): a tensor cached across
    # calls would outlive torch.compile's CUDA-graph pool, whose warm-up run allocates from the
    # pool without being a capture, and cudagraph trees reject untracked live allocations.
    workspace = None
    if hidden_states.is_cuda:
        workspace = _api._torch_workspace(torch, hidden_states, w1, topk_ids, None, cached=False)
    return _api.fused_moe(hidden_states, w1, w2, topk_weights, topk_ids, workspace=workspace)


@fused_moe.register_fake
def _fused_moe_fake(hidden_states, w1, w2, topk_weights, topk_ids):
    torch._check(hidden_states.dim() == 2, lambda: "hidden_states must be [T, H]")
    return hidden_states.new_empty(hidden_states.shape)
