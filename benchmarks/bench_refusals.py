"""Bad inputs against `akdray run`, `akdray kid` and `sweeps/pareto.py`: exit code, first error line, seconds.

    python benchmarks/bench_refusals.py                    # this checkout
    python benchmarks/bench_refusals.py --repo OTHER_CHECKOUT --timeout 60   # e.g. an older commit

Each case runs as its own process with a wall-clock limit (a hang shows as ``timeout``). The table is
Markdown, for the closing note of the hardening issue. Nothing here is a test: tests/test_hardening.py
asserts the refusals; this script measures how each one looks and how long it takes.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from akdray.testing import png_header_only, write_aligned_folder

TINY = ("image_size=16 ngf=8 ndf=8 d_layers=2 n_train=16 proxy_pool_size=12 proxy_size=8 n_test=16 epochs=2 "
        "distill_epochs=2 batch_size=4 kid_subset_size=8 kid_subsets=10 kid_max_images=8").split()


def sets(*items: str) -> list[str]:
    return [x for item in items for x in ("--set", item)]


def cases(work: Path) -> list[tuple[str, list[str]]]:
    data = write_aligned_folder(work / "data", {"train": 16, "val": 12, "test": 16}, size=16)
    bombs = {}
    for name, (w, h) in {"81Mpx": (9_000, 9_000), "400Mpx": (20_000, 20_000)}.items():
        bombs[name] = write_aligned_folder(work / f"bomb{name}", {"train": 16, "val": 12, "test": 16}, size=16)
        png_header_only(bombs[name] / "train" / "000.png", w, h)
    (work / "file").write_text("x")
    (work / "pickle.pt").write_bytes(__import__("pickle").dumps({"config": {}, "generator": object}))
    sweep = work / "sweeps" / "bad"
    sweep.mkdir(parents=True)
    (sweep / "sweep.json").write_text(json.dumps({"name": "bad", "storage": str(work / "sweeps"), "gpu_count": 4}))
    kid_dirs = [str(write_aligned_folder(work / "kid", {"real": 3, "fake": 3}, size=16) / d) for d in ("real", "fake")]
    run = ["-m", "akdray.cli", "run", "--method", "teacher", *sets(*TINY)]
    out = lambda name: ["--out", str(work / "out" / name)]  # noqa: E731
    pareto = ["sweeps/pareto.py", "--smoke-test", "--storage", str(work / "sweeps"), "-q"]
    return [
        ("run: data_root without data_source (dry run)", [*run, *sets(f"data_root={data}"), "--dry-run"]),
        ("run: data_source=synthetic + data_root", [*run, *sets("data_source=synthetic", f"data_root={data}"), *out("a")]),
        ("run: --out /proc/x", [*run, "--out", "/proc/akdray-x"]),
        ("run: --out under a file", [*run, "--out", str(work / "file" / "run")]),
        ("run: seed=-1", [*run, *sets("seed=-1"), *out("b")]),
        ("run: data_seed=-2", [*run, *sets("data_seed=-2"), *out("c")]),
        ("run: device=cudaXYZ", [*run, *sets("device=cudaXYZ"), *out("d")]),
        ("run: device=cuda (no GPU)", [*run, *sets("device=cuda"), *out("e")]),
        ("run: teacher file is a pickle", ["-m", "akdray.cli", "run", "--method", "akd", *sets(*TINY),
                                           "--teacher", str(work / "pickle.pt"), *out("f")]),
        ("run: PNG claiming 9000x9000 (81 Mpx)", [*run, *sets(f"data_root={bombs['81Mpx']}", "data_source=aligned"), *out("g")]),
        ("run: PNG claiming 20000x20000 (400 Mpx)", [*run, *sets(f"data_root={bombs['400Mpx']}", "data_source=aligned"), *out("h")]),
        ("kid: --seed -1", ["-m", "akdray.cli", "kid", *kid_dirs, "--seed", "-1"]),
        ("kid: --device cudaXYZ", ["-m", "akdray.cli", "kid", *kid_dirs, "--device", "cudaXYZ"]),
        ("sweep: unknown key in sweep.json (--resume)", [*pareto, "--name", "bad", "--resume"]),
        ("sweep: --resume --dry-run of a missing sweep", [*pareto, "--name", "missing", "--resume", "--dry-run"]),
        ("sweep: --storage /proc/x", ["sweeps/pareto.py", "--smoke-test", "--storage", "/proc/akdray-x", "-q"]),
        ("sweep: --address 127.0.0.1:1", [*pareto, "--name", "addr", "--address", "127.0.0.1:1"]),
        ("sweep: --max-failures -5 (dry run)", [*pareto, "--name", "mf", "--max-failures", "-5", "--dry-run"]),
        ("sweep: --preset facades, no data (dry run)", ["sweeps/pareto.py", "--preset", "facades", "--dry-run",
                                                        "--storage", str(work / "sweeps")]),
    ]


def first_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower() or "Error" in ln]
    line = (errors or lines or [""])[-1 if not errors else 0]
    return (line[:110] + "…") if len(line) > 110 else line


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", default=str(Path(__file__).resolve().parents[1]), help="checkout to run the inputs against")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds before a case counts as a hang")
    args = ap.parse_args()
    print("| input | exit | first error line | seconds |\n|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PYTHONPATH": args.repo, "TQDM_DISABLE": "1", "AKDRAY_CACHE": str(Path(tmp) / "cache")}
        for name, argv in cases(Path(tmp)):
            t0 = time.perf_counter()
            try:
                proc = subprocess.run([sys.executable, *argv], cwd=args.repo, env=env, capture_output=True, text=True,
                                      timeout=args.timeout)
                code, text = str(proc.returncode), proc.stderr + proc.stdout
            except subprocess.TimeoutExpired:
                code, text = "timeout", f"no answer within {args.timeout:.0f} s"
            if code == "0":  # accepted: show what it resolved to (a dry run prints the config)
                picked = [ln.strip() for ln in proc.stdout.splitlines() if '"data_source"' in ln]
                line = "accepted" + (f": {picked[0]}" if picked else "")
            else:
                line = first_line(text)
            print(f"| {name} | {code} | {line.replace('|', '/')} | {time.perf_counter() - t0:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
