"""The adaptive feature selection of QFM-IQM: a squeeze-and-excitation gate on feature channels."""

from __future__ import annotations

import torch
from torch import nn


class ChannelGate(nn.Module):
    """Squeeze-and-excitation gate: squeezed feature -> MLP -> sigmoid weight per channel -> multiply.

    The adaptive feature selection of QFM-IQM: weights in (0, 1) that can suppress channels. On token
    sequences (``tokens``) the squeeze is the mean token and every token gets the same weights. It
    starts near identity: the last layer's weights are zero and its bias ``init_bias`` (weights of
    about 0.98), so an untrained gate passes the features through.
    """

    def __init__(self, dim: int, reduction: int = 8, tokens: bool = False, init_bias: float = 4.0) -> None:
        super().__init__()
        self.tokens = tokens
        self.excite = nn.Sequential(nn.Linear(dim, max(1, dim // reduction)), nn.ReLU(),
                                    nn.Linear(max(1, dim // reduction), dim), nn.Sigmoid())
        nn.init.zeros_(self.excite[2].weight)
        nn.init.constant_(self.excite[2].bias, init_bias)

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """Channel weights: (..., dim) for vectors, (..., 1, dim) for token sequences."""
        return self.excite(x.mean(-2, keepdim=True)) if self.tokens else self.excite(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weights(x)
