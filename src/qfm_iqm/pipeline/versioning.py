"""Data and weights under DVC: track a run's outputs, push them (respecting dataset licences), restore.

Snakemake runs the jobs and DVC versions what they wrote: ``data/`` (prepared datasets) and
``results/`` (feature caches, trained weights, tables, figures) are tracked as two directories
(``data.dvc``, ``results.dvc``), so no Snakemake output is also a DVC stage output.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from qfm_iqm.io import InputError

TRACKED = ("data", "results")


def dvc(workdir: Path, *args: str) -> str:
    """Run the DVC command line in ``workdir``; a failure raises InputError with DVC's message."""
    exe = shutil.which("dvc", path=str(Path(sys.executable).parent)) or "dvc"
    proc = subprocess.run([exe, *args], check=False, cwd=workdir, capture_output=True, text=True)
    if proc.returncode != 0:
        raise InputError(f"dvc {' '.join(args)} failed in {workdir}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def track(workdir: Path) -> dict[str, dict]:
    """``dvc add`` the run's data and results; returns each tracked directory's files and bytes."""
    present = [name for name in TRACKED if (workdir / name).is_dir()]
    if not present:
        raise InputError(f"{workdir}: nothing to track (no {' or '.join(TRACKED)} directory)")
    dvc(workdir, "add", "-q", *present)
    outs = {}
    for name in present:
        out = yaml.safe_load((workdir / f"{name}.dvc").read_text())["outs"][0]
        outs[name] = {"files": out["nfiles"], "bytes": out["size"]}
    return outs


def restricted(workdir: Path) -> dict[str, str]:
    """Prepared datasets whose licence forbids redistribution (``data/<name>/licence.json``): name -> licence."""
    found = {}
    for record in sorted((workdir / "data").glob("*/licence.json")):
        info = json.loads(record.read_text())
        if not info["redistributable"]:
            found[record.parent.name] = info["licence"]
    return found


def is_local(url: str) -> bool:
    """A remote on this machine's file system (a path or file://), not a shared service."""
    return "://" not in url or url.startswith("file://")


def remote_url(workdir: Path, remote: str | None) -> tuple[str, str]:
    """(name, url) of ``remote``, or of the default remote."""
    name = remote or dvc(workdir, "remote", "default").strip()
    if not name:
        raise InputError(f"{workdir}: no DVC remote given and none is the default (dvc remote add -d ...)")
    return name, dvc(workdir, "config", f"remote.{name}.url").strip()


def push(workdir: Path, remote: str | None = None, allow_restricted: bool = False) -> str:
    """``dvc push`` the tracked data and results; to a non-local remote only if no prepared dataset
    is marked non-redistributable (unless ``allow_restricted``: you hold the right to share it)."""
    name, url = remote_url(workdir, remote)
    blocked = restricted(workdir)
    if blocked and not is_local(url) and not allow_restricted:
        listed = "; ".join(f"{k} ({v})" for k, v in blocked.items())
        raise InputError(f"not pushing to remote '{name}' ({url}): data/ holds datasets whose licence forbids "
                         f"redistribution: {listed}. Push to a local remote, remove them from data/, or pass "
                         "--allow-restricted if you may share them.")
    return dvc(workdir, "push", "-r", name)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m qfm_iqm.pipeline.versioning", description=__doc__)
    parser.add_argument("command", choices=["track", "push"])
    parser.add_argument("-d", "--directory", type=Path, default=Path("."), help="the run's working directory")
    parser.add_argument("-r", "--remote", help="DVC remote (default: the default remote)")
    parser.add_argument("--allow-restricted", action="store_true",
                        help="push datasets marked non-redistributable to a non-local remote")
    args = parser.parse_args(argv)
    try:
        if args.command == "track":
            for name, out in track(args.directory).items():
                print(f"{name}: {out['files']} files, {out['bytes'] / 1e6:.1f} MB")
        else:
            print(push(args.directory, args.remote, args.allow_restricted), end="")
    except InputError as err:
        sys.exit(f"ERROR: {err}")


if __name__ == "__main__":
    main()
