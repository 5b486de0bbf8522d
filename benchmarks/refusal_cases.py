"""The bad inputs of issue #25 (``issue_cases``) and a wider probe of 100+ more (``wide_cases``), for
bench_refusals.py. A case is (group, name, argv, expect, wrong): ``expect`` "refuse" = a bad input
(anything but a clean exit 2 is a defect); "ok" = a good input that must succeed; ``wrong`` = output
text that shows a false result even with exit 0. Fixtures: refusal_fixtures.py (nothing trained).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple


class Case(NamedTuple):
    group: str
    name: str
    argv: list[str]
    expect: str = "refuse"
    wrong: str = ""  # exit 0 with this text in the output is a false result
    need: str = ""  # exit 0 without this text in the output is a false result
    timeout: float | None = None


AK = ["-m", "akdray.cli"]
PARETO = ["sweeps/pareto.py", "-q"]
TINY = ("image_size=16 ngf=8 ndf=8 d_layers=2 n_train=16 proxy_pool_size=12 proxy_size=8 n_test=16 epochs=1 "
        "distill_epochs=1 batch_size=4 kid_subset_size=8 kid_subsets=10 kid_max_images=8 n_val=8 device=cpu").split()


def sets(*items: str) -> list[str]:
    return [x for item in items for x in ("--set", item)]


class Paths:
    def __init__(self, work: Path):
        self.w = work
        self.n = 0

    def __getattr__(self, name: str) -> str:
        return str(self.w / name)

    def out(self) -> str:
        self.n += 1
        return str(self.w / "out" / f"o{self.n}")


def issue_cases(work: Path) -> list[Case]:
    p = Paths(work)
    run = [*AK, "run", "--method", "teacher", "--preset", "tiny", *sets(*TINY)]
    audit = lambda ck, *a: [*AK, "audit", "--checkpoint", ck, *a, "--out", p.out()]  # noqa: E731
    tr = lambda ck, inp, *a: [*AK, "translate", "--checkpoint", ck, "--input", inp, *a, "--out", p.out()]  # noqa: E731
    prot = lambda t, proxy, *a: [*AK, "protect", "--teacher", t, "--proxy", proxy, "--preset", "tiny",  # noqa: E731
                                 *sets("distill_epochs=1", "kid_subset_size=4", "kid_subsets=5", "device=cpu"), *a,
                                 "--out", p.out()]
    sweep = lambda *a: [*PARETO, "--smoke-test", "--storage", p.sweeps, *a]  # noqa: E731
    home = "~/" + os.path.relpath(p.d16, os.path.expanduser("~"))
    t32 = p.t32
    return [
        Case("silent", "audit --data: test pairs of another size", audit(p.t16all, "--data", p.mixedtest)),
        Case("silent", "audit --data: test pairs of another aspect ratio", audit(p.t16all, "--data", p.aspect)),
        Case("silent", "audit --data: only the first train file the right size", audit(p.t16all, "--data", p.firstok)),
        Case("silent", "audit --data: 1 member vs 1 non-member", audit(p.t16all, "--data", p.one)),
        Case("silent", "protect --audit-data: test pairs of another size",
             prot(t32, f"{p.d32}/val", "--audit-data", p.mixed32)),
        Case("silent", "audit: official checkpoint without --data", audit(f"{p.off}/latest_net_G.pth")),
        Case("silent", "translate: NaN weights (official)", tr(f"{p.offnan}/latest_net_G.pth", f"{p.d32}/val")),
        Case("silent", "translate: inf weights (akdray)", tr(p.t32inf, f"{p.d32}/val")),
        Case("silent", "translate: integer weights (akdray)", tr(p.t32int, f"{p.d32}/val")),
        Case("silent", "translate: complex weights (official)", tr(f"{p.offcomplex}/latest_net_G.pth", f"{p.d32}/val")),
        Case("silent", "export: NaN weights", [*AK, "export", p.t32nan, "--format", "pix2pix", "--out", p.out()]),
        Case("silent", "audit: NaN weights", audit(p.t32nan)),
        Case("silent", "run gauss on a NaN teacher", [*run[:3], "--method", "gauss", "--preset", "tiny", *sets(*TINY),
                                                      *sets("image_size=32"), "--teacher", p.t32nan, "--out", p.out()]),
        Case("silent", "protect: NaN teacher", prot(p.t32nan, f"{p.d32}/val")),
        Case("silent", "audit: the same reference run twice", audit(p.t16, "--reference-runs", p.ref0, p.ref0)),
        Case("silent", "audit: the target as its own reference", audit(p.ref0, "--reference-runs", p.ref0, p.ref1)),
        Case("silent", "audit: references of another synthetic style", audit(p.t16, "--reference-runs", p.ref0, p.refflat)),
        Case("silent", "audit: references trained on the audited members' folder",
             audit(p.t16all, "--data", p.d16, "--reference-runs", p.refmem, p.refmem2)),
        Case("silent", "run: a reference run accepted as a teacher",
             [*AK, "run", "--method", "gauss", "--preset", "tiny", *sets(*TINY), "--teacher", p.ref0, "--out", p.out()]),
        Case("silent", "protect: proxy folder = the test folder", prot(t32, f"{p.d32}/test", "--audit-data", p.d32)),
        Case("silent", "protect --set method=dmp", prot(t32, f"{p.d32}/val", "--set", "method=dmp")),
        Case("silent", "sweep: --storage with a query (dry run)", sweep("--storage", "s3://b/p?endpoint_override=x",
                                                                        "--dry-run")),
        Case("silent", "sweep: --storage file:///x?y=1 (dry run)", sweep("--storage", f"file://{p.sweeps}?y=1", "--dry-run")),
        Case("silent", "sweep: --name .. (dry run)", sweep("--name", "..", "--dry-run")),
        Case("silent", "sweep: --name a/../../b (dry run)", sweep("--name", "a/../../b", "--dry-run")),
        Case("silent", "audit --out inside --data", audit(p.t16all, "--data", p.d16)[:-1] + [f"{p.d16}/audit"]),
        Case("silent", "translate --layout aligned on square images", tr(p.t16, p.square, "--layout", "aligned")),
        Case("late", "run --out a dangling symlink", [*run, "--out", p.dangling]),
        Case("late", "run kid_subset_size=1 (dry run)", [*run, *sets("kid_subset_size=1"), "--dry-run"]),
        Case("late", "run n_train=1 (dry run)", [*run, *sets("n_train=1"), "--dry-run"]),
        Case("late", "audit --data: a file name that is not UTF-8", audit(p.t16all, "--data", p.nonutf8)),
        Case("bounds", "run attack_bootstrap=10^9 (dry run)", [*run, *sets("attack_bootstrap=1000000000"), "--dry-run"]),
        Case("bounds", "kid --subsets 2^31-1", [*AK, "kid", f"{p.d16}/train", f"{p.d16}/test", "--subsets", "2147483647"]),
        Case("bounds", "sweep --seeds 10^8 (dry run)",
             [*PARETO, "--storage", p.sweeps, "--name", "s8", "--seeds", "100000000", "--dry-run"]),
        Case("bounds", "sweep --confirm --confirm-seeds 10^9 (dry run)",
             [*PARETO, "--confirm", f"{p.sweeps}/ok", "--confirm-seeds", "1000000000", "--dry-run"]),
        Case("bounds", "run image_size=65536 (dry run)", [*run, *sets("image_size=65536"), "--dry-run"]),
        Case("bounds", "run ngf=10^6 (dry run)", [*run, *sets("ngf=1000000"), "--dry-run"]),
        Case("traceback", "protect --set device=cuda (no GPU)", prot(t32, f"{p.d32}/val", "--set", "device=cuda")),
        Case("traceback", "translate --seed 10^23", tr(p.t16, f"{p.d16}/val", "--seed", "100000000000000000000000")),
        Case("traceback", "sweep --resume of a sweep.json with seeds 'abc'",
             [*PARETO, "--storage", p.sweeps, "--name", "abc", "--resume"], timeout=180),
        Case("misleading", "audit --data without val/", audit(p.t16, "--data", p.d16noval), expect="ok"),
        Case("misleading", "audit --data smaller than the checkpoint's n_train", audit(p.t16cpu, "--data", p.d16),
             expect="ok"),
        Case("misleading", "audit --data file:///... (a URI)", audit(p.t16, "--data", f"file://{p.d16}"), expect="ok"),
        Case("misleading", "audit --data of 16-bit PNGs", audit(p.t16all, "--data", p.gray16), expect="ok"),
        Case("misleading", "run --set data_root=~/... (dry run)", [*run, *sets(f"data_root={home}"), "--dry-run"],
             expect="ok", wrong='"data_root": "~'),
        Case("misleading", "sweep --dry-run: storage s3://missing-bucket", sweep("--storage", "s3://akdray-missing-bucket/x",
                                                                                  "--dry-run")),
        Case("misleading", "sweep --dry-run: storage is a file", sweep("--storage", p.file, "--dry-run")),
        Case("misleading", "sweep --dry-run: data_root=s3://missing-bucket",
             sweep("--set", "data_root=s3://akdray-missing-bucket/d", "--set", "n_val=4", "--dry-run")),
        Case("misleading", "sweep --resume --dry-run: corrupt sweep.json",
             [*PARETO, "--storage", p.sweeps, "--name", "corrupt", "--resume", "--dry-run"]),
        Case("misleading", "sweep --resume --dry-run --seeds 3 (ignored)",
             [*PARETO, "--storage", p.sweeps, "--name", "ok", "--resume", "--seeds", "3", "--dry-run"],
             expect="ok", need="ignored"),
        Case("misleading", "sweep --cpus-per-trial nan (dry run)", sweep("--cpus-per-trial", "nan", "--dry-run")),
        Case("misleading", "sweep --defenses akd,akd (dry run)", sweep("--defenses", "akd,akd", "--dry-run")),
        Case("misleading", "sweep --defenses , (dry run)", sweep("--defenses", ",", "--dry-run")),
    ]
