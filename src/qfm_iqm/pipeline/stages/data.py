"""Stages of ``workflow/rules/data.smk``: backbone weights, datasets, the expansion pool, splits."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from types import SimpleNamespace as NS

from qfm_iqm.data import splits
from qfm_iqm.data.meta import read_meta
from qfm_iqm.io import write_csv, write_json, write_text
from qfm_iqm.pipeline.stages.base import STAGES, stage

log = logging.getLogger(__name__)

DEMO_LICENCE = ("sample photos shipped in scikit-image, scikit-learn and matplotlib (public domain or CC; see those "
                "packages), distorted and SSIM-scored here")


@stage
def convert_weights(input: NS, output: NS, params: NS) -> None:
    from qfm_iqm.features.weights import convert_package_weights

    digest = convert_package_weights(params.backbone, output.weights)
    write_text(f"{digest}  {output.weights}\n", output.sha256)
    log.info("converted %s weights, sha256 %s", params.backbone, digest)


@stage
def build_demo_dataset(input: NS, output: NS, params: NS) -> None:
    from qfm_iqm.data.synthetic import build_demo

    cfg = params.dataset
    meta = build_demo(output.meta, output.images, cfg["photos"], cfg["distortions"], cfg["levels"],
                      cfg["short_side"], cfg["seed"])
    write_json({"kind": "demo", "licence": DEMO_LICENCE, "redistributable": True}, output.licence)
    log.info("demo dataset: %d images from %d photos", len(meta), meta["ref_id"].nunique())


@stage
def acquire_dataset(input: NS, output: NS, params: NS) -> None:
    from qfm_iqm.data.download import acquire
    from qfm_iqm.data.lock import DigestLock
    from qfm_iqm.data.sources import DatasetSource, RemoteFile

    cfg = params.source
    source = DatasetSource(**{**cfg, "files": tuple(RemoteFile(**f) for f in cfg["files"]),
                              "layout": tuple(cfg["layout"])})
    raw = Path(output.record).parent
    digests = acquire(params.dataset, source, raw, Path(params.downloads), raw / source.subdir,
                      lock=DigestLock(params.lock), kind=params.kind, policy=params.policy)
    files = [{**f, "sha256": digests.get(f["name"], f["sha256"])} for f in cfg["files"]]
    write_json({"dataset": params.dataset, "root": str(raw / source.subdir), "homepage": source.homepage,
                "files": files, "licence": source.licence, "redistributable": source.redistributable},
               output.record)


@stage
def prepare_dataset(input: NS, output: NS, params: NS) -> None:
    from qfm_iqm.data.registry import KINDS, prepare

    threads = int(os.environ.get("OMP_NUM_THREADS", "1"))  # the job's threads, set by the runner
    meta = prepare(out_meta=output.meta, out_images=getattr(output, "images", None), threads=threads, **params.dataset)
    source = KINDS[params.dataset["kind"]].source
    write_json({"kind": params.dataset["kind"], "licence": source.licence if source else "unknown (a label folder)",
                "redistributable": bool(source and source.redistributable)}, output.licence)
    log.info("prepared %d images, raw scores %.2f..%.2f", len(meta), meta["score_raw"].min(), meta["score_raw"].max())


STAGES.add("prepare_resized_dataset", prepare_dataset)  # the same stage, for the rule of resized images


@stage
def build_expansion_pool(input: NS, output: NS, params: NS) -> None:
    from qfm_iqm.data.synthetic import build_pool

    cfg = params.pool
    meta = build_pool(output.meta, output.images, cfg["sources"], cfg["distortions"], cfg["levels"],
                      cfg["per_image"], cfg["short_side"], cfg["seed"])
    log.info("expansion pool: %d images from %d sources", len(meta), meta["ref_id"].nunique())


@stage
def make_splits(input: NS, output: NS, params: NS) -> None:
    meta = read_meta(input.meta)
    if params.scheme == "official":
        table = splits.official_split(meta, input.meta)
    else:
        table = splits.make_splits(meta, params.n_splits, params.test_fraction, params.seed, input.meta)
    write_csv(table, output.splits)
