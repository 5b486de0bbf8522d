"""Hand-built sweeps with known answers, for the tests and for trying the report without a cluster.

:func:`row` makes one results row with every ``RunConfig`` field (the ``tiny`` preset), the metrics
and the sweep columns; :func:`write_sweep` writes each row with :func:`akdray.results.write_trial`
(the sweep's own writer and schema), with matching ``scores`` and ``samples``, in which members'
losses are lower than non-members' by an amount that grows with the row's ``loss_auc``.
"""
from __future__ import annotations

import io
import json
import zlib
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd
from PIL import Image

from akdray.config import METHODS_NEEDING_TEACHER, make_config
from akdray.results import write_trial
METRICS_NONE = ("loss_tpr_at_1pct_fpr", "loss_tpr_at_0p1pct_fpr", "loss_balanced_acc", "proxy_mia_auc", "train_l1",
                "test_l1", "kid", "nkid_train", "gen_gap", "dp_epsilon")


def row(method: str, trial_id: str, loss_auc: float | None, nkid: float | None, *, seed: int = 0,
        stage: str | None = None, status: str = "ok", **extra: Any) -> dict[str, Any]:
    """One results row; ``extra`` overrides config fields, metrics or sweep columns."""
    teacher = {"teacher_checkpoint": f"/sweep/teachers/seed{seed}"} if method in METHODS_NEEDING_TEACHER else {}
    config = make_config("tiny", {"method": method, "seed": seed, **teacher}).to_dict()
    metrics = {k: None for k in METRICS_NONE}
    if status == "ok" and loss_auc is not None:
        metrics.update(loss_tpr_at_1pct_fpr=round(loss_auc - 0.45, 6), loss_tpr_at_0p1pct_fpr=round(loss_auc - 0.48, 6),
                       nkid_train=round(nkid - 0.05, 6), gen_gap=0.05)
    leak = None if loss_auc is None else max(loss_auc, 1.0 - loss_auc)
    out = {**config, "loss_auc": loss_auc, "leak": leak, "leak_max": leak, "leak_source": "loss", "nkid": nkid, **metrics, "status": status,
           "error": None if status == "ok" else "diverged: loss is nan", "wall_s": 10.0, "train_s": 8.0,
           "eval_s": 2.0, "device_used": "cpu", "started_at": "2026-01-01T00:00:00+00:00",
           "finished_at": "2026-01-01T00:00:10+00:00", "akdray_version": "0.1.0", "torch_version": "2.9.0",
           "host": "node1", "sweep_id": "sw1", "trial_id": trial_id,
           "stage": stage or ("teacher" if method == "teacher" else "search"), "study": method,
           "recorded_at": "2026-01-01T00:00:11+00:00"}
    out.update(extra)
    return out


def png(seed: int, size: int = 16) -> bytes:
    """A small, visibly non-blank RGB PNG (a seeded gradient and noise)."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, size)[None, :, None] * rng.uniform(0.3, 1.0, 3)
    pixels = np.clip(ramp + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def scores_for(r: dict[str, Any], n: int = 20) -> pd.DataFrame:
    """Attack scores of one ok row: member losses shifted down by ``(auc - 0.5)``."""
    rng = np.random.default_rng(zlib.crc32(str(r["trial_id"]).encode()))
    shift = 0.2 * max(float(r["loss_auc"]) - 0.5, 0.0)
    loss_in, loss_out = rng.normal(0.30 - shift, 0.03, n).clip(0.01), rng.normal(0.30, 0.03, n).clip(0.01)
    loss = np.r_[loss_in, loss_out]
    return pd.DataFrame({"attack": "loss", "role": ["train"] * n + ["test"] * n,
                         "name": [f"synthetic/train/{i:05d}" for i in range(n)] + [f"synthetic/test/{i:05d}" for i in range(n)],
                         "is_member": [True] * n + [False] * n, "loss": loss, "score": -loss})


def samples_for(r: dict[str, Any], n: int = 4) -> pd.DataFrame:
    return pd.DataFrame({"name": [f"synthetic/test/{i:05d}" for i in range(n)],
                         "input_png": [png(100 + i) for i in range(n)], "target_png": [png(200 + i) for i in range(n)],
                         "output_png": [png(zlib.crc32(f"{r['trial_id']}/{i}".encode())) for i in range(n)]})


def write_sweep(sweep_dir: Path, rows: Iterable[dict[str, Any]], *, scores: bool = True, samples: bool = True,
                sweep_json: dict | None = None) -> Path:
    """Write ``results`` (and ``scores``/``samples`` for ok rows) as the sweep does."""
    sweep_dir = Path(sweep_dir)
    for r in rows:
        ok = r["status"] == "ok"
        write_trial(str(sweep_dir), r, scores=scores_for(r) if scores and ok else None,
                    samples=samples_for(r) if samples and ok else None)
    if sweep_json is not None:
        (sweep_dir / "sweep.json").write_text(json.dumps(sweep_json))
    return sweep_dir


def known_rows() -> list[dict[str, Any]]:
    """The known-answer sweep of the tests (see tests/test_analysis.py for the expected picks).

    Teachers: mean NKID 0.25, so with tol 0.5 AKD needs NKID <= 0.375 -> a2 (AUC .55, NKID .35).
    DP-SGD: nearest NKID to .35 is a tie d2/d3 (both .05 away) -> d3 (lower AUC); nearest AUC to .55
    is a tie d1/d4 (.02 away) -> d1 (lower NKID). DMP has one trial -> both DMP picks are m1.
    """
    return [
        row("teacher", "t0", 0.80, 0.20, seed=0), row("teacher", "t1", 0.78, 0.30, seed=1),
        row("akd", "a1", 0.50, 0.60), row("akd", "a2", 0.55, 0.35, distill_lambda=50.0),
        row("akd", "a3", 0.70, 0.20), row("akd", "a4", 0.56, 0.36),
        row("akd", "a5", None, None, status="failed"),  # failed: never picked, counted
        row("akd", "a6", 0.40, 0.10, stage="confirm", pick="akd"),  # a confirm row is not a search point
        row("dpsgd", "d1", 0.53, 0.80, dp_noise_multiplier=0.5), row("dpsgd", "d2", 0.60, 0.40),
        row("dpsgd", "d3", 0.58, 0.30, dp_noise_multiplier=2.0), row("dpsgd", "d4", 0.57, 0.90),
        row("dmp", "m1", 0.52, 0.45),
    ]


# The hyper-parameters of the known sweep's picks (see known_rows), which their confirmation runs repeat.
PICKED_RECIPES = {"akd": {"distill_lambda": 50.0}, "dpsgd@utility": {"dp_noise_multiplier": 2.0},
                  "dpsgd@privacy": {"dp_noise_multiplier": 0.5}}


def confirm_rows(picks: Iterable[tuple[str, str, float, float]] = (
        ("teacher", "teacher", 0.80, 0.20), ("akd", "akd", 0.55, 0.35), ("dpsgd@utility", "dpsgd", 0.60, 0.36)),
        seeds: Iterable[int] = range(5), failed: str | None = "akd",
        recipes: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Confirmation rows ``(label, method, auc, nkid)`` x seeds with the pick's hyper-parameters
    (``recipes``, default :data:`PICKED_RECIPES`); AUC rises .01 and NKID .02 per seed.
    One extra failed row for the ``failed`` label (counted, never averaged)."""
    recipes = PICKED_RECIPES if recipes is None else recipes
    out = []
    for label, method, auc, nkid in picks:
        for seed in seeds:
            out.append(row(method, f"c-{label}-{seed}", round(auc + 0.01 * seed, 6), round(nkid + 0.02 * seed, 6),
                           seed=seed, stage="confirm", pick=label, **recipes.get(label, {})))
    if failed:
        method = next(m for label, m, _, _ in picks if label == failed)
        out.append(row(method, f"c-{failed}-fail", None, None, seed=99, stage="confirm", pick=failed, status="failed",
                       **recipes.get(failed, {})))
    return out
