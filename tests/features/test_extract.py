"""Multi-crop, multi-scale feature extraction: crops, the input pipeline's workers, compile, precision and
bad images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import write_image
from PIL import Image

from qfm_iqm.features.backbone import create_backbone
from qfm_iqm.features.cache import FeatureSet
from qfm_iqm.features.extract import (
    CropRecipe,
    compiler_available,
    describe_crops,
    extract,
    native_batch_pixels,
    pooled_describer,
)
from qfm_iqm.io import InputError


def test_crop_recipe_is_deterministic_and_upscales_small_images() -> None:
    img = Image.new("RGB", (100, 60))
    crops = CropRecipe(n=3, size=64, seed=0).crops(img, "a")
    assert [c.size for c in crops] == [(64, 64)] * 3
    again = CropRecipe(n=3, size=64, seed=0).crops(Image.new("RGB", (100, 60)), "a")
    assert [c.getbbox() for c in crops] == [c.getbbox() for c in again]
    assert len(CropRecipe(n=1, size=32).crops(img, "a")) == 1


def test_extract_gives_multiscale_features_per_crop(lite0: Path, tmp_path: Path) -> None:
    paths = [write_image(tmp_path / f"{i}.png", (96, 80), i) for i in range(3)]
    meta = pd.DataFrame({"image_id": ["a", "b", "c"], "path": [str(p) for p in paths]})
    feats, stats = extract(meta, "tf_efficientnet_lite0", lite0, CropRecipe(n=2, size=64), batch_size=4,
                           precision="fp32")
    assert feats.features.shape == (3, 2, sum(feats.block_sizes))
    assert feats.block_sizes == [16, 16, 24, 24, 40, 40, 112, 112, 320, 320, 1280]
    assert stats["images"] == 3 and stats["crops"] == 6 and stats["forward_crops_per_s"] > 0
    assert (feats.block("stage0_std") >= 0).all()
    feats.save(tmp_path / "f.npz")
    loaded = FeatureSet.load(tmp_path / "f.npz").subset(pd.Series(["c", "a"]))
    np.testing.assert_array_equal(loaded.features, feats.features[[2, 0]])
    assert loaded.semantic().shape == (2, 1280)
    both, _ = extract(meta, "tf_efficientnet_lite0", lite0, CropRecipe(n=2, size=64, global_view=True), batch_size=4,
                      precision="fp32")
    np.testing.assert_allclose(both.features[..., : feats.features.shape[-1]], feats.features, rtol=1e-4, atol=1e-5)
    whole = both.block("global_final_mean")
    assert both.block_names[-1] == "global_final_mean" and whole.shape == (3, 2, 1280)
    np.testing.assert_array_equal(whole[:, 0], whole[:, 1])  # one whole-image view, joined to every crop
    assert not np.allclose(whole[:, 0], feats.block("final_mean")[:, 0], atol=1e-3)


@pytest.mark.slow  # worker processes and torch.compile
def test_the_input_pipeline_gives_the_same_features_whatever_its_workers_and_compile(
        lite0: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = [write_image(tmp_path / f"{i}.png", (96 + 8 * i, 80), i) for i in range(5)]
    meta = pd.DataFrame({"image_id": list("abcde"), "path": [str(p) for p in paths]})
    describer, _, _ = pooled_describer(create_backbone("tf_efficientnet_lite0", lite0), CropRecipe(n=2, size=64),
                                      precision="fp32")
    here, _ = describe_crops(describer, meta, batch_size=4, workers=0)
    apart, stats2 = describe_crops(describer, meta, batch_size=4, workers=2)  # 3 batches, the last one short
    np.testing.assert_array_equal(here, apart)
    assert stats2["workers"] == 2 and 0 <= stats2["data_wait"] < 1 and not stats2["compiled"]

    def broken(module: torch.nn.Module, **kwargs: object) -> object:
        def fails(*args: object) -> None:
            raise RuntimeError("no compiler")
        return fails

    monkeypatch.setattr(torch, "compile", broken)
    monkeypatch.setattr("qfm_iqm.features.extract.compiler_available", lambda: True)
    fallback, stats3 = describe_crops(describer, meta, batch_size=4, compile=True)
    np.testing.assert_array_equal(fallback, here)  # the compiler failed: eager, the same features
    assert not stats3["compiled"]


@pytest.mark.slow  # torch.compile
@pytest.mark.skipif(not compiler_available(), reason="torch.compile needs a C++ compiler")
def test_compiled_extraction_matches_eager_within_float_tolerance(lite0: Path, tmp_path: Path) -> None:
    paths = [write_image(tmp_path / f"{i}.png", (96, 80), i) for i in range(3)]
    meta = pd.DataFrame({"image_id": list("abc"), "path": [str(p) for p in paths]})
    describer, _, _ = pooled_describer(create_backbone("tf_efficientnet_lite0", lite0), CropRecipe(n=2, size=64),
                                      precision="fp32")
    eager, _ = describe_crops(describer, meta, batch_size=4, workers=0)
    compiled, stats = describe_crops(describer, meta, batch_size=4, compile=True, workers=0)  # pads the last batch
    assert stats["compiled"] and compiled.shape == eager.shape
    np.testing.assert_allclose(compiled, eager, rtol=1e-4, atol=1e-4)


def test_bf16_extraction_stays_within_bfloat16_resolution_of_fp32(lite0: Path, tmp_path: Path) -> None:
    """``backbone.precision: bf16`` runs the frozen forward under bfloat16 autocast: the pooled features differ
    from fp32's by the rounding bfloat16 accumulates over the network (measured on noise images: correlation
    0.9998, median relative error 2.2% of the entries above 0.1)."""
    paths = [write_image(tmp_path / f"{i}.png", (96, 80), i) for i in range(3)]
    meta = pd.DataFrame({"image_id": list("abc"), "path": [str(p) for p in paths]})
    feats = {}
    for precision in ("fp32", "bf16"):
        fs, stats = extract(meta, "tf_efficientnet_lite0", lite0, CropRecipe(n=2, size=64), 4, workers=0,
                            precision=precision)
        assert stats["precision"] == precision and fs.features.dtype == np.float32
        feats[precision] = fs.features.ravel()
    assert not np.array_equal(feats["fp32"], feats["bf16"])  # bf16 really ran
    assert np.corrcoef(feats["fp32"], feats["bf16"])[0, 1] >= 0.999
    big = np.abs(feats["fp32"]) > 0.1
    assert np.median(np.abs(feats["bf16"] - feats["fp32"])[big] / np.abs(feats["fp32"])[big]) <= 0.05
    with pytest.raises(KeyError, match="unknown precision 'fp16'"):
        extract(meta, "tf_efficientnet_lite0", lite0, CropRecipe(n=2, size=64), precision="fp16")


def test_extract_names_a_corrupt_image(lite0: Path, tmp_path: Path) -> None:
    good = write_image(tmp_path / "good.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(good.read_bytes()[:100])
    meta = pd.DataFrame({"image_id": ["g", "b"], "path": [str(good), str(bad)]})
    with pytest.raises(InputError, match=r"corrupt or unreadable image: .*bad.png"):
        extract(meta, "tf_efficientnet_lite0", lite0, CropRecipe(n=1, size=32), precision="fp32")


def test_a_native_view_is_the_whole_image_capped_with_its_mirror() -> None:
    recipe = CropRecipe(n=5, size=64, input="native", max_side=100, flip=True)
    img = Image.fromarray(np.arange(200 * 150 * 3, dtype=np.uint8).reshape(150, 200, 3))
    views = recipe.image_views(img, "a")
    assert recipe.views == 2 and [v.size for v in views] == [(100, 75), (100, 75)]  # longer side capped, aspect kept
    np.testing.assert_array_equal(np.asarray(views[1]), np.asarray(views[0])[:, ::-1])
    assert CropRecipe(1, 64, input="native").image_views(img, "a")[0] is img  # under the cap: untouched
    assert CropRecipe(1, 64, input="native").native_size(4, 1) == (128, 32)  # a tiny side is raised to MIN_SIDE
    assert CropRecipe(n=3, size=32, flip=True).views == 6
    with pytest.raises(InputError, match="crops.input"):
        CropRecipe(1, 64, input="whole")
    with pytest.raises(InputError, match="global_view"):
        CropRecipe(1, 64, input="native", global_view=True)


def test_native_views_of_mixed_sizes_come_back_in_order_and_equal_one_image_alone(lite0: Path, tmp_path: Path) -> None:
    sizes = [(96, 80), (64, 120), (96, 80), (300, 40), (96, 80)]
    paths = [write_image(tmp_path / f"{i}.png", size, i) for i, size in enumerate(sizes)]
    meta = pd.DataFrame({"image_id": list("abcde"), "path": [str(p) for p in paths]})
    recipe = CropRecipe(n=5, size=32, input="native", max_side=128, flip=True, stages=[1, 3], pooling="mean")
    describer, names, block_sizes = pooled_describer(create_backbone("tf_efficientnet_lite0", lite0), recipe,
                                                     precision="fp32")
    assert names == ["stage1_mean", "stage3_mean", "final_mean"] and block_sizes == [24, 112, 1280]
    assert native_batch_pixels("cpu", 8, 32) == 0 and native_batch_pixels("cuda", 8, 32) == 8 * 32 * 32
    rows, stats = describe_crops(describer, meta, batch_size=8, workers=0,
                                 batch_pixels=2 * 2 * 96 * 80)  # 2 same-size images (2 views each) per forward
    assert rows.shape == (5, 2, 1416) and stats["input"] == "native"
    for i in range(5):
        alone, _ = describe_crops(describer, meta.iloc[[i]], batch_size=8, workers=0)
        np.testing.assert_allclose(alone[0], rows[i], rtol=1e-4, atol=1e-5)
    assert not np.allclose(rows[0, 0], rows[0, 1], atol=1e-4)  # the mirror is a second view


@pytest.mark.parametrize(("stages", "pooling", "message"), [([7], "mean", r"\[7\] are not stage indices"),
                                                            ("last", "mean", "neither 'all'"),
                                                            ("all", "max", "crops.pooling")])
def test_unknown_stages_and_pooling_name_the_key(stages: object, pooling: str, message: str) -> None:
    from qfm_iqm.features.backbone import MultiScaleDescriptor

    with pytest.raises(InputError, match=message):
        MultiScaleDescriptor(create_backbone("tf_efficientnet_lite0", "none"), stages, pooling)


def test_a_wider_cache_narrows_to_the_features_of_fewer_stages_statistics_and_views(lite0: Path,
                                                                                     tmp_path: Path) -> None:
    from qfm_iqm.features.cache import narrowed

    paths = [write_image(tmp_path / f"{i}.png", (96, 80), i) for i in range(2)]
    meta = pd.DataFrame({"image_id": ["a", "b"], "path": [str(p) for p in paths]})
    wide = {"n": 2, "size": 64, "seed": 0, "global_view": False, "input": "native", "max_side": 64, "flip": True,
            "stages": "all", "pooling": "mean_std"}
    want = {**wide, "flip": False, "stages": [2, 4], "pooling": "mean"}
    have, _ = extract(meta, "tf_efficientnet_lite0", lite0, CropRecipe(**wide), precision="fp32")
    direct, _ = extract(meta, "tf_efficientnet_lite0", lite0, CropRecipe(**want), precision="fp32")
    cut = narrowed(have, wide, want)
    assert cut.block_names == direct.block_names and cut.block_sizes == direct.block_sizes
    np.testing.assert_allclose(cut.features, direct.features, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="do not hold"):
        narrowed(direct, want, wide)
    with pytest.raises(ValueError, match="do not hold"):
        narrowed(have, wide, {**want, "max_side": 32})
