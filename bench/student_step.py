"""Training-step time of the student on cached-feature shapes, per loss configuration.

Random features with the shapes of a LIVEC split (930 training images x 5 crops x 2304 dims,
400 pool images) by default; each configuration trains one epoch and reports ms per step.
``--precision bf16`` runs the forward passes under bfloat16 autocast; ``--profile`` then prints where the
full student's step time goes (torch.profiler, operators by their own CPU time).

    python bench/student_step.py [--precision fp32|bf16] [--profile]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from qfm_iqm.features.precision import PRECISIONS
from qfm_iqm.method import train
from qfm_iqm.method.model import QualityModel
from qfm_iqm.settings import load_config_file, schema_default

STUDENT = load_config_file("config/config.yaml")["student"]  # its loss and noise strength (run from the checkout)

CONFIGS = {
    "clean only (baseline)": {},
    "+ matching (L_adv, L_sens)": {"adv_weight": 1.0, "sens_weight": 0.5, "eps": STUDENT["matching"]["eps"]},
    "+ distillation (L_kd)": {"kd_weight": 1.0},
    "full (matching + distillation)": {"adv_weight": 1.0, "sens_weight": 0.5, "kd_weight": 1.0,
                                       "eps": STUDENT["matching"]["eps"]},
}


def step_options(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options every step bench takes: ``--threads``, ``--precision``, ``--profile``."""
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the workflow gives a student 1)")
    parser.add_argument("--precision", choices=sorted(PRECISIONS),
                        default=schema_default("student.train.precision"))
    parser.add_argument("--profile", action="store_true", help="profile one epoch of the full student")
    return parser


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=930)
    parser.add_argument("--pool", type=int, default=400)
    parser.add_argument("--crops", type=int, default=5)
    parser.add_argument("--dim", type=int, default=2304)
    parser.add_argument("--batch-size", type=int, default=64)
    args = step_options(parser).parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.images, args.crops, args.dim)).astype(np.float32)
    y = rng.uniform(size=args.images)
    x_pool = rng.normal(size=(args.pool, args.crops, args.dim)).astype(np.float32)
    y_pool = rng.uniform(size=(args.pool, args.crops))
    partners = rng.integers(0, args.images, args.images)
    steps = -(-args.images * args.crops // args.batch_size)
    print(f"{args.images} images x {args.crops} crops x {args.dim} dims, batch {args.batch_size}, "
          f"{steps} steps/epoch, {args.threads} thread(s), {args.precision}")
    warm_up = train.TrainConfig(epochs=1, lr=1e-3, weight_decay=0.1, batch_size=args.batch_size,
                                loss=STUDENT["train"]["loss"])
    train.train(QualityModel(args.dim, head="mlp", hidden=512, dropout=0.5, gate=True, gate_reduction=8), x[:256],
                y[:256], warm_up)
    for name, extra in CONFIGS.items():
        cfg = train.TrainConfig(epochs=1, lr=1e-3, weight_decay=0.1, batch_size=args.batch_size,
                                loss=STUDENT["train"]["loss"], precision=args.precision, **extra)
        model = QualityModel(args.dim, head="mlp", hidden=512, dropout=0.5, gate=True, gate_reduction=8)
        started = time.perf_counter()
        train.train(model, x, y, cfg, x_pool=x_pool, y_pool=y_pool, partners=partners)
        seconds = time.perf_counter() - started
        print(f"{name:34s} {1000 * seconds / steps:7.2f} ms/step  {seconds:6.2f} s/epoch")
    if args.profile:
        model = QualityModel(args.dim, head="mlp", hidden=512, dropout=0.5, gate=True, gate_reduction=8)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            train.train(model, x, y, cfg, x_pool=x_pool, y_pool=y_pool, partners=partners)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=40))


if __name__ == "__main__":
    main()
