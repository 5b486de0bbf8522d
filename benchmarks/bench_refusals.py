"""Bad inputs against the akdray commands and `sweeps/pareto.py`: exit code, first line, seconds, side by side.

    python benchmarks/bench_refusals.py                                   # this checkout, every case
    python benchmarks/bench_refusals.py --tree before=/tmp/base --tree after=. --cases issue
    python benchmarks/bench_refusals.py --cases wide --timeout 60         # the wider probe, with counts

Groups: ``hardening`` (the refusals of the hardening issue), ``issue`` (issue #25's list, by kind) and
``wide`` (100+ further bad inputs). Each case runs as its own process (its own session, killed with
its children at ``--timeout``, address space capped at 12 GiB so a runaway allocation fails instead of
starving the machine) in the tree's checkout, with fixtures that tree builds itself
(refusal_fixtures.py: tiny untrained checkpoints and folders; nothing is trained). Every outcome is
classified: ``refused`` (exit 2, no traceback), ``ok`` (a good input that succeeded), ``WRONG`` (exit
0 on a bad input, or a false result), ``late`` (any other exit code or a timeout), ``traceback``.
Nothing here is a test: tests/test_refusals_*.py assert the refusals.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from refusal_cases import AK, PARETO, Case, issue_cases, sets  # noqa: E402
from refusal_cases_wide import wide_cases  # noqa: E402

HERE = Path(__file__).resolve().parent
TINY = ("image_size=16 ngf=8 ndf=8 d_layers=2 n_train=16 proxy_pool_size=12 proxy_size=8 n_test=16 epochs=2 "
        "distill_epochs=2 batch_size=4 kid_subset_size=8 kid_subsets=10 kid_max_images=8").split()
MEMORY_CAP = 12 * 2**30
# S3 calls go to a closed local port: a missing bucket is answered at once, never from the internet.
S3_ENV = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x",
          "AWS_EC2_METADATA_DISABLED": "true", "AWS_REGION": "us-east-1"}


def hardening_cases(work: Path) -> list[Case]:
    data, bomb, out = work / "d16", work / "bomb", lambda n: ["--out", str(work / "out" / f"h{n}")]  # noqa: E731
    run = [*AK, "run", "--method", "teacher", *sets(*TINY)]
    pareto = [*PARETO, "--smoke-test", "--storage", str(work / "sweeps")]
    return [Case("hardening", "run: data_root without data_source (dry run; means aligned)",
                 [*run, *sets(f"data_root={data}"), "--dry-run"], expect="ok", need='"data_source": "aligned"')] + [
        Case("hardening", n, a) for n, a in [
        ("run: data_source=synthetic + data_root", [*run, *sets("data_source=synthetic", f"data_root={data}"), *out(1)]),
        ("run: --out /proc/x", [*run, "--out", "/proc/akdray-x"]),
        ("run: --out under a file", [*run, "--out", str(work / "file" / "run")]),
        ("run: seed=-1", [*run, *sets("seed=-1"), *out(2)]),
        ("run: data_seed=-2", [*run, *sets("data_seed=-2"), *out(3)]),
        ("run: device=cudaXYZ", [*run, *sets("device=cudaXYZ"), *out(4)]),
        ("run: device=cuda (no GPU)", [*run, *sets("device=cuda"), *out(5)]),
        ("run: PNG claiming 9000x9000 (81 Mpx)", [*run, *sets(f"data_root={bomb}", "data_source=aligned"), *out(6)]),
        ("kid: --seed -1", [*AK, "kid", str(data / "train"), str(data / "test"), "--seed", "-1"]),
        ("kid: --device cudaXYZ", [*AK, "kid", str(data / "train"), str(data / "test"), "--device", "cudaXYZ"]),
        ("sweep: --resume --dry-run of a missing sweep", [*pareto, "--name", "missing", "--resume", "--dry-run"]),
        ("sweep: --storage /proc/x", [*PARETO, "--smoke-test", "--storage", "/proc/akdray-x"]),
        ("sweep: --address 127.0.0.1:1", [*pareto, "--name", "addr", "--address", "127.0.0.1:1"]),
        ("sweep: --max-failures -5 (dry run)", [*pareto, "--name", "mf", "--max-failures", "-5", "--dry-run"]),
        ("sweep: --preset facades, no data (dry run)", [*PARETO, "--preset", "facades", "--dry-run",
                                                        "--storage", str(work / "sweeps")]),
    ]]


def first_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower()] or [ln for ln in lines if ln.startswith("leak ")]
    line = errors[0] if errors else (lines[0] if lines else "")
    return (line[:120] + "…") if len(line) > 120 else line


def classify(case: Case, code: str, text: str, seconds: float) -> str:
    if "Traceback (most recent call last)" in text:
        return "traceback"
    if code == "0":
        bad = case.expect == "refuse" or (case.wrong and case.wrong in text) or (case.need and case.need not in text)
        return "WRONG" if bad else "ok"
    if code == "2":
        return "refused" if case.expect == "refuse" else "WRONG"  # a good input refused (a misleading message)
    return "late"


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def run_case(case: Case, repo: str, env: dict, timeout: float) -> tuple[str, str, float, str]:
    t0 = time.perf_counter()
    limit = case.timeout or timeout
    proc = subprocess.Popen([sys.executable, *case.argv], cwd=repo, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace", start_new_session=True,
                            preexec_fn=None if case.timeout else _cap_memory)
    try:
        text, _ = proc.communicate(timeout=limit)
        code = str(proc.returncode)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        code, text = "timeout", f"no answer within {limit:.0f} s"
    seconds = time.perf_counter() - t0
    return code, text, seconds, classify(case, code, text, seconds)


def run_tree(name: str, repo: str, groups: list[str], timeout: float, tmp: Path, only: str = "") -> list[dict]:
    work = tmp / name
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": repo, "TQDM_DISABLE": "1", "AKDRAY_CACHE": str(tmp / f"cache-{name}"),
           "OMP_NUM_THREADS": "1", **S3_ENV}
    built = subprocess.run([sys.executable, str(HERE / "refusal_fixtures.py"), str(work)], env=env,
                           capture_output=True, text=True)
    if built.returncode:
        raise SystemExit(f"fixtures of {name} ({repo}) failed:\n{built.stderr[-2000:]}")
    print(f"<!-- {name}: {built.stdout.strip()} -->", flush=True)
    cases = {"hardening": hardening_cases, "issue": issue_cases, "wide": wide_cases}
    results = []
    for group in groups:
        for case in cases[group](work):
            if only and only not in case.name:
                continue
            code, text, seconds, kind = run_case(case, repo, env, timeout)
            results.append({"group": case.group, "case": case.name, "exit": code, "line": first_line(text),
                            "s": round(seconds, 1), "class": kind})
            print(f"<!-- {name} | {case.name} | {code} | {kind} | {seconds:.1f} s -->", file=sys.stderr, flush=True)
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", action="append", default=[], metavar="NAME=CHECKOUT",
                    help="a checkout to run the cases against (repeatable; default: this checkout)")
    ap.add_argument("--cases", choices=("hardening", "issue", "wide", "all"), default="all")
    ap.add_argument("--timeout", type=float, default=90.0, help="seconds before a case counts as a hang")
    ap.add_argument("--json", help="also write every result here")
    ap.add_argument("--only", default="", help="only the cases whose name contains this text")
    args = ap.parse_args()
    trees = [t.split("=", 1) for t in args.tree] or [["this", str(HERE.parent)]]
    groups = ["hardening", "issue", "wide"] if args.cases == "all" else [args.cases]
    with tempfile.TemporaryDirectory() as tmp:
        by_tree = {name: run_tree(name, os.path.abspath(repo), groups, args.timeout, Path(tmp), args.only) for name, repo in trees}
    names = list(by_tree)
    head = " | ".join(f"{n}: exit, class, first line, s" for n in names)
    print(f"| group | case | {head} |\n|---|---|" + "---|" * len(names))
    for rows in zip(*by_tree.values()):
        cells = " | ".join(f"{r['exit']}, **{r['class']}**, {r['line'].replace('|', '/')}, {r['s']}" for r in rows)
        print(f"| {rows[0]['group']} | {rows[0]['case']} | {cells} |")
    print("\n| tree | group | cases | refused | ok | WRONG (silent wrong result) | late | traceback |\n|---|---|---|---|---|---|---|---|")
    for name, rows in by_tree.items():
        for group in dict.fromkeys(r["group"] for r in rows):
            g = [r["class"] for r in rows if r["group"] == group]
            print(f"| {name} | {group} | {len(g)} | " + " | ".join(str(g.count(k)) for k in
                                                                 ("refused", "ok", "WRONG", "late", "traceback")) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(by_tree, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
