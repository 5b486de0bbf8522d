"""A sweep's Parquet datasets: the row schema, writing one trial, and the one reader (no Ray, no torch).

Three hive-partitioned datasets under the sweep folder (``method=<method>/<trial_id>.parquet``, one
file per trial)::

    SWEEP_DIR/results/  one row per trial: every RunConfig field, every metric, run info, sweep keys
    SWEEP_DIR/scores/   per-image attack scores of the trial (its run's scores.parquet + key columns)
    SWEEP_DIR/samples/  first evaluated images as PNG bytes (its run's samples.parquet + key columns)

``method`` is the partition key: it is not stored inside the files; :func:`read_dataset` gives it
back as a plain ``str`` column. Every results file has exactly :data:`RESULT_SCHEMA` (metrics are
float64, null when missing or NaN), so any subset of files unifies. Files go through
:func:`akdray.storage.write_bytes` (a hidden temporary name renamed into place, so readers never see
half a file; pyarrow skips names starting with ``.``); rewriting a trial replaces its file, so a
resumed sweep never duplicates a row. ``SWEEP_DIR`` may be a local path or any pyarrow URI (s3://).
The sweep (:mod:`akdray.sweep.sink`), the analysis (:mod:`analysis.load`) and the analysis' test
data (:mod:`analysis.testing`) all write and read through this module.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from akdray.config import FIELD_TYPES
from akdray.schema import INFO_KEYS, METRIC_KEYS, SAMPLES_FILE, SCORES_FILE, TEXT_METRIC_KEYS
from akdray.storage import exists, join, read_bytes, resolve, write_bytes

RESULTS, SCORES, SAMPLES = "results", "scores", "samples"
SWEEP_FILE = "sweep.json"  # the stored sweep specification (akdray.sweep.spec.SweepSpec)
PARTITION = "method"
# Sweep bookkeeping columns of every results row.
SWEEP_COLUMNS: dict[str, pa.DataType] = {
    "sweep_id": pa.string(), "trial_id": pa.string(), "stage": pa.string(), "study": pa.string(),
    "experiment": pa.string(), "checkpoint": pa.string(), "pick": pa.string(), "trial_failures": pa.int64(),
    "trial_time_s": pa.float64(), "recorded_at": pa.timestamp("us", tz="UTC"),
    "ray_start_s": pa.float64(), "worker_setup_s": pa.float64(), "ray_end_s": pa.float64(),
}
KEY_COLUMNS = ("trial_id", "sweep_id", "seed", "study", "stage")  # prepended to scores and samples
_ARROW = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_()}
_INFO_FLOATS = {"wall_s", "prepare_s", "train_s", "eval_s"}


def _result_schema() -> pa.Schema:
    cols: dict[str, pa.DataType] = {n: _ARROW[t] for n, t in FIELD_TYPES.items() if n != PARTITION}
    cols.update({k: pa.string() if k in TEXT_METRIC_KEYS else pa.float64() for k in METRIC_KEYS})
    cols.update({k: pa.float64() if k in _INFO_FLOATS else pa.string() for k in INFO_KEYS})
    cols.update(SWEEP_COLUMNS)
    return pa.schema(list(cols.items()))


RESULT_SCHEMA = _result_schema()


def _coerce(value: Any, typ: pa.DataType) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value) and not pa.types.is_floating(typ)):
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
        return value.strip().lower() in ("true", "1", "yes") if isinstance(value, str) else bool(value)
    if pa.types.is_timestamp(typ):
        return pd.Timestamp(value).tz_convert("UTC") if pd.Timestamp(value).tzinfo else pd.Timestamp(value, tz="UTC")
    return value


def row_table(row: Mapping[str, Any]) -> pa.Table:
    """One results row -> a one-row table with exactly :data:`RESULT_SCHEMA` (missing keys -> null)."""
    arrays = [pa.array([_coerce(row.get(f.name), f.type)], type=f.type) for f in RESULT_SCHEMA]
    return pa.Table.from_arrays(arrays, schema=RESULT_SCHEMA)


def _table_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def dataset_path(sweep_uri: str, dataset: str, method: str, trial_id: str) -> str:
    return join(sweep_uri, dataset, f"{PARTITION}={method}", f"{trial_id}.parquet")


def _with_keys(table: pa.Table, row: Mapping[str, Any]) -> pa.Table:
    """A run's scores/samples table with the trial's key columns in front (``method`` is the partition)."""
    table = table.drop_columns([c for c in (PARTITION, *KEY_COLUMNS) if c in table.column_names])
    for i, key in enumerate(KEY_COLUMNS):
        typ = pa.int64() if key == "seed" else pa.string()
        table = table.add_column(i, key, pa.array([_coerce(row.get(key), typ)] * table.num_rows, type=typ))
    return table


def write_trial(sweep_uri: str, row: Mapping[str, Any], *, scores: pa.Table | pd.DataFrame | None = None,
                samples: pa.Table | pd.DataFrame | None = None) -> None:
    """Write a trial's scores and samples, then its results row (its presence means: fully recorded).

    ``scores`` / ``samples`` default to the run folder's files under ``row["checkpoint"]``.
    """
    method, trial_id = str(row[PARTITION]), str(row["trial_id"])
    checkpoint = row.get("checkpoint")
    for dataset, name, given in ((SCORES, SCORES_FILE, scores), (SAMPLES, SAMPLES_FILE, samples)):
        if given is None and checkpoint and exists(join(checkpoint, name)):
            given = pq.read_table(pa.BufferReader(read_bytes(join(checkpoint, name))))
        if given is None:
            continue
        table = pa.Table.from_pandas(given, preserve_index=False) if isinstance(given, pd.DataFrame) else given
        write_bytes(dataset_path(sweep_uri, dataset, method, trial_id), _table_bytes(_with_keys(table, row)))
    write_bytes(dataset_path(sweep_uri, RESULTS, method, trial_id), _table_bytes(row_table(row)))


def read_dataset(sweep_uri: str, name: str = RESULTS, where: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Every row of ``SWEEP_DIR/<name>`` as a DataFrame (empty if nothing was written yet).

    ``where`` keeps rows whose column value is in the given collection, e.g. ``{"trial_id": ids}``
    (pushed down to pyarrow: partitions and row groups that cannot match are not read). ``method``
    comes back as ``str``. Results files are read with :data:`RESULT_SCHEMA`, so files written before
    a column existed read as null there.
    """
    fs, path = resolve(join(sweep_uri, name))
    if fs.get_file_info(path).type != pafs.FileType.Directory:
        return pd.DataFrame()
    partitioning = pads.partitioning(pa.schema([(PARTITION, pa.string())]), flavor="hive")
    schema = RESULT_SCHEMA.append(pa.field(PARTITION, pa.string())) if name == RESULTS else None
    data = pads.dataset(path, filesystem=fs, format="parquet", partitioning=partitioning, schema=schema)
    names = set(data.schema.names)
    missing = sorted(set(where or {}) - names)
    if missing:
        raise KeyError(f"read_dataset({name!r}): no column(s) {missing} to filter on")
    expression = None
    for key, allowed in (where or {}).items():
        typ = data.schema.field(key).type
        values = pa.array([_coerce(v, typ) for v in allowed], type=typ)
        term = pc.field(key).isin(values)
        expression = term if expression is None else expression & term
    df = data.to_table(filter=expression).to_pandas()
    if PARTITION in df:
        df[PARTITION] = df[PARTITION].astype(str)
    return df
