"""Gradient saliency through the frozen backbone, and the attention figure (random weights: plumbing)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import write_image
from PIL import Image

from qfm_iqm.evaluation.attention import attention_figure, attention_maps, saliency
from qfm_iqm.evaluation.figures import save
from qfm_iqm.features.backbone import MultiScaleDescriptor, create_backbone, data_config
from qfm_iqm.features.extract import CropRecipe
from qfm_iqm.io import read_rgb
from qfm_iqm.method.model import QualityModel

SIZE = 64
RECIPE = CropRecipe(n=1, size=SIZE)


@pytest.fixture(scope="module")
def descriptor() -> MultiScaleDescriptor:
    torch.manual_seed(0)
    return MultiScaleDescriptor(create_backbone("tf_efficientnet_lite0", "none"))


@pytest.fixture(scope="module")
def norm(descriptor: MultiScaleDescriptor) -> tuple[torch.Tensor, torch.Tensor]:
    cfg = data_config(descriptor.backbone)
    return torch.tensor(cfg["mean"]), torch.tensor(cfg["std"])


def _models(dim: int) -> dict[str, QualityModel]:
    torch.manual_seed(1)
    arch = {"head": "mlp", "hidden": 16, "dropout": 0.1}
    return {"baseline": QualityModel(dim, **arch).eval(),
            "qfm": QualityModel(dim, **arch, gate=True, gate_reduction=8).eval()}


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (72, 90, 3), dtype=np.uint8)),   # larger than the crop
            Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8))]   # smaller: upscaled


def _predict(descriptor: MultiScaleDescriptor, model: QualityModel, crop: np.ndarray, norm, whole=None) -> float:
    mean, std = (t.view(1, 3, 1, 1) for t in norm)

    def describe(arr: np.ndarray) -> torch.Tensor:
        return descriptor((torch.from_numpy(np.array(arr)).permute(2, 0, 1)[None].float() / 255.0 - mean) / std)

    with torch.no_grad():
        feats = describe(crop)
        if whole is not None:
            feats = torch.cat([feats, describe(np.asarray(whole))], dim=1)
        return float(model(feats))


def test_saliency_shapes_range_and_predictions(descriptor, norm) -> None:
    dim = sum(descriptor.block_sizes)
    for image in _images():
        for model in _models(dim).values():
            with torch.inference_mode():  # the caller's mode must not break the gradient
                crop, sal, pred = saliency(descriptor, model, image, RECIPE, *norm)
            assert crop.shape == (SIZE, SIZE, 3) and crop.dtype == np.uint8
            assert np.array_equal(crop, np.asarray(RECIPE.crops(image, "")[0]))  # same crop and upscaling
            assert sal.shape == (SIZE, SIZE) and np.isfinite(sal).all()
            assert sal.min() == pytest.approx(0.0) and sal.max() == pytest.approx(1.0)
            assert np.isfinite(pred) and pred == pytest.approx(_predict(descriptor, model, crop, norm), abs=1e-4)
    assert all(p.grad is None for p in descriptor.parameters())  # no parameter gradient accumulated
    assert not descriptor.backbone.training  # each module's mode restored (the wrapper itself is in train mode)


def test_map_is_the_input_gradient(descriptor, norm) -> None:
    """Unsmoothed map = normalised sum over channels of |d score / d pixel|, and it ranks real sensitivity."""
    model = _models(sum(descriptor.block_sizes))["qfm"]
    image = _images()[0]
    crop, sal, _ = saliency(descriptor, model, image, RECIPE, *norm, smooth_sigma=0.0)
    mean, std = (t.view(1, 3, 1, 1) for t in norm)
    x = (torch.from_numpy(crop.copy()).permute(2, 0, 1)[None].float() / 255.0).requires_grad_(True)

    def score(inp: torch.Tensor) -> torch.Tensor:
        return model(descriptor((inp - mean) / std)).sum()

    (grad,) = torch.autograd.grad(score(x), x)
    ref = grad[0].abs().sum(0).numpy()
    assert np.allclose(sal, (ref - ref.min()) / (ref.max() - ref.min()), atol=1e-5)
    # finite differences: nudging the most salient 8x8 block along the gradient's sign moves the score
    # by about eps * sum |grad| there, and much more than nudging the least salient block
    blocks = sal.reshape(8, 8, 8, 8).mean((1, 3))
    eps, moves = 1e-3, []
    for flat in (int(blocks.argmax()), int(blocks.argmin())):
        r, c = divmod(flat, 8)
        step = torch.zeros_like(x)
        step[..., 8 * r: 8 * r + 8, 8 * c: 8 * c + 8] = eps * grad.sign()[..., 8 * r: 8 * r + 8, 8 * c: 8 * c + 8]
        with torch.no_grad():
            moves.append(float(score(x + step) - score(x - step)) / 2)
        if flat == int(blocks.argmax()):
            expected = eps * float(ref[8 * r: 8 * r + 8, 8 * c: 8 * c + 8].sum())
            assert moves[0] == pytest.approx(expected, rel=0.2)
    assert moves[0] > 2 * abs(moves[1])


def test_maps_depend_on_model_and_image_and_degenerate_gradient_is_safe(descriptor, norm) -> None:
    models = _models(sum(descriptor.block_sizes))
    images = _images()
    maps = {(m, i): saliency(descriptor, model, img, RECIPE, *norm)[1]
            for m, model in models.items() for i, img in enumerate(images)}
    assert np.array_equal(maps["qfm", 0], saliency(descriptor, models["qfm"], images[0], RECIPE, *norm)[1])
    assert not np.allclose(maps["baseline", 0], maps["qfm", 0], atol=1e-3)
    assert not np.allclose(maps["qfm", 0], maps["qfm", 1], atol=1e-3)
    # a head that ignores its input: zero gradient -> an all-zero map, no NaN, the bias as score
    blind = QualityModel(sum(descriptor.block_sizes), head="linear", hidden=512, dropout=0.1).eval()
    with torch.no_grad():
        blind.head[1].weight.zero_()
        blind.head[1].bias.fill_(0.5)
    _, sal, pred = saliency(descriptor, blind, images[0], RECIPE, *norm)
    assert np.array_equal(sal, np.zeros((SIZE, SIZE), dtype=np.float32)) and pred == pytest.approx(0.5)
    # a constant image is handled too
    _, sal, pred = saliency(descriptor, models["baseline"], Image.new("RGB", (SIZE, SIZE), (90, 90, 90)),
                            RECIPE, *norm)
    assert np.isfinite(sal).all() and np.isfinite(pred) and 0.0 <= sal.min() <= sal.max() <= 1.0


def test_global_view_joins_the_whole_image(descriptor, norm) -> None:
    recipe = CropRecipe(n=3, size=SIZE, global_view=True)  # n is irrelevant: the centre crop is explained
    models = _models(2 * sum(descriptor.block_sizes))
    for image in _images():
        for model in models.values():
            crop, sal, pred = saliency(descriptor, model, image, recipe, *norm)
            assert crop.shape == (SIZE, SIZE, 3) and sal.shape == (SIZE, SIZE) and 0 <= sal.min() <= sal.max() <= 1
            assert pred == pytest.approx(_predict(descriptor, model, crop, norm, whole=image), abs=1e-4)


def test_attention_maps_and_figure(descriptor, tmp_path: Path) -> None:
    paths = [tmp_path / "a.png", write_image(tmp_path / "b.png", size=(48, 40), seed=3)]
    _images()[0].save(paths[0])
    meta = pd.DataFrame({"image_id": ["a", "b"], "path": [str(p) for p in paths], "score": [0.25, 0.75]})
    models = _models(sum(descriptor.block_sizes))
    items = attention_maps(meta, "tf_efficientnet_lite0", "none", models, RECIPE)
    assert [it["image_id"] for it in items] == ["a", "b"] and [it["score"] for it in items] == [0.25, 0.75]
    for item, path in zip(items, paths, strict=True):
        assert np.array_equal(item["crop"], np.asarray(RECIPE.crops(read_rgb(path), "")[0]))
        assert set(item["maps"]) == set(item["predictions"]) == set(models)
        assert all(m.shape == (SIZE, SIZE) and 0 <= m.min() <= m.max() <= 1 for m in item["maps"].values())
        assert all(np.isfinite(p) for p in item["predictions"].values())
    fig = attention_figure(items, "tiny", {"figsize": [3.0, 3.0], "dpi": 30, "marker_size": 4})
    *panels, bar = fig.axes
    assert len(panels) == len(items) * (1 + len(models))
    assert bar.get_label() == "<colorbar>" and bar.get_ylabel() == "normalised gradient magnitude (min-max per map)"
    assert bar.get_ylim() == (0.0, 1.0)  # the maps' range
    assert fig.get_size_inches()[1] > 3.0  # grows with the rows
    assert "pred" in fig.axes[1].get_title() and "a" in fig.axes[0].get_title()
    out = tmp_path / "fig" / "attention.png"
    save(fig, [out], dpi=30)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_decoder_models_cut_at_different_blocks_of_one_vit_each_read_their_own_bottom(tmp_path: Path) -> None:
    """A cut takes a ViT apart: two decoder models over the same backbone, cut at different blocks, each get the bottom
    they were built on, so that each one's prediction is the same with or without the other."""
    from qfm_iqm.method.partial import PartialSpec, cut, with_top

    torch.manual_seed(0)
    weights = tmp_path / "test_vit.pth"
    torch.save(create_backbone("test_vit", "none").state_dict(), weights)
    arch = {"head": "decoder", "hidden": 16, "dropout": 0.0, "query": "cls", "heads": 2, "depth": 1, "queries": 2,
            "mlp_ratio": 2}
    models = {f"from{b}": with_top(cut(create_backbone("test_vit", weights), b)[1], "test_vit", PartialSpec(b, 0.1), arch,
                                   101 * 64, 0).eval() for b in (2, 4)}
    path = tmp_path / "a.png"
    _images()[0].save(path)
    meta = pd.DataFrame({"image_id": ["a"], "path": [str(path)], "score": [0.5]})
    recipe = CropRecipe(n=1, size=160)
    both = attention_maps(meta, "test_vit", weights, models, recipe)[0]["predictions"]
    for name, model in models.items():
        assert both[name] == pytest.approx(attention_maps(meta, "test_vit", weights, {name: model}, recipe)[0][
            "predictions"][name], abs=1e-6)
