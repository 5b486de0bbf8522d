"""Where results and data live: a local path or a URI (``s3://bucket/key``, ``file:///abs``) via pyarrow.fs.

The one writer for run folders' shared copies, Parquet files and sweep files: every write goes to a
hidden temporary sibling first and is renamed into place, and the temporary file is removed when the
write fails (a full disk leaves nothing behind). No Ray and no torch here.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pyarrow.fs as pafs

CACHE_ENV_VAR = "AKDRAY_CACHE"


def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    """``(filesystem, path)`` of a local path or a URI such as ``s3://bucket/key``."""
    if "://" not in uri:
        uri = os.path.abspath(os.path.expanduser(uri))
    return pafs.FileSystem.from_uri(uri)


def join(uri: str, *parts: str) -> str:
    """``uri/part/...``: parts go into the path, before any query string (``s3://b/p?x=1`` -> ``s3://b/p/a?x=1``),
    never into the query, where every joined name would resolve to the same object."""
    cut = min([i for i in (uri.find("?"), uri.find("#")) if i >= 0] or [len(uri)]) if "://" in uri else len(uri)
    return "/".join([uri[:cut].rstrip("/"), *parts]) + uri[cut:]


def exists(uri: str) -> bool:
    fs, path = resolve(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


class StorageError(OSError):
    """Results could not be written to the sweep's storage (disk full, no permission, bucket gone)."""


def _write_temp(fs: pafs.FileSystem, path: str, data: bytes) -> str:
    """``data`` into a hidden temporary sibling of ``path``; removed again if the write fails."""
    parent, _, name = path.rpartition("/")
    fs.create_dir(parent, recursive=True)
    tmp = f"{parent}/.{name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        with fs.open_output_stream(tmp) as out:
            out.write(data)
    except BaseException:
        _remove_quietly(fs, tmp)
        raise
    return tmp


def _remove_quietly(fs: pafs.FileSystem, path: str) -> None:
    try:
        fs.delete_file(path)
    except (OSError, FileNotFoundError):
        pass


def write_bytes(uri: str, data: bytes) -> None:
    """Write a file atomically: a hidden temporary sibling, then a rename (no partial file is ever left)."""
    fs, path = resolve(uri)
    tmp = _write_temp(fs, path, data)
    try:
        fs.move(tmp, path)
    except BaseException:
        _remove_quietly(fs, tmp)
        raise


def create_exclusive(uri: str, data: bytes) -> None:
    """Write a new file; ``FileExistsError`` if it exists, also when two processes race for it.

    Local files are hard-linked into place (atomic, fails on an existing name). Object stores have
    no such primitive in pyarrow, so there it is check-then-write (two drivers starting the same
    sweep name within milliseconds on S3 are not told apart).
    """
    fs, path = resolve(uri)
    if isinstance(fs, pafs.LocalFileSystem):
        tmp = _write_temp(fs, path, data)
        try:
            os.link(tmp, path)
        finally:
            _remove_quietly(fs, tmp)
        return
    if fs.get_file_info(path).type != pafs.FileType.NotFound:
        raise FileExistsError(path)
    write_bytes(uri, data)


def read_bytes(uri: str) -> bytes:
    fs, path = resolve(uri)
    with fs.open_input_stream(path) as f:
        return f.readall()



def cache_root() -> Path:
    """akdray's cache folder: ``$AKDRAY_CACHE`` or ``~/.cache/akdray``."""
    return Path(os.environ.get(CACHE_ENV_VAR) or "~/.cache/akdray").expanduser()


def fetch_folder(uri: str) -> Path:
    """A local copy of the folder at ``uri``, fetched once per worker and reused.

    The cache entry is keyed by the URI *and* its content listing (every file's relative path, size
    and modification time), so a changed data set is fetched again and never mixed with an old copy.
    The copy is made in a temporary sibling and renamed into place, so a killed fetch leaves no
    half-filled entry.
    """
    fs, path = resolve(uri)
    info = fs.get_file_info(path)
    if info.type != pafs.FileType.Directory:
        raise FileNotFoundError(f"{uri} is not a folder (nothing found there)")
    listing = sorted((f.path[len(path):].lstrip("/"), f.size, f.mtime_ns)
                     for f in fs.get_file_info(pafs.FileSelector(path, recursive=True))
                     if f.type == pafs.FileType.File)
    key = hashlib.sha1(repr((uri, listing)).encode()).hexdigest()[:16]
    target = cache_root() / "data" / key
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=target.parent))
    try:
        pafs.copy_files(path, str(tmp), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
        os.replace(tmp, target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not target.is_dir():  # another process may have won the race with an identical copy
            raise
    return target
