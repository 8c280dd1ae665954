"""The scorer behind ``qfm_iqm.load_model``, on the tiny bundle made in-process (``conftest.tiny_bundle``) and
the tiny run's model: the pipeline's predictions, the training scale, every kind of in-memory image, messy files,
bounded memory, the compiler's fallback."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TINY_CROPS, photo_array, write_image
from PIL import Image
from workflow_helpers import export_split_bundle, split_images

from qfm_iqm import load_model
from qfm_iqm.deploy import bundle
from qfm_iqm.deploy.scorer import Scorer, content_id
from qfm_iqm.features.loader import prepared_batches
from qfm_iqm.io import InputError


@pytest.fixture(scope="module")
def scorer(tiny_bundle: Path) -> Scorer:
    return load_model(tiny_bundle, compile="off")


# -- the API: the pipeline's predictions, the training scale, in-memory images -----------------------------------------

@pytest.mark.slow  # compares with the tiny workflow run's predictions
def test_api_predictions_equal_the_pipelines_for_the_same_model_and_images(tiny_run: Path, tmp_path: Path) -> None:
    scorer = load_model(export_split_bundle(tiny_run, "tiny", "split0/students/full.pt", tmp_path / "split0"),
                        compile="off")
    preds, paths = split_images(tiny_run, "tiny", 0)
    raw = scorer(paths, ids=list(preds["image_id"]), scale="raw")
    np.testing.assert_allclose(raw, preds["full"], rtol=0, atol=1e-5)
    unit = scorer(paths, ids=list(preds["image_id"]), scale="unit")
    np.testing.assert_allclose(unit, np.clip(preds["full"], 0, 1), atol=1e-5)


def test_scores_map_to_the_training_scale(scorer: Scorer, bundle_copy: Path, tmp_path: Path) -> None:
    path = write_image(tmp_path / "a.png", (90, 70))
    scale = scorer.bundle.info["scale"]
    unit, mos = scorer(path, scale="unit"), scorer(path)
    assert 0 <= unit <= 1 and isinstance(mos, float)
    assert mos == pytest.approx(scale["min"] + unit * (scale["max"] - scale["min"]))
    info = json.loads((bundle_copy / "bundle.json").read_text())
    info["scale"] = {"min": 10.0, "max": 30.0, "higher_is_better": False}  # a DMOS dataset: 10 is best
    (bundle_copy / "bundle.json").write_text(json.dumps(bundle.seal(info)))
    assert load_model(bundle_copy, compile="off")(path) == pytest.approx(30.0 - unit * 20.0)


def test_a_copy_under_another_name_scores_the_same(scorer: Scorer, tmp_path: Path) -> None:
    a = write_image(tmp_path / "a.png", (90, 70), seed=3)
    b = Path(shutil.copyfile(a, tmp_path / "other_name.png"))
    assert scorer(a, scale="raw") == scorer(b, scale="raw")
    assert content_id(Image.open(a).convert("RGB")) != content_id(Image.new("RGB", (90, 70)))


def test_paths_pil_arrays_and_tensors_one_or_a_batch_score_alike(scorer: Scorer, tmp_path: Path) -> None:
    path = write_image(tmp_path / "a.png", (90, 70), seed=4)
    rgb = np.array(Image.open(path).convert("RGB"))
    want = scorer(path, scale="raw")
    tensor = torch.from_numpy(rgb).permute(2, 0, 1)
    for one in (Image.open(path), rgb, rgb / 255.0, tensor, tensor.float() / 255):
        assert scorer(one, scale="raw") == pytest.approx(want, abs=1e-6)
    batch = scorer([path, rgb], scale="raw")
    assert batch.shape == (2,) and batch == pytest.approx([want, want], abs=1e-6)
    assert scorer(np.stack([rgb, rgb]), scale="raw") == pytest.approx([want, want], abs=1e-6)
    assert scorer(tensor[None].repeat(3, 1, 1, 1), scale="raw") == pytest.approx([want] * 3, abs=1e-6)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((4, 5, 2), np.uint8), r"\(H, W\) or \(H, W, 1\|3\|4\)"),
    (np.full((4, 5, 3), 2.0), r"values in \[0, 1\]"),
    (np.zeros((4, 5, 3), np.int64), "uint8, or float"),
    (torch.zeros(5, 5), r"\(C, H, W\)"),
    (42, "cannot score a int"),
])
def test_an_unusable_in_memory_image_is_a_clear_error(scorer: Scorer, bad: object, message: str) -> None:
    with pytest.raises(InputError, match=message):
        scorer(bad)


@pytest.mark.parametrize("image, message", [
    (np.zeros((0, 0, 3), np.uint8), r"an image array of shape \(0, 0, 3\) has no pixels"),
    (np.zeros((0, 0), np.uint8), r"an image array of shape \(0, 0\) has no pixels"),
    (torch.zeros(48, 64, 3), r"an image tensor is \(C, H, W\) with C = 1, 3 or 4, not \(48, 64, 3\); for an "
                             r"\(H, W, C\) tensor give tensor.permute\(2, 0, 1\)"),
    (torch.zeros(3, 0, 5), r"an image tensor of shape \(3, 0, 5\) has no pixels"),
])
def test_unusable_arrays_and_tensors_are_named_by_their_own_shape(image: object, message: str) -> None:
    with pytest.raises(InputError, match=f"^{message}$"):
        load_model("livec")(image)


# -- real images are messy -------------------------------------------------------------------------------------------

def _rgb_of(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB"))


def test_grey_rgba_palette_and_16_bit_pngs_score_as_their_rgb_pixels(scorer: Scorer, tmp_path: Path) -> None:
    rgb = Image.fromarray(photo_array())
    grey = rgb.convert("L")
    cases = {"grey.png": (grey, _rgb_of(grey)),
             "rgba.png": (Image.fromarray(np.dstack([photo_array(), np.full((72, 96), 90, np.uint8)])), photo_array()),
             "palette.png": (rgb.quantize(64), _rgb_of(rgb.quantize(64)))}
    g16 = (np.asarray(grey).astype(np.uint16) * 257)  # 16-bit grey whose 8-bit scaling is exactly ``grey``
    cases["grey16.png"] = (Image.fromarray(g16), _rgb_of(grey))
    for name, (img, expected) in cases.items():
        img.save(tmp_path / name)
        assert scorer(tmp_path / name, scale="raw") == scorer(expected, scale="raw"), name
    assert Image.open(tmp_path / "grey16.png").mode.startswith("I")


def test_a_cmyk_jpeg_scores_as_pillows_rgb_conversion(scorer: Scorer, tmp_path: Path) -> None:
    Image.fromarray(photo_array()).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    decoded = Image.open(tmp_path / "cmyk.jpg")
    assert decoded.mode == "CMYK"
    assert scorer(tmp_path / "cmyk.jpg", scale="raw") == scorer(_rgb_of(decoded), scale="raw")


def test_exif_orientation_is_applied(scorer: Scorer, tmp_path: Path) -> None:
    upright = photo_array(size=(72, 96))  # portrait
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: the viewer turns it 90 degrees clockwise
    Image.fromarray(np.rot90(upright, k=1)).save(tmp_path / "rotated.png", exif=exif)
    assert scorer(tmp_path / "rotated.png", scale="raw") == scorer(upright, scale="raw")


def test_ids_are_one_per_image_and_a_string_is_one_id(scorer: Scorer, tmp_path: Path) -> None:
    path = write_image(tmp_path / "a.png", seed=5)
    assert scorer(path, ids="ab") == scorer(path, ids=["ab"])
    with pytest.raises(InputError, match=r"^ids: one id per image, as a list, not the string 'ab'$"):
        scorer([path, path], ids="ab")


@pytest.mark.parametrize("batch_size", [0, -3, 2.5])
def test_a_batch_size_under_one_is_refused_by_the_api_as_by_the_command(tiny_bundle: Path, batch_size: object) -> None:
    with pytest.raises(InputError, match=rf"^batch_size: {re.escape(repr(batch_size))}: must be a whole number of at "
                                         "least 1$"):
        load_model(tiny_bundle, batch_size=batch_size)


def test_an_image_smaller_than_a_crop_is_upscaled_not_refused(scorer: Scorer, tmp_path: Path) -> None:
    tiny = write_image(tmp_path / "tiny.png", (20, 12))
    assert np.isfinite(scorer(tiny)) and np.isfinite(scorer(np.zeros((1, 1, 3), np.uint8)))


@pytest.mark.slow  # writes three 48 Mpx JPEGs and scores them in two new processes (10-20 s)
def test_a_very_large_image_is_scored_in_bounded_memory(tiny_bundle: Path, tmp_path: Path) -> None:
    """8000 x 6000 photos stream through in a few hundred MB: only the decoded image and its crops are held. The
    peak counts the decoding worker process too (``RUSAGE_CHILDREN``: its largest child)."""
    y, x = np.mgrid[0:6000, 0:8000]
    big = np.dstack([(x % 256), (y % 256), ((x + y) % 256)]).astype(np.uint8)
    for i in range(3):
        Image.fromarray(np.roll(big, i, 0)).save(tmp_path / f"big{i}.jpg", quality=85)
    del big, y, x
    probe = ("import resource, sys; from qfm_iqm import load_model; s = load_model(sys.argv[1], compile='off'); "
             "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; "
             "first = list(s.stream(sys.argv[2:], progress=False))[0].error or 'ok'; "
             "peak = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)); "
             "print(first, (peak - base) / 1024)")

    def peak_mb(*files: Path) -> float:
        out = subprocess.run([sys.executable, "-c", probe, str(tiny_bundle), *map(str, files)], check=True,
                             capture_output=True, text=True).stdout.split()
        assert out[0] == "ok"
        return float(out[1])

    one, three = peak_mb(tmp_path / "big0.jpg"), peak_mb(*sorted(tmp_path.glob("big*.jpg")))
    assert one < 1200, f"scoring one 48 Mpx image took {one:.0f} MB over the model"
    assert three < one + 300, f"three images took {three:.0f} MB, one {one:.0f} MB: memory grows with the count"


# -- the compiler ------------------------------------------------------------------------------------------------------

def test_a_failing_compiler_falls_back_to_eager(tiny_bundle: Path, tmp_path: Path, monkeypatch) -> None:
    paths = [write_image(tmp_path / f"{i}.png", (90, 70), seed=i) for i in range(5)]
    want = load_model(tiny_bundle, compile="off")(paths, scale="raw")

    def broken(module, **kwargs):
        def fails(*args):
            raise RuntimeError("no compiler")
        return fails

    monkeypatch.setattr(torch, "compile", broken)
    monkeypatch.setattr("qfm_iqm.features.extract.compiler_available", lambda: True)
    scorer = load_model(tiny_bundle, compile="on")
    np.testing.assert_array_equal(scorer(paths, scale="raw"), want)
    assert scorer.compile == "off"


# -- files decoded in worker processes ---------------------------------------------------------------------------------

def test_streamed_files_score_alike_whatever_the_decoding_workers(scorer: Scorer, messy_folder: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Files are decoded in worker processes (the extraction's input pipeline); the results, a bad file's error in
    its place included, are those of decoding in this process."""
    workers = []
    monkeypatch.setattr("qfm_iqm.deploy.scorer.prepared_batches", lambda *args: workers.append(args[3]) or prepared_batches(*args))
    files = sorted(p for p in messy_folder.rglob("*") if p.is_file())
    here = list(scorer.stream(files, progress=False, workers=0))
    apart = list(scorer.stream(files, progress=False, workers=2))
    assert workers == [0, 2]  # the loader really got the processes
    assert [(r.key, r.error) for r in apart] == [(r.key, r.error) for r in here]
    np.testing.assert_array_equal([r.raw for r in apart], [r.raw for r in here])
    assert sum(not r.error for r in here) == 4 and "corrupt.jpg" in next(r.error for r in here if r.key.name == "corrupt.jpg")


def test_a_native_bundle_of_seed_ensembles_scores_any_size_as_the_pipeline_upright(lite0: Path,
                                                                                     tmp_path: Path) -> None:
    """A bundle of ``crops.input: native`` with flips and a 3-seed student: images of several sizes score as the
    pipeline's features and ``predict`` score them, the longer side capped, EXIF orientation applied."""
    from conftest import make_bundle

    from qfm_iqm.features.extract import CropRecipe, extract
    from qfm_iqm.method.checkpoint import load_model as load_checkpoint
    from qfm_iqm.method.train import predict

    crops = {**TINY_CROPS, "input": "native", "max_side": 96, "flip": True}
    scorer = load_model(make_bundle(tmp_path, lite0, crops, seeds=3), compile="off")
    card = (tmp_path / "model/MODEL.md").read_text()
    assert "the whole image at its native resolution, its longer side capped at 96 px" in card
    assert "; its score is the mean of 3 such models, trained with seeds 0 to 2, with" in card
    sizes = [(64, 48), (150, 100), (64, 48), (40, 300)]
    paths = [write_image(tmp_path / f"s{i}.png", size, seed=i) for i, size in enumerate(sizes)]
    meta = pd.DataFrame({"image_id": [f"s{i}" for i in range(4)], "path": [str(p) for p in paths]})
    feats, _ = extract(meta, "tf_efficientnet_lite0", lite0, CropRecipe(**crops), workers=0, precision="fp32")
    expected = predict(load_checkpoint(tmp_path / "student.pt"), feats.features)
    np.testing.assert_allclose(scorer(paths, scale="raw"), expected, rtol=0, atol=1e-5)
    upright = photo_array(size=(72, 96))
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.rot90(upright, k=1)).save(tmp_path / "rotated.png", exif=exif)
    assert scorer(tmp_path / "rotated.png", scale="raw") == pytest.approx(scorer(upright, scale="raw"), abs=1e-6)
