"""pyiqa's conventions: ``create_metric`` returns an ``nn.Module`` with ``lower_better`` and ``score_range``,
``list_models`` and ``qfm-iqm list`` name the shipped models, ``as_loss=True`` keeps the gradient."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_CROPS, make_bundle, write_image

import qfm_iqm
from qfm_iqm.deploy.cli import main
from qfm_iqm.deploy.scorer import load_model
from qfm_iqm.io import InputError

pytestmark = pytest.mark.slow
NATIVE = {**TINY_CROPS, "input": "native", "max_side": 96, "flip": True}


@pytest.fixture(scope="module")
def native_bundle(lite0: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("native"), lite0, NATIVE, seeds=2)


def test_the_shipped_model_is_a_module_with_pyiqas_attributes(capsys: pytest.CaptureFixture) -> None:
    metric = qfm_iqm.create_metric("livec")
    assert isinstance(metric, torch.nn.Module) and "livec" in qfm_iqm.list_models()
    assert metric.lower_better is False and metric.score_range == pytest.approx((3.42, 92.432), abs=1e-3)
    assert not any(p.requires_grad for p in metric.parameters()) and not metric.training
    assert main(["list"]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("livec\ttrained on livec (tf_efficientnet_lite0)")


def test_the_metric_scores_as_the_scorer_one_tensor_per_batch(native_bundle: Path, tmp_path: Path) -> None:
    paths = [write_image(tmp_path / f"i{i}.png", size, seed=i) for i, size in enumerate([(80, 60), (50, 120)])]
    metric = qfm_iqm.create_metric(native_bundle, scale="unit")
    scores = metric(paths)
    assert isinstance(scores, torch.Tensor) and scores.shape == (2,) and scores.dtype == torch.float32
    np.testing.assert_allclose(scores.numpy(), load_model(native_bundle)(paths, scale="unit"), atol=1e-6)
    assert metric.score_range == (0.0, 1.0) and metric.lower_better is False
    assert metric(paths[0]).shape == (1,)


def test_as_loss_keeps_the_gradient_and_the_score(native_bundle: Path, tmp_path: Path) -> None:
    image = torch.randint(0, 256, (2, 3, 72, 90)) / 255.0  # 8-bit, as the scorer reads in-memory images
    plain = qfm_iqm.create_metric(native_bundle)(image)
    loss = qfm_iqm.create_metric(native_bundle, as_loss=True, loss_reduction="none")
    pixels = image.clone().requires_grad_(True)
    scores = loss(pixels)
    assert scores.requires_grad and scores.shape == (2,)
    np.testing.assert_allclose(scores.detach().numpy(), plain.numpy(), atol=1e-4)  # as without gradients
    scores.sum().backward()
    assert pixels.grad is not None and pixels.grad.abs().sum() > 0
    large = torch.randint(0, 256, (1, 3, 150, 200)) / 255.0  # capped at 96 px: torch's resize, not Pillow's
    unit = qfm_iqm.create_metric(native_bundle, as_loss=True, scale="unit")(large)
    assert unit.item() == pytest.approx(qfm_iqm.create_metric(native_bundle, scale="unit")(large).item(), abs=0.01)
    mean = qfm_iqm.create_metric(native_bundle, as_loss=True, loss_weight=2.0)(image)
    assert mean.ndim == 0 and mean.item() == pytest.approx(2 * scores.mean().item(), rel=1e-5)


def test_as_loss_refuses_what_it_cannot_differentiate(native_bundle: Path, tiny_bundle: Path) -> None:
    with pytest.raises(InputError, match="as_loss=True needs a model on whole-image views"):
        qfm_iqm.create_metric(tiny_bundle, as_loss=True)  # random crops
    with pytest.raises(InputError, match=r"as_loss=True takes a \(3, H, W\) or \(N, 3, H, W\) float tensor"):
        qfm_iqm.create_metric(native_bundle, as_loss=True)(np.zeros((8, 8, 3)))
    with pytest.raises(InputError, match="scale: 'raw' is not one of"):
        qfm_iqm.create_metric(native_bundle, scale="raw")
