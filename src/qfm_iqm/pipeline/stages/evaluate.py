"""Stages of ``workflow/rules/evaluate.smk``: per-split and cross-dataset evaluation, summaries, claims,
the sensitivity sweep and the paper comparison."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace as NS

import pandas as pd

from qfm_iqm.data.meta import read_meta
from qfm_iqm.features.cache import FeatureSet, model_input
from qfm_iqm.io import write_csv, write_text
from qfm_iqm.pipeline.stages.base import stage
from qfm_iqm.pipeline.stages.common import activations, labelled, split_part

log = logging.getLogger(__name__)


@stage
def evaluate_split(input: NS, output: NS, params: NS) -> None:
    from qfm_iqm.evaluation import evaluate
    from qfm_iqm.method.checkpoint import load_model

    split = int(params.split)
    train_rows, train_feats = labelled(input, split, "train")
    rows, feats = labelled(input, split, "test")
    models = {"teacher": load_model(input.teacher)}
    models.update({name: load_model(path) for name, path in zip(params.variants, input.students, strict=True)})
    tokens = activations(getattr(input, "activations", None), models.values(), rows)
    finetuned = [pd.read_csv(path, dtype={"image_id": str}) for path in input.finetuned]
    preds, table, sens = evaluate.split_evaluation(split, train_rows, train_feats, rows, feats, tokens, models,
                                                   params.ridge_alphas, params.sensitivity, finetuned)
    write_csv(preds, output.predictions)
    write_csv(table, output.metrics)
    write_csv(sens, output.sensitivity)
    log.info("split %d:\n%s\n%s", split, table.to_string(index=False),
             sens.drop(columns="split").to_string(index=False))


@stage
def summarize(input: NS, output: NS, params: NS) -> None:
    from qfm_iqm.evaluation import evaluate

    per_split = pd.concat([pd.read_csv(p) for p in input.metrics], ignore_index=True)
    summary = evaluate.summarise(per_split, params.reference, params.test_fraction, params.family, **params.bootstrap)
    if params.finetuned_reference:
        summary = evaluate.summarise_finetuned(summary, per_split, params.finetuned_reference, params.finetuned_family,
                                               params.test_fraction, **params.bootstrap)
    sens = pd.concat([pd.read_csv(p) for p in input.sensitivity], ignore_index=True)
    write_csv(per_split, output.metrics)
    write_csv(summary, output.summary)
    paper = sens[sens["probe"] == "additive"].drop(columns=["probe", "form"]).groupby("model", sort=False)
    medians = paper.median().drop(columns="split").assign(splits=paper["split"].nunique())  # the paper's probe
    write_csv(medians.reset_index(), output.sensitivity)
    title = f"{params.dataset}: {params.backbone}, {len(input.metrics)} splits; full model: {params.mode}"
    write_text(evaluate.to_markdown(summary, title, params.reference, params.finetuned_reference), output.markdown)
    log.info("\n%s", summary.to_string(index=False))


@stage
def claims(input: NS, output: NS, params: NS) -> None:
    from qfm_iqm.evaluation import claims

    def joined(paths: list[str]) -> pd.DataFrame:
        return pd.concat([pd.read_csv(p, dtype={"image_id": str}) for p in paths], ignore_index=True)

    sensitivity = pd.concat([joined(input.sensitivity), *map(pd.read_csv, input.finetuned_sensitivity)],
                            ignore_index=True)  # the fine-tuned models' in finetune_sensitivity.csv, one per split
    cross = {}  # test dataset -> the predictions of every split (results/cross_dataset/<train>/<test>/split<k>/...)
    for path in input.cross:
        cross.setdefault(Path(path).parents[1].name, []).append(path)
    blocks = [claims.Block(**block) for block in params.blocks]
    table = claims.claims_table(pd.read_csv(input.metrics), sensitivity, joined(input.predictions), blocks,
                                params.test_fraction, params.claimed_gain, params.student, params.synthetic_seeds,
                                {test: joined(paths) for test, paths in cross.items()}, params.bootstrap)
    write_csv(table, output.table, float_format="%.4g")
    write_csv(claims.readable(table), output.readable)
    write_csv(claims.headline(pd.read_csv(input.summary), params.headline), output.headline)
    write_text(claims.to_markdown(table, claims.title(params.dataset, params.backbone, blocks[0]), blocks),
               output.markdown)
    log.info("\n%s", table.to_string(index=False))


@stage
def evaluate_cross(input: NS, output: NS, params: NS) -> None:
    from qfm_iqm.evaluation import evaluate
    from qfm_iqm.method.checkpoint import load_model

    split = int(params.split)
    train_rows = split_part(input.train_meta, input.train_splits, split, "train")
    train_x = FeatureSet.load(input.train_features).subset(train_rows["image_id"]).features
    rows = read_meta(input.test_meta)
    feats = FeatureSet.load(input.test_features).subset(rows["image_id"])
    students = dict(zip(params.students, input.students, strict=True))
    models = {name: load_model(input.teacher if name == "teacher" else students[name]) for name in params.models
              if name != "ridge" and name not in params.finetuned}
    finetuned = {}
    if params.finetuned:
        from qfm_iqm.features.extract import CropRecipe
        from qfm_iqm.method import finetune

        finetuned = {name: finetune.predict(finetune.load(path), rows, CropRecipe(**params.crops), params.batch_size,
                                            params.finetune["device"])
                     for name, path in zip(params.finetuned, input.finetuned, strict=True)}
    tokens = activations(getattr(input, "test_activations", None), models.values(), rows)
    preds, table = evaluate.cross_evaluation(split, train_rows, train_x, rows, feats, tokens, params.models, models,
                                             params.ridge_alphas, finetuned)
    write_csv(preds, output.predictions)
    write_csv(table, output.metrics)
    log.info("split %d:\n%s", split, table.to_string(index=False))


@stage
def summarize_cross(input: NS, output: NS, params: NS) -> None:
    from qfm_iqm.evaluation import evaluate

    cross = [pd.read_csv(p).assign(train=Path(p).parents[2].name, test=Path(p).parents[1].name) for p in input.metrics]
    within = [pd.read_csv(p).assign(train=Path(p).parent.name, test=Path(p).parent.name) for p in input.within]
    per_split = pd.concat([*cross, *within], ignore_index=True)
    table = evaluate.cross_summary(per_split[per_split["model"].isin(params.models)])
    write_csv(table, output.table)
    write_text(evaluate.cross_markdown(table, params.models, f"Cross-dataset SRCC / PLCC, {params.backbone}"),
               output.markdown)
    log.info("\n%s", table.to_string(index=False))


@stage
def sensitivity_sweep(input: NS, output: NS, params: NS) -> None:
    from qfm_iqm.evaluation.sensitivity import sweep
    from qfm_iqm.method.checkpoint import load_model

    students = {(Path(p).parents[1].name, Path(p).stem): p for p in input.students}  # (split<k>, variant)
    tables = []
    for split, teacher in enumerate(input.teacher):
        rows, feats = labelled(input, split, "test")
        models = {"teacher": load_model(teacher),
                  **{v: load_model(students[(f"split{split}", v)]) for v in params.variants
                     if (f"split{split}", v) in students}}
        tokens = activations(getattr(input, "activations", None), models.values(), rows)
        inputs = {name: model_input(model, feats, tokens) for name, model in models.items()}
        table = sweep(models, inputs, rows["score"].to_numpy(), rows["image_id"].to_numpy(),
                      feats.semantic(), params.sweep["tau"], params.sweep["eps"], params.k_fallback,
                      params.large_gap)
        tables.append(table.assign(split=split))
    write_csv(pd.concat(tables, ignore_index=True), output.sweep)


@stage
def compare_with_paper(input: NS, output: NS, params: NS) -> None:
    from qfm_iqm.evaluation import comparison

    cfg = params.comparison
    names = dict.fromkeys(run["name"] for run in params.runs)  # a dataset has a row per paper model
    summaries = {name: pd.read_csv(path) for name, path in zip(names, input.summaries, strict=True)}
    table = comparison.compare(comparison.published_tables(cfg), cfg["source"], cfg["tolerance"], params.runs,
                               summaries)
    write_csv(table, output.table, float_format="%.3f")  # correlations: their CIs are about 0.01-0.1 wide
    write_text(comparison.to_markdown(table), output.markdown)
    log.info("\n%s", table.to_string(index=False))
