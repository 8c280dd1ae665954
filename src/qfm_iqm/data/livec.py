"""LIVE In the Wild Image Quality Challenge (LIVEC), read from the official release layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy.io import loadmat

from qfm_iqm.data.meta import META_COLUMNS, normalise_scores
from qfm_iqm.data.sources import DatasetSource, RemoteFile
from qfm_iqm.io import InputError

HOMEPAGE = "https://live.ece.utexas.edu/research/ChallengeDB/index.html"
SOURCE = DatasetSource(
    homepage=HOMEPAGE,
    files=(RemoteFile("ChallengeDB_release.zip", "https://live.ece.utexas.edu/research/ChallengeDB/ChallengeDB_release.zip",
                      size=430_000_000),),
    layout=("Data/AllImages_release.mat", "Data/AllMOS_release.mat", "Images", "README.txt"),
    subdir="ChallengeDB_release",
    licence="LIVE copyright notice: use, copy and distribute for any purpose with the notice (README.txt) and citation",
    redistributable=True,
    how_to_obtain=f"download ChallengeDB_release.zip from {HOMEPAGE}",
    notice="README.txt",
    served_openly=True,
    # Sizes: unpacked, 627 JPEGs (22.7 MB) and 542 BMPs of 500x500 (750 KB each); the zip is at most that.
    unpacked_size=430_000_000,
    citation=('D. Ghadiyaram and A. C. Bovik, "Massive Online Crowdsourced Study of Subjective and Objective '
              'Picture Quality", IEEE TIP 25(1), 2016; "LIVE In the Wild Image Quality Challenge Database", '
              'http://live.ece.utexas.edu/research/ChallengeDB/index.html, 2015'),
)
EXPECTED_COUNT = 1162
N_TRAINING_IMAGES = 7  # t1..t7 under Images/trainingImages, dropped by the standard protocol


def resolve_image(images_dir: Path, name: str) -> Path:
    """The listed file, or a file with the same stem (the shared copy stores .bmp as .png)."""
    exact = images_dir / name
    if exact.is_file():
        return exact
    matches = sorted(images_dir.glob(f"{Path(name).stem}.*"))
    if not matches:
        raise InputError(f"LIVEC image listed in AllImages_release.mat not found: {exact}")
    return matches[0]


def _mat_vector(path: Path, key: str) -> np.ndarray:
    if not path.is_file():
        raise InputError(f"LIVEC label file not found: {path}")
    mat = loadmat(path)
    if key not in mat:
        raise InputError(f"{path}: variable {key!r} missing")
    return np.asarray(mat[key]).reshape(-1)


def prepare_livec(root: str | Path, expected_count: int) -> pd.DataFrame:
    """Meta table of the 1162 LIVEC test images with MOS (about 3-92, higher = better)."""
    root = Path(root)
    listed = _mat_vector(root / "Data/AllImages_release.mat", "AllImages_release")
    names = [str(np.asarray(n).reshape(-1)[0]) for n in listed]
    mos_raw = _mat_vector(root / "Data/AllMOS_release.mat", "AllMOS_release")
    if len(names) != len(mos_raw):
        raise InputError(f"{root}/Data: {len(names)} image names but {len(mos_raw)} MOS values")
    names, mos_raw = names[N_TRAINING_IMAGES:], mos_raw[N_TRAINING_IMAGES:]
    mos = pd.to_numeric(pd.Series(mos_raw), errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(mos))
    if bad.size:
        raise InputError(f"{root}/Data/AllMOS_release.mat: non-numeric MOS for {names[bad[0]]}")
    if len(names) != expected_count:
        raise InputError(f"LIVEC at {root}: expected {expected_count} test images, found {len(names)}")
    paths = [resolve_image(root / "Images", n) for n in names]
    meta = pd.DataFrame({
        "image_id": [Path(n).stem for n in names],
        "path": [str(p.resolve()) for p in paths],
        "score": normalise_scores(mos),
        "score_raw": mos,
        "ref_id": [Path(n).stem for n in names],
        "distortion": "authentic",
        "level": 0,
    })
    return meta[META_COLUMNS]
