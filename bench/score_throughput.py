"""Throughput of ``qfm-iqm score`` on a folder of images, next to the best bare backbone forward in the same run.

The bare forward is the bundle's timm backbone on ready-made (batch, 3, size, size) channels_last tensors, eager
and through torch.compile (after warm-up). The command runs as a user runs it (a fresh process: start-up, model
load, compilation and every image included), eagerly, then compiled with an empty and with a warm compiler cache;
the scorer's steady state is timed in-process after its first batch.

    python bench/score_throughput.py --folder ../shared/datasets/livec/ChallengeDB_release/Images --images 400
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from qfm_iqm import load_model
from qfm_iqm.deploy.cli import expand
from qfm_iqm.io import read_rgb

QFM_IQM = str(Path(sys.executable).with_name("qfm-iqm"))


def bare_forward(module: torch.nn.Module, batch: int, size: int, seconds: float = 20.0) -> float:
    """Crops/s of ``module`` on random channels_last batches, after two warm-up calls."""
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
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
    files = expand([args.folder], recursive=False)[: args.images]
    scorer = load_model(args.model, compile="off")
    crops = scorer.bundle.info["crops"]
    backbone = scorer.bundle.backbone().to(memory_format=torch.channels_last).eval()
    print(f"model {scorer.bundle.name}: {scorer.bundle.info['backbone']['name']}, {crops['n']} crops of "
          f"{crops['size']} px per image; {len(files)} images; {torch.get_num_threads()} threads, torch "
          f"{torch.__version__}")
    eager = bare_forward(backbone.forward_features, args.batch_size, crops["size"])
    compiled = bare_forward(torch.compile(backbone.forward_features, dynamic=False), args.batch_size, crops["size"])
    best = max(eager, compiled)
    print(f"bare backbone forward, batch {args.batch_size}: eager {eager:.1f} crops/s, compiled {compiled:.1f} "
          f"crops/s")
    with tempfile.TemporaryDirectory() as tmp:
        listed = Path(tmp) / "files"
        listed.mkdir()
        for f in files:
            (listed / f.name).symlink_to(f.resolve())
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(Path(tmp) / "inductor")}  # starts empty
        for mode, label in (("off", "eager"), ("on", "compiled, empty compiler cache"),
                            ("on", "compiled again, warm compiler cache")):
            start = time.perf_counter()
            subprocess.run([QFM_IQM, "score", str(listed), "--model", args.model, "--compile", mode, "-q",
                            "--batch-size", str(args.batch_size), "-o", str(Path(tmp) / "scores.csv")], check=True,
                           env=env)
            wall = time.perf_counter() - start
            rate = len(files) * crops["n"] / wall
            print(f"qfm-iqm score ({label}): {wall:.1f} s for {len(files)} images, {len(files) / wall:.2f} "
                  f"images/s = {rate:.1f} crops/s, {100 * rate / best:.0f}% of the best bare forward")
    start = time.perf_counter()
    for f in files[:100]:
        scorer.describer.prepare(read_rgb(f), "x")
    prep = (time.perf_counter() - start) / min(100, len(files))
    print(f"decode + crop + normalise alone: {1000 * prep:.1f} ms per image, "
          f"{100 * prep * best / crops['n']:.0f}% of the best bare forward's time for its crops")
    for mode in ("off", "on"):
        timed = load_model(args.model, batch_size=args.batch_size, compile=mode)
        stream = timed.stream(files, progress=False)
        first = args.batch_size // crops["n"]
        for _ in range(first):
            next(stream)
        start = time.perf_counter()
        rest = sum(1 for _ in stream)
        rate = rest * crops["n"] / (time.perf_counter() - start)
        print(f"scorer steady state (after the first batch), compile {mode}: {rate:.1f} crops/s, "
              f"{100 * rate / best:.0f}% of the best bare forward")


if __name__ == "__main__":
    main()
