"""Stages of ``workflow/rules/figures.smk``: the figures, the benchmark table and the run's config."""

from __future__ import annotations

import logging
from types import SimpleNamespace as NS

import pandas as pd

from qfm_iqm.features.cache import model_input
from qfm_iqm.io import write_csv, write_text
from qfm_iqm.pipeline.stages.base import stage
from qfm_iqm.pipeline.stages.common import activations, labelled, part, weights

log = logging.getLogger(__name__)


@stage
def plot_scatter(input: NS, output: NS, params: NS) -> None:
    from qfm_iqm.evaluation import figures

    preds = pd.concat([pd.read_csv(p) for p in input.predictions], ignore_index=True)
    figures.save(figures.scatter(preds, params.model, params.dataset, params.style), [output.png, output.pdf],
                 params.style["dpi"])


@stage
def plot_pairs(input: NS, output: NS, params: NS) -> None:
    from qfm_iqm.evaluation import figures

    sample = pd.read_csv(input.sample)
    figures.save(figures.pair_distance(sample, params.dataset, params.style), [output.png, output.pdf],
                 params.style["dpi"])


@stage
def plot_observation(input: NS, output: NS, params: NS) -> None:
    from qfm_iqm.evaluation import figures
    from qfm_iqm.evaluation.sensitivity import observation_spaces
    from qfm_iqm.method.checkpoint import load_model

    rows, feats = labelled(input, 0, "test")
    model = load_model(input.model)
    x = model_input(model, feats, activations(getattr(input, "activations", None), [model], rows))
    cfg = params.observation
    observed = observation_spaces(model, x, rows["score"].to_numpy(), cfg["large_gap"], cfg["n_random"], cfg["seed"])
    fig = figures.observation({k: v[1] for k, v in observed.items()}, {k: v[0] for k, v in observed.items()},
                              f"{params.dataset}, test part of split 0", params.style)
    figures.save(fig, [output.png, output.pdf], params.style["dpi"])
    log.info("observation: %s", {k: v[0] for k, v in observed.items()})


@stage
def plot_ablation(input: NS, output: NS, params: NS) -> None:
    from qfm_iqm.evaluation import figures

    fig = figures.ablation(figures.ablation_table(pd.read_csv(input.summary)), params.reference, params.dataset,
                           params.style)
    figures.save(fig, [output.png, output.pdf], params.style["dpi"])


@stage
def plot_sensitivity(input: NS, output: NS, params: NS) -> None:
    from qfm_iqm.evaluation import figures

    bars = figures.sensitivity_bars(pd.read_csv(input.sensitivity), params.dataset, params.style)
    figures.save(bars, [output.bars, output.bars_pdf], params.style["dpi"])
    curves = figures.sensitivity_sweep(pd.read_csv(input.sweep), params.tau, params.eps, params.dataset, params.style)
    figures.save(curves, [output.sweep, output.sweep_pdf], params.style["dpi"])


@stage
def plot_attention(input: NS, output: NS, params: NS) -> None:
    from qfm_iqm.evaluation import attention, figures
    from qfm_iqm.features.extract import CropRecipe
    from qfm_iqm.method.checkpoint import load_model

    picked = attention.pick_images(part(input, 0, "test"), params.style["attention_images"])
    models = {name: load_model(path) for name, path in zip(params.models, input.models, strict=True)}
    items = attention.attention_maps(picked, params.backbone["name"], weights(params.backbone, input), models,
                                     CropRecipe(**params.crops))
    fig = attention.attention_figure(items, f"{params.dataset}: gradient maps, split 0 test images", params.style)
    figures.save(fig, [output.png, output.pdf], params.style["dpi"])


@stage
def plot_cross(input: NS, output: NS, params: NS) -> None:
    from qfm_iqm.evaluation import figures

    fig = figures.cross_heatmap(pd.read_csv(input.table), params.models,
                                f"Cross-dataset median SRCC, {params.backbone}", params.style)
    figures.save(fig, [output.png, output.pdf], params.style["dpi"])


@stage
def report_benchmarks(input: NS, output: NS, params: NS) -> None:
    from qfm_iqm.evaluation.evaluate import benchmark_table

    table = benchmark_table(params.folder, params.rules)
    write_csv(table, output.table)
    log.info("\n%s", table.to_string(index=False))


@stage
def report_config(input: NS, output: NS, params: NS) -> None:
    import yaml

    write_text(yaml.safe_dump(params.config, sort_keys=False), output.config)
