"""KonIQ-10k, read from the official release layout.

Official files: ``koniq10k_512x384.zip`` / ``koniq10k_1024x768.zip`` (folders ``512x384/`` and
``1024x768/`` with the 10073 images ``<image_name>``), ``koniq10k_scores_and_distributions.zip``
(``koniq10k_scores_and_distributions.csv``: ``image_name, c1..c5, c_total, MOS, SD, MOS_zscore``;
MOS on the 1-5 ACR scale, MOS_zscore on about 0-100, both higher = better) and, from the authors'
repository, the official split ``koniq10k_distributions_sets.csv`` (column ``set``: training /
validation / test), which adds the column ``official_part`` (train / val / test) when present.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from qfm_iqm.data.meta import authentic_meta, check_count, numeric_scores, read_label_table
from qfm_iqm.data.sources import DatasetSource, RemoteFile
from qfm_iqm.io import InputError

HOMEPAGE = "https://database.mmsp-kn.de/koniq-10k-database.html"
ARCHIVES = "https://datasets.vqa.mmsp-kn.de/archives"
LABELS = "koniq10k_scores_and_distributions.csv"
SETS = "koniq10k_distributions_sets.csv"
RESOLUTIONS = ("512x384", "1024x768")
SCORES = ("MOS", "MOS_zscore")
PARTS = {"training": "train", "validation": "val", "test": "test"}

SOURCE = DatasetSource(
    homepage=HOMEPAGE,
    files=(RemoteFile("koniq10k_512x384.zip", f"{ARCHIVES}/koniq10k_512x384.zip", size=767_000_000),
           RemoteFile("koniq10k_scores_and_distributions.zip", f"{ARCHIVES}/koniq10k_scores_and_distributions.zip",
                      size=1_000_000),
           RemoteFile(SETS, f"https://raw.githubusercontent.com/subpic/koniq/master/metadata/{SETS}", extract=False,
                      size=1_000_000)),
    layout=(LABELS, "512x384"),
    licence="free for the research community (KonIQ-10k page, no formal licence); YFCC100M photos under their own "
            "Creative Commons licences",
    redistributable=False,
    how_to_obtain=f"download the 512x384 images and the scores from {HOMEPAGE} (no form) and the split file from "
                  "https://github.com/subpic/koniq (metadata/)",
    served_openly=True,
    # Sizes: the images archive as reported by third parties (767 MB); the two tables at most 1 MB each.
    unpacked_size=770_000_000,
    citation=('V. Hosu, H. Lin, T. Sziranyi and D. Saupe, "KonIQ-10k: An Ecologically Valid Database for Deep '
              'Learning of Blind Image Quality Assessment", IEEE TIP 29, 2020'),
)
EXPECTED_COUNT = 10073


def image_folder(root: Path, resolution: str) -> Path:
    """The requested image folder, else the other official one (the workflow resizes later)."""
    for name in (resolution, *(r for r in RESOLUTIONS if r != resolution)):
        if (root / name).is_dir():
            return root / name
    raise InputError(f"KonIQ-10k image folder not found: {root / resolution} (nor {root}/{{{','.join(RESOLUTIONS)}}})")


def official_parts(root: Path, names: list[str]) -> dict[str, list[str]]:
    """``{"official_part": [...]}`` from the authors' split file, or ``{}`` when it is absent."""
    path = root / SETS
    if not path.is_file():
        return {}
    sets = read_label_table(path, "KonIQ-10k", ["image_name", "set"]).set_index("image_name")["set"]
    unknown = sorted(set(sets.astype(str)) - set(PARTS))
    if unknown:
        raise InputError(f"{path}: unknown set {unknown[0]!r} (expected {sorted(PARTS)})")
    missing = [n for n in names if n not in sets.index]
    if missing:
        raise InputError(f"{path}: image {missing[0]} has no set")
    return {"official_part": [PARTS[str(s)] for s in sets.loc[names]]}


def prepare_koniq10k(root: str | Path, expected_count: int, resolution: str = "512x384",
                     score: str = "MOS") -> pd.DataFrame:
    """Meta table of the 10073 KonIQ-10k images (``score``: MOS 1-5 or MOS_zscore, higher = better)."""
    root = Path(root)
    if resolution not in RESOLUTIONS:
        raise InputError(f"KonIQ-10k option resolution={resolution!r}: expected one of {list(RESOLUTIONS)}")
    if score not in SCORES:
        raise InputError(f"KonIQ-10k option score={score!r}: expected one of {list(SCORES)}")
    source = root / LABELS
    table = read_label_table(source, "KonIQ-10k", ["image_name", score])
    check_count("KonIQ-10k", root, expected_count, len(table))
    names = [str(n).strip() for n in table["image_name"]]
    return authentic_meta("KonIQ-10k", names=names, folder=image_folder(root, resolution),
                          raw=numeric_scores(table[score], names, source, score), listed_in=source,
                          **official_parts(root, names))
