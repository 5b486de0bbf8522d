"""The sweep's ``reference`` stage: K reference models per (data set, seed), trained once as Ray
Train trials of their own experiment and handed to every later trial as ``reference_checkpoints``
(comma-separated checkpoint URIs), the way the teacher is handed over as ``teacher_checkpoint``.

A reference model depends only on the data draw, not on the teacher or any defense, so the stage
runs *first*: then the teachers, too, are audited with the calibrated attacks (cal, lira) - a
reference stage after the teachers would leave the Regular model with the loss attack only.
Trial configs are :func:`akdray.audit.reference_config` (seed ``10_000 * (k + 1) + s``, data draw
``s``); rows have ``stage = "reference"`` and method ``reference`` (no KID, so no NKID).
"""
from __future__ import annotations

import os
from typing import Any, Iterable

from akdray.audit import reference_config
from akdray.config import RunConfig
from akdray.parquet_sink import CONFIRM_KEY, META_KEY, RESULTS, read_dataset

DEFAULT_REFERENCES = 2  # each costs about one teacher training (no KID); docs/sweeps.md, "Cost on 2 CPU cores"
SMOKE_REFERENCES = 2


def reference_items(targets: Iterable[RunConfig], k: int) -> list[dict[str, Any]]:
    """One trial config per reference model of each distinct (preset, data draw) of ``targets``."""
    seen, items = set(), []
    for cfg in targets:
        key = (cfg.preset, cfg.resolved_data_seed)
        if key in seen:
            continue
        seen.add(key)
        items += [{"pick": None, "cfg": reference_config(cfg, i).to_dict()} for i in range(k)]
    return items


def reference_space(items: list[dict[str, Any]], meta: dict[str, Any]) -> dict[str, Any]:
    from ray import tune

    return {META_KEY: meta, CONFIRM_KEY: tune.grid_search(items)}


def found_references(sweep_uri: str, sweep_id: str, stage: str) -> dict[tuple[str, int], list[str]]:
    """Checkpoint URIs of the ok reference runs of a stage, by (preset, data draw), in seed order."""
    df = read_dataset(sweep_uri, RESULTS)
    if df.empty:
        return {}
    ok = df[(df["stage"] == stage) & (df["status"] == "ok") & (df["sweep_id"] == sweep_id)].sort_values("seed")
    out: dict[tuple[str, int], list[str]] = {}
    for r in ok.itertuples():
        if isinstance(r.checkpoint, str):
            out.setdefault((str(r.preset), int(r.data_seed)), []).append(r.checkpoint)
    return out


def localize_references(cfg: RunConfig, tmp: str) -> RunConfig:
    """Inside a Train worker: fetch reference checkpoints given as URIs (s3://, file://) to ``tmp``."""
    if "://" not in cfg.reference_checkpoints:
        return cfg
    import ray.train

    local = [ray.train.Checkpoint(uri).to_directory(os.path.join(tmp, f"reference{i}")) if "://" in uri else uri
             for i, uri in enumerate(cfg.reference_list)]
    return cfg.replace(reference_checkpoints=",".join(local))
