"""The behavioural check of the semantic noise on synthetic tokens (``qfm_iqm.method.diagnostics``).

For each regime (nuisance, confounded, overfitting; see the module), head, noise form, L_sens target (``symmetric``
or ``detached``), quality loss and seed: the baseline's and the matching student's reliance on a content block that
carries no quality on the test images (prediction change when it is permuted, over the prediction spread), their
ratio (below 1: matching reduced the reliance) and test SRCC. Each model is initialised from its seed, so a row does
not depend on the rows before it.

    python bench/nuisance_reliance.py                      # the three regimes, both heads, both forms and targets
    python bench/nuisance_reliance.py --regimes confounded --losses smooth_l1 smooth_l1_plcc --sens-targets symmetric
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import torch

from qfm_iqm.method.diagnostics import REGIMES, nuisance_experiment
from qfm_iqm.settings import load_config_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--regimes", nargs="+", default=list(REGIMES))
    parser.add_argument("--heads", nargs="+", default=["mlp", "decoder"])
    parser.add_argument("--forms", nargs="+", default=["add", "mix"])
    parser.add_argument("--sens-targets", nargs="+", default=["detached", "symmetric"])
    parser.add_argument("--losses", nargs="+", default=["smooth_l1"], help="the quality loss (smooth_l1_plcc: the pipeline's)")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--eps", type=float, help="default: config/config.yaml's student.matching.eps")
    parser.add_argument("--adv-weight", type=float, help="default: the config's")
    parser.add_argument("--sens-weight", type=float, help="default: the config's")
    args = parser.parse_args()
    matching = load_config_file("config/config.yaml")["student"]["matching"]
    for key in ("eps", "adv_weight", "sens_weight"):
        matching[key] = matching[key] if getattr(args, key) is None else getattr(args, key)
    torch.set_num_threads(1)
    rows = []
    runs = [(g, h, f, t, loss) for g in args.regimes for h in args.heads for f in args.forms for t in args.sens_targets
            for loss in args.losses]
    for regime, head, form, target, loss in runs:
        for seed in range(args.seeds):
            r = nuisance_experiment(seed, head, {**matching, "noise_form": form, "sens_target": target}, loss, regime)
            rows.append({"regime": regime, "head": head, "noise_form": form, "sens_target": target, "loss": loss,
                         "seed": seed,
                         "reliance_baseline": r["baseline"]["reliance"], "reliance_matching": r["matching"]["reliance"],
                         "ratio": r["matching"]["reliance"] / r["baseline"]["reliance"],
                         "srcc_baseline": r["baseline"]["srcc"], "srcc_matching": r["matching"]["srcc"]})
            print(pd.DataFrame(rows[-1:]).to_string(index=False, header=len(rows) == 1, float_format="%.3f"),
                  flush=True)
    runs = pd.DataFrame(rows).assign(srcc_kept=lambda t: t["srcc_matching"] >= t["srcc_baseline"])
    groups = runs.groupby(["regime", "head", "noise_form", "sens_target", "loss"], sort=False)
    table = groups[["ratio", "srcc_baseline", "srcc_matching"]].median()
    table["seeds_reduced"] = groups["ratio"].agg(lambda r: int(np.sum(r < 1)))
    table["seeds_srcc_kept"] = groups["srcc_kept"].sum()
    print(f"\neps {matching['eps']}, adv_weight {matching['adv_weight']}, sens_weight {matching['sens_weight']}; "
          "median over seeds; seeds_reduced: seeds where matching reduced the reliance (ratio < 1); "
          "seeds_srcc_kept: seeds where its test SRCC is not lower")
    print(table.to_string(float_format="%.3f"))


if __name__ == "__main__":
    main()
