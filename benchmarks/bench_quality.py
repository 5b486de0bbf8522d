"""Issue #24, stage 0: do NKID and the two sharpness measures rank the GAN and L1 optima? No training.

    python benchmarks/bench_quality.py [--seeds 0 1] [--sizes 32 64] [--n 100] [--noise 0.1] [--blur 1.0]

On the ``sharp`` style (whose random detail has a stream of its own) each seed's 100 real test
photos are scored against stand-ins for what a model could output:

* ``real`` - the photos themselves (each measure's floor: KID's and SWD's sampling noise);
* ``real, other layouts`` - 100 real photos of other label maps (the ``val`` role; L1 undefined);
* ``redraw`` - the same label maps with the detail drawn again (what a perfect conditional GAN outputs);
* ``median of 9`` - the per-pixel median of 9 redraws (what a perfect L1 model converges to);
* ``median + noise`` - that median plus N(0, ``--noise``²) (noise that fools an energy ratio);
* ``blurred`` - the photos under a Gaussian blur of σ = ``--blur`` px;
* ``noisy`` - the photos plus N(0, ``--noise``²).

Measures: NKID (KID subsets of 50 over 100 images, as a cpu-small run), ``swd`` and ``hfer``
(:mod:`akdray.metrics.sharpness`), L1 to the ground truth in [-1, 1] units. Then the cost: seconds of
:func:`akdray.metrics.sharpness.sharpness_of` on one 100-image set (median of 5), what it adds to a
run (it scores the ``val`` and ``test`` sets: at most 2 calls) and to the default sweep
(``--sweep-runs`` runs on ``--slots`` parallel slots against ``--sweep-s`` of wall time: the
README's warm default sweep, 16 trials in 5 min 24 s on 2 slots).
"""
from __future__ import annotations

import argparse
import sys
import time

import torch
from torchvision.transforms.functional import gaussian_blur

from akdray.data.synthetic import synthetic_facades
from akdray.metrics.features import to_uint8
from akdray.metrics.kid import KidOptions, quality_of_sets
from akdray.metrics.sharpness import hfer, sharpness_of, swd
from akdray.train import to_float


def stand_ins(seed: int, size: int, n: int, noise: float, blur: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The real test photos and the named sets scored against them (see the module docstring)."""
    real = synthetic_facades(n, size, seed, "test", "sharp")[1]
    gen = torch.Generator().manual_seed(seed)
    noisy = lambda images: to_uint8(to_float(images) + 2 * noise * torch.randn(images.shape, generator=gen))  # noqa: E731
    draws = torch.stack([synthetic_facades(n, size, seed, "test", "sharp", texture_draw=k)[1] for k in range(1, 10)])
    median = draws.float().median(0).values.round().to(torch.uint8)
    blurred = gaussian_blur(real.float(), kernel_size=2 * int(3 * blur) + 1, sigma=blur).round().to(torch.uint8)
    return real, {
        "real": real, "real, other layouts": synthetic_facades(n, size, seed, "val", "sharp")[1],
        "redraw": synthetic_facades(n, size, seed, "test", "sharp", texture_draw=0)[1],
        "median of 9": median, "median + noise": noisy(median), "blurred": blurred, "noisy": noisy(real),
    }


def table(seeds: list[int], size: int, n: int, noise: float, blur: float) -> None:
    print(f"\n## {size} px, {n} images, noise σ {noise}, blur σ {blur} px\n")
    print("| seed | set | NKID | SWD | HFER | L1 |\n|---|---|---|---|---|---|")
    for seed in seeds:
        real, sets = stand_ins(seed, size, n, noise, blur)
        q = quality_of_sets({name: (real, fake, f"quality-sharp-s{seed}-{size}px-test{n}") for name, fake in sets.items()},
                            KidOptions(subset_size=50, subsets=100, seed=seed))
        for name, fake in sets.items():
            sharp = sharpness_of(fake, real, seed)
            l1 = "—" if "other" in name else f"{float((to_float(fake) - to_float(real)).abs().mean()):.3f}"
            print(f"| {seed} | {name} | {q[name]['nkid']:.3f} | {sharp['swd']:.1f} | {sharp['hfer']:.3f} | {l1} |",
                  flush=True)


def cost(size: int, n: int, sweep_s: float, sweep_runs: int, slots: int) -> None:
    real, sets = stand_ins(0, size, n, 0.1, 1.0)
    fake = sets["median of 9"]
    timings = {}
    for name, fn in (("hfer", lambda: hfer(fake, real)), ("swd", lambda: swd(fake, real, 0)),
                     ("both", lambda: sharpness_of(fake, real, 0))):
        fn()  # warm-up
        runs = []
        for _ in range(5):
            t0 = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - t0)
        timings[name] = sorted(runs)[2]
    per_run = 2 * timings["both"]
    added = sweep_runs * per_run / slots
    print(f"\n## cost ({n} images, {size} px; median of 5 calls)\n")
    print(f"hfer {timings['hfer'] * 1e3:.0f} ms, swd {timings['swd'] * 1e3:.0f} ms, both {timings['both'] * 1e3:.0f} ms "
          f"per set; a run scores at most 2 sets: +{per_run:.2f} s per run")
    print(f"default sweep: {sweep_runs} runs x {per_run:.2f} s / {slots} slots = +{added:.1f} s on {sweep_s:.0f} s "
          f"= +{100 * added / sweep_s:.1f} % (bound: 5 %)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--sizes", type=int, nargs="+", default=[32])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--noise", type=float, default=0.1, help="SD of the added noise, in [0, 1] pixel units")
    ap.add_argument("--blur", type=float, default=1.0, help="Gaussian blur σ, pixels")
    ap.add_argument("--sweep-s", type=float, default=324.0, help="wall time of the default sweep (README: 5 min 24 s)")
    ap.add_argument("--sweep-runs", type=int, default=16, help="evaluated runs in the default sweep (README: 16 trials)")
    ap.add_argument("--slots", type=int, default=2, help="runs in parallel (2 cores)")
    ap.add_argument("--cost-only", action="store_true", help="only the cost figures (no table, no Inception)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    for size in [] if args.cost_only else args.sizes:
        table(args.seeds, size, args.n, args.noise, args.blur)
    cost(args.sizes[0], args.n, args.sweep_s, args.sweep_runs, args.slots)
    print(f"\nwall time: {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
