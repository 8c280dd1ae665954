"""The ``qfm-iqm`` command line: score images with a shipped model or a bundle, and print model cards."""

from __future__ import annotations

import argparse
import functools
import logging
import os
import signal
import sys
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from qfm_iqm.version import __version__
from qfm_iqm.deploy.listing import expand
from qfm_iqm.features.devices import check_device
from qfm_iqm.io import InputError, check_writable, write_csv, write_json
from qfm_iqm.settings import ConfigError, load_config_file, merged, validate

EXIT_OK, EXIT_IMAGE_FAILED, EXIT_USAGE, EXIT_RUN_FAILED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
FORMATS = {".csv": "csv", ".json": "json"}
STDOUT = "-"
RECOVERY = "qfm-iqm-scores.csv"  # the stem and suffix of the recovery file for stdout, in the working folder
COLUMNS = ["path", "score", "quality", "model", "error"]
BASE_CONFIG = Path("config/config.yaml")  # the workflow's base config, in a checkout
DECIMALS = 4  # a model's scores differ by more than 1e-4 between runs on different machines


def parser(prog: str = "qfm-iqm") -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog=prog, description="No-reference image quality with QFM-IQM models.")
    main.add_argument("--version", action="version", version=f"qfm-iqm {__version__}")
    commands = main.add_subparsers(dest="command", required=True)
    score = commands.add_parser(
        "score", help="score images", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Score images: one row per file with its path, its score on the MOS scale of the dataset the "
                    "model was trained on (score; qfm-iqm info MODEL gives the range and direction), the same on [0, 1] "
                    "with 1 = best (quality), both to 4 decimals, the model's name, and an error when the file could "
                    "not be scored.",
        epilog="Exit status: 0 when every file was scored; 1 when any file failed (its row says why); 2 for a "
               "usage, input or model error, found before scoring (nothing scored); 3 when the scores could not be "
               "written (the message says where they went instead); 130 when interrupted (Ctrl-C: the rows so far go "
               "to a file beside the output, the output is not written).\nExamples:\n  qfm-iqm score photo.jpg\n"
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
    score.add_argument("--quiet", "-q", action="store_true", help="no progress bar, and no warnings from Pillow")
    commands.add_parser("list", help="list the shipped models", description="List the shipped models: name, training "
                        "dataset, backbone and score scale (as pyiqa -ls).")
    info = commands.add_parser("info", help="print a model's card", description="Print a model's card (MODEL.md).")
    info.add_argument("model", nargs="?", default="livec", help="a shipped model's name or a bundle folder")
    check = commands.add_parser("check-config", help="find a workflow config file's errors",
                                description="Read workflow config files as Snakemake does, naming the file, line and "
                                            "column of a YAML error or of a key repeated in a section (Snakemake's "
                                            "own message names neither, and it keeps the last of repeated keys); in "
                                            "a checkout, then check their settings on top of config/config.yaml "
                                            "against the workflow's schema.")
    check.add_argument("files", nargs="+", metavar="FILE", help="config files, e.g. config/livec.yaml")
    return main


def _write(table: pd.DataFrame, output: str) -> None:
    if output == STDOUT:
        try:
            table.to_csv(sys.stdout, index=False)
            sys.stdout.flush()
        except OSError:
            # Later writes, Python's own at exit among them, go nowhere rather than raise again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise
        return
    if FORMATS[Path(output).suffix.lower()] == "csv":  # checked before scoring
        write_csv(table, output)
    else:
        write_json(table.astype(object).where(table.notna(), None).to_dict("records"), output)


def _recover(table: pd.DataFrame, output: str, why: str = "recovered") -> str:
    """Write the scores that ``output`` did not take to a new file beside it (``RECOVERY`` in the working folder
    for stdout), else to stdout, else to stderr; where they went."""
    path, name = Path(RECOVERY if output == STDOUT else output), None
    try:
        fd, name = tempfile.mkstemp(prefix=f"{path.stem}.{why}-", suffix=path.suffix, dir=path.parent)
        os.close(fd)
        _write(table, name)
        return name
    except (OSError, InputError):
        if name is not None:
            Path(name).unlink(missing_ok=True)
        if output != STDOUT:
            _write(table, STDOUT)
            return "stdout"
        table.to_csv(sys.stderr, index=False)
        return "stderr"


@contextmanager
def _uninterrupted() -> Iterator[None]:
    """Ctrl-C waits until the block is done (scores being written are not cut short)."""
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, handler)


def _table(results: Sequence[object], model: str) -> pd.DataFrame:
    """One row per file: ``score`` on the model's training MOS scale, ``quality`` on [0, 1], both to ``DECIMALS``."""
    rows = [{"path": str(r.key), "score": r.mos, "quality": r.unit, "model": model, "error": r.error} for r in results]
    return pd.DataFrame(rows, columns=COLUMNS).round(DECIMALS)


def _score(args: argparse.Namespace) -> int:
    from qfm_iqm.deploy.scorer import Result, load_model

    if args.batch_size < 1:
        raise InputError(f"--batch-size {args.batch_size}: must be at least 1")
    if args.output != STDOUT:
        if Path(args.output).suffix.lower() not in FORMATS:
            raise InputError(f"--output {args.output}: name a .csv or .json file, or - for stdout")
        check_writable(args.output)
    check_device(args.device, "--device")
    if args.quiet:  # Pillow's warnings on odd files (a truncated EXIF block); decoding processes inherit this
        warnings.filterwarnings("ignore", module="PIL")
    before = _state(args.output)
    listed = [item for item in expand(args.paths, args.recursive) if not _same_file(item.path, args.output)]
    if not listed:
        raise InputError(f"no files found in {' '.join(args.paths)}")
    scorer = load_model(args.model, args.device, args.batch_size, args.compile)
    scored = scorer.stream([item.path for item in listed if not item.error], progress=not args.quiet)
    results: list[Result] = []
    try:
        for item in listed:
            results.append(Result(item.path, error=item.error) if item.error else next(scored))
    except KeyboardInterrupt:
        scored.close()  # ends the progress bar's line
        unwritten = "" if args.output == STDOUT else f"; {args.output} was not written"
        if not results:
            raise KeyboardInterrupt(f"before any file was scored{unwritten}") from None
        with _uninterrupted():
            where = _recover(_table(results, scorer.bundle.name), args.output, "interrupted")
        print(f"qfm-iqm: interrupted after scoring {sum(not r.error for r in results)} of {len(listed)} files; their "
              f"rows went to {where}{unwritten}", file=sys.stderr)
        return EXIT_INTERRUPTED
    with _uninterrupted():
        return _report(_table(results, scorer.bundle.name), args, scorer.bundle.name, before)


def _state(output: str) -> tuple[int, int, int] | None:
    """What is at ``output`` now (inode, size, modification time), to see another writer before overwriting it."""
    if output == STDOUT or not os.path.exists(output):
        return None
    stat = os.stat(output)
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def _same_file(path: Path, output: str) -> bool:
    return output != STDOUT and os.path.realpath(path) == os.path.realpath(output)


def _report(table: pd.DataFrame, args: argparse.Namespace, model: str, before: tuple | None) -> int:
    """Write the scores (unless another writer changed the output meanwhile) and say how it went; the exit
    status."""
    from qfm_iqm.features.extract import MIN_SIDE, header_size

    failed = int((table["error"] != "").sum())
    if _state(args.output) != before:
        print(f"qfm-iqm: error: {args.output} changed while the files were scored (another qfm-iqm writing it?), so "
              f"it was not overwritten; the scores of all {len(table)} files went to {_recover(table, args.output)}",
              file=sys.stderr)
        return EXIT_RUN_FAILED
    try:
        _write(table, args.output)
    except (OSError, InputError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        target = "stdout" if args.output == STDOUT else args.output
        print(f"qfm-iqm: error: could not write {target} ({reason}); the scores of all {len(table)} files went to "
              f"{_recover(table, args.output)}", file=sys.stderr)
        return EXIT_RUN_FAILED
    where = "" if args.output == STDOUT else f" -> {args.output}"
    print(f"qfm-iqm: scored {len(table) - failed} of {len(table)} files with model {model}{where}",
          file=sys.stderr)
    for row in table[table["error"] != ""].itertuples():
        print(f"qfm-iqm: failed: {row.error}", file=sys.stderr)
    for path in table.loc[table["error"] == "", "path"]:
        size = header_size(path)
        if 0 < min(size) < MIN_SIDE:
            print(f"qfm-iqm: warning: {path} is {size[0]}x{size[1]} px, under {MIN_SIDE} px on a side: it was scaled up, "
                  "and its score says little about its quality", file=sys.stderr)
    return EXIT_IMAGE_FAILED if failed else EXIT_OK


def _list() -> int:
    from qfm_iqm.deploy.bundle import Bundle
    from qfm_iqm.deploy.metric import list_models

    for name in list_models():
        info = Bundle.open(name).info
        scale = info["scale"]
        direction = "higher" if scale["higher_is_better"] else "lower"
        print(f"{name}\ttrained on {info['dataset']['name']} ({info['backbone']['name']}); score {scale['min']:.4g} to "
              f"{scale['max']:.4g}, {direction} is better; quality 0 to 1, higher is better")
    return EXIT_OK


def _check_config(files: list[str]) -> int:
    """Each file's YAML, keys repeated in a section included; then the settings of the files on top of the
    workflow's ``config/config.yaml`` (beside the first file, or in the working folder) against the schema, as
    Snakemake would read them."""
    configs = [load_config_file(file) for file in files]
    for file in files:
        print(f"qfm-iqm: {file}: valid YAML", file=sys.stderr)
    bases = [Path(files[0]).parent / BASE_CONFIG.name, BASE_CONFIG]
    base = next((path for path in bases if path.is_file()), None)
    if base is None:
        print(f"qfm-iqm: no {BASE_CONFIG} beside {files[0]} or here: the settings were not checked against the "
              "schema (run it in a checkout)", file=sys.stderr)
        return EXIT_OK
    validate(functools.reduce(merged, configs, load_config_file(base)))
    print(f"qfm-iqm: the settings of {' '.join(files)} on top of {base} are valid", file=sys.stderr)
    return EXIT_OK


def main(argv: Sequence[str] | None = None, prog: str = "qfm-iqm") -> int:
    """The command line; ``prog`` names the program in usage and help (``python -m qfm_iqm`` runs it too)."""
    args = parser(prog).parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="qfm-iqm: %(message)s")
    try:
        if args.command == "info":
            from qfm_iqm.deploy.bundle import Bundle

            print(Bundle.open(args.model).card(), end="")
            return EXIT_OK
        if args.command == "list":
            return _list()
        if args.command == "check-config":
            return _check_config(args.files)
        with warnings.catch_warnings():  # -q's filter ends with the command (tests call main in one process)
            return _score(args)
    except (InputError, ConfigError) as err:
        print(f"qfm-iqm: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as err:
        print(f"qfm-iqm: interrupted {err or 'before any file was scored'}", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
