"""Seconds per image of ``akdray translate`` on 100 images at 256x256 with an official unet_256.

The generator is a *randomly initialised* official-layout ``unet_256`` (ngf 64, batch norm, 54.4 M
parameters, written as ``latest_net_G.pth``): the timing does not depend on the weights. The
images are random 256x256 PNGs. Prints seconds per image for both inference modes (end to end:
decode, resize, network, encode, write). A benchmark, not a timed test.

Usage: python benchmarks/bench_translate.py [--n 100] [--size 256] [--smoke-test]
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from akdray.config import RunConfig
from akdray.models import build_generator
from akdray.pix2pix_format import official_state_dict
from akdray.translate import translate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--smoke-test", action="store_true", help="3 images at 32x32")
    args = ap.parse_args()
    n, size = (3, 32) if args.smoke_test else (args.n, args.size)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="akdray-translate-") as tmp:
        root = Path(tmp)
        cfg = RunConfig(image_size=size, ngf=64)
        torch.manual_seed(0)
        torch.save(official_state_dict(build_generator(cfg), cfg), root / "latest_net_G.pth")
        (root / "in").mkdir()
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(root / "in" / f"{i:04d}.png")
        print(f"{n} images {size}x{size}, random official-layout U-Net (depth {cfg.resolved_unet_depth}, ngf 64), torch threads {torch.get_num_threads()}, "
              f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, {os.cpu_count()} CPUs")
        for mode in ("eval", "train"):
            s = translate(root / "latest_net_G.pth", root / "in", root / f"out-{mode}", inference_mode=mode, progress=False)
            print(f"  inference mode {mode:<5}: {s.seconds:.1f} s for {s.n_images} images = "
                  f"{s.seconds_per_image:.3f} s/image")


if __name__ == "__main__":
    main()
