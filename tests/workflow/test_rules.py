"""The whole workflow through Snakemake on a tiny config: outputs, rerun scope, bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, SHARED, needs_livec, write_image
from workflow_helpers import scheduled_jobs, snakemake, tiny_config, write_config

from qfm_iqm.method.checkpoint import load_model

pytestmark = pytest.mark.slow
DS = "tiny"


def test_every_stage_writes_real_content(tiny_run: Path) -> None:
    res = tiny_run / "results" / DS
    meta = pd.read_csv(tiny_run / f"data/{DS}/meta.csv")
    assert len(meta) == 3 * (1 + 2 * 2) and meta["score"].between(0, 1).all()
    feats = np.load(res / "features/tf_efficientnet_lite0/c2s64r0/labelled.npz")
    assert feats["features"].shape == (len(meta), 2, 2304) and np.isfinite(feats["features"]).all()
    stats = json.loads((res / "features/tf_efficientnet_lite0/c2s64r0/labelled.stats.json").read_text())
    assert stats["images"] == len(meta) and stats["images_per_s"] > 0
    log = (tiny_run / f"logs/{DS}/extract_features/tf_efficientnet_lite0_c2s64r0_labelled.log").read_text()
    assert "images/s" in log and "bare backbone forward" in log and "data wait" in log
    assert 0 <= stats["data_wait"] <= 1 and stats["workers"] == 1

    splits = pd.read_csv(res / "splits.csv")
    summary = pd.read_csv(res / "summary.csv")
    models = ["ridge", "teacher", "full", "baseline", "topk_partner"]
    assert summary["model"].tolist() == models and (summary["splits"] == 2).all()
    assert summary[["srcc_median", "plcc_median", "krcc_median"]].abs().le(1).all().all()
    assert (summary["srcc_ci_low"] <= summary["srcc_median"]).all() and (summary["srcc_median"] <= summary["srcc_ci_high"]).all()
    assert 0 <= summary.set_index("model").loc["full", "srcc_p_corrected_vs_baseline"] <= 1
    assert "| full | 2 |" in (res / "summary.md").read_text()
    claims = pd.read_csv(res / "claims.csv")
    assert len(claims) == 9 and claims.loc[0, "splits"] == 2 and pd.isna(claims.loc[0, "claimed"])  # no published gain
    assert set(claims["verdict"]) <= {"supported", "not supported", "inconclusive", "not run"}
    assert (claims["block"] == "frozen").all() and claims["claim"].str.startswith("2. ").sum() == 2  # both probes
    assert claims["measure"].str.contains("additive noise at eps").any()
    claims_md = (res / "claims.md").read_text()
    assert claims_md.startswith("# tiny: the paper's claims, tested (tf_efficientnet_lite0, mlp head, frozen features)")
    assert "| 1. accuracy: full beats its base | full - baseline | SRCC | 2 |" in claims_md
    assert "content_distance" in pd.read_csv(res / "split0/predictions.csv")
    sensitivity = pd.read_csv(res / "sensitivity.csv")
    assert sensitivity["model"].tolist() == models[1:] and (sensitivity["mean_abs_shift"] > 0).all()
    pool_size = len(pd.read_csv(tiny_run / f"data/{DS}/pool/meta.csv"))
    for split in (0, 1):
        d = res / f"split{split}"
        preds = pd.read_csv(d / "predictions.csv")
        assert list(preds.columns[-5:]) == models
        test_ids = splits[(splits["split"] == split) & (splits["part"] == "test")]["image_id"]
        assert sorted(preds["image_id"]) == sorted(test_ids)  # evaluated on the test part only
        refs = meta.set_index("image_id")["ref_id"]
        train_ids = splits[(splits["split"] == split) & (splits["part"] == "train")]["image_id"]
        assert set(refs[preds["image_id"]]).isdisjoint(refs[train_ids])
        farthest = pd.read_csv(d / "pairs/farthest_train_pool.csv")  # the full model's memory: train + pool
        assert sorted(farthest["image_id"]) == sorted(train_ids) and (farthest["rank"] == 0).all()
        assert set(farthest["partner_id"]) <= {*train_ids, *("pool/" + pd.read_csv(d / "pool_labels.csv")["image_id"])}
        assert not set(farthest["partner_id"]) & set(test_ids) and (farthest["image_id"] != farthest["partner_id"]).all()
        topk = pd.read_csv(d / "pairs/topk_mean_train.csv")
        assert (topk["source"] == "train").all() and topk.groupby("image_id").size().max() == 2
        assert pd.read_csv(d / "teacher_log.csv")["epoch"].tolist() == [1, 2, 3]
        full_log = pd.read_csv(d / "students/full_log.csv")
        assert (full_log[["loss_kd", "loss_adv", "loss_sens"]] > 0).all().all()  # distillation and matching on
        assert full_log.groupby("seed")["epoch"].apply(list).to_dict() == {0: [1, 2, 3], 1: [1, 2, 3]}  # evaluation.seeds
        assert len(load_model(d / "students/full.pt").members) == 2
        baseline_log = pd.read_csv(d / "students/baseline_log.csv")
        assert (baseline_log[["loss_kd", "loss_adv", "loss_sens"]] == 0).all().all()
        assert json.loads((d / "students/full.json").read_text())["pool_images_distilled"] == pool_size == 4
        assert json.loads((d / "students/baseline.json").read_text())["pool_images_distilled"] == 0
        assert len(pd.read_csv(d / "pool_labels.csv")) == pool_size
    for name in ["scatter_ridge", "scatter_teacher", "scatter_full", "pair_distance"]:
        assert (res / f"figures/{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (res / f"figures/{name}.pdf").read_bytes()[:5] == b"%PDF-"
    sha = (tiny_run / "results/weights/tf_efficientnet_lite0.sha256").read_text().split()[0]
    assert len(sha) == 64
    assert (tiny_run / f"benchmarks/{DS}/split0/train_student_full.tsv").is_file()


def test_training_and_evaluation_jobs_record_their_provenance(tiny_run: Path) -> None:
    from importlib import metadata

    split = tiny_run / f"results/{DS}/split0"
    records = {name: json.loads((split / name).read_text()) for name in
               ["teacher.provenance.json", "students/full.provenance.json", "evaluation.provenance.json"]}
    assert [r["rule"] for r in records.values()] == ["train_teacher", "train_student", "evaluate_split"]
    full = records["students/full.provenance.json"]
    assert full["outputs"][0].endswith("students/full.pt")
    assert re.fullmatch(r"[0-9a-f]{40}", full["git"]["commit"]) or full["git"]["commit"].startswith("unknown")
    assert len({r["config_sha256"] for r in records.values()}) == 1  # one configuration ...
    assert len({r["params_sha256"] for r in records.values()}) == 3  # ... of which each job uses its part
    assert full["seeds"] == {"student.train.seed": 0}
    assert records["teacher.provenance.json"]["seeds"] == {"teacher.train.seed": 0}
    assert full["device"]["requested"] == ["cpu"] and full["packages"]["torch"] == metadata.version("torch")
    assert all(r["wall_s"] > 0 for r in records.values())


def test_one_seed_gives_identical_results_across_runs(tiny_run: Path, tmp_path: Path) -> None:
    compared = ["split0/metrics.csv", "split0/sensitivity.csv", "split0/predictions.csv", "split1/students/full_log.csv"]
    snakemake(tmp_path, write_config(tmp_path, tiny_config()), *(f"results/{DS}/{name}" for name in compared))
    for name in compared:
        assert (tmp_path / f"results/{DS}" / name).read_bytes() == (tiny_run / f"results/{DS}" / name).read_bytes(), name


def test_finetune_mode_trains_the_backbone_inside_the_workflow(tiny_run: Path) -> None:
    config = tiny_config()
    config["finetune"]["enabled"] = True
    changed = write_config(tiny_run, config, "finetune.yaml")
    jobs = scheduled_jobs(snakemake(tiny_run, changed, "-n"))
    assert dict(jobs) == {"finetune_student": 2, "evaluate_split": 2, "summarize": 1, "claims": 1, "plot_scatter": 3,
                          "plot_ablation": 1, "plot_sensitivity": 1, "compare_with_paper": 1, "report_benchmarks": 1,
                          "report_config": 1, "export_model": 1, "all": 1}  # the comparison now reports the fine-tuned
    # student (and the configuration page records the switch); the
    # bundle's card holds the new summary (it still bundles the full student: fine-tuned models are not bundled)
    snakemake(tiny_run, changed, f"results/{DS}/split0/finetune/predictions.csv")
    d = tiny_run / f"results/{DS}/split0/finetune"
    log = pd.read_csv(d / "log.csv")
    assert log["epoch"].tolist() == [1, 2, 3] and (log[["loss_adv", "loss_sens", "loss_kd"]] > 0).all().all()
    assert json.loads((d / "info.json").read_text())["pool_images_distilled"] == 4
    preds = pd.read_csv(d / "predictions.csv")
    test = pd.read_csv(tiny_run / f"results/{DS}/split0/predictions.csv")
    assert sorted(preds["image_id"]) == sorted(test["image_id"]) and np.isfinite(preds["finetune"]).all()


def test_nothing_left_to_do_after_a_run(tiny_run: Path) -> None:
    proc = snakemake(tiny_run, tiny_run / "config.yaml", "-n")
    assert "Nothing to be done" in proc.stdout + proc.stderr


# What a changed student reruns: its evaluation, the tables (claims too) and figures that read them, the report's
# benchmark table and configuration page, and the deployable model's bundle (its card holds the test summary); a changed full student
# also the figures drawn from it (observation, attention) and the final model trained on every image ("all").
SCORING = {"evaluate_split": 2, "summarize": 1, "claims": 1, "sensitivity_sweep": 1, "compare_with_paper": 1,
           "plot_scatter": 3, "plot_ablation": 1, "plot_sensitivity": 1, "report_benchmarks": 1, "report_config": 1,
           "export_model": 1, "all": 1}
FULL = {**SCORING, "plot_observation": 1, "plot_attention": 1}
FIGURES = {"plot_scatter": 3, "plot_pairs": 1, "plot_observation": 1, "plot_ablation": 1, "plot_sensitivity": 1,
           "plot_attention": 1, "report_benchmarks": 1, "report_config": 1, "all": 1}


@pytest.mark.parametrize("path, value, expected", [
    (("student", "train", "epochs"), 4, {"train_student": 7, **FULL}),  # every variant inherits it
    (("student", "matching", "eps"), 0.5, {"train_student": 5, **FULL}),  # the variants with matching
    (("evaluation", "seeds"), 3, {"train_student": 7, **FULL}),  # every student, nothing before them
    (("ablation", "variants", "topk_partner", "arch"), {"hidden": 8}, {"train_student": 2, **SCORING}),
    (("teacher", "arch", "hidden"), 48,  # not the baseline: it reads no teacher labels
     {"train_teacher": 3, "label_pool": 3, "mine_pairs": 3, "train_student": 5, **FULL}),
    (("pairs", "tau"), 0.1, {"mine_pairs": 5, "train_student": 5, **FULL}),
    (("pairs", "top_k"), 3, {"mine_pairs": 2, "train_student": 2, **SCORING}),
    (("datasets", DS, "n_splits"), 3,  # the final model reads no splits
     {"make_splits": 1, "pair_observation": 3, "mine_pairs": 6, "train_teacher": 3, "label_pool": 3,
      "train_student": 9, **FULL, "evaluate_split": 3, "plot_pairs": 1}),
    (("datasets", DS, "pool", "per_image"), 1,
     {"build_expansion_pool": 1, "extract_features": 1, "label_pool": 3, "mine_pairs": 3, "train_student": 5,
      **FULL}),
    (("evaluation", "sweep", "eps"), [0.2], {"sensitivity_sweep": 1, "plot_sensitivity": 1, "report_benchmarks": 1,
                                            "report_config": 1, "all": 1}),
    (("figures", "dpi"), 30, FIGURES),  # a style option: only the figures (and the report's tables and config page)
])
def test_changing_one_knob_reruns_exactly_the_dependent_jobs(tiny_run: Path, path: tuple[str, ...], value: float,
                                                              expected: dict) -> None:
    config = tiny_config()
    section = config
    for key in path[:-1]:
        section = section[key]
    section[path[-1]] = value
    changed = write_config(tiny_run, config, f"changed_{'_'.join(path)}.yaml")
    assert dict(scheduled_jobs(snakemake(tiny_run, changed, "-n"))) == expected


def _labels_config(workdir: Path) -> Path:
    rows = ["name,mos"]
    for i in range(6):
        write_image(workdir / "raw/images" / f"img{i}.png", (72, 72), i)
        rows.append(f"img{i}.png,{i * 10 + 3}")
    (workdir / "raw/labels.csv").write_text("\n".join(rows) + "\n")
    tiny = tiny_config()
    dataset = {"kind": "labels", "labels": "raw/labels.csv", "images": "raw/images", "image_column": "name",
               "score_column": "mos", "higher_is_better": True, "n_splits": 2,
               "pool": tiny["datasets"][DS]["pool"]}
    return write_config(workdir, tiny_config(run=["mine"], datasets={"mine": dataset}))


def _break_score(d: Path) -> None:
    (d / "raw/labels.csv").write_text((d / "raw/labels.csv").read_text().replace("img2.png,23", "img2.png,n/a"))


def _corrupt_image(d: Path) -> None:
    (d / "raw/images/img4.png").write_bytes((d / "raw/images/img4.png").read_bytes()[:150])


@pytest.mark.parametrize("breakage, message", [
    (_break_score, r"ERROR in prepare_dataset: .*raw/labels.csv, row 4: score 'n/a' in column 'mos' is not a number"),
    (lambda d: (d / "raw/images/img3.png").unlink(), r"ERROR in prepare_dataset: .*image not found: .*img3.png"),
    (_corrupt_image, r"ERROR in extract_features: corrupt or unreadable image: .*img4.png"),
])
def test_bad_input_stops_with_a_clear_error_and_no_partial_results(tmp_path: Path, breakage, message: str) -> None:
    config = _labels_config(tmp_path)
    breakage(tmp_path)
    proc = snakemake(tmp_path, config, check=False)
    assert proc.returncode != 0
    assert re.search(message, proc.stdout + proc.stderr), proc.stderr[-3000:]
    files = [p.relative_to(tmp_path) for d in ("results", "data") for p in (tmp_path / d).rglob("*") if p.is_file()]
    temporary = [f for f in files if f.name != ".snakemake_timestamp" and any(p.startswith(".") for p in f.parts)]
    assert temporary == []
    results = {str(f) for f in files if f.parts[0] == "results" and "weights" not in f.parts}
    if "extract_features" in message:  # preparation and splits succeeded; no labelled features were written
        pool = {f"results/mine/features/tf_efficientnet_lite0/c2s64r0/pool{s}"
                for s in (".npz", ".npz.sha256", ".stats.json")}
        assert results - pool <= {"results/mine/splits.csv", "results/mine/splits.csv.sha256"}  # the independent
        # pool job may have finished
        assert results & pool in (set(), pool)  # ... but then completely
        assert (tmp_path / "data/mine/meta.csv").is_file()
    else:
        assert results == set() and not (tmp_path / "data/mine/meta.csv").exists()


def test_local_profile_plans_the_same_jobs_as_a_plain_run(tmp_path: Path) -> None:
    config = write_config(tmp_path, tiny_config())
    plain = scheduled_jobs(snakemake(tmp_path, config, "-n"))
    profiled = scheduled_jobs(snakemake(tmp_path, config, "-n", "--profile", str(REPO / "workflow/profiles/local")))
    assert profiled == plain and plain["train_student"] == 2 * 3 + 1  # 2 splits x 3 students, the final model


def test_ablation_splits_trains_the_other_variants_on_the_first_splits_only(tmp_path: Path) -> None:
    config = tiny_config()
    config["ablation"]["splits"] = 1
    jobs = scheduled_jobs(snakemake(tmp_path, write_config(tmp_path, config), "-n"))
    # split 0: full, baseline (the reference) and topk_partner; split 1: full and baseline; the final full model
    assert jobs["train_student"] == 3 + 2 + 1 and jobs["evaluate_split"] == 2 and jobs["sensitivity_sweep"] == 1


def test_a_section_repeated_in_a_config_file_stops_the_plan_naming_both_lines(tmp_path: Path) -> None:
    config = write_config(tmp_path, tiny_config())
    config.write_text(config.read_text() + "student:\n  train:\n    epochs: 3\n")
    proc = snakemake(tmp_path, config, "-n", check=False)
    assert proc.returncode != 0
    assert "key 'student' appears twice in one section (lines" in proc.stdout + proc.stderr


def test_unknown_config_key_is_rejected_by_name(tmp_path: Path) -> None:
    config = tiny_config()
    config["student"]["train"]["epochz"] = 3
    proc = snakemake(tmp_path, write_config(tmp_path, config), check=False)
    assert proc.returncode != 0
    assert "unknown config key 'student.train.epochz'" in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists() and not (tmp_path / "data").exists()


@needs_livec
def test_livec_dry_run_lists_all_seven_stages(tmp_path: Path) -> None:
    (tmp_path / "work").mkdir()
    (tmp_path / "shared").symlink_to(SHARED)  # the config's root, ../shared/..., seen from the working directory
    proc = snakemake(tmp_path / "work", REPO / "config/livec.yaml", "-n")
    jobs = scheduled_jobs(proc)
    for rule in ["prepare_dataset", "build_expansion_pool", "convert_weights", "extract_features", "mine_pairs",
                 "train_teacher", "label_pool", "train_student", "evaluate_split", "plot_scatter", "plot_pairs"]:
        assert jobs[rule] >= 1, rule
    assert jobs["evaluate_split"] == 30
    assert jobs["train_teacher"] == jobs["label_pool"] == 30 + 1  # and the final model's, trained on every image
    # baseline and full on 30 splits, the three one-component variants on the first 10; the final full model
    assert jobs["train_student"] == 30 * 2 + 10 * 3 + 1
    assert jobs["export_model"] == jobs["claims"] == 1


def test_lint_finds_nothing(tmp_path: Path) -> None:
    """Every rule has a log and its conda environment (workflow/envs/qfm-iqm.yaml), and the Snakefile states its
    Snakemake version."""
    proc = snakemake(tmp_path, REPO / "config/config.yaml", "--lint", check=False)
    findings = set(re.findall(r"^\s+\* (.+)$", proc.stdout + proc.stderr, flags=re.MULTILINE))
    assert proc.returncode == 0 and not findings, findings
