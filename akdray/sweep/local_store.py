"""Storing a run in Ray Train's local mode, where Train persists nothing (see :mod:`akdray.sweep.trial`).

``runs/<trial_id>/checkpoint_<time>/`` gets the run folder, then ``runs/<trial_id>/report.json`` the
trial's report naming that folder. The report is written last, atomically, so its presence means the
folder is complete: a retried trial that finds it reports it instead of training again; one that does
not find it deletes the incomplete folders of the attempt that died and trains.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import pyarrow.fs as pafs

from akdray.storage import exists, join, read_bytes, resolve, write_bytes

REPORT_FILE = "report.json"
CHECKPOINT_PREFIX = "checkpoint_"


def persist_run(out: Path, trial_uri: str, report: Mapping[str, Any]) -> str:
    """Copy the run folder ``out`` to ``trial_uri/checkpoint_<UTC time>``, then write ``report.json``
    naming it; returns the folder's URI (the row's ``checkpoint``)."""
    folder = join(trial_uri, datetime.now(timezone.utc).strftime(f"{CHECKPOINT_PREFIX}%Y-%m-%d_%H-%M-%S.%f"))
    fs, path = resolve(folder)
    fs.create_dir(path)
    pafs.copy_files(str(out), path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)
    write_bytes(join(trial_uri, REPORT_FILE), json.dumps({**report, "checkpoint": folder}).encode())
    return folder


def stored_report(trial_uri: str) -> dict[str, Any] | None:
    """The report of a trial that already stored its run, else None."""
    uri = join(trial_uri, REPORT_FILE)
    return json.loads(read_bytes(uri)) if exists(uri) else None


def remove_incomplete_runs(trial_uri: str) -> list[str]:
    """Delete the ``checkpoint_*`` folders of a trial that has no report (an attempt died while storing);
    returns their paths. Call only when :func:`stored_report` is None."""
    fs, path = resolve(trial_uri)
    found = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    stale = [info.path for info in found
             if info.type == pafs.FileType.Directory and info.base_name.startswith(CHECKPOINT_PREFIX)]
    for folder in stale:
        fs.delete_dir(folder)
    return stale
