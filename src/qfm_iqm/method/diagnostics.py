"""The behavioural check of the semantic noise: does matching reduce reliance on content that carries no quality?

Synthetic token sequences have two channel blocks. The quality block carries the label under token noise, on
training and test images alike. The content block is a per-image vector (the same on every token, plus a little
token noise) that carries no quality on the test images. Three regimes (``REGIMES``) decide what it carries on the
training images:

- ``nuisance``: a random content vector plus the label itself, in every channel; partners are mined on the
  random part only;
- ``confounded``: content that correlates with quality on the training images (a shift by the label, weaker than
  the nuisance's, under noisier quality channels), and that partners are mined on, as a semantic feature would be;
- ``overfitting``: many content channels independent of quality and few images, so that a model fits content by
  chance.

What QFM-IQM should do, written before it was measured: in every regime the matching student's test predictions
depend less on the content block than the baseline's (reliance ratio below 1), and its test SRCC is not lower.

Each training image's partner is quality matched (score gap below ``tol``) and, among those, farthest in content: the
memory bank pairs of QFM-IQM. ``nuisance_experiment`` trains a baseline and a matching student on the same data and
reports how far each one's test predictions move when the content block is permuted across images, over the
spread of its predictions, and its test SRCC.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats

from qfm_iqm.method import train
from qfm_iqm.method.model import QualityModel


@dataclass(frozen=True)
class Regime:
    """One synthetic problem: sizes, the quality channels' token noise and what the content block carries."""

    images: int = 400
    quality_channels: int = 8
    content_channels: int = 8
    quality_noise: float = 1.0
    label_in_content: float = 2.0  # the training label's weight in every content channel (0: none)
    mine_on_label: bool = False  # partners are mined on the content including its label part


REGIMES = {
    "nuisance": Regime(),
    "confounded": Regime(quality_noise=2.0, label_in_content=1.0, mine_on_label=True),
    "overfitting": Regime(images=64, content_channels=64, quality_noise=2.0, label_in_content=0.0),
}


def nuisance_tokens(seed: int, regime: str = "nuisance", test: bool = False, images: int | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images, 1 crop, tokens = 4, quality + content channels) tokens, their labels in [0, 1], and the content
    vectors partners are mined on. On ``test`` images the label part of the content follows a shuffled label."""
    r = REGIMES[regime]
    n = images or r.images
    rng = np.random.default_rng(seed)
    y = rng.uniform(size=n)
    content = rng.normal(size=(n, 1, r.content_channels))
    follows = rng.permutation(y) if test else y
    quality = 2 * y[:, None, None] + r.quality_noise * rng.normal(size=(n, 4, r.quality_channels))
    shown = content + r.label_in_content * follows[:, None, None]
    nuisance = shown + 0.1 * rng.normal(size=(n, 4, r.content_channels))
    tokens = np.concatenate([quality, nuisance], -1).astype(np.float32)[:, None]
    return tokens, y, (shown if r.mine_on_label else content)[:, 0]


def farthest_matched(y: np.ndarray, content: np.ndarray, tol: float = 0.05) -> np.ndarray:
    """Per image, the other image within ``tol`` of its label that is farthest from it in content (the other image
    closest in label when none is within ``tol``)."""
    others = ~np.eye(len(y), dtype=bool)
    gap = np.where(others, np.abs(y[:, None] - y[None]), np.inf)
    distance = ((content[:, None] - content[None]) ** 2).sum(-1)
    farthest = np.where(gap < tol, distance, -np.inf).argmax(1)
    return np.where((gap < tol).any(1), farthest, gap.argmin(1))


@torch.no_grad()
def nuisance_reliance(model: QualityModel, x: np.ndarray, quality_channels: int, seed: int = 0) -> float:
    """Mean absolute change of the predictions when the content block (the channels after the first
    ``quality_channels``) is permuted across images, over the standard deviation of the predictions."""
    model.eval()
    permuted = x.copy()
    permuted[..., quality_channels:] = x[np.random.default_rng(seed).permutation(len(x))][..., quality_channels:]
    clean = model(torch.from_numpy(x[:, 0]))
    return float((model(torch.from_numpy(permuted[:, 0])) - clean).abs().mean() / clean.std())


LOSS_KEYS = ("eps", "adv_weight", "sens_weight", "noise_form", "sens_target")


def nuisance_experiment(seed: int, head: str, matching: dict, loss: str, regime: str = "nuisance") -> dict[str, dict]:
    """Baseline and matching students on one synthetic draw of ``regime``: model -> {reliance, srcc} on the test
    images. ``matching`` holds the semantic-noise settings (``LOSS_KEYS`` of a ``student.matching`` config; others
    are ignored). Each model is initialised from ``seed``, whatever ran before."""
    x, y, content = nuisance_tokens(seed, regime)
    x_test, y_test, _ = nuisance_tokens(seed + 1000, regime, test=True)
    if head != "decoder":  # pooled heads read the token mean
        x, x_test = x.mean(2), x_test.mean(2)
    matching = {k: matching[k] for k in LOSS_KEYS}
    out = {}
    for name, settings in [("baseline", {}), ("matching", matching)]:
        tokens = {"tokens": x.shape[2], "heads": 2, "depth": 1, "query": "learned", "queries": 1,
                  "mlp_ratio": 2} if head == "decoder" else {}
        torch.manual_seed(seed)
        model = QualityModel(x.shape[-1], head=head, hidden=16, dropout=0.0, **tokens)
        cfg = train.TrainConfig(epochs=30, lr=3e-3, weight_decay=0.0, batch_size=32, loss=loss, seed=seed,
                                **settings)
        train.train(model, x, y, cfg, partners=farthest_matched(y, content) if settings else None)
        pred = train.predict(model, x_test)
        out[name] = {"reliance": nuisance_reliance(model, x_test, REGIMES[regime].quality_channels),
                     "srcc": float(stats.spearmanr(pred, y_test)[0])}
    return out
