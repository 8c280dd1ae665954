"""Semantic-noise sensitivity: the quantity QFM-IQM claims to reduce.

On the test part of a split, every image gets a quality-matched, semantically farthest partner
(mined within the test part by ground-truth score, as the paper's argument is about the data, not
the model). A model's sensitivity is how far its prediction moves when ``eps`` x the partner's
features are added to the image's own (crop by crop: the paper's additive probe; the probe of a student's
training noise uses its ``noise_form`` instead), relative to the spread of its clean predictions; and the
paper's observation statistic is recomputed in the space the model's head sees (standardised, gated
features): how often an image's nearest neighbour there differs in quality by more than ``large_gap``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from scipy import stats

from qfm_iqm.method import pairs
from qfm_iqm.method.model import QualityModel

if TYPE_CHECKING:
    from qfm_iqm.features.extract import CropRecipe
    from qfm_iqm.method.finetune import FinetuneModel

ADDITIVE = "add"  # the paper's probe: z + eps z_partner, whatever form a model was trained with
PROBE_PARTNER = "farthest"  # the probe's partner: quality-matched, semantically farthest (the paper's)


@torch.inference_mode()
def encode(model: QualityModel, x: np.ndarray) -> torch.Tensor:
    """What the quality model of ``model`` reads for (images, crops, ...) inputs ``x``: the features, or the
    tokens of a trained backbone top (computed once, then shared by every noise level)."""
    model.eval()
    return model.encode(torch.from_numpy(x).float())


@torch.inference_mode()
def sensitivity(model: QualityModel, x: np.ndarray | None, score: np.ndarray, partners: np.ndarray, eps: float,
                large_gap: float, feats: torch.Tensor | None, form: str) -> dict[str, float | str]:
    """Prediction shift under matched semantic noise of strength ``eps`` and ``form`` (``QualityModel.score``: "add",
    the paper's superposition, or "mix") and the observation statistic, for one model.

    ``x``: (images, crops, ...) test inputs of ``model`` (pooled features, or cached activations for a
    model with a trained backbone top), or their ``encode``-d ``feats``; ``partners``: each image's
    partner row in ``x``.
    """
    feats = encode(model, x) if feats is None else feats
    model.eval()
    clean = model.score(feats).mean(1).numpy()
    noisy = model.score(feats, feats[partners], eps, form).mean(1).numpy()
    shift = np.abs(noisy - clean)
    rep = model.represent(feats).mean(1).numpy()
    observed, _ = pairs.observation(score, rep, large_gap, n_random=1, seed=0)
    return {"eps": eps, "form": form, "mean_abs_shift": float(shift.mean()),
            "relative_shift": float(shift.mean() / max(clean.std(), 1e-12)),
            "srcc_clean": float(stats.spearmanr(score, clean).statistic),
            "srcc_noisy": float(stats.spearmanr(score, noisy).statistic),
            "nn_fraction_large_gap": observed["nn_fraction_large_gap"]}


def matched_partners(ids: np.ndarray, score: np.ndarray, semantic: np.ndarray, tau: float, k_fallback: int) -> np.ndarray:
    """Each test image's quality-matched (within ``tau``), semantically farthest partner row in the test part."""
    matched = pairs.mine_pairs(ids, score, semantic, ids, score, semantic, tau, k_fallback, PROBE_PARTNER)
    return pd.Index(ids).get_indexer(matched["partner_id"])


def sweep(models: dict[str, QualityModel], x: dict[str, np.ndarray], score: np.ndarray, ids: np.ndarray,
          semantic: np.ndarray, taus: list[float], epss: list[float], k_fallback: int, large_gap: float) -> pd.DataFrame:
    """``sensitivity`` of every model (on its own input ``x[name]``) to the paper's probe (``ADDITIVE``) for every
    (tau, eps): partners mined once per tau, each model's input encoded once."""
    partners = {tau: matched_partners(ids, score, semantic, tau, k_fallback) for tau in taus}
    rows = {}
    for name, model in models.items():  # one model's encoded inputs in memory at a time
        feats = encode(model, x[name])
        rows.update({(tau, name, eps): {"model": name, "tau": tau, **sensitivity(model, x[name], score, partners[tau],
                                                                                  eps, large_gap, feats, ADDITIVE)}
                     for tau in taus for eps in epss})
    return pd.DataFrame([rows[(tau, name, eps)] for tau in taus for name in models for eps in epss])


@torch.inference_mode()
def observation_spaces(model: QualityModel, x: np.ndarray, score: np.ndarray, large_gap: float, n_random: int,
                       seed: int) -> dict[str, tuple[dict, pd.DataFrame]]:
    """The paper's observation (``pairs.observation``: statistics and a sample of pairs) of images with scores
    ``score`` in the two spaces a student's head may see, from ``model``'s inputs ``x``: standardised features (the
    baseline's head input) and gated ones (the full student's)."""
    xt = torch.from_numpy(x).float()
    spaces = {"standardised (baseline head's input)": model.representation(xt, gated=False).mean(1),
              "QFM-gated (full student's head input)": model.representation(xt).mean(1)}
    return {name: pairs.observation(score, z.numpy(), large_gap, n_random, seed) for name, z in spaces.items()}


@torch.inference_mode()
def noise_sensitivity(model: FinetuneModel, meta: pd.DataFrame, recipe: CropRecipe, partners: np.ndarray,
                      probes: dict[str, dict], large_gap: float, batch_size: int = 32,
                      device: str = "cpu") -> pd.DataFrame:
    """``sensitivity`` of a fine-tuned model (``qfm_iqm.method.finetune``) on the images ``meta`` (image_id, path,
    score), crop by crop of ``recipe``: each image's descriptor (or tokens) with its partner's (row ``partners``) under
    each of ``probes`` (name -> eps, form); one row per probe. What the quality model reads is encoded once, on
    ``device``, ``batch_size`` crops at a time; the probes score it on the CPU."""
    from qfm_iqm.method.finetune import over_crops, resolve_device  # timm: only fine-tune mode's jobs pay for it

    device = resolve_device(str(device))
    model.eval().to(device)
    x = over_crops(model.features, meta, recipe, batch_size, device).float()
    feats = torch.cat([model.quality.encode(x[i: i + batch_size]).float().cpu() for i in range(0, len(x), batch_size)])
    feats = feats.reshape(len(meta), recipe.n, *feats.shape[1:])
    quality = model.quality.cpu()
    rows = [{"probe": name, **sensitivity(quality, None, meta["score"].to_numpy(), partners, probe["eps"], large_gap,
                                          feats, probe["form"])} for name, probe in probes.items()]
    return pd.DataFrame(rows)
