"""The package installs beside others: pyproject.toml states ranges, constraints.txt the exact versions CI uses (each
inside its range), the version is written once, the files a published package carries exist, and the workflow's
conda environment asks for what pyproject.toml does."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import tomllib
import urllib.request
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

import qfm_iqm

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
# Versions other than constraints.txt's that a user may already have; scoring from the built wheel was checked
# by hand with these (CHANGELOG.md).
OLDER = {"numpy": "2.0.2", "pandas": "2.2.3", "pillow": "10.4.0"}


def requirements(extras: bool = True) -> dict[str, Requirement]:
    """pyproject's requirements by canonical name: the runtime ones, and those of every extra but the project's own."""
    extra = itertools.chain.from_iterable(PROJECT["optional-dependencies"].values()) if extras else []
    reqs = [Requirement(line) for line in [*PROJECT["dependencies"], *extra]]
    return {canonicalize_name(req.name): req for req in reqs if canonicalize_name(req.name) != "qfm-iqm"}


def pins(path: Path = REPO / "constraints.txt") -> dict[str, Requirement]:
    lines = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
    return {canonicalize_name(req.name): req for req in map(Requirement, filter(None, lines))}


def pinned_version(req: Requirement) -> Version:
    (spec,) = req.specifier
    assert spec.operator == "==", f"constraints.txt: {req} is not an exact pin"
    return Version(spec.version)


def test_dependencies_are_ranges_and_constraints_pin_a_version_inside_each() -> None:
    exact = [str(req) for req in requirements().values() if any(s.operator in ("==", "===") for s in req.specifier)]
    assert not exact, f"pyproject.toml pins {exact}: state a range, and the version in constraints.txt"
    pinned = pins()
    for name, req in requirements().items():
        assert name in pinned, f"constraints.txt has no pin for {name}"
        version = pinned_version(pinned[name])
        assert req.specifier.contains(version, prereleases=True), f"constraints.txt's {version} is outside {req}"


def test_other_numpy_pandas_and_pillow_versions_are_inside_the_ranges() -> None:
    runtime = requirements(extras=False)
    for name, version in OLDER.items():
        assert runtime[name].specifier.contains(version), f"{name} {version} is outside {runtime[name]}"
        assert Version(version) < pinned_version(pins()[name])


def test_the_version_is_written_once_in_the_package() -> None:
    assert "version" not in PROJECT and "version" in PROJECT["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "qfm_iqm.version.__version__"}
    assert str(Version(qfm_iqm.__version__)) == qfm_iqm.__version__
    assert f"## [{qfm_iqm.__version__}]" in (REPO / "CHANGELOG.md").read_text()


def test_the_files_a_published_package_carries() -> None:
    assert PROJECT["license"] == "MIT" and PROJECT["license-files"] == ["LICENSE"]
    assert not [c for c in PROJECT["classifiers"] if c.startswith("License ::")], "SPDX licence: no licence classifier"
    assert "MIT License" in (REPO / "LICENSE").read_text()
    assert (REPO / "src/qfm_iqm/py.typed").is_file()
    assert "py.typed" in PYPROJECT["tool"]["setuptools"]["package-data"]["qfm_iqm"]
    changelog = (REPO / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in changelog and "keepachangelog.com" in changelog
    citation = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0"
    assert {"message", "title", "authors", "license", "preferred-citation"} <= citation.keys()
    paper = citation["preferred-citation"]
    assert paper["year"] == 2024 and paper["volume"] == 235 and paper["authors"][0]["family-names"] == "Li"
    assert paper["title"].startswith("Adaptive Feature Selection for No-Reference Image Quality Assessment")


def test_python_dash_m_runs_the_command_line() -> None:
    run = [sys.executable, "-m", "qfm_iqm"]
    version = subprocess.run([*run, "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.strip() == f"qfm-iqm {qfm_iqm.__version__}"
    usage = subprocess.run([*run, "nonsense"], capture_output=True, text=True, check=False)
    assert usage.returncode == 2 and usage.stderr.startswith("usage: python -m qfm_iqm ")


def test_the_conda_environment_asks_for_what_pyproject_does() -> None:
    """workflow/envs/qfm-iqm.yaml (for `--sdm conda`) lists every runtime and workflow requirement with the same
    range, and the Python that pyproject requires."""
    env = yaml.safe_load((REPO / "workflow/envs/qfm-iqm.yaml").read_text())
    conda = [dep for dep in env["dependencies"] if isinstance(dep, str)]
    (pip,) = [dep["pip"] for dep in env["dependencies"] if isinstance(dep, dict)]
    (python,) = [dep.removeprefix("python=") for dep in conda if dep.startswith("python=")]
    assert SpecifierSet(PROJECT["requires-python"]).contains(python)
    wanted = requirements(extras=False) | {canonicalize_name(Requirement(line).name): Requirement(line)
                                          for line in PROJECT["optional-dependencies"]["workflow"]}
    listed = {canonicalize_name(req.name): req for req in map(Requirement, pip)}
    assert listed.keys() == wanted.keys()
    assert all(listed[name].specifier == req.specifier for name, req in wanted.items()), \
        [f"{listed[name]} != {req}" for name, req in wanted.items() if listed[name].specifier != req.specifier]


def pypi_reachable() -> bool:
    try:
        urllib.request.urlopen("https://pypi.org/simple/numpy/", timeout=10).close()
    except OSError:
        return False
    return True


@pytest.mark.slow
def test_pip_resolves_the_package_beside_older_numpy_pandas_and_pillow(tmp_path: Path) -> None:
    """pip's resolver (a dry run: nothing installed) accepts the project with numpy, pandas and Pillow other than
    constraints.txt's, with every transitive requirement."""
    if not pypi_reachable():
        pytest.skip("PyPI is unreachable")
    report = tmp_path / "report.json"
    subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                    "--report", str(report), str(REPO), *(f"{name}=={v}" for name, v in OLDER.items())],
                   check=True, timeout=600)
    chosen = {canonicalize_name(item["metadata"]["name"]): item["metadata"]["version"]
              for item in json.loads(report.read_text())["install"]}
    assert {name: chosen[name] for name in OLDER} == OLDER
    assert "qfm-iqm" in chosen and "torch" in chosen


OUTSIDE = """
import numpy as np, qfm_iqm, sys
from qfm_iqm.method.train import TrainConfig, build_model, predict, train
assert qfm_iqm.__file__.startswith(sys.argv[1]), qfm_iqm.__file__  # the copy, not the checkout
rng = np.random.default_rng(0)
x, y = rng.normal(size=(24, 2, 16)).astype(np.float32), rng.random(24)
cfg = TrainConfig(epochs=2, lr=1e-3, weight_decay=0.0, batch_size=8, loss="l1")  # the rest: the schema's defaults
model = build_model(16, {"head": "mlp", "hidden": 8, "dropout": 0.0})
train(model, x, y, cfg)
print(cfg.noise_form, cfg.crops_per_epoch, predict(model, x).shape)
"""


@pytest.mark.slow  # a fresh interpreter importing torch
def test_the_package_trains_a_student_outside_a_checkout(tmp_path: Path) -> None:
    """The package alone, as pip installs it (no workflow/, no config/), reads its settings' defaults from the
    schema it carries and trains a student through the Python API."""
    import shutil

    site = tmp_path / "site"
    shutil.copytree(Path(qfm_iqm.__file__).parent, site / "qfm_iqm", ignore=shutil.ignore_patterns("__pycache__"))
    out = subprocess.run([sys.executable, "-c", OUTSIDE, str(site)], cwd=tmp_path, capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site)}, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["mix", "0", "(24,)"]
