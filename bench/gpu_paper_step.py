"""The paper's fine-tune step on a GPU: ms per step of the fine-tuned baseline (DEIQT) and full model of
config/paper.yaml (ViT-S/16 under the DEIQT decoder, the CLS query, random weights: no hub is needed), with its recipe
(DEIQT's: 16 images per step, mixed precision, clipping, the warm-up schedule), the fraction of time spent waiting for
data, the peak GPU memory and the dry run's estimate of it. One table in a few minutes.

    python bench/gpu_paper_step.py                 # on a CUDA machine, from the repository root
    python bench/gpu_paper_step.py --steps 10      # fewer steps per epoch
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from gpu_throughput import images
from validate_student import merged_config

from qfm_iqm.method.finetune import finetune, gpu_memory_estimate, student_config
from qfm_iqm.method.partial import partial_spec
from qfm_iqm.settings import finetuned_variants


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="steps per epoch (the first of 2 epochs warms up)")
    parser.add_argument("--images-dir", type=Path, help="real images (e.g. LIVEC's Images folder)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench/gpu_paper_step.py needs a CUDA device (torch sees none here): it measures the paper's GPU step")
    logging.basicConfig(level=logging.WARNING)
    config = merged_config(["config/paper.yaml"])  # run from the repository root, as the other benches
    finetuned = finetuned_variants(config)
    section = {**config["finetune"], "device": "cuda", "epochs": 2}
    batch = section["batch_size"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        # as many images as make args.steps steps of crops_per_epoch crops each
        train = images(Path(tmp), -(-batch * args.steps // section["crops_per_epoch"]), args.images_dir)
        pool = train.assign(image_id="pool" + train["image_id"], teacher_score=train["score"])
        partners = np.random.default_rng(0).permutation(len(train))
        for name in ("finetune_baseline", "finetune"):
            student = finetuned[name]
            cfg = student_config(student, section, config["crops"]["size"], partial_spec(config))
            torch.cuda.reset_peak_memory_stats()
            _, history = finetune(config["backbone"]["name"], "none", student["arch"], cfg,
                                  train, partners, pool if cfg.kd_weight > 0 else None, train)
            last = history.iloc[-1]
            images_per_step = batch * (2 if cfg.kd_weight > 0 else 1)
            rows.append({"model": name, "batch (images)": batch, "steps": int(last["steps"]),
                         "ms/step": 1000 * last["seconds"] / last["steps"], "data wait": last["data_wait"],
                         "peak GiB": torch.cuda.max_memory_allocated() / 2**30,
                         "estimate GiB": gpu_memory_estimate(config["backbone"]["name"], cfg.crop, images_per_step,
                                                             cfg.precision)})
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, {config['backbone']['name']} (random weights), "
          f"crop {config['crops']['size']}, precision {cfg.precision} (amp: float16 with a grad scaler), clipping "
          f"{cfg.clip_grad_norm}, schedule {cfg.schedule}; second epoch of 2")
    print(pd.DataFrame(rows).to_string(index=False, float_format="%.3f"))


if __name__ == "__main__":
    main()
