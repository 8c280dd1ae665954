"""Model selection on validation carve-outs of the training parts (never the test parts).

For each of the first ``--splits`` splits of a dataset whose features and splits the workflow has
already built, a random ``--fraction`` of the training part's references becomes validation data; the teacher is
trained on the rest, labels the pool, pairs are mined, and the student is trained once per setting.
Prints the validation SRCC per split and setting, and the median. A setting is a list of
``section.key=value`` overrides of the student config, or of ``pairs.<key>``, ``partial.<key>`` or ``crops.<key>``
(YAML values), e.g.

    python bench/validate_student.py --configfile config/livec.yaml --splits 5 \\
        --setting default= --setting eps0.5=matching.eps=0.5 --setting tau0.1=pairs.tau=0.1

A setting with its own ``crops`` (the feature recipe) reads its features from the cache of that recipe, or cuts them
out of a cache of a wider one (more stages or statistics, flips: ``qfm_iqm.features.cache.narrowed``), and gets its
own teacher, and ridge on the same features beside it (``ridge[<tag>]``, ``teacher[<tag>]``). ``--seeds K`` trains
every student with K seeds and scores their mean (``evaluation.seeds``).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from scipy import stats

from qfm_iqm.data import splits
from qfm_iqm.data.meta import POOL_COLUMNS, read_meta
from qfm_iqm.evaluation import evaluate
from qfm_iqm.features.cache import FeatureSet, cache_dir, crops_tag, narrowed
from qfm_iqm.method import memory, pairs, train
from qfm_iqm.settings import load_config_file, loss_settings, matching_on, merged, resolve_weights, validate


def merged_config(files: list[str]) -> dict:
    """config/config.yaml updated recursively by ``files``, as Snakemake merges config files, validated and with the
    schema's defaults filled in, as the workflow does."""
    config = load_config_file("config/config.yaml")
    for f in files:
        config = merged(config, load_config_file(f))
    validate(config)
    return config


class Caches:
    """The feature caches of one dataset, loaded once: pooled features, and cached activations per cut."""

    def __init__(self, config: dict, dataset: str) -> None:
        self.dataset, self.crops = dataset, config["crops"]
        self.backbone = config["backbone"]["name"]
        self.weights = resolve_weights(config["backbone"], Path(f"results/weights/{self.backbone}.pth"))
        self.pool_meta = read_meta(f"data/{dataset}/pool/meta.csv", POOL_COLUMNS)
        self.loaded: dict[tuple, FeatureSet] = {}

    def get(self, arch: dict, partial: dict, subset: str, crops: dict | None = None) -> FeatureSet:
        """What a model of ``arch`` reads: pooled features of the recipe ``crops`` (default the config's), cut out
        of a wider recipe's cache when its own is not built, or the activations cached at ``partial``'s cut."""
        crops = crops or self.crops
        key = (subset, partial["from_block"] if arch["head"] == "decoder" else None, crops_tag(crops))
        if key not in self.loaded:
            wider = [{**crops, **w} for w in ({}, {"stages": "all", "pooling": "mean_std"}, {"flip": True},
                                              {"flip": True, "stages": "all", "pooling": "mean_std"})]
            paths = [(Path(cache_dir(self.dataset, self.backbone, w, key[1])) / f"{subset}.npz", w) for w in wider]
            path, have = next(((p, w) for p, w in paths if p.is_file()), paths[0])
            feats = narrowed(FeatureSet.load(path), have, crops) if key[1] is None else FeatureSet.load(path)
            self.loaded[key] = feats.subset(self.pool_meta["image_id"]) if subset == "pool" else feats
        return self.loaded[key]


def fit(caches: Caches, arch: dict, partial: dict, cfg: dict, ids: pd.Series, y: np.ndarray, crops: dict | None = None,
        seeds: int = 1, **extra: np.ndarray) -> torch.nn.Module:
    """A seeded model of ``arch`` (``seeds`` > 1: a seed ensemble) trained on the images ``ids``
    (``qfm_iqm.method.train.fit_seeds``) on the features of ``crops``."""
    args = {"backbone": caches.backbone, "weights": caches.weights, "partial": partial}
    feats = caches.get(arch, partial, "labelled", crops).subset(ids)
    return train.fit_seeds(arch, feats, y, cfg, args, seeds, **extra)[0]


def student_run(caches: Caches, setting: dict, ids: pd.Series, y: np.ndarray, y_pool: np.ndarray,
                seeds: int = 1) -> torch.nn.Module:
    """The student of ``setting`` (student, pairs, partial, crops) trained on ``ids`` with the pool labels
    ``y_pool``."""
    student, partial, pairs_cfg, crops = (setting[k] for k in ("student", "partial", "pairs", "crops"))
    m, cfg = student["matching"], loss_settings(student)
    labelled = caches.get(student["arch"], partial, "labelled", crops)
    x = labelled.subset(ids).features
    x_pool = caches.get(student["arch"], partial, "pool", crops).features
    pooled = {"head": "mlp"}
    semantic = caches.get(pooled, partial, "labelled", crops).subset(ids).semantic()
    pool_semantic = caches.get(pooled, partial, "pool", crops).semantic()
    ids = ids.to_numpy()
    partners, with_pool = None, memory.pool_in_memory(student)
    if matching_on(student):
        pool_ids = caches.pool_meta["image_id"]
        pool = {"pool_ids": pool_ids, "pool_score": y_pool.mean(1), "pool_semantic": pool_semantic} if with_pool else {}
        table, bank = memory.mine_partners(ids, y, semantic, m["strategy"], pairs_cfg["tau"], pairs_cfg["k_fallback"],
                                           pairs_cfg["top_k"], pairs_cfg["seed"], **pool)
        partners = pairs.partner_matrix(table, ids, bank)
    extra = memory.student_inputs(x, cfg["kd_weight"], x_pool, y_pool, partners, with_pool)
    return fit(caches, student["arch"], partial, cfg, pd.Series(ids), y, crops, seeds, **extra)


def parse_settings(config: dict, specs: list[str]) -> dict[str, dict]:
    """name -> {student, pairs, partial, crops}: the config's, with a setting's ``key=value`` overrides."""
    settings = {}
    for spec in specs or ["default="]:
        name, _, overrides = spec.partition("=")
        setting = {"student": copy.deepcopy(config["student"]), "pairs": dict(config["pairs"]),
                   "partial": dict(config["partial"]), "crops": dict(config["crops"])}
        for item in filter(None, re.split(r",(?![^\[]*\])", overrides)):  # commas inside [...] belong to a list
            key, value = item.split("=", 1)
            *path, last = key.split(".")
            if not path or path[0] not in ("pairs", "partial", "crops"):
                path.insert(0, "student")
            section = setting
            for part in path:
                section = section[part]
            optional = path[-1] == "train" and last in {f.name for f in dataclasses.fields(train.TrainConfig)}
            if last not in section and not optional:
                raise KeyError(f"unknown key {key!r}")
            section[last] = yaml.safe_load(value)
        settings[name] = setting
    return settings


class Dataset:
    """What a bench over one built dataset reads: its caches, table, splits and pooled labelled and pool features."""

    def __init__(self, config: dict, dataset: str | None) -> None:
        self.name = dataset or config["run"][0]
        self.caches = Caches(config, self.name)
        self.meta = read_meta(f"data/{self.name}/meta.csv")
        self.splits = pd.read_csv(f"results/{self.name}/splits.csv", dtype={"image_id": str})
        pooled = {"head": "mlp"}
        self.labelled = self.caches.get(pooled, config["partial"], "labelled")
        self.pool = self.caches.get(pooled, config["partial"], "pool")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configfile", nargs="*", default=["config/livec.yaml"])
    parser.add_argument("--dataset", default=None, help="default: the config's first run entry")
    parser.add_argument("--splits", type=int, default=5)
    parser.add_argument("--fraction", type=float, default=0.2)
    parser.add_argument("--setting", action="append", default=[], help="name=key=value[,key=value...]")
    parser.add_argument("--seeds", type=int, default=1, help="seeds per student, their predictions averaged")
    parser.add_argument("--ridge-only", action="store_true", help="only ridge on each setting's features (seconds)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = merged_config(args.configfile)
    caches = Caches(config, args.dataset or config["run"][0])
    meta = read_meta(f"data/{caches.dataset}/meta.csv")
    table = pd.read_csv(f"results/{caches.dataset}/splits.csv", dtype={"image_id": str})
    settings = parse_settings(config, args.setting)
    teacher_arch, partial = config["teacher"]["arch"], config["partial"]
    rows = []

    def record(split: int, name: str, truth: pd.Series, pred: np.ndarray, started: float) -> None:
        srcc = stats.spearmanr(truth, pred).statistic
        rows.append({"split": split, "setting": name, "val_srcc": srcc})
        print(f"split {split} {name:28s} validation SRCC {srcc:.4f} ({time.perf_counter() - started:.0f} s)",
              flush=True)

    for split in range(args.splits):
        part = splits.part_rows(meta, table, split, "train")
        val = splits.carve_out(part, args.fraction, seed=split)
        fit_rows, val_rows = part[~val], part[val]
        y = fit_rows["score"].to_numpy()
        pool_labels = {}  # feature recipe tag -> the teacher's labels of the pool
        for setting in settings.values():
            crops, tag = setting["crops"], crops_tag(setting["crops"])
            if tag in pool_labels:
                continue
            started = time.perf_counter()
            labelled = caches.get(teacher_arch, partial, "labelled", crops)
            x_fit, x_val = labelled.subset(fit_rows["image_id"]).features, labelled.subset(val_rows["image_id"]).features
            record(split, f"ridge[{tag}]", val_rows["score"],
                   evaluate.ridge_floor(x_fit, y, x_val, config["evaluation"]["ridge_alphas"]), started)
            if args.ridge_only:
                pool_labels[tag] = None
                continue
            started = time.perf_counter()
            teacher = fit(caches, teacher_arch, partial, config["teacher"]["train"], fit_rows["image_id"], y, crops)
            pool_labels[tag] = train.predict_crops(teacher, caches.get(teacher_arch, partial, "pool", crops).features)
            record(split, f"teacher[{tag}]", val_rows["score"], train.predict(teacher, x_val), started)
        for name, setting in settings.items():
            if args.ridge_only:
                break
            started = time.perf_counter()
            model = student_run(caches, setting, fit_rows["image_id"], y, pool_labels[crops_tag(setting["crops"])],
                                args.seeds)
            x_val = caches.get(setting["student"]["arch"], setting["partial"], "labelled", setting["crops"])
            record(split, name, val_rows["score"], train.predict(model, x_val.subset(val_rows["image_id"]).features),
                   started)
    result = pd.DataFrame(rows).pivot(index="split", columns="setting", values="val_srcc")
    print(result.round(4).to_string())
    print("median:", result.median().round(4).to_dict())
    print("mean:", result.mean().round(4).to_dict())


if __name__ == "__main__":
    main()
