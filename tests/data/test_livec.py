"""The LIVEC preparer on the real release beside the project (skipped without it)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from conftest import LIVEC_ROOT, needs_livec

from qfm_iqm.data.livec import prepare_livec
from qfm_iqm.io import InputError


@needs_livec
def test_livec_release_loads_1162_test_images() -> None:
    meta = prepare_livec(LIVEC_ROOT, expected_count=1162)
    assert len(meta) == 1162 and meta["image_id"].is_unique
    assert not meta["image_id"].str.startswith("t").any()  # training images t1..t7 dropped
    assert 3.0 < meta["score_raw"].min() < 4.0 and 92.0 < meta["score_raw"].max() < 93.0
    assert meta["score"].min() == 0.0 and meta["score"].max() == 1.0
    suffixes = pd.Series([Path(p).suffix for p in meta["path"]]).value_counts()
    assert suffixes[".JPG"] == 627 and suffixes[".png"] == 1162 - 627  # .bmp names resolved by stem
    with pytest.raises(InputError, match="expected 1000 test images, found 1162"):
        prepare_livec(LIVEC_ROOT, expected_count=1000)
