"""Inception feature extraction on CPU: images per pass vs time, peak memory and the features.

    python benchmarks/bench_inception_batch.py [--images 100] [--batch-sizes 32 8 4] [--rounds 2]

Each (round, batch size) runs in a fresh process (so ``ru_maxrss`` is that batch size's peak),
alternating batch sizes so both see the same machine. The features of the same seeded uint8
32x32 images are compared across batch sizes (max absolute difference).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

CHILD = r"""
import json, resource, sys, time, warnings
warnings.simplefilter("ignore")
import torch
torch.set_num_threads(1)
from akdray.metrics.features import inception_features
n, bs, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
inception_features(x[:1], batch_size=1)  # load the network
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t = time.perf_counter()
feats = inception_features(x, batch_size=bs)
seconds = time.perf_counter() - t
torch.save(feats, out)
print(json.dumps({"batch": bs, "seconds": seconds, "loaded_mib": before,
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 8, 4])
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    import torch

    feats = {}
    with tempfile.TemporaryDirectory() as tmp:
        print("| round | images per pass | seconds | RSS after loading [MiB] | peak RSS [MiB] |\n|---|---|---|---|---|")
        for r in range(args.rounds):
            for bs in args.batch_sizes:
                out = f"{tmp}/{bs}.pt"
                done = subprocess.run([sys.executable, "-c", CHILD, str(args.images), str(bs), out],
                                      capture_output=True, text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
                m = json.loads(done.stdout.strip().splitlines()[-1])
                print(f"| {r} | {bs} | {m['seconds']:.1f} | {m['loaded_mib']:.0f} | {m['peak_mib']:.0f} |")
                feats[bs] = torch.load(out)
    ref = feats[args.batch_sizes[0]]
    for bs in args.batch_sizes[1:]:
        print(f"max |features({bs}) - features({args.batch_sizes[0]})| = {(feats[bs] - ref).abs().max().item():.2e} "
              f"(largest feature {ref.abs().max().item():.2f})")


if __name__ == "__main__":
    main()
