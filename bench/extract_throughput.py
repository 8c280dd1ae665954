"""Feature-extraction throughput on real images: end to end (decode + crop in worker processes, forward)
next to the bare backbone forward measured in the same run, eager and through torch.compile, with the
data-wait fraction (the share of the time the backbone waited for images). With ``--native`` the whole images at
their own resolution (``crops.input: native``; ``--max-side``, ``--flip``), eager, one image per forward pass (what
extraction does on the CPU) against batches of one size (``--batch-size`` crops' worth of pixels per forward, what
it does on an accelerator).

    python bench/extract_throughput.py --meta data/livec/meta.csv --images 400
    python bench/extract_throughput.py --meta data/livec/pool/meta.csv --images 200 --native --flip
"""

from __future__ import annotations

import argparse
import logging

import torch

from qfm_iqm.data.meta import read_meta
from qfm_iqm.features.extract import CropRecipe, extract
from qfm_iqm.features.weights import convert_package_weights
from qfm_iqm.settings import schema_default


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--meta", required=True, help="a prepared meta table (data/<dataset>/meta.csv)")
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument("--weights", default="results/weights/tf_efficientnet_lite0.pth")
    parser.add_argument("--crops", type=int, default=5)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=40)
    parser.add_argument("--native", action="store_true", help="whole images at native resolution")
    parser.add_argument("--max-side", type=int, default=schema_default("crops.max_side"))
    parser.add_argument("--flip", action="store_true")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    try:
        open(args.weights, "rb").close()
    except FileNotFoundError:
        convert_package_weights(args.backbone, args.weights)
    meta = read_meta(args.meta, ["image_id", "path"]).head(args.images)
    recipe = CropRecipe(args.crops, args.size, input="native" if args.native else "crops", max_side=args.max_side,
                        flip=args.flip)
    views = f"native views (longer side <= {args.max_side}){', flipped too' if args.flip else ''}" if args.native \
        else f"{args.crops} crops of {args.size}px"
    print(f"{args.backbone}, {len(meta)} images x {views}, batch {args.batch_size} crops, {args.threads} threads, "
          f"torch {torch.__version__}")
    runs = {}
    pixels = args.batch_size * args.size ** 2
    plans = ((("one image per forward", False, 1, 0), ("batched by size", False, 1, pixels))
             if args.native else (("eager, decoding inline", False, 0, None), ("eager", False, 1, None),
                                  ("compiled", True, 1, None)))
    for label, compile, workers, batch_pixels in plans:
        _, s = extract(meta, args.backbone, args.weights, recipe, args.batch_size, compile=compile, workers=workers,
                       batch_pixels=batch_pixels, precision=schema_default("backbone.precision"))
        runs[label] = s
        print(f"{label:24s}: end to end {s['images_per_s']:6.2f} images/s, {s['crops_per_s']:6.1f} views/s "
              f"({s['seconds']:.1f} s), bare forward {s['forward_crops_per_s']:6.1f} views/s, data wait "
              f"{100 * s['data_wait']:4.1f}%")
    best = max(s["forward_crops_per_s"] for s in runs.values())
    for label, s in runs.items():
        print(f"{label:24s}: {100 * s['crops_per_s'] / best:5.1f}% of the best bare forward ({best:.1f} views/s)")

if __name__ == "__main__":
    main()
