"""Post-hoc protection of an *official-format* pix2pix model at the ``cpu-small`` size, end to end.

1. writes the synthetic facades as official aligned A|B PNG folders (train 200 / val 400 / test 100,
   32x32, A = label map, B = photo);
2. trains a teacher on them with ``akdray run --method teacher --set data_source=aligned ...``;
3. exports it with ``akdray export --format pix2pix`` (what a user of the official code has);
4. runs ``akdray protect`` on that ``latest_net_G.pth`` with ``val/`` as proxy (100 inputs drawn)
   and the folder as ``--audit-data``, and prints the before/after table.

Usage: python benchmarks/bench_protect.py --out runs/bench_protect [--smoke-test]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

from akdray.cli import main as akdray
from akdray.data.synthetic import synthetic_facades

SPLITS = {"train": 200, "val": 400, "test": 100}
SMOKE = ["--set=epochs=1", "--set=distill_epochs=1", "--set=kid_subsets=5"]


def write_aligned(root: Path, size: int, splits: dict[str, int], seed: int = 1234) -> Path:
    """Synthetic facades as A|B PNGs, the way the official ``datasets/combine_A_and_B.py`` lays them out."""
    role = {"train": "train", "val": "proxy", "test": "test"}
    for split, n in splits.items():
        x, y, _ = synthetic_facades(n, size, seed, role[split])
        (root / split).mkdir(parents=True)
        for i in range(n):
            pair = np.concatenate([x[i].permute(1, 2, 0).numpy(), y[i].permute(1, 2, 0).numpy()], axis=1)
            Image.fromarray(pair).save(root / split / f"{i:04d}.png")
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="folder for data/, teacher/, official/, protected/ (reused if there)")
    ap.add_argument("--smoke-test", action="store_true", help="1 epoch each, tiny KID: checks the pipeline only")
    ap.add_argument("--references", type=int, default=2, help="reference models for lira and rmia (0: loss only)")
    args = ap.parse_args()
    out = Path(args.out)
    extra = SMOKE if args.smoke_test else []
    data = out / "data"  # kept, so a rerun reuses the data, the teacher and the export
    if not data.is_dir():
        write_aligned(data, 32, SPLITS)
    t0 = time.perf_counter()
    if not (out / "teacher" / "row.json").is_file():
        assert akdray(["run", "--method", "teacher", "--set=data_source=aligned", f"--set=data_root={data}",
                       *extra, "--out", str(out / "teacher")]) == 0
    teacher_s = time.perf_counter() - t0
    if not (out / "official").is_dir():
        assert akdray(["export", str(out / "teacher"), "--format", "pix2pix", "--out", str(out / "official")]) == 0
    t0 = time.perf_counter()
    assert akdray(["protect", "--teacher", str(out / "official" / "latest_net_G.pth"), "--proxy", str(data / "val"),
                   "--audit-data", str(data), "--references", str(args.references), "--set=proxy_size=100", *extra,
                   "--out", str(out / "protected")]) == 0
    protect_s = time.perf_counter() - t0
    row = json.loads((out / "teacher" / "row.json").read_text())
    result = json.loads((out / "protected" / "protect.json").read_text())
    audit = result["audit"]
    print(f"\nteacher run (akdray format): loss AUC {row['loss_auc']:.3f}, NKID {row['nkid']:.3f}, {teacher_s:.0f} s")
    print(f"protect (official teacher file, {result['proxy']['n_images']} proxy inputs): {protect_s:.0f} s "
          f"(student training {result['train_s']:.0f} s)")
    print(f"leak (max over {', '.join(audit['attacks'])} of max(AUC, 1-AUC)): teacher {audit['teacher']['leak']:.3f} -> "
          f"student {audit['student']['leak']:.3f} (reduction {audit['leak_reduction']:.3f}); "
          f"NKID change {audit['nkid_change']:+.3f}")
    print((out / "protected" / "report.md").read_text())


if __name__ == "__main__":
    main()
