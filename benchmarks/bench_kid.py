"""Seconds per image of the FID Inception feature extractor (and of KID) on this machine.

Usage: python benchmarks/bench_kid.py [--sizes 32 256] [--batch-sizes 1 8 32] [--n 32]
"""
from __future__ import annotations

import argparse
import time

import torch

from akdray.metrics.features import inception_features
from akdray.metrics.kid import KidOptions, kid_from_features


def _time(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=[32, 256])
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--n", type=int, default=32, help="images per measurement")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    print(f"torch {torch.__version__}, threads={torch.get_num_threads()}, device={args.device}")
    t = time.perf_counter()
    inception_features(torch.zeros(1, 3, 32, 32, dtype=torch.uint8), device=args.device)  # load + warm up
    print(f"model load + first call: {time.perf_counter() - t:.2f} s")
    for size in args.sizes:
        imgs = torch.randint(0, 256, (args.n, 3, size, size), dtype=torch.uint8)
        for bs in args.batch_sizes:
            s = _time(lambda: inception_features(imgs, batch_size=bs, device=args.device), args.repeat)
            print(f"features {size}x{size} batch={bs:3d}: {s / args.n:.4f} s/image")
    for n, m in ((1000, 1000), (200, 200)):
        r, f = torch.rand(n, 2048), torch.rand(n, 2048)
        s = _time(lambda: kid_from_features(r, f, KidOptions(subset_size=m, subsets=100)), 1)
        print(f"KID from features n={n} subset={m} subsets=100: {s:.2f} s")


if __name__ == "__main__":
    main()
