"""Head settings against the ridge floor on validation carve-outs of the training parts (never the test parts).

For each split of a dataset whose features and splits the workflow has already built, ``--repeats`` carve-outs
(a ``--fraction`` of the training part's references each) become validation data. Ridge, and per setting the
teacher, the baseline student and the full student, are trained on the rest and scored on the carve-out.
A setting is a list of ``teacher.<...>=value`` / ``student.<...>=value`` overrides (YAML values); the baseline is the
config's ablation reference, a student variant. This chose the demo's heads (docs/results.md, "The demo"):

    python bench/demo_heads.py --setting "e20h128=teacher.train.epochs=20,student.train.epochs=20,\\
        teacher.arch.hidden=128,student.arch.hidden=128" --setting "e60=teacher.train.epochs=60,student.train.epochs=60"
"""

from __future__ import annotations

import argparse
import copy

import pandas as pd
import torch
import yaml
from scipy import stats
from validate_student import Dataset, fit, merged_config, student_run

from qfm_iqm.data import splits
from qfm_iqm.evaluation.evaluate import ridge_floor
from qfm_iqm.method import train
from qfm_iqm.settings import resolve_variants


def with_overrides(config: dict, spec: str) -> dict:
    """A copy of ``config`` with the overrides ``key=value,key=value`` (``teacher.<...>``, ``student.<...>``) applied."""
    config = copy.deepcopy(config)
    for item in filter(None, spec.split(",")):
        key, value = item.split("=", 1)
        *path, last = key.split(".")
        section = config
        for p in path:
            section = section[p]
        section[last] = yaml.safe_load(value)
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configfile", nargs="*", default=[], help="overlays on config/config.yaml (the demo)")
    parser.add_argument("--dataset", default=None, help="default: the config's first run entry")
    parser.add_argument("--fraction", type=float, default=0.25)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--setting", action="append", default=[], help="name=key=value[,key=value...]")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = merged_config(args.configfile)
    data, partial = Dataset(config, args.dataset), config["partial"]
    caches, labelled, pool = data.caches, data.labelled, data.pool
    settings = {name: with_overrides(config, spec) for name, _, spec in (s.partition("=") for s in args.setting)}
    rows = []
    for split in sorted(data.splits["split"].unique()):
        part = splits.part_rows(data.meta, data.splits, split, "train")
        for repeat in range(args.repeats):
            val = splits.carve_out(part, args.fraction, seed=split + 100 * repeat)
            if not val.any():
                continue
            fit_rows, val_rows = part[~val], part[val]
            y, x_val = fit_rows["score"].to_numpy(), labelled.subset(val_rows["image_id"]).features
            scored = {"ridge": ridge_floor(labelled.subset(fit_rows["image_id"]).features, y, x_val,
                                           config["evaluation"]["ridge_alphas"])}
            for name, cfg in settings.items():
                teacher = fit(caches, cfg["teacher"]["arch"], partial, cfg["teacher"]["train"], fit_rows["image_id"], y)
                scored[f"{name}/teacher"] = train.predict(teacher, x_val)
                y_pool = train.predict_crops(teacher, pool.features)
                reference = cfg["ablation"]["reference"]  # the config's own baseline variant, and the full student
                students = resolve_variants({**cfg, "ablation": {**cfg["ablation"], "run": [reference]}})
                for model, student in students.items():
                    setting = {"student": student, "partial": partial, "pairs": config["pairs"],
                               "crops": config["crops"]}
                    trained = student_run(caches, setting, fit_rows["image_id"], y, y_pool)
                    scored[f"{name}/{model}"] = train.predict(trained, x_val)
            for model, pred in scored.items():
                rows.append({"split": split, "repeat": repeat, "model": model,
                             "val_srcc": stats.spearmanr(val_rows["score"], pred).statistic})
            print(f"split {split} carve-out {repeat}:",
                  {r["model"]: round(r["val_srcc"], 3) for r in rows if (r["split"], r["repeat"]) == (split, repeat)},
                  flush=True)
    result = pd.DataFrame(rows).pivot_table(index=["split", "repeat"], columns="model", values="val_srcc")
    print(result.round(3).to_string())
    print(pd.DataFrame({"median": result.median(), "mean": result.mean()}).round(3).to_string())


if __name__ == "__main__":
    main()
