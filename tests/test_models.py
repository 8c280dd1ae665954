"""The LIVEC model that ships inside the package: it is what its card says, and it scores with no data."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import write_image
from scipy import stats

from qfm_iqm import load_model
from qfm_iqm.data.synthetic import build_demo
from qfm_iqm.deploy.bundle import Bundle, shipped, shipped_names
from qfm_iqm.io import sha256sum

QFM_IQM = str(Path(sys.executable).with_name("qfm-iqm"))


def test_the_shipped_file_is_the_one_its_model_card_describes() -> None:
    assert "livec" in shipped_names()
    bundle = Bundle.open("livec")  # every listed file against bundle.json's SHA-256
    card = bundle.card()
    listed = dict(re.findall(r"^\| (\S+) \| `([0-9a-f]{64})` \|$", card, re.MULTILINE))
    assert listed["model.pt"] == sha256sum(bundle.root / "model.pt") == bundle.info["files"]["model.pt"]
    assert listed["NOTICE.txt"] == sha256sum(bundle.root / "NOTICE.txt")
    assert "COPYRIGHT NOTICE STARTS WITH THIS LINE" in (bundle.root / "NOTICE.txt").read_text()
    assert "Ghadiyaram" in (bundle.root / "NOTICE.txt").read_text() and "Licence: LIVE copyright notice" in card
    assert "Cite the dataset: D. Ghadiyaram and A. C. Bovik" in card
    assert bundle.info["dataset"]["images"] == 1162 and bundle.info["provenance"]["git"]["dirty"] is False
    full = next(m for m in bundle.info["metrics"] if m["model"] == "full")
    assert full["splits"] == 30 and f"| 30 | {full['srcc_median']:.3f} [" in card
    assert "L_sens = |pred(noisy) - pred(clean)| with gradients through both predictions" in card  # the loss


def test_qfm_iqm_score_with_the_shipped_model_writes_a_csv(tmp_path: Path) -> None:
    for i in range(3):
        write_image(tmp_path / "photos" / f"p{i}.jpg", (320, 240), seed=i)
    proc = subprocess.run([QFM_IQM, "score", str(tmp_path / "photos"), "-o", str(tmp_path / "scores.csv"), "-q"],
                          check=False, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(tmp_path / "scores.csv")
    scale = json.loads((shipped("livec") / "bundle.json").read_text())["scale"]
    assert len(table) == 3 and table["error"].isna().all()
    assert table["score"].between(scale["min"], scale["max"]).all() and table["quality"].between(0, 1).all()


def workflow_only_modules() -> list[str]:
    """The top-level modules that only the ``workflow`` extra's distributions provide."""
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    extra = {re.split(r"[=<>\[ ]", req)[0].lower().replace("_", "-")
             for req in pyproject["project"]["optional-dependencies"]["workflow"]}
    return sorted(module for module, dists in metadata.packages_distributions().items()
                  if {d.lower().replace("_", "-") for d in dists} <= extra)


def test_scoring_needs_only_the_core_dependencies(tmp_path: Path) -> None:
    """``pip install .`` (no extras) is enough to score: with every module of the workflow extra hidden, the shipped
    model scores an image through the command line and through ``qfm_iqm.load_model``."""
    hidden = workflow_only_modules()
    assert {"snakemake", "dvc", "scipy", "jsonschema", "matplotlib"} <= set(hidden)
    write_image(tmp_path / "p.jpg", (320, 240), seed=0)
    script = (f"import sys\nfor name in {hidden!r}: sys.modules[name] = None\n"
              "import qfm_iqm\nfrom qfm_iqm.deploy.cli import main\n"
              "print(qfm_iqm.load_model('livec')(sys.argv[1]))\n"
              "sys.exit(main(['score', sys.argv[1], '-o', sys.argv[2], '-q']))")
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "p.jpg"), str(tmp_path / "scores.csv")],
                          check=False, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert pd.read_csv(tmp_path / "scores.csv")["score"].iloc[0] == pytest.approx(float(proc.stdout.split()[-1]))


@pytest.mark.slow  # scores 27 photos
def test_the_shipped_model_ranks_blur_and_jpeg_by_severity(tmp_path: Path) -> None:
    """Package photos (not LIVEC images): blur and JPEG levels 1-4 and the pristine photo, ranked within each
    photo and type (``bench/demo_severity.py`` runs all four types on all eleven photos)."""
    meta = build_demo(tmp_path / "meta.csv", tmp_path / "images", ["astronaut", "coffee", "rocket"],
                      ["gaussian_blur", "jpeg"], 4, 256, 0)
    meta["pred"] = load_model("livec")([tmp_path / p for p in meta["path"]])
    pristine = meta[meta["distortion"] == "pristine"].set_index("ref_id")
    rhos = [stats.spearmanr(-np.r_[0, group["level"]], np.r_[pristine.loc[ref, "pred"], group["pred"]]).statistic
            for (ref, _), group in meta[meta["distortion"] != "pristine"].groupby(["ref_id", "distortion"])]
    assert len(rhos) == 6 and np.mean(rhos) >= 0.9, rhos
