"""config/paper.yaml at toy scale on the CPU (tests/paper_smoke.yaml laid over it): the DAG a GPU user runs, with the
ViT's tokens under the DEIQT decoder, the fine-tuned variants beside the fine-tuned baseline, cross-dataset and
figures, on a random ``test_vit`` and two dataset stand-ins."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import REPO
from dataset_fixtures import make_fixture
from workflow_helpers import scheduled_jobs, snakemake, write_config

from qfm_iqm.data.meta import read_meta
from qfm_iqm.features.backbone import create_backbone
from qfm_iqm.method import finetune
from qfm_iqm.method.partial import partial_spec
from qfm_iqm.settings import finetuned_variants, merged

pytestmark = pytest.mark.slow  # runs the paper's DAG: about 3 minutes on 2 cores
FINETUNED = ["finetune", "finetune_baseline", "finetune_gate", "finetune_matching", "finetune_distillation"]


def smoke_config(work: Path) -> Path:
    """config/paper.yaml with tests/paper_smoke.yaml over it, the stand-ins' roots and a random ViT's weights file."""
    config = merged(yaml.safe_load((REPO / "config/paper.yaml").read_text()),
                    yaml.safe_load((REPO / "tests/paper_smoke.yaml").read_text()))
    csiq = make_fixture("csiq", work / "official/csiq", distinct=True)
    koniq = make_fixture("koniq10k", work / "official/koniq", distinct=True)
    counts = {"csiq": len(list((csiq / "dst_imgs").rglob("*.png"))), "koniq10k": len(list((koniq / "512x384").iterdir()))}
    config["datasets"] = {name: {**config["datasets"][name], "root": str(root), "expected_count": counts[name]}
                          for name, root in (("csiq", csiq), ("koniq10k", koniq))}
    torch.manual_seed(0)
    torch.save(create_backbone("test_vit", "none").state_dict(), work / "test_vit.pth")
    config["backbone"]["weights"] = str(work / "test_vit.pth")
    return write_config(work, config)


@pytest.fixture(scope="module")
def paper_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("paper")
    snakemake(work, smoke_config(work), "--set-threads", "finetune_student=1")  # two tiny fine-tunes at once
    return work


def test_the_paper_dag_lists_the_fine_tuned_baseline_beside_the_full_model(tmp_path: Path) -> None:
    config = smoke_config(tmp_path)
    jobs = scheduled_jobs(snakemake(tmp_path, config, "-n"))
    assert jobs["finetune_student"] == 2 * len(FINETUNED)  # two datasets of one split, five fine-tuned students
    assert jobs["train_student"] == 2 * 5 + 2  # the frozen students, and full trained on every image for export
    assert jobs["evaluate_cross"] == 1 and jobs["plot_attention"] == 2


def test_the_paper_dag_fine_tunes_the_deiqt_decoder_over_vit_tokens(paper_run: Path) -> None:
    for name in ("csiq", "koniq10k"):
        metrics = pd.read_csv(paper_run / f"results/{name}/split0/metrics.csv")
        assert set(FINETUNED) | {"ridge", "teacher", "full", "baseline"} <= set(metrics["model"])
        summary = pd.read_csv(paper_run / f"results/{name}/summary.csv").set_index("model")
        assert np.isfinite(summary.loc["finetune", "srcc_diff_vs_finetune_baseline"])
        assert summary["srcc_diff_vs_finetune_baseline"].notna().sum() == len(FINETUNED) - 1
        assert "## Against finetune_baseline" in (paper_run / f"results/{name}/summary.md").read_text()
        assert (paper_run / f"results/{name}/figures/attention.png").stat().st_size > 0
    compared = pd.read_csv(paper_run / "results/paper_comparison.csv").set_index(["dataset", "paper_model", "metric"])
    assert compared.loc[("koniq10k", "DEIQT", "srcc"), "model"] == "finetune_baseline"  # the paper's base, beside ours
    assert compared.loc[("koniq10k", "QFM-IQM", "srcc"), "model"] == "finetune"
    matrix = pd.read_csv(paper_run / "results/cross_dataset/matrix.csv")
    assert {"finetune", "finetune_baseline"} <= set(matrix.loc[matrix["test"] == "csiq", "model"])

    ckpt = torch.load(paper_run / "results/csiq/split0/finetune/model.pt", weights_only=True)
    spec, state = ckpt["spec"], ckpt["state_dict"]
    assert spec["head"] == "decoder" and spec["query"] == "cls" and spec["gate"] and spec["tokens"] == 101
    assert (spec["queries"], spec["mlp_ratio"]) == (6, 4) and state["quality.quality.head.query"].shape == (1, 6, 32)
    assert spec["partial"]["from_block"] == 0 and spec["partial"]["early_size"] == 0
    start = torch.load(paper_run / "test_vit.pth", weights_only=True)  # every part of the ViT trained
    assert not torch.equal(state["descriptor.vit.patch_embed.proj.weight"], start["patch_embed.proj.weight"])
    assert not torch.equal(state["quality.top.blocks.5.mlp.fc2.weight"], start["blocks.5.mlp.fc2.weight"])
    baseline = torch.load(paper_run / "results/csiq/split0/finetune_baseline/model.pt", weights_only=True)["spec"]
    assert baseline["query"] == "cls" and not baseline["gate"]


def test_the_paper_dag_trains_with_deiqts_recipe(paper_run: Path) -> None:
    """config/paper.yaml's recipe reaches every fine-tune job: the learning rate warms up from 2e-7 to 2e-4 and is
    divided by 10 after the first decay period; each epoch draws crops_per_epoch crops of every training image; the
    gradients are clipped; the test scores average the 10 test crops."""
    config = yaml.safe_load((paper_run / "config.yaml").read_text())
    train, test = (pd.read_csv(paper_run / "results/csiq/splits.csv").query(f"split == 0 and part == '{p}'")
                   for p in ("train", "test"))
    for name in FINETUNED:
        log = pd.read_csv(paper_run / f"results/csiq/split0/{name}/log.csv")
        assert log["lr_start"].tolist() == pytest.approx([2e-7, 2e-4, 2e-5])  # first step, warmed up, first decay
        assert (log["samples"] == len(train) * config["finetune"]["crops_per_epoch"]).all()
        assert (log["steps"] == -(-len(train) // 4)).all() and (log["grad_norm_max"] > 0).all()
    stored = pd.read_csv(paper_run / "results/csiq/split0/finetune/predictions.csv", dtype={"image_id": str})
    assert set(stored["image_id"]) == set(test["image_id"].astype(str))
    meta = read_meta(paper_run / "data/csiq/meta.csv").set_index("image_id").loc[stored["image_id"]].reset_index()
    model = finetune.load(paper_run / "results/csiq/split0/finetune/model.pt")
    recipe = finetune.scoring_recipe(config["crops"], 10)
    np.testing.assert_allclose(stored["finetune"], finetune.predict(model, meta, recipe, 8), rtol=1e-4, atol=1e-5)
    assert not np.allclose(stored["finetune"], finetune.predict(model, meta, finetune.scoring_recipe(config["crops"], 1),
                                                                8), atol=1e-5)
    resolved = yaml.safe_load((paper_run / "results/config.yaml").read_text())  # the run's, defaults filled in
    cfg = finetune.student_config(finetuned_variants(resolved)["finetune"], resolved["finetune"],
                                  resolved["crops"]["size"], partial_spec(resolved))
    assert (cfg.clip_grad_norm, cfg.precision, cfg.head_init, cfg.loss) == (5.0, "amp", "trunc_normal", "smooth_l1")
    names = {id(p): n for n, p in model.named_parameters()}
    spared = {names[id(p)] for g in finetune.parameter_groups(model, cfg) if g["weight_decay"] == 0
              for p in g["params"]}  # the no-decay group the run's optimiser had
    assert {"descriptor.vit.pos_embed", "descriptor.vit.cls_token", "quality.quality.head.query"} <= spared
    assert {n for n in names.values() if n.endswith(".bias")} <= spared and "quality.top.blocks.0.attn.qkv.weight" \
        not in spared


def test_the_partner_tokens_reach_the_decoder_input(paper_run: Path) -> None:
    """The semantic noise reaches the decoder: in the run, L_sens (|noisy - clean prediction|) is non-zero on every
    epoch; in the trained model, partner images change what the decoder reads."""
    log = pd.read_csv(paper_run / "results/csiq/split0/finetune/log.csv")
    assert (log["loss_sens"] > 0).all() and (log["loss_adv"] > 0).all()
    model = finetune.load(paper_run / "results/csiq/split0/finetune/model.pt")
    seen = []
    model.quality.quality.head.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    images, partners = torch.rand(2, 3, 160, 160, generator=torch.Generator().manual_seed(0)).split(1)
    with torch.no_grad():
        model(images)
        model.quality(model.features(images), model.features(partners), 0.3, "add")  # as training adds them
    assert seen[0].shape == (1, 101, 64) and not torch.allclose(seen[0], seen[1])


def test_the_claims_table_tests_the_fine_tuned_models_first(paper_run: Path) -> None:
    """claims.md: the fine-tuned models' rows for claims 1, 2 (both probes), 3 and 5, then the frozen students'; a
    claim-4 row from the cross-dataset predictions (koniq10k to csiq: a paired bootstrap over csiq's images)."""
    for name in ("csiq", "koniq10k"):
        table = pd.read_csv(paper_run / f"results/{name}/claims.csv")
        tuned = table[table["block"] == "fine-tuned"].set_index("claim")
        assert table["block"].drop_duplicates().tolist() == ["fine-tuned", "frozen"]
        assert tuned.loc["1. accuracy: full beats its base", "comparison"] == "finetune - finetune_baseline"
        assert tuned.loc["1. accuracy: full beats its base", "verdict"] == "inconclusive"  # one split: no test
        sensitivity = tuned[tuned.index.str.startswith("2. ")]
        assert len(sensitivity) == 2 and np.isfinite(sensitivity["effect"]).all()  # both probes, fine-tuned
        assert tuned.loc["3. robustness to semantic confounders (test images far in content)", "splits"] == 1
        components = tuned[tuned.index.str.startswith("5. ")]
        assert components["comparison"].str.startswith("finetune_").all() and np.isfinite(components["effect"]).all()
        markdown = (paper_run / f"results/{name}/claims.md").read_text()
        assert markdown.startswith(f"# {name}: the paper's claims, tested (test_vit, decoder head, fine-tuned)")
        assert "## Frozen-backbone students: full vs baseline (mlp head, frozen features)" in markdown
    cross = pd.read_csv(paper_run / "results/koniq10k/claims.csv").set_index(["block", "claim"])
    row = cross.loc[("fine-tuned", "4. cross-dataset generalisation (tested on csiq)")]
    assert row["comparison"] == "finetune - finetune_baseline" and np.isfinite(row["p"]) and row["splits"] == 1
    assert row["verdict"] in {"supported", "not supported", "inconclusive"} and "bootstrap" in row["test"]
    frozen = cross.loc[("frozen", "4. cross-dataset generalisation (tested on csiq)")]  # paper.yaml crosses both pairs
    assert frozen["comparison"] == "full - baseline" and np.isfinite(frozen["effect"]) and frozen["verdict"] != "not run"
    csiq = pd.read_csv(paper_run / "results/csiq/claims.csv").set_index(["block", "claim"])
    assert csiq.loc[("fine-tuned", "4. cross-dataset generalisation"), "verdict"] == "not run"  # no pair from csiq
