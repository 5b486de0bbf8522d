"""Calibrated membership attacks on cpu-small: control, power and the headline, with 95 % CIs.

    python benchmarks/bench_attacks.py --out runs/bench_attacks [--seeds 3] [--references 4] [--headline]

Per seed s (data draw s, since ``data_seed`` follows ``seed``): K + 1 reference runs (no KID), the
teacher audited with references 1..K, and the **control** - reference 0, which never saw an audited
image, audited as if it were the target with references 1..K (``akdray audit``). With
``--headline`` also AKD, DMP, DP-SGD and Gauss at the Table II settings (docs/sweeps.md) against that
teacher. Every finished run appends one JSON line to OUT/results.jsonl (so a stopped benchmark
keeps its numbers); ``--report`` prints the tables from that file without training.
Wall times are of this machine, with whatever else runs on it.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from akdray.audit import audit_checkpoint
from akdray.reference_recipe import reference_config
from akdray.config import make_config
from akdray.run import run
from akdray.schema import ATTACKS

HEADLINE = {  # Table II picks (docs/sweeps.md) (AKD lambda 727 / proxy 26; DMP proxy 79; DP-SGD sigma 0.5, C 1)
    "akd": dict(distill_lambda=727.0, proxy_size=26, distill_epochs=60),
    "dmp": dict(proxy_size=79),
    "dpsgd": dict(dp_noise_multiplier=0.5, dp_max_grad_norm=1.0),
    "gauss": dict(gauss_sigma=0.1),
}
KEEP = ("wall_s", "nkid", "leak", "leak_source", "attack_n_members", "attack_n_nonmembers", "n_references",
        *(f"{a}_{s}" for a in ATTACKS for s in ("auc", "auc_lo", "auc_hi", "tpr_at_1pct_fpr", "tpr_at_0p1pct_fpr")))


def record(out: Path, kind: str, seed: int, row: dict, wall: float) -> None:
    line = {"kind": kind, "seed": seed, "bench_wall_s": round(wall, 1), **{k: row.get(k) for k in KEEP}}
    with open(out / "results.jsonl", "a") as fh:
        fh.write(json.dumps(line) + "\n")
    print(f"[{time.strftime('%H:%M:%S')}] {kind} seed {seed}: " + cell_line(line), flush=True)


def cell(r: dict, a: str) -> str:
    if r.get(f"{a}_auc") is None:
        return "—"
    tpr = r.get(f"{a}_tpr_at_1pct_fpr")
    return (f"{r[f'{a}_auc']:.3f} [{r[f'{a}_auc_lo']:.3f}, {r[f'{a}_auc_hi']:.3f}] "
            f"TPR@1% {'—' if tpr is None else f'{tpr:.3f}'}")


def cell_line(r: dict) -> str:
    return " | ".join(f"{a} {cell(r, a)}" for a in ATTACKS) + f" | leak {r.get('leak')} | {r.get('bench_wall_s')} s"


def done(out: Path) -> set[tuple[str, int]]:
    path = out / "results.jsonl"
    return {(r["kind"], r["seed"]) for r in map(json.loads, path.read_text().splitlines())} if path.exists() else set()


def seed_stage(out: Path, seed: int, k: int, teacher: bool = True) -> None:
    """K + 1 references, the control (reference 0 as the target) and the teacher (references 1..K)."""
    base = make_config("cpu-small", {"seed": seed, "device": "cpu"})
    refs = []
    for i in range(k + 1):
        path = out / f"seed{seed}" / f"ref{i}"
        if not (path / "row.json").exists():
            t0 = time.perf_counter()
            row = run(reference_config(base, i), path)
            record(out, f"reference{i}", seed, row, time.perf_counter() - t0)
        refs.append(str(path))
    if ("control", seed) not in done(out):
        t0 = time.perf_counter()
        rec = audit_checkpoint(refs[0], out / f"seed{seed}" / "control", reference_runs=refs[1:])
        record(out, "control", seed, rec, time.perf_counter() - t0)
    path = out / f"seed{seed}" / "teacher"
    if teacher and not (path / "row.json").exists():
        t0 = time.perf_counter()
        row = run(base.replace(reference_checkpoints=",".join(refs[1:])), path)
        record(out, "teacher", seed, row, time.perf_counter() - t0)


def cross_control(out: Path, target: str, seed: int, k: int) -> None:
    """Control on draw ``seed`` whose target is a reference model of another draw (it never saw any
    image of draw ``seed``), calibrated with draw ``seed``'s references 0..k-1: no training at all."""
    t0 = time.perf_counter()
    refs = [str(out / f"seed{seed}" / f"ref{i}") for i in range(k)]
    rec = audit_checkpoint(target, out / f"seed{seed}" / "cross_control", reference_runs=refs, data_seed=seed)
    record(out, "control", seed, rec, time.perf_counter() - t0)


def headline_stage(out: Path, seed: int, k: int) -> None:
    refs = ",".join(str(out / f"seed{seed}" / f"ref{i}") for i in range(1, k + 1))
    for method, fields in HEADLINE.items():
        path = out / f"seed{seed}" / method
        if (path / "row.json").exists():
            continue
        cfg = make_config("cpu-small", {"seed": seed, "device": "cpu", "method": method, **fields,
                                        "teacher_checkpoint": str(out / f"seed{seed}" / "teacher"),
                                        "reference_checkpoints": refs})
        t0 = time.perf_counter()
        record(out, method, seed, run(cfg, path), time.perf_counter() - t0)


def report(out: Path) -> None:
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    kinds = sorted({r["kind"] for r in rows}, key=lambda k: (k.startswith("reference"), k))
    print("| run | seed | " + " | ".join(f"{a} AUC [95% CI], TPR@1%FPR" for a in ATTACKS) + " | leak | NKID | wall [s] |")
    print("|---|---|" + "---|" * (len(ATTACKS) + 3))
    for kind in kinds:
        for r in sorted((r for r in rows if r["kind"] == kind), key=lambda r: r["seed"]):
            nkid = "—" if r.get("nkid") is None else f"{r['nkid']:.3f}"
            leak = "—" if r.get("leak") is None else f"{r['leak']:.3f}"
            print(f"| {kind} | {r['seed']} | " + " | ".join(cell(r, a) for a in ATTACKS)
                  + f" | {leak} | {nkid} | {r['bench_wall_s']} |")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/bench_attacks")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--references", type=int, default=2, help="K reference models per seed (plus one held out)")
    p.add_argument("--headline", action="store_true", help="also AKD, DMP, DP-SGD and Gauss per seed")
    p.add_argument("--controls-first", action="store_true", help="references and controls of all seeds first")
    p.add_argument("--cross-control", nargs=2, metavar=("TARGET_RUN", "SEED"),
                   help="only: control on draw SEED with another draw's reference run as the target")
    p.add_argument("--report", action="store_true", help="only print the tables of OUT/results.jsonl")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 wastes least on a shared machine)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.cross_control:
        cross_control(out, args.cross_control[0], int(args.cross_control[1]), args.references)
    elif not args.report:
        for seed in args.seeds:  # --controls-first: every seed's references and control before any teacher
            seed_stage(out, seed, args.references, teacher=not args.controls_first)
        for seed in args.seeds:
            seed_stage(out, seed, args.references)
        if args.headline:
            for seed in args.seeds:
                headline_stage(out, seed, args.references)
    report(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
