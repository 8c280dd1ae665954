"""The ``qfm-iqm`` command line: score images with a shipped model or a bundle, and print model cards."""

from __future__ import annotations

import argparse
import glob
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from qfm_iqm import __version__
from qfm_iqm.io import InputError, write_csv, write_json

EXIT_OK, EXIT_IMAGE_FAILED, EXIT_USAGE = 0, 1, 2
FORMATS = {".csv": "csv", ".json": "json"}


def expand(inputs: Sequence[str], recursive: bool) -> list[Path]:
    """Files to score, in order: a file as given; a folder's files (hidden ones skipped; with ``recursive`` its
    subfolders' too), sorted; a glob pattern's matches (``**`` with ``recursive``). Every file in a folder is
    listed, images or not, so that a stray file gets its error row. A path that matches nothing stays, and gets
    its "not found" row."""
    out: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            walk = path.rglob("*") if recursive else path.iterdir()
            out += sorted(p for p in walk if p.is_file() and not any(part.startswith(".")
                                                                      for part in p.relative_to(path).parts))
        elif not path.exists() and glob.has_magic(item):
            out += sorted(Path(p) for p in glob.glob(item, recursive=recursive) if os.path.isfile(p))
        else:
            out.append(path)
    return out


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="qfm-iqm", description="No-reference image quality with QFM-IQM models.")
    main.add_argument("--version", action="version", version=f"qfm-iqm {__version__}")
    commands = main.add_subparsers(dest="command", required=True)
    score = commands.add_parser(
        "score", help="score images", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Score images: one row per file with its path, its score on the training dataset's MOS scale "
                    "(score), on [0, 1] with 1 = best (quality), and an error when the file could not be scored.",
        epilog="Exit status: 0 when every image was scored, 1 when any image failed (its row says why), 2 for a "
               "usage or model error.\nExamples:\n  qfm-iqm score photo.jpg\n  qfm-iqm score photos/ --recursive "
               "--output scores.csv\n  qfm-iqm score 'shots/*.png' --model results/livec/model --output scores.json")
    score.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders (every file in them) or glob "
                       "patterns (quote them to let qfm-iqm expand them; ** with --recursive)")
    score.add_argument("--model", default="livec", help="a shipped model's name or a bundle folder, e.g. "
                       "results/<dataset>/model (default: livec)")
    score.add_argument("--recursive", "-r", action="store_true", help="descend into subfolders")
    score.add_argument("--output", "-o", default="-", help="scores.csv or scores.json, written when all files are "
                       "done; - (default) prints CSV to stdout")
    score.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    score.add_argument("--batch-size", type=int, default=40, help="crops per forward pass (default 40)")
    score.add_argument("--compile", choices=["auto", "on", "off"], default="auto",
                       help="torch.compile the backbone: auto (default) from 5000 crops on and where a compiler "
                            "is found; falls back to eager when compiling fails")
    score.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    info = commands.add_parser("info", help="print a model's card", description="Print a model's card (MODEL.md).")
    info.add_argument("model", nargs="?", default="livec", help="a shipped model's name or a bundle folder")
    return main


def _write(table: pd.DataFrame, output: str) -> None:
    if output == "-":
        table.to_csv(sys.stdout, index=False)
        return
    if FORMATS[Path(output).suffix.lower()] == "csv":  # checked before scoring
        write_csv(table, output)
    else:
        write_json(table.astype(object).where(table.notna(), None).to_dict("records"), output)


def _score(args: argparse.Namespace) -> int:
    from qfm_iqm.deploy.scorer import load_model

    if args.batch_size < 1:
        raise InputError(f"--batch-size {args.batch_size}: must be at least 1")
    if args.output != "-" and Path(args.output).suffix.lower() not in FORMATS:
        raise InputError(f"--output {args.output}: name a .csv or .json file, or - for stdout")
    files = expand(args.paths, args.recursive)
    if not files:
        raise InputError(f"no files found in {' '.join(args.paths)}")
    scorer = load_model(args.model, args.device, args.batch_size, args.compile)
    rows = [{"path": str(r.key), "score": r.mos, "quality": r.unit, "error": r.error}
            for r in scorer.stream(files, progress=not args.quiet)]
    table = pd.DataFrame(rows, columns=["path", "score", "quality", "error"])
    _write(table, args.output)
    failed = int((table["error"] != "").sum())
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
        return _score(args)
    except InputError as err:
        print(f"qfm-iqm: error: {err}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
