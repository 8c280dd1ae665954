"""Dataset acquisition: distortions, the demo and pool builders, LIVEC and label-folder preparers."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import LIVEC_ROOT, needs_livec, write_image

from qfm_iqm.data import distortions
from qfm_iqm.data.livec import prepare_livec
from qfm_iqm.data.meta import META_COLUMNS, read_meta
from qfm_iqm.data.registry import prepare
from qfm_iqm.data.resize import resize_images
from qfm_iqm.data.synthetic import build_demo, build_pool
from qfm_iqm.io import InputError, read_rgb


def test_every_distortion_degrades_monotonically() -> None:
    rng = np.random.default_rng(0)
    img = np.clip(rng.normal(0.5, 0.2, (48, 48, 3)), 0, 1)
    for name in distortions.DISTORTIONS:
        errors = [np.abs(distortions.apply(name, img, lv, np.random.default_rng(1)) - img).mean()
                  for lv in range(1, distortions.MAX_LEVEL + 1)]
        out = distortions.apply(name, img, 3, np.random.default_rng(1))
        assert out.shape == img.shape and out.min() >= 0 and out.max() <= 1, name
        assert errors == sorted(errors) and errors[0] > 0, (name, errors)
    with pytest.raises(KeyError, match="unknown distortion 'nope'"):
        distortions.apply("nope", img, 1, rng)


def _digest(folder: Path) -> str:
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())).hexdigest()


def test_demo_dataset_is_deterministic_and_scored_by_ssim(tmp_path: Path) -> None:
    args = {"photos": ["astronaut", "chelsea"], "types": ["gaussian_blur", "jpeg"], "levels": 2, "short_side": 64,
            "seed": 0}
    meta = build_demo(tmp_path / "a/meta.csv", tmp_path / "a/images", **args)
    build_demo(tmp_path / "b/meta.csv", tmp_path / "b/images", **args)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert list(meta.columns) == META_COLUMNS and len(meta) == 2 * (1 + 2 * 2)
    pristine = meta[meta["distortion"] == "pristine"]
    assert np.allclose(pristine["score_raw"], 1.0) and np.allclose(pristine["score"], 1.0)
    assert meta["score"].min() == 0.0
    # stronger distortion, lower SSIM
    blur = meta[(meta["distortion"] == "gaussian_blur")].sort_values(["ref_id", "level"])
    assert (blur.groupby("ref_id")["score_raw"].diff().dropna() < 0).all()
    table = read_meta(tmp_path / "a/meta.csv")
    assert all(Path(p).is_file() for p in table["path"])


def test_pool_mixes_package_photos_and_image_folders(tmp_path: Path) -> None:
    write_image(tmp_path / "photos/p1.jpg", (90, 70), 1)
    write_image(tmp_path / "photos/p2.png", (70, 90), 2)
    meta = build_pool(tmp_path / "pool/meta.csv", tmp_path / "pool/images", ["flower", tmp_path / "photos"],
                      ["gaussian_noise", "contrast"], levels=3, per_image=2, short_side=48, seed=0)
    assert sorted(meta["ref_id"].unique()) == ["flower", "p1", "p2"]
    assert len(meta) == 6 and (meta["level"].between(1, 3)).all()
    assert "score" not in meta.columns


def test_labels_folder_prepares_scores(labelled_folder: Path, tmp_path: Path) -> None:
    meta = prepare("labels", tmp_path / "out/meta.csv", labels=labelled_folder / "labels.csv",
                   images=labelled_folder / "images", image_column="name", score_column="mos",
                   higher_is_better=False)
    assert meta["score_raw"].tolist() == [5, 15, 25, 35, 45, 55]
    assert meta["score"].tolist()[0] == 1.0 and meta["score"].tolist()[-1] == 0.0  # DMOS flipped
    assert (tmp_path / "out/meta.csv").is_file()


@pytest.mark.parametrize("breakage, message", [
    (lambda d: (d / "labels.csv").write_text("name,mos\nimg0.png,5\nimg1.png,good\n"),
     r"labels.csv, row 3: score 'good' in column 'mos' is not a number"),
    (lambda d: (d / "images/img3.png").unlink(), r"image not found: .*img3.png"),
])
def test_labels_folder_bad_input_names_the_culprit(labelled_folder: Path, tmp_path: Path, breakage,
                                                   message: str) -> None:
    breakage(labelled_folder)
    out = tmp_path / "out/meta.csv"
    with pytest.raises(InputError, match=message):
        prepare("labels", out, labels=labelled_folder / "labels.csv", images=labelled_folder / "images",
                image_column="name", score_column="mos", higher_is_better=True)
    assert not out.exists()


def test_corrupt_and_missing_images_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(write_image(tmp_path / "ok.jpg").read_bytes()[:200])
    with pytest.raises(InputError, match=r"corrupt or unreadable image: .*bad.jpg"):
        read_rgb(bad)
    with pytest.raises(InputError, match=r"image not found: .*gone.png"):
        read_rgb(tmp_path / "gone.png")


@needs_livec
def test_livec_release_loads_1162_test_images() -> None:
    meta = prepare_livec(LIVEC_ROOT, expected_count=1162)
    assert len(meta) == 1162 and meta["image_id"].is_unique
    assert not meta["image_id"].str.startswith("t").any()  # training images t1..t7 dropped
    assert 3.0 < meta["score_raw"].min() < 4.0 and 92.0 < meta["score_raw"].max() < 93.0
    assert meta["score"].min() == 0.0 and meta["score"].max() == 1.0
    suffixes = pd.Series([Path(p).suffix for p in meta["path"]]).value_counts()
    assert suffixes[".JPG"] == 627 and suffixes[".png"] == 1162 - 627  # .bmp names resolved by stem
    with pytest.raises(InputError, match="expected 1000 test images, found 1162"):
        prepare_livec(LIVEC_ROOT, expected_count=1000)


def test_resize_convention_writes_lossless_copies_only_where_needed(tmp_path: Path) -> None:
    paths = [write_image(tmp_path / "raw/a.jpg", (1024, 768), 0), write_image(tmp_path / "raw/b.jpg", (512, 384), 1),
             write_image(tmp_path / "raw/c.png", (600, 900), 2)]
    meta = pd.DataFrame({"image_id": ["a", "b", "c"], "path": [str(p) for p in paths]})
    out = tmp_path / "data/ds"
    fixed = resize_images(meta, out / "images", out / "meta.csv", threads=2, size=[512, 384])
    assert fixed["path"].tolist() == ["images/a.png", str(paths[1]), "images/c.png"]  # b is already 512x384
    assert [read_rgb(out / "images" / f).size for f in ("a.png", "c.png")] == [(512, 384), (512, 384)]
    short = resize_images(meta, out / "short", out / "meta.csv", short_side=512)
    assert read_rgb(out / short["path"][0]).size == (683, 512) and read_rgb(out / short["path"][2]).size == (512, 768)
    assert short["path"][1] == "short/b.png"  # 512x384 has a 384 short side: upscaled
