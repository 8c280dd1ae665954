"""The ``qfm-iqm`` command line: scoring a messy folder, globs, CSV or JSON, exit statuses, the model card; and
its faults, with the shipped LIVEC model: nothing a user owns is deleted, no score is lost to a bad output
path, and every bad input gets one line that names it. The workflow's faults are in
``tests/workflow/test_faults.py``; ``bench/bad_inputs.py`` prints every case of both."""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import REPO, bomb_png, write_image
from PIL import Image

from qfm_iqm import load_model
from qfm_iqm.deploy import cli
from qfm_iqm.deploy.bundle import CONTENT_SHA256, INFO, Bundle
from qfm_iqm.io import InputError, write_csv
from qfm_iqm.settings import ConfigError, load_config_file

QFM_IQM = str(Path(sys.executable).with_name("qfm-iqm"))


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    for i in range(2):
        write_image(tmp_path / "photos" / f"p{i}.jpg", (160, 120), seed=i)
    return tmp_path / "photos"


def score(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    """``qfm-iqm score ARGS -q`` in this process: exit status, stdout, stderr."""
    code = cli.main(["score", *args, "-q"])
    out, err = capsys.readouterr()
    return code, out, err


def _one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# -- nothing a user owns is deleted ---------------------------------------------------------------------------------

def test_score_into_an_existing_folder_is_refused_before_scoring(photos: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "out/p.csv").mkdir(parents=True)
    (tmp_path / "out/p.csv/part-0000").write_text("keep")
    code, out, err = score(capsys, str(photos), "-o", str(tmp_path / "out/p.csv"))
    assert code == cli.EXIT_USAGE and out == ""
    assert "is a folder: a file cannot be written there (nothing was removed" in _one_error_line(err)
    assert (tmp_path / "out/p.csv/part-0000").read_text() == "keep"


# -- no score is lost to a bad output path --------------------------------------------------------------------------

def test_an_unwritable_output_is_refused_before_scoring(photos: Path, capsys) -> None:
    code, out, err = score(capsys, str(photos), "-o", "/proc/x.csv")
    assert code == cli.EXIT_USAGE and out == ""
    assert _one_error_line(err) == "qfm-iqm: error: cannot write /proc/x.csv: No such file or directory in /proc"


def failing_write(monkeypatch: pytest.MonkeyPatch, recovery_too: bool = False) -> None:
    """Writing scores.csv fails as on a read-only file system, and so does its recovery file with ``recovery_too``."""
    def write(table: pd.DataFrame, path: str | os.PathLike) -> None:
        if Path(path).name == "scores.csv" or (recovery_too and ".recovered-" in Path(path).name):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        write_csv(table, path)

    monkeypatch.setattr(cli, "write_csv", write)


def test_a_failed_final_write_leaves_the_scores_in_a_recovery_file(photos: Path, tmp_path: Path, capsys,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    (photos / "bad.jpg").write_bytes(b"not a jpeg")
    failing_write(monkeypatch)
    code, _, err = score(capsys, str(photos), "-o", str(tmp_path / "scores.csv"))
    assert code == cli.EXIT_RUN_FAILED, err
    recovered = sorted(tmp_path.glob("scores.recovered-*.csv"))
    assert len(recovered) == 1 and not (tmp_path / "scores.csv").exists()
    assert err.splitlines()[-1] == (f"qfm-iqm: error: could not write {tmp_path / 'scores.csv'} (Read-only file "
                                    f"system); the scores of all 3 files went to {recovered[0]}")
    table = pd.read_csv(recovered[0], keep_default_na=False)
    assert [Path(p).name for p in table["path"]] == ["bad.jpg", "p0.jpg", "p1.jpg"]
    assert table["error"].astype(bool).tolist() == [True, False, False]


def test_when_no_file_can_be_written_the_scores_go_to_stdout(photos: Path, tmp_path: Path, capsys,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    failing_write(monkeypatch, recovery_too=True)
    code, out, err = score(capsys, str(photos), "-o", str(tmp_path / "scores.csv"))
    assert code == cli.EXIT_RUN_FAILED and err.splitlines()[-1].endswith("the scores of all 2 files went to stdout")
    assert len(pd.read_csv(io.StringIO(out))) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]  # no empty recovery file left


@pytest.mark.slow  # runs the qfm-iqm command in two new processes, which import torch (3-4 s each)
def test_scores_that_stdout_does_not_take_go_to_a_recovery_file(tiny_bundle: Path, photos: Path,
                                                                 tmp_path: Path) -> None:
    """stdout full (``> /dev/full``), or a pipe closed early (``| true``): exit 3, one line naming the recovery
    file in the working folder, which holds every score; no traceback and no file named after ``-``."""
    args = [QFM_IQM, "score", str(photos), "--model", str(tiny_bundle), "-q"]
    with open("/dev/full", "w") as full:
        proc = subprocess.run(args, stdout=full, stderr=subprocess.PIPE, text=True, cwd=tmp_path, check=False)
    closed = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    closed.stdout.close()
    errors = {"No space left on device": proc.stderr, "Broken pipe": closed.communicate()[1]}
    recovered = sorted(tmp_path.glob("qfm-iqm-scores.recovered-*.csv"))
    assert proc.returncode == closed.returncode == cli.EXIT_RUN_FAILED and len(recovered) == 2
    for (reason, err), path in zip(errors.items(), recovered):
        assert any(_one_error_line(err) == f"qfm-iqm: error: could not write stdout ({reason}); the scores of all 2 "
                   f"files went to {p}" for p in recovered), err
        assert pd.read_csv(path)["score"].notna().sum() == 2
    assert not list(tmp_path.glob("-*"))


@pytest.mark.parametrize("output", ["-", "scores.json"])
def test_ctrl_c_keeps_the_rows_so_far_and_exits_130(tiny_bundle: Path, photos: Path, tmp_path: Path, capsys,
                                                    monkeypatch: pytest.MonkeyPatch, output: str) -> None:
    """Ctrl-C while the second image is scored: the first's row goes to a file beside the output (the working
    folder for stdout), the output is not written, and one line says so."""
    from qfm_iqm.deploy.scorer import Scorer

    stream = Scorer.stream

    def interrupted(self: Scorer, *args: object, **kwargs: object):
        yield next(stream(self, *args, **kwargs))
        raise KeyboardInterrupt

    monkeypatch.setattr(Scorer, "stream", interrupted)
    monkeypatch.chdir(tmp_path)
    code, out, err = score(capsys, str(photos), "--model", str(tiny_bundle), "-o", output)
    kept = sorted(tmp_path.glob(f"{'qfm-iqm-scores' if output == '-' else 'scores'}.interrupted-*"))
    assert code == cli.EXIT_INTERRUPTED and out == "" and len(kept) == 1
    unwritten = "" if output == "-" else "; scores.json was not written"
    assert _one_error_line(err) == f"qfm-iqm: interrupted after scoring 1 of 2 files; their rows went to {kept[0]}" \
                                   f"{unwritten}"
    assert not (tmp_path / "scores.json").exists()
    assert kept[0].suffix == (".csv" if output == "-" else ".json")
    rows = pd.read_csv(kept[0]) if output == "-" else pd.DataFrame(json.loads(kept[0].read_text()))
    assert rows["path"].tolist() == [str(photos / "p0.jpg")] and rows["score"].notna().all()


def test_another_writer_of_the_same_output_is_not_overwritten(tiny_bundle: Path, photos: Path, tmp_path: Path,
                                                               capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two scorers with one ``-o``: the one that finishes second finds the file changed since it started, and
    puts its scores in a recovery file instead."""
    from qfm_iqm.deploy.scorer import Scorer

    stream, out = Scorer.stream, tmp_path / "scores.csv"

    def racing(self: Scorer, *args: object, **kwargs: object):
        out.write_text("path,score,quality,error\nother.jpg,50,0.5,\n")  # the other scorer finishes first
        yield from stream(self, *args, **kwargs)

    monkeypatch.setattr(Scorer, "stream", racing)
    code, _, err = score(capsys, str(photos), "--model", str(tiny_bundle), "-o", str(out))
    [recovered] = tmp_path.glob("scores.recovered-*.csv")
    assert code == cli.EXIT_RUN_FAILED and "other.jpg" in out.read_text()
    assert _one_error_line(err) == (f"qfm-iqm: error: {out} changed while the files were scored (another qfm-iqm "
                                    f"writing it?), so it was not overwritten; the scores of all 2 files went to "
                                    f"{recovered}")


def test_an_output_inside_the_scored_folder_is_not_scored_itself(tiny_bundle: Path, photos: Path, capsys) -> None:
    for _ in range(2):
        code, _, err = score(capsys, str(photos), "--model", str(tiny_bundle), "-o", str(photos / "scores.csv"))
        assert code == cli.EXIT_OK, err
    assert pd.read_csv(photos / "scores.csv")["path"].tolist() == [str(photos / "p0.jpg"), str(photos / "p1.jpg")]


def test_a_tiny_image_is_scored_with_a_warning(tiny_bundle: Path, tmp_path: Path, capsys) -> None:
    Image.new("RGB", (1, 1), (120, 50, 9)).save(tmp_path / "dot.png")
    code, _, err = score(capsys, str(tmp_path / "dot.png"), "--model", str(tiny_bundle))
    assert code == cli.EXIT_OK and err.splitlines()[-1] == (
        f"qfm-iqm: warning: {tmp_path / 'dot.png'} is 1x1 px, under 32 px on a side: it was scaled up, and its score "
        "says little about its quality")


@pytest.mark.slow  # runs the qfm-iqm command in two new processes, which import torch (3-4 s each)
def test_q_hides_pillows_warnings(tiny_bundle: Path, tmp_path: Path) -> None:
    """pytest records warnings itself, so this runs the command as a user does."""
    exif = Image.Exif()
    exif[0x010E] = "x" * 50
    Image.new("RGB", (64, 48), (90, 90, 90)).save(tmp_path / "exif.jpg", exif=exif.tobytes()[:-30])  # cut short
    args = [QFM_IQM, "score", str(tmp_path / "exif.jpg"), "--model", str(tiny_bundle)]
    loud, quiet = (subprocess.run(a, capture_output=True, text=True, check=True) for a in (args, [*args, "-q"]))
    assert "TiffImagePlugin.py" in loud.stderr and "Warning" in loud.stderr  # Pillow complains about the EXIF
    assert "Warning" not in quiet.stderr and "TiffImagePlugin" not in quiet.stderr


# -- every bad input gets one line -----------------------------------------------------------------------------------

def test_bad_devices_are_one_line_naming_the_option(photos: Path, capsys) -> None:
    code, _, err = score(capsys, str(photos), "--device", "banana")
    assert code == cli.EXIT_USAGE
    assert _one_error_line(err) == "qfm-iqm: error: --device: 'banana' is not a device (cpu, cuda or cuda:N)"
    if not torch.cuda.is_available():
        code, _, err = score(capsys, str(photos), "--device", "cuda:7")
        assert code == cli.EXIT_USAGE and _one_error_line(err) == (
            "qfm-iqm: error: --device: 'cuda:7', but torch sees no CUDA device on this machine (use cpu)")
    with pytest.raises(InputError, match="^device: 'banana' is not a device"):
        load_model("livec", device="banana")


def deny_folder(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Listing ``folder`` fails as after ``chmod 000`` for a user who is not root (root reads any folder)."""
    scandir = os.scandir

    def denied(path: str | os.PathLike = ".") -> os.ScandirIterator:
        if Path(path) == folder:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", denied)


def test_links_fifos_unreadable_folders_and_empty_globs_each_get_a_row(photos: Path, tmp_path: Path, capsys,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    (photos / "dangling.jpg").symlink_to("nowhere.jpg")
    (photos / "loop_a").symlink_to("loop_b")
    (photos / "loop_b").symlink_to("loop_a")
    os.mkfifo(photos / "pipe.jpg")
    locked = tmp_path / "locked"
    write_image(locked / "x.jpg")
    deny_folder(monkeypatch, locked)
    code, out, err = score(capsys, str(photos), str(locked), str(tmp_path / "none" / "*.png"))
    rows = pd.read_csv(io.StringIO(out), keep_default_na=False).set_index("path")["error"]
    assert code == cli.EXIT_IMAGE_FAILED, err
    assert rows.to_dict() == {
        str(photos / "dangling.jpg"): f"broken symbolic link: {photos / 'dangling.jpg'} -> nowhere.jpg",
        str(photos / "loop_a"): f"symbolic link loop: {photos / 'loop_a'}",
        str(photos / "loop_b"): f"symbolic link loop: {photos / 'loop_b'}",
        str(photos / "p0.jpg"): "", str(photos / "p1.jpg"): "",
        str(photos / "pipe.jpg"): f"not an image file: {photos / 'pipe.jpg'} is a FIFO",
        str(locked): f"cannot read folder {locked} (Permission denied)",
        str(tmp_path / "none" / "*.png"): f"no files match {tmp_path / 'none' / '*.png'}",
    }
    assert "scored 2 of 8 files" in err


def test_check_config_refuses_a_repeated_section_and_checks_settings_against_the_schema(
        tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # the workflow's config/config.yaml is the base
    (tmp_path / "dup.yaml").write_text("student:\n  train:\n    epochs: 3\nstudent:\n  hidden: 8\n")
    (tmp_path / "lr.yaml").write_text("student:\n  train:\n    lr: 1e-3\n")
    (tmp_path / "ok.yaml").write_text("student:\n  train:\n    lr: 1.0e-3\n")
    assert cli.main(["check-config", str(tmp_path / "dup.yaml")]) == cli.EXIT_USAGE
    assert "line 4, column 1: key 'student' appears twice in one section (lines 1 and 4)" in \
        _one_error_line(capsys.readouterr().err)
    assert cli.main(["check-config", str(tmp_path / "lr.yaml")]) == cli.EXIT_USAGE
    assert "config key 'student.train.lr': 1e-3 is text to YAML 1.1" in capsys.readouterr().err
    assert cli.main(["check-config", str(tmp_path / "ok.yaml")]) == cli.EXIT_OK
    assert capsys.readouterr().err.splitlines()[-1].endswith("config/config.yaml are valid")
    monkeypatch.chdir(tmp_path)  # no checkout: the YAML is read, the settings are not checked
    assert cli.main(["check-config", str(tmp_path / "ok.yaml")]) == cli.EXIT_OK
    assert "the settings were not checked against the schema" in capsys.readouterr().err


def test_an_image_over_the_pixel_limit_is_a_row_without_pillows_warning(tmp_path: Path, capsys) -> None:

    bomb = bomb_png(tmp_path / "big.png", 10000, 10000)  # 100 Mpx: Pillow only warns below twice its 89.5 Mpx
    code, out, err = score(capsys, str(bomb))
    assert code == cli.EXIT_IMAGE_FAILED and "DecompressionBombWarning" not in err
    assert f"image too large: {bomb} (100.0 Mpx; the limit is 89.5 Mpx)" in out


# -- bundles: bundle.json is checksummed too ----------------------------------------------------------------------

def test_an_edited_bundle_json_is_refused(livec_copy: Path, photos: Path, capsys) -> None:
    info = json.loads((livec_copy / INFO).read_text())
    info["scale"]["max"] += 10  # would shift every score
    (livec_copy / INFO).write_text(json.dumps(info, indent=2))
    with pytest.raises(InputError, match=f"{livec_copy / INFO}: its content has SHA-256 [0-9a-f]{{64}}, but "
                                         f"{info[CONTENT_SHA256]} is recorded in it"):
        Bundle.open(livec_copy)
    code, out, err = score(capsys, str(photos), "--model", str(livec_copy))
    assert code == cli.EXIT_USAGE and out == "" and "its content has SHA-256" in _one_error_line(err)


# -- config files ---------------------------------------------------------------------------------------------------

def test_a_broken_yaml_config_names_its_file_line_and_column(tmp_path: Path, capsys) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("run: [own]\ndatasets:\n  own: {kind: labels\n")
    with pytest.raises(ConfigError, match=f"^config file {broken}, line 4, column 1: expected ',' or '}}'"):
        load_config_file(broken)
    assert cli.main(["check-config", str(broken)]) == cli.EXIT_USAGE
    assert _one_error_line(capsys.readouterr().err).startswith(f"qfm-iqm: error: config file {broken}, line 4")


# -- the tiny bundle made in-process: a messy folder, globs, JSON, usage errors, the model card ------------------------

@pytest.mark.slow  # runs the qfm-iqm command in a new process: torch, the model, a decoding worker (4-6 s)
def test_a_folder_with_bad_files_scores_every_image_and_exits_non_zero(tiny_bundle: Path, messy_folder: Path) -> None:
    out = messy_folder.parent / "scores.csv"
    proc = subprocess.run([QFM_IQM, "score", str(messy_folder), "--model", str(tiny_bundle), "-o", str(out)],
                          check=False, capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr
    table = pd.read_csv(out, keep_default_na=False).set_index("path")
    names = {Path(p).name: row for p, row in table.iterrows()}
    assert sorted(names) == ["corrupt.jpg", "notes.txt", "ok0.jpg", "ok1.jpg", "ok2.jpg", "truncated.png"]
    for bad in ("corrupt.jpg", "notes.txt", "truncated.png"):
        assert bad in names[bad]["error"] and names[bad]["score"] == ""
    for good in ("ok0.jpg", "ok1.jpg", "ok2.jpg"):
        assert names[good]["error"] == "" and 0 <= float(names[good]["quality"]) <= 1
    assert "scored 3 of 6 files" in proc.stderr and "score: 100%" in proc.stderr  # the progress bar is on stderr


def test_recursive_globs_and_json_output(tiny_bundle: Path, messy_folder: Path) -> None:
    out = messy_folder.parent / "scores.json"
    code = cli.main(["score", str(messy_folder / "**" / "*.png"), str(messy_folder / "ok0.jpg"), "--recursive",
                     "--model", str(tiny_bundle), "-o", str(out), "-q"])
    rows = json.loads(out.read_text())
    assert [Path(r["path"]).name for r in rows] == ["deep.png", "truncated.png", "ok0.jpg"]
    assert code == 1 and rows[0]["error"] == "" and rows[1]["score"] is None


def test_every_image_fine_exits_zero_and_matches_the_api(tiny_bundle: Path, messy_folder: Path, capsys) -> None:
    files = sorted(messy_folder.glob("ok*.jpg"))
    assert cli.main(["score", *map(str, files), "--model", str(tiny_bundle), "-q"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    np.testing.assert_allclose(table["score"], load_model(tiny_bundle, compile="off")(files), rtol=0, atol=5e-5)
    assert list(table.columns) == ["path", "score", "quality", "model", "error"] and (table["model"] == "tiny").all()
    assert (table[["score", "quality"]] == table[["score", "quality"]].round(4)).all().all()  # to 4 decimals


@pytest.mark.slow  # runs the qfm-iqm command in a new process each, which imports torch (2-3 s each)
@pytest.mark.parametrize("args, message", [
    (["score", "x.jpg", "--model", "no_such_model"], "unknown model 'no_such_model'"),
    (["score", "x.jpg", "--model", "{bundle}", "-o", "scores.xlsx"], "--output scores.xlsx: name a .csv or .json"),
    (["info", "{missing}"], "bundle file model.pt is missing"),
])
def test_model_and_usage_errors_are_one_line_and_exit_2(args: list[str], message: str, bundle_copy: Path,
                                                         tmp_path: Path) -> None:
    shutil.copytree(bundle_copy, tmp_path / "missing")
    (tmp_path / "missing" / "model.pt").unlink()
    args = [a.format(bundle=bundle_copy, missing=tmp_path / "missing") for a in args]
    proc = subprocess.run([QFM_IQM, *args], check=False, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and message in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow  # runs the qfm-iqm command in two new processes, which import torch (2-3.5 s)
def test_info_prints_the_model_card_and_help_names_every_option(tiny_bundle: Path) -> None:
    proc = subprocess.run([QFM_IQM, "info", str(tiny_bundle)], capture_output=True, text=True, check=True)
    assert proc.stdout == (tiny_bundle / "MODEL.md").read_text()
    usage = subprocess.run([QFM_IQM, "score", "--help"], capture_output=True, text=True, check=True).stdout
    for option in ("--model", "--recursive", "--output", "--device", "--batch-size", "--compile", "Exit status"):
        assert option in usage
