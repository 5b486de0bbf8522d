"""The calibrated attacks' control on a finished sweep's confirmation draws: no training at all.

    python benchmarks/bench_controls.py SWEEP_DIR [--stage confirm-reference] [--out DIR]

For every data draw d of the stage's reference models (K >= 2 per draw, from ``--confirm``), the
target is reference model 0 of the *next* draw (cyclically): trained on another draw's reference
pool, it never saw any image of draw d. It is audited like a deployed model (``akdray audit``:
draw d's 200 training pairs as members, its 1,000 test pairs as non-members, draw d's own K
reference models for cal and lira). A calibrated attack that works should give it an AUC whose
95 % CI contains 0.5; the plain loss attack is printed beside it (it need not: the draw alone
moves it). Prints one markdown row per draw; ``--out`` keeps each audit's files.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from akdray.audit import audit_checkpoint
from akdray.results import RESULTS, read_dataset
from akdray.schema import ATTACKS


def cell(record: dict, attack: str) -> str:
    lo, hi = record[f"{attack}_auc_lo"], record[f"{attack}_auc_hi"]
    return f"{record[f'{attack}_auc']:.3f} [{lo:.3f}, {hi:.3f}]{'' if lo <= 0.5 <= hi else ' *'}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep_dir")
    ap.add_argument("--stage", default="confirm-reference", help="reference stage whose draws to use")
    ap.add_argument("--out", default=None, help="keep the audits here (default: a temporary folder)")
    args = ap.parse_args()
    rows = read_dataset(args.sweep_dir, RESULTS)
    ok = rows[(rows["stage"] == args.stage) & (rows["status"] == "ok")].sort_values("seed") if len(rows) else rows
    by_draw: dict[int, list[str]] = {}
    for r in ok.itertuples():
        by_draw.setdefault(int(r.data_seed), []).append(str(r.checkpoint))
    draws = sorted(d for d, uris in by_draw.items() if len(uris) >= 2)
    if len(draws) < 2:
        print(f"bench_controls: {args.sweep_dir} has {len(draws)} draw(s) with >= 2 reference models in stage "
              f"{args.stage!r}; need 2 (run the confirmation stage first)", file=sys.stderr)
        return 2
    print("| draw | target (never saw the draw) | " + " | ".join(f"{a} AUC [95 % CI]" for a in ATTACKS)
          + " | members / non-members |\n|---|---|" + "---|" * (len(ATTACKS) + 1))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        for i, draw in enumerate(draws):
            other = draws[(i + 1) % len(draws)]
            rec = audit_checkpoint(by_draw[other][0], out / f"draw{draw}", reference_runs=by_draw[draw], data_seed=draw)
            print(f"| {draw} | reference 0 of draw {other} | " + " | ".join(cell(rec, a) for a in ATTACKS)
                  + f" | {int(rec['attack_n_members'])} / {int(rec['attack_n_nonmembers'])} |", flush=True)
    print("\n* = the 95 % CI excludes 0.5")
    return 0


if __name__ == "__main__":
    sys.exit(main())
