"""LIVE-FB / FLIVE (PaQ-2-PiQ), read from the official release layout.

The authors' repository (FLIVE_Database) holds the labels and a notebook that downloads the source
collections into ``database/`` (``voc_emotic_ava/``, ``blur_dataset/``; ``EE371R/`` comes from the
PaQ-2-PiQ repository). ``labels_image.csv`` (columns ``name, mos``; ``name`` relative to
``database/``, MOS about 0-100, higher = better) lists the 39810 whole images; ``labels_patch.csv``
(the 119430 patches) is not used. The label file is read from ``database/`` (where the PaQ-2-PiQ
repository and pyiqa keep it) or from the root (where the notebook reads it). The published files
define no train/val/test split per image, so no ``official_part`` column is added.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from qfm_iqm.data.meta import authentic_meta, check_count, numeric_scores, read_label_table
from qfm_iqm.data.sources import DatasetSource, RemoteFile
from qfm_iqm.io import InputError

HOMEPAGE = "https://baidut.github.io/PaQ-2-PiQ/"
REPO = "https://github.com/niu-haoran/FLIVE_Database"
LABELS = "labels_image.csv"

SOURCE = DatasetSource(
    homepage=HOMEPAGE,
    files=(RemoteFile("FLIVE_Database-master.zip", f"{REPO}/archive/refs/heads/master.zip"),),
    layout=(f"database/{LABELS}", "database/voc_emotic_ava", "database/blur_dataset", "database/EE371R"),
    subdir="FLIVE_Database-master",
    licence="no data licence stated; PaQ-2-PiQ code is CC BY-NC-SA 4.0; photos keep their sources' terms "
            "(AVA, VOC2012, EMOTIC, CUHK blur)",
    redistributable=False,
    how_to_obtain=f"get {REPO} and run its database_prep.ipynb (downloads VOC2012, EMOTIC via Google Drive, the "
                  "CUHK blur set and AVA via BitTorrent); copy database/EE371R from github.com/baidut/PaQ-2-PiQ",
    citation=('Z. Ying, H. Niu, P. Gupta, D. Mahajan, D. Ghadiyaram and A. C. Bovik, "From Patches to Pictures '
              '(PaQ-2-PiQ): Mapping the Perceptual Space of Picture Quality", CVPR 2020'),
)
EXPECTED_COUNT = 39810


def label_file(root: Path) -> Path:
    for path in (root / "database" / LABELS, root / LABELS):
        if path.is_file():
            return path
    raise InputError(f"LIVEFB label file not found: {root / 'database' / LABELS} (nor {root / LABELS})")


def prepare_livefb(root: str | Path, expected_count: int) -> pd.DataFrame:
    """Meta table of the 39810 FLIVE images (whole images, not patches) with MOS (higher = better)."""
    root = Path(root)
    source = label_file(root)
    table = read_label_table(source, "LIVEFB", ["name", "mos"])
    check_count("LIVEFB", root, expected_count, len(table))
    names = [str(n).strip() for n in table["name"]]
    return authentic_meta("LIVEFB", names=names, folder=root / "database",
                          raw=numeric_scores(table["mos"], names, source, "mos"), listed_in=source)
