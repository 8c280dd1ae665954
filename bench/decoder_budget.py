"""Wall time of the decoder students (partial fine-tune) on LIVEC: baseline + full over the splits.

Times one and two epochs of each model with the settings of ``--configfile`` (the decoder variant
``--variant`` for the full student, and its baseline: no gate, matching or distillation) on
LIVEC-sized random data shaped like the activation cache (930 training images x 5 crops, 400 pool
images; one thread per job, as the workflow runs them), and prints seconds per epoch, the fixed
cost (standardisation, calibration) and the projected wall time of ``--splits`` x (baseline + full)
with ``--cores`` jobs in parallel. The teacher is timed the same way.

    python bench/decoder_budget.py --configfile config/livec_decoder.yaml
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch
from validate_student import merged_config

from qfm_iqm.features.cache import FeatureSet
from qfm_iqm.method import train
from qfm_iqm.method.partial import ACTIVATION, EARLY, model_for, partial_spec
from qfm_iqm.settings import loss_settings, resolve_variants

BASELINE = {"arch": {"gate": False}, "distillation": {"kd_weight": 0.0},
            "matching": {"adv_weight": 0.0, "sens_weight": 0.0}}


def seconds(arch: dict, cfg: dict, config: dict, data: dict, epochs: int) -> float:
    """Wall time of training one fresh model for ``epochs`` epochs."""
    started = time.perf_counter()
    shape = {"labelled": data["x"]} if arch["head"] == "decoder" else {"labelled": data["pooled"]}
    feats = FeatureSet(np.arange(len(shape["labelled"])).astype(str), shape["labelled"], *data["layout"](arch))
    model = model_for(arch, feats, config["backbone"]["name"], "none", partial_spec(config))
    extra = {}
    if cfg.get("kd_weight", 0) > 0:
        extra.update(x_pool=data["x_pool" if arch["head"] == "decoder" else "pooled_pool"], y_pool=data["y_pool"])
    if cfg.get("adv_weight", 0) > 0 or cfg.get("sens_weight", 0) > 0:
        extra.update(partners=data["partners"])
    train.train(model, feats.features, data["y"], train.TrainConfig(**{**cfg, "epochs": epochs}), **extra)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configfile", nargs="*", default=["config/livec_decoder.yaml"])
    parser.add_argument("--variant", default="full", help="the full student: 'full' or an ablation variant")
    parser.add_argument("--images", type=int, default=930)
    parser.add_argument("--pool", type=int, default=400)
    parser.add_argument("--crops", type=int, default=5)
    parser.add_argument("--splits", type=int, default=10)
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = merged_config(args.configfile)
    variants = resolve_variants(config, "src/qfm_iqm/config.schema.yaml")
    full = variants[args.variant]
    baseline = copy.deepcopy(full)
    for section, keys in BASELINE.items():
        baseline[section].update(keys)
    rng = np.random.default_rng(0)
    act, early = 192 * 49, 384
    data = {
        "x": rng.normal(size=(args.images, args.crops, act + early)).astype(np.float16),
        "x_pool": rng.normal(size=(args.pool, args.crops, act + early)).astype(np.float16),
        "pooled": rng.normal(size=(args.images, args.crops, 2304)).astype(np.float32),
        "pooled_pool": rng.normal(size=(args.pool, args.crops, 2304)).astype(np.float32),
        "y": rng.uniform(size=args.images), "y_pool": rng.uniform(size=(args.pool, args.crops)),
        "partners": rng.integers(0, args.images, args.images),
        "layout": lambda arch: ([ACTIVATION, EARLY], [act, early]) if arch["head"] == "decoder" else (["pooled"], [2304]),
    }
    jobs = {"teacher": (config["teacher"]["arch"], config["teacher"]["train"]),
            "baseline": (baseline["arch"], loss_settings(baseline)), "full": (full["arch"], loss_settings(full))}
    total = 0.0
    for name, (arch, cfg) in jobs.items():
        one, two = seconds(arch, cfg, config, data, 1), seconds(arch, cfg, config, data, 2)
        epoch, fixed = two - one, 2 * one - two
        job = fixed + cfg["epochs"] * epoch
        total += job
        print(f"{name:9s} {arch['head']:8s} {epoch:7.1f} s/epoch  fixed {fixed:5.1f} s  x {cfg['epochs']} epochs "
              f"= {job:6.0f} s per split", flush=True)
    print(f"projected: {args.splits} splits x (teacher + baseline + full) on {args.cores} cores = "
          f"{total * args.splits / args.cores / 60:.0f} min (one thread per job; features and activations cached)")


if __name__ == "__main__":
    main()
