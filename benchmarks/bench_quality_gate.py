"""Issue #24's gate: can AKD beat L1-only distillation at all when the teacher is perfect and stochastic?

    python benchmarks/bench_quality_gate.py --seeds 0 1 2 [--size 32] [--epochs 60] [--lambdas 10 100]
        [--proxy 100] [--rows FILE.jsonl] [--device cpu|cuda] [--report] [--smoke]

The teacher is the ``sharp`` renderer itself (:class:`akdray.defenses.renderer_teacher.RendererTeacher`):
``stochastic`` draws each proxy input's crisp detail again at every query (what official pix2pix's
teacher does with its dropout on), ``fixed`` returns one draw every time (the control: a
deterministic teacher). Per seed (its own data draw) and condition, one DMP student (L1 only) and
AKD students at each λ train on the same proxy inputs, epochs and label sequence (every student
of a condition gets the same draws in the same order), through the real
:func:`akdray.defenses.distill.fit_student`. Each is scored on the seed's 100 test inputs against the
real test photos: NKID (KID subsets of 50, as a cpu-small run), ``swd`` and ``hfer``
(:mod:`akdray.metrics.sharpness`) and L1 to the ground truth.

Verdict, per λ: AKD − DMP paired by seed, 95 % t-interval over seeds (t with n − 1 degrees of
freedom). **Pass** = with the stochastic teacher the NKID interval lies below 0 and the SWD interval
agrees (below 0), while with the fixed teacher (control) both intervals contain 0. Rows are
appended to ``--rows`` as they finish (a rerun with the same file skips them) and the tables are
printed at the end with the wall time.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from akdray.config import make_config
from akdray.data.splits import InputImages
from akdray.data.synthetic import synthetic_facades
from akdray.defenses.distill import fit_student
from akdray.defenses.renderer_teacher import RendererTeacher
from akdray.metrics.features import to_uint8
from akdray.metrics.kid import KidOptions, quality_of_sets
from akdray.metrics.sharpness import sharpness_of
from akdray.train import generate, to_float

CONDITIONS = ("stochastic", "fixed")
MEASURES = ("nkid", "swd", "hfer", "l1")


def student_row(seed: int, size: int, condition: str, student: str, lam: float, teacher: RendererTeacher,
                proxy_x: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor, args) -> dict:
    """Train one student on the renderer's labels and score it on the test inputs."""
    cfg = make_config("cpu-small", {
        "method": "akd" if student == "akd" else "dmp", "seed": str(seed), "data_seed": str(seed),
        "synthetic_style": "sharp", "image_size": str(size), "proxy_size": str(len(proxy_x)),
        "distill_epochs": str(args.epochs), "distill_lambda": str(lam), "teacher_checkpoint": "renderer",
        "device": args.device})
    t0 = time.perf_counter()
    names = tuple(f"synthetic/proxy/{i:05d}" for i in range(len(proxy_x)))
    G, history = fit_student(cfg, teacher, InputImages(proxy_x, names), adversarial=student == "akd",
                             device=torch.device(args.device))
    train_s = time.perf_counter() - t0
    out = to_uint8(generate(G, test_x, cfg.inference_mode, device=torch.device(args.device)))
    t1 = time.perf_counter()
    q = quality_of_sets({"s": (test_y, out, f"quality-gate-sharp-s{seed}-{size}px-test{len(test_y)}")},
                        KidOptions(subset_size=cfg.kid_subset_size, subsets=cfg.kid_subsets, seed=seed,
                                   device=args.device))["s"]
    t2 = time.perf_counter()
    sharp = sharpness_of(out, test_y, seed)
    sharp_s = time.perf_counter() - t2
    draws = {teacher.draw_of(i, k) for i in range(len(proxy_x)) for k in range(teacher.queries[i])}
    return {"size": size, "seed": seed, "condition": condition, "student": student, "lambda": lam,
            "epochs": args.epochs, "proxy": len(proxy_x), "nkid": q["nkid"], **sharp,
            "l1": float((to_float(out) - to_float(test_y)).abs().mean()),
            "labels_per_input": sum(teacher.queries.values()) / len(proxy_x), "distinct_draws": len(draws),
            "final_loss_G_l1": history.epochs[-1].get("loss_G_l1"), "train_s": train_s,
            "kid_s": t2 - t1, "sharpness_s": sharp_s, "wall_s": time.perf_counter() - t0}


def interval(diffs: list[float]) -> tuple[float, float, float]:
    """Mean and 95 % paired t-interval of per-seed differences."""
    d = np.asarray(diffs, float)
    if len(d) == 0:
        return math.nan, math.nan, math.nan
    if len(d) < 2:
        return float(d.mean()), math.nan, math.nan
    half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    return float(d.mean()), float(d.mean() - half), float(d.mean() + half)


def mean_sd(values: list[float]) -> str:
    sd = np.std(values, ddof=1) if len(values) > 1 else 0.0
    return f"{np.mean(values):.3f} ± {sd:.3f}"


def summarise(rows: list[dict], size: int) -> bool:
    """Print the per-student table and the paired verdict; True if the gate passes at some λ."""
    rows = [r for r in rows if r["size"] == size]
    seeds = sorted({r["seed"] for r in rows})
    print(f"\n## {size} px, seeds {seeds}, {rows[0]['epochs'] if rows else '?'} epochs\n")
    print("| teacher | student | n | NKID | SWD | HFER | L1 | train s |\n|---|---|---|---|---|---|---|---|")
    keyed = {(r["condition"], r["student"], r["lambda"], r["seed"]): r for r in rows}
    students = sorted({(r["student"], r["lambda"]) for r in rows}, key=lambda s: (s[0] != "dmp", s[1]))
    for cond in CONDITIONS:
        for st, lam in students:
            rs = [r for r in rows if (r["condition"], r["student"], r["lambda"]) == (cond, st, lam)]
            if not rs:
                continue
            cell = lambda k: mean_sd([r[k] for r in rs])  # noqa: E731
            name = "DMP" if st == "dmp" else f"AKD λ={lam:g}"
            print(f"| {cond} | {name} | {len(rs)} | {cell('nkid')} | {cell('swd')} | {cell('hfer')} | {cell('l1')} | "
                  f"{np.mean([r['train_s'] for r in rs]):.0f} |")
    print("\nAKD − DMP, paired by seed, mean [95 % t-interval]:\n")
    print("| λ | teacher | seeds | Δ NKID | Δ SWD | Δ HFER | Δ L1 |\n|---|---|---|---|---|---|---|")
    passed, verdicts = False, []
    for st, lam in students:
        if st != "akd":
            continue
        verdict = {}
        for cond in CONDITIONS:
            both = [s for s in seeds if (cond, "akd", lam, s) in keyed and (cond, "dmp", 100.0, s) in keyed]
            diffs = {m: interval([keyed[(cond, "akd", lam, s)][m] - keyed[(cond, "dmp", 100.0, s)][m] for s in both])
                     for m in MEASURES}
            verdict[cond] = diffs
            print(f"| {lam:g} | {cond} | {len(both)} | " + " | ".join(
                f"{d[0]:+.3f} [{d[1]:+.3f}, {d[2]:+.3f}]" for d in diffs.values()) + " |")
        sto, ctl = verdict["stochastic"], verdict["fixed"]
        below = sto["nkid"][2] < 0 and sto["swd"][2] < 0
        null = all(ctl[m][1] <= 0 <= ctl[m][2] for m in ("nkid", "swd"))
        verdicts.append(f"λ = {lam:g}: stochastic NKID and SWD intervals below 0: {below}; "
                        f"control intervals contain 0: {null} -> {'PASS' if below and null else 'fail'}")
        passed |= below and null
    print("", *verdicts, f"\nGate at {size} px: {'PASS' if passed else 'FAIL'}", sep="\n")
    return passed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=60, help="distillation epochs (cpu-small: 60)")
    ap.add_argument("--proxy", type=int, default=100, help="proxy inputs (cpu-small: 100)")
    ap.add_argument("--n-test", type=int, default=100, help="test images scored (cpu-small's KID: 100)")
    ap.add_argument("--lambdas", type=float, nargs="+", default=[10.0, 100.0], help="AKD's λ (DMP uses 100)")
    ap.add_argument("--conditions", nargs="+", default=list(CONDITIONS), choices=CONDITIONS)
    ap.add_argument("--rows", type=Path, default=None,
                    help="append rows here as JSON lines; rows already there are skipped")
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N] (training, generation and Inception features)")
    ap.add_argument("--report", action="store_true", help="train nothing: the tables of the rows in --rows")
    ap.add_argument("--smoke", action="store_true", help="1 seed, 2 epochs, 8 proxy and 16 test images (timing only)")
    args = ap.parse_args()
    if args.smoke:
        args.seeds, args.epochs, args.proxy, args.n_test = args.seeds[:1], 2, 8, 16
    rows = [json.loads(line) for line in args.rows.read_text().splitlines() if line.strip()] \
        if args.rows and args.rows.exists() else []
    done = {(r["size"], r["seed"], r["condition"], r["student"], r["lambda"], r["epochs"], r["proxy"]) for r in rows}
    t0 = time.perf_counter()
    data = {} if args.report else {seed: (synthetic_facades(args.proxy, args.size, seed, "proxy", "sharp")[0],
                                          *synthetic_facades(args.n_test, args.size, seed, "test", "sharp")[:2])
                                   for seed in args.seeds}
    # every seed of the stochastic teacher first: a run cut short still has them paired
    for cond in [] if args.report else args.conditions:
        for seed in args.seeds:
            proxy_x, test_x, test_y = data[seed]
            teacher = RendererTeacher(proxy_x, seed, stochastic=cond == "stochastic")
            for student, lam in [("dmp", 100.0), *(("akd", lam) for lam in args.lambdas)]:
                if (args.size, seed, cond, student, lam, args.epochs, args.proxy) in done:
                    continue
                row = student_row(seed, args.size, cond, student, lam, teacher.fork(), proxy_x, test_x, test_y, args)
                print(json.dumps(row), flush=True)
                rows.append(row)
                if args.rows:
                    with args.rows.open("a") as f:
                        f.write(json.dumps(row) + "\n")
    rows = [r for r in rows if r["epochs"] == args.epochs and r["proxy"] == args.proxy and r["seed"] in args.seeds]
    summarise(rows, args.size)
    print(f"\nwall time of this invocation: {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
