"""A trial's temporary run folder on its machine, and the removal of those a killed process left behind.

The run is written to ``$TMPDIR/akdray-trial-<pid>-*`` before it is stored; SIGKILL skips
``TemporaryDirectory``'s clean-up, so every trial first deletes the folders of pids no longer running.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

TRIAL_FOLDER_PREFIX = "akdray-trial-"  # + the pid of the process writing it + "-"


def trial_folder_prefix() -> str:
    """Prefix of this process's temporary run folder: it names the pid, so a later trial can tell an orphan."""
    return f"{TRIAL_FOLDER_PREFIX}{os.getpid()}-"


def remove_orphaned_trial_folders(scratch: str | Path | None = None) -> list[Path]:
    """Delete the temporary run folders of processes that no longer run on this machine; returns the
    ones deleted. A folder whose pid lives is kept, even if the pid was reused: better a leftover than a
    live run's files deleted. (Assumes one pid namespace per ``/tmp``, as on a host or in one container.)"""
    removed = []
    for folder in Path(scratch or tempfile.gettempdir()).glob(f"{TRIAL_FOLDER_PREFIX}*-*"):
        pid = folder.name[len(TRIAL_FOLDER_PREFIX):].split("-", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            removed.append(folder)
    return removed


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (another user's process counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
