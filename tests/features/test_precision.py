"""Precision of forward passes (qfm_iqm.features.precision): DEIQT's mixed precision is float16 with a gradient scaler
on CUDA and bfloat16 elsewhere."""

from __future__ import annotations

import pytest
import torch

from qfm_iqm.features.precision import autocast, autocast_dtype, grad_scaler


def test_amp_is_float16_on_cuda_and_bfloat16_elsewhere() -> None:
    assert autocast_dtype("cuda", "amp") == torch.float16 and autocast_dtype("cpu", "amp") == torch.bfloat16
    assert autocast_dtype("cuda", "bf16") == torch.bfloat16 and autocast_dtype("cuda", "fp32") is None
    with autocast("cpu", "amp"):
        assert torch.nn.Linear(2, 2)(torch.ones(1, 2)).dtype == torch.bfloat16
    with autocast("cpu", "fp32"):
        assert torch.nn.Linear(2, 2)(torch.ones(1, 2)).dtype == torch.float32
    assert not grad_scaler("cpu", "amp").is_enabled()  # bfloat16 needs no loss scaling
    with pytest.raises(KeyError, match="unknown precision 'fp8'"):
        autocast("cpu", "fp8")
