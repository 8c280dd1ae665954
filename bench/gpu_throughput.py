"""Input-pipeline throughput for a GPU day: images/s and data-wait fraction of frozen extraction and of
fine-tune steps, for Lite0 and for DEIQT's ViT-S (``deit3_small_patch16_224``, random weights: no hub is
reachable), on LIVEC-sized images (500x500 JPEGs; the real LIVEC images when ``--images-dir`` is given).

    python bench/gpu_throughput.py --device cuda [--precision bf16] [--images 512]
    python bench/gpu_throughput.py --device cpu --images 16 --epochs 1     # a smoke run
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from qfm_iqm.features.extract import CropRecipe, extract
from qfm_iqm.method.finetune import FinetuneConfig, finetune
from qfm_iqm.settings import load_config_file, schema_default

REPO = Path(__file__).resolve().parents[1]

BACKBONES = ("tf_efficientnet_lite0", "deit3_small_patch16_224")


def images(folder: Path, count: int, source: Path | None) -> pd.DataFrame:
    """``count`` images: the first of ``source``, or 500x500 JPEGs of smooth noise written to ``folder``."""
    if source is not None:
        paths = sorted(p for p in source.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp"))[:count]
    else:
        rng = np.random.default_rng(0)
        paths = []
        for i in range(count):
            coarse = Image.fromarray(rng.integers(0, 256, (25, 25, 3), dtype=np.uint8)).resize((500, 500))
            paths.append(folder / f"{i}.jpg")
            coarse.save(paths[-1], quality=90)
    scores = np.random.default_rng(1).uniform(size=len(paths))
    return pd.DataFrame({"image_id": [str(i) for i in range(len(paths))], "path": [str(p) for p in paths],
                         "score": scores})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--images-dir", type=Path, help="real images (e.g. LIVEC's Images folder)")
    parser.add_argument("--batch-size", type=int, default=160, help="crops per extraction forward pass")
    parser.add_argument("--finetune-batch", type=int, default=32, help="images per fine-tune step")
    parser.add_argument("--epochs", type=int, default=2, help="fine-tune epochs (the first warms up)")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
    parser.add_argument("--compile", action="store_true", help="extraction through torch.compile")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(f"device {args.device} ({torch.cuda.get_device_name() if args.device.startswith('cuda') else 'cpu'}), "
          f"torch {torch.__version__}, {args.precision}, {args.images} images")
    ft = load_config_file(REPO / "config/config.yaml")["finetune"]  # the default fine-tune's backbone settings
    with tempfile.TemporaryDirectory() as tmp:
        meta = images(Path(tmp), args.images, args.images_dir)
        for name in BACKBONES:
            started = time.perf_counter()
            _, s = extract(meta, name, "none", CropRecipe(5, 224), args.batch_size, device=args.device,
                           compile=args.compile, precision=schema_default("backbone.precision"))
            print(f"{name:26s} extraction: {s['images_per_s']:7.1f} images/s ({s['crops_per_s']:.0f} crops/s; bare "
                  f"forward {s['forward_crops_per_s']:.0f}), data wait {100 * s['data_wait']:4.1f}%, "
                  f"{time.perf_counter() - started:.0f} s")
            cfg = FinetuneConfig(epochs=args.epochs, lr=1e-3, weight_decay=1e-4, batch_size=args.finetune_batch,
                                 loss="smooth_l1_plcc", seed=0, device=args.device, precision=args.precision, crop=224,
                                 **{k: ft[k] for k in ("lr_backbone", "crops_per_epoch", "channels_last",
                                                       "freeze_bn_stats", "std_floor")})
            arch = {"head": "mlp", "hidden": 512, "dropout": 0.1, "gate": True, "gate_reduction": 8}
            _, history = finetune(name, "none", arch, cfg, meta)
            last = history.iloc[-1]
            print(f"{name:26s} fine-tune:  {len(meta) / last['seconds']:7.1f} images/s (epoch {int(last['epoch'])}), "
                  f"data wait {100 * last['data_wait']:4.1f}%")


if __name__ == "__main__":
    main()
