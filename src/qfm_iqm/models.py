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
STD_FLOOR = 0.1  # least std a channel is standardised with, relative to the median std of the channels


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
        self.register_buffer("low", torch.full((in_dim,), -torch.inf))  # the training range of each channel
        self.register_buffer("high", torch.full((in_dim,), torch.inf))
        self.register_buffer("out_scale", torch.ones(()))
        self.register_buffer("out_shift", torch.zeros(()))
        self.gate = ChannelGate(in_dim, gate_reduction) if gate else nn.Identity()
        self.head = HEADS[head](in_dim, hidden=hidden, dropout=dropout)

    def fit_normaliser(self, x: torch.Tensor, floor: float = STD_FLOOR, frozen: bool = True) -> None:
        """Set standardisation statistics from training features (channels last, any leading shape).

        Safe for near-constant channels, which small training sets have by the hundred: a channel's std
        is floored at ``floor`` x the median std of the varying channels, and ``frozen`` features, which
        never change, are clipped to their training range, so a test image far outside it cannot drive
        the head where it was never trained (z-scores in the thousands once made predictions of ~46,000
        on [0, 1] scores); a channel constant on the training features thus standardises to 0. Trained
        features (fine-tune mode) are not clipped: a dead unit may come alive and features may leave the
        range they started in.
        """
        flat = x.reshape(-1, x.shape[-1]).double()
        std = flat.std(0) if len(flat) > 1 else torch.zeros(flat.shape[-1], dtype=flat.dtype)
        varying = std[std > 0]
        self.mean.copy_(flat.mean(0))
        self.std.copy_(std.clamp_min(floor * (float(varying.median()) if len(varying) else 1.0)))
        if frozen:
            self.low.copy_(flat.min(0).values)
            self.high.copy_(flat.max(0).values)

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
        """Features clipped to their training range, on the training features' scale (what a head without a
        gate sees)."""
        return (torch.minimum(torch.maximum(x, self.low), self.high) - self.mean) / self.std

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        """What the head sees: standardised features, gated when the model has a gate."""
        return self.gate(self.standardise(x))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None, eps: float = 0.0) -> torch.Tensor:
        """Scores; with ``noise`` (partner features), the semantic-noise path of QFM-IQM:
        standardised features plus ``eps`` x standardised partner features, then gate and head."""
        z = self.standardise(x)
        if noise is not None:
            z = z + eps * self.standardise(noise)
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
