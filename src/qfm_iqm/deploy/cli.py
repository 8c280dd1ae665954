"""The ``qfm-iqm`` command line: score images with a shipped model or a bundle, and print model cards."""

from __future__ import annotations

import argparse
import glob
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from qfm_iqm import __version__
from qfm_iqm.features.devices import check_device
from qfm_iqm.io import InputError, check_writable, write_csv, write_json
from qfm_iqm.pipeline.config import ConfigError, load_config_file

EXIT_OK, EXIT_IMAGE_FAILED, EXIT_USAGE, EXIT_RUN_FAILED = 0, 1, 2, 3
FORMATS = {".csv": "csv", ".json": "json"}


@dataclass(frozen=True)
class Listed:
    """A path to score, or the ``error`` found while listing it (a folder that cannot be read, a pattern that
    matches nothing)."""

    path: Path
    error: str = ""


def expand(inputs: Sequence[str], recursive: bool) -> list[Listed]:
    """What to score, in order: a path as given (a missing file, a broken link or a FIFO gets its error row from
    the reader); a folder's entries other than subfolders (hidden ones skipped; with ``recursive`` its subfolders'
    too), sorted; a glob pattern's matches other than folders (``**`` with ``recursive``). Every entry is listed,
    images or not, so that a stray file gets its error row; so do a folder that cannot be read and a pattern that
    matches nothing."""
    out: list[Listed] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            out += _folder(path, recursive)
        elif not path.exists() and not path.is_symlink() and glob.has_magic(item):
            matches = sorted(Path(p) for p in glob.glob(item, recursive=recursive) if not os.path.isdir(p))
            out += [Listed(p) for p in matches] or [Listed(path, f"no files match {item}")]
        else:
            out.append(Listed(path))
    return out


def _folder(folder: Path, recursive: bool) -> list[Listed]:
    """A folder's entries other than subfolders (and, with ``recursive``, its subfolders'), hidden ones skipped,
    sorted; then one error row for each folder that could not be read."""
    entries: list[Path] = []
    unread: list[Listed] = []

    def failed(err: OSError) -> None:
        unread.append(Listed(Path(err.filename), f"cannot read folder {err.filename} ({err.strerror})"))

    for root, dirs, files in os.walk(folder, onerror=failed):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if recursive else []
        entries += [Path(root) / name for name in files if not name.startswith(".")]
    return [Listed(p) for p in sorted(entries)] + unread


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="qfm-iqm", description="No-reference image quality with QFM-IQM models.")
    main.add_argument("--version", action="version", version=f"qfm-iqm {__version__}")
    commands = main.add_subparsers(dest="command", required=True)
    score = commands.add_parser(
        "score", help="score images", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Score images: one row per file with its path, its score on the training dataset's MOS scale "
                    "(score), on [0, 1] with 1 = best (quality), and an error when the file could not be scored.",
        epilog="Exit status: 0 when every file was scored; 1 when any file failed (its row says why); 2 for a "
               "usage, input or model error, found before scoring (nothing scored); 3 when the scores could not be "
               "written (the message says where they went instead).\nExamples:\n  qfm-iqm score photo.jpg\n"
               "  qfm-iqm score photos/ --recursive --output scores.csv\n"
               "  qfm-iqm score 'shots/*.png' --model results/livec/model --output scores.json")
    score.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders (every file in them) or glob "
                       "patterns (quote them to let qfm-iqm expand them; ** with --recursive)")
    score.add_argument("--model", default="livec", help="a shipped model's name or a bundle folder, e.g. "
                       "results/<dataset>/model (default: livec)")
    score.add_argument("--recursive", "-r", action="store_true", help="descend into subfolders")
    score.add_argument("--output", "-o", default="-", help="scores.csv or scores.json, checked before scoring and "
                       "written when all files are done (if that fails, to a recovery file beside it or to stdout); "
                       "- (default) prints CSV to stdout")
    score.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    score.add_argument("--batch-size", type=int, default=40, help="crops per forward pass (default 40)")
    score.add_argument("--compile", choices=["auto", "on", "off"], default="auto",
                       help="torch.compile the backbone: auto (default) from 5000 crops on and where a compiler "
                            "is found; falls back to eager when compiling fails")
    score.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    info = commands.add_parser("info", help="print a model's card", description="Print a model's card (MODEL.md).")
    info.add_argument("model", nargs="?", default="livec", help="a shipped model's name or a bundle folder")
    check = commands.add_parser("check-config", help="find a workflow config file's YAML errors",
                                description="Read workflow config files as Snakemake does, naming the file, line and "
                                            "column of a YAML error (Snakemake's own message names neither).")
    check.add_argument("files", nargs="+", metavar="FILE", help="config files, e.g. config/livec.yaml")
    return main


def _write(table: pd.DataFrame, output: str) -> None:
    if output == "-":
        table.to_csv(sys.stdout, index=False)
        return
    if FORMATS[Path(output).suffix.lower()] == "csv":  # checked before scoring
        write_csv(table, output)
    else:
        write_json(table.astype(object).where(table.notna(), None).to_dict("records"), output)


def _recover(table: pd.DataFrame, output: str) -> str:
    """Write the scores that ``output`` could not take to a new file beside it, else to stdout; where they went."""
    path, name = Path(output), None
    try:
        fd, name = tempfile.mkstemp(prefix=f"{path.stem}.recovered-", suffix=path.suffix, dir=path.parent)
        os.close(fd)
        _write(table, name)
        return name
    except (OSError, InputError):
        if name is not None:
            Path(name).unlink(missing_ok=True)
        _write(table, "-")
        return "stdout"


def _score(args: argparse.Namespace) -> int:
    from qfm_iqm.deploy.scorer import Result, load_model

    if args.batch_size < 1:
        raise InputError(f"--batch-size {args.batch_size}: must be at least 1")
    if args.output != "-":
        if Path(args.output).suffix.lower() not in FORMATS:
            raise InputError(f"--output {args.output}: name a .csv or .json file, or - for stdout")
        check_writable(args.output)
    check_device(args.device, "--device")
    listed = expand(args.paths, args.recursive)
    if not listed:
        raise InputError(f"no files found in {' '.join(args.paths)}")
    scorer = load_model(args.model, args.device, args.batch_size, args.compile)
    scored = scorer.stream([item.path for item in listed if not item.error], progress=not args.quiet)
    results = [Result(item.path, error=item.error) if item.error else next(scored) for item in listed]
    table = pd.DataFrame([{"path": str(r.key), "score": r.mos, "quality": r.unit, "error": r.error} for r in results],
                         columns=["path", "score", "quality", "error"])
    failed = int((table["error"] != "").sum())
    try:
        _write(table, args.output)
    except (OSError, InputError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        print(f"qfm-iqm: error: could not write {args.output} ({reason}); the scores of all {len(table)} files went to "
              f"{_recover(table, args.output)}", file=sys.stderr)
        return EXIT_RUN_FAILED
    where = "" if args.output == "-" else f" -> {args.output}"
    print(f"qfm-iqm: scored {len(table) - failed} of {len(table)} files with model {scorer.bundle.name}{where}",
          file=sys.stderr)
    for row in table[table["error"] != ""].itertuples():
        print(f"qfm-iqm: failed: {row.error}", file=sys.stderr)
    return EXIT_IMAGE_FAILED if failed else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="qfm-iqm: %(message)s")
    try:
        if args.command == "info":
            from qfm_iqm.deploy.bundle import Bundle

            print(Bundle.open(args.model).card(), end="")
            return EXIT_OK
        if args.command == "check-config":
            for file in args.files:
                load_config_file(file)
                print(f"qfm-iqm: {file}: valid YAML", file=sys.stderr)
            return EXIT_OK
        return _score(args)
    except (InputError, ConfigError) as err:
        print(f"qfm-iqm: error: {err}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
