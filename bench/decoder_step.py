"""Training-step time of a decoder student (partial fine-tune: trainable Lite0 top + decoder) on LIVEC shapes.

Random cached activations shaped like Lite0's cut at config/livec_decoder.yaml's partial.from_block (block 6:
192 x 7 x 7 + 384 early statistics per crop), with that file's decoder, loss and noise strength,
``--images`` labelled images and half as many pool images, 5 crops each, one crop per image and step as in
``config/livec_decoder.yaml``; the standardisation is fitted once, outside the timing. Prints ms per step of the
baseline (no gate, clean loss) and the full student (gate, matching, distillation); ``--profile`` then prints
where the full student's step time goes (torch.profiler, operators by their own CPU time).

    python bench/decoder_step.py [--precision fp32|bf16] [--profile]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from student_step import step_options
from validate_student import merged_config

from qfm_iqm.features.cache import FeatureSet
from qfm_iqm.method import train
from qfm_iqm.features.backbone import create_backbone
from qfm_iqm.method.partial import ACTIVATION, EARLY, model_for, partial_spec

CONFIG = merged_config(["config/livec.yaml", "config/livec_decoder.yaml"])  # the decoder runs' (from the checkout)
BACKBONE, PARTIAL = CONFIG["backbone"]["name"], partial_spec(CONFIG)
LOSSES = {"baseline": {}, "full": {"adv_weight": 1.0, "sens_weight": 0.5, "kd_weight": 1.0,
                                   "eps": CONFIG["student"]["matching"]["eps"]}}


def setup(variant: str, images: int, precision: str) -> tuple[torch.nn.Module, dict, train.TrainConfig]:
    """A fresh decoder model with its normaliser fitted, the training data and the config of one epoch."""
    bottom, _ = PARTIAL.cut(create_backbone(BACKBONE, "none"))
    packed = bottom(torch.zeros(1, 3, 224, 224)).shape[-1]  # a 224 px crop's cached activations and early statistics
    rng = np.random.default_rng(0)
    x = rng.normal(size=(images, 5, packed)).astype(np.float16)
    pool = rng.normal(size=(images // 2, 5, packed)).astype(np.float16)
    data = {"x": x, "y": rng.uniform(size=images)}
    if variant == "full":
        data.update(x_pool=pool, y_pool=rng.uniform(size=(len(pool), 5)),
                    partners=rng.integers(0, images + len(pool), images), memory=np.concatenate([x, pool]))
    arch = {**CONFIG["student"]["arch"], "gate": variant == "full"}
    feats = FeatureSet(np.arange(images).astype(str), x, [ACTIVATION, EARLY],
                       [packed - bottom.early_size, bottom.early_size])
    torch.manual_seed(0)
    model = model_for(arch, feats, BACKBONE, "none", PARTIAL)
    model.fit_normaliser(torch.from_numpy(x.reshape(-1, x.shape[-1])).float())
    model.fit_normaliser = model.calibrate = lambda *args, **kwargs: None  # fixed costs: not part of a step
    cfg = train.TrainConfig(epochs=1, lr=1e-3, weight_decay=0.1, batch_size=64, loss=CONFIG["student"]["train"]["loss"],
                            crops_per_epoch=1, precision=precision, **LOSSES[variant])
    return model, data, cfg


def run(model: torch.nn.Module, data: dict, cfg: train.TrainConfig) -> None:
    train.train(model, data["x"], data["y"], cfg, **{k: v for k, v in data.items() if k not in ("x", "y")})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=320)
    args = step_options(parser).parse_args()
    torch.set_num_threads(args.threads)
    steps = -(-args.images // 64)
    print(f"{args.images} images, 1 crop each per step, batch 64: {steps} steps/epoch, {args.threads} thread(s), "
          f"{args.precision}")
    for variant in LOSSES:
        model, data, cfg = setup(variant, args.images, args.precision)
        run(model, data, cfg)  # warm-up epoch
        started = time.perf_counter()
        run(model, data, cfg)
        print(f"{variant:9s} {1000 * (time.perf_counter() - started) / steps:7.1f} ms/step", flush=True)
    if args.profile:
        model, data, cfg = setup("full", args.images, args.precision)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            run(model, data, cfg)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=40))


if __name__ == "__main__":
    main()
