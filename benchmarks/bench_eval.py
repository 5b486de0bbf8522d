"""Seconds of one cpu-small evaluation (attack suite + KID/NKID), piece by piece, and its share of a trial.

Usage: python benchmarks/bench_eval.py [--repeat 3] [--train] [--side-by-side 64]

Evaluates an untrained cpu-small generator (evaluation cost does not depend on the weights) with
``akdray.evaluate.evaluate`` as a distillation trial calls it (proxy leakage on, eval_split both),
and times, per call: Inception features, KID math (torch-fidelity), the generator's forward
passes (serve) and the rest of the attack suite. The first call starts from an empty feature
cache (the first trial of a data seed: real features and KID_max computed too); the others read
them from the cache (every later trial). Figures are medians over ``--repeat`` warm calls; the
machine may be shared, so also compare runs made at the same time.

``--side-by-side N`` also times the feature extraction of N generated images as akdray did it
before the fast path (torch-fidelity's TF-1 resize, NCHW, one call per KID set) against the
current :func:`akdray.metrics.features.features_of_batches`, interleaved, same images.

The trial share uses the training seconds of a cpu-small AKD student given by ``--train-s``
(default 34, the figure of the "lean sweep" issue), or measures the cpu-small teacher's training
with ``--train``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from contextlib import contextmanager

import torch

from akdray.attacks.references import serve_generator
from akdray.config import make_config
from akdray.data.splits import load_splits
from akdray.evaluate import evaluate
from akdray.metrics import features, inception, kid
from akdray.models import build_generator


@contextmanager
def _timed(module, name: str, totals: dict, label: str):
    """Add the seconds spent in ``module.name`` to ``totals[label]`` while the block runs."""
    original = getattr(module, name)

    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            totals[label] += time.perf_counter() - t

    setattr(module, name, wrapper)
    try:
        yield
    finally:
        setattr(module, name, original)


def _one_evaluation(serve, splits, cfg) -> dict:
    totals = {"features": 0.0, "kid_math": 0.0, "serve": 0.0}

    def timed_serve(x):
        t = time.perf_counter()
        out = serve(x)
        totals["serve"] += time.perf_counter() - t
        return out

    t = time.perf_counter()
    with _timed(features, "inception_features", totals, "features"), _timed(kid, "kid_from_features", totals, "kid_math"):
        row, _ = evaluate(timed_serve, splits, cfg, proxy_leakage=True, device="cpu")
    totals["total"] = time.perf_counter() - t
    totals["attack_other"] = totals["total"] - totals["features"] - totals["kid_math"] - totals["serve"]
    totals["nkid"] = row["nkid"]
    return totals


BATCH_BEFORE_FAST_PATH = 32  # images per pass then (on CPU it is features.CPU_BATCH_SIZE now)


def _features_before_fast_path(sets: list[torch.Tensor]) -> list[torch.Tensor]:
    """The pre-change feature path, inline: one call per set, TF-1 resize by torch-fidelity, NCHW, no_grad."""
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    net = inception._load_torchscript(inception.find_inception_weights())  # its own copy, NCHW
    out = []
    with torch.no_grad():
        for images in sets:
            parts = []
            for start in range(0, len(images), BATCH_BEFORE_FAST_PATH):
                x = images[start : start + BATCH_BEFORE_FAST_PATH].float()
                x = interpolate_bilinear_2d_like_tensorflow1x(x, size=(inception.INPUT_SIZE,) * 2, align_corners=False)
                parts.append(net((x - 128.0) / 128.0).reshape(-1, inception.FEATURE_DIM))
            out.append(torch.cat(parts))
    return out


def _side_by_side(n: int, size: int, repeat: int) -> None:
    g = torch.Generator().manual_seed(0)
    sets = [torch.randint(0, 256, (k, 3, size, size), dtype=torch.uint8, generator=g) for k in (n // 3, n // 3, n - 2 * (n // 3))]
    runs = {"before (per set, TF-1 resize, NCHW)": lambda: _features_before_fast_path(sets),
            "now (features_of_batches)": lambda: features.features_of_batches(sets)}
    before, now = runs["before (per set, TF-1 resize, NCHW)"](), runs["now (features_of_batches)"]()
    diff = max((a - b).abs().max().item() for a, b in zip(before, now))
    times = {k: [] for k in runs}
    for _ in range(repeat):
        for label, fn in runs.items():
            t = time.perf_counter()
            fn()
            times[label].append(time.perf_counter() - t)
    print(f"\nfeatures of {n} images {size}x{size}, interleaved, median of {repeat} (max |feature diff| {diff:.1e}):")
    for label, ts in times.items():
        print(f"  {label:<38} {statistics.median(ts):7.2f} s  ({statistics.median(ts) / n:.3f} s/image)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="warm evaluations (medians)")
    ap.add_argument("--train", action="store_true", help="measure the cpu-small teacher's training seconds")
    ap.add_argument("--train-s", type=float, default=34.0, help="training seconds of a cpu-small trial (without --train)")
    ap.add_argument("--side-by-side", type=int, default=0, metavar="N", help="also time N images, old vs new feature path")
    args = ap.parse_args()
    os.environ["AKDRAY_CACHE"] = tempfile.mkdtemp(prefix="akdray-bench-eval-")  # a cold cache, removed by nobody else
    print(f"torch {torch.__version__}, torch threads {torch.get_num_threads()}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")

    cfg = make_config("cpu-small", {"device": "cpu"})
    splits = load_splits(cfg)
    torch.manual_seed(cfg.seed)
    G = build_generator(cfg)
    train_s = args.train_s
    if args.train:
        from akdray.train import fit_teacher

        t = time.perf_counter()
        G, _ = fit_teacher(cfg, splits.train.x, splits.train.y, torch.device("cpu"))
        train_s = time.perf_counter() - t
    serve = serve_generator(G, cfg, "cpu")
    t = time.perf_counter()
    inception.extractor("cpu")
    load_s = time.perf_counter() - t

    cold = _one_evaluation(serve, splits, cfg)
    warm = [_one_evaluation(serve, splits, cfg) for _ in range(args.repeat)]
    med = {k: statistics.median(w[k] for w in warm) for k in warm[0]}
    n_fake = sum(min(len(p), cfg.kid_max_images or len(p)) for p in (splits.val, splits.test, splits.train))
    print(f"\ncpu-small evaluation (eval_split both, proxy leakage, {n_fake} generated images for KID), seconds:")
    print(f"  {'piece':<28}{'cold cache':>12}{'warm (median)':>15}")
    for key, label in (("features", "Inception features"), ("kid_math", "KID math (torch-fidelity)"),
                       ("serve", "generator forward (serve)"), ("attack_other", "attack suite, rest"),
                       ("total", "evaluation total")):
        print(f"  {label:<28}{cold[key]:>12.2f}{med[key]:>15.2f}")
    print(f"  NKID (test set), the value measured: cold {cold['nkid']:.6f}, warm {med['nkid']:.6f}")
    print(f"  Inception load (once per process): {load_s:.2f} s")
    source = "measured (teacher, --train)" if args.train else "given (--train-s)"
    for label, ev in (("cold", cold["total"]), ("warm", med["total"])):
        print(f"  share of a trial, {label}: {ev:.1f} s evaluation / ({ev:.1f} + {train_s:.1f} s training, {source}) "
              f"= {100 * ev / (ev + train_s):.0f} %")
    if args.side_by_side:
        _side_by_side(args.side_by_side, cfg.image_size, args.repeat)


if __name__ == "__main__":
    main()
