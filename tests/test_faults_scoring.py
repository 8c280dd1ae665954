"""Fault injection on the scoring side (the ``qfm-iqm`` command line, ``qfm_iqm.load_model``, bundles and the file
helpers every stage writes through), with the shipped LIVEC model: nothing a user owns is deleted, no score is
lost to a bad output path, and every bad input gets one line that names it. The workflow's faults are in
``tests/test_faults.py``; ``bench/bad_inputs.py`` prints every case of both."""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import write_image

from qfm_iqm import load_model
from qfm_iqm.deploy import cli
from qfm_iqm.deploy.bundle import CONTENT_SHA256, INFO, Bundle, shipped
from qfm_iqm.io import InputError, atomic_path, write_csv
from qfm_iqm.pipeline.config import ConfigError, load_config_file


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

def test_a_folder_where_a_file_goes_is_refused_and_kept(tmp_path: Path) -> None:
    folder = tmp_path / "out.csv"
    (folder / "part-0000").parent.mkdir()
    (folder / "part-0000").write_text("spark output")
    with pytest.raises(InputError, match=f"{folder} is a folder: a file cannot be written there"):
        write_csv(pd.DataFrame({"a": [1]}), folder)
    assert (folder / "part-0000").read_text() == "spark output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]  # no temporary left


def test_folders_replace_folders_but_never_files(tmp_path: Path) -> None:
    target = tmp_path / "model"
    for content in ("first", "second"):
        with atomic_path(target, folder=True) as tmp:
            tmp.mkdir()
            (tmp / "f.txt").write_text(content)
    assert (target / "f.txt").read_text() == "second" and sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    (tmp_path / "file").write_text("mine")
    with pytest.raises(InputError, match="is a file: a folder cannot be written there"), \
            atomic_path(tmp_path / "file", folder=True) as tmp:
        tmp.mkdir()
    assert (tmp_path / "file").read_text() == "mine"


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


def test_an_image_over_the_pixel_limit_is_a_row_without_pillows_warning(tmp_path: Path, capsys) -> None:
    from test_faults import bomb_png

    bomb = bomb_png(tmp_path / "big.png", 10000, 10000)  # 100 Mpx: Pillow only warns below twice its 89.5 Mpx
    code, out, err = score(capsys, str(bomb))
    assert code == cli.EXIT_IMAGE_FAILED and "DecompressionBombWarning" not in err
    assert f"image too large: {bomb} (100.0 Mpx; the limit is 89.5 Mpx)" in out


@pytest.mark.parametrize("image, message", [
    (np.zeros((0, 0, 3), np.uint8), r"an image array of shape \(0, 0, 3\) has no pixels"),
    (np.zeros((0, 0), np.uint8), r"an image array of shape \(0, 0\) has no pixels"),
    (torch.zeros(48, 64, 3), r"an image tensor is \(C, H, W\) with C = 1, 3 or 4, not \(48, 64, 3\); for an "
                             r"\(H, W, C\) tensor give tensor.permute\(2, 0, 1\)"),
    (torch.zeros(3, 0, 5), r"an image tensor of shape \(3, 0, 5\) has no pixels"),
])
def test_unusable_arrays_and_tensors_are_named_by_their_own_shape(image: object, message: str) -> None:
    with pytest.raises(InputError, match=f"^{message}$"):
        load_model("livec")(image)


# -- bundles: bundle.json is checksummed too ----------------------------------------------------------------------

@pytest.fixture
def livec_copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(shipped("livec"), tmp_path / "livec"))


def test_an_edited_bundle_json_is_refused(livec_copy: Path, photos: Path, capsys) -> None:
    info = json.loads((livec_copy / INFO).read_text())
    info["scale"]["max"] += 10  # would shift every score
    (livec_copy / INFO).write_text(json.dumps(info, indent=2))
    with pytest.raises(InputError, match=f"{livec_copy / INFO}: its content has SHA-256 [0-9a-f]{{64}}, but "
                                         f"{info[CONTENT_SHA256]} is recorded in it"):
        Bundle.open(livec_copy)
    code, out, err = score(capsys, str(photos), "--model", str(livec_copy))
    assert code == cli.EXIT_USAGE and out == "" and "its content has SHA-256" in _one_error_line(err)


def test_a_bundle_from_before_the_digest_loads_with_a_warning(livec_copy: Path, caplog) -> None:
    info = json.loads((livec_copy / INFO).read_text())
    del info[CONTENT_SHA256]
    (livec_copy / INFO).write_text(json.dumps(info))
    with caplog.at_level(logging.WARNING):
        assert Bundle.open(livec_copy).info["scale"] == info["scale"]
    assert f"{livec_copy / INFO} has no {CONTENT_SHA256}" in caplog.text


# -- config files ---------------------------------------------------------------------------------------------------

def test_a_broken_yaml_config_names_its_file_line_and_column(tmp_path: Path, capsys) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("run: [own]\ndatasets:\n  own: {kind: labels\n")
    with pytest.raises(ConfigError, match=f"^config file {broken}, line 4, column 1: expected ',' or '}}'"):
        load_config_file(broken)
    assert cli.main(["check-config", str(broken)]) == cli.EXIT_USAGE
    assert _one_error_line(capsys.readouterr().err).startswith(f"qfm-iqm: error: config file {broken}, line 4")
