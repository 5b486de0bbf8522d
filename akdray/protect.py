"""``akdray protect``: post-hoc AKD for a generator someone already has (akdray or official pix2pix).

The teacher is read by :func:`akdray.checkpoint.load_generator`; the student is trained on the
proxy *inputs* only (:class:`~akdray.data.splits.InputImages` from :func:`akdray.inputs.load_inputs`:
of an aligned proxy folder only the input halves are kept) by the same :func:`fit_student` as
``akdray run --method akd``, with the teacher's architecture unless ``--set`` says otherwise. The
student is written in both formats (``checkpoint.pt`` and ``pix2pix/latest_net_G.pth``). With the
owner's aligned data (``train/`` = members, ``test/`` = non-members) teacher and student are audited
by :func:`akdray.protect_audit.audit_model`; without it nothing is measured, and the output says so.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import nn

import akdray
from akdray.protect_audit import audit_model, roc_plot
from akdray.checkpoint import CHECKPOINT_NAME, LoadedGenerator, load_generator, save_generator
from akdray.config import FIELD_TYPES, RunConfig, make_config, parse_value
from akdray.data.aligned import DataError, load_aligned_split
from akdray.data.splits import InputImages, PairedImages, Splits, check_disjoint
from akdray.defenses.distill import fit_student, teacher_query
from akdray.inputs import list_input_files, read_input
from akdray.outdir import atomic_dir, check_out_dir
from akdray.pix2pix_format import check_exportable, check_image_size, write_official
from akdray.attacks.references import serve_generator
from akdray.schema import CONFIG_FILE
from akdray.train import resolve_device

PROTECT_FILE, REPORT_FILE, ROC_FILE, SCORES_FILE, OFFICIAL_DIR = (
    "protect.json", "report.md", "roc.png", "scores.parquet", "pix2pix")
ARCH_FIELDS = ("image_size", "ngf", "unet_depth", "norm", "use_dropout")
NOT_MEASURED = "no --audit-data: nothing was measured; the student's privacy and quality are unverified"


@dataclass
class ProtectJob:
    """Everything checked and loaded before training starts."""

    cfg: RunConfig
    teacher: LoadedGenerator
    proxy: InputImages
    proxy_aligned: bool
    audit: Splits | None
    out: Path
    device: torch.device


def _typed(overrides: dict[str, str]) -> dict:
    return {k: parse_value(k, v) if FIELD_TYPES[k] is not str else v for k, v in overrides.items()}


def _teacher_defaults(loaded: LoadedGenerator) -> dict:
    """The student copies the teacher's architecture, so it drops into the same serving pipeline."""
    t = loaded.cfg
    values = {name: getattr(t, name) for name in ARCH_FIELDS}
    values["unet_depth"] = t.resolved_unet_depth
    values["direction"] = t.direction if loaded.format == "akdray" else "AtoB"
    return values


def _digests(x: torch.Tensor) -> list[str]:
    return [hashlib.sha1(img.numpy().tobytes()).hexdigest() for img in x]


def _load_audit(root: Path, cfg: RunConfig, proxy: InputImages) -> Splits:
    """Members (``train/``) and non-members (``test/``); refuses a proxy input that is a member's input."""
    if not root.is_dir():
        raise DataError(f"--audit-data {root} does not exist (expected {root}/{cfg.train_split} and {root}/{cfg.test_split})")
    load = lambda split, n: PairedImages(*load_aligned_split(root / split, cfg.image_size, cfg.direction, n))  # noqa: E731
    train, test = load(cfg.train_split, cfg.n_train), load(cfg.test_split, cfg.n_test)
    check_disjoint(train, test, "test")
    members = dict(zip(_digests(train.x), train.names))
    for digest, name in zip(_digests(proxy.x), proxy.names):
        if digest in members:
            raise DataError(f"proxy image {name} is the input of member {members[digest]}: the proxy set must not "
                            "overlap the private training set")
    if cfg.attack_n_per_side > min(len(train), len(test)):
        raise DataError(f"field 'attack_n_per_side' ({cfg.attack_n_per_side}) exceeds the smaller of "
                        f"{root / cfg.train_split} ({len(train)}) and {root / cfg.test_split} ({len(test)})")
    empty = PairedImages(train.x[:0], train.y[:0], ())
    return Splits(train=train, proxy=empty, test=test, key=f"audit-{root.resolve()}-{cfg.direction}-{cfg.image_size}px")


def prepare_protect(teacher: str | Path, proxy: str | Path, out: str | Path, *, audit_data: str | Path | None = None,
                    preset: str = "cpu-small", overrides: dict[str, str] | None = None, layout: str = "auto") -> ProtectJob:
    """Check every input (teacher, proxy, audit data, output folder, export) before any training."""
    out_dir = check_out_dir(out)
    user = _typed(overrides or {})
    loaded = load_generator(teacher, image_size=user.get("image_size"), use_dropout=user.get("use_dropout", True))
    files = list_input_files(proxy, layout)
    values = {**_teacher_defaults(loaded), "method": "akd", "teacher_checkpoint": str(loaded.file),
              "data_source": "aligned", "data_root": str(audit_data or proxy), "proxy_split": str(Path(proxy).resolve()),
              "n_train": 0, "proxy_pool_size": 0, "proxy_size": len(files), "n_test": 0, **user}
    cfg = make_config(preset, values)
    check_image_size(cfg.image_size, loaded.cfg.resolved_unet_depth, loaded.file)
    check_exportable(cfg)
    if cfg.proxy_size > len(files):
        raise DataError(f"field 'proxy_size' ({cfg.proxy_size}) is larger than the proxy folder {proxy} ({len(files)} images)")
    order = torch.randperm(len(files), generator=torch.Generator().manual_seed(cfg.seed))[: cfg.proxy_size].sort().values
    picked = [files[i] for i in order.tolist()]
    inputs = InputImages(torch.stack([read_input(f, cfg.image_size, cfg.direction) for f in picked]),
                         tuple(str(f.path) for f in picked))
    audit = _load_audit(Path(audit_data), cfg, inputs) if audit_data else None
    return ProtectJob(cfg, loaded, inputs, files[0].aligned, audit, out_dir, resolve_device(cfg))


def _model_row(metrics: dict) -> dict:
    keys = ("mia_auc", "mia_auc_ci_low", "mia_auc_ci_high", "leakage", "ci_contains_chance", "mia_tpr_at_1pct_fpr",
            "mia_tpr_at_0p1pct_fpr", "mia_balanced_acc", "train_l1", "test_l1", "kid", "nkid", "gen_gap")
    return {k: metrics.get(k) for k in keys}


def _audit_both(job: ProtectJob, student: nn.Module) -> tuple[dict, dict]:
    cfg, device = job.cfg, job.device
    models = {"teacher": job.teacher.generator, "student": student}
    results = {name: audit_model(serve_generator(G, cfg, device), job.audit, cfg, device) for name, G in models.items()}
    first = results["teacher"][0]
    audit = {"data": cfg.data_root, "inference_mode": cfg.inference_mode, "attack": "loss (Eq. 3): score = -L1(G(x), y)",
             "n_members": first["n_members"], "n_nonmembers": first["n_nonmembers"], "n_bootstrap": first["n_bootstrap"],
             **{name: _model_row(m) for name, (m, _) in results.items()}}
    audit["leakage_reduction"] = audit["teacher"]["leakage"] - audit["student"]["leakage"]
    audit["nkid_change"] = audit["student"]["nkid"] - audit["teacher"]["nkid"]
    return audit, {name: s for name, (_, s) in results.items()}


def run_protect(job: ProtectJob) -> dict:
    """Train the student, audit both models if there is audit data, write ``OUT`` atomically."""
    cfg, t0 = job.cfg, time.perf_counter()
    query = teacher_query(job.teacher.generator.to(job.device), cfg.teacher_inference_mode, cfg.teacher_dropout)
    student, _ = fit_student(cfg, query, job.proxy, adversarial=True, device=job.device)
    train_s = time.perf_counter() - t0
    audit, scores = _audit_both(job, student) if job.audit is not None else (None, {})
    result = {
        "teacher": {"checkpoint": str(job.teacher.file), "format": job.teacher.format,
                    **{k: getattr(job.teacher.cfg, k) for k in ARCH_FIELDS}},
        "student": {"checkpoint": CHECKPOINT_NAME, "official": f"{OFFICIAL_DIR}/latest_net_G.pth",
                    **{k: getattr(cfg, k) for k in ARCH_FIELDS}},
        "proxy": {"folder": cfg.proxy_split, "n_images": len(job.proxy), "aligned": job.proxy_aligned,
                  "read": "input halves only" if job.proxy_aligned else "input images"},
        "measured": audit is not None, "audit": audit, "note": None if audit else NOT_MEASURED,
        "train_s": train_s, "wall_s": time.perf_counter() - t0, "akdray_version": akdray.__version__,
        "torch_version": torch.__version__, "config": cfg.to_dict(),
    }
    with atomic_dir(job.out) as tmp:
        save_generator(tmp / CHECKPOINT_NAME, student.cpu(), cfg)
        (tmp / OFFICIAL_DIR).mkdir()
        write_official(tmp / OFFICIAL_DIR, student, cfg, cfg.inference_mode)
        (tmp / CONFIG_FILE).write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
        if audit is not None:
            frames = [s.assign(model=name) for name, s in scores.items()]
            pd.concat(frames, ignore_index=True).to_parquet(tmp / SCORES_FILE, index=False)
            roc_plot(scores, tmp / ROC_FILE, f"loss attack, {audit['n_members']} members / {audit['n_nonmembers']} non-members")
            (tmp / REPORT_FILE).write_text(report_markdown(result))
        (tmp / PROTECT_FILE).write_text(json.dumps(result, indent=2) + "\n")
    return result


def _fmt(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def audit_table(audit: dict) -> list[str]:
    """The before/after Markdown table of an audit."""
    lines = ["| model | attack AUC [95% CI] | leakage \\|AUC−0.5\\| | CI contains 0.5 | TPR@1%FPR | NKID | test L1 |",
             "|---|---|---|---|---|---|---|"]
    for name in ("teacher", "student"):
        m = audit[name]
        lines.append(f"| {name} | {_fmt(m['mia_auc'])} [{_fmt(m['mia_auc_ci_low'])}, {_fmt(m['mia_auc_ci_high'])}] | "
                     f"{_fmt(m['leakage'])} | {'yes' if m['ci_contains_chance'] else 'no'} | "
                     f"{_fmt(m['mia_tpr_at_1pct_fpr'], 2)} | {_fmt(m['nkid'])} | {_fmt(m['test_l1'])} |")
    return lines


def report_markdown(result: dict) -> str:
    """``report.md``: what was protected, the before/after table, how to read it, the ROC figure."""
    audit = result["audit"]
    lines = [f"# akdray protect: {result['teacher']['checkpoint']}", "",
             f"Student trained by AKD on {result['proxy']['n_images']} proxy inputs ({result['proxy']['read']}) "
             f"from `{result['proxy']['folder']}`; teacher format: {result['teacher']['format']}.", ""]
    if audit is None:
        return "\n".join(lines + [NOT_MEASURED, ""])
    lines += [f"Audit on `{audit['data']}`: {audit['n_members']} members (train/) vs {audit['n_nonmembers']} "
              f"non-members (test/), {audit['attack']}, inference mode `{audit['inference_mode']}`, "
              f"95% CIs from {audit['n_bootstrap']} seeded stratified bootstrap resamples.", "",
              *audit_table(audit), "",
              f"Leakage |AUC−0.5| went from {_fmt(audit['teacher']['leakage'])} to {_fmt(audit['student']['leakage'])} "
              f"(reduction {_fmt(audit['leakage_reduction'])}); NKID changed by {_fmt(audit['nkid_change'])} "
              "(lower is better). An AUC below 0.5 is not more private: an attacker flips the score.", "",
              f"![ROC curves]({ROC_FILE})", ""]
    return "\n".join(lines)
