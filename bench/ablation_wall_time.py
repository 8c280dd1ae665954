"""Wall time of the whole ablation on a dataset whose features are already cached.

Reruns every job downstream of the feature cache (teachers, pool labels, pair mining, the full
student and every ablation variant, evaluation, summary, figures) through Snakemake, then prints
the wall time and the per-job seconds from the rules' benchmark files.

    python bench/ablation_wall_time.py --configfile config/livec.yaml --cores 2
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

DOWNSTREAM = ["train_teacher", "pair_observation", "mine_pairs"]  # every other training job follows these


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configfile", default="config/livec.yaml")
    parser.add_argument("--cores", default="2")
    args = parser.parse_args()
    snakemake = str(Path(sys.executable).with_name("snakemake"))
    cmd = [snakemake, "--cores", args.cores, "--configfile", args.configfile, "--forcerun", *DOWNSTREAM]
    started = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - started
    rows = []
    for path in Path("benchmarks").rglob("*.tsv"):
        if path.stat().st_mtime >= time.time() - wall - 1:
            rows.append({"job": path.stem, "s": pd.read_csv(path, sep="\t")["s"].iloc[0]})
    table = pd.DataFrame(rows)
    print(f"wall time {wall / 60:.1f} min with {args.cores} cores ({' '.join(cmd[1:])})")
    if len(table):
        print(table.groupby("job")["s"].agg(["count", "sum", "mean"]).round(1).to_string())


if __name__ == "__main__":
    main()
