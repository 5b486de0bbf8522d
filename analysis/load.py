"""Read a sweep for the analysis: ``SWEEP_DIR/{results,scores,samples}`` and ``sweep.json``.

The Parquet datasets are read by :func:`akdray.results.read_dataset` (the sweep's own reader and
schema); ``SWEEP_DIR`` may be a local folder or any URI pyarrow understands (``s3://...``), so a
cluster's sweep is read in place.

Row conventions (see :func:`normalize_results`): ``method`` is a plain ``str``, ``stage`` defaults
to ``"teacher"``/``"search"`` when absent, ``status`` to ``"ok"``, and the config fields and the
metrics used here are numeric.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from akdray.config import DEPLOYED_METHODS, FIELD_TYPES
from akdray.results import RESULTS, SWEEP_FILE, read_dataset
from akdray.schema import ATTACKS, LEAK_KEYS, TEXT_METRIC_KEYS, attack_columns
from akdray.storage import StorageError, read_bytes

# What a row's ``leak`` is: rows without ``leak_max`` were written before issue #27, when leak WAS the maximum.
CURRENT_AXIS, LEGACY_AXIS = "chosen on held-out images", "max over attacks (before issue #27)"
NUMERIC_LEAK_KEYS = tuple(k for k in LEAK_KEYS if k not in TEXT_METRIC_KEYS)
METHOD_ORDER = DEPLOYED_METHODS  # teacher, akd, dmp, dpsgd, gauss: the order of every table and legend
# Metric / info columns this package reads; coerced to float (a failed row's None -> NaN).
NUMERIC_COLUMNS = (
    *(c for a in ATTACKS for c in attack_columns(a)), *NUMERIC_LEAK_KEYS, "n_references", "proxy_mia_auc",
    "train_l1", "test_l1", "kid", "kid_std", "kid_max", "nkid", "kid_train", "nkid_train", "gen_gap",
    "dp_epsilon", "dp_sample_rate", "dp_steps", "wall_s", "train_s", "eval_s", "val_nkid", "val_kid",
    *(f"val_{c}" for c in NUMERIC_LEAK_KEYS), *(f"val_{c}" for a in ATTACKS for c in attack_columns(a)),
)


class NoResultsError(FileNotFoundError):
    """``SWEEP_DIR/results`` is missing or holds no rows."""


def _cast_field(series: pd.Series, typ: type) -> pd.Series:
    if typ is str:
        return series.astype(object).where(series.notna(), "").astype(str)
    if typ is bool:
        if series.dtype == bool:
            return series
        return series.map(lambda v: str(v).strip().lower() in ("true", "1", "yes", "1.0"))
    return pd.to_numeric(series, errors="coerce")


def normalize_results(df: pd.DataFrame) -> pd.DataFrame:
    """Typed copy of a results frame (idempotent); safe on a frame from ``pd.read_parquet``."""
    out = df.copy()
    if "method" not in out.columns:
        raise ValueError("results have no 'method' column")
    out["method"] = out["method"].astype(str)
    for name, typ in FIELD_TYPES.items():
        if name in out.columns and name != "method":
            out[name] = _cast_field(out[name], typ)
    if "leak" not in out.columns and "mia_auc" in out.columns:  # a sweep from before the calibrated attacks
        out["loss_auc"] = pd.to_numeric(out["mia_auc"], errors="coerce")
        out["leak"] = np.maximum(out["loss_auc"], 1.0 - out["loss_auc"])
        out["leak_source"] = "loss"
    for name in NUMERIC_COLUMNS:
        if name in out.columns:
            out[name] = pd.to_numeric(out[name], errors="coerce")
    if "trial_id" not in out.columns:
        out["trial_id"] = [f"row{i:06d}" for i in range(len(out))]
    out["trial_id"] = out["trial_id"].astype(str)
    default_stage = out["method"].map(lambda m: "teacher" if m == "teacher" else "search")
    out["stage"] = out["stage"].astype(object).where(out["stage"].notna(), default_stage) if "stage" in out else default_stage
    out["stage"] = out["stage"].astype(str)
    out["status"] = out["status"].astype(object).fillna("ok").astype(str) if "status" in out else "ok"
    if "preset" not in out.columns:
        out["preset"] = "cpu-small"
    for name in ("sweep_id", "pick"):  # ``pick``: the confirmation label, None outside that stage
        column = out[name] if name in out.columns else pd.Series(None, index=out.index, dtype=object)
        out[name] = column.astype(object).where(column.notna(), None)
    out = out.reset_index(drop=True).copy()  # one block: later .assign calls stay fast
    if "leak" in out.columns:
        current = out["leak_max"].notna() if "leak_max" in out.columns else pd.Series(False, index=out.index)
        out["leak_axis"] = np.where(current, CURRENT_AXIS, LEGACY_AXIS)
    return out


def _sweep_uri(sweep_dir: str | Path) -> str:
    text = str(sweep_dir).rstrip("/")
    return text if "://" in text else str(Path(text).expanduser().resolve())


def ok_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Rows that ran to the end (status ``ok``) with both objectives (``leak``, ``nkid``) present."""
    keep = (df["status"] == "ok") & df["leak"].notna() & df["nkid"].notna()
    return df[keep]


def load_results(sweep_dir: str | Path) -> pd.DataFrame:
    """The normalised results rows; raises :class:`NoResultsError` with the path it looked at."""
    root = _sweep_uri(sweep_dir)
    df = read_dataset(root, RESULTS)
    if df.empty:
        raise NoResultsError(f"no results dataset: {root}/{RESULTS} is missing or holds no Parquet rows")
    return normalize_results(df)


def load_rows_for(sweep_dir: str | Path, dataset: str, trial_ids) -> pd.DataFrame:
    """Rows of ``scores`` or ``samples`` for the given trials (empty frame if the dataset is absent)."""
    ids = {str(t) for t in trial_ids}
    df = read_dataset(_sweep_uri(sweep_dir), dataset, where={"trial_id": ids}) if ids else None
    if df is None or df.empty:
        return pd.DataFrame(columns=["trial_id", "method"])
    df["trial_id"] = df["trial_id"].astype(str)
    df["method"] = df["method"].astype(str)
    return df[df["trial_id"].isin(ids)].reset_index(drop=True)


def load_provenance(sweep_dir: str | Path) -> dict:
    """``sweep.json`` as a dict, or ``{}`` if the sweep has none (or it is unreadable)."""
    try:
        data = json.loads(read_bytes(f"{_sweep_uri(sweep_dir)}/{SWEEP_FILE}").decode())
    except (FileNotFoundError, OSError, StorageError, ValueError):
        return {}
    return data if isinstance(data, dict) else {"sweep.json": data}
