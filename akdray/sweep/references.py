"""The sweep's ``reference`` stage: K reference models per (data set, seed), trained once as Ray
Train trials of their own experiment and handed to every later trial as ``reference_checkpoints``
(comma-separated checkpoint URIs), the way the teacher is handed over as ``teacher_checkpoint``.

A reference model depends only on the data draw, not on the teacher or any defense, so the stage
runs *first*: then the teachers, too, are audited with the calibrated attacks (cal, lira) - a
reference stage after the teachers would leave the Regular model with the loss attack only.
Trial configs are :func:`akdray.reference_recipe.reference_config` (seed ``10_000 * (k + 1) + s``, data draw
``s``); rows have ``stage = "reference"`` and method ``reference`` (no KID, so no NKID). With
``--references-per-trial N`` a trial trains N of them in one Train worker (Ray's start-up is paid
once per pack), each exactly as its own run would (tests/test_sweep.py compares the weights).
"""
from __future__ import annotations

from typing import Any, Iterable

from akdray.reference_recipe import draw_key, reference_config
from akdray.config import RunConfig
from akdray.results import RESULTS, read_dataset


def reference_items(targets: Iterable[RunConfig], k: int, per_trial: int = 1) -> list[dict[str, Any]]:
    """Grid items for the K reference models of each distinct (preset, data draw) of ``targets``,
    ``per_trial`` models to an item (the first as ``cfg``, the rest as ``pack``: one Train worker
    trains them one after another, each into a folder and a results row of its own)."""
    seen, items = set(), []
    for cfg in targets:
        key = draw_key(cfg)
        if key in seen:
            continue
        seen.add(key)
        configs = [reference_config(cfg, i).to_dict() for i in range(k)]
        for start in range(0, k, per_trial):
            first, *rest = configs[start:start + per_trial]
            items.append({"pick": None, "cfg": first, **({"pack": rest} if rest else {})})
    return items


def item_runs(items: list[dict[str, Any]]) -> int:
    """Runs (results rows) of grid items, packed ones counted one by one."""
    return sum(1 + len(item.get("pack", [])) for item in items)


def found_references(sweep_uri: str, sweep_id: str, stage: str) -> dict[tuple[str, int], list[str]]:
    """Checkpoint URIs of the ok reference runs of a stage, by (preset, data draw), in seed order."""
    df = read_dataset(sweep_uri, RESULTS)
    if df.empty:
        return {}
    ok = df[(df["stage"] == stage) & (df["status"] == "ok") & (df["sweep_id"] == sweep_id)].sort_values("seed")
    out: dict[tuple[str, int], list[str]] = {}
    for r in ok.itertuples():
        if isinstance(r.checkpoint, str):
            out.setdefault(draw_key(r), []).append(r.checkpoint)
    return out
