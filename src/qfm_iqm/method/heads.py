"""Registry of quality heads (``HEADS``), like timm's model registry: ``linear`` and ``mlp`` read one pooled vector
per crop, ``decoder`` (the DEIQT-style transformer decoder QFM-IQM builds on) a token sequence. A head takes
``in_dim``, ``hidden``, ``dropout`` and ``tokens``, and its own keys only (the decoder's ``heads``, ``depth``,
``query``): another head's key is an error, as it is in the config schema."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from qfm_iqm.registry import Registry

HEADS: Registry[Callable[..., nn.Module]] = Registry("head")
QUERIES = ("cls", "learned", "pooled")  # where the decoder's query starts


def _pooled_only(name: str, tokens: int) -> None:
    if tokens:
        raise ValueError(f"head {name!r} reads one vector per crop, not {tokens} tokens; use head 'decoder'")


@HEADS.register("linear")
class LinearHead(nn.Sequential):
    """A linear regressor (the learned counterpart of the ridge floor)."""

    def __init__(self, in_dim: int, hidden: int, dropout: float, tokens: int = 0) -> None:
        _pooled_only("linear", tokens)  # ``hidden``: every head's key (the config's arch has it), unused here
        super().__init__(nn.Dropout(dropout), nn.Linear(in_dim, 1))


@HEADS.register("mlp")
class MLPHead(nn.Sequential):
    """Two-layer perceptron on pooled features: Linear -> GELU -> Dropout -> Linear."""

    def __init__(self, in_dim: int, hidden: int, dropout: float, tokens: int = 0) -> None:
        _pooled_only("mlp", tokens)
        super().__init__(nn.Dropout(dropout), nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout),
                         nn.Linear(hidden, 1))


@HEADS.register("decoder")
class DecoderHead(nn.Module):
    """DEIQT-style decoder: tokens -> linear projection to ``hidden`` + learned position embedding;
    ``queries`` quality queries cross-attend to them in ``depth`` transformer decoder layers (``heads``
    attention heads, pre-norm, feed-forward width ``mlp_ratio`` x ``hidden``); a linear layer maps each query
    to a score, and the score is their mean (DEIQT: six queries, ratio 4).

    ``query``: "cls" adds the first token (a ViT's CLS token), projected, to each learned query, and the others are
    the keys and values, as in DEIQT; "pooled" adds the mean and standard deviation of the tokens, the
    counterpart of the CLS token for a CNN (a summary of the whole map, here including the early-stage
    statistics); "learned" is the learned query alone.
    """

    def __init__(self, in_dim: int, hidden: int, dropout: float, tokens: int = 0, *, heads: int,
                 depth: int, query: str, queries: int, mlp_ratio: float) -> None:
        super().__init__()
        if tokens < 1:
            raise ValueError("head 'decoder' reads token sequences: give the number of tokens per crop")
        if query not in QUERIES:
            raise KeyError(f"unknown decoder query {query!r}; known: {list(QUERIES)}")
        if query == "cls" and tokens < 2:
            raise ValueError("decoder query 'cls' reads the first token and attends to the others: give at least 2")
        self.cls = query == "cls"
        self.project = nn.Linear(in_dim, hidden)
        self.position = nn.Parameter(torch.zeros(tokens, hidden))
        self.query = nn.Parameter(torch.randn(1, queries, hidden) * 0.02)
        self.summary = nn.Linear(2 * in_dim, hidden) if query == "pooled" else None
        layer = nn.TransformerDecoderLayer(hidden, heads, round(mlp_ratio * hidden), dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, depth)
        self.norm = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., tokens, in_dim) -> (..., 1)."""
        lead, x = x.shape[:-2], x.reshape(-1, *x.shape[-2:])
        query, tokens = self.query.expand(len(x), -1, -1), self.project(x) + self.position
        if self.summary is not None:
            query = query + self.summary(torch.cat([x.mean(1), x.std(1)], dim=-1))[:, None]
        if self.cls:
            query, tokens = query + tokens[:, :1], tokens[:, 1:]
        query = self.decoder(query, tokens)
        return self.out(self.norm(query)).mean(1).reshape(*lead, 1)
