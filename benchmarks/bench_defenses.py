"""Teacher, AKD, DMP, DP-SGD at two sigma and Gauss at two sigma on one preset and seed.

Prints the Markdown table that docs/benchmarks.md shows (AUC / TPR@1%FPR / NKID / gap / epsilon / wall).
Usage: python benchmarks/bench_defenses.py --out runs/bench [--preset cpu-small] [--seed 0]
"""
from __future__ import annotations

import argparse
from pathlib import Path

from akdray.config import make_config
from akdray.run import run

ROWS = [
    ("teacher", {}),
    ("akd", {}),
    ("dmp", {}),
    ("dpsgd", {"dp_noise_multiplier": 0.5}),
    ("dpsgd", {"dp_noise_multiplier": 1.0}),
    ("gauss", {"gauss_sigma": 0.1}),
    ("gauss", {"gauss_sigma": 0.3}),
]


def fmt(value, digits=3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--preset", default="cpu-small")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out = Path(args.out)
    teacher_dir = out / "teacher"
    lines = ["| method | setting | AUCROC | TPR@1%FPR | proxy AUC | NKID | gap | ε | wall [s] |",
             "|---|---|---|---|---|---|---|---|---|"]
    for method, extra in ROWS:
        name = method + "".join(f"_{k}{v}" for k, v in extra.items())
        overrides = {"method": method, "seed": args.seed, **extra}
        if method != "teacher":
            overrides["teacher_checkpoint"] = str(teacher_dir)
        row = run(make_config(args.preset, overrides), out / name)
        setting = ", ".join(f"{k}={v}" for k, v in extra.items()) or "–"
        eps = row["dp_epsilon"]
        lines.append(f"| {method} | {setting} | {fmt(row['loss_auc'])} | {fmt(row['loss_tpr_at_1pct_fpr'], 2)} | "
                     f"{fmt(row['proxy_mia_auc'])} | {fmt(row['nkid'])} | {fmt(row['gen_gap'])} | "
                     f"{'–' if eps is None else f'{eps:.1f}'} | {row['wall_s']:.0f} |")
        print(lines[-1], flush=True)
    print("\n".join(lines))
    (out / "table.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
