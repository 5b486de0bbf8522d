"""``akdray audit``: the whole attack suite (:mod:`akdray.attacks.registry`) on an existing generator.

    akdray audit --checkpoint RUN_OR_PT [--data DIR] [--references N | --reference-runs DIR ...] --out DIR

Members are the training pairs of the data (the checkpoint's own data, or the aligned folder
``--data``), non-members its test pairs. Reference models come from existing ``reference`` runs
(``--reference-runs``) or are trained here by the target's recipe (``--references N``, N >= 2 for
LiRA; 0 = the loss attack only). Writes ``audit.json`` (every attack's AUC with its 95 % CI, TPR at
1 % / 0.1 % FPR - null where there are too few non-members - and ``leak``), ``scores.parquet``
(per image and attack) and ``roc.png`` (log-log ROC, one curve per attack).

Inputs are checked by :mod:`akdray.audit_inputs` before any work (image sizes of every audited file -
``--resize`` to resize on purpose, recorded as ``"resized": true`` -, at least 4 members and 4
non-members, ``--data`` for an official checkpoint, references distinct, not the target, of its
family and disjoint from the audited images); the output folder is written atomically (all or nothing).

Control: a held-out reference run given as ``--checkpoint`` never saw the audited members, so its
lira and rmia AUCs should have CIs containing 0.5, and ``leak`` (the attack chosen on one half of
the audited images, measured on the other: :mod:`akdray.attacks.leak`) should read about 0.5.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch

from akdray.attacks.roc import roc_png
from akdray.attacks.references import load_references, serve_generator
from akdray.attacks.scores import LIRA_MIN_REFERENCES
from akdray.attacks.suite import audit_sample
from akdray.audit_inputs import (check_audit_counts, check_reference_runs, check_references_disjoint,
                                 check_split_sizes, require_data)
from akdray.checkpoint import load_generator
from akdray.bounds import MAX_REFERENCES
from akdray.config import ConfigError, RunConfig
from akdray.data.aligned import DataError, load_aligned_split
from akdray.data.splits import PairedImages, Splits, check_disjoint, load_splits, local_root
from akdray.evaluate import audit
from akdray.outdir import atomic_dir, check_out_dir
from akdray.preflight import check_count, check_not_inside, check_uri, checked_device, expand
from akdray.reference_recipe import reference_config
from akdray.schema import ATTACKS, AUDIT_FILE, ROC_FILE, SCORES_FILE

REFERENCE_SPLIT = "val"  # where references trained here draw their pairs (never an audited image)


def audit_data_config(target_cfg: RunConfig, data: str | None, data_seed: int | None = None) -> RunConfig:
    """The data the audit reads: the target's own (or another synthetic draw ``data_seed``), or every
    pair of the aligned folder ``data`` (``train/`` members, ``test/`` non-members)."""
    cfg = target_cfg.replace(method="teacher", teacher_checkpoint="", reference_checkpoints="",
                             **({} if data_seed is None else {"data_seed": data_seed}))
    if not data:
        return cfg
    return cfg.replace(data_source="aligned", data_root=str(data), n_train=0, n_test=0, proxy_pool_size=0,
                       proxy_size=0, attack_n_per_side=0, n_val=0, eval_split="test")


def _folder_splits(root: Path, cfg: RunConfig, resize: bool) -> Splits:
    """``--data``: every pair of train/ (members) and test/ (non-members), sizes checked first (val/ is not read)."""
    if not root.is_dir():
        raise DataError(f"--data {cfg.data_root} is not a folder (expected train/ = members and test/ = non-members)")
    check_split_sizes(root, (cfg.train_split, cfg.test_split), cfg.image_size, resize=resize, label="--data")
    load = lambda split: PairedImages(*load_aligned_split(root / split, cfg.image_size, cfg.direction))  # noqa: E731
    train, test = load(cfg.train_split), load(cfg.test_split)
    check_disjoint(train, test, "test")
    return Splits(train=train, proxy=train.subset(torch.arange(0)), test=test,
                  key=f"audit-{root.resolve()}-{cfg.direction}-{cfg.image_size}px")


def train_references(cfg: RunConfig, n: int, out: Path) -> list[str]:
    """Train ``n`` reference runs into ``out/references/ref<k>`` (no KID); returns their folders."""
    from akdray.run import run

    paths = []
    for k in range(n):
        path = out / "references" / f"ref{k}"
        row = run(reference_config(cfg, k), path)
        if row["status"] != "ok":
            raise RuntimeError(f"reference model {k} failed: {row['error']}")
        paths.append(str(path))
    return paths


def audit_checkpoint(checkpoint: str, out: str | Path, *, data: str | None = None, references: int = 0,
                     reference_runs: Sequence[str] = (), data_seed: int | None = None, resize: bool = False) -> dict:
    """Everything ``akdray audit`` does; returns the audit record (also written as ``audit.json``).

    Every input is checked before any work (akdray.audit_inputs); the folder is written atomically."""
    checkpoint, data = expand(checkpoint), (expand(check_uri(data, "--data")) if data else data)
    reference_runs = [expand(p) for p in reference_runs]
    out = check_out_dir(expand(out))  # new or empty, and writable: probed before references are trained
    if references and reference_runs:
        raise ConfigError("give either --references N or --reference-runs, not both")
    check_count("--references", references, 0, MAX_REFERENCES)
    check_count("--reference-runs (count)", len(reference_runs), 0, MAX_REFERENCES)
    n_refs = len(reference_runs) or references
    if n_refs and n_refs < LIRA_MIN_REFERENCES:
        raise ConfigError(f"LiRA needs at least {LIRA_MIN_REFERENCES} reference models, got {n_refs} (or give 0)")
    check_not_inside(out, {"--data": data, "--checkpoint": checkpoint,
                           **{f"--reference-runs {p}": p for p in reference_runs}})
    target = load_generator(checkpoint)
    require_data(target.format, target.file, data)
    cfg = audit_data_config(target.cfg, data, data_seed)
    device = checked_device(cfg)
    if data:
        root = local_root(data)
        splits = _folder_splits(root, cfg, resize)
        if references:  # references trained here draw their pairs from val/, never from an audited split
            check_split_sizes(root, (cfg.train_split, REFERENCE_SPLIT, cfg.test_split), None, label="--data")
    else:
        if cfg.data_source == "aligned":
            root = local_root(cfg.data_root)
            check_split_sizes(root, (cfg.train_split, cfg.test_split), None, label="data_root")
        splits = load_splits(cfg)
    members_idx, nonmembers_idx = audit_sample(len(splits.train), len(splits.test), cfg.attack_n_per_side, cfg.seed)
    members, nonmembers = splits.train.subset(members_idx), splits.test.subset(nonmembers_idx)
    check_audit_counts(len(members), len(nonmembers), f"audit of {checkpoint}")
    loaded = load_references(cfg, list(reference_runs))  # checked before anything is trained
    if reference_runs:
        check_reference_runs(target.file, target.cfg if target.format == "akdray" else None, target.generator, cfg,
                             loaded, reference_runs)
        check_references_disjoint([c for _, c in loaded], reference_runs, members, nonmembers)
    with atomic_dir(out) as tmp:
        trained = train_references(cfg, references, tmp) if references else []
        loaded = loaded or load_references(cfg, trained)
        paths = list(reference_runs) or [str(out / Path(p).relative_to(tmp)) for p in trained]
        row, scores, _ = audit(serve_generator(target.generator, cfg, device),
                               [serve_generator(R, cfg, device) for R, _ in loaded], members, nonmembers, cfg)
        record = {"checkpoint": str(checkpoint), "target_method": target.cfg.method if target.format == "akdray"
                  else f"official {target.format}", "data": data or splits.key, "resized": bool(data and resize),
                  "references": paths, "inference_mode": cfg.inference_mode, **row}
        (tmp / AUDIT_FILE).write_text(json.dumps(record, indent=2) + "\n")
        scores.to_parquet(tmp / SCORES_FILE, index=False)
        roc_png({"target": scores}, tmp / ROC_FILE, f"audit of {Path(str(checkpoint)).name} ({record['target_method']})")
    return record


def summary_lines(record: dict) -> list[str]:
    """One line per attack: AUC [95 % CI], TPR at 1 % / 0.1 % FPR (— when null)."""
    fmt = lambda v: "—" if v is None else f"{v:.3f}"  # noqa: E731
    lines = [f"  {'attack':<6} {'AUC':>6} {'95% CI':>15} {'TPR@1%':>7} {'TPR@0.1%':>8}"]
    for a in ATTACKS:
        if record.get(f"{a}_auc") is None:
            continue
        lines.append(f"  {a:<6} {record[f'{a}_auc']:6.3f} [{record[f'{a}_auc_lo']:.3f}, {record[f'{a}_auc_hi']:.3f}] "
                     f"{fmt(record[f'{a}_tpr_at_1pct_fpr']):>7} {fmt(record[f'{a}_tpr_at_0p1pct_fpr']):>8}")
    lines.append(f"  leak {fmt(record.get('leak'))} [{fmt(record.get('leak_lo'))}, {fmt(record.get('leak_hi'))}] "
                 f"(chosen {record.get('leak_attack')} from {record.get('leak_source')}); leak_max "
                 f"{fmt(record.get('leak_max'))}, permutation p {fmt(record.get('leak_p'))}; "
                 f"{int(record['attack_n_members'])} members, {int(record['attack_n_nonmembers'])} non-members, "
                 f"{int(record['n_references'])} reference models")
    return lines


