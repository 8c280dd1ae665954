"""CSIQ (Categorical Subjective Image Quality), read from the official release layout.

Official files: ``src_imgs.zip`` (30 references ``<ref>.png``), ``dst_imgs.zip`` (866 images
``dst_imgs/<folder>/<ref>.<TOKEN>.<level>.png``) and ``csiq.DMOS.xlsx``, whose sheet ``all_by_image``
holds, below a few title rows and from column D on, the columns ``image, dst_idx, dst_type, dst_lev,
dmos_std, dmos``. ``dst_type`` names the distortion (``noise, blur, contrast, fnoise, jpeg, jpeg 2000``)
and maps to the folder and file-name token below; DMOS is in [0, 1], lower = better. ``level`` is
``dst_lev`` (1-5; contrast 1-4). Image files are matched case-insensitively anywhere below
``dst_imgs/`` (copies differ in folder case: ``awgn`` vs ``AWGN``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from qfm_iqm.data.meta import (
    build_meta,
    case_insensitive_index,
    check_count,
    image_paths,
    numeric_scores,
    require_columns,
    require_file,
)
from qfm_iqm.data.sources import DatasetSource, RemoteFile
from qfm_iqm.io import InputError

HOMEPAGE = "https://s2.smu.edu/~eclarson/csiq.html"
LABELS = "csiq.DMOS.xlsx"
SHEET = "all_by_image"
# dst_type in the xlsx -> (folder under dst_imgs/, token in the file name)
TYPES = {"noise": ("awgn", "AWGN"), "blur": ("blur", "BLUR"), "contrast": ("contrast", "contrast"),
         "fnoise": ("fnoise", "fnoise"), "jpeg": ("jpeg", "JPEG"), "jpeg 2000": ("jpeg2000", "jpeg2000")}

SOURCE = DatasetSource(
    homepage=HOMEPAGE,
    files=(RemoteFile("src_imgs.zip", "https://s2.smu.edu/~eclarson/csiq/src_imgs.zip", size=23_600_000),
           RemoteFile("dst_imgs.zip", "https://s2.smu.edu/~eclarson/csiq/dst_imgs.zip", size=681_000_000),
           RemoteFile(LABELS, f"https://s2.smu.edu/~eclarson/csiq/{LABELS}", extract=False, size=1_000_000)),
    layout=(LABELS, "src_imgs", "dst_imgs"),
    licence="no licence stated on the CSIQ page (Larson & Chandler, JEI 2010); cite the paper",
    redistributable=False,
    how_to_obtain=f"download src_imgs.zip, dst_imgs.zip and {LABELS} from {HOMEPAGE} (no form)",
    served_openly=True,
    # Sizes are upper bounds (no published size): 30 + 866 PNGs of 512x512 RGB, at most 786 KB of pixels each.
    unpacked_size=705_000_000,
    citation=('E. C. Larson and D. M. Chandler, "Most apparent distortion: full-reference image quality assessment '
              'and the role of strategy", Journal of Electronic Imaging 19(1), 2010'),
)
EXPECTED_COUNT = 866


def read_sheet(path: Path) -> pd.DataFrame:
    """The ``all_by_image`` table: its header is the first row holding both 'image' and 'dmos'."""
    try:
        cells = pd.read_excel(require_file(path, "CSIQ"), sheet_name=SHEET, header=None)
    except ValueError as err:  # pandas: "Worksheet named ... not found"
        raise InputError(f"{path}: cannot read sheet {SHEET!r} ({err})") from err
    header = next((i for i, row in enumerate(cells.itertuples(index=False))
                   if {"image", "dmos"} <= {str(v).strip() for v in row}), None)
    if header is None:
        raise InputError(f"{path}, sheet {SHEET!r}: no header row with columns 'image' and 'dmos'")
    table = cells.iloc[header + 1:].copy()
    table.columns = [str(v).strip() for v in cells.iloc[header]]
    return table.dropna(subset=["image"])


def ref_name(value) -> str:
    """Reference names are text, except '1600', which the sheet stores as a number."""
    return str(int(value)) if isinstance(value, float | int) and float(value).is_integer() else str(value).strip()


def prepare_csiq(root: str | Path, expected_count: int) -> pd.DataFrame:
    """Meta table of the 866 CSIQ images with DMOS (0-1, lower = better, flipped in ``score``)."""
    root = Path(root)
    source = root / LABELS
    table = read_sheet(source)
    require_columns(table, ["image", "dst_type", "dst_lev", "dmos"], f"{source}, sheet {SHEET!r}")
    check_count("CSIQ", root, expected_count, len(table))
    refs = [ref_name(v) for v in table["image"]]
    kinds = [str(v).strip().lower() for v in table["dst_type"]]
    unknown = sorted(set(kinds) - set(TYPES))
    if unknown:
        raise InputError(f"{source}: unknown dst_type {unknown[0]!r} (known: {sorted(TYPES)})")
    levels = numeric_scores(table["dst_lev"], refs, source, "dst_lev").astype(int).tolist()
    stems = [f"{r}.{TYPES[k][1]}.{lev}" for r, k, lev in zip(refs, kinds, levels)]
    raw = numeric_scores(table["dmos"], stems, source, "dmos")
    index = case_insensitive_index(root / "dst_imgs", "CSIQ")
    return build_meta(
        "CSIQ",
        image_id=stems,
        path=image_paths(root / "dst_imgs", [f"{s}.png" for s in stems], "CSIQ", source, index),
        raw=raw, higher_is_better=False, ref_id=refs,
        distortion=[TYPES[k][0] for k in kinds], level=levels,
    )
