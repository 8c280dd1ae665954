"""The `labels` dataset kind (and the shared label-table checks): every broken table is one InputError line
naming the label file as given and, where it applies, the row, the column and the value."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import write_image
from dataset_fixtures import make_fixture

from qfm_iqm.data import registry
from qfm_iqm.data.kadid10k import prepare_kadid10k
from qfm_iqm.data.koniq10k import LABELS as KONIQ_LABELS
from qfm_iqm.data.koniq10k import prepare_koniq10k
from qfm_iqm.data.labels import prepare_labels
from qfm_iqm.data.meta import META_COLUMNS
from qfm_iqm.io import InputError

IMAGES = ["img01.png", "img02.png", "img03.png", "img03.jpg", "img04.png"]


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The working directory, holding images/ with IMAGES; label files are written to labels.csv."""
    for seed, name in enumerate(IMAGES):
        write_image(tmp_path / "images" / name, seed=seed)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def prepare(text: str, **options) -> pd.DataFrame:
    """prepare_labels on labels.csv holding ``text`` (given as the relative path 'labels.csv')."""
    Path("labels.csv").write_text(text)
    return prepare_labels("labels.csv", "images", "name", "mos", **{"higher_is_better": True, **options})


def exactly(message: str) -> pytest.RaisesExc[InputError]:
    """pytest.raises for an InputError whose whole message is ``message``."""
    return pytest.raises(InputError, match=f"^{re.escape(message)}$")


def rejects(text: str, message: str) -> None:
    with exactly(message):
        prepare(text)


def test_valid_table_gives_the_uniform_meta_table(folder: Path) -> None:
    meta = prepare("name,mos,ref\nimg01.png,10,007\nimg02.png,40,007\nimg03.jpg,30,008\n",
                   higher_is_better=False, ref_column="ref")
    expected = pd.DataFrame({
        "image_id": ["img01", "img02", "img03"],
        "path": [str((folder / "images" / n).resolve()) for n in ("img01.png", "img02.png", "img03.jpg")],
        "score": [1.0, 0.0, 1 / 3],  # DMOS-like: the lowest raw score is the best
        "score_raw": [10.0, 40.0, 30.0],
        "ref_id": ["007", "007", "008"],  # read as text
        "distortion": "unknown",
        "level": 0,
    })
    pd.testing.assert_frame_equal(meta, expected, check_dtype=False)
    assert list(meta.columns) == META_COLUMNS and meta["level"].dtype == np.int64
    assert prepare("name,mos\nimg01.png,10\nimg02.png,40\n")["ref_id"].tolist() == ["img01", "img02"]


def test_empty_file_is_named(folder: Path) -> None:
    rejects("", "labels.csv: empty file (no header, no rows)")


def test_header_only_is_named(folder: Path) -> None:
    rejects("name,mos\n", "labels.csv: no data rows (only a header)")
    rejects("name,mos\n\n,\n", "labels.csv: no data rows (only a header)")


def test_image_listed_twice_names_both_rows(folder: Path) -> None:
    rejects("name,mos\nimg01.png,1\nimg03.png,2\nimg02.png,3\nimg03.png,4\n",
            "labels.csv, row 5: image name 'img03.png' listed twice (first at row 3)")


def test_names_sharing_an_image_id_are_named(folder: Path) -> None:
    rejects("name,mos\nimg01.png,1\nimg02.png,2\nimg03.png,3\nimg04.png,4\nimg05.png,5\nimg03.jpg,6\n",
            "labels.csv, row 7: 'img03.jpg' and 'img03.png' (row 4) share the image id 'img03' "
            "(the file name without its extension)")


def test_equal_scores_name_the_file_and_column(folder: Path) -> None:
    rejects("name,mos\nimg01.png,42\nimg02.png,42.0\n",
            "labels.csv: every score in column 'mos' is 42.0; scores must vary")


def test_empty_image_name_is_named(folder: Path) -> None:
    rejects("name,mos\nimg01.png,1\n  ,2\n", "labels.csv, row 3: no image name in column 'name'")


def test_rows_are_lines_of_the_file(folder: Path) -> None:
    rejects("name,mos\nimg01.png,1\n\nimg02.png,abc\n",  # the blank line 3 counts
            "labels.csv, row 4: score 'abc' in column 'mos' is not a number")


def test_published_kind_with_equal_scores_names_its_file(tmp_path: Path) -> None:
    root = make_fixture("koniq10k", tmp_path)
    table = pd.read_csv(root / KONIQ_LABELS).assign(MOS=3.0)
    table.to_csv(root / KONIQ_LABELS, index=False)
    with exactly(f"{root / KONIQ_LABELS}: every score is 3.0; scores must vary"):
        prepare_koniq10k(root, len(table))


def test_published_kind_with_empty_label_file_names_it(tmp_path: Path) -> None:
    root = make_fixture("kadid10k", tmp_path)
    (root / "dmos.csv").write_text("")
    with exactly(f"{root / 'dmos.csv'}: empty file (no header, no rows)"):
        prepare_kadid10k(root, 30)


def test_labels_folder_prepares_scores(labelled_folder: Path, tmp_path: Path) -> None:
    meta = registry.prepare("labels", tmp_path / "out/meta.csv", labels=labelled_folder / "labels.csv",
                   images=labelled_folder / "images", image_column="name", score_column="mos",
                   higher_is_better=False)
    assert meta["score_raw"].tolist() == [5, 15, 25, 35, 45, 55]
    assert meta["score"].tolist()[0] == 1.0 and meta["score"].tolist()[-1] == 0.0  # DMOS flipped
    assert (tmp_path / "out/meta.csv").is_file()


def test_a_row_with_an_extra_field_names_its_line(folder: Path) -> None:
    rejects("name,mos,comment\nimg01.png,12,sharp\nimg02.png,12,blurry, dark\n",
            "labels.csv, line 3: expected 3 fields, saw 4 (a comma inside a field needs quotes)")


@pytest.mark.parametrize("scores, message", [
    ((1e308, -1e308), "row 2 and row 3: score '1e+308' in column 'mos' is so far from the others (median 30)"),
    ((10, 1e300), "row 3: score '1e+300' in column 'mos' is so far from the others (median 30)"),
])
def test_scores_that_would_overflow_or_crush_the_others_name_their_rows(folder: Path, scores: tuple,
                                                                       message: str) -> None:
    rows = "".join(f"img0{i + 1}.png,{s}\n" for i, s in enumerate([*scores, 20, 30, 40]))
    with pytest.raises(InputError, match=f"^labels.csv, {re.escape(message)}.* would crush them together"):
        prepare(f"name,mos\n{rows}")


def test_scores_beyond_what_a_float_can_span_are_refused() -> None:
    from qfm_iqm.data.meta import normalise_scores

    with pytest.raises(InputError, match="^x.csv: scores from -1e\\+308 to 1e\\+308 span more than a float can hold"):
        normalise_scores(np.array([1e308, -1e308]), source="x.csv")


@pytest.mark.parametrize("breakage, message", [
    (lambda d: (d / "labels.csv").write_text("name,mos\nimg0.png,5\nimg1.png,good\n"),
     r"labels.csv, row 3: score 'good' in column 'mos' is not a number"),
    (lambda d: (d / "images/img3.png").unlink(), r"image not found: .*img3.png"),
])
def test_labels_folder_bad_input_names_the_culprit(labelled_folder: Path, tmp_path: Path, breakage,
                                                   message: str) -> None:
    breakage(labelled_folder)
    out = tmp_path / "out/meta.csv"
    with pytest.raises(InputError, match=message):
        registry.prepare("labels", out, labels=labelled_folder / "labels.csv", images=labelled_folder / "images",
                image_column="name", score_column="mos", higher_is_better=True)
    assert not out.exists()
