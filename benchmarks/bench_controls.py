"""The attacks' control on never-saw draws: no training, the unbiased ``leak`` beside the old one.

    python benchmarks/bench_controls.py SWEEP_DIR [--stage confirm-reference] [--out DIR]
    python benchmarks/bench_controls.py --runs RUNS_DIR [--out DIR]

For every data draw d with K >= 2 reference models (a sweep's ``--confirm`` stage, or a folder
``RUNS_DIR/seed<d>/ref<k>`` of reference runs as ``bench_attacks.py`` lays them out), the target is
reference model 0 of the *next* draw (cyclically): trained on another draw's reference pool, it
never saw any image of draw d. It is audited like a deployed model (``akdray audit``: draw d's
training pairs as members, its test pairs as non-members, draw d's own K reference models for
lira and rmia). Per draw: the new ``leak`` (:mod:`akdray.attacks.leak`) with its CI and the
attacks it chose, ``leak_max`` with its permutation p-value and null mean, and the old ``leak``
(before issue #27: the largest max(AUC, 1 - AUC) over loss, cal and lira; cal = mean reference
loss - target loss, recomputed here from the same losses). Then the means over draws.
"""
from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from akdray.attacks.metrics import auc
from akdray.attacks.references import load_references, load_target, serve_generator
from akdray.attacks.signals import model_losses, reference_losses
from akdray.audit import audit_checkpoint, audit_data_config
from akdray.data.splits import load_splits
from akdray.results import RESULTS, read_dataset
from akdray.schema import ATTACKS


def draws_of_sweep(sweep_dir: str, stage: str) -> dict[int, list[str]]:
    rows = read_dataset(sweep_dir, RESULTS)
    ok = rows[(rows["stage"] == stage) & (rows["status"] == "ok")].sort_values("seed") if len(rows) else rows
    by_draw: dict[int, list[str]] = {}
    for r in ok.itertuples():
        by_draw.setdefault(int(r.data_seed), []).append(str(r.checkpoint))
    return by_draw


def draws_of_runs(root: str) -> dict[int, list[str]]:
    by_draw: dict[int, list[str]] = {}
    for path in sorted(Path(root).glob("seed*/ref*"), key=lambda p: (p.parent.name, int(p.name[3:]))):
        if (path / "row.json").exists():
            by_draw.setdefault(int(re.sub(r"\D", "", path.parent.name)), []).append(str(path))
    return by_draw


def old_leak(target: str, refs: list[str], draw: int, record: dict) -> float:
    """max over loss, cal, lira of max(AUC, 1 - AUC): the ``leak`` of akdray before issue #27."""
    G, target_cfg = load_target(target)
    cfg = audit_data_config(target_cfg, None, draw)
    splits = load_splits(cfg)
    serve = serve_generator(G, cfg, "cpu")
    x = torch.cat([splits.train.x, splits.test.x])
    y = torch.cat([splits.train.y, splits.test.y])
    losses = model_losses(serve, x, y)
    ref_losses = reference_losses([serve_generator(R, cfg, "cpu") for R, _ in load_references(cfg, refs)], x, y)
    labels = np.r_[np.ones(len(splits.train), bool), np.zeros(len(splits.test), bool)]
    cal = auc(labels, ref_losses.mean(axis=0) - losses)
    return max(max(a, 1 - a) for a in (record["loss_auc"], cal, record["lira_auc"]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep_dir", nargs="?")
    ap.add_argument("--runs", help="a folder of reference runs seed<d>/ref<k> instead of a sweep")
    ap.add_argument("--stage", default="confirm-reference", help="reference stage whose draws to use")
    ap.add_argument("--out", default=None, help="keep the audits here (default: a temporary folder)")
    args = ap.parse_args()
    by_draw = draws_of_runs(args.runs) if args.runs else draws_of_sweep(args.sweep_dir, args.stage)
    draws = sorted(d for d, uris in by_draw.items() if len(uris) >= 2)
    if len(draws) < 2:
        print(f"bench_controls: {len(draws)} draw(s) with >= 2 reference models; need 2", file=sys.stderr)
        return 2
    print("| draw | target | leak [95 % CI] (chosen) | leak_max | leak_p | null mean | old leak | "
          + " | ".join(f"{a} AUC [95 % CI]" for a in ATTACKS) + " | members / non-members |")
    print("|---|---|---|---|---|---|---|" + "---|" * (len(ATTACKS) + 1))
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        for i, draw in enumerate(draws):
            other = draws[(i + 1) % len(draws)]
            target = by_draw[other][0]
            rec = audit_checkpoint(target, out / f"draw{draw}", reference_runs=by_draw[draw], data_seed=draw)
            rec["old_leak"] = old_leak(target, by_draw[draw], draw, rec)
            records.append(rec)
            cells = [f"{rec[f'{a}_auc']:.3f} [{rec[f'{a}_auc_lo']:.3f}, {rec[f'{a}_auc_hi']:.3f}]"
                     if rec.get(f"{a}_auc") is not None else "—" for a in ATTACKS]
            print(f"| {draw} | reference 0 of draw {other} | {rec['leak']:.3f} [{rec['leak_lo']:.3f}, "
                  f"{rec['leak_hi']:.3f}] ({rec['leak_attack']}) | {rec['leak_max']:.3f} | {rec['leak_p']:.3f} | "
                  f"{rec['leak_null_mean']:.3f} | {rec['old_leak']:.3f} | " + " | ".join(cells)
                  + f" | {int(rec['attack_n_members'])} / {int(rec['attack_n_nonmembers'])} |", flush=True)
    mean = lambda key: float(np.mean([r[key] for r in records]))  # noqa: E731
    print(f"\nmean over {len(records)} draws: leak {mean('leak'):.4f}, leak_max {mean('leak_max'):.4f} "
          f"(null mean {mean('leak_null_mean'):.4f}), old leak {mean('old_leak'):.4f}; leak_p > 0.05 on "
          f"{sum(r['leak_p'] > 0.05 for r in records)} of {len(records)}; K = "
          f"{sorted({int(r['n_references']) for r in records})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
