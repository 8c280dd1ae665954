"""KADID-10k (Konstanz Artificially Distorted Image quality Database), read from the official layout.

``kadid10k.zip`` unpacks to ``kadid10k/`` with ``images/`` (81 references ``I01.png`` .. ``I81.png`` and
10125 distorted images ``IXX_YY_ZZ.png``: reference XX, distortion type YY 01-25, level ZZ 01-05) and
``dmos.csv`` with columns ``dist_img, ref_img, dmos, var``. Despite its name ``dmos`` is a
degradation category rating on 1-5 where higher = better. Distortion names follow the KADID-10k
paper (Lin, Hosu, Saupe, QoMEX 2019); ``level`` is ZZ.
"""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path

import pandas as pd

from qfm_iqm.data.meta import (
    check_count,
    image_paths,
    numeric_scores,
    parse_synthetic_name,
    read_label_table,
    synthetic_meta,
)
from qfm_iqm.data.sources import DatasetSource, RemoteFile
from qfm_iqm.io import InputError

HOMEPAGE = "https://database.mmsp-kn.de/kadid-10k-database.html"
LABELS = "dmos.csv"
NAME = re.compile(r"^(I\d\d)_(\d\d)_(\d\d)\.png$", re.IGNORECASE)
TYPES = ("gaussian_blur", "lens_blur", "motion_blur", "color_diffusion", "color_shift", "color_quantization",
         "color_saturation_hsv", "color_saturation_lab", "jpeg2000", "jpeg", "white_noise",
         "white_noise_color_component", "impulse_noise", "multiplicative_noise", "denoise", "brighten", "darken",
         "mean_shift", "jitter", "non_eccentricity_patch", "pixelate", "quantization", "color_block",
         "high_sharpen", "contrast_change")

SOURCE = DatasetSource(
    homepage=HOMEPAGE,
    files=(RemoteFile("kadid10k.zip", "https://datasets.vqa.mmsp-kn.de/archives/kadid10k.zip", size=3_067_408_471),),
    layout=(LABELS, "images"),
    subdir="kadid10k",
    licence="free for the research community (KADID-10k page, no formal licence); images from Pixabay",
    redistributable=False,
    how_to_obtain=f"download kadid10k.zip from {HOMEPAGE} (no form)",
    served_openly=True,
    # Size: the Content-Length third parties report; the PNGs inside are stored, so unpacked is about the same.
    unpacked_size=3_070_000_000,
    citation=('H. Lin, V. Hosu and D. Saupe, "KADID-10k: A Large-scale Artificially Distorted IQA Database", QoMEX '
              '2019'),
)
# ``I01_08_03.png`` -> (``I01``, 8, 3): reference id, distortion type, level
parse_name = partial(parse_synthetic_name, NAME, types=TYPES, dataset="KADID-10k", form="IXX_YY_ZZ.png",
                     ref_case=str.upper)
EXPECTED_COUNT = 10125


def prepare_kadid10k(root: str | Path, expected_count: int) -> pd.DataFrame:
    """Meta table of the 10125 KADID-10k images with their 1-5 rating (higher = better)."""
    root = Path(root)
    source = root / LABELS
    table = read_label_table(source, "KADID-10k", ["dist_img", "ref_img", "dmos"])
    check_count("KADID-10k", root, expected_count, len(table))
    names = [str(n).strip() for n in table["dist_img"]]
    parsed = [parse_name(n) for n in names]
    for name, (ref, _, _), listed in zip(names, parsed, table["ref_img"]):
        if Path(str(listed)).stem.upper() != ref:
            raise InputError(f"{source}: {name} is listed with reference {listed!r}, its name says {ref}")
    return synthetic_meta(
        "KADID-10k", image_id=[Path(n).stem for n in names],
        path=image_paths(root / "images", names, "KADID-10k", source),
        raw=numeric_scores(table["dmos"], names, source, "dmos"), parsed=parsed, types=TYPES,
    )
