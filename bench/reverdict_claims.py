"""Recompute a stored claims table's verdicts by the current rule (issue 32) from the numbers it holds.

results/ is not versioned, so the copies under docs/results/ keep only each row's effect, 95% CI, p, MDE and splits.
For each corrected-t row the standard error is the CI's half-width over the t quantile (df = splits - 1); from it and
the effect the library's own functions (``evaluate.mean_ci``, ``evaluate.detectable_effect``, ``evaluate.holm``,
``claims.verdict``) give the CI and MDE at the level the verdict now uses (claim 1 and claims 2-4: alpha 0.05, no
correction; the components of claim 5: Holm over the three, CI and MDE at 0.05 / 3) and the verdict. Claim 2's
training-noise probe was not measured in those runs (``not run``). The file, in the table format from before issue 32,
is rewritten in the current format: its header comment kept, a line on the recomputation added, the headline section
kept with a note (so the script runs once per file).

    python bench/reverdict_claims.py docs/results/livec_claims.md --head mlp --mode "frozen features"
    python bench/reverdict_claims.py docs/results/livec_decoder_claims.md --head decoder \\
        --mode "backbone top from block 6 trained"
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from qfm_iqm.evaluation import claims, evaluate

NUMBER = r"[-+]?\d*\.?\d+"
TRAINING_PROBE = "relative prediction shift, each model's training noise (not measured in this run)"


def differences(effect: float, se: float, splits: int) -> np.ndarray:
    """``splits`` per-split values with mean ``effect`` whose (uncorrected) standard error is ``se``: what the
    library's functions need to give the interval, test and MDE of the stored numbers (test_fraction 0)."""
    z = np.arange(splits, dtype=float)
    z = (z - z.mean()) / z.std(ddof=1)
    return effect + se * np.sqrt(splits) * z


def parse(markdown: str) -> tuple[list[str], pd.DataFrame, str]:
    """The header comment lines, the old claims table (one dict per row, cells as text) and what follows it."""
    lines = markdown.splitlines()
    comments = [line for line in lines if line.startswith("<!--")]
    start = next(i for i, line in enumerate(lines) if line.startswith("| claim |"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = [dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=True))
            for line in lines[start + 2:end]]
    return comments, pd.DataFrame(rows), "\n".join(lines[end:]).strip()


def stored(row: pd.Series) -> dict:
    """The numbers of one old row (NaN where blank)."""
    def num(text: str) -> float:
        return float(text) if text else np.nan

    effect = re.fullmatch(rf"({NUMBER}) \[({NUMBER}), ({NUMBER})\]", row["effect [95% CI]"])
    values = [float(v) for v in effect.groups()] if effect else [np.nan] * 3
    return {"splits": int(row["splits"]) if row["splits"] else np.nan, "effect": values[0], "ci_low": values[1],
            "ci_high": values[2], "p": num(row["p"]), "p_holm": num(row["p Holm"]), "mde": num(row["MDE"]),
            "claimed": num(row["claimed"])}


def recomputed(old: dict, level: float, ratio: bool) -> dict:
    """The CI and MDE of one stored row at ``level``, and its effect and CI on the scale of its test (the synthetic
    row's ratio: the log scale), with a check that the stored 95% CI and MDE at 0.05 come back."""
    to, back = (np.log, np.exp) if ratio else (float, float)
    effect, low, high, df = to(old["effect"]), to(old["ci_low"]), to(old["ci_high"]), old["splits"] - 1
    d = differences(effect, (high - low) / 2 / stats.t.ppf(0.975, df), old["splits"])
    assert np.allclose(evaluate.mean_ci(d, 0.0, 0.95), [low, high], atol=1e-3 if ratio else 2e-4), (low, high)
    mde_95 = evaluate.detectable_effect(d, 0.0, 0.05)
    assert abs((1 - np.exp(-mde_95) if ratio else mde_95) - old["mde"]) < 5e-4, (mde_95, old["mde"])
    low, high = evaluate.mean_ci(d, 0.0, 1 - level)
    mde = evaluate.detectable_effect(d, 0.0, level)
    return {"ci_low": float(back(low)), "ci_high": float(back(high)), "mde": float(1 - np.exp(-mde)) if ratio else mde,
            "confidence": 1 - level, "tested": (effect, low, high)}


def reverdict(old_table: pd.DataFrame) -> pd.DataFrame:
    """The old rows as the current table's (block ``frozen``), with verdicts by the current rule."""
    values = {r["claim"]: stored(r) for _, r in old_table.iterrows()}
    components = [c for c in values if c.startswith("5. ")]
    holm = evaluate.holm(pd.Series({c: values[c]["p"] for c in components}))
    family = int(holm.notna().sum())
    rows = []
    for _, r in old_table.iterrows():
        claim, old = r["claim"], values[r["claim"]]
        row = {"block": "frozen", "claim": claim, "comparison": r["comparison"], "measure": r["measure"],
               "test": r["test"] or np.nan, **old, "p_holm": np.nan,
               "claimed": None if np.isnan(old["claimed"]) else old["claimed"]}
        sensitivity = claim.startswith("2. ")
        if sensitivity:
            row.update(claim=f"2. lower sensitivity to semantic noise ({claims.PROBES['additive']})",
                       measure="relative prediction shift, additive noise at eps 0.3")
        if claim.startswith("4. "):
            row["comparison"] = "no cross_dataset.pairs trained on this dataset"
        if np.isnan(old["effect"]):
            rows.append({**row, "verdict": "not run"})
            continue
        ratio, component = "ratio" in r["measure"], claim in components
        new = recomputed(old, claims.ALPHA / family if component else claims.ALPHA, ratio)
        direction = -1 if sensitivity or ratio else +1
        if component:  # the family's level: the CI and MDE at 0.05 / m (the others stay the run's own, at 0.05)
            row.update({k: new[k] for k in ("ci_low", "ci_high", "mde")})
        row.update(confidence=new["confidence"],
                   p_holm=holm[claim] if component else np.nan,
                   verdict=claims.verdict(*new["tested"][:1], holm[claim] if component else old["p"],
                                          *new["tested"][1:], row["claimed"], direction))
        rows.append(row)
        if sensitivity:
            rows.append({"block": "frozen", "claim": f"2. lower sensitivity to semantic noise "
                         f"({claims.PROBES['training']})", "comparison": r["comparison"], "measure": TRAINING_PROBE,
                         "verdict": "not run"})
    return pd.DataFrame(rows).reindex(columns=claims.COLUMNS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", type=Path)
    parser.add_argument("--dataset", default="livec")
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument("--head", required=True)
    parser.add_argument("--mode", required=True)
    parser.add_argument("--date", default="2026-12-07")
    args = parser.parse_args()
    comments, old, rest = parse(args.path.read_text())
    table = reverdict(old)
    for (_, before), (_, after) in zip(old.iterrows(), table[table["measure"] != TRAINING_PROBE].iterrows(),
                                       strict=True):
        print(f"{before['claim'][:60]:<60} {before['verdict']:>14} -> {after['verdict']}")
    block = claims.Block("frozen", "full", "baseline", args.head, args.mode)
    note = ("<!-- Verdicts, CIs and MDEs recomputed by the rule of issue 32 from the stored numbers (effect, CI, p, "
            f"MDE, splits) with bench/reverdict_claims.py on {args.date}: claim 1 uncorrected, the components Holm-adjusted "
            "over the three with CI and MDE at 0.05 / 3. Claim 2's training-noise probe was not measured in this run. "
            + ("The headline's CIs are the run's own, from before the Fisher z intervals (all inside [-1, 1]). "
               if rest else "") + "-->")
    headline = rest.replace("Headline numbers (results/livec/headline.csv):",
                            "Headline numbers (results/livec/headline.csv; mean CIs from before Fisher's z):")
    title = claims.title(args.dataset, args.backbone, block)
    text = "\n".join([*comments, note, "", ""]) + claims.to_markdown(table, title, [block])
    args.path.write_text(text + (f"\n{headline}\n" if headline else ""))


if __name__ == "__main__":
    main()
