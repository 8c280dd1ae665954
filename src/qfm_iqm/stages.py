"""One entry point per workflow rule: named input files and params in, named output files out.

Rules call these through ``workflow/scripts/run_stage.py``; they hold no logic of their own
beyond reading inputs, calling the stage modules and writing outputs. Every job is a fresh
process, so heavy libraries (torch, timm, scikit-image, scikit-learn, matplotlib) are imported
inside the stages that need them: importing all of them would cost seconds per job.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace as NS

import numpy as np
import pandas as pd

from qfm_iqm import pairs, splits
from qfm_iqm.config import loss_settings
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


DEMO_LICENCE = ("sample photos shipped in scikit-image, scikit-learn and matplotlib (public domain or CC; see those "
                "packages), distorted and SSIM-scored here")


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


STAGES["prepare_resized_dataset"] = prepare_dataset


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
                           cfg["channels_last"], cfg["device"], cfg.get("compile", False),
                           precision=cfg.get("precision", "fp32"))
    feats.save(output.features)
    write_json(stats, output.stats)


@stage
def extract_activations(input: NS, output: NS, params: NS) -> None:
    from qfm_iqm.features import CropRecipe
    from qfm_iqm.method.partial import extract_activations as extract

    meta = read_meta(input.meta, ["image_id", "path"])
    cfg = params.backbone
    weights = input.weights if cfg["weights"] == "package" else cfg["weights"]
    feats, stats = extract(meta, cfg["name"], weights, CropRecipe(**params.crops), params.from_block, cfg["batch_size"],
                           cfg["channels_last"], cfg["device"], cfg.get("compile", False), cfg.get("precision", "fp32"))
    feats.save(output.activations)
    write_json(stats, output.stats)


@stage
def make_splits(input: NS, output: NS, params: NS) -> None:
    meta = read_meta(input.meta)
    if params.scheme == "official":
        table = splits.official_split(meta, input.meta)
    else:
        table = splits.make_splits(meta, params.n_splits, params.test_fraction, params.seed, input.meta)
    write_csv(table, output.splits)


def _part(input: NS, split: int | str, part: str) -> pd.DataFrame:
    """Meta rows of one part of one split; the training part of ``splits.ALL`` is every image."""
    meta = read_meta(input.meta).set_index("image_id", drop=False)
    if split == splits.ALL:
        if part != "train":
            raise ValueError(f"split {splits.ALL!r} has no {part} part")
        return meta.reset_index(drop=True)
    ids = splits.split_ids(pd.read_csv(input.splits, dtype={"image_id": str}), split, part)
    return meta.loc[ids].reset_index(drop=True)


def _labelled(input: NS, split: int | str, part: str) -> tuple[pd.DataFrame, FeatureSet]:
    """Meta rows and cached features of one part of one split."""
    rows = _part(input, split, part)
    return rows, FeatureSet.load(input.features).subset(rows["image_id"])


@functools.cache
def _load_cache(path: str) -> FeatureSet:
    """A feature or activation cache, read once per job however many models read it."""
    return FeatureSet.load(path)


def _model_input(model: object, feats: FeatureSet, activations: str | None, rows: pd.DataFrame) -> np.ndarray:
    """What ``model`` reads for ``rows``: cached activations (``activations``, a path) for a model with a
    trained backbone top (``qfm_iqm.method.partial``), else the pooled features ``feats`` (of ``rows``)."""
    if "partial" not in model.spec:
        return feats.features
    return _load_cache(activations).subset(rows["image_id"]).features


def _model_args(settings: dict, input: NS) -> dict:
    """``qfm_iqm.method.partial.model_for``'s backbone arguments from a rule's ``model`` params (empty for pooled heads)."""
    if not settings:
        return {}
    backbone = settings["backbone"]
    weights = input.weights if backbone["weights"] == "package" else backbone["weights"]
    return {"backbone": backbone["name"], "weights": weights, "partial": settings["partial"]}


@stage
def pair_observation(input: NS, output: NS, params: NS) -> None:
    rows, feats = _labelled(input, int(params.split), "train")
    cfg = params.observation
    stats, sample = pairs.observation(rows["score"].to_numpy(), feats.semantic(), cfg["large_gap"], cfg["n_random"],
                                      cfg["seed"])
    write_json(stats, output.stats)
    write_csv(sample, output.sample)
    log.info("observation: %s", stats)


POOL_PREFIX = "pool/"  # pool ids in the memory bank, so that they never collide with labelled ids


def _pool(input: NS) -> tuple[pd.DataFrame, FeatureSet]:
    """The expansion pool's teacher labels (``label_pool``'s table) and features, in one order."""
    labels = pd.read_csv(input.pool_labels, dtype={"image_id": str})
    return labels, FeatureSet.load(input.pool_features).subset(labels["image_id"])


def _bank_ids(labels: pd.DataFrame) -> np.ndarray:
    """Memory-bank ids of pool images."""
    return (POOL_PREFIX + labels["image_id"]).to_numpy()


@stage
def mine_pairs(input: NS, output: NS, params: NS) -> None:
    rows, feats = _labelled(input, splits.parse_split(params.split), "train")
    ids, score, semantic = rows["image_id"].to_numpy(), rows["score"].to_numpy(), feats.semantic()
    bank = [ids, score, semantic, np.full(len(ids), "train", dtype=object)]
    if params.memory == "train_pool":
        labels, pool_feats = _pool(input)
        pool = [_bank_ids(labels), labels["teacher_score"].to_numpy(), pool_feats.semantic(),
                np.full(len(labels), "pool", dtype=object)]
        bank = [np.concatenate([a, b]) for a, b in zip(bank, pool, strict=True)]
    table = pairs.mine_pairs(ids, score, semantic, *bank[:3], strategy=params.strategy, bank_source=bank[3],
                             **params.matcher)
    write_csv(table, output.pairs)
    first = table[table["rank"] == 0]
    log.info("%s partners from a bank of %d (%s memory): %.0f%% from the pool, %.0f%% by fallback, median "
             "cosine distance %.3f", params.strategy, len(bank[0]), params.memory, 100 * (first["source"] == "pool").mean(),
             100 * first["fallback"].mean(), first["cosine_distance"].median())


def _fit(arch: dict, model_args: dict, cfg: dict, feats: FeatureSet, y: np.ndarray, out_model: str, out_log: str,
         **pool: np.ndarray) -> None:
    """Train a fresh, seeded model on ``feats`` and write its checkpoint and per-epoch log."""
    from qfm_iqm.method import train
    from qfm_iqm.method.checkpoint import save_model
    from qfm_iqm.method.partial import model_for

    train.seed_everything(cfg["seed"])
    model = model_for(arch, feats, **model_args)
    history = train.train(model, feats.features, y, train.TrainConfig(**cfg), **pool)
    save_model(model, out_model)
    write_csv(history, out_log)


@stage
def train_teacher(input: NS, output: NS, params: NS) -> None:
    rows, feats = _labelled(input, splits.parse_split(params.split), "train")
    _fit(params.teacher["arch"], _model_args(params.model, input), params.teacher["train"], feats,
         rows["score"].to_numpy(), output.model, output.log)


@stage
def label_pool(input: NS, output: NS, params: NS) -> None:
    from qfm_iqm.method.checkpoint import load_model
    from qfm_iqm.method.train import predict_crops

    pool_meta = read_meta(input.pool_meta, POOL_COLUMNS)
    y = predict_crops(load_model(input.teacher), FeatureSet.load(input.pool_features).subset(pool_meta["image_id"]).features)
    crops = pd.DataFrame(y, columns=[f"crop{c}" for c in range(y.shape[1])])
    write_csv(pd.concat([pool_meta[["image_id", "distortion", "level"]].assign(teacher_score=y.mean(1)), crops], axis=1),
              output.labels)
    log.info("teacher labelled %d pool images: scores %.3f..%.3f", len(y), y.mean(1).min(), y.mean(1).max())


def _memory_and_pool(input: NS, train_ids: np.ndarray, student: dict) -> tuple[FeatureSet | None, pd.DataFrame | None,
                                                                            np.ndarray, np.ndarray | None]:
    """What a student reads besides its labelled part: the pool's features and teacher labels (when
    it distils or keeps the pool in memory), the ids of its memory bank and its partner rows there."""
    pool_feats = labels = None
    bank_ids = train_ids
    if hasattr(input, "pool_labels"):
        labels, pool_feats = _pool(input)
        if student["matching"].get("memory") == "train_pool":
            bank_ids = np.concatenate([train_ids, _bank_ids(labels)])
    partners = None
    if hasattr(input, "pairs"):
        partners = pairs.partner_matrix(pd.read_csv(input.pairs, dtype={"image_id": str, "partner_id": str}),
                                        train_ids, bank_ids)
    return pool_feats, labels, bank_ids, partners


def _write_info(path: str, rows: pd.DataFrame, student: dict, labels: pd.DataFrame | None, bank_ids: np.ndarray,
                partners: np.ndarray | None) -> None:
    """Record how many labelled and pool images a student used, how big its memory was and how
    concentrated its partners are (``pairs.concentration``)."""
    distils = labels is not None and student["distillation"]["kd_weight"] > 0
    info = {"labelled_images": len(rows), "pool_images_distilled": len(labels) if distils else 0,
            "memory_entries": len(bank_ids) if partners is not None else 0,
            "partners_from_pool": float((partners >= len(rows)).mean()) if partners is not None else 0.0,
            **(pairs.concentration(partners) if partners is not None else {})}
    write_json(info, path)
    log.info("student data: %s", info)


@stage
def train_student(input: NS, output: NS, params: NS) -> None:
    rows, feats = _labelled(input, splits.parse_split(params.split), "train")
    student = params.student
    pool_feats, labels, bank_ids, partners = _memory_and_pool(input, rows["image_id"].to_numpy(), student)
    extra = {}
    if labels is not None and student["distillation"]["kd_weight"] > 0:
        extra.update(x_pool=pool_feats.features, y_pool=labels.filter(regex=r"^crop\d+$").to_numpy())
    if partners is not None:
        memory = feats.features if len(bank_ids) == len(rows) else np.concatenate([feats.features, pool_feats.features])
        extra.update(partners=partners, memory=memory)
    _fit(student["arch"], _model_args(params.model, input), loss_settings(student), feats, rows["score"].to_numpy(),
         output.model, output.log, **extra)
    _write_info(output.info, rows, student, labels, bank_ids, partners)


@stage
def finetune_student(input: NS, output: NS, params: NS) -> None:
    from qfm_iqm.features import CropRecipe
    from qfm_iqm.method import finetune

    split = int(params.split)
    rows, test = _part(input, split, "train"), _part(input, split, "test")
    student, cfg = params.student, params.finetune
    _, labels, bank_ids, partners = _memory_and_pool(input, rows["image_id"].to_numpy(), student)
    pool = memory = None
    if labels is not None:
        pool_meta = read_meta(input.pool_meta, POOL_COLUMNS).merge(labels[["image_id", "teacher_score"]], on="image_id")
        if student["distillation"]["kd_weight"] > 0:
            pool = pool_meta
        memory = pd.concat([rows[["image_id", "path"]], pool_meta[["image_id", "path"]].assign(
            image_id=POOL_PREFIX + pool_meta["image_id"])], ignore_index=True).set_index("image_id").loc[bank_ids]
    own = {"lr" if k == "lr_head" else k: v for k, v in cfg.items() if k != "enabled"}
    cut = {"from_block": params.model["partial"]["from_block"]} if params.model else {}
    ft_cfg = finetune.FinetuneConfig(**{**loss_settings(student), **own, **cut}, crop=params.crops["size"])
    weights = input.weights if params.backbone["weights"] == "package" else params.backbone["weights"]
    model, history = finetune.finetune(params.backbone["name"], weights, student["arch"], ft_cfg, rows, partners,
                                       pool, None if memory is None else memory.reset_index())
    finetune.save(model, output.model, params.backbone["name"])
    write_csv(history, output.log)
    preds = finetune.predict(model, test, CropRecipe(**params.crops), params.backbone["batch_size"], cfg["device"])
    write_csv(test[["image_id"]].assign(finetune=preds), output.predictions)
    _write_info(output.info, rows, student, labels, bank_ids, partners)


@stage
def evaluate_split(input: NS, output: NS, params: NS) -> None:
    from qfm_iqm import evaluate
    from qfm_iqm.method.checkpoint import load_model
    from qfm_iqm.method.train import predict
    from qfm_iqm.pairs import cosine_distance_matrix
    from qfm_iqm.sensitivity import matched_partners, sensitivity

    split = int(params.split)
    train_rows, train_feats = _labelled(input, split, "train")
    rows, test_feats = _labelled(input, split, "test")
    x, y = test_feats.features, rows["score"].to_numpy()
    preds = rows[["image_id", "score", "score_raw", "ref_id", "distortion", "level"]].assign(split=split)
    preds["content_distance"] = cosine_distance_matrix(test_feats.semantic(), train_feats.semantic()).min(1)
    preds["ridge"] = evaluate.ridge_floor(train_feats.features, train_rows["score"].to_numpy(), x, params.ridge_alphas)
    models = {"teacher": load_model(input.teacher)}
    models.update({name: load_model(path) for name, path in zip(params.variants, input.students, strict=True)})
    cfg = params.sensitivity
    ids, semantic = rows["image_id"].to_numpy(), test_feats.semantic()
    partners = matched_partners(ids, y, semantic, cfg["tau"], cfg["k_fallback"])
    sens = []
    for name, model in models.items():
        xm = _model_input(model, test_feats, getattr(input, "activations", None), rows)
        preds[name] = predict(model, xm)
        sens.append({"model": name, **sensitivity(model, xm, y, partners, cfg["eps"], cfg["large_gap"])})
    names = ["ridge", *models]
    if hasattr(input, "finetune"):
        preds["finetune"] = preds["image_id"].map(pd.read_csv(input.finetune, dtype={"image_id": str})
                                                  .set_index("image_id")["finetune"])
        names.append("finetune")
    table = evaluate.split_metrics(preds, names).assign(split=split)
    write_csv(preds, output.predictions)
    write_csv(table, output.metrics)
    write_csv(pd.DataFrame(sens).assign(split=split), output.sensitivity)
    log.info("split %d:\n%s\n%s", split, table.to_string(index=False), pd.DataFrame(sens).to_string(index=False))


@stage
def summarize(input: NS, output: NS, params: NS) -> None:
    from qfm_iqm import evaluate

    per_split = pd.concat([pd.read_csv(p) for p in input.metrics], ignore_index=True)
    summary = evaluate.summarise(per_split, params.reference, params.test_fraction, params.family, **params.bootstrap)
    sens = pd.concat([pd.read_csv(p) for p in input.sensitivity], ignore_index=True)
    write_csv(per_split, output.metrics)
    write_csv(summary, output.summary)
    write_csv(sens.drop(columns="split").groupby("model", sort=False).median().reset_index(), output.sensitivity)
    title = f"{params.dataset}: {params.backbone}, {len(input.metrics)} splits; full model: {params.mode}"
    write_text(evaluate.to_markdown(summary, title, params.reference), output.markdown)
    log.info("\n%s", summary.to_string(index=False))


@stage
def claims(input: NS, output: NS, params: NS) -> None:
    from qfm_iqm import claims

    def joined(paths: list[str]) -> pd.DataFrame:
        return pd.concat([pd.read_csv(p, dtype={"image_id": str}) for p in paths], ignore_index=True)

    summary = pd.read_csv(input.summary)
    table = claims.claims_table(pd.read_csv(input.metrics), joined(input.sensitivity), joined(input.predictions),
                                summary, params.reference, params.test_fraction, params.claimed_gain, params.student,
                                params.synthetic_seeds)
    write_csv(table, output.table, float_format="%.4g")
    write_csv(claims.headline(summary, ["ridge", "teacher", params.reference, "full", "finetune"]), output.headline)
    write_text(claims.to_markdown(table, f"{params.dataset}: the paper's claims, tested"), output.markdown)
    log.info("\n%s", table.to_string(index=False))


@stage
def evaluate_cross(input: NS, output: NS, params: NS) -> None:
    from qfm_iqm import evaluate
    from qfm_iqm.method.checkpoint import load_model
    from qfm_iqm.method.train import predict

    split = int(params.split)
    train_rows = _part(NS(meta=input.train_meta, splits=input.train_splits), split, "train")
    train_x = FeatureSet.load(input.train_features).subset(train_rows["image_id"]).features
    rows = read_meta(input.test_meta)
    test_feats = FeatureSet.load(input.test_features).subset(rows["image_id"])
    x = test_feats.features
    preds = rows[["image_id", "score", "score_raw"]].assign(split=split)
    models = dict(zip(params.students, input.students, strict=True))
    for name in params.models:
        if name == "ridge":
            preds[name] = evaluate.ridge_floor(train_x, train_rows["score"].to_numpy(), x, params.ridge_alphas)
        elif name == "finetune":
            from qfm_iqm.features import CropRecipe
            from qfm_iqm.method import finetune

            preds[name] = finetune.predict(finetune.load(input.finetune), rows, CropRecipe(**params.crops),
                                           params.batch_size, params.finetune["device"])
        else:
            model = load_model(input.teacher if name == "teacher" else models[name])
            preds[name] = predict(model, _model_input(model, test_feats, getattr(input, "test_activations", None), rows))
    table = evaluate.split_metrics(preds, params.models).assign(split=split)
    write_csv(preds, output.predictions)
    write_csv(table, output.metrics)
    log.info("split %d:\n%s", split, table.to_string(index=False))


@stage
def summarize_cross(input: NS, output: NS, params: NS) -> None:
    from qfm_iqm import evaluate

    cross = [pd.read_csv(p).assign(train=Path(p).parents[2].name, test=Path(p).parents[1].name) for p in input.metrics]
    within = [pd.read_csv(p).assign(train=Path(p).parent.name, test=Path(p).parent.name) for p in input.within]
    per_split = pd.concat([*cross, *within], ignore_index=True)
    table = evaluate.cross_summary(per_split[per_split["model"].isin(params.models)])
    write_csv(table, output.table)
    write_text(evaluate.cross_markdown(table, params.models, f"Cross-dataset SRCC / PLCC, {params.backbone}"),
               output.markdown)
    log.info("\n%s", table.to_string(index=False))


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


@stage
def plot_observation(input: NS, output: NS, params: NS) -> None:
    import torch

    from qfm_iqm import figures
    from qfm_iqm.method.checkpoint import load_model

    rows, feats = _labelled(input, 0, "test")
    model = load_model(input.model)
    with torch.inference_mode():
        x = torch.from_numpy(_model_input(model, feats, getattr(input, "activations", None), rows)).float()
        spaces = {"standardised (baseline head's input)": model.representation(x, gated=False).mean(1),
                  "QFM-gated (full student's head input)": model.representation(x).mean(1)}
    cfg, score = params.observation, rows["score"].to_numpy()
    observed = {name: pairs.observation(score, z.numpy(), cfg["large_gap"], cfg["n_random"], cfg["seed"])
                for name, z in spaces.items()}
    fig = figures.observation({k: v[1] for k, v in observed.items()}, {k: v[0] for k, v in observed.items()},
                              f"{params.dataset}, test part of split 0", params.style)
    figures.save(fig, [output.png, output.pdf], params.style["dpi"])
    log.info("observation: %s", {k: v[0] for k, v in observed.items()})


@stage
def plot_ablation(input: NS, output: NS, params: NS) -> None:
    from qfm_iqm import figures

    fig = figures.ablation(pd.read_csv(input.summary), params.reference, params.dataset, params.style)
    figures.save(fig, [output.png, output.pdf], params.style["dpi"])


@stage
def sensitivity_sweep(input: NS, output: NS, params: NS) -> None:
    from qfm_iqm.method.checkpoint import load_model
    from qfm_iqm.sensitivity import sweep

    students = {(Path(p).parents[1].name, Path(p).stem): p for p in input.students}  # (split<k>, variant)
    tables = []
    for split, teacher in enumerate(input.teacher):
        rows, feats = _labelled(input, split, "test")
        models = {"teacher": load_model(teacher),
                  **{v: load_model(students[(f"split{split}", v)]) for v in params.variants
                     if (f"split{split}", v) in students}}
        inputs = {name: _model_input(m, feats, getattr(input, "activations", None), rows) for name, m in models.items()}
        table = sweep(models, inputs, rows["score"].to_numpy(), rows["image_id"].to_numpy(),
                      feats.semantic(), params.sweep["tau"], params.sweep["eps"], params.k_fallback,
                      params.large_gap)
        tables.append(table.assign(split=split))
    write_csv(pd.concat(tables, ignore_index=True), output.sweep)


@stage
def plot_sensitivity(input: NS, output: NS, params: NS) -> None:
    from qfm_iqm import figures

    bars = figures.sensitivity_bars(pd.read_csv(input.sensitivity), params.dataset, params.style)
    figures.save(bars, [output.bars, output.bars_pdf], params.style["dpi"])
    curves = figures.sensitivity_sweep(pd.read_csv(input.sweep), params.tau, params.eps, params.dataset, params.style)
    figures.save(curves, [output.sweep, output.sweep_pdf], params.style["dpi"])


@stage
def plot_attention(input: NS, output: NS, params: NS) -> None:
    from qfm_iqm import attention, figures
    from qfm_iqm.features import CropRecipe
    from qfm_iqm.method.checkpoint import load_model

    rows = _part(input, 0, "test").sort_values("score", ignore_index=True)
    n = min(params.style["attention_images"], len(rows))
    picked = rows.iloc[np.linspace(0, len(rows) - 1, n).round().astype(int)]  # worst to best, evenly spaced
    weights = input.weights if params.backbone["weights"] == "package" else params.backbone["weights"]
    models = {name: load_model(path) for name, path in zip(params.models, input.models, strict=True)}
    items = attention.attention_maps(picked, params.backbone["name"], weights, models, CropRecipe(**params.crops))
    fig = attention.attention_figure(items, f"{params.dataset}: gradient maps, split 0 test images", params.style)
    figures.save(fig, [output.png, output.pdf], params.style["dpi"])


@stage
def plot_cross(input: NS, output: NS, params: NS) -> None:
    from qfm_iqm import figures

    fig = figures.cross_heatmap(pd.read_csv(input.table), params.models,
                                f"Cross-dataset median SRCC, {params.backbone}", params.style)
    figures.save(fig, [output.png, output.pdf], params.style["dpi"])


@stage
def compare_with_paper(input: NS, output: NS, params: NS) -> None:
    from qfm_iqm import comparison

    cfg = params.comparison
    summaries = {run["name"]: pd.read_csv(path) for run, path in zip(params.runs, input.summaries, strict=True)}
    table = comparison.compare(cfg["published"], cfg["source"], cfg["tolerance"], params.runs, summaries)
    write_csv(table, output.table)
    write_text(comparison.to_markdown(table), output.markdown)
    log.info("\n%s", table.to_string(index=False))


@stage
def export_model(input: NS, output: NS, params: NS) -> None:
    import json

    import torch

    from qfm_iqm.backbone import create_backbone
    from qfm_iqm.deploy import bundle

    backbone = params.backbone
    kind = bundle.weights_kind(backbone["weights"])
    if kind == "hub":
        state = create_backbone(backbone["name"], "hub").state_dict()
    else:
        state = torch.load(input.weights, map_location="cpu", weights_only=True)
    info = bundle.export(output.bundle, name=params.name, model=input.model, backbone=backbone["name"],
                         precision=backbone.get("precision", "fp32"),
                         weights=backbone["weights"], state=state, weights_file=getattr(input, "weights", None),
                         crops=params.crops, meta=read_meta(input.meta), dataset={
                             "name": params.name, **json.loads(Path(input.licence).read_text()),
                             "citation": params.credit["citation"]},
                         settings=params.settings, provenance=json.loads(Path(input.provenance).read_text()),
                         summary=pd.read_csv(input.summary), notice=params.credit["notice"] or None,
                         published=params.published)
    log.info("bundle %s: %s", output.bundle, info["files"])


@stage
def ship_model(input: NS, output: NS, params: NS) -> None:
    from qfm_iqm.deploy.bundle import copy_bundle

    info = copy_bundle(input.bundle, output.shipped)
    log.info("shipped %s as %s: %s", input.bundle, output.shipped, info["files"])


@stage
def report_benchmarks(input: NS, output: NS, params: NS) -> None:
    from qfm_iqm.evaluate import benchmark_table

    table = benchmark_table(params.folder, params.rules)
    write_csv(table, output.table)
    log.info("\n%s", table.to_string(index=False))


@stage
def report_config(input: NS, output: NS, params: NS) -> None:
    import yaml

    write_text(yaml.safe_dump(params.config, sort_keys=False), output.config)
