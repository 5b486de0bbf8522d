"""Issue #24, stage 2: AKD vs DMP with a trained teacher served as official pix2pix serves it.

    python benchmarks/bench_quality_served.py --out DIR [--seeds 0 1 2] [--size 64] [--lambdas 10 30 100]
        [--preset cpu-small] [--set FIELD=VALUE ...] [--smoke]

Per seed (its own ``sharp`` data draw): a pix2pix teacher (``akdray.run``, method ``teacher``) whose
generator keeps its dropout; its noise, as the per-pixel SD of 8 train-mode queries of the proxy
inputs relative to their mean |T − y|; then DMP (λ 100) and AKD at each ``--lambdas``, all on the
same proxy set and epochs, the teacher labelling in train mode (dropout and batch statistics, every
query resampled: ``teacher_inference_mode=train``). Each deployed model is audited as it is served
(``inference_mode=train``, the run's own row) and again in eval mode (the same checkpoint). The loss
attack only (no reference models). Printed: per student and mode, leak / NKID / SWD / HFER over
seeds; AKD − DMP paired by seed with 95 % t-intervals, and whether the leakage is matched
(Δleak interval within ±0.03). Run it only where the gate (``bench_quality_gate.py``) passed.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from akdray.attacks.references import serve_generator
from akdray.checkpoint import load_generator
from akdray.config import make_config
from akdray.data.splits import load_splits
from akdray.defenses.distill import teacher_query
from akdray.evaluate import evaluate
from akdray.run import run
from akdray.train import resolve_device, to_float
from bench_quality_gate import interval

MEASURES = ("leak", "nkid", "swd", "hfer")


def teacher_noise(run_dir: Path, cfg, queries: int = 8) -> float:
    """Mean per-pixel SD over ``queries`` train-mode labels of the proxy inputs ÷ their mean |T − y|."""
    G = load_generator(run_dir).generator
    proxy = load_splits(cfg).proxy
    query = teacher_query(G, "train", dropout=False)
    labels = torch.stack([query(to_float(proxy.x)) for _ in range(queries)])
    return float(labels.std(0).mean() / (labels - to_float(proxy.y)).abs().mean())


def eval_mode_row(run_dir: Path, cfg) -> dict:
    """The same deployed checkpoint audited in eval mode (running statistics, dropout off)."""
    cfg = cfg.replace(inference_mode="eval")
    G = load_generator(run_dir).generator
    device = resolve_device(cfg)
    row, _ = evaluate(serve_generator(G, cfg, device), load_splits(cfg), cfg, proxy_leakage=True, device=device)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--lambdas", type=float, nargs="+", default=[10.0, 30.0, 100.0])
    ap.add_argument("--preset", default="cpu-small")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE")
    ap.add_argument("--smoke", action="store_true", help="the tiny preset, 1 seed, λ 100 (checks the script only)")
    args = ap.parse_args()
    if args.smoke:
        args.preset, args.seeds, args.size, args.lambdas = "tiny", args.seeds[:1], 16, [100.0]
    extra = dict(item.split("=", 1) for item in args.overrides)
    served = {"synthetic_style": "sharp", "image_size": str(args.size), "use_dropout": "true",
              "teacher_inference_mode": "train", "inference_mode": "train", **extra}
    rows = []
    t0 = time.perf_counter()
    for seed in args.seeds:
        base = {**served, "seed": str(seed), "data_seed": str(seed)}
        teacher_dir = args.out / f"seed{seed}" / "teacher"
        tcfg = make_config(args.preset, {**base, "method": "teacher"})
        trow = json.loads((teacher_dir / "row.json").read_text()) if (teacher_dir / "row.json").exists() \
            else run(tcfg, teacher_dir)
        noise = teacher_noise(teacher_dir, tcfg)
        print(json.dumps({"seed": seed, "teacher_nkid": trow["nkid"], "teacher_leak": trow["leak"],
                          "teacher_sd_over_mae": noise}), flush=True)
        for method, lam in [("dmp", 100.0), *(("akd", lam) for lam in args.lambdas)]:
            cfg = make_config(args.preset, {**base, "method": method, "distill_lambda": str(lam),
                                            "teacher_checkpoint": str(teacher_dir)})
            run_dir = args.out / f"seed{seed}" / f"{method}-{lam:g}"
            row = json.loads((run_dir / "row.json").read_text()) if (run_dir / "row.json").exists() else run(cfg, run_dir)
            ev = eval_mode_row(run_dir, cfg)
            for mode, r in (("train", row), ("eval", ev)):
                rows.append({"seed": seed, "student": method, "lambda": lam, "mode": mode,
                             **{m: r[m] for m in MEASURES}, "teacher_sd_over_mae": noise})
                print(json.dumps(rows[-1]), flush=True)
    for mode in ("train", "eval"):
        print(f"\n## audited in {mode} mode, seeds {args.seeds}, {args.size} px, preset {args.preset}\n")
        print("| student | " + " | ".join(MEASURES) + " |\n|---|" + "---|" * len(MEASURES))
        keyed = {(r["student"], r["lambda"], r["seed"]): r for r in rows if r["mode"] == mode}
        for st, lam in [("dmp", 100.0), *(("akd", lam) for lam in args.lambdas)]:
            vals = {m: [keyed[(st, lam, s)][m] for s in args.seeds] for m in MEASURES}
            print(f"| {'DMP' if st == 'dmp' else f'AKD λ={lam:g}'} | " +
                  " | ".join(f"{np.mean(v):.3f} ± {np.std(v, ddof=1) if len(v) > 1 else 0:.3f}" for v in vals.values()) + " |")
        print("\n| AKD − DMP | " + " | ".join(f"Δ {m}" for m in MEASURES) + " | leak matched (±0.03) |\n|---|" +
              "---|" * (len(MEASURES) + 1))
        for lam in args.lambdas:
            d = {m: interval([keyed[("akd", lam, s)][m] - keyed[("dmp", 100.0, s)][m] for s in args.seeds])
                 for m in MEASURES}
            matched = -0.03 <= d["leak"][1] and d["leak"][2] <= 0.03
            print(f"| λ={lam:g} | " + " | ".join(f"{v[0]:+.3f} [{v[1]:+.3f}, {v[2]:+.3f}]" for v in d.values()) +
                  f" | {matched} |")
    print(f"\nwall time: {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
