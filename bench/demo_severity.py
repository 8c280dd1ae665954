"""Does a model rank synthetic distortions by severity? The demo's distorted package photos (not LIVEC images),
scored with a model; Spearman correlation of the score with the distortion level within each photo and
distortion type (the pristine photo counts as level 0), and its mean over groups.

    python bench/demo_severity.py --model livec
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd
import yaml
from scipy import stats

from qfm_iqm import load_model
from qfm_iqm.data.synthetic import build_demo

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "config/config.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="livec", help="a shipped model's name or a bundle folder")
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="a config with datasets.demo (the photos)")
    args = parser.parse_args()
    demo = yaml.safe_load(Path(args.config).read_text())["datasets"]["demo"]
    scorer = load_model(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        meta = build_demo(Path(tmp) / "meta.csv", Path(tmp) / "images", demo["photos"], demo["distortions"],
                          demo["levels"], demo["short_side"], demo["seed"])
        meta["pred"] = scorer([Path(tmp) / p for p in meta["path"]], scale="raw")
    pristine = meta[meta["distortion"] == "pristine"]
    rows = []
    for (ref, dist), group in meta[meta["distortion"] != "pristine"].groupby(["ref_id", "distortion"]):
        with_ref = pd.concat([pristine[pristine["ref_id"] == ref], group])
        rows.append({"photo": ref, "distortion": dist,
                     "rho_levels": stats.spearmanr(-group["level"], group["pred"]).statistic,
                     "rho_with_pristine": stats.spearmanr(-with_ref["level"], with_ref["pred"]).statistic})
    table = pd.DataFrame(rows)
    print(f"model {scorer.bundle.name}: {len(meta)} images, {len(table)} (photo, distortion) groups of "
          f"{demo['levels']} levels")
    print(table.groupby("distortion")[["rho_levels", "rho_with_pristine"]].mean().round(3).to_string())
    print(f"mean Spearman, levels 1-{demo['levels']}: {table['rho_levels'].mean():.3f}; "
          f"with the pristine photo as level 0: {table['rho_with_pristine'].mean():.3f}")


if __name__ == "__main__":
    main()
