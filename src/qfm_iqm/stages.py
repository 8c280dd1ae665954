"""One entry point per workflow rule: named input files and params in, named output files out.

Rules call these through ``workflow/scripts/run_stage.py``; they hold no logic of their own
beyond reading inputs, calling the stage modules and writing outputs. Every job is a fresh
process, so heavy libraries (torch, timm, scikit-image, scikit-learn, matplotlib) are imported
inside the stages that need them: importing all of them would cost seconds per job.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import SimpleNamespace as NS

import numpy as np
import pandas as pd

from qfm_iqm import pairs, splits
from qfm_iqm.data.meta import POOL_COLUMNS, read_meta
from qfm_iqm.feature_cache import FeatureSet
from qfm_iqm.io import write_csv, write_json, write_text

log = logging.getLogger(__name__)
STAGES: dict[str, Callable[[NS, NS, NS], None]] = {}


def stage(fn: Callable[[NS, NS, NS], None]) -> Callable[[NS, NS, NS], None]:
    STAGES[fn.__name__] = fn
    return fn


@stage
def convert_weights(input: NS, output: NS, params: NS) -> None:
    from qfm_iqm.weights import convert_package_weights

    digest = convert_package_weights(params.backbone, output.weights)
    write_text(f"{digest}  {output.weights}\n", output.sha256)
    log.info("converted %s weights, sha256 %s", params.backbone, digest)


@stage
def build_demo_dataset(input: NS, output: NS, params: NS) -> None:
    from qfm_iqm.data.synthetic import build_demo

    cfg = params.dataset
    meta = build_demo(output.meta, output.images, cfg["photos"], cfg["distortions"], cfg["levels"],
                      cfg["short_side"], cfg["seed"])
    log.info("demo dataset: %d images from %d photos", len(meta), meta["ref_id"].nunique())


@stage
def prepare_dataset(input: NS, output: NS, params: NS) -> None:
    from qfm_iqm import data

    options = {k: v for k, v in params.dataset.items() if k != "kind"}
    meta = data.prepare(params.dataset["kind"], output.meta, **options)
    log.info("prepared %d images, raw scores %.2f..%.2f", len(meta), meta["score_raw"].min(), meta["score_raw"].max())


@stage
def build_expansion_pool(input: NS, output: NS, params: NS) -> None:
    from qfm_iqm.data.synthetic import build_pool

    cfg = params.pool
    meta = build_pool(output.meta, output.images, cfg["sources"], cfg["distortions"], cfg["levels"],
                      cfg["per_image"], cfg["short_side"], cfg["seed"])
    log.info("expansion pool: %d images from %d sources", len(meta), meta["ref_id"].nunique())


@stage
def extract_features(input: NS, output: NS, params: NS) -> None:
    from qfm_iqm.features import CropRecipe, extract

    meta = read_meta(input.meta, ["image_id", "path"])
    cfg = params.backbone
    weights = input.weights if cfg["weights"] == "package" else cfg["weights"]
    feats, stats = extract(meta, cfg["name"], weights, CropRecipe(**params.crops), cfg["batch_size"],
                           cfg["channels_last"], cfg["device"])
    feats.save(output.features)
    write_json(stats, output.stats)


@stage
def make_splits(input: NS, output: NS, params: NS) -> None:
    table = splits.make_splits(read_meta(input.meta), params.n_splits, params.test_fraction, params.seed)
    write_csv(table, output.splits)


def _labelled(input: NS, split: int, part: str) -> tuple[pd.DataFrame, FeatureSet]:
    """Meta rows and features of one part of one split."""
    meta = read_meta(input.meta).set_index("image_id", drop=False)
    ids = splits.split_ids(pd.read_csv(input.splits, dtype={"image_id": str}), split, part)
    rows = meta.loc[ids].reset_index(drop=True)
    return rows, FeatureSet.load(input.features).subset(rows["image_id"])


@stage
def mine_pairs(input: NS, output: NS, params: NS) -> None:
    rows, feats = _labelled(input, int(params.split), "train")
    semantic = feats.semantic()
    cfg = params.pairs
    score = rows["score"].to_numpy()
    table = pairs.mine_pairs(rows["image_id"].to_numpy(), score, semantic, cfg["tau"], cfg["k_fallback"])
    stats, sample = pairs.observation(score, semantic, cfg["large_gap"], cfg["n_random"], cfg["seed"])
    stats["fallback_fraction"] = float(table["fallback"].mean())
    write_csv(table, output.pairs)
    write_json(stats, output.stats)
    write_csv(sample, output.sample)
    log.info("pairs: %s", stats)


def _fit(arch: dict, cfg: dict, x: np.ndarray, y: np.ndarray, out_model: str, out_log: str,
         **pool: np.ndarray) -> None:
    """Train a fresh, seeded model and write its checkpoint and per-epoch log."""
    from qfm_iqm import train
    from qfm_iqm.models import save_model

    train.seed_everything(cfg["seed"])
    model = train.build_model(x.shape[-1], arch)
    history = train.train(model, x, y, train.TrainConfig(**cfg), **pool)
    save_model(model, out_model)
    write_csv(history, out_log)


@stage
def train_teacher(input: NS, output: NS, params: NS) -> None:
    rows, feats = _labelled(input, int(params.split), "train")
    _fit(params.teacher["arch"], params.teacher["train"], feats.features, rows["score"].to_numpy(),
         output.model, output.log)


@stage
def train_student(input: NS, output: NS, params: NS) -> None:
    from qfm_iqm.models import load_model
    from qfm_iqm.train import predict_crops

    rows, feats = _labelled(input, int(params.split), "train")
    pool_meta = read_meta(input.pool_meta, POOL_COLUMNS)
    x_pool = FeatureSet.load(input.pool_features).subset(pool_meta["image_id"]).features
    y_pool = predict_crops(load_model(input.teacher), x_pool)
    mined = pd.read_csv(input.pairs, dtype={"image_id": str, "partner_id": str}).set_index("image_id")
    partners = pd.Index(rows["image_id"]).get_indexer(mined.loc[rows["image_id"], "partner_id"])
    student = params.student
    cfg = {**student["train"], **student["distillation"], **student["matching"]}
    _fit(student["arch"], cfg, feats.features, rows["score"].to_numpy(),
         output.model, output.log, x_pool=x_pool, y_pool=y_pool, partners=partners)
    write_csv(pool_meta[["image_id", "distortion", "level"]].assign(teacher_score=y_pool.mean(1)),
              output.pool_labels)
    log.info("student trained on %d labelled images and %d teacher-labelled pool images", len(rows), len(pool_meta))


@stage
def evaluate_split(input: NS, output: NS, params: NS) -> None:
    from qfm_iqm import evaluate
    from qfm_iqm.models import load_model
    from qfm_iqm.train import predict

    split = int(params.split)
    train_rows, train_feats = _labelled(input, split, "train")
    rows, test_feats = _labelled(input, split, "test")
    x = test_feats.features
    preds = rows[["image_id", "score", "score_raw", "ref_id", "distortion", "level"]].assign(split=split)
    preds["ridge"] = evaluate.ridge_floor(train_feats.features, train_rows["score"].to_numpy(), x, params.ridge_alphas)
    preds["teacher"] = predict(load_model(input.teacher), x)
    preds["student"] = predict(load_model(input.student), x)
    table = evaluate.split_metrics(preds, ["ridge", "teacher", "student"]).assign(split=split)
    write_csv(preds, output.predictions)
    write_csv(table, output.metrics)
    log.info("split %d:\n%s", split, table.to_string(index=False))


@stage
def summarize(input: NS, output: NS, params: NS) -> None:
    from qfm_iqm import evaluate

    per_split = pd.concat([pd.read_csv(p) for p in input.metrics], ignore_index=True)
    summary = evaluate.summarise(per_split)
    write_csv(per_split, output.metrics)
    write_csv(summary, output.summary)
    title = f"{params.dataset}: {params.backbone} (frozen features), {len(input.metrics)} splits"
    write_text(evaluate.to_markdown(summary, title), output.markdown)
    log.info("\n%s", summary.to_string(index=False))


@stage
def plot_scatter(input: NS, output: NS, params: NS) -> None:
    from qfm_iqm import figures

    preds = pd.concat([pd.read_csv(p) for p in input.predictions], ignore_index=True)
    figures.save(figures.scatter(preds, params.model, params.dataset, params.style), [output.png, output.pdf],
                 params.style["dpi"])


@stage
def plot_pairs(input: NS, output: NS, params: NS) -> None:
    from qfm_iqm import figures

    sample = pd.read_csv(input.sample)
    figures.save(figures.pair_distance(sample, params.dataset, params.style), [output.png, output.pdf],
                 params.style["dpi"])
