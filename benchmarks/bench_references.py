"""How many reference models pay: each attack's AUC and TPR @ 1 % FPR at K = 1, 2, 4, 8 (issue #27).

    python benchmarks/bench_references.py --out DIR [--seeds 100 101 102] [--ks 1 2 4 8] [--targets teacher akd]
    python benchmarks/bench_references.py --out DIR --report

Per seed s (data draw s): reference models 0..max(K)-1 (``OUT/seed<s>/ref<k>``, the layout of
``bench_attacks.py``; trained here when missing), the cpu-small teacher, and AKD at the Table II
setting against that teacher (``bench_attacks.HEADLINE``). Each target is audited like the test block
of a run: all 200 training pairs of the draw as members, its 1,000 test pairs as non-members, with the
first K reference models, for every K: each attack's AUC with its logit-DeLong 95 % CI and TPR @ 1 % FPR
with its Clopper-Pearson CI, and ``leak``. The losses of every model are computed once and the
attacks re-run per K (no training per K). One JSON line per (seed, target, K) in OUT/references.jsonl;
``--report`` prints the table (mean over seeds; per seed with its CIs).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from akdray.attacks.references import load_target, serve_generator
from akdray.attacks.signals import model_losses
from akdray.attacks.suite import run_attacks
from akdray.audit import audit_data_config
from akdray.config import make_config
from akdray.data.splits import load_splits
from akdray.reference_recipe import reference_config
from akdray.run import run
from akdray.schema import ATTACKS

AKD = dict(distill_lambda=727.0, proxy_size=26, distill_epochs=60)  # bench_attacks.HEADLINE["akd"] (Table II pick)


def trained(path: Path, cfg) -> str:
    if not (path / "row.json").exists():
        t0 = time.perf_counter()
        row = run(cfg, path)
        print(f"[{time.strftime('%H:%M:%S')}] trained {path} ({row['status']}, {time.perf_counter() - t0:.0f} s)", flush=True)
    return str(path)


def losses_of(model_dir: str, data_cfg, splits) -> np.ndarray:
    G, _ = load_target(model_dir)
    serve = serve_generator(G, data_cfg, "cpu")
    return np.r_[model_losses(serve, splits.train.x, splits.train.y), model_losses(serve, splits.test.x, splits.test.y)]


def measure(out: Path, seed: int, ks: list[int], targets: list[str]) -> None:
    base = make_config("cpu-small", {"seed": seed, "device": "cpu"})
    refs = [trained(out / f"seed{seed}" / f"ref{k}", reference_config(base, k)) for k in range(max(ks))]
    teacher = trained(out / f"seed{seed}" / "teacher", base)
    models = {"teacher": teacher}
    if "akd" in targets:
        models["akd"] = trained(out / f"seed{seed}" / "akd", base.replace(method="akd", teacher_checkpoint=teacher, **AKD))
    data_cfg = audit_data_config(load_target(teacher)[1], None, None)
    splits = load_splits(data_cfg)
    n_in = len(splits.train)
    ref_losses = np.stack([losses_of(r, data_cfg, splits) for r in refs])
    for name in targets:
        target = losses_of(models[name], data_cfg, splits)
        for k in ks:
            row, _ = run_attacks(target[:n_in], target[n_in:], ref_losses[:k, :n_in], ref_losses[:k, n_in:], seed=seed)
            keep = {c: row[c] for c in row if c.startswith(tuple(f"{a}_" for a in ATTACKS)) or c.startswith("leak")}
            with open(out / "references.jsonl", "a") as fh:
                fh.write(json.dumps({"seed": seed, "target": name, "k": k, **keep}) + "\n")
            print(f"seed {seed} {name} K={k}: " + "; ".join(
                f"{a} {row[f'{a}_auc']:.3f}" for a in ATTACKS if row.get(f"{a}_auc") is not None)
                + f"; leak {row['leak']:.3f} ({row['leak_attack']})", flush=True)


def _cell(values: list[float | None]) -> str:
    v = np.array([x for x in values if x is not None], dtype=float)
    if not len(v):
        return "—"
    return f"{v.mean():.3f}" + (f" ± {v.std(ddof=1):.3f}" if len(v) > 1 else "")


def report(out: Path) -> None:
    rows = [json.loads(line) for line in (out / "references.jsonl").read_text().splitlines()]
    seeds = sorted({r["seed"] for r in rows})
    print(f"Mean ± std over seeds {seeds} (AUC; TPR @ 1 % FPR), 200 members vs 1,000 non-members per audit:\n")
    print("| target | K | " + " | ".join(f"{a} AUC | {a} TPR@1%" for a in ATTACKS) + " | leak |")
    print("|---|---|" + "---|---|" * len(ATTACKS) + "---|")
    for target in ("teacher", "akd"):
        for k in sorted({r["k"] for r in rows}):
            mine = [r for r in rows if r["target"] == target and r["k"] == k]
            if mine:
                print(f"| {target} | {k} | " + " | ".join(
                    f"{_cell([r.get(f'{a}_auc') for r in mine])} | {_cell([r.get(f'{a}_tpr_at_1pct_fpr') for r in mine])}"
                    for a in ATTACKS) + f" | {_cell([r['leak'] for r in mine])} |")
    print("\nPer seed, with 95 % CIs (AUC: logit-DeLong; TPR: Clopper-Pearson):\n")
    print("| seed | target | K | " + " | ".join(ATTACKS) + " |\n|---|---|---|" + "---|" * len(ATTACKS))
    for r in sorted(rows, key=lambda r: (r["target"], r["seed"], r["k"])):
        cells = ["—" if r.get(f"{a}_auc") is None else
                 f"{r[f'{a}_auc']:.3f} [{r[f'{a}_auc_lo']:.3f}, {r[f'{a}_auc_hi']:.3f}]; TPR {r[f'{a}_tpr_at_1pct_fpr']:.3f} "
                 f"[{r[f'{a}_tpr_at_1pct_fpr_lo']:.3f}, {r[f'{a}_tpr_at_1pct_fpr_hi']:.3f}]" for a in ATTACKS]
        print(f"| {r['seed']} | {r['target']} | {r['k']} | " + " | ".join(cells) + " |")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/bench_references")
    p.add_argument("--seeds", type=int, nargs="+", default=[100, 101, 102])
    p.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--targets", nargs="+", default=["teacher", "akd"], choices=["teacher", "akd"])
    p.add_argument("--report", action="store_true")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.report:
        for seed in args.seeds:
            measure(out, seed, sorted(args.ks), args.targets)
    report(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
