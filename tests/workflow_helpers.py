"""Running the Snakemake workflow of this repository in a scratch directory."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import yaml
from conftest import REPO

SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
TINY = REPO / "tests/tiny_config.yaml"


def tiny_config(**overrides: dict) -> dict:
    """The tiny test config with top-level sections replaced."""
    return {**yaml.safe_load(TINY.read_text()), **overrides}


def write_config(workdir: Path, config: dict, name: str = "config.yaml") -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def snakemake_command(workdir: Path, configfile: Path, *args: str) -> list[str]:
    """The command line running this repository's Snakefile with ``workdir`` as working directory."""
    return [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--configfile", str(configfile),
            "--cores", "2", *args]


def copy_run(run: Path, dest: Path) -> Path:
    """A copy of a workflow run with its timestamps and Snakemake's records, for tests that change it."""
    return Path(shutil.copytree(run, dest, symlinks=True))


def snakemake(workdir: Path, configfile: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run this repository's Snakefile with ``workdir`` as working directory."""
    cmd = snakemake_command(workdir, configfile, *args)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, timeout=1500)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


def scheduled_jobs(proc: subprocess.CompletedProcess) -> Counter:
    """Rule -> job count from the 'Job stats' table of a (dry) run."""
    text = proc.stdout + proc.stderr
    table = text.split("Job stats:", 1)[1] if "Job stats:" in text else ""
    counts = Counter()
    for line in table.splitlines()[3:]:
        match = re.fullmatch(r"(\w+)\s+(\d+)", line.strip())
        if not match:
            break
        if match[1] != "total":
            counts[match[1]] = int(match[2])
    return counts


def export_split_bundle(run: Path, dataset: str, model: str, out: Path) -> Path:
    """A bundle of one split's trained model (``model``, relative to ``results/<dataset>/``), with the settings of
    the run's own bundle: the workflow bundles only the model trained on every image."""
    import torch

    from qfm_iqm.deploy import bundle

    info = bundle.Bundle.open(run / f"results/{dataset}/model").info
    bundle.export(out, name=out.name, model=run / f"results/{dataset}/{model}", backbone=info["backbone"]["name"],
                  weights="package", state=torch.load(run / f"results/weights/{info['backbone']['name']}.pth",
                                                       weights_only=True),
                  weights_file=None, crops=info["crops"], meta=pd.read_csv(run / f"data/{dataset}/meta.csv"),
                  dataset=info["dataset"], settings=info["settings"], provenance=info["provenance"],
                  summary=pd.read_csv(run / f"results/{dataset}/summary.csv"), precision=info["backbone"]["precision"])
    return out


def split_images(run: Path, dataset: str, split: int) -> tuple[pd.DataFrame, list[Path]]:
    """A split's test predictions of the workflow and the paths of their images, in that order."""
    preds = pd.read_csv(run / f"results/{dataset}/split{split}/predictions.csv", dtype={"image_id": str})
    meta = pd.read_csv(run / f"data/{dataset}/meta.csv", dtype={"image_id": str}).set_index("image_id")
    return preds, [run / f"data/{dataset}" / p for p in meta.loc[preds["image_id"], "path"]]
