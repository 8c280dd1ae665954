"""Seed ensembles: one student trained with several seeds on the same data, scored by the mean of its members.

``evaluation.seeds: K`` trains every compared student K times per split (seeds ``train.seed`` .. ``train.seed + K - 1``)
and saves the K models as one ``SeedEnsemble``, so that a split's score is the SRCC of the seed-averaged prediction
and the paired differences of the corrected test are differences of those averages. The ensemble answers what the
evaluation asks of a model (``forward``, ``encode``, ``score``, ``representation``, ``represent``) with the
members' mean.
"""

from __future__ import annotations

import torch
from torch import nn


class SeedEnsemble(nn.Module):
    """``members`` (models of one architecture) as one model: every output is the members' mean. ``spec`` is the
    first member's with ``members``: every member's spec, which ``checkpoint.load_model`` rebuilds them from."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("a seed ensemble needs at least one member")
        self.members = nn.ModuleList(members)
        self.spec = {**members[0].spec, "members": [m.spec for m in members]}

    def _mean(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(outputs).mean(0)

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None, eps: float = 0.0,
                form: str | None = None) -> torch.Tensor:
        return self._mean([m(x, noise, eps, form) for m in self.members])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The input itself: each member encodes it in ``score`` and ``represent`` (members with a trained backbone
        top encode differently)."""
        return x

    def score(self, feats: torch.Tensor, noise: torch.Tensor | None = None, eps: float = 0.0,
              form: str | None = None) -> torch.Tensor:
        return self._mean([m.score(m.encode(feats), None if noise is None else m.encode(noise), eps, form)
                           for m in self.members])

    def representation(self, x: torch.Tensor, gated: bool = True) -> torch.Tensor:
        return self._mean([m.representation(x, gated) for m in self.members])

    def represent(self, feats: torch.Tensor, gated: bool = True) -> torch.Tensor:
        return self._mean([m.represent(m.encode(feats), gated) for m in self.members])
