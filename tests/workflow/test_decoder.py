"""The decoder students inside the workflow: the activation cache, partial fine-tune, evaluation, rerun scope."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import REPO
from workflow_helpers import (
    copy_run,
    export_split_bundle,
    scheduled_jobs,
    snakemake,
    split_images,
    tiny_config,
    write_config,
)

DS = "tiny"
CACHE = "results/tiny/activations/tf_efficientnet_lite0/c2s64r0/b6"
# a decoder variant of the full student (gate, matching, distillation), next to the pooled baseline
DECODER = {"arch": {"head": "decoder", "hidden": 16, "heads": 2}, "train": {"crops_per_epoch": 1}}


def decoder_config(**changes: dict) -> dict:
    config = tiny_config()
    config["ablation"]["run"] = ["baseline", "decoder"]
    config["ablation"]["variants"]["decoder"] = DECODER
    return {**config, **changes}


pytestmark = pytest.mark.slow  # the module runs the tiny workflow with decoder students


@pytest.fixture(scope="module")
def decoder_run(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny run, copied, then run again with a decoder variant: only what the decoder changes runs (its
    activation cache, its students, the evaluation and what follows), as for a user who adds one."""
    workdir = copy_run(tiny_run, tmp_path_factory.mktemp("decoder") / "run")
    snakemake(workdir, write_config(workdir, decoder_config()))
    return workdir


def test_the_decoder_student_trains_the_backbone_top_on_cached_activations(decoder_run: Path) -> None:
    from qfm_iqm.features.backbone import create_backbone
    from qfm_iqm.features.cache import FeatureSet
    from qfm_iqm.method.checkpoint import load_model
    from qfm_iqm.method.partial import ACTIVATION, EARLY

    meta = pd.read_csv(decoder_run / f"data/{DS}/meta.csv")
    cache = FeatureSet.load(decoder_run / CACHE / "labelled.npz")
    # 64-pixel crops: Lite0's block 6 reads 192 x 2 x 2; the early token holds 4 stages' means and stds
    assert cache.features.dtype == np.float16 and cache.features.shape == (len(meta), 2, 192 * 4 + 2 * 192)
    assert cache.block_names == [ACTIVATION, EARLY] and cache.block_sizes == [768, 2 * (16 + 24 + 40 + 112)]

    ensemble = load_model(decoder_run / f"results/{DS}/split0/students/decoder.pt")  # tiny_config: 2 seeds
    assert len(ensemble.members) == 2 and ensemble.spec["partial"] == ensemble.members[1].spec["partial"]
    model = ensemble.members[0]
    assert model.spec["head"] == "decoder" and model.spec["tokens"] == 4 + 1 and model.spec["partial"]["from_block"] == 6
    start = create_backbone("tf_efficientnet_lite0", decoder_run / "results/weights/tf_efficientnet_lite0.pth")
    moved = [not torch.equal(a, b) for a, b in zip(model.top.parameters(), start.blocks[6:].parameters(), strict=False)]
    assert any(moved), "the backbone's top did not train"
    bn = start.blocks[6][0].bn1
    assert torch.equal(model.top.blocks[0][0].bn1.running_mean, bn.running_mean), "BatchNorm statistics moved"

    predictions = pd.read_csv(decoder_run / f"results/{DS}/split0/predictions.csv")
    assert predictions["decoder"].notna().all() and predictions["decoder"].between(-2, 2).all()
    sensitivity = pd.read_csv(decoder_run / f"results/{DS}/sensitivity.csv").set_index("model")
    assert sensitivity.loc["decoder", "mean_abs_shift"] > 0
    assert "| decoder | 2 |" in (decoder_run / f"results/{DS}/summary.md").read_text()


def test_the_activation_rule_writes_where_cache_dir_and_cut_tag_name_the_cut(tmp_path: Path) -> None:
    """The cut's name is made once (``cut_tag``): the extraction rule's cache folder (``cache_dir``) and its logs."""
    from qfm_iqm.features.cache import cache_dir, crops_tag, cut_tag
    from qfm_iqm.settings import load_config_file, merged, validate

    config = merged(load_config_file(REPO / "config/config.yaml"), decoder_config())  # as Snakemake merges them
    validate(config)
    backbone, crops, block = config["backbone"]["name"], config["crops"], config["partial"]["from_block"]
    proc = snakemake(tmp_path, write_config(tmp_path, decoder_config()), "-n")
    plan = proc.stdout + proc.stderr
    assert f"output: {cache_dir(DS, backbone, crops, block)}/labelled.npz" in plan
    assert f"log: logs/{DS}/extract_activations/{backbone}_{crops_tag(crops)}_{cut_tag(block)}_labelled.log" in plan


def test_a_bundled_decoder_student_scores_as_the_pipeline_predicts(decoder_run: Path, tmp_path: Path) -> None:
    """The scorer runs the cached part of the backbone, rounds it to fp16 as the cache does, then the trained top
    (without the rounding the scores differ by about 5e-5; with it by about 2e-7)."""
    from qfm_iqm import load_model

    out = export_split_bundle(decoder_run, DS, "split0/students/decoder.pt", tmp_path / "decoder_bundle")
    preds, paths = split_images(decoder_run, DS, 0)
    raw = load_model(out, compile="off")(paths, ids=list(preds["image_id"]), scale="raw")
    np.testing.assert_allclose(raw, preds["decoder"], rtol=0, atol=1e-5)


SCORING = {"evaluate_split": 2, "summarize": 1, "claims": 1, "sensitivity_sweep": 1, "compare_with_paper": 1,
           "plot_scatter": 3, "plot_ablation": 1, "plot_sensitivity": 1, "report_benchmarks": 1, "report_config": 1,
           "export_model": 1, "all": 1}


@pytest.mark.parametrize("change, expected", [
    # a decoder knob reruns the decoder students and what reads them, never the activation cache
    ({"partial": {"from_block": 6, "top_lr_scale": 0.5}}, {"train_student": 2, **SCORING}),
    ({"ablation": {**decoder_config()["ablation"],
                   "variants": {**decoder_config()["ablation"]["variants"],
                                "decoder": {**DECODER, "arch": {**DECODER["arch"], "heads": 4}}}}},
     {"train_student": 2, **SCORING}),
    # another cut is another cache
    ({"partial": {"from_block": 5, "top_lr_scale": 0.1}}, {"extract_activations": 2, "train_student": 2, **SCORING}),
])
def test_a_decoder_knob_reruns_exactly_the_decoder_students(decoder_run: Path, change: dict, expected: dict) -> None:
    changed = write_config(decoder_run, decoder_config(**change), "changed.yaml")
    assert dict(scheduled_jobs(snakemake(decoder_run, changed, "-n"))) == expected
