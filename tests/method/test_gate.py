"""The channel gate, on pooled features and on tokens."""

from __future__ import annotations

import torch

from qfm_iqm.method.gate import ChannelGate
from qfm_iqm.method.model import QualityModel


def test_gate_weights_lie_in_unit_interval() -> None:
    gate = ChannelGate(32, reduction=4)
    x = torch.randn(7, 32) * 10
    w = gate.weights(x)
    assert w.shape == (7, 32) and (w > 0).all() and (w < 1).all()
    assert torch.allclose(gate(x), x * w)


def test_the_token_gate_starts_near_identity_and_is_not_decayed() -> None:
    gate = ChannelGate(8, reduction=2, tokens=True)
    x = torch.randn(4, 5, 8)
    w = gate.weights(x)
    assert w.shape == (4, 1, 8) and torch.allclose(w, torch.full_like(w, torch.sigmoid(torch.tensor(4.0)).item()))
    model = QualityModel(8, head="decoder", hidden=8, gate=True, tokens=5, heads=2, depth=1, query="learned",
                         queries=1, mlp_ratio=2, dropout=0.1, gate_reduction=8)
    decayed, plain = model.param_groups(1e-3, 0.1)
    gate_ids = {id(p) for p in model.gate.parameters()}
    assert gate_ids <= {id(p) for p in plain["params"]} and plain["weight_decay"] == 0.0
    assert not gate_ids & {id(p) for p in decayed["params"]} and decayed["weight_decay"] == 0.1
