"""Output folders: refuse to overwrite a result, and write a folder atomically (all or nothing)."""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from akdray.config import ConfigError


def check_out_dir(out_dir: str | Path | None, flag: str = "--out") -> Path | None:
    """The output folder must be new or empty (results are never overwritten) and writable.

    Writability is probed up front, so no result is lost to an impossible path after training.
    """
    if out_dir is None:
        return None
    out = Path(out_dir)
    if out.is_symlink():  # a dangling link passed every check and failed after training; a live one is replaced
        raise ConfigError(f"{flag} {out} is a symbolic link (to {os.readlink(out)}); give a real, new or empty folder")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{flag} {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        raise ConfigError(f"{flag} {out} is not empty; choose a new folder (results are never overwritten)")
    ancestor = out.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ConfigError(f"{flag} {out} cannot be created: {ancestor} is a file, not a folder")
    try:  # the folder is later written as a temporary sibling (atomic_dir): probe exactly that, now
        os.rmdir(tempfile.mkdtemp(prefix=".akdray-probe-", dir=ancestor))
    except OSError as exc:
        raise ConfigError(f"{flag} {out} cannot be written: {ancestor}: {exc.strerror or exc}") from None
    return out


@contextmanager
def atomic_dir(out: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``out`` to write into; renamed to ``out`` on success, removed on error."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the result folder should not be
    try:
        yield tmp
        if out.is_dir():
            out.rmdir()  # empty by check_out_dir
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
