"""LIVE Image Quality Assessment Database, Release 2, read from the official release layout.

The release (``databaserelease2/``) holds five folders of distorted images, ``refimgs/`` and two
label files in the same 982-entry order (jp2k 227, jpeg 233, wn 174, gblur 174, fastfading 174, each
``img1.bmp`` .. ``imgN.bmp``): ``dmos.mat`` (``dmos``, and ``orgs`` = 1 for the 203 entries that are
copies of a reference image, dropped here: 779 remain) and ``refnames_all.mat`` (``refnames_all``,
the reference file of each entry). Scores are DMOS (about 0-100, lower = better).

``scores="dmos"`` (the default, as in DBCNN, HyperIQA and pyiqa) reads ``dmos.mat``;
``scores="dmos_realigned"`` reads ``dmos_new`` from ``dmos_realigned.mat`` (the lab's later
re-alignment of the sessions, a separate download placed beside ``dmos.mat``) and still takes
``orgs`` from ``dmos.mat``. LIVE has no discrete distortion levels (each folder's ``info.txt`` gives a
continuous parameter per image), so ``level`` is 0 = not given.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy.io import loadmat

from qfm_iqm.data.meta import build_meta, check_count, image_paths, numeric_scores, require_file
from qfm_iqm.data.sources import DatasetSource, RemoteFile
from qfm_iqm.io import InputError

HOMEPAGE = "https://live.ece.utexas.edu/research/quality/subjective.htm"
FOLDERS = (("jp2k", 227), ("jpeg", 233), ("wn", 174), ("gblur", 174), ("fastfading", 174))
N_ENTRIES = sum(n for _, n in FOLDERS)  # 982
SCORE_FILES = {"dmos": ("dmos.mat", "dmos"), "dmos_realigned": ("dmos_realigned.mat", "dmos_new")}

SOURCE = DatasetSource(
    homepage=HOMEPAGE,
    files=(RemoteFile("databaserelease2.zip", None, size=700_000_000),),  # password-protected zip
    layout=("dmos.mat", "refnames_all.mat", "refimgs", *(name for name, _ in FOLDERS)),
    subdir="databaserelease2",
    licence="LIVE copyright notice (UT Austin): use, copy, modify, distribute for any purpose if the notice "
            "is kept and LIVE is cited; some reference photos (Visual Delights Inc.) not for use outside the database",
    redistributable=False,
    how_to_obtain=f"request the password with the form at {HOMEPAGE}, then download "
                  "http://live.ece.utexas.edu/research/quality/release2/databaserelease2.zip",
    # Sizes: the archive as third parties describe it (~700 MB); unpacked, at most 1011 BMPs of 768x512.
    unpacked_size=1_200_000_000,
    citation=('H. R. Sheikh, M. F. Sabir and A. C. Bovik, "A Statistical Evaluation of Recent Full Reference Image '
              'Quality Assessment Algorithms", IEEE TIP 15(11), 2006'),
)
EXPECTED_COUNT = 779


def mat_vectors(path: Path, keys: tuple[str, ...]) -> list[np.ndarray]:
    """The named variables of a .mat file, flattened, each checked to have one entry per image."""
    mat = loadmat(require_file(path, "LIVE"))
    out = []
    for key in keys:
        if key not in mat:
            raise InputError(f"{path}: variable {key!r} missing")
        vec = np.asarray(mat[key]).reshape(-1)
        if len(vec) != N_ENTRIES:
            raise InputError(f"{path}: variable {key!r} has {len(vec)} entries, expected {N_ENTRIES}")
        out.append(vec)
    return out


def prepare_live(root: str | Path, expected_count: int, scores: str = "dmos") -> pd.DataFrame:
    """Meta table of the 779 distorted LIVE images with DMOS (lower = better, flipped in ``score``)."""
    root = Path(root)
    if scores not in SCORE_FILES:
        raise InputError(f"LIVE option scores={scores!r}: expected one of {sorted(SCORE_FILES)}")
    dmos, orgs = mat_vectors(root / "dmos.mat", ("dmos", "orgs"))
    score_file, score_key = SCORE_FILES[scores]
    if scores != "dmos":
        (dmos,) = mat_vectors(root / score_file, (score_key,))
    (refnames,) = mat_vectors(root / "refnames_all.mat", ("refnames_all",))
    names = [f"{folder}/img{i}.bmp" for folder, n in FOLDERS for i in range(1, n + 1)]
    keep = np.flatnonzero(np.asarray(orgs, dtype=np.float64) != 1)
    check_count("LIVE", root, expected_count, len(keep))
    names = [names[i] for i in keep]
    raw = numeric_scores(dmos[keep], names, root / score_file, score_key)
    refs = [Path(str(np.asarray(refnames[i]).reshape(-1)[0])).stem for i in keep]
    return build_meta(
        "LIVE",
        image_id=[n.removesuffix(".bmp").replace("/", "_") for n in names],
        path=image_paths(root, names, "LIVE", root / "dmos.mat"),
        raw=raw, higher_is_better=False, ref_id=refs,
        distortion=[n.split("/")[0] for n in names], level=0,
    )
