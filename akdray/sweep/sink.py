"""The Tune callback that streams every finished trial into the sweep's Parquet datasets.

One row per trial in ``SWEEP_DIR/results`` plus its ``scores`` and ``samples``, written as soon as
the trial finishes, through :func:`akdray.results.write_trial` (schema, layout and atomic writes
live there). Write failures are collected per experiment in :data:`SINK_FAILURES`; the stage raises
``StorageError`` from them when Tune returns (:func:`akdray.sweep.stages.run_experiment`).
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from ray.tune import Callback

from akdray.results import PARTITION, RESULT_SCHEMA, write_trial
from akdray.storage import join
from akdray.sweep.meta import split_trial_config
from akdray.sweep.trial import PACK_ROWS, pack_name

log = logging.getLogger(__name__)


def _error_text(trial) -> str:
    text = None
    try:
        text = trial.get_error()
    except Exception:  # noqa: BLE001 - the error file is best effort
        pass
    if not text and trial.error_file:
        try:
            with open(trial.error_file) as fh:
                text = fh.read()
        except OSError:
            pass
    text = str(text or "trial errored (no error text recorded)")
    return text[-4000:]


# Write failures per experiment, in the driver process (a restored Tuner unpickles its own sink).
SINK_FAILURES: dict[str, list[str]] = {}


class ParquetSink(Callback):
    """Tune callback: every finished trial -> Parquet rows, as soon as the trial finishes.

    Picklable (Tune stores it with the experiment, so a restored sweep keeps streaming).
    """

    def __init__(self, sweep_uri: str, experiment: str):
        self.sweep_uri = sweep_uri
        self.experiment = experiment

    def _base_row(self, trial) -> dict[str, Any]:
        config, meta, pick, _pack = split_trial_config(trial.config)
        return {
            **config, "sweep_id": meta.sweep_id, "stage": meta.stage, "study": meta.study, "pick": pick,
            "experiment": self.experiment, "trial_id": trial.trial_id, "trial_failures": trial.num_failures,
            "recorded_at": datetime.now(timezone.utc),
        }

    def _write(self, row: dict[str, Any]) -> None:
        try:
            write_trial(self.sweep_uri, row)
        except Exception as exc:  # noqa: BLE001 - recorded; the stage reports it when Tune returns
            log.exception("akdray: could not write the Parquet rows of trial %s", row.get("trial_id"))
            SINK_FAILURES.setdefault(self.experiment, []).append(f"trial {row.get('trial_id')}: {exc}")

    def _packed(self, trial, first: dict[str, Any], results: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
        """The rows of a packed trial's runs after the first: id ``<trial>-pack<i>``, folder ``pack<i>``."""
        pack = split_trial_config(trial.config).pack
        rows = []
        for index, cfg in enumerate(pack, start=1):
            row = {**first, **cfg, "trial_id": f"{trial.trial_id}-pack{index}"}
            if results is None:  # the trial errored: every run of it is failed
                row.update(status="failed", error=first.get("error"))
            else:
                row.update({k: v for k, v in results[index - 1].items() if k in RESULT_SCHEMA.names or k == PARTITION})
                if first.get("checkpoint"):
                    row["checkpoint"] = join(first["checkpoint"], pack_name(index))
            rows.append(row)
        return rows

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        result = dict(trial.last_result or {})
        row = self._base_row(trial)
        row.update({k: v for k, v in result.items() if k in RESULT_SCHEMA.names or k == PARTITION})
        row["trial_time_s"] = result.get("time_total_s")
        if "status" not in result:  # the trial returned without reporting
            row.update(status="failed", error="trial finished without reporting a result")
        packed = result.get(PACK_ROWS) or []
        complete = len(packed) == len(split_trial_config(trial.config).pack)
        for extra in self._packed(trial, row, packed if complete else None):
            self._write(extra)
        self._write(row)  # the trial's own row last: all its rows are recorded once it exists

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        row = self._base_row(trial)
        row.update(status="failed", error=_error_text(trial))
        for extra in self._packed(trial, row, None):
            self._write(extra)
        self._write(row)
