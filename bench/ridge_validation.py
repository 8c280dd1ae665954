"""Compare cached feature recipes by the ridge floor on validation carve-outs of the training parts.

For each split, a random ``--fraction`` of the training part's references is held out (the test part is never
read); ridge regression (alpha by CV on the rest) is fitted per feature file and scored by SRCC on
the held-out images. Prints the validation SRCC per split and file, and the medians.

    python bench/ridge_validation.py --meta data/livec/meta.csv --splits results/livec/splits.csv \\
        --features results/livec/features/tf_efficientnet_lite0/c5s224r0/labelled.npz \\
                   results/livec_global/features/tf_efficientnet_lite0/c5s224r0g/labelled.npz
"""

from __future__ import annotations

import argparse

import pandas as pd
from scipy import stats

from qfm_iqm.data import splits
from qfm_iqm.data.meta import read_meta
from qfm_iqm.evaluation import evaluate
from qfm_iqm.features.cache import FeatureSet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--meta", required=True)
    parser.add_argument("--splits", required=True)
    parser.add_argument("--features", nargs="+", required=True)
    parser.add_argument("--fraction", type=float, default=0.2)
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.1, 1, 10, 100, 1000, 10000])
    args = parser.parse_args()
    meta = read_meta(args.meta).set_index("image_id", drop=False)
    table = pd.read_csv(args.splits, dtype={"image_id": str})
    caches = {path: FeatureSet.load(path) for path in args.features}
    results = []
    for split in sorted(table["split"].unique()):
        part = meta.loc[splits.split_ids(table, split, "train")]
        held_out = splits.carve_out(part, args.fraction, seed=split)
        fit, val = part[~held_out], part[held_out]
        for path, cache in caches.items():
            pred = evaluate.ridge_floor(cache.subset(fit["image_id"]).features, fit["score"].to_numpy(),
                                        cache.subset(val["image_id"]).features, args.alphas)
            results.append({"split": split, "features": path, "val_srcc": stats.spearmanr(val["score"], pred).statistic})
    result = pd.DataFrame(results).pivot(index="split", columns="features", values="val_srcc")
    print(result.round(4).to_string())
    print("median validation SRCC:")
    print(result.median().round(4).to_string())


if __name__ == "__main__":
    main()
