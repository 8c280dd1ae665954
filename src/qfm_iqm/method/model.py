"""The quality model over cached backbone features: standardisation -> optional channel gate -> head.

A ``QualityModel`` scores every crop; image scores average the crops. Its input is one pooled vector
per crop (``tokens = 0``; heads ``linear``, ``mlp``) or a sequence of ``tokens`` token vectors per
crop (head ``decoder``). The semantic noise of QFM-IQM enters here, on the standardised head input.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from qfm_iqm.method.gate import ChannelGate
from qfm_iqm.method.heads import HEADS

NOISE_FORMS = ("add", "mix")
STD_FLOOR = 0.1  # least std a channel is standardised with, relative to the median std of the channels


def with_legacy_keys(spec: dict) -> dict:
    """A checkpoint's ``spec`` with the keys it predates: decoders saved before ``queries`` and ``mlp_ratio`` had one
    query and a feed-forward twice their width."""
    return {"queries": 1, "mlp_ratio": 2, **spec} if spec["head"] == "decoder" else spec


class QualityModel(nn.Module):
    """Standardise -> (gate) -> head; ``forward`` maps (..., dim) features, or (..., tokens, dim) token
    sequences when ``tokens`` > 0, to (...) scores. Token sequences are standardised per token
    position and channel. ``head_options``: the head's own keys (the decoder's ``heads``, ``depth``, ``query``,
    ``queries``, ``mlp_ratio``)."""

    def __init__(self, in_dim: int, *, head: str, hidden: int, dropout: float, gate: bool = False,
                 gate_reduction: int | None = None, tokens: int = 0, **head_options: Any) -> None:
        make_head = HEADS[head]  # an unknown head: UnknownName, listing the known ones
        if gate and gate_reduction is None:
            raise ValueError("a gated model needs its gate_reduction (student.arch.gate_reduction)")
        super().__init__()
        self.spec = {"in_dim": in_dim, "head": head, "hidden": hidden, "dropout": dropout, "gate": gate,
                     "gate_reduction": gate_reduction, "tokens": tokens, **head_options}
        shape = (tokens, in_dim) if tokens else (in_dim,)
        self.register_buffer("mean", torch.zeros(shape))
        self.register_buffer("std", torch.ones(shape))
        self.register_buffer("low", torch.full(shape, -torch.inf))  # the training range of each channel
        self.register_buffer("high", torch.full(shape, torch.inf))
        self.register_buffer("out_scale", torch.ones(()))
        self.register_buffer("out_shift", torch.zeros(()))
        self.gate = ChannelGate(in_dim, gate_reduction, tokens=tokens > 0) if gate else nn.Identity()
        self.head = make_head(in_dim, hidden=hidden, dropout=dropout, tokens=tokens, **head_options)

    @classmethod
    def from_spec(cls, spec: dict) -> QualityModel:
        """The (untrained) model a checkpoint's ``spec`` describes. Checkpoints from before a head took only its own
        keys record the decoder's keys for every head; a head is given the keys it takes."""
        spec = with_legacy_keys(spec)
        takes = {*inspect.signature(cls).parameters, *inspect.signature(HEADS[spec["head"]]).parameters}
        return cls(**{k: v for k, v in spec.items() if k in takes})

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
        flat = x.reshape(-1, *self.mean.shape).double()
        std = flat.std(0) if len(flat) > 1 else torch.zeros(self.mean.shape, dtype=flat.dtype)
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
        self.reset_output()
        self.fit_output(self.eval()(x), y)

    def reset_output(self) -> None:
        """The identity output map: what ``calibrate`` fits from."""
        self.out_scale.fill_(1.0)
        self.out_shift.fill_(0.0)

    @torch.no_grad()
    def fit_output(self, pred: torch.Tensor, y: torch.Tensor) -> None:
        """The least-squares output map from eval-mode predictions ``pred`` (made with the identity map) to ``y``;
        left at identity when the fit would reverse the order."""
        scale = torch.cov(torch.stack([pred, y]))[0, 1] / pred.var().clamp_min(1e-12)
        if scale > 0:
            self.out_scale.fill_(scale)
            self.out_shift.fill_(y.mean() - scale * pred.mean())

    def standardise(self, x: torch.Tensor) -> torch.Tensor:
        """Features clipped to their training range, on the training features' scale (what a head without a
        gate sees). Unclipped models (trained features) skip the clipping: a no-op whose backward costs time."""
        if not self.low.isneginf().all():
            x = torch.minimum(torch.maximum(x, self.low), self.high)
        return (x - self.mean) / self.std

    def representation(self, x: torch.Tensor, gated: bool = True) -> torch.Tensor:
        """What the head sees: standardised features, gated when the model has a gate (and ``gated``);
        token sequences are averaged over their tokens."""
        z = self.standardise(x)
        z = self.gate(z) if gated else z
        return z.mean(-2) if self.spec["tokens"] else z

    def represent(self, feats: torch.Tensor, gated: bool = True) -> torch.Tensor:
        """``representation`` of encoded features (``encode``)."""
        return self.representation(feats, gated)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The head's input features of ``x``: ``x`` itself (models with trainable backbone layers override it)."""
        return x

    def score(self, feats: torch.Tensor, noise: torch.Tensor | None = None, eps: float = 0.0,
              form: str | None = None) -> torch.Tensor:
        """``forward`` on encoded features (``encode``)."""
        return self(feats, noise, eps, form)

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None, eps: float = 0.0,
                form: str | None = None) -> torch.Tensor:
        """Scores; with ``noise`` (partner features or tokens shaped like ``x``, or with a partner axis after
        the first, averaged), the semantic-noise path of QFM-IQM on the standardised head input z: ``form`` "add" gives z + eps x z_partner (the paper's superposition),
        "mix" the label-preserving convex mix (1 - eps) x z + eps x z_partner (no default: noise names its form);
        then gate and head."""
        z = self.standardise(x)
        if noise is not None:
            if form not in NOISE_FORMS:
                raise KeyError(f"unknown noise form {form!r}; known: {NOISE_FORMS}")
            zn = self.standardise(noise)
            zn = zn.mean(1) if noise.ndim > x.ndim else zn
            z = (1 - eps) * z + eps * zn if form == "mix" else z + eps * zn
        return self.head(self.gate(z)).squeeze(-1) * self.out_scale + self.out_shift

    def param_groups(self, lr: float, weight_decay: float) -> list[dict]:
        """Optimiser parameter groups: weight decay on every parameter but the gate's and the decoder's
        position embedding and query, so that decay pulls neither the gate off identity nor those to zero."""
        plain = {id(p) for p in self.gate.parameters()}
        plain |= {id(getattr(self.head, name)) for name in ("position", "query") if hasattr(self.head, name)}
        params = list(self.parameters())
        return [{"params": [p for p in params if id(p) not in plain], "lr": lr, "weight_decay": weight_decay},
                {"params": [p for p in params if id(p) in plain], "lr": lr, "weight_decay": 0.0}]
