"""The behavioural check of the semantic noise on synthetic tokens (``qfm_iqm.method.diagnostics``).

For each head, noise form, L_sens target (``symmetric`` or ``detached``) and seed: the baseline's and the
matching student's reliance on a nuisance block that predicts the label on the training images only (prediction
change when it is permuted, over the prediction spread), their ratio (below 1: matching reduced the reliance) and
test SRCC. Each model is initialised from its seed, so a row does not depend on the rows before it.

    python bench/nuisance_reliance.py
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import torch

from qfm_iqm.method.diagnostics import nuisance_experiment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--heads", nargs="+", default=["mlp", "decoder"])
    parser.add_argument("--forms", nargs="+", default=["add", "mix"])
    parser.add_argument("--sens-targets", nargs="+", default=["detached", "symmetric"])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--eps", type=float, default=0.3)
    parser.add_argument("--adv-weight", type=float, default=1.0)
    parser.add_argument("--sens-weight", type=float, default=0.5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    runs = [(h, f, t) for h in args.heads for f in args.forms for t in args.sens_targets]
    for head, form, target in runs:
        for seed in range(args.seeds):
            r = nuisance_experiment(seed, head, form, args.eps, args.adv_weight, args.sens_weight,
                                    sens_target=target)
            rows.append({"head": head, "noise_form": form, "sens_target": target, "seed": seed,
                         "reliance_baseline": r["baseline"]["reliance"], "reliance_matching": r["matching"]["reliance"],
                         "ratio": r["matching"]["reliance"] / r["baseline"]["reliance"],
                         "srcc_baseline": r["baseline"]["srcc"], "srcc_matching": r["matching"]["srcc"]})
            print(pd.DataFrame(rows[-1:]).to_string(index=False, header=len(rows) == 1, float_format="%.3f"),
                  flush=True)
    groups = pd.DataFrame(rows).groupby(["head", "noise_form", "sens_target"])
    table = groups[["ratio", "srcc_baseline", "srcc_matching"]].median()
    table["seeds_reduced"] = groups["ratio"].agg(lambda r: int(np.sum(r < 1)))
    print("\nmedian over seeds; seeds_reduced: seeds where matching reduced the reliance (ratio < 1)")
    print(table.to_string(float_format="%.3f"))


if __name__ == "__main__":
    main()
