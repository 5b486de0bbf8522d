"""Command line: ``akdray run | audit | kid | fields``.

Exit codes: 0 success, 1 the run itself failed (e.g. diverged; its row says why), 2 bad input
(unknown preset or field, bad value, broken data, missing teacher) - reported before any work.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields

from akdray.config import FIELD_TYPES, METHODS, PRESETS, ConfigError, RunConfig, make_config, parse_overrides
from akdray.data.aligned import DataError

SUMMARY_KEYS = (
    ("method", "method"), ("inference_mode", "inference mode"), ("leak", "leak (0.5 = none)"),
    ("loss_auc", "loss attack AUCROC"), ("cal_auc", "cal attack AUCROC"), ("lira_auc", "lira attack AUCROC"),
    ("lira_tpr_at_1pct_fpr", "lira TPR @ 1% FPR"), ("loss_tpr_at_1pct_fpr", "loss TPR @ 1% FPR"),
    ("proxy_mia_auc", "proxy-leakage AUCROC"), ("test_l1", "test L1"), ("kid", "KID"), ("nkid", "NKID"),
    ("kid_subset_size_used", "KID subset size"), ("gen_gap", "generalization gap"),
    ("dp_epsilon", "DP epsilon"), ("status", "status"), ("wall_s", "wall time [s]"),
)


def format_summary(row: dict) -> str:
    lines = []
    for key, label in SUMMARY_KEYS:
        value = row.get(key)
        if value is None:
            continue
        lines.append(f"  {label:<22} {value:.4f}" if isinstance(value, float) else f"  {label:<22} {value}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="akdray", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train and evaluate one method; writes OUT/row.json")
    run.add_argument("--method", required=True, choices=METHODS)
    run.add_argument("--preset", default="cpu-small", help=f"one of {', '.join(PRESETS)}")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                     help="override a RunConfig field (repeatable); `akdray fields` lists them")
    run.add_argument("--teacher", default="", help="teacher run folder or checkpoint (akd, dmp, gauss)")
    run.add_argument("--out", help="output folder (must be new or empty)")
    run.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    audit = sub.add_parser("audit", help="loss, cal and lira attacks on a trained generator; writes OUT/audit.json")
    audit.add_argument("--checkpoint", required=True, help="run folder or checkpoint.pt of the model to audit")
    audit.add_argument("--data", default=None, help="aligned A|B folder (train/ = members, test/ = non-members); "
                       "default: the checkpoint's own data")
    refs = audit.add_mutually_exclusive_group()
    refs.add_argument("--references", type=int, default=0, help="train N reference models here (N >= 2; 0 = loss only)")
    refs.add_argument("--reference-runs", nargs="+", default=[], metavar="DIR", help="existing reference run folders")
    audit.add_argument("--out", required=True, help="output folder (must be new or empty)")
    kid = sub.add_parser("kid", help="KID between two image folders, as JSON (akdray kid --help)", add_help=False)
    kid.add_argument("kid_args", nargs=argparse.REMAINDER)
    sub.add_parser("fields", help="list RunConfig fields, types and defaults")
    return parser


def _config_from_args(args: argparse.Namespace) -> RunConfig:
    overrides: dict = parse_overrides(args.overrides)
    overrides["method"] = args.method
    if args.teacher:
        overrides["teacher_checkpoint"] = args.teacher
    return make_config(args.preset, overrides)


def cmd_run(args: argparse.Namespace) -> int:
    from akdray.run import execute, prepare

    cfg = _config_from_args(args)
    if args.dry_run:
        print(json.dumps(cfg.to_dict(), indent=2))
        return 0
    if not args.out:
        raise ConfigError("--out is required (a new or empty folder for row.json, checkpoint and scores)")
    prepared = prepare(cfg, args.out)
    row = execute(prepared)
    print(f"akdray run -> {args.out}\n{format_summary(row)}")
    if row["status"] != "ok":
        print(f"run failed: {row['error']}", file=sys.stderr)
        return 1
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from akdray.audit import audit_checkpoint, summary_lines

    record = audit_checkpoint(args.checkpoint, args.out, data=args.data, references=args.references,
                              reference_runs=args.reference_runs)
    print("\n".join([f"akdray audit -> {args.out}", *summary_lines(record)]))
    return 0


def cmd_fields(_: argparse.Namespace) -> int:
    for f in fields(RunConfig):
        print(f"{f.name:<24} {FIELD_TYPES[f.name].__name__:<6} {f.default!r}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["kid"]:  # `akdray kid` has its own parser (options may come first)
        from akdray.metrics import main_kid

        return main_kid(argv[1:])
    args = build_parser().parse_args(argv)
    handler = {"run": cmd_run, "audit": cmd_audit, "fields": cmd_fields}[args.command]
    try:
        return handler(args)
    except (ConfigError, DataError, FileNotFoundError) as exc:
        print(f"akdray: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
