"""Gradient saliency: where a quality model looks, through the frozen backbone (the paper's Fig. 1).

The map of a crop is the *vanilla gradient* saliency (Simonyan et al., 2014): the absolute value of
d score / d pixel, pixels in [0, 1] before timm's mean/std normalisation, summed over the three colour
channels, Gaussian-smoothed and min-max normalised to [0, 1]. Only the input needs a gradient: the
backbone, descriptor and quality model stay frozen and no parameter gradient is accumulated.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from PIL import Image
from scipy import ndimage

from qfm_iqm.features.backbone import MultiScaleDescriptor, create_backbone, data_config
from qfm_iqm.features.extract import CropRecipe
from qfm_iqm.io import read_rgb
from qfm_iqm.method.model import QualityModel
from qfm_iqm.method.partial import partial_spec


def _to_tensor(img: Image.Image | np.ndarray) -> torch.Tensor:
    """(1, 3, H, W) float tensor in [0, 1]."""
    return torch.from_numpy(np.array(img, dtype=np.uint8, copy=True)).permute(2, 0, 1)[None].float() / 255.0


def centre_crop(image: Image.Image, recipe: CropRecipe) -> np.ndarray:
    """The centre crop of ``recipe.size`` (small images upscaled as ``CropRecipe`` does), or with a native input
    the native view, unmirrored; uint8 RGB."""
    crop = dataclasses.replace(recipe, n=1, flip=False).image_views(image.convert("RGB"), "")[0]
    return np.asarray(crop, dtype=np.uint8)


def normalise_map(grad: np.ndarray, smooth_sigma: float) -> np.ndarray:
    """Gaussian smoothing then min-max to [0, 1]; a constant map (e.g. zero gradient) becomes zeros."""
    grad = np.nan_to_num(grad.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if smooth_sigma > 0:
        grad = ndimage.gaussian_filter(grad, sigma=smooth_sigma, mode="nearest")
    lo, hi = float(grad.min()), float(grad.max())
    if not hi - lo > 1e-12 * max(1.0, abs(hi)):
        return np.zeros(grad.shape, dtype=np.float32)
    return ((grad - lo) / (hi - lo)).clip(0.0, 1.0).astype(np.float32)


def saliency(descriptor: torch.nn.Module, model: torch.nn.Module, image: Image.Image, recipe: CropRecipe,
             mean: torch.Tensor, std: torch.Tensor, smooth_sigma: float = 4.0) -> tuple[np.ndarray, np.ndarray, float]:
    """Vanilla-gradient saliency of ``model``'s score for the centre crop of ``image``; ``descriptor`` maps
    normalised pixels to the model's input (pooled statistics, or the cached bottom of a partial model).

    Returns (the centre crop, uint8 (size, size, 3); the map, float32 (size, size) in [0, 1], i.e.
    |d score / d pixel| summed over colour channels, smoothed with a Gaussian of ``smooth_sigma``
    pixels and min-max normalised; the model's score for that crop). With ``recipe.global_view``
    the whole image (native resolution) is described without gradient and joined after the crop's
    descriptor, so the map explains the local part only. ``mean``/``std`` are timm's normalisation
    (any shape holding three values). Works when called under ``torch.inference_mode``.
    """
    crop = centre_crop(image, recipe)
    # Leave inference mode (enable_grad alone does not) and copy the statistics: inference
    # tensors may not be saved for backward.
    with torch.inference_mode(False), torch.enable_grad():
        mean_t = torch.as_tensor(mean, dtype=torch.float32).detach().clone().reshape(1, 3, 1, 1)
        std_t = torch.as_tensor(std, dtype=torch.float32).detach().clone().reshape(1, 3, 1, 1)
        states = {m: m.training for net in (descriptor, model) for m in net.modules()}
        descriptor.eval()
        model.eval()
        try:
            x = _to_tensor(crop).requires_grad_(True)
            features = descriptor((x - mean_t) / std_t)
            if recipe.global_view:
                with torch.no_grad():
                    whole = descriptor((_to_tensor(image.convert("RGB")) - mean_t) / std_t)
                features = torch.cat([features, whole], dim=1)
            score = model(features).sum()
            if score.requires_grad:
                (grad,) = torch.autograd.grad(score, x, allow_unused=True)
            else:  # the score depends on no differentiable path at all
                grad = None
        finally:  # restore every module's own mode (a wrapper may be in train mode around an eval backbone)
            for module, training in states.items():
                module.training = training
    grad_map = np.zeros(crop.shape[:2]) if grad is None else grad[0].abs().sum(0).double().numpy()
    return crop, normalise_map(grad_map, smooth_sigma), float(score.detach())


def pick_images(rows: pd.DataFrame, n: int) -> pd.DataFrame:
    """``n`` of ``rows`` (all when fewer), evenly spaced in score from the worst to the best, worst first."""
    rows = rows.sort_values("score", ignore_index=True)
    return rows.iloc[np.linspace(0, len(rows) - 1, min(n, len(rows))).round().astype(int)]


def attention_maps(meta: pd.DataFrame, backbone: str, weights: str | Path, models: dict[str, QualityModel],
                   recipe: CropRecipe, smooth_sigma: float = 4.0) -> list[dict]:
    """Saliency of every model on the centre crop of every row of ``meta`` (image_id, path, score).

    One dict per row: image_id, score (ground truth), crop (uint8), maps {name: map},
    predictions {name: score of the crop}.
    """
    net = create_backbone(backbone, weights)
    cfg = data_config(net)
    net.requires_grad_(False)
    describers = {name: partial.cut(copy.deepcopy(net))[0] if (partial := partial_spec(model.spec)) is not None
                  else MultiScaleDescriptor(net, recipe.stages, recipe.pooling) for name, model in models.items()}  # a cut takes a ViT apart
    mean, std = torch.tensor(cfg["mean"]), torch.tensor(cfg["std"])
    items = []
    for row in meta.itertuples(index=False):
        image = read_rgb(row.path)
        item = {"image_id": str(row.image_id), "score": float(row.score), "crop": None, "maps": {},
                "predictions": {}}
        for name, model in models.items():
            crop, sal, pred = saliency(describers[name], model, image, recipe, mean, std, smooth_sigma)
            item["crop"], item["maps"][name], item["predictions"][name] = crop, sal, pred
        if item["crop"] is None:
            item["crop"] = centre_crop(image, recipe)
        items.append(item)
    return items


def attention_figure(items: list[dict], title: str, style: dict) -> plt.Figure:
    """Grid: a row per image; the crop (id, ground-truth score), then each model's map over it; a colour bar for
    the maps."""
    names = list(items[0]["maps"]) if items else []
    rows, cols = max(1, len(items)), 1 + len(names)
    w, h = style["figsize"]
    fig, axes = plt.subplots(rows, cols, figsize=(w / 2 * cols + 0.8, h / 2 * rows + 0.4), squeeze=False,
                             layout="constrained")
    for ax_row, item in zip(axes, items, strict=False):
        ax_row[0].imshow(item["crop"])
        ax_row[0].set_title(f"{item['image_id']}\nscore {item['score']:.3f}", fontsize="small")
        for ax, name in zip(ax_row[1:], names, strict=True):
            ax.imshow(item["crop"])
            overlay = ax.imshow(item["maps"][name], cmap="jet", alpha=0.5, vmin=0.0, vmax=1.0)
            ax.set_title(f"{name}\npred {item['predictions'][name]:.3f}", fontsize="small")
    for ax in axes.flat:
        ax.axis("off")
    if names:
        fig.colorbar(overlay, ax=axes.ravel().tolist(), shrink=0.8,
                     label="normalised gradient magnitude (min-max per map)")
    fig.suptitle(f"{title}: gradient saliency (|d score / d pixel|)")
    return fig
