"""Running the Snakemake workflow of this repository in a scratch directory."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

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
