"""Stream finished Tune trials into Parquet datasets under the sweep directory.

Three hive-partitioned datasets (``method=<method>/<trial_id>.parquet``, one file per trial)::

    SWEEP_DIR/results/  one row per trial: every RunConfig field, every metric, run info, sweep keys
    SWEEP_DIR/scores/   per-image attack scores of the trial (its run's scores.parquet + keys)
    SWEEP_DIR/samples/  first test images as PNG bytes (its run's samples.parquet + keys)

``method`` is the partition key: it is not stored inside the files and comes back from
``pd.read_parquet(SWEEP_DIR + "/results")`` as a pandas ``category`` column. Every results file has
the same schema (:data:`RESULT_SCHEMA`; metrics are float64, null when missing or NaN), so any subset of
files unifies. Files are written to a hidden temporary name and renamed into place, so readers never
see half a file (pyarrow ignores names starting with ``.``); rewriting a trial replaces its file, so a
resumed sweep never duplicates a row. ``SWEEP_DIR`` may be a local path or a ``s3://`` URI.
"""
from __future__ import annotations

import logging
import math
from datetime import datetime, timezone
from typing import Any, Mapping

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from ray.tune import Callback

from akdray.config import FIELD_TYPES
from akdray.schema import INFO_KEYS, METRIC_KEYS, SAMPLES_FILE, SCORES_FILE, TEXT_METRIC_KEYS
from akdray.storage import exists, join, read_bytes, resolve, write_bytes

log = logging.getLogger(__name__)

RESULTS, SCORES, SAMPLES = "results", "scores", "samples"
PARTITION = "method"
META_KEY = "_akdray"  # trial-config key holding the sweep metadata (never a RunConfig field)
CONFIRM_KEY = "_confirm"  # confirmation trials: {"pick": label, "cfg": flat RunConfig dict}
# Sweep bookkeeping columns of every results row.
SWEEP_COLUMNS: dict[str, pa.DataType] = {
    "sweep_id": pa.string(), "trial_id": pa.string(), "stage": pa.string(), "study": pa.string(),
    "experiment": pa.string(), "checkpoint": pa.string(), "pick": pa.string(), "trial_failures": pa.int64(),
    "trial_time_s": pa.float64(), "recorded_at": pa.timestamp("us", tz="UTC"),
}
_ARROW = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_()}
_INFO_FLOATS = {"wall_s", "train_s", "eval_s"}


def _result_schema() -> pa.Schema:
    cols: dict[str, pa.DataType] = {n: _ARROW[t] for n, t in FIELD_TYPES.items() if n != PARTITION}
    cols.update({k: pa.string() if k in TEXT_METRIC_KEYS else pa.float64() for k in METRIC_KEYS})
    cols.update({k: pa.float64() if k in _INFO_FLOATS else pa.string() for k in INFO_KEYS})
    cols.update(SWEEP_COLUMNS)
    return pa.schema(list(cols.items()))


RESULT_SCHEMA = _result_schema()
KEY_COLUMNS = ("trial_id", "sweep_id", "seed", "study", "stage")  # prepended to scores and samples


def _table_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def dataset_path(sweep_uri: str, dataset: str, method: str, trial_id: str) -> str:
    return join(sweep_uri, dataset, f"{PARTITION}={method}", f"{trial_id}.parquet")


def read_dataset(sweep_uri: str, dataset: str = RESULTS) -> pd.DataFrame:
    """A dataset of the sweep as a DataFrame (empty if nothing was written yet); works for s3:// too."""
    fs, path = resolve(join(sweep_uri, dataset))
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return pd.DataFrame()
    return pads.dataset(path, filesystem=fs, format="parquet", partitioning="hive").to_table().to_pandas()


# ------------------------------------------------------------------------------------------------
# Rows
# ------------------------------------------------------------------------------------------------
def _coerce(value: Any, typ: pa.DataType) -> Any:
    if value is None:
        return None
    if pa.types.is_floating(typ):
        try:
            value = float(value)
        except (TypeError, ValueError):
            return None
        return None if math.isnan(value) else value  # NaN -> null; inf (e.g. dp_epsilon) is kept
    if pa.types.is_string(typ):
        return value if isinstance(value, str) else str(value)
    if pa.types.is_integer(typ):
        return int(value)
    if pa.types.is_boolean(typ):
        return bool(value)
    return value


def row_table(row: Mapping[str, Any]) -> pa.Table:
    """One results row -> a one-row table with exactly :data:`RESULT_SCHEMA` (missing keys -> null)."""
    arrays = [pa.array([_coerce(row.get(f.name), f.type)], type=f.type) for f in RESULT_SCHEMA]
    return pa.Table.from_arrays(arrays, schema=RESULT_SCHEMA)


def _with_keys(table: pa.Table, row: Mapping[str, Any]) -> pa.Table:
    n = table.num_rows
    types = {"seed": pa.int64()}
    for i, key in enumerate(KEY_COLUMNS):
        typ = types.get(key, pa.string())
        table = table.add_column(i, key, pa.array([_coerce(row.get(key), typ)] * n, type=typ))
    return table.drop_columns([c for c in (PARTITION,) if c in table.column_names])


def write_trial(sweep_uri: str, row: Mapping[str, Any]) -> None:
    """Write a trial's results row, then its scores and samples (copied from its run checkpoint)."""
    method, trial_id = str(row[PARTITION]), str(row["trial_id"])
    checkpoint = row.get("checkpoint")
    for dataset, name in ((SCORES, SCORES_FILE), (SAMPLES, SAMPLES_FILE)):
        if not checkpoint or not exists(join(checkpoint, name)):
            continue
        table = pq.read_table(pa.BufferReader(read_bytes(join(checkpoint, name))))
        write_bytes(dataset_path(sweep_uri, dataset, method, trial_id), _table_bytes(_with_keys(table, row)))
    # The results row last: its presence means the trial is fully recorded.
    write_bytes(dataset_path(sweep_uri, RESULTS, method, trial_id), _table_bytes(row_table(row)))


def split_trial_config(config: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any], str | None]:
    """A Tune trial config -> (flat RunConfig dict, sweep metadata, confirmation pick label or None)."""
    config = dict(config)
    meta = config.pop(META_KEY, {}) or {}
    choice = config.pop(CONFIRM_KEY, None)
    if choice:
        config.update(choice["cfg"])
    return config, meta, choice["pick"] if choice else None


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
        config, meta, pick = split_trial_config(trial.config)
        return {
            **config, "sweep_id": meta.get("sweep_id"), "stage": meta.get("stage"), "study": meta.get("study"),
            "pick": pick,
            "experiment": self.experiment, "trial_id": trial.trial_id, "trial_failures": trial.num_failures,
            "recorded_at": datetime.now(timezone.utc),
        }

    def _write(self, row: dict[str, Any]) -> None:
        try:
            write_trial(self.sweep_uri, row)
        except Exception as exc:  # noqa: BLE001 - recorded; the stage reports it when Tune returns
            log.exception("akdray: could not write the Parquet rows of trial %s", row.get("trial_id"))
            SINK_FAILURES.setdefault(self.experiment, []).append(f"trial {row.get('trial_id')}: {exc}")

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        result = dict(trial.last_result or {})
        row = self._base_row(trial)
        row.update({k: v for k, v in result.items() if k in RESULT_SCHEMA.names or k == PARTITION})
        row["trial_time_s"] = result.get("time_total_s")
        if "status" not in result:  # the trial returned without reporting
            row.update(status="failed", error="trial finished without reporting a result")
        self._write(row)

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        row = self._base_row(trial)
        row.update(status="failed", error=_error_text(trial))
        self._write(row)
