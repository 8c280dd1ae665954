"""The behavioural check of the semantic noise: does matching reduce reliance on a nuisance block?

Synthetic token sequences have two channel blocks. The quality block carries the label under
token noise, on training and test images alike. The nuisance block is a per-image content vector
(the same on every token) plus the label on the training images only; on test images it follows a
shuffled label, so a model that reads it is misled there. Each training image's partner is quality
matched (score gap below ``tol``) and, among those, farthest in content: the memory bank pairs of
QFM-IQM. ``nuisance_experiment`` trains a baseline and a matching student on the same data and
reports how far each one's test predictions move when the nuisance block is permuted across
images, over the spread of its predictions, and its test SRCC.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import stats

from qfm_iqm.method import train
from qfm_iqm.method.model import QualityModel


def nuisance_tokens(seed: int, images: int = 400, tokens: int = 4, block: int = 8, quality_noise: float = 1.0,
                    test: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images, 1 crop, tokens, 2 x block) tokens, their labels in [0, 1] and their content vectors."""
    rng = np.random.default_rng(seed)
    y = rng.uniform(size=images)
    content = rng.normal(size=(images, 1, block))
    follows = rng.permutation(y) if test else y
    quality = 2 * y[:, None, None] + quality_noise * rng.normal(size=(images, tokens, block))
    nuisance = content + 2 * follows[:, None, None] + 0.1 * rng.normal(size=(images, tokens, block))
    return np.concatenate([quality, nuisance], -1).astype(np.float32)[:, None], y, content[:, 0]


def farthest_matched(y: np.ndarray, content: np.ndarray, tol: float = 0.05) -> np.ndarray:
    """Per image, the other image within ``tol`` of its label that is farthest from it in content."""
    others = ~np.eye(len(y), dtype=bool)
    distance = ((content[:, None] - content[None]) ** 2).sum(-1)
    return np.where((np.abs(y[:, None] - y[None]) < tol) & others, distance, -np.inf).argmax(1)


@torch.no_grad()
def nuisance_reliance(model: QualityModel, x: np.ndarray, seed: int = 0) -> float:
    """Mean absolute change of the predictions when the nuisance block (the second half of the channels)
    is permuted across images, over the standard deviation of the predictions."""
    model.eval()
    permuted = x.copy()
    half = x.shape[-1] // 2
    permuted[..., half:] = x[np.random.default_rng(seed).permutation(len(x))][..., half:]
    clean = model(torch.from_numpy(x[:, 0]))
    return float((model(torch.from_numpy(permuted[:, 0])) - clean).abs().mean() / clean.std())


def nuisance_experiment(seed: int, head: str = "decoder", noise_form: str = "add", eps: float = 0.3,
                        adv_weight: float = 1.0, sens_weight: float = 0.5, epochs: int = 30,
                        sens_target: str = "detached") -> dict[str, dict]:
    """Baseline and matching students on one synthetic draw: model -> {reliance, srcc} on the test images. Each
    model is initialised from ``seed``, whatever ran before."""
    x, y, content = nuisance_tokens(seed)
    x_test, y_test, _ = nuisance_tokens(seed + 1000, test=True)
    if head != "decoder":  # pooled heads read the token mean
        x, x_test = x.mean(2), x_test.mean(2)
    matching = {"adv_weight": adv_weight, "sens_weight": sens_weight, "eps": eps, "noise_form": noise_form,
                "sens_target": sens_target}
    out = {}
    for name, settings in [("baseline", {}), ("matching", matching)]:
        tokens = {"tokens": x.shape[2], "heads": 2} if head == "decoder" else {}
        torch.manual_seed(seed)
        model = QualityModel(x.shape[-1], head=head, hidden=16, dropout=0.0, **tokens)
        cfg = train.TrainConfig(epochs=epochs, lr=3e-3, weight_decay=0.0, batch_size=32, loss="smooth_l1",
                                seed=seed, **settings)
        train.train(model, x, y, cfg, partners=farthest_matched(y, content) if settings else None)
        pred = train.predict(model, x_test)
        out[name] = {"reliance": nuisance_reliance(model, x_test), "srcc": float(stats.spearmanr(pred, y_test)[0])}
    return out
