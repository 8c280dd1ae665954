"""Model selection on validation carve-outs of the training parts (never the test parts).

For each of the first ``--splits`` splits of a dataset whose features and splits the workflow has
already built, a random ``--fraction`` of the training part's references becomes validation data; the teacher is
trained on the rest, labels the pool, pairs are mined, and the student is trained once per setting.
Prints the validation SRCC per split and setting, and the median. A setting is a list of
``section.key=value`` overrides of the student config, or of ``pairs.<key>`` (YAML values), e.g.

    python bench/validate_student.py --configfile config/livec.yaml --splits 5 \\
        --setting default= --setting eps0.5=matching.eps=0.5 --setting tau0.1=pairs.tau=0.1
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from scipy import stats

from qfm_iqm.data import splits
from qfm_iqm.data.meta import POOL_COLUMNS, read_meta
from qfm_iqm.features.cache import FeatureSet, cache_dir
from qfm_iqm.method import memory, pairs, train
from qfm_iqm.pipeline.config import load_config_file, loss_settings, matching_on, merged, resolve_weights, validate


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

    def get(self, arch: dict, partial: dict, subset: str) -> FeatureSet:
        """What a model of ``arch`` reads: pooled features, or the activations cached at ``partial``'s cut."""
        key = (subset, partial["from_block"] if arch["head"] == "decoder" else None)
        if key not in self.loaded:
            feats = FeatureSet.load(Path(cache_dir(self.dataset, self.backbone, self.crops, key[1])) / f"{subset}.npz")
            self.loaded[key] = feats.subset(self.pool_meta["image_id"]) if subset == "pool" else feats
        return self.loaded[key]


def fit(caches: Caches, arch: dict, partial: dict, cfg: dict, ids: pd.Series, y: np.ndarray,
        **extra: np.ndarray) -> torch.nn.Module:
    """A seeded model of ``arch`` trained on the images ``ids`` (``qfm_iqm.method.train.fit``)."""
    args = {"backbone": caches.backbone, "weights": caches.weights, "partial": partial}
    return train.fit(arch, caches.get(arch, partial, "labelled").subset(ids), y, cfg, args, **extra)[0]


def student_run(caches: Caches, student: dict, partial: dict, pairs_cfg: dict, ids: pd.Series, y: np.ndarray,
                y_pool: np.ndarray, pool_ids: pd.Series, semantic: np.ndarray,
                pool_semantic: np.ndarray) -> torch.nn.Module:
    m, cfg = student["matching"], loss_settings(student)
    x = caches.get(student["arch"], partial, "labelled").subset(ids).features
    x_pool = caches.get(student["arch"], partial, "pool").features
    ids = ids.to_numpy()
    partners, with_pool = None, memory.pool_in_memory(student)
    if matching_on(student):
        pool = {"pool_ids": pool_ids, "pool_score": y_pool.mean(1), "pool_semantic": pool_semantic} if with_pool else {}
        table, bank = memory.mine_partners(ids, y, semantic, m["strategy"], pairs_cfg["tau"], pairs_cfg["k_fallback"],
                                           pairs_cfg["top_k"], pairs_cfg["seed"], **pool)
        partners = pairs.partner_matrix(table, ids, bank)
    extra = memory.student_inputs(x, cfg["kd_weight"], x_pool, y_pool, partners, with_pool)
    return fit(caches, student["arch"], partial, cfg, pd.Series(ids), y, **extra)


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
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = merged_config(args.configfile)
    data = Dataset(config, args.dataset)
    caches, meta, table, labelled, pool = data.caches, data.meta, data.splits, data.labelled, data.pool
    pool_ids = caches.pool_meta["image_id"]
    settings = {}
    for spec in args.setting or ["default="]:
        name, _, overrides = spec.partition("=")
        setting = {"student": copy.deepcopy(config["student"]), "pairs": dict(config["pairs"]),
                   "partial": dict(config["partial"])}
        for item in filter(None, overrides.split(",")):
            key, value = item.split("=", 1)
            *path, last = key.split(".")
            if path[0] not in ("pairs", "partial"):
                path.insert(0, "student")
            section = setting
            for p in path:
                section = section[p]
            optional = path[-1] == "train" and last in {f.name for f in dataclasses.fields(train.TrainConfig)}
            if last not in section and not optional:
                raise KeyError(f"unknown key {key!r}")
            section[last] = yaml.safe_load(value)
        settings[name] = setting
    rows = []
    for split in range(args.splits):
        part = splits.part_rows(meta, table, split, "train")
        val = splits.carve_out(part, args.fraction, seed=split)
        fit_rows, val_rows = part[~val], part[val]
        y = fit_rows["score"].to_numpy()
        semantic = labelled.subset(fit_rows["image_id"]).semantic()
        teacher = fit(caches, config["teacher"]["arch"], config["partial"], config["teacher"]["train"],
                      fit_rows["image_id"], y)
        y_pool = train.predict_crops(teacher, caches.get(config["teacher"]["arch"], config["partial"], "pool").features)
        x_val = caches.get(config["teacher"]["arch"], config["partial"], "labelled").subset(val_rows["image_id"]).features
        srcc = stats.spearmanr(val_rows["score"], train.predict(teacher, x_val)).statistic
        rows.append({"split": split, "setting": "teacher", "val_srcc": srcc})
        print(f"split {split} {'teacher':20s} validation SRCC {srcc:.4f}", flush=True)
        for name, setting in settings.items():
            started = time.perf_counter()
            model = student_run(caches, setting["student"], setting["partial"], setting["pairs"], fit_rows["image_id"],
                                y, y_pool, pool_ids, semantic, pool.semantic())
            x_val = caches.get(setting["student"]["arch"], setting["partial"], "labelled").subset(val_rows["image_id"])
            srcc = stats.spearmanr(val_rows["score"], train.predict(model, x_val.features)).statistic
            rows.append({"split": split, "setting": name, "val_srcc": srcc})
            print(f"split {split} {name:20s} validation SRCC {srcc:.4f} ({time.perf_counter() - started:.0f} s)",
                  flush=True)
    result = pd.DataFrame(rows).pivot(index="split", columns="setting", values="val_srcc")
    print(result.round(4).to_string())
    print("median:", result.median().round(4).to_dict())


if __name__ == "__main__":
    main()
