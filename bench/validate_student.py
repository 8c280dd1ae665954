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
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from scipy import stats

from qfm_iqm import pairs, splits, train
from qfm_iqm.config import loss_settings, matching_on
from qfm_iqm.data.meta import POOL_COLUMNS, read_meta
from qfm_iqm.feature_cache import FeatureSet


def merged_config(files: list[str]) -> dict:
    """config/config.yaml updated recursively by ``files``, as Snakemake merges config files."""
    def update(base: dict, new: dict) -> dict:
        for k, v in new.items():
            base[k] = update(base.get(k, {}), v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
        return base

    config = yaml.safe_load(Path("config/config.yaml").read_text())
    for f in files:
        update(config, yaml.safe_load(Path(f).read_text()))
    return config


def fit(arch: dict, cfg: dict, x: np.ndarray, y: np.ndarray, **extra: np.ndarray) -> torch.nn.Module:
    train.seed_everything(cfg["seed"])
    model = train.build_model(x.shape[-1], arch)
    train.train(model, x, y, train.TrainConfig(**cfg), **extra)
    return model


def student_run(student: dict, pairs_cfg: dict, x: np.ndarray, y: np.ndarray, ids: np.ndarray,
                x_pool: np.ndarray, y_pool: np.ndarray, pool_ids: np.ndarray, semantic: np.ndarray,
                pool_semantic: np.ndarray) -> torch.nn.Module:
    m, cfg = student["matching"], loss_settings(student)
    extra = {"x_pool": x_pool, "y_pool": y_pool} if cfg["kd_weight"] > 0 else {}
    if matching_on(student):
        with_pool = m["memory"] == "train_pool"
        bank_ids = np.concatenate([ids, pool_ids]) if with_pool else ids
        bank_score = np.concatenate([y, y_pool.mean(1)]) if with_pool else y
        bank_sem = np.concatenate([semantic, pool_semantic]) if with_pool else semantic
        table = pairs.mine_pairs(ids, y, semantic, bank_ids, bank_score, bank_sem, pairs_cfg["tau"],
                                 pairs_cfg["k_fallback"], m["strategy"], pairs_cfg["top_k"], pairs_cfg["seed"])
        extra.update(partners=pairs.partner_matrix(table, ids, bank_ids),
                     memory=np.concatenate([x, x_pool]) if with_pool else x)
    return fit(student["arch"], cfg, x, y, **extra)


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
    ds = args.dataset or config["run"][0]
    crops = "c{n}s{size}r{seed}".format(**config["crops"])
    feats_dir = Path(f"results/{ds}/features/{config['backbone']['name']}/{crops}")
    meta = read_meta(f"data/{ds}/meta.csv").set_index("image_id", drop=False)
    table = pd.read_csv(f"results/{ds}/splits.csv", dtype={"image_id": str})
    labelled = FeatureSet.load(feats_dir / "labelled.npz")
    pool_meta = read_meta(f"data/{ds}/pool/meta.csv", POOL_COLUMNS)
    pool = FeatureSet.load(feats_dir / "pool.npz").subset(pool_meta["image_id"])
    pool_ids = ("pool/" + pool_meta["image_id"]).to_numpy()
    settings = {}
    for spec in args.setting or ["default="]:
        name, _, overrides = spec.partition("=")
        setting = {"student": copy.deepcopy(config["student"]), "pairs": dict(config["pairs"])}
        for item in filter(None, overrides.split(",")):
            key, value = item.split("=", 1)
            *path, last = key.split(".")
            if path[0] != "pairs":
                path.insert(0, "student")
            section = setting
            for p in path:
                section = section[p]
            if last not in section:
                raise KeyError(f"unknown key {key!r}")
            section[last] = yaml.safe_load(value)
        settings[name] = setting
    rows = []
    for split in range(args.splits):
        part = meta.loc[splits.split_ids(table, split, "train")]
        val = splits.carve_out(part, args.fraction, seed=split)
        fit_rows, val_rows = part[~val], part[val]
        x = labelled.subset(fit_rows["image_id"]).features
        x_val = labelled.subset(val_rows["image_id"]).features
        y = fit_rows["score"].to_numpy()
        semantic = labelled.subset(fit_rows["image_id"]).semantic()
        teacher = fit(config["teacher"]["arch"], config["teacher"]["train"], x, y)
        y_pool = train.predict_crops(teacher, pool.features)
        for name, setting in settings.items():
            model = student_run(setting["student"], setting["pairs"], x, y, fit_rows["image_id"].to_numpy(), pool.features,
                                y_pool, pool_ids, semantic, pool.semantic())
            srcc = stats.spearmanr(val_rows["score"], train.predict(model, x_val)).statistic
            rows.append({"split": split, "setting": name, "val_srcc": srcc})
            print(f"split {split} {name:20s} validation SRCC {srcc:.4f}", flush=True)
    result = pd.DataFrame(rows).pivot(index="split", columns="setting", values="val_srcc")
    print(result.round(4).to_string())
    print("median:", result.median().round(4).to_dict())


if __name__ == "__main__":
    main()
