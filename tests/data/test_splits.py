"""Splits: reference-disjoint and reproducible, the validation carve-out, a dataset's official split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qfm_iqm.data import splits
from qfm_iqm.io import InputError


def test_splits_are_reference_disjoint_and_reproducible() -> None:
    meta = pd.DataFrame({"image_id": [f"i{k}" for k in range(50)], "ref_id": [f"r{k // 5}" for k in range(50)]})
    table = splits.make_splits(meta, n_splits=4, test_fraction=0.2, seed=3)
    assert table.equals(splits.make_splits(meta, n_splits=4, test_fraction=0.2, seed=3))
    refs = meta.set_index("image_id")["ref_id"]
    for s in range(4):
        test = set(refs[splits.split_ids(table, s, "test")])
        train_refs = set(refs[splits.split_ids(table, s, "train")])
        assert len(test) == 2 and not test & train_refs
    assert splits.split_ids(table, 0, "test").tolist() != splits.split_ids(table, 1, "test").tolist()


def test_validation_carve_out_holds_out_whole_references() -> None:
    rows = pd.DataFrame({"image_id": [f"i{k}" for k in range(400)], "ref_id": [f"r{k // 4}" for k in range(400)]})
    held = splits.carve_out(rows, 0.2, seed=3)
    assert np.array_equal(held, splits.carve_out(rows, 0.2, seed=3))
    assert 0.1 < held.mean() < 0.3
    assert not set(rows["ref_id"][held]) & set(rows["ref_id"][~held])


def test_official_split_uses_the_datasets_own_test_part(tmp_path) -> None:
    meta = pd.DataFrame({"image_id": list("abcde"), "official_part": ["train", "val", "test", "train", "test"]})
    table = splits.official_split(meta, tmp_path / "meta.csv")
    assert table["split"].eq(0).all()
    assert splits.split_ids(table, 0, "test").tolist() == ["c", "e"]
    assert splits.split_ids(table, 0, "train").tolist() == ["a", "b", "d"]  # validation images train
    with pytest.raises(InputError, match=r"meta.csv: no official_part column"):
        splits.official_split(meta.drop(columns="official_part"), tmp_path / "meta.csv")
