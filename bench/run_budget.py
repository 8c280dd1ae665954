"""What a run's jobs cost, per kind of job, from Snakemake's benchmark files, and the wall time they make on N cores.

Every job writes ``benchmarks/<dataset>/[split<k>/]<rule>[_<wildcards>].tsv`` (wall and CPU seconds); this sums them
per kind (students per variant), and divides the CPU seconds by the cores: the wall time of the run on an otherwise
idle machine with perfect packing, a lower bound (the wall seconds of jobs that shared the cores are inflated).

    python bench/run_budget.py --dataset livec --cores 2
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from qfm_iqm.evaluation.evaluate import benchmark_table

REPO = Path(__file__).resolve().parents[1]


def kinds_of_job() -> list[str]:
    """The workflow's rule names, and ``train_student_<variant>`` for the students of every variant."""
    rules = [m for path in (REPO / "workflow/rules").glob("*.smk")
             for m in re.findall(r"^rule (\w+):", path.read_text(), flags=re.M)]
    variants = {p.stem.removeprefix("train_student_") for p in Path("benchmarks").rglob("train_student_*.tsv")}
    return rules + [f"train_student_{v}" for v in sorted(variants)]


def cpu_model() -> str:
    """``lscpu``'s model name (read from /proc/cpuinfo)."""
    text = Path("/proc/cpuinfo").read_text()
    found = re.search(r"^model name\s*:\s*(.+)$", text, flags=re.M)
    return found[1].strip() if found else "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="livec")
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()
    table = benchmark_table(Path("benchmarks") / args.dataset, kinds_of_job())
    table["cpu_min"] = table["cpu_s"] / 60
    print(f"benchmarks/{args.dataset}: CPU '{cpu_model()}'")
    print(table[["rule", "jobs", "median_s", "cpu_s", "cpu_min"]].round(1).to_string(index=False))
    cpu = table["cpu_s"].sum()
    print(f"\nCPU time of every job: {cpu / 60:.1f} min; on {args.cores} cores, packed perfectly: "
          f"{cpu / 60 / args.cores:.1f} min of wall time")


if __name__ == "__main__":
    main()
