"""``akdray protect``: post-hoc AKD for a generator someone already has (akdray or official pix2pix).

The teacher is read by :func:`akdray.checkpoint.load_generator`; the student is trained on the
proxy *inputs* only (:class:`~akdray.data.splits.InputImages` from :func:`akdray.inputs.load_inputs`:
of an aligned proxy folder only the input halves are kept) by the same :func:`fit_student` as
``akdray run --method akd``, with the teacher's architecture unless ``--set`` says otherwise. The
student is written in both formats (``checkpoint.pt`` and ``pix2pix/latest_net_G.pth``). With the
owner's aligned data (``train/`` = members, ``test/`` = non-members) teacher and student are audited
by :func:`akdray.protect_audit.audit_model` - the loss attack, and with ``--references K`` (K >= 2
reference models trained on the audit data's ``val/`` pairs) the calibrated lira and rmia attacks;
without audit data nothing is measured, and the output says so.
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
from akdray import seeds
from akdray.attacks.references import load_references, serve_generator
from akdray.attacks.scores import LIRA_MIN_REFERENCES
from akdray.audit import REFERENCE_SPLIT, train_references
from akdray.checkpoint import CHECKPOINT_NAME, LoadedGenerator, load_generator, save_generator
from akdray.bounds import MAX_REFERENCES
from akdray.config import FIELD_TYPES, ConfigError, RunConfig, make_config, parse_value
from akdray.data.aligned import DataError, list_images, load_aligned_split
from akdray.data.splits import InputImages, PairedImages, Splits, check_disjoint
from akdray.defenses.distill import fit_student, teacher_query
from akdray.inputs import list_input_files, read_input
from akdray.outdir import atomic_dir, check_out_dir
from akdray.pix2pix_format import check_exportable, check_image_size, write_official
from akdray.attacks.roc import roc_png
from akdray.protect_audit import audit_model, model_summary
from akdray.schema import ATTACKS, CONFIG_FILE, ROC_FILE, SCORES_FILE
from akdray.audit_inputs import check_audit_counts, check_split_sizes
from akdray.data.splits import local_root
from akdray.preflight import check_count, check_not_inside, check_uri, checked_device, expand

PROTECT_FILE, REPORT_FILE, OFFICIAL_DIR = "protect.json", "report.md", "pix2pix"  # beside schema's ROC_FILE, SCORES_FILE
ARCH_FIELDS = ("image_size", "ngf", "unet_depth", "norm", "use_dropout")
# Fields protect sets itself: a --set of one of them would be ignored or contradict what runs (e.g.
# method=dmp used to train AKD and record "dmp").
PROTECT_OWNS = ("method", "teacher_checkpoint", "data_source", "data_root", "proxy_split", "n_val", "eval_split",
                "reference_checkpoints")
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
    references: int = 0  # reference models to train on <audit-data>/val for the lira and rmia attacks
    resized: bool = False  # --resize: audit images of another size were resized to the model's


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


def _load_audit(root: Path, cfg: RunConfig, proxy: InputImages, resize: bool = False) -> Splits:
    """Members (``train/``) and non-members (``test/``); refuses a proxy input that is a member's or a
    non-member's input (a student trained on the non-members' inputs would be audited on them as unseen)."""
    if not root.is_dir():
        raise DataError(f"--audit-data {root} does not exist (expected {root}/{cfg.train_split} and {root}/{cfg.test_split})")
    check_split_sizes(root, (cfg.train_split, cfg.test_split), cfg.image_size, resize=resize, label="--audit-data")
    load = lambda split, n: PairedImages(*load_aligned_split(root / split, cfg.image_size, cfg.direction, n))  # noqa: E731
    train, test = load(cfg.train_split, cfg.n_train), load(cfg.test_split, cfg.n_test)
    check_disjoint(train, test, "test")
    members = dict(zip(_digests(train.x), train.names))
    nonmembers = dict(zip(_digests(test.x), test.names))
    for digest, name in zip(_digests(proxy.x), proxy.names):
        if digest in members:
            raise DataError(f"proxy image {name} is the input of member {members[digest]}: the proxy set must not "
                            "overlap the private training set")
        if digest in nonmembers:
            raise DataError(f"proxy image {name} is the input of non-member {nonmembers[digest]}: the student would "
                            "be trained on the inputs it is then audited on as unseen; the proxy set must not overlap "
                            f"{root / cfg.test_split}")
    if cfg.attack_n_per_side > min(len(train), len(test)):
        raise DataError(f"field 'attack_n_per_side' ({cfg.attack_n_per_side}) exceeds the smaller of "
                        f"{root / cfg.train_split} ({len(train)}) and {root / cfg.test_split} ({len(test)})")
    check_audit_counts(cfg.attack_n_per_side or len(train), cfg.attack_n_per_side or len(test), f"--audit-data {root}")
    empty = PairedImages(train.x[:0], train.y[:0], ())
    return Splits(train=train, proxy=empty, test=test, key=f"audit-{root.resolve()}-{cfg.direction}-{cfg.image_size}px")


def prepare_protect(teacher: str | Path, proxy: str | Path, out: str | Path, *, audit_data: str | Path | None = None,
                    preset: str = "cpu-small", overrides: dict[str, str] | None = None, layout: str = "auto",
                    references: int = 0, resize: bool = False) -> ProtectJob:
    """Check every input (teacher, proxy, audit data, output folder, export) before any training."""
    teacher, proxy = expand(teacher), expand(proxy)
    audit_data = expand(check_uri(str(audit_data), "--audit-data")) if audit_data else None
    out_dir = check_out_dir(expand(out))
    check_not_inside(out_dir, {"--teacher": teacher, "--proxy": proxy, "--audit-data": audit_data})
    check_count("--references", references, 0, MAX_REFERENCES)
    owned = sorted(set(overrides or {}) & set(PROTECT_OWNS))
    if owned:
        raise ConfigError(f"--set {', '.join(owned)}: protect sets {', '.join(PROTECT_OWNS)} itself (it trains AKD "
                          "students from --teacher on --proxy and audits on --audit-data); use those flags instead")
    user = _typed(overrides or {})
    loaded = load_generator(teacher, image_size=user.get("image_size"), use_dropout=user.get("use_dropout", True))
    if loaded.format == "akdray" and loaded.cfg.method == "reference":
        raise ConfigError(f"--teacher {teacher} is a 'reference' run (a shadow model for the calibrated attacks), "
                          "not a deployed model to protect")
    files = list_input_files(proxy, layout)
    values = {**_teacher_defaults(loaded), "method": "akd", "teacher_checkpoint": str(loaded.file),
              "data_source": "aligned", "data_root": str(audit_data or proxy), "proxy_split": str(Path(proxy).resolve()),
              "n_train": 0, "proxy_pool_size": 0, "proxy_size": len(files), "n_test": 0, **user,
              # the audit is train/ (members) vs test/ (non-members): no validation set is carved or read
              "n_val": 0, "eval_split": "test"}
    cfg = make_config(preset, values)
    check_image_size(cfg.image_size, loaded.cfg.resolved_unet_depth, loaded.file)
    check_exportable(cfg)
    device = checked_device(cfg)
    audit_root = local_root(audit_data) if audit_data else None
    if cfg.proxy_size > len(files):
        raise DataError(f"field 'proxy_size' ({cfg.proxy_size}) is larger than the proxy folder {proxy} ({len(files)} images)")
    draw = torch.Generator().manual_seed(seeds.PROXY_SUBSET.seed(cfg.seed))
    order = torch.randperm(len(files), generator=draw)[: cfg.proxy_size].sort().values
    picked = [files[i] for i in order.tolist()]
    inputs = InputImages(torch.stack([read_input(f, cfg.image_size, cfg.direction) for f in picked]),
                         tuple(str(f.path) for f in picked))
    _check_references(references, audit_root)
    if audit_root is not None and references:
        check_split_sizes(audit_root, (cfg.train_split, REFERENCE_SPLIT, cfg.test_split), None, label="--audit-data")
    audit = _load_audit(audit_root, cfg, inputs, resize) if audit_root is not None else None
    return ProtectJob(cfg, loaded, inputs, files[0].aligned, audit, out_dir, device, references,
                      resized=bool(audit_root is not None and resize))


def _check_references(n: int, audit_data: str | Path | None) -> None:
    if n == 0:
        return
    if n < LIRA_MIN_REFERENCES:
        raise ConfigError(f"--references {n}: LiRA needs at least {LIRA_MIN_REFERENCES} reference models (or give 0)")
    if not audit_data:
        raise ConfigError("--references needs --audit-data (reference models are audited against its train/ and test/)")
    list_images(Path(audit_data) / REFERENCE_SPLIT)  # DataError naming the folder if it is missing or empty


def reference_base(cfg: RunConfig) -> RunConfig:
    """The recipe reference models are trained with: the student's preset and the teacher's architecture,
    as a teacher on pairs of ``<audit-data>/val`` (never an audited image; the proxy folder may hold no targets)."""
    return cfg.replace(method="teacher", teacher_checkpoint="", proxy_split=REFERENCE_SPLIT, proxy_pool_size=0,
                       proxy_size=0, n_val=0)


def _audit_both(job: ProtectJob, student: nn.Module, reference_runs: list[str]) -> tuple[dict, dict]:
    cfg, device = job.cfg, job.device
    references = [serve_generator(R, cfg, device) for R, _ in load_references(reference_base(cfg), reference_runs)]
    models = {"teacher": job.teacher.generator, "student": student}
    results = {name: audit_model(serve_generator(G, cfg, device), job.audit, cfg, device, references)
               for name, G in models.items()}
    first = results["teacher"][0]
    audit = {"data": cfg.data_root, "resized": job.resized, "inference_mode": cfg.inference_mode,
             "attacks": [a for a in ATTACKS if first.get(f"{a}_auc") is not None],
             "n_references": len(references), "n_members": int(first["attack_n_members"]),
             "n_nonmembers": int(first["attack_n_nonmembers"]), "n_bootstrap": cfg.attack_bootstrap,
             **{name: model_summary(m) for name, (m, _) in results.items()}}
    audit["leak_reduction"] = audit["teacher"]["leak"] - audit["student"]["leak"]
    audit["nkid_change"] = audit["student"]["nkid"] - audit["teacher"]["nkid"]
    return audit, {name: s for name, (_, s) in results.items()}


def run_protect(job: ProtectJob) -> dict:
    """Train the student, audit both models if there is audit data, write ``OUT`` atomically."""
    cfg, t0 = job.cfg, time.perf_counter()
    query = teacher_query(job.teacher.generator.to(job.device), cfg.teacher_inference_mode, cfg.teacher_dropout)
    student, _ = fit_student(cfg, query, job.proxy, adversarial=True, device=job.device)
    train_s = time.perf_counter() - t0
    with atomic_dir(job.out) as tmp:
        refs = train_references(reference_base(cfg), job.references, tmp) if job.references else []
        audit, scores = _audit_both(job, student, refs) if job.audit is not None else (None, {})
        result = _result(job, audit, train_s, t0)
        _write(tmp, job, student, result, scores)
    return result


def _result(job: ProtectJob, audit: dict | None, train_s: float, t0: float) -> dict:
    cfg = job.cfg
    return {
        "teacher": {"checkpoint": str(job.teacher.file), "format": job.teacher.format,
                    **{k: getattr(job.teacher.cfg, k) for k in ARCH_FIELDS}},
        "student": {"checkpoint": CHECKPOINT_NAME, "official": f"{OFFICIAL_DIR}/latest_net_G.pth",
                    **{k: getattr(cfg, k) for k in ARCH_FIELDS}},
        "proxy": {"folder": cfg.proxy_split, "n_images": len(job.proxy), "aligned": job.proxy_aligned,
                  "read": "input halves only" if job.proxy_aligned else "input images"},
        "measured": audit is not None, "audit": audit, "note": None if audit else NOT_MEASURED,
        "train_s": train_s, "wall_s": time.perf_counter() - t0, "akdray_version": akdray.__version__,
        "torch_version": str(torch.__version__), "config": cfg.to_dict(),
    }


def _write(tmp: Path, job: ProtectJob, student: nn.Module, result: dict, scores: dict) -> None:
    cfg, audit = job.cfg, result["audit"]
    save_generator(tmp / CHECKPOINT_NAME, student.cpu(), cfg)
    (tmp / OFFICIAL_DIR).mkdir()
    write_official(tmp / OFFICIAL_DIR, student, cfg, cfg.inference_mode)
    (tmp / CONFIG_FILE).write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    if audit is not None:
        frames = [s.assign(model=name) for name, s in scores.items()]
        pd.concat(frames, ignore_index=True).to_parquet(tmp / SCORES_FILE, index=False)
        roc_png(scores, tmp / ROC_FILE, f"{', '.join(audit['attacks'])}: {audit['n_members']} members / "
                                         f"{audit['n_nonmembers']} non-members")
        (tmp / REPORT_FILE).write_text(report_markdown(result))
    (tmp / PROTECT_FILE).write_text(json.dumps(result, indent=2) + "\n")


def _fmt(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def audit_table(audit: dict) -> list[str]:
    """The before/after Markdown table of an audit: one row per model and attack."""
    lines = ["| model | attack | AUC [95% CI] | CI contains 0.5 | TPR@1%FPR | TPR@0.1%FPR | leak | NKID | test L1 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name in ("teacher", "student"):
        m = audit[name]
        for attack, a in m["attacks"].items():
            lines.append(f"| {name} | {attack} | {_fmt(a['auc'])} [{_fmt(a['auc_lo'])}, {_fmt(a['auc_hi'])}] | "
                         f"{'yes' if a['ci_contains_chance'] else 'no'} | {_fmt(a['tpr_at_1pct_fpr'], 2)} | "
                         f"{_fmt(a['tpr_at_0p1pct_fpr'], 3)} | {_fmt(m['leak'])} | {_fmt(m['nkid'])} | "
                         f"{_fmt(m['test_l1'])} |")
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
              f"non-members (test/); attacks {', '.join(audit['attacks'])} ({audit['n_references']} reference models); "
              f"inference mode `{audit['inference_mode']}`; 95% AUC CIs logit-DeLong, leak_p from {audit['n_bootstrap']} "
              "seeded permutations; TPR at an FPR f is – where fewer than 10/f non-members support it.", "",
              *audit_table(audit), "",
              f"Leakage (leak = the AUC of the attack chosen on held-out images; 0.5 = none, on average) went from "
              f"{_fmt(audit['teacher']['leak'])} to {_fmt(audit['student']['leak'])} (reduction "
              f"{_fmt(audit['leak_reduction'])}); NKID changed by {_fmt(audit['nkid_change'])} (lower is better). "
              "An AUC below 0.5 is not more private: an attacker flips the score.", "",
              f"![ROC curves]({ROC_FILE})", ""]
    return "\n".join(lines)
