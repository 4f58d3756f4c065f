"""ramp_moe swapped into a Hugging Face MoE model (bench/hf_e2e.py): logits against the stock
experts on fresh random weights and ids. Needs torch and transformers (skips otherwise); the
CUDA cases also need a device and a build with the CUDA backend."""

import os
import sys

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import ramp_moe  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
import hf_e2e  # noqa: E402

needs_cuda = pytest.mark.skipif(
    not (torch.cuda.is_available() and ramp_moe.cuda_backend_built()
         and ramp_moe.cuda_device_available()),
    reason="needs a CUDA device and a build with the CUDA backend")


def _model(model, device, seed, layers=2, tiny=True):
    config = hf_e2e.make_config(model, layers=layers, vocab=512, tiny=tiny)
    return hf_e2e.build_model(config, torch.device(device), seed=seed)


def _assert_matches(result):
    # The gates of hf_e2e.check_correctness: prefill logits, decode-step logits over tokens
    # that kept their experts, the MoE block alone at 1, batch and batch x seq tokens, the share
    # of flipped top-k sets, and a wrong swap that must be caught. Top-1 agreement is reported,
    # not asserted: a random model has near-tied logits.
    assert result["failures"] == [], result["failures"]
    assert result["negative_control"]["detected"], result["negative_control"]
    assert result["pass"]
    for checks in result["checks"].values():
        assert checks["prefill_logits"]["rel_fro_err"] <= hf_e2e.LOGITS_REL_TOL


@pytest.mark.parametrize("model", ["qwen3", "olmoe"])
def test_cpu_tiny_logits_match_stock(model):
    hf_model = _model(model, "cpu", seed=11)
    swap = hf_e2e.RampSwap(hf_model)
    result = hf_e2e.check_correctness(hf_model, swap, batch=2, seq=16, seed=12)
    _assert_matches(result)
    # The swap is undone on exit: the model computes the stock experts again.
    assert all("forward" not in target.__dict__ for target, _ in swap.entries)


def test_cpu_tiny_wrong_experts_fail_the_check():
    hf_model = _model("qwen3", "cpu", seed=13)
    wrong = hf_e2e.RampSwap(hf_model, _corrupt_for_test=True)
    result = hf_e2e.check_correctness(hf_model, wrong, batch=1, seq=16, seed=14, control=False)
    assert not result["pass"] and result["failures"]
    assert all(c["prefill_logits"]["rel_fro_err"] > hf_e2e.LOGITS_REL_TOL
               for c in result["checks"].values())


@needs_cuda
@pytest.mark.parametrize("tiny,layers,seq", [(True, 2, 64), (False, 1, 128)],
                         ids=["tiny", "qwen3-30b-a3b-shape"])
def test_cuda_logits_match_stock(tiny, layers, seq):
    hf_model = _model("qwen3", "cuda", seed=15, layers=layers, tiny=tiny)
    swap = hf_e2e.RampSwap(hf_model)
    result = hf_e2e.check_correctness(hf_model, swap, batch=2, seq=seq, seed=16)
    _assert_matches(result)
