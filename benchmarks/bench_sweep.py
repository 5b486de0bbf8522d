"""A sweep as a user runs it, measured: wall time, memory, eval share, Ray's cost per trial, slot use.

    python benchmarks/bench_sweep.py --smoke [--tree before=/path/to/old/checkout] [--repeats 2]
    python benchmarks/bench_sweep.py            # the default sweep (`python sweeps/pareto.py`)
    python benchmarks/bench_sweep.py --cold-cache   # as a new user's first sweep

``--cold-cache`` gives every sweep an empty ``AKDRAY_CACHE``, so it generates its data sets and
computes the real images' Inception features and KID_max itself, as the first sweep on a machine
does; without it the sweeps use the machine's cache, as every later sweep does.

``--smoke`` runs ``sweeps/pareto.py --smoke-test --num-samples 2`` (the ``tiny`` preset, so a run
itself takes seconds and Ray's share shows; 8 search trials on 2 slots); without it the default
sweep. Once per source tree and repeat, alternating trees so both see the same machine, each in a
fresh local Ray cluster started by the sweep itself. From the sweep's own
Parquet rows: the search stage's slot utilisation (sum of trial times / (stage span x 2 slots)) and
Ray overhead per trial = ``trial_time_s - wall_s`` (with a Train worker group: the Train controller,
its helper actors, the worker process and its imports, checkpoint upload and result plumbing; in
Ray Train's local mode: the imports of a new trial process, storing the run, result plumbing).
The rows' ``ray_start_s``, ``worker_setup_s`` and ``ray_end_s`` say where that overhead went (medians printed).
Also from the rows: the evaluation share of run time (``eval_s / wall_s`` summed). While it runs,
every ``ray::<kind>`` process is sampled (``ps``, 0.5 s) for its resident memory, and the machine's
used memory (``free``) against its value before the sweep: the tables show the peak RSS per process
kind, the peak summed RSS of all Ray processes, the peak used memory above idle, and where that
peak went: each process's proportional anonymous and shared memory (``Pss_Anon + Pss_Shmem``, which
``free`` counts as used; library pages, in RSS, it does not), summed by kind, at the moment used
memory peaked.
The current checkout is always measured as ``after``. Wall times are of this machine, with whatever
else runs on it; compare trees only within one invocation.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def ray_processes() -> dict[str, list[int]]:
    """RSS in KiB of every live ``ray::<kind>`` process, by kind (IDLE workers included)."""
    out = subprocess.run(["ps", "-eo", "rss=,args="], capture_output=True, text=True).stdout
    kinds: dict[str, list[int]] = defaultdict(list)
    for line in out.splitlines():
        rss, _, args = line.strip().partition(" ")
        if args.startswith("ray::"):
            kinds[_kind(args)].append(int(rss))
    return kinds


def anonymous_memory() -> dict[str, int]:
    """Proportional anonymous + shared memory in KiB (``Pss_Anon + Pss_Shmem`` of ``smaps_rollup``: what
    ``free`` counts as used, each shared page split between the processes mapping it; library pages are
    not counted) of every process of the sweep, summed by kind: ``ray::<kind>`` workers, Ray's daemons,
    the driver."""
    kinds: dict[str, int] = defaultdict(int)
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            kind = _kind(args)
            if kind is None:
                continue
            rollup = dict(line.split(":", 1) for line in (proc / "smaps_rollup").read_text().splitlines()[1:])
        except OSError:  # the process ended while being read
            continue
        kinds[kind] += sum(int(rollup[k].split()[0]) for k in ("Pss_Anon", "Pss_Shmem") if k in rollup)
    return kinds


def _kind(args: str) -> str | None:
    """The process kind of a command line: a Ray worker's ``ray::<kind>``, a Ray daemon, the sweep's driver."""
    if args.startswith("ray::"):
        return args.split()[0][5:].split(".")[0]
    if "sweeps/pareto.py" in args:
        return "driver (sweeps/pareto.py)"
    for daemon in ("gcs_server", "raylet", "dashboard_agent", "runtime_env", "log_monitor", "monitor.py", "dashboard.py",
                   "default_worker.py"):
        if daemon in args:
            return daemon
    return None


def _median(values) -> float:
    values = list(values)
    return statistics.median(values) if values else float("nan")


def used_memory_mib() -> float:
    """The machine's used memory (``free``'s "used": total - available) in MiB."""
    fields = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    kib = lambda key: int(fields[key].split()[0])  # noqa: E731
    return (kib("MemTotal") - kib("MemAvailable")) / 1024


class Sampler(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        self.stop, self.peak_kind, self.peak_total = threading.Event(), defaultdict(int), 0
        self.idle_used, self.peak_used = used_memory_mib(), 0.0
        self.anon_at_peak: dict[str, int] = {}  # anonymous memory by process kind when used memory peaked

    def run(self) -> None:
        while not self.stop.is_set():
            used = used_memory_mib()
            if used > self.peak_used:
                self.peak_used, self.anon_at_peak = used, anonymous_memory()
            kinds = ray_processes()
            for kind, values in kinds.items():
                self.peak_kind[kind] = max(self.peak_kind[kind], max(values))
            self.peak_total = max(self.peak_total, sum(sum(v) for v in kinds.values()))
            time.sleep(0.5)


def utilisation(rows: pd.DataFrame, stage: str, slots: int = 2) -> tuple[float, float]:
    """(busy share by Tune trial time, by run time) of ``slots`` over the stage's span, from the rows:
    a trial ends at ``recorded_at`` and started ``trial_time_s`` before."""
    part = rows[rows["stage"] == stage]
    end = pd.to_datetime(part["recorded_at"])
    start = end - pd.to_timedelta(part["trial_time_s"], unit="s")
    span = (end.max() - start.min()).total_seconds()
    return part["trial_time_s"].sum() / (span * slots), part["wall_s"].sum() / (span * slots)


def accepts(tree: Path, env: dict, flag: str) -> bool:
    """Whether the tree's ``sweeps/pareto.py`` has the command-line flag ``flag``."""
    out = subprocess.run([sys.executable, str(tree / "sweeps" / "pareto.py"), "--help"], env=env, cwd=tree,
                         capture_output=True, text=True).stdout
    return flag in out


def one_sweep(tree: Path, storage: Path, references: int, smoke: bool, cache: Path | None = None) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    if cache is not None:  # a new user's first sweep: no data set, Inception feature or KID_max cached yet
        env["AKDRAY_CACHE"] = str(cache)
    extra = ["--smoke-test", "--num-samples", "2"] if smoke else []
    if accepts(tree, env, "--references"):  # trees from before the calibrated attacks have no reference models
        extra += ["--references", str(references)]
    sampler = Sampler()  # started after the probe above, which is not part of the sweep
    sampler.start()
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(tree / "sweeps" / "pareto.py"), *extra,
                           "--storage", str(storage), "--name", "bench", "-q"],
                          env=env, cwd=tree, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    sampler.stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"sweep in {tree} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    rows = pd.read_parquet(storage / "bench" / "results")
    rows = rows[~rows["trial_id"].astype(str).str.contains("-pack")]  # a packed run shares its trial's time
    if "trial_time_s" not in rows:  # a tree from before the rows recorded Tune's trial time: no overhead, no slot use
        rows = rows.assign(trial_time_s=float("nan"), recorded_at=pd.NaT)
    overhead = (rows["trial_time_s"] - rows["wall_s"]).dropna()
    parts = {c: rows[c].dropna().median() if c in rows else float("nan") for c in ("ray_start_s", "worker_setup_s", "ray_end_s")}
    return {"sweep_s": wall, "trials": len(rows), "overhead_s": list(overhead), "parts": parts, "search": utilisation(rows, "search"),
            "eval_share": rows["eval_s"].sum() / rows["wall_s"].sum(),
            "busy": rows["trial_time_s"].sum() / (wall * 2), "used_above_idle_mib": sampler.peak_used - sampler.idle_used,
            "peak_kind_mib": {k: v / 1024 for k, v in sampler.peak_kind.items()},
            "peak_total_mib": sampler.peak_total / 1024,
            "anon_at_peak_mib": {k: v / 1024 for k, v in sampler.anon_at_peak.items()}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", action="append", default=[], metavar="LABEL=PATH", help="another checkout to measure")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--smoke", action="store_true", help="the smoke sweep (tiny preset) instead of the default sweep")
    ap.add_argument("--references", type=int, default=2)
    ap.add_argument("--keep", default=None, metavar="DIR", help="keep each sweep as DIR/<tree>-<repeat>/bench")
    ap.add_argument("--cold-cache", action="store_true",
                    help="each sweep with an empty AKDRAY_CACHE (a new user's first sweep); default: the machine's cache")
    args = ap.parse_args()
    trees = dict(item.split("=", 1) for item in args.tree)
    trees["after"] = str(ROOT)
    results: dict[str, list[dict]] = defaultdict(list)
    for repeat in range(args.repeats):
        for label, tree in trees.items():
            with tempfile.TemporaryDirectory(prefix="akdray-bench-sweep-") as tmp:
                storage = Path(args.keep) / f"{label}-{repeat}" if args.keep else Path(tmp)
                cache = Path(tmp) / "cache" if args.cold_cache else None
                r = one_sweep(Path(tree), storage, args.references, args.smoke, cache)
            results[label].append(r)
            print(f"[{time.strftime('%H:%M:%S')}] {label} repeat {repeat} ({'cold' if args.cold_cache else 'warm'} cache): sweep {r['sweep_s']:.1f} s, "
                  f"{r['trials']} trials, overhead median {_median(r['overhead_s']):.1f} s "
                  f"(of which, medians: {', '.join(f'{k} {v:.1f}' for k, v in r['parts'].items())}), "
                  f"search-stage slots busy {r['search'][0]:.0%} (trial time) / {r['search'][1]:.0%} (run time), "
                  f"eval {r['eval_share']:.0%} of run time, whole sweep slots busy {r['busy']:.0%}, "
                  f"peak Ray RSS {r['peak_total_mib']:.0f} MiB, used memory +{r['used_above_idle_mib']:.0f} MiB", flush=True)
    print("\n| tree | sweep [s] | Ray overhead per trial [s], median (min-max) | search stage: slots busy, "
          "by trial time / by run time | eval share of run time | peak RSS of all Ray processes [MiB] | "
          "used memory above idle [MiB] |")
    print("|---|---|---|---|---|---|---|")
    for label, runs in results.items():
        over = [x for r in runs for x in r["overhead_s"]]
        busy = (statistics.median(r["search"][0] for r in runs), statistics.median(r["search"][1] for r in runs))
        print(f"| {label} | {statistics.median(r['sweep_s'] for r in runs):.0f} | {_median(over):.1f} "
              f"({min(over, default=float('nan')):.1f}-{max(over, default=float('nan')):.1f}) | {busy[0]:.0%} / {busy[1]:.0%} | "
              f"{statistics.median(r['eval_share'] for r in runs):.0%} | "
              f"{statistics.median(r['peak_total_mib'] for r in runs):.0f} | "
              f"{statistics.median(r['used_above_idle_mib'] for r in runs):.0f} |")
    kinds = sorted({k for runs in results.values() for r in runs for k in r["peak_kind_mib"]})
    print("\npeak RSS per Ray process kind [MiB] (median over repeats; '-' = no such process)\n")
    print("| process | " + " | ".join(results) + " |\n|---|" + "---|" * len(results))
    for kind in kinds:
        cells = []
        for runs in results.values():
            values = [r["peak_kind_mib"][kind] for r in runs if kind in r["peak_kind_mib"]]
            cells.append(f"{statistics.median(values):.0f}" if values else "-")
        print(f"| {kind} | " + " | ".join(cells) + " |")
    print("\nat the used-memory peak: anonymous + shared memory (Pss_Anon + Pss_Shmem) by process kind [MiB], "
          "the first repeat\n")
    kinds = sorted({k for runs in results.values() for k in runs[0]["anon_at_peak_mib"]})
    print("| process | " + " | ".join(results) + " |\n|---|" + "---|" * len(results))
    for kind in kinds + ["sum"]:
        cells = [f"{sum(runs[0]['anon_at_peak_mib'].values()) if kind == 'sum' else runs[0]['anon_at_peak_mib'].get(kind, 0):.0f}"
                 for runs in results.values()]
        print(f"| {kind} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
