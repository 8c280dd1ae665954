"""Every bad input of issues 22 and 34 against the ``qfm-iqm`` command line, the Python API and a tiny workflow: one line per
case with the input, the exit code and the first line of the error (or the result), then whether any case printed
a traceback. The workflow cases run Snakemake on the tests' 12-image ``labels`` folder.

    python bench/bad_inputs.py            # a few minutes on 2 cores
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO / "tests/workflow"), str(REPO / "tests/deploy")]

from conftest import bomb_png, write_image  # noqa: E402
from test_cli import deny_folder, failing_write  # noqa: E402
from test_faults import FEATURES, LABELS, _rows, labels_workdir  # noqa: E402
from test_io import float_rgb_tiff  # noqa: E402
from workflow_helpers import scheduled_jobs, snakemake, tiny_config, write_config  # noqa: E402

from qfm_iqm import load_model  # noqa: E402
from qfm_iqm.deploy import cli  # noqa: E402
from qfm_iqm.deploy.bundle import CONTENT_SHA256, INFO, shipped  # noqa: E402
from qfm_iqm.io import InputError  # noqa: E402

QFM_IQM = str(Path(sys.executable).with_name("qfm-iqm"))
Outcome = tuple[str, int | str, str]  # input, exit code (or "raised"), first line of the error or the result
CASES: dict[str, Callable[[Path], Outcome]] = {}
TRACEBACKS: list[str] = []


def case(name: str) -> Callable[[Callable[[Path], Outcome]], Callable[[Path], Outcome]]:
    def register(fn: Callable[[Path], Outcome]) -> Callable[[Path], Outcome]:
        CASES[name] = fn
        return fn

    return register


def photos(work: Path, n: int = 2) -> Path:
    for i in range(n):
        write_image(work / "photos" / f"p{i}.jpg", (160, 120), seed=i)
    return work / "photos"


def qfm_iqm(work: Path, *args: str) -> tuple[int, str, str]:
    """``qfm-iqm ARGS -q`` as a user runs it: exit status, stdout, stderr."""
    proc = subprocess.run([QFM_IQM, *args, "-q"] if args[0] == "score" else [QFM_IQM, *args], cwd=work,
                          capture_output=True, text=True, check=False)
    if "Traceback" in proc.stderr:
        TRACEBACKS.append(" ".join(args))
    return proc.returncode, proc.stdout, proc.stderr


MARKERS = ("qfm-iqm: error:", "ERROR in ", "config key", "unknown config key", "Config file is not valid",
           "config file ", "qfm-iqm: failed:")


def error_line(stderr: str) -> str:
    """The first line that says what went wrong (by the first of ``MARKERS`` found)."""
    lines = [line.strip() for line in stderr.splitlines()]
    found = (line for marker in MARKERS for line in lines if line.startswith(marker))
    return next(found, lines[0] if lines else "")


def row_errors(stdout: str) -> str:
    """The error column of the CSV rows that have one, joined."""
    table = pd.read_csv(io.StringIO(stdout), keep_default_na=False)
    return " | ".join(e for e in table["error"] if e) or f"{len(table)} rows, no error"


# -- the command line ------------------------------------------------------------------------------------------------

@case("output path is an existing folder")
def _(work: Path) -> Outcome:
    (work / "out/p.csv").mkdir(parents=True)
    (work / "out/p.csv/part-0000").write_text("spark output")
    code, _, err = qfm_iqm(work, "score", str(photos(work)), "-o", "out/p.csv")
    kept = (work / "out/p.csv/part-0000").read_text() == "spark output"
    return "-o out/p.csv (a folder)", code, f"{error_line(err)} [folder kept: {kept}]"


@case("output in /proc")
def _(work: Path) -> Outcome:
    code, _, err = qfm_iqm(work, "score", str(photos(work)), "-o", "/proc/x.csv")
    return "-o /proc/x.csv", code, error_line(err)


@case("final write fails (injected)")
def _(work: Path) -> Outcome:
    err = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stderr(err):
        failing_write(patch)
        code = cli.main(["score", str(photos(work)), "-o", str(work / "scores.csv"), "-q"])
    return "-o scores.csv, its write fails (EROFS)", code, err.getvalue().splitlines()[-1]


@case("a corrupt image among good ones")
def _(work: Path) -> Outcome:
    (photos(work) / "bad.jpg").write_bytes(b"not a jpeg")
    code, out, _ = qfm_iqm(work, "score", "photos")
    return "photos/ with bad.jpg", code, row_errors(out)


@case("--device banana")
def _(work: Path) -> Outcome:
    code, _, err = qfm_iqm(work, "score", str(photos(work)), "--device", "banana")
    return "--device banana", code, error_line(err)


@case("--device cuda:7")
def _(work: Path) -> Outcome:
    code, _, err = qfm_iqm(work, "score", str(photos(work)), "--device", "cuda:7")
    return "--device cuda:7", code, error_line(err)


@case("unreadable input folder")
def _(work: Path) -> Outcome:
    write_image(work / "locked" / "x.jpg")
    os.chmod(work / "locked", 0)
    try:
        if os.geteuid() != 0:
            code, out, _ = qfm_iqm(work, "score", "locked")
            return "locked/ (chmod 000)", code, row_errors(out)
        out = io.StringIO()  # root reads any folder: inject what a user who is not root sees
        with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out), \
                contextlib.redirect_stderr(io.StringIO()):
            deny_folder(patch, work / "locked")
            code = cli.main(["score", str(work / "locked"), "-q"])
        return "locked/ (chmod 000; as root, the denial is injected)", code, row_errors(out.getvalue())
    finally:
        os.chmod(work / "locked", 0o755)


@case("dangling link, link loop, FIFO")
def _(work: Path) -> Outcome:
    folder = photos(work, 1)
    (folder / "dangling.jpg").symlink_to("nowhere.jpg")
    (folder / "loop_a").symlink_to("loop_b")
    (folder / "loop_b").symlink_to("loop_a")
    os.mkfifo(folder / "pipe.jpg")
    code, out, _ = qfm_iqm(work, "score", "photos")
    return "photos/ with dangling.jpg, loop_a <-> loop_b, pipe.jpg", code, row_errors(out)


@case("quoted glob that matches nothing")
def _(work: Path) -> Outcome:
    photos(work, 1)
    code, out, _ = qfm_iqm(work, "score", "nothing/*.png", "photos/p0.jpg")
    return "'nothing/*.png' photos/p0.jpg", code, row_errors(out)


@case("image between 1x and 2x Pillow's limit, -q")
def _(work: Path) -> Outcome:
    bomb_png(work / "big.png", 10000, 10000)
    code, out, err = qfm_iqm(work, "score", "big.png")
    warned = "DecompressionBombWarning" in err
    return "big.png (100 Mpx)", code, f"{row_errors(out)} [Pillow's warning printed: {warned}]"


@case("bundle.json edited (score scale)")
def _(work: Path) -> Outcome:
    bundle = Path(shutil.copytree(shipped("livec"), work / "livec"))
    info = json.loads((bundle / INFO).read_text())
    info["scale"]["max"] += 10
    (bundle / INFO).write_text(json.dumps(info, indent=2))
    code, _, err = qfm_iqm(work, "score", str(photos(work)), "--model", "./livec")
    return "livec/bundle.json with scale.max + 10", code, error_line(err)


@case("bundle.json from before the digest")
def _(work: Path) -> Outcome:
    bundle = Path(shutil.copytree(shipped("livec"), work / "livec"))
    info = json.loads((bundle / INFO).read_text())
    del info[CONTENT_SHA256]
    (bundle / INFO).write_text(json.dumps(info, indent=2))
    code, _, err = qfm_iqm(work, "score", str(photos(work)), "--model", "./livec")
    return "livec/bundle.json without content_sha256", code, err.splitlines()[0]


@case("broken YAML config (check-config)")
def _(work: Path) -> Outcome:
    (work / "broken.yaml").write_text("run: [own]\ndatasets:\n  own: {kind: labels\n")
    code, _, err = qfm_iqm(work, "check-config", "broken.yaml")
    return "qfm-iqm check-config broken.yaml", code, error_line(err)


@case("stdout full (> /dev/full)")
def _(work: Path) -> Outcome:
    photos(work)
    with open("/dev/full", "w") as full:
        proc = subprocess.run([QFM_IQM, "score", "photos", "-q"], cwd=work, stdout=full, stderr=subprocess.PIPE,
                              text=True, check=False)
    kept = [len(pd.read_csv(p)) for p in work.glob("qfm-iqm-scores.recovered-*.csv")]
    return "score photos -q > /dev/full", proc.returncode, f"{error_line(proc.stderr)} [rows kept: {kept}]"


@case("stdout a pipe closed early (| true)")
def _(work: Path) -> Outcome:
    photos(work)
    proc = subprocess.Popen([QFM_IQM, "score", "photos", "-q"], cwd=work, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    proc.stdout.close()
    err = proc.communicate()[1]
    return "score photos -q | true", proc.returncode, error_line(err)


@case("Ctrl-C while scoring")
def _(work: Path) -> Outcome:
    for i in range(60):
        write_image(work / "many" / f"m{i:02d}.jpg", (320, 240), seed=i)
    proc = subprocess.Popen([QFM_IQM, "score", "many", "-o", "sig.csv"], cwd=work, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,  # Ctrl-C's default, which a shell's background jobs lack:
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = b""
    while not re.search(rb"\| +[1-9]\d/60", seen) and proc.poll() is None:  # 10 or more scored
        seen += os.read(proc.stderr.fileno(), 256)
    proc.send_signal(signal.SIGINT)
    err = (seen + proc.communicate()[1]).decode()
    if "Traceback" in err:
        TRACEBACKS.append("Ctrl-C while scoring")
    line = next((ln.strip() for ln in err.replace("\r", "\n").splitlines() if ln.startswith("qfm-iqm:")), "")
    return "score many/ (60) -o sig.csv, SIGINT", proc.returncode, f"{line} [sig.csv written: {(work / 'sig.csv').exists()}]"


@case("link loops under -r and **")
def _(work: Path) -> Outcome:
    write_image(work / "photos/2024/a.jpg")
    write_image(work / "photos/b.jpg")
    (work / "photos/current").symlink_to(".")
    (work / "photos/loop").symlink_to("..")
    code, out, err = qfm_iqm(work, "score", "photos/**/*.jpg", "-r")
    rows = len(pd.read_csv(io.StringIO(out)))
    return "'photos/**/*.jpg' -r with current -> . and loop -> ..", code, \
        f"{rows} rows; {err.splitlines()[0]}"


@case("a symlinked subfolder under -r")
def _(work: Path) -> Outcome:
    write_image(work / "photos/b.jpg")
    write_image(work / "elsewhere/c.jpg")
    (work / "photos/extra").symlink_to("../elsewhere")
    code, out, _ = qfm_iqm(work, "score", "photos", "-r")
    return "photos/ -r with extra -> ../elsewhere", code, " ".join(pd.read_csv(io.StringIO(out))["path"])


@case("two scorers, one -o")
def _(work: Path) -> Outcome:
    from qfm_iqm.deploy.scorer import Scorer

    stream, out, err = Scorer.stream, work / "scores.csv", io.StringIO()

    def racing(self: Scorer, *args: object, **kwargs: object):
        out.write_text("path,score,quality,error\nother.jpg,50,0.5,\n")
        yield from stream(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stderr(err), \
            contextlib.redirect_stdout(io.StringIO()):
        patch.setattr(Scorer, "stream", racing)
        code = cli.main(["score", str(photos(work)), "-o", str(out), "-q"])
    return "-o scores.csv written by another scorer meanwhile (injected)", code, err.getvalue().splitlines()[-1]


@case("-o inside the scored folder, run twice")
def _(work: Path) -> Outcome:
    photos(work)
    qfm_iqm(work, "score", "photos", "-o", "photos/scores.csv")
    code, _, err = qfm_iqm(work, "score", "photos", "-o", "photos/scores.csv")
    return "score photos -o photos/scores.csv (twice)", code, err.splitlines()[-1]


@case("a 1x1 image")
def _(work: Path) -> Outcome:
    Image.new("RGB", (1, 1), (120, 50, 9)).save(work / "dot.png")
    code, _, err = qfm_iqm(work, "score", "dot.png")
    return "dot.png (1x1)", code, err.splitlines()[-1]


@case("HEIC and float RGB TIFF")
def _(work: Path) -> Outcome:
    (work / "phone.heic").write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64))
    float_rgb_tiff(work / "float.tif")
    code, out, _ = qfm_iqm(work, "score", "phone.heic", "float.tif")
    return "phone.heic float.tif", code, row_errors(out)


@case("corrupt EXIF, -q")
def _(work: Path) -> Outcome:
    exif = Image.Exif()
    exif[0x010E] = "x" * 50
    Image.new("RGB", (64, 48), (90, 90, 90)).save(work / "exif.jpg", exif=exif.tobytes()[:-30])
    code, _, err = qfm_iqm(work, "score", "exif.jpg")
    return "exif.jpg (EXIF cut short) -q", code, f"{err.splitlines()[-1]} [Pillow's warning printed: {'Warning' in err}]"


@case("a repeated config section (check-config)")
def _(work: Path) -> Outcome:
    (work / "my.yaml").write_text("student:\n  hidden: 256\n  train:\n    lr: 1.0e-3\nstudent:\n  train:\n    epochs: 3\n")
    code, _, err = qfm_iqm(work, "check-config", "my.yaml")
    return "student: twice in my.yaml", code, error_line(err)


@case("lr: 1e-3 (check-config)")
def _(work: Path) -> Outcome:
    (work / "lr.yaml").write_text("student:\n  train:\n    lr: 1e-3\n")
    code, _, err = qfm_iqm(work, "check-config", "lr.yaml")
    return "lr: 1e-3 in lr.yaml", code, next(ln.strip() for ln in err.splitlines() if "config key" in ln)


# -- the Python API --------------------------------------------------------------------------------------------------

def api(call: Callable[[], object]) -> tuple[int | str, str]:
    try:
        call()
    except InputError as err:
        return "raised", f"InputError: {err}"
    except Exception as err:  # noqa: BLE001 - reported, not hidden
        TRACEBACKS.append(repr(err))
        return "raised", f"{type(err).__name__}: {err}"
    return "returned", "no error"


@case("API: a 0x0 array")
def _(work: Path) -> Outcome:
    return "load_model()(np.zeros((0, 0, 3), np.uint8))", *api(lambda: load_model()(np.zeros((0, 0, 3), np.uint8)))


@case("API: an (H, W, C) tensor")
def _(work: Path) -> Outcome:
    return "load_model()(torch.zeros(48, 64, 3))", *api(lambda: load_model()(torch.zeros(48, 64, 3)))


@case("API: device cuda:7")
def _(work: Path) -> Outcome:
    return "load_model(device='cuda:7')", *api(lambda: load_model(device="cuda:7"))


@case("API: ids='ab' for two images")
def _(work: Path) -> Outcome:
    files = [str(p) for p in sorted(photos(work).iterdir())]
    return "load_model()(two files, ids='ab')", *api(lambda: load_model()(files, ids="ab"))


@case("API: batch_size=0")
def _(work: Path) -> Outcome:
    return "load_model(batch_size=0)", *api(lambda: load_model(batch_size=0))


# -- a tiny workflow -------------------------------------------------------------------------------------------------

def workflow(work: Path, config: Path, *args: str) -> tuple[int, str]:
    proc = snakemake(work, config, *args, check=False)
    if "Traceback" in proc.stderr.split("Complete log")[0] and "ERROR in" not in proc.stderr:
        TRACEBACKS.append(" ".join(args))
    return proc.returncode, error_line(proc.stderr)


@case("workflow: labels CSV with 4 rows")
def _(work: Path) -> Outcome:
    code, line = workflow(work, labels_workdir(work, _rows()[:4]), "results/own/summary.md")
    trained = any(work.glob("results/own/split*/teacher.pt"))
    return "own/labels.csv, 4 rows", code, f"{line} [any model trained: {trained}]"


@case("workflow: labels CSV in Windows-1252")
def _(work: Path) -> Outcome:
    config = labels_workdir(work)
    os.rename(work / "own/images/img00.png", work / "own/images/café.png")
    (work / LABELS).write_bytes((work / LABELS).read_text().replace("img00", "café").encode("cp1252"))
    code, _ = workflow(work, config, "data/own/meta.csv")
    log = (work / "logs/own/prepare_dataset.log").read_text()
    warning = next(line.split(" WARNING ")[1] for line in log.splitlines() if " WARNING " in line)
    return "own/labels.csv with café.png, cp1252", code, f"prepared; log: {warning}"


@case("workflow: labels CSV in no known encoding")
def _(work: Path) -> Outcome:
    config = labels_workdir(work)
    (work / LABELS).write_bytes(b"name,mos\nimg00.png,1\nimg\x8101.png,2\n")
    return "own/labels.csv with byte 0x81", *workflow(work, config, "data/own/meta.csv")


@case("workflow: backbone.device banana")
def _(work: Path) -> Outcome:
    config = tiny_config()
    config["backbone"]["device"] = "banana"
    return "backbone.device: banana", *workflow(work, write_config(work, config))


@case("workflow: backbone.device cuda:7")
def _(work: Path) -> Outcome:
    config = tiny_config()
    config["backbone"]["device"] = "cuda:7"
    code, line = workflow(work, write_config(work, config))
    return "backbone.device: cuda:7", code, f"{line} [jobs run first: {(work / 'data').exists()}]"


def dry_run(work: Path, config: Path, target: str = "data/own/meta.csv") -> str:
    jobs = dict(scheduled_jobs(snakemake(work, config, target, "-n")))
    return ", ".join(f"{rule} {n}" for rule, n in jobs.items()) or "nothing to rerun"


@case("workflow: a listed hidden / ../ image replaced")
def _(work: Path) -> Outcome:
    config = labels_workdir(work, [*_rows()[:10], ".hidden.png,11", "../extra/outside.png,12"])
    write_image(work / "own/images/.hidden.png", seed=20)
    write_image(work / "own/extra/outside.png", seed=21)
    code, _ = workflow(work, config, "data/own/meta.csv")
    time.sleep(1.1)
    write_image(work / "own/images/.hidden.png", seed=30)
    hidden = dry_run(work, config)
    snakemake(work, config, "data/own/meta.csv")
    write_image(work / "own/extra/outside.png", seed=30)
    return ".hidden.png, then ../extra/outside.png replaced", code, \
        f"dry run reruns: {hidden}; then: {dry_run(work, config)}"


@case("workflow: unrelated files in the image folder")
def _(work: Path) -> Outcome:
    config = labels_workdir(work)
    code, _ = workflow(work, config, "data/own/meta.csv")
    time.sleep(1.1)
    (work / "own/images/Thumbs.db").write_bytes(b"\0" * 64)
    write_image(work / "own/images/not_yet_labelled.png", seed=40)
    return "Thumbs.db and an unlabelled photo added", code, f"dry run reruns: {dry_run(work, config)}"


@case("workflow: a row with an extra field")
def _(work: Path) -> Outcome:
    config = labels_workdir(work, _rows(img02="img02.png,3,blurry, dark"))
    return "img02.png,3,blurry, dark under name,mos", *workflow(work, config, "data/own/meta.csv")


@case("workflow: scores 1e308 and -1e308")
def _(work: Path) -> Outcome:
    config = labels_workdir(work, _rows(img02="img02.png,1e308", img03="img03.png,-1e308"))
    return "two scores at the ends of the float range", *workflow(work, config, "data/own/meta.csv")


@case("workflow: a repeated config section")
def _(work: Path) -> Outcome:
    config = labels_workdir(work)
    config.write_text(config.read_text() + "student:\n  train:\n    epochs: 3\n")
    proc = snakemake(work, config, "-n", check=False)
    output = proc.stdout + proc.stderr
    return "student: appended to the config", proc.returncode, \
        next(line for line in output.splitlines() if "appears twice" in line)


def spoil(path: Path, truncate: bool) -> None:
    """A flipped byte or a cut, the timestamp kept."""
    stat, data = path.stat(), bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data[: len(data) // 2] if truncate else data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


@case("workflow: corrupt checkpoint, then cache")
def _(work: Path) -> Outcome:
    config = labels_workdir(work)
    teacher = "results/own/split0/teacher.pt"
    snakemake(work, config, teacher)
    spoil(work / teacher, truncate=True)
    code, checkpoint = workflow(work, config, "results/own/split0/pool_labels.csv")
    spoil(work / FEATURES, truncate=False)
    planned = dry_run(work, config, teacher)
    _, cache = workflow(work, config, teacher, "--forcerun", "train_teacher")
    return "teacher.pt cut, then a byte of labelled.npz flipped (timestamps kept)", code, \
        f"{checkpoint} | dry run after the flip: {planned}; --forcerun train_teacher: {cache}"


@case("workflow: broken YAML --configfile")
def _(work: Path) -> Outcome:
    (work / "broken.yaml").write_text("run: [own]\ndatasets:\n  own: {kind: labels\n")
    code, line = workflow(work, work / "broken.yaml")
    return "--configfile broken.yaml (Snakemake's message; see check-config)", code, line


def main() -> None:
    logging.disable(logging.WARNING)  # the API cases' warnings are not the point here
    print(f"{'case':<46} {'exit':>8}  input -> first line")
    for name, run in CASES.items():
        with tempfile.TemporaryDirectory() as tmp:
            given, code, line = run(Path(tmp))
        print(f"{name:<46} {code!s:>8}  {given} -> {line.replace(tmp, '.')}", flush=True)
    print(f"\n{len(CASES)} cases; tracebacks: {TRACEBACKS or 'none'}")


if __name__ == "__main__":
    main()
