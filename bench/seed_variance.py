"""How much seed averaging lowers the spread of a paired comparison, and the smallest effect it lets a run detect.

Reads a run whose students were trained with ``evaluation.seeds: K`` (K >= 2; every split's
``students/<model>.pt`` a seed ensemble; splits not trained yet are left out) and, on every split's test part,
scores the two compared students with each single seed and with the mean of the first k seeds, for every k up to
K. For each k it prints the two students' mean SRCC, the per-split differences' mean and standard deviation (with
one seed: over the K single seeds, averaged) and the smallest difference the corrected resampled t-test detects
with 80% power at two-sided alpha 0.05 with 10 and 30 splits (``qfm_iqm.evaluation.evaluate.detectable_effect_at``).
Beside them, per split: ridge on the same features (the pipeline's ``ridge_floor``), the teacher and both students.

    python bench/seed_variance.py --configfile config/livec.yaml --models full baseline
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import stats
from validate_student import merged_config

from qfm_iqm.data import splits
from qfm_iqm.data.meta import read_meta
from qfm_iqm.evaluation.evaluate import detectable_effect_at, ridge_floor
from qfm_iqm.features.cache import FeatureSet, cache_dir
from qfm_iqm.method.checkpoint import load_model
from qfm_iqm.method.ensemble import SeedEnsemble
from qfm_iqm.method.train import predict


def seed_srcc(model: SeedEnsemble, x: np.ndarray, score: np.ndarray) -> tuple[list[float], list[float]]:
    """Test SRCC of each member alone, and of the mean of the first k members for k = 1 .. K."""
    preds = [predict(m, x) for m in model.members]
    single = [stats.spearmanr(score, p).statistic for p in preds]
    averaged = [stats.spearmanr(score, np.mean(preds[:k], 0)).statistic for k in range(1, len(preds) + 1)]
    return single, averaged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configfile", nargs="*", default=["config/livec.yaml"])
    parser.add_argument("--dataset", default=None, help="default: the config's first run entry")
    parser.add_argument("--models", nargs=2, default=["full", "baseline"], help="the compared students: a b (a - b)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = merged_config(args.configfile)
    dataset = args.dataset or config["run"][0]
    meta = read_meta(f"data/{dataset}/meta.csv")
    table = pd.read_csv(f"results/{dataset}/splits.csv", dtype={"image_id": str})
    feats = FeatureSet.load(f"{cache_dir(dataset, config['backbone']['name'], config['crops'])}/labelled.npz")
    fraction = config["splits"]["test_fraction"]
    rows, references = [], []
    for split in range(config["datasets"][dataset]["n_splits"]):
        paths = {name: Path(f"results/{dataset}/split{split}/students/{name}.pt") for name in args.models}
        if not all(path.is_file() for path in paths.values()):
            continue  # a run under way: the splits whose two students are trained
        test = splits.part_rows(meta, table, split, "test")
        x = feats.subset(test["image_id"]).features
        scored = {}
        for name in args.models:
            model = load_model(paths[name])
            if not isinstance(model, SeedEnsemble):
                raise SystemExit(f"split {split}: {name} was trained with one seed; run with evaluation.seeds >= 2")
            scored[name] = seed_srcc(model, x, test["score"].to_numpy())
        (a_single, a_mean), (b_single, b_mean) = scored[args.models[0]], scored[args.models[1]]
        train = splits.part_rows(meta, table, split, "train")
        ridge = ridge_floor(feats.subset(train["image_id"]).features, train["score"].to_numpy(), x,
                            config["evaluation"]["ridge_alphas"])
        teacher = predict(load_model(f"results/{dataset}/split{split}/teacher.pt"), x)
        references.append({"split": split, "ridge": stats.spearmanr(test["score"], ridge).statistic,
                           "teacher": stats.spearmanr(test["score"], teacher).statistic,
                           args.models[0]: a_mean[-1], args.models[1]: b_mean[-1]})
        rows += [{"split": split, "k": "single", "seed": j, "a": a, "b": b, "diff": a - b}
                 for j, (a, b) in enumerate(zip(a_single, b_single, strict=True))]
        rows += [{"split": split, "k": k + 1, "seed": 0, "a": a, "b": b, "diff": a - b}
                 for k, (a, b) in enumerate(zip(a_mean, b_mean, strict=True))]
    frame, reference = pd.DataFrame(rows), pd.DataFrame(references).set_index("split")
    print(f"test SRCC per split ({args.models[0]} and {args.models[1]}: all seeds averaged):")
    print(reference.round(4).to_string())
    print(pd.DataFrame({"median": reference.median(), "mean": reference.mean()}).round(4).T.to_string())
    print(f"{args.models[0]} above ridge on {int((reference[args.models[0]] > reference['ridge']).sum())} of "
          f"{len(reference)} splits")
    print(f"{dataset}: {args.models[0]} - {args.models[1]}, test SRCC, {frame['split'].nunique()} splits")
    for k, group in frame.groupby("k", sort=False):
        sd = float(group.groupby("seed")["diff"].std(ddof=1).mean())  # per seed over splits, then averaged
        print(f"seeds {k!s:>6}: {args.models[0]} {group['a'].mean():.4f}, {args.models[1]} {group['b'].mean():.4f} "
              f"(means), mean diff {group['diff'].mean():+.4f}, per-split SD {sd:.4f}, MDE at 10 splits "
              f"{detectable_effect_at(sd, 10, fraction):.4f}, at 30 splits {detectable_effect_at(sd, 30, fraction):.4f}")


if __name__ == "__main__":
    main()
