"""``run(cfg) -> row``: train (or load) the deployed model of one method, evaluate it, write it out.

No Ray here: the CLI calls this directly and the Ray trainable calls the same function. All
inputs (data, teacher checkpoint, output folder) are checked before any training starts; the
output folder is written atomically (a temporary sibling renamed into place at the end).
"""
from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

import akdray
from akdray.attacks.references import load_references, serve_generator
from akdray import seeds
from akdray.checkpoint import CHECKPOINT_NAME, check_teacher_compatible, load_generator, save_generator
from akdray.config import DISTILLATION_METHODS, RunConfig
from akdray.data.splits import Splits, load_splits
from akdray.defenses.distill import fit_student, teacher_query
from akdray.defenses.gauss import add_output_noise
from akdray.evaluate import Serve, evaluate, sample_images
from akdray.metrics.features import to_uint8
from akdray.outdir import atomic_dir, check_out_dir
from akdray.provenance import code_commit
from akdray.provenance import code_commit
from akdray.schema import CONFIG_FILE, METRIC_KEYS, ROW_FILE, SAMPLES_FILE, SCORES_FILE
from akdray.train import TrainingDiverged, existing_device, fit_teacher, resolve_device


@dataclass
class Prepared:
    """Everything checked and loaded before training: data, teacher, device, output folder."""

    cfg: RunConfig
    splits: Splits
    teacher: nn.Module | None
    device: torch.device
    out_dir: Path | None
    references: list[nn.Module] = field(default_factory=list)  # the K reference generators (lira, rmia)
    prepare_s: float = 0.0  # seconds spent checking and loading all of this (data, teacher, references)


def prepare(cfg: RunConfig, out_dir: str | Path | None = None, *, teacher_dir: str | Path | None = None,
            reference_dirs: Sequence[str | Path] | None = None) -> Prepared:
    """Validate every input of the run; raises ConfigError / DataError naming the problem.

    ``teacher_dir`` / ``reference_dirs``: local copies of ``cfg.teacher_checkpoint`` /
    ``cfg.reference_list`` (a sweep worker fetches them from shared storage); the config keeps the URIs.
    """
    t0 = time.perf_counter()
    out = check_out_dir(out_dir)
    device = existing_device(resolve_device(cfg))
    teacher = None
    if cfg.teacher_checkpoint and cfg.method in ("akd", "dmp", "gauss"):
        loaded = load_generator(str(teacher_dir or cfg.teacher_checkpoint), image_size=cfg.image_size,
                                use_dropout=cfg.use_dropout)
        if loaded.format == "akdray":  # an official file carries no data identity to check
            check_teacher_compatible(cfg, loaded.cfg, str(loaded.file))
        teacher = loaded.generator
    paths = None if reference_dirs is None else [str(p) for p in reference_dirs]
    references = [G for G, _ in load_references(cfg, paths)]  # checked against this run's data before training
    splits = load_splits(cfg)
    return Prepared(cfg, splits, teacher, device, out, references, prepare_s=time.perf_counter() - t0)


def _serve_gauss(teacher: nn.Module, cfg: RunConfig, device: torch.device) -> Serve:
    noise = torch.Generator().manual_seed(seeds.GAUSS_NOISE.seed(cfg.seed))
    clean = serve_generator(teacher, cfg, device)
    return lambda x: to_uint8(add_output_noise(clean(x).float() / 127.5 - 1.0, cfg.gauss_sigma, noise))


def _train(p: Prepared) -> tuple[nn.Module | None, Serve, dict[str, Any], RunConfig]:
    """Fit the method's deployed model; returns (generator, serve, extra metrics, config as saved)."""
    cfg, device = p.cfg, p.device
    extra: dict[str, Any] = {}
    saved_cfg = cfg
    if cfg.method in ("teacher", "reference"):  # a reference model: the teacher's recipe on its own pairs
        G, history = fit_teacher(cfg, p.splits.train.x, p.splits.train.y, device)
    elif cfg.method in DISTILLATION_METHODS:
        query = teacher_query(p.teacher.to(device), cfg.teacher_inference_mode, cfg.teacher_dropout)
        G, history = fit_student(cfg, query, p.splits.proxy.inputs_only(),
                                 adversarial=cfg.method == "akd", device=device)
    elif cfg.method == "dpsgd":
        from akdray.defenses.dpsgd import dp_model_config, fit_dpsgd  # Opacus only when needed

        G, history, privacy = fit_dpsgd(cfg, p.splits.train, device)
        extra.update(privacy)
        saved_cfg = dp_model_config(cfg)  # BatchNorm is replaced by GroupNorm for Opacus
    else:  # gauss: post hoc, no training
        return None, _serve_gauss(p.teacher, cfg, device), extra, cfg
    last = history.epochs[-1] if history.epochs else {}
    extra.update(final_loss_G_l1=last.get("loss_G_l1"), final_loss_D=last.get("loss_D"))
    return G, serve_generator(G, cfg, device), extra, saved_cfg


def _clean(value: Any) -> Any:
    """JSON/Parquet friendly: numpy scalars -> Python, NaN -> None (never a fake number)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def execute(p: Prepared) -> dict[str, Any]:
    """Train and evaluate a prepared run; write its folder if it has one. Returns the flat row."""
    cfg = p.cfg
    started, t0 = datetime.now(timezone.utc), time.perf_counter()
    metrics: dict[str, Any] = {k: None for k in METRIC_KEYS}
    status, error, G, saved_cfg = "ok", None, None, cfg
    scores = samples = None
    train_s = eval_s = 0.0
    try:
        G, serve, extra, saved_cfg = _train(p)
        train_s = time.perf_counter() - t0
        metrics.update(extra)
        references = [serve_generator(R, cfg, p.device) for R in p.references]
        evaluated, scores = evaluate(serve, p.splits, cfg, proxy_leakage=cfg.method in DISTILLATION_METHODS,
                                     references=references, quality_metrics=cfg.method != "reference", device=p.device)
        metrics.update(evaluated)
        shown = p.splits.val if cfg.eval_split == "val" else p.splits.test  # a search trial: no test image
        samples = sample_images(serve, shown, cfg.n_sample_images)
        eval_s = time.perf_counter() - t0 - train_s
    except TrainingDiverged as exc:
        status, error = "failed", f"diverged: {exc}"
        train_s = time.perf_counter() - t0
    row = {**saved_cfg.to_dict(), **{k: _clean(v) for k, v in metrics.items()}}  # config as trained
    row.update(status=status, error=error, wall_s=p.prepare_s + time.perf_counter() - t0, prepare_s=p.prepare_s,
               train_s=train_s, eval_s=eval_s,
               device_used=str(p.device), started_at=started.isoformat(),
               finished_at=datetime.now(timezone.utc).isoformat(), akdray_version=akdray.__version__,
               torch_version=str(torch.__version__), host=platform.node(), code_commit=code_commit())
    if p.out_dir is not None:
        write_run_dir(p.out_dir, row, saved_cfg, G, scores, samples)
    return row


def run(cfg: RunConfig, out_dir: str | Path | None = None, *, teacher_dir: str | Path | None = None,
        reference_dirs: Sequence[str | Path] | None = None) -> dict[str, Any]:
    """Check inputs, train, evaluate; the row is every RunConfig field plus the metrics.

    ``teacher_dir`` / ``reference_dirs`` load the teacher / reference models from local copies while
    the row and ``config.json`` keep the config's own (e.g. s3://) names.
    """
    return execute(prepare(cfg, out_dir, teacher_dir=teacher_dir, reference_dirs=reference_dirs))


def write_run_dir(out: Path, row: dict, saved_cfg: RunConfig, G: nn.Module | None, scores, samples) -> None:
    """Write row, config, checkpoint and scores into a temporary sibling, then rename it into place."""
    with atomic_dir(out) as tmp:
        (tmp / CONFIG_FILE).write_text(json.dumps(saved_cfg.to_dict(), indent=2) + "\n")
        if G is not None:
            save_generator(tmp / CHECKPOINT_NAME, G.cpu(), saved_cfg)
        if scores is not None:
            scores.to_parquet(tmp / SCORES_FILE, index=False)
        if samples is not None:
            samples.to_parquet(tmp / SAMPLES_FILE, index=False)
        (tmp / ROW_FILE).write_text(json.dumps(row, indent=2) + "\n")
