"""Throughput of ``qfm-iqm score`` on a folder of images, next to the best bare backbone forward in the same run.

The bare forward is the bundle's timm backbone on ready-made channels_last tensors shaped like the scorer's views:
(batch, 3, size, size) crops, eager and through torch.compile (after warm-up); for a bundle of native-resolution
views (``crops.input: native``) the most common view size among the images, as many per batch as the scorer puts
in one forward pass on the CPU (one image's views), eager only (the scorer never compiles native views). The command
runs as a user runs it (a fresh process: start-up, model load, compilation and every image included), eagerly, then
compiled with an empty and with a warm compiler cache; the scorer's steady state is timed in-process after its
first batch.

    python bench/score_throughput.py --folder ../shared/datasets/livec/ChallengeDB_release/Images --images 400
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch

from qfm_iqm import load_model
from qfm_iqm.deploy.listing import expand
from qfm_iqm.features.extract import header_size, native_batch_pixels
from qfm_iqm.io import read_rgb

QFM_IQM = str(Path(sys.executable).with_name("qfm-iqm"))


def bare_forward(module: torch.nn.Module, batch: int, shape: tuple[int, int], seconds: float = 20.0) -> float:
    """Views/s of ``module`` on random channels_last (batch, 3, height, width) batches, after two warm-up calls."""
    x = torch.randn(batch, 3, *shape).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        for _ in range(2):
            module(x)
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            module(x)
            done += batch
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", required=True, help="a folder of images")
    parser.add_argument("--images", type=int, default=400, help="score the first N files of the folder")
    parser.add_argument("--model", default="livec")
    parser.add_argument("--batch-size", type=int, default=40, help="crops per forward pass")
    args = parser.parse_args()
    files = [item.path for item in expand([args.folder], recursive=False) if not item.error][: args.images]
    scorer = load_model(args.model, compile="off")
    recipe = scorer.describer.recipe
    views = recipe.views
    backbone = scorer.bundle.backbone().to(memory_format=torch.channels_last).eval()
    if recipe.native:
        sizes = [header_size(str(f)) for f in files]
        width, height = Counter(recipe.native_size(*size) for size in sizes if min(size)).most_common(1)[0][0]
        pixels = native_batch_pixels("cpu", args.batch_size, recipe.size)  # the scorer's batches on this CPU
        shape, batch = (height, width), max(1, pixels // (width * height)) * views
        described = f"native views of {width}x{height} (the most common){', and mirrored' if recipe.flip else ''}"
    else:
        shape, batch = (recipe.size, recipe.size), args.batch_size
        described = f"{recipe.n} crops of {recipe.size} px{', and mirrored' if recipe.flip else ''}"
    print(f"model {scorer.bundle.name}: {scorer.bundle.info['backbone']['name']}, {described}, {views} views per "
          f"image; {len(files)} images; {torch.get_num_threads()} threads, torch {torch.__version__}")
    eager = bare_forward(backbone.forward_features, batch, shape)
    compiled = 0.0 if recipe.native else bare_forward(torch.compile(backbone.forward_features, dynamic=False),
                                                      batch, shape)
    best = max(eager, compiled)
    print(f"bare backbone forward, batch {batch}: eager {eager:.1f} views/s"
          + ("" if recipe.native else f", compiled {compiled:.1f} views/s"))
    with tempfile.TemporaryDirectory() as tmp:
        listed = Path(tmp) / "files"
        listed.mkdir()
        for f in files:
            (listed / f.name).symlink_to(f.resolve())
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(Path(tmp) / "inductor")}  # starts empty
        modes = [("off", "eager")] + ([] if recipe.native else [("on", "compiled, empty compiler cache"),
                                                                ("on", "compiled again, warm compiler cache")])
        for mode, label in modes:
            start = time.perf_counter()
            subprocess.run([QFM_IQM, "score", str(listed), "--model", args.model, "--compile", mode, "-q",
                            "--batch-size", str(args.batch_size), "-o", str(Path(tmp) / "scores.csv")], check=True,
                           env=env)
            wall = time.perf_counter() - start
            rate = len(files) * views / wall
            print(f"qfm-iqm score ({label}): {wall:.1f} s for {len(files)} images, {len(files) / wall:.2f} "
                  f"images/s = {rate:.1f} views/s, {100 * rate / best:.0f}% of the best bare forward")
    start = time.perf_counter()
    for f in files[:100]:
        scorer.describer.prepare(read_rgb(f), "x")
    prep = (time.perf_counter() - start) / min(100, len(files))
    print(f"decode + crop + normalise alone: {1000 * prep:.1f} ms per image, "
          f"{100 * prep * best / views:.0f}% of the best bare forward's time for its views")
    for mode in ("off",) if recipe.native else ("off", "on"):
        timed = load_model(args.model, batch_size=args.batch_size, compile=mode)
        stream = timed.stream(files, progress=False)
        first = max(1, args.batch_size // views)
        for _ in range(first):
            next(stream)
        start = time.perf_counter()
        rest = sum(1 for _ in stream)
        rate = rest * views / (time.perf_counter() - start)
        print(f"scorer steady state (after the first batch), compile {mode}: {rate:.1f} views/s, "
              f"{100 * rate / best:.0f}% of the best bare forward")


if __name__ == "__main__":
    main()
