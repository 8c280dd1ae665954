"""SPAQ (Smartphone Photography Attribute and Quality), read from the official release layout.

The release holds ``TestImage/`` (11125 full-resolution photos ``00001.jpg`` .. ``11125.jpg``) and
``Annotations/MOS and Image attribute scores.xlsx`` (first sheet: ``Image name, MOS, Brightness,
Colorfulness, Contrast, Noisiness, Sharpness``; MOS 0-100, higher = better), beside the scene-label
and EXIF workbooks. Paths point at the full-resolution files; the workflow resizes them later.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from qfm_iqm.data.meta import authentic_meta, check_count, numeric_scores, read_label_table
from qfm_iqm.data.sources import DatasetSource, RemoteFile

HOMEPAGE = "https://github.com/h4nwei/SPAQ"
LABELS = "Annotations/MOS and Image attribute scores.xlsx"

SOURCE = DatasetSource(
    homepage=HOMEPAGE,
    files=(RemoteFile("SPAQ.zip", None),),  # Baidu Yun / Google Drive folder, split zip
    layout=(LABELS, "TestImage"),
    licence="education and research use only, no commercial use without permission (release readme)",
    redistributable=False,
    how_to_obtain=f"download the database and annotations from the Baidu Yun or Google Drive links at {HOMEPAGE}",
    citation=('Y. Fang, H. Zhu, Y. Zeng, K. Ma and Z. Wang, "Perceptual Quality Assessment of Smartphone '
              'Photography", CVPR 2020'),
)
EXPECTED_COUNT = 11125


def prepare_spaq(root: str | Path, expected_count: int) -> pd.DataFrame:
    """Meta table of the 11125 SPAQ photos with MOS (0-100, higher = better)."""
    root = Path(root)
    source = root / LABELS
    table = read_label_table(source, "SPAQ", ["Image name", "MOS"], sheet_name=0)
    check_count("SPAQ", root, expected_count, len(table))
    names = [str(n).strip() for n in table["Image name"]]
    return authentic_meta("SPAQ", names=names, folder=root / "TestImage",
                          raw=numeric_scores(table["MOS"], names, source, "MOS"), listed_in=source)
