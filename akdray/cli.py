"""Command line: ``akdray run | audit | protect | translate | export | kid | fields``.

Exit codes: 0 success, 1 the run itself failed (e.g. diverged; its row says why), 2 bad input
(unknown preset or field, bad value, broken data, missing teacher) - reported before any work.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path

from akdray.attacks.registry import ATTACKS
from akdray.config import (DIRECTIONS, FIELD_MAX, FIELD_TYPES, INFERENCE_MODES, METHODS, PRESETS, ConfigError,
                           RunConfig, field_range, make_config, parse_overrides)
from akdray.data.aligned import DataError
from akdray.inputs import LAYOUTS
from akdray.preflight import check_count, check_not_inside, check_seed, check_uri, expand

MAX_KID_SUBSETS, MAX_KID_SUBSET_SIZE, MAX_BATCH = FIELD_MAX["kid_subsets"], FIELD_MAX["kid_subset_size"], FIELD_MAX["eval_batch_size"]

SUMMARY_KEYS = (
    ("method", "method"), ("inference_mode", "inference mode"), ("leak", "leak (0.5 = none)"),
    ("leak_p", "leak_max's permutation p"), *((f"{a}_auc", f"{a} attack AUCROC") for a in ATTACKS),
    *((f"{a}_tpr_at_1pct_fpr", f"{a} TPR @ 1% FPR") for a in ATTACKS),
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
    export = sub.add_parser("export", help="write a trained generator in the official pix2pix layout")
    export.add_argument("run_dir", help="akdray run folder or checkpoint.pt")
    export.add_argument("--format", required=True, choices=["pix2pix"])
    export.add_argument("--out", required=True, help="new or empty folder for latest_net_G.pth and opt.txt")
    tr = sub.add_parser("translate", help="run a generator (akdray or official pix2pix) on images")
    tr.add_argument("--checkpoint", required=True, help="akdray run folder / checkpoint.pt, or official latest_net_G.pth")
    tr.add_argument("--input", required=True, help="an image, a folder of images, or an aligned A|B folder")
    tr.add_argument("--out", required=True, help="new or empty folder: one PNG per input, same name")
    tr.add_argument("--inference-mode", choices=INFERENCE_MODES,
                    help="default: the run's own mode; train (official test.py without --eval) for official files")
    tr.add_argument("--image-size", type=int, help="model input size (default: the run's, or 2**depth for official files)")
    tr.add_argument("--direction", choices=DIRECTIONS, help="for A|B inputs: AtoB uses the A half (default: the run's, or AtoB)")
    tr.add_argument("--layout", choices=LAYOUTS, default="auto", help="auto: A|B if every image is twice as wide as high")
    tr.add_argument("--no-dropout", action="store_true", help="official files: build the network without dropout")
    tr.add_argument("--seed", type=int, default=0, help="seeds the dropout masks in train mode (0..2**31-1)")
    pr = sub.add_parser("protect", help="post-hoc AKD of an existing generator; optional before/after audit")
    pr.add_argument("--teacher", required=True, help="akdray run folder / checkpoint.pt, or official latest_net_G.pth")
    pr.add_argument("--proxy", required=True, help="public proxy inputs: a folder of images or of A|B pairs (only inputs are read)")
    pr.add_argument("--out", required=True, help="new or empty folder")
    pr.add_argument("--audit-data", help="the owner's aligned data: train/ = members, test/ = non-members")
    pr.add_argument("--preset", default="cpu-small", help=f"training recipe, one of {', '.join(PRESETS)}")
    pr.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                    help="override a RunConfig field (repeatable); the architecture defaults to the teacher's")
    pr.add_argument("--layout", choices=LAYOUTS, default="auto", help="of the proxy folder")
    pr.add_argument("--resize", action="store_true", help="resize audit images of another size to the model's "
                    "(default: refused; protect.json records it)")
    pr.add_argument("--references", type=int, default=0,
                    help="train N >= 2 reference models on AUDIT_DATA/val for the calibrated lira and rmia attacks "
                         "(default 0: the loss attack only)")
    audit = sub.add_parser("audit", help="loss, lira and rmia attacks on a trained generator; writes OUT/audit.json")
    audit.add_argument("--checkpoint", required=True, help="run folder or checkpoint.pt of the model to audit")
    audit.add_argument("--data", default=None, help="aligned A|B folder (train/ = members, test/ = non-members); "
                       "default: the checkpoint's own data")
    refs = audit.add_mutually_exclusive_group()
    refs.add_argument("--references", type=int, default=0, help="train N reference models here (N >= 2; 0 = loss only)")
    refs.add_argument("--reference-runs", nargs="+", default=[], metavar="DIR", help="existing reference run folders")
    audit.add_argument("--resize", action="store_true", help="resize --data images of another size to the "
                       "model's (default: refused; audit.json records it)")
    audit.add_argument("--out", required=True, help="output folder (must be new or empty, outside every input)")
    kid = sub.add_parser("kid", help="KID between two image folders; prints {kid_mean, kid_std, kid_subset_size} as JSON")
    kid.add_argument("real_dir")
    kid.add_argument("fake_dir")
    kid.add_argument("--subset-size", type=int, default=None, help="default 1000, clamped to the smaller set")
    kid.add_argument("--subsets", type=int, default=100)
    kid.add_argument("--seed", type=int, default=0)
    kid.add_argument("--batch-size", type=int, default=None,
                     help="images per Inception pass (default: 4 on CPU, as fast as 32 with far less memory; 32 on a GPU)")
    kid.add_argument("--device", default="cpu")
    sub.add_parser("fields", help="list RunConfig fields, types and defaults")
    return parser


def _config_from_args(args: argparse.Namespace) -> RunConfig:
    overrides: dict = parse_overrides(args.overrides)
    overrides["method"] = args.method
    if args.teacher:
        overrides["teacher_checkpoint"] = args.teacher
    for name in ("data_root", "teacher_checkpoint"):  # `~` expanded as the sweep does
        if overrides.get(name):
            overrides[name] = expand(check_uri(overrides[name], f"field {name!r}"))
    return make_config(args.preset, overrides)


def _check_run_data(cfg: RunConfig) -> None:
    """Aligned data: every file of the audited splits has one size (read from headers; remote data probed)."""
    from akdray.audit_inputs import check_split_sizes
    from akdray.preflight import probe_folder

    if cfg.data_source != "aligned":
        return
    if "://" in cfg.data_root:
        probe_folder(cfg.data_root, "field 'data_root'")
        return
    root = Path(cfg.data_root)
    if root.is_dir():
        check_split_sizes(root, (cfg.train_split, cfg.proxy_split, cfg.test_split), None, label="data_root")


def cmd_run(args: argparse.Namespace) -> int:
    from akdray.run import execute, prepare

    cfg = _config_from_args(args)
    _check_run_data(cfg)
    if args.dry_run:
        print(json.dumps(cfg.to_dict(), indent=2))
        return 0
    if not args.out:
        raise ConfigError("--out is required (a new or empty folder for row.json, checkpoint and scores)")
    from akdray.outdir import check_out_dir

    args.out = expand(args.out)
    check_out_dir(args.out)
    check_not_inside(args.out, {"data_root": cfg.data_root, "--teacher": cfg.teacher_checkpoint})
    prepared = prepare(cfg, args.out)
    row = execute(prepared)
    print(f"akdray run -> {args.out}\n{format_summary(row)}")
    if row["status"] != "ok":
        print(f"run failed: {row['error']}", file=sys.stderr)
        return 1
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from akdray.checkpoint import load_generator
    from akdray.outdir import atomic_dir, check_out_dir
    from akdray.pix2pix_format import OFFICIAL_G_FILE, check_exportable, write_official

    out = check_out_dir(expand(args.out))
    check_not_inside(out, {"run_dir": expand(args.run_dir)})
    loaded = load_generator(expand(args.run_dir))
    check_exportable(loaded.cfg)
    mode = loaded.cfg.inference_mode if loaded.format == "akdray" else "train"
    with atomic_dir(out) as tmp:
        write_official(tmp, loaded.generator, loaded.cfg, mode)
    print(f"akdray export -> {out / OFFICIAL_G_FILE} (official pix2pix layout)\n{(out / 'opt.txt').read_text()}")
    return 0


def cmd_translate(args: argparse.Namespace) -> int:
    from akdray.translate import format_translate, translate

    check_seed("--seed", args.seed)
    check_count("--image-size", args.image_size, 16, FIELD_MAX["image_size"])
    args.checkpoint, args.input, args.out = expand(args.checkpoint), expand(args.input), expand(args.out)
    summary = translate(args.checkpoint, args.input, args.out, inference_mode=args.inference_mode,
                        image_size=args.image_size, direction=args.direction, layout=args.layout,
                        use_dropout=not args.no_dropout, seed=args.seed)
    print(format_translate(summary, args.out))
    return 0


def cmd_protect(args: argparse.Namespace) -> int:
    from akdray.protect import audit_table, prepare_protect, run_protect

    job = prepare_protect(args.teacher, args.proxy, args.out, audit_data=args.audit_data, preset=args.preset,
                          overrides=parse_overrides(args.overrides), layout=args.layout, references=args.references,
                          resize=args.resize)
    result = run_protect(job)
    print(f"akdray protect -> {args.out} (student: checkpoint.pt and pix2pix/latest_net_G.pth)")
    if result["audit"] is None:
        print(f"  {result['note']}")
    else:
        print("\n".join(audit_table(result["audit"])))
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from akdray.audit import audit_checkpoint, summary_lines

    record = audit_checkpoint(args.checkpoint, args.out, data=args.data, references=args.references,
                              reference_runs=args.reference_runs, resize=args.resize)
    print("\n".join([f"akdray audit -> {args.out}", *summary_lines(record)]))
    return 0


def cmd_kid(args: argparse.Namespace) -> int:
    from akdray.metrics.folders import kid_between_dirs
    from akdray.metrics.kid import KidOptions
    from akdray.train import existing_device

    try:
        for flag, value, low, high in (("--subsets", args.subsets, 1, MAX_KID_SUBSETS),
                                       ("--batch-size", args.batch_size, 1, MAX_BATCH),
                                       ("--subset-size", args.subset_size, 2, MAX_KID_SUBSET_SIZE)):
            check_count(flag, value, low, high)
        check_seed("--seed", args.seed)
        options = KidOptions(args.subset_size, args.subsets, args.seed, args.batch_size, existing_device(args.device))
        res = kid_between_dirs(expand(args.real_dir), expand(args.fake_dir), options)
    except (FileNotFoundError, NotADirectoryError, ValueError) as e:
        print(f"akdray kid: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({k: res[k] for k in ("kid_mean", "kid_std", "kid_subset_size")}))
    return 0


def cmd_fields(_: argparse.Namespace) -> int:
    for f in fields(RunConfig):
        print(f"{f.name:<24} {FIELD_TYPES[f.name].__name__:<6} {f.default!r:<12} {field_range(f.name)}".rstrip())
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    handler = {"run": cmd_run, "audit": cmd_audit, "export": cmd_export, "translate": cmd_translate,
               "protect": cmd_protect, "kid": cmd_kid, "fields": cmd_fields}[args.command]
    try:
        return handler(args)
    except (ConfigError, DataError, FileNotFoundError, NotADirectoryError, PermissionError) as exc:
        print(f"akdray: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
