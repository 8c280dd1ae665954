"""TID2013 (Tampere Image Database 2013), read from the official release layout.

The release (``tid2013.rar``, unpacked in place) holds ``reference_images/`` (``I01.BMP`` ..
``i25.bmp``), ``distorted_images/`` (3000 images ``iXX_YY_Z.bmp``: reference XX 01-25, distortion
type YY 01-24, level Z 1-5) and the labels ``mos_with_names.txt`` (one ``<MOS> <name>`` per line,
MOS 0-9, higher = better; ``mos.txt`` and ``mos_std.txt`` hold the same MOS and its std without
names). Names are matched case-insensitively: the release mixes ``i``/``I`` and ``.bmp``/``.BMP``.
Distortion names follow the release's readme; ``level`` is Z.
"""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path

import pandas as pd

from qfm_iqm.data.meta import (
    case_insensitive_index,
    check_count,
    image_paths,
    numeric_scores,
    parse_synthetic_name,
    require_file,
    synthetic_meta,
)
from qfm_iqm.data.sources import DatasetSource, RemoteFile
from qfm_iqm.io import InputError

HOMEPAGE = "http://www.ponomarenko.info/tid2013.htm"
LABELS = "mos_with_names.txt"
NAME = re.compile(r"^(i\d\d)_(\d\d)_(\d)\.bmp$", re.IGNORECASE)
TYPES = ("additive_gaussian_noise", "additive_noise_in_color_components", "spatially_correlated_noise",
         "masked_noise", "high_frequency_noise", "impulse_noise", "quantization_noise", "gaussian_blur",
         "image_denoising", "jpeg_compression", "jpeg2000_compression", "jpeg_transmission_errors",
         "jpeg2000_transmission_errors", "non_eccentricity_pattern_noise", "local_block_wise_distortions",
         "mean_shift", "contrast_change", "change_of_color_saturation", "multiplicative_gaussian_noise",
         "comfort_noise", "lossy_compression_of_noisy_images", "color_quantization_with_dither",
         "chromatic_aberrations", "sparse_sampling_and_reconstruction")

SOURCE = DatasetSource(
    homepage=HOMEPAGE,
    files=(RemoteFile("tid2013.rar", "http://www.ponomarenko.info/tid2013/tid2013.rar", size=913_000_000),),
    layout=(LABELS, "distorted_images", "reference_images"),
    licence="no licence stated on the TID2013 page (Ponomarenko et al., SPIC 2015); cite the paper",
    redistributable=False,
    how_to_obtain=f"download tid2013.rar from {HOMEPAGE} (no form) and unpack it",
    served_openly=True,
    # Sizes: the archive as reported by third parties (908-913 MB); unpacked, 3025 BMPs of 512x384 at 24 bits.
    unpacked_size=1_785_000_000,
    citation=('N. Ponomarenko et al., "Image database TID2013: Peculiarities, results and perspectives", Signal '
              'Processing: Image Communication 30, 2015'),
)
# ``i01_08_3.bmp`` -> (``i01``, 8, 3): reference id, distortion type, level
parse_name = partial(parse_synthetic_name, NAME, types=TYPES, dataset="TID2013", form="iXX_YY_Z.bmp",
                     ref_case=str.lower)
EXPECTED_COUNT = 3000


def read_labels(path: Path) -> tuple[list[str], list[str]]:
    """(names, MOS strings) from the ``<MOS> <name>`` lines of ``mos_with_names.txt``."""
    names, mos = [], []
    for number, line in enumerate(require_file(path, "TID2013").read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2:
            raise InputError(f"{path}, line {number}: expected '<MOS> <image name>', got {line!r}")
        mos.append(fields[0])
        names.append(fields[1])
    return names, mos


def prepare_tid2013(root: str | Path, expected_count: int) -> pd.DataFrame:
    """Meta table of the 3000 TID2013 images with MOS (0-9, higher = better)."""
    root = Path(root)
    source = root / LABELS
    names, mos = read_labels(source)
    check_count("TID2013", root, expected_count, len(names))
    parsed = [parse_name(n) for n in names]
    index = case_insensitive_index(root / "distorted_images", "TID2013")
    return synthetic_meta(
        "TID2013", image_id=[Path(n).stem.lower() for n in names],
        path=image_paths(root / "distorted_images", names, "TID2013", source, index),
        raw=numeric_scores(mos, names, source, "MOS"), parsed=parsed, types=TYPES,
    )
