"""Quality models over cached backbone features: registries of heads, plus the channel gate.

A ``QualityModel`` is feature standardisation -> optional channel gate -> head. It scores every
crop; image scores average the crops. Heads are registered by name (``HEADS``), like timm models.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from qfm_iqm.io import atomic_path

HEADS: dict[str, Callable[..., nn.Module]] = {}


def register_head(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def wrap(cls: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        HEADS[name] = cls
        return cls

    return wrap


@register_head("linear")
class LinearHead(nn.Sequential):
    """A linear regressor (the learned counterpart of the ridge floor)."""

    def __init__(self, in_dim: int, hidden: int = 0, dropout: float = 0.0) -> None:
        super().__init__(nn.Dropout(dropout), nn.Linear(in_dim, 1))


@register_head("mlp")
class MLPHead(nn.Sequential):
    """Two-layer perceptron decoder: Linear -> GELU -> Dropout -> Linear."""

    def __init__(self, in_dim: int, hidden: int = 512, dropout: float = 0.1) -> None:
        super().__init__(nn.Dropout(dropout), nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout),
                         nn.Linear(hidden, 1))


class ChannelGate(nn.Module):
    """Squeeze-and-excitation gate: feature -> MLP -> sigmoid weight per channel -> multiply.

    The adaptive feature selection of QFM-IQM: weights in (0, 1) that can suppress channels.
    """

    def __init__(self, dim: int, reduction: int = 8) -> None:
        super().__init__()
        self.excite = nn.Sequential(nn.Linear(dim, max(1, dim // reduction)), nn.ReLU(),
                                    nn.Linear(max(1, dim // reduction), dim), nn.Sigmoid())

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        return self.excite(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weights(x)


class QualityModel(nn.Module):
    """Standardise -> (gate) -> head; ``forward`` maps (..., dim) features to (...) scores."""

    def __init__(self, in_dim: int, head: str = "mlp", hidden: int = 512, dropout: float = 0.1,
                 gate: bool = False, gate_reduction: int = 8) -> None:
        super().__init__()
        if head not in HEADS:
            raise KeyError(f"unknown head {head!r}; known: {sorted(HEADS)}")
        self.spec = {"in_dim": in_dim, "head": head, "hidden": hidden, "dropout": dropout, "gate": gate,
                     "gate_reduction": gate_reduction}
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("std", torch.ones(in_dim))
        self.register_buffer("out_scale", torch.ones(()))
        self.register_buffer("out_shift", torch.zeros(()))
        self.gate = ChannelGate(in_dim, gate_reduction) if gate else nn.Identity()
        self.head = HEADS[head](in_dim, hidden=hidden, dropout=dropout)

    def fit_normaliser(self, x: torch.Tensor) -> None:
        """Set standardisation statistics from training features (any leading shape)."""
        flat = x.reshape(-1, x.shape[-1])
        self.mean.copy_(flat.mean(0))
        self.std.copy_(flat.std(0).clamp_min(1e-6))

    @torch.no_grad()
    def calibrate(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Affine output map fitted by least squares on training data, in eval mode.

        Dropout shifts a head's output between training and evaluation; this puts predictions
        back on the label scale. It is monotone, so rank correlations do not change.
        """
        self.out_scale.fill_(1.0)
        self.out_shift.fill_(0.0)
        pred = self.eval()(x)
        scale = torch.cov(torch.stack([pred, y]))[0, 1] / pred.var().clamp_min(1e-12)
        if scale > 0:
            self.out_scale.fill_(scale)
            self.out_shift.fill_(y.mean() - scale * pred.mean())

    def standardise(self, x: torch.Tensor) -> torch.Tensor:
        """Features on the training features' scale (what a head without a gate sees)."""
        return (x - self.mean) / self.std

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        """What the head sees: standardised features, gated when the model has a gate."""
        return self.gate(self.standardise(x))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None, eps: float = 0.0) -> torch.Tensor:
        """Scores; with ``noise`` (partner features), the semantic-noise path of QFM-IQM:
        standardised features plus ``eps`` x standardised partner features, then gate and head."""
        z = self.standardise(x)
        if noise is not None:
            z = z + eps * (noise - self.mean) / self.std  # as measured (bit-identical results)
        return self.head(self.gate(z)).squeeze(-1) * self.out_scale + self.out_shift


def save_model(model: QualityModel, path: Any, **extra: Any) -> None:
    """Checkpoint with its architecture, so that loading needs no config."""
    with atomic_path(path) as tmp:
        torch.save({"spec": model.spec, "state_dict": model.state_dict(), **extra}, tmp)


def load_model(path: Any) -> QualityModel:
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    model = QualityModel(**ckpt["spec"])
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()
