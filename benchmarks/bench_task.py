"""Can image quality tell GAN+L1 from L1-only on the embedded task? NKID of both teachers, per seed.

    python benchmarks/bench_task.py --seeds 0 1 2 [--style textured|flat] [--out DIR]

Trains the regular pix2pix teacher (GAN + lambda * L1, Eq. 2) and an L1-only teacher
(``gan_weight=0``) on the ``cpu-small`` preset for each seed (each seed its own data draw), and
prints their NKID, the ratio L1-only / GAN+L1 and the seed ranges. The embedded task is meant to
separate them (ratio >= 1.3, ranges not overlapping); with ``--style flat`` (akdray <= 0.1) it
does not.

``--oracle`` trains nothing: on the ``sharp`` style (whose random detail has its own stream) it
scores, against the real test photos of each seed, the NKID of two stand-ins - the same label
maps with the detail drawn again (what a perfect conditional GAN could output) and the per-pixel
median of 9 such redraws (what a perfect L1 model converges to) - i.e. the room the task leaves
between the two losses.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from akdray.config import make_config
from akdray.data.synthetic import synthetic_facades
from akdray.metrics.kid import KidOptions, quality_of_sets
from akdray.run import run


def oracle(seeds: list[int], n: int = 100) -> int:
    """NKID of a redraw and of the median of 9 redraws against the real ``sharp`` test photos."""
    print("| seed | NKID redraw (GAN optimum) | NKID median of 9 (L1 optimum) |\n|---|---|---|")
    for seed in seeds:
        _, real, _ = synthetic_facades(n, 32, seed, "test", "sharp")
        redraw = synthetic_facades(n, 32, seed, "test", "sharp", texture_draw=0)[1]
        draws = torch.stack([synthetic_facades(n, 32, seed, "test", "sharp", texture_draw=k)[1] for k in range(1, 10)])
        median = draws.float().median(0).values.round().to(torch.uint8)
        q = quality_of_sets({"redraw": (real, redraw, None), "median": (real, median, None)},
                            KidOptions(subset_size=50, subsets=100, seed=seed))
        print(f"| {seed} | {q['redraw']['nkid']:.4f} | {q['median']['nkid']:.4f} |", flush=True)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--style", default="textured")
    ap.add_argument("--preset", default="cpu-small")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE")
    ap.add_argument("--out", default=None, help="keep the run folders here (default: a temporary folder)")
    ap.add_argument("--oracle", action="store_true", help="no training: NKID of the GAN and L1 optima (sharp style)")
    args = ap.parse_args()
    if args.oracle:
        return oracle(args.seeds)
    extra = dict(item.split("=", 1) for item in args.overrides)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        for seed in args.seeds:
            for label, weight in (("gan+l1", "1.0"), ("l1-only", "0.0")):
                cfg = make_config(args.preset, {"method": "teacher", "seed": str(seed), "data_seed": str(seed),
                                                "synthetic_style": args.style, "gan_weight": weight, **extra})
                t0 = time.perf_counter()
                row = run(cfg, out / f"{label}-seed{seed}")
                rows.append({"seed": seed, "teacher": label, "nkid": row["nkid"], "loss_auc": row["loss_auc"],
                             "test_l1": row["test_l1"], "wall_s": time.perf_counter() - t0})
                print(json.dumps(rows[-1]), flush=True)
    print(f"\n{args.style} task, preset {args.preset}")
    print("| seed | NKID GAN+L1 | NKID L1-only | ratio | test L1 GAN+L1 | test L1 L1-only |\n|---|---|---|---|---|---|")
    gan = {r["seed"]: r for r in rows if r["teacher"] == "gan+l1"}
    l1 = {r["seed"]: r for r in rows if r["teacher"] == "l1-only"}
    for seed in args.seeds:
        g, o = gan[seed], l1[seed]
        print(f"| {seed} | {g['nkid']:.4f} | {o['nkid']:.4f} | {o['nkid'] / g['nkid']:.2f} | "
              f"{g['test_l1']:.4f} | {o['test_l1']:.4f} |")
    g_range = (min(r["nkid"] for r in gan.values()), max(r["nkid"] for r in gan.values()))
    o_range = (min(r["nkid"] for r in l1.values()), max(r["nkid"] for r in l1.values()))
    print(f"\nGAN+L1 NKID range [{g_range[0]:.4f}, {g_range[1]:.4f}]; L1-only [{o_range[0]:.4f}, {o_range[1]:.4f}]; "
          f"overlap: {'yes' if o_range[0] <= g_range[1] else 'no'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
