"""Which code ran: the git commit of the akdray source tree, recorded in every row (``code_commit``).

``<40-hex commit>`` of a clean checkout, ``<commit>+dirty`` when tracked files differ from it, and
``"unknown"`` where akdray is not a git checkout (an installed wheel) or git is missing. Computed once
per process (``git`` takes ~10 ms).
"""
from __future__ import annotations

import functools
import subprocess
from pathlib import Path

SOURCE_ROOT = Path(__file__).resolve().parent.parent


@functools.lru_cache(maxsize=1)
def code_commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(SOURCE_ROOT), *args], capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()
    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", "akdray", "analysis"))
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")
