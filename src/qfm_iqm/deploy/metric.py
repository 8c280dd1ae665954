"""pyiqa's door to the models: ``create_metric(name)`` returns an ``nn.Module`` (images in, a tensor of scores out)
with ``lower_better`` and ``score_range``, ``list_models()`` names the shipped ones, and ``as_loss=True`` keeps the
gradient with respect to the input pixels.

Without ``as_loss`` the metric is the ``Scorer`` (``qfm_iqm.deploy.scorer``): the same numbers as ``qfm-iqm score``.
With it, an (N, 3, H, W) or (3, H, W) float tensor in [0, 1] goes through the model's views in torch, so that a loss
built on the scores back-propagates to the pixels; it needs a model on whole-image views (``crops.input: native``, as
the shipped models are), and its scores are unclipped (the model's raw output mapped onto the scale).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from qfm_iqm.deploy.bundle import Bundle, shipped_names
from qfm_iqm.deploy.scorer import ImageLike, Scorer
from qfm_iqm.features.extract import NATIVE_FILTER
from qfm_iqm.io import InputError

SCALES = ("mos", "unit")  # the training dataset's MOS scale; [0, 1], 1 = best
REDUCTIONS = ("mean", "sum", "none")


def list_models() -> list[str]:
    """The names of the shipped models, for ``create_metric`` and ``qfm-iqm score --model``."""
    return shipped_names()


class QualityMetric(nn.Module):
    """One model as a no-reference metric: ``metric(images)`` -> a float tensor of one score per image, on
    ``scale`` (``SCALES``); ``lower_better`` and ``score_range`` describe that scale. Images: a path, a PIL image, an
    array, a (3, H, W) or (N, 3, H, W) tensor in [0, 1], or a list of them. With ``as_loss`` the output keeps its
    gradient (tensors only) and is reduced by ``loss_reduction`` and scaled by ``loss_weight``, as pyiqa's losses."""

    def __init__(self, model: str | os.PathLike = "livec", device: str = "cpu", as_loss: bool = False,
                 loss_weight: float = 1.0, loss_reduction: str = "mean", scale: str = "mos", batch_size: int = 40,
                 compile: str = "auto") -> None:
        super().__init__()
        if scale not in SCALES:
            raise InputError(f"scale: {scale!r} is not one of {SCALES}")
        if loss_reduction not in REDUCTIONS:
            raise InputError(f"loss_reduction: {loss_reduction!r} is not one of {REDUCTIONS}")
        self.scorer = Scorer(Bundle.open(model), device, batch_size, compile)
        self.name, self.scale, self.as_loss = self.scorer.bundle.name, scale, as_loss
        self.loss_weight, self.loss_reduction = loss_weight, loss_reduction
        self.net, self.backbone = self.scorer.model, self.scorer.describer.module  # parameters, train()/eval()
        self.eval().requires_grad_(False)  # a metric, not a model to train: gradients reach the input only
        low, high = (self.scorer.low, self.scorer.high) if scale == "mos" else (0.0, 1.0)
        self.score_range = (float(low), float(high))
        self.lower_better = scale == "mos" and not self.scorer.higher_is_better
        if as_loss:
            self._check_differentiable()

    def forward(self, images: ImageLike | Sequence[ImageLike]) -> torch.Tensor:
        if not self.as_loss:
            scores = self.scorer(images, scale=self.scale)
            return torch.as_tensor(scores, dtype=torch.float32).reshape(-1)
        if not isinstance(images, torch.Tensor) or images.ndim not in (3, 4) or images.shape[-3] != 3:
            raise InputError("as_loss=True takes a (3, H, W) or (N, 3, H, W) float tensor in [0, 1]")
        batch = images[None] if images.ndim == 3 else images
        raw = torch.stack([self._raw(image) for image in batch])
        scores = raw if self.scale == "unit" else self.scorer.mos(raw)
        scores = {"mean": scores.mean, "sum": scores.sum, "none": lambda: scores}[self.loss_reduction]()
        return self.loss_weight * scores

    def extra_repr(self) -> str:
        return (f"name={self.name!r}, scale={self.scale!r}, score_range={self.score_range}, "
                f"lower_better={self.lower_better}, as_loss={self.as_loss}")

    def _check_differentiable(self) -> None:
        recipe = self.scorer.describer.recipe
        if not recipe.native or recipe.global_view or "partial" in self.scorer.model.spec:
            raise InputError(f"{self.name}: as_loss=True needs a model on whole-image views (crops.input: native, "
                             "no global view, pooled features); this one uses "
                             f"{'a partial backbone' if 'partial' in self.scorer.model.spec else 'random crops'}")

    def _raw(self, image: torch.Tensor) -> torch.Tensor:
        """The model's unclipped output for one (3, H, W) image in [0, 1], differentiable: the recipe's whole view
        (resized as ``CropRecipe.native_size`` says) and its mirror, through the backbone and the head."""
        describer = self.scorer.describer
        recipe, prepare = describer.recipe, describer.prepare
        x = image[None].float().to(self.scorer.device)
        width, height = recipe.native_size(x.shape[-1], x.shape[-2])
        if (width, height) != (x.shape[-1], x.shape[-2]):
            x = F.interpolate(x, size=(height, width), mode=NATIVE_FILTER.name.lower(), antialias=True)
        if recipe.flip:
            x = torch.cat([x, x.flip(-1)])
        mean, std = (torch.tensor(v, device=x.device).view(1, 3, 1, 1) for v in (prepare.mean, prepare.std))
        rows = self.backbone((x - mean) / std)
        return self.net(rows[None].float()).mean()


def create_metric(model: str | Path = "livec", device: str = "cpu", as_loss: bool = False,
                  **kwargs: object) -> QualityMetric:
    """A shipped model by name (``list_models()``) or a bundle folder as a ``QualityMetric`` (an ``nn.Module``), as
    ``pyiqa.create_metric``; ``kwargs``: ``QualityMetric``'s."""
    return QualityMetric(model, device, as_loss, **kwargs)
