"""Deployable bundles, the scorer (``qfm_iqm.load_model``) and the ``qfm-iqm`` command line, on the tiny run's model."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import write_image
from PIL import Image
from workflow_helpers import export_split_bundle, split_images

from qfm_iqm import load_model
from qfm_iqm.deploy import bundle, cli
from qfm_iqm.deploy.bundle import Bundle
from qfm_iqm.deploy.scorer import Scorer, content_id
from qfm_iqm.features.loader import prepared_batches
from qfm_iqm.io import InputError, sha256sum

pytestmark = pytest.mark.slow  # the tiny workflow run makes the bundle

QFM_IQM = str(Path(sys.executable).with_name("qfm-iqm"))


@pytest.fixture(scope="module")
def tiny_bundle(tiny_run: Path) -> Path:
    return tiny_run / "results/tiny/model"


@pytest.fixture(scope="module")
def scorer(tiny_bundle: Path) -> Scorer:
    return load_model(tiny_bundle, compile="off")


@pytest.fixture
def bundle_copy(tiny_bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))


# -- the bundle the workflow writes ----------------------------------------------------------------------------------

def test_the_workflow_bundles_the_full_student_trained_on_every_image(tiny_run: Path, tiny_bundle: Path) -> None:
    b = Bundle.open(tiny_bundle)
    assert sorted(p.name for p in tiny_bundle.glob("[!.]*")) == ["MODEL.md", "bundle.json", "model.pt"]
    assert sha256sum(tiny_bundle / "model.pt") == sha256sum(tiny_run / "results/tiny/splitall/students/full.pt")
    assert json.loads((tiny_run / "results/tiny/splitall/students/full.json").read_text())["labelled_images"] == \
        len(pd.read_csv(tiny_run / "data/tiny/meta.csv")) == b.info["dataset"]["images"]
    assert b.info["backbone"]["weights"] == "package" and len(b.info["backbone"]["sha256"]) == 64
    assert b.info["crops"] == {"n": 2, "size": 64, "seed": 0, "global_view": False}
    assert b.info["settings"]["student"]["arch"]["hidden"] == 16
    assert "L_sens = |pred(noisy) - pred(clean)| with gradients through both predictions, weight 0.5." in \
        (tiny_bundle / "MODEL.md").read_text()  # the card says which loss trained the model
    summary = pd.read_csv(tiny_run / "results/tiny/summary.csv").set_index("model")
    metrics = {m["model"]: m for m in b.info["metrics"]}
    assert metrics["full"]["srcc_median"] == pytest.approx(summary.loc["full", "srcc_median"])
    card = b.card()
    assert f"`{sha256sum(tiny_bundle / 'model.pt')}`" in card and "## Limits" in card and "## Intended use" in card


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


# -- real images are messy -------------------------------------------------------------------------------------------

def _rgb_of(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB"))


def _photo(seed: int = 5, size: tuple[int, int] = (96, 72)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)


def test_grey_rgba_palette_and_16_bit_pngs_score_as_their_rgb_pixels(scorer: Scorer, tmp_path: Path) -> None:
    rgb = Image.fromarray(_photo())
    grey = rgb.convert("L")
    cases = {"grey.png": (grey, _rgb_of(grey)),
             "rgba.png": (Image.fromarray(np.dstack([_photo(), np.full((72, 96), 90, np.uint8)])), _photo()),
             "palette.png": (rgb.quantize(64), _rgb_of(rgb.quantize(64)))}
    g16 = (np.asarray(grey).astype(np.uint16) * 257)  # 16-bit grey whose 8-bit scaling is exactly ``grey``
    cases["grey16.png"] = (Image.fromarray(g16), _rgb_of(grey))
    for name, (img, expected) in cases.items():
        img.save(tmp_path / name)
        assert scorer(tmp_path / name, scale="raw") == scorer(expected, scale="raw"), name
    assert Image.open(tmp_path / "grey16.png").mode.startswith("I")


def test_a_cmyk_jpeg_scores_as_pillows_rgb_conversion(scorer: Scorer, tmp_path: Path) -> None:
    Image.fromarray(_photo()).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    decoded = Image.open(tmp_path / "cmyk.jpg")
    assert decoded.mode == "CMYK"
    assert scorer(tmp_path / "cmyk.jpg", scale="raw") == scorer(_rgb_of(decoded), scale="raw")


def test_exif_orientation_is_applied(scorer: Scorer, tmp_path: Path) -> None:
    upright = _photo(size=(72, 96))  # portrait
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: the viewer turns it 90 degrees clockwise
    Image.fromarray(np.rot90(upright, k=1)).save(tmp_path / "rotated.png", exif=exif)
    assert scorer(tmp_path / "rotated.png", scale="raw") == scorer(upright, scale="raw")


def test_an_image_smaller_than_a_crop_is_upscaled_not_refused(scorer: Scorer, tmp_path: Path) -> None:
    tiny = write_image(tmp_path / "tiny.png", (20, 12))
    assert np.isfinite(scorer(tiny)) and np.isfinite(scorer(np.zeros((1, 1, 3), np.uint8)))


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


# -- bundles are strict ---------------------------------------------------------------------------------------------

def test_other_backbone_weights_are_refused_naming_both_digests(bundle_copy: Path) -> None:
    info = json.loads((bundle_copy / "bundle.json").read_text())
    recorded, info["backbone"]["sha256"] = info["backbone"]["sha256"], "0" * 64
    (bundle_copy / "bundle.json").write_text(json.dumps(bundle.seal(info)))  # a consistent bundle.json
    with pytest.raises(InputError, match=f"SHA-256 {recorded}, but the model was trained on weights with SHA-256 "
                                         f"{'0' * 64}"):
        load_model(bundle_copy)


def test_a_missing_or_altered_bundle_file_is_named(bundle_copy: Path, tiny_bundle: Path) -> None:
    (bundle_copy / "MODEL.md").write_text("edited")
    with pytest.raises(InputError, match="MODEL.md: SHA-256 .* does not match"):
        Bundle.open(bundle_copy)
    shutil.copyfile(tiny_bundle / "MODEL.md", bundle_copy / "MODEL.md")
    (bundle_copy / "model.pt").unlink()
    with pytest.raises(InputError, match="bundle file model.pt is missing"):
        Bundle.open(bundle_copy)
    (bundle_copy / "bundle.json").unlink()
    with pytest.raises(InputError, match="not a model bundle"):
        Bundle.open(bundle_copy)


def test_a_random_backbone_makes_no_bundle() -> None:
    with pytest.raises(InputError, match="backbone.weights: 'none'"):
        bundle.weights_kind("none")


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


# -- the command line -----------------------------------------------------------------------------------------------

@pytest.fixture
def messy_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    for i in range(3):
        write_image(folder / f"ok{i}.jpg", (90, 70), seed=i)
    write_image(folder / "sub" / "deep.png", (90, 70), seed=9)
    buf = io.BytesIO()
    Image.fromarray(_photo()).save(buf, "PNG")
    (folder / "truncated.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (folder / "notes.txt").write_text("not an image")
    (folder / ".hidden.png").write_text("skipped")
    return folder


def test_a_folder_with_bad_files_scores_every_image_and_exits_non_zero(tiny_bundle: Path, messy_folder: Path) -> None:
    out = messy_folder.parent / "scores.csv"
    proc = subprocess.run([QFM_IQM, "score", str(messy_folder), "--model", str(tiny_bundle), "-o", str(out)],
                          check=False, capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr
    table = pd.read_csv(out, keep_default_na=False).set_index("path")
    names = {Path(p).name: row for p, row in table.iterrows()}
    assert sorted(names) == ["corrupt.jpg", "notes.txt", "ok0.jpg", "ok1.jpg", "ok2.jpg", "truncated.png"]
    for bad in ("corrupt.jpg", "notes.txt", "truncated.png"):
        assert bad in names[bad]["error"] and names[bad]["score"] == ""
    for good in ("ok0.jpg", "ok1.jpg", "ok2.jpg"):
        assert names[good]["error"] == "" and 0 <= float(names[good]["quality"]) <= 1
    assert "scored 3 of 6 files" in proc.stderr and "score: 100%" in proc.stderr  # the progress bar is on stderr


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


def test_recursive_globs_and_json_output(tiny_bundle: Path, messy_folder: Path) -> None:
    out = messy_folder.parent / "scores.json"
    code = cli.main(["score", str(messy_folder / "**" / "*.png"), str(messy_folder / "ok0.jpg"), "--recursive",
                     "--model", str(tiny_bundle), "-o", str(out), "-q"])
    rows = json.loads(out.read_text())
    assert [Path(r["path"]).name for r in rows] == ["deep.png", "truncated.png", "ok0.jpg"]
    assert code == 1 and rows[0]["error"] == "" and rows[1]["score"] is None


def test_every_image_fine_exits_zero_and_matches_the_api(tiny_bundle: Path, messy_folder: Path, capsys) -> None:
    files = sorted(messy_folder.glob("ok*.jpg"))
    assert cli.main(["score", *map(str, files), "--model", str(tiny_bundle), "-q"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    np.testing.assert_allclose(table["score"], load_model(tiny_bundle, compile="off")(files), rtol=1e-12)


@pytest.mark.parametrize("args, message", [
    (["score", "x.jpg", "--model", "no_such_model"], "unknown model 'no_such_model'"),
    (["score", "x.jpg", "--model", "{bundle}", "-o", "scores.xlsx"], "--output scores.xlsx: name a .csv or .json"),
    (["info", "{missing}"], "bundle file model.pt is missing"),
])
def test_model_and_usage_errors_are_one_line_and_exit_2(args: list[str], message: str, bundle_copy: Path,
                                                         tmp_path: Path) -> None:
    shutil.copytree(bundle_copy, tmp_path / "missing")
    (tmp_path / "missing" / "model.pt").unlink()
    args = [a.format(bundle=bundle_copy, missing=tmp_path / "missing") for a in args]
    proc = subprocess.run([QFM_IQM, *args], check=False, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and message in proc.stderr and "Traceback" not in proc.stderr


def test_info_prints_the_model_card_and_help_names_every_option(tiny_bundle: Path) -> None:
    proc = subprocess.run([QFM_IQM, "info", str(tiny_bundle)], capture_output=True, text=True, check=True)
    assert proc.stdout == (tiny_bundle / "MODEL.md").read_text()
    usage = subprocess.run([QFM_IQM, "score", "--help"], capture_output=True, text=True, check=True).stdout
    for option in ("--model", "--recursive", "--output", "--device", "--batch-size", "--compile", "Exit status"):
        assert option in usage
