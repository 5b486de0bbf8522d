"""``akdray audit``: the whole attack suite (loss, cal, lira) on an existing generator.

    akdray audit --checkpoint RUN_OR_PT [--data DIR] [--references N | --reference-runs DIR ...] --out DIR

Members are the training pairs of the data (the checkpoint's own data, or the aligned folder
``--data``), non-members its test pairs. Reference models come from existing ``reference`` runs
(``--reference-runs``) or are trained here by the target's recipe (``--references N``, N >= 2 for
LiRA; 0 = the loss attack only). Writes ``audit.json`` (every attack's AUC with its 95 % CI, TPR at
1 % / 0.1 % FPR - null where there are too few non-members - and ``leak``), ``scores.parquet``
(per image and attack) and ``roc.png`` (log-log ROC, one curve per attack).

Control: a held-out reference run given as ``--checkpoint`` never saw the audited members, so its
cal and lira AUCs should have CIs containing 0.5.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from akdray.attacks.roc import roc_png
from akdray.attacks.references import load_references, load_target, serve_generator
from akdray.attacks.scores import LIRA_MIN_REFERENCES
from akdray.attacks.suite import audit_sample
from akdray.config import ConfigError, RunConfig
from akdray.data.aligned import DataError, list_images, read_rgb
from akdray.data.splits import load_splits
from akdray.evaluate import audit
from akdray.outdir import check_out_dir
from akdray.reference_recipe import reference_config
from akdray.schema import ATTACKS, AUDIT_FILE, ROC_FILE, SCORES_FILE
from akdray.train import resolve_device

def audit_data_config(target_cfg: RunConfig, data: str | None, data_seed: int | None = None) -> RunConfig:
    """The data the audit reads: the target's own (or another synthetic draw ``data_seed``), or the
    aligned folder ``data`` (same image size)."""
    cfg = target_cfg.replace(method="teacher", teacher_checkpoint="", reference_checkpoints="",
                             **({} if data_seed is None else {"data_seed": data_seed}))
    if not data:
        return cfg
    cfg = cfg.replace(data_source="aligned", data_root=str(data))
    first = list_images(Path(data) / cfg.train_split)[0]
    width, height = read_rgb(first).size
    if (width // 2, height) != (cfg.image_size, cfg.image_size):
        raise DataError(f"data folder {data} holds {width // 2}x{height} image pairs ({first.name}), but the "
                        f"checkpoint's generator takes {cfg.image_size}x{cfg.image_size}")
    return cfg


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
                     reference_runs: Sequence[str] = (), data_seed: int | None = None) -> dict:
    """Everything ``akdray audit`` does; returns the audit record (also written as ``audit.json``)."""
    out = Path(out)
    check_out_dir(out)  # new or empty, and writable: probed before references are trained
    if references and reference_runs:
        raise ConfigError("give either --references N or --reference-runs, not both")
    n_refs = len(reference_runs) or references
    if n_refs and n_refs < LIRA_MIN_REFERENCES:
        raise ConfigError(f"LiRA needs at least {LIRA_MIN_REFERENCES} reference models, got {n_refs} (or give 0)")
    if references < 0:
        raise ConfigError("--references must be >= 0")
    G, target_cfg = load_target(checkpoint)
    cfg = audit_data_config(target_cfg, data, data_seed)
    loaded = load_references(cfg, list(reference_runs))  # checked before anything is trained
    splits = load_splits(cfg)
    out.mkdir(parents=True, exist_ok=True)
    paths = list(reference_runs) or train_references(cfg, references, out)
    loaded = loaded or load_references(cfg, paths)
    device = resolve_device(cfg)
    members_idx, nonmembers_idx = audit_sample(len(splits.train), len(splits.test), cfg.attack_n_per_side, cfg.seed)
    row, scores, _ = audit(serve_generator(G, cfg, device), [serve_generator(R, cfg, device) for R, _ in loaded],
                           splits.train.subset(members_idx), splits.test.subset(nonmembers_idx), cfg)
    record = {"checkpoint": str(checkpoint), "target_method": target_cfg.method, "data": data or splits.key,
              "references": paths, "inference_mode": cfg.inference_mode, **row}
    (out / AUDIT_FILE).write_text(json.dumps(record, indent=2) + "\n")
    scores.to_parquet(out / SCORES_FILE, index=False)
    roc_png({"target": scores}, out / ROC_FILE, f"audit of {Path(str(checkpoint)).name} ({target_cfg.method})")
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
    lines.append(f"  leak {fmt(record.get('leak'))} over {record.get('leak_source')}; "
                 f"{int(record['attack_n_members'])} members, {int(record['attack_n_nonmembers'])} non-members, "
                 f"{int(record['n_references'])} reference models")
    return lines


