"""Checks every command makes before any work: paths, names, URIs, seeds, counts and the device.

One place for what ``run``, ``audit``, ``protect``, ``translate``, ``export``, ``kid`` and the sweep
each used to check (or not) on their own:

* :func:`expand` - ``~`` in a local path (not in a URI), as a shell would; the sweep did it, ``run`` did not.
* :func:`check_uri` - a storage or data URI with a query string or fragment is refused: the sweep
  name is appended to the *path*, and ``s3://b/p?endpoint_override=x`` would put it inside the query
  (``sweep.json``, ``results/`` and ``stages/`` would resolve to one object). Endpoints are set by
  the environment instead (``AWS_ENDPOINT_URL``, ``AWS_REGION``), which pyarrow's S3 reads.
* :func:`check_name` - a sweep name is one path component (no ``/``, ``..``, ``.``, NUL).
* :func:`check_not_inside` - an output folder may not lie inside an input (``audit --out`` inside
  ``--data`` would write into the data set and break the next audit).
* :func:`check_count` / :func:`check_seed` - integer flags within documented bounds (a count that no
  run could finish is refused by a dry run, not after hours).
* :func:`checked_device` - the device a config asks for exists here (``protect --set device=cuda``
  without a GPU used to end in a traceback; ``run`` refused it cleanly).
* File names that are not UTF-8 cannot be written into ``audit.json`` or Parquet: every image listing
  (:func:`akdray.data.aligned.list_images`, translate's single file) refuses them, named, before any work.
* :func:`probe_folder` / :func:`probe_storage` - what a dry run checks of remote data and sweep storage,
  as the real run would find it (missing bucket, a file where a folder belongs, an unwritable parent).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from urllib.parse import urlsplit

from akdray.config import MAX_SEED, ConfigError

ENDPOINT_HINT = ("set the endpoint in the environment instead (AWS_ENDPOINT_URL=https://HOST, AWS_REGION=..., "
                 "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY), which pyarrow's S3 file system reads")


def is_uri(text: str) -> bool:
    return "://" in str(text)


def expand(path: str | Path) -> str:
    """``~`` expanded in a local path; a URI is returned unchanged."""
    text = str(path)
    return text if is_uri(text) else os.path.expanduser(text)


def check_uri(uri: str, flag: str) -> str:
    """A URI without query or fragment (see the module docstring); local paths pass unchanged."""
    if not is_uri(uri):
        return uri
    parts = urlsplit(uri)
    if parts.query or parts.fragment or "?" in uri or "#" in uri:
        raise ConfigError(f"{flag} {uri!r}: query strings and fragments are not allowed in a storage URI (the sweep "
                          f"name and file names are appended to its path); {ENDPOINT_HINT}")
    if not parts.scheme or (parts.scheme != "file" and not parts.netloc):
        raise ConfigError(f"{flag} {uri!r} is not SCHEME://BUCKET/PATH (e.g. s3://bucket/prefix) or file:///ABSOLUTE/PATH")
    return uri


def check_name(name: str, flag: str = "--name") -> str:
    """A single path component: the sweep lives at STORAGE/NAME and nowhere else."""
    if (not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name or name != name.strip()
            or "?" in name or "#" in name):
        raise ConfigError(f"{flag} {name!r} must be one path component (letters, digits, - _ . ; no '/', no '..', "
                          "not empty): the sweep folder is STORAGE/NAME")
    return name


def _resolved(path: str | Path) -> Path:
    return Path(expand(path)).resolve()


def check_not_inside(out: str | Path, inputs: dict[str, str | Path | None], out_flag: str = "--out") -> None:
    """Refuse an output folder that is, or lies inside, an input folder (or holds an input file)."""
    out_path = _resolved(out)
    for flag, value in inputs.items():
        if not value or is_uri(str(value)):
            continue
        src = _resolved(value)
        if out_path == src or src in out_path.parents:
            raise ConfigError(f"{out_flag} {out} lies inside {flag} {value}: outputs are never written into an input "
                              "(choose a folder outside it)")
        if out_path in src.parents:
            raise ConfigError(f"{out_flag} {out} contains {flag} {value}: the output folder must be new or empty and "
                              "never hold an input")


def check_count(flag: str, value: int | float | None, low: int, high: int) -> None:
    """An integer flag in ``low..high`` (None = not given)."""
    if value is None:
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{flag} must be finite, got {value}")
    if not low <= value <= high:
        raise ConfigError(f"{flag} must be in {low}..{high:,}, got {value}")


def check_seed(flag: str, value: int | None) -> None:
    check_count(flag, value, 0, MAX_SEED)


def checked_device(cfg):
    """The torch device of ``cfg.device`` if this machine has it; else ConfigError (exit 2, before any work)."""
    from akdray.train import existing_device, resolve_device  # torch

    return existing_device(resolve_device(cfg))


def probe_folder(uri: str, flag: str) -> None:
    """A remote data folder exists (one listing call, as the real run's fetch makes first); nothing is fetched."""
    import pyarrow.fs as pafs

    from akdray.storage import resolve

    check_uri(uri, flag)
    try:
        fs, path = resolve(uri)
        kind = fs.get_file_info(path).type
    except (OSError, ValueError) as exc:  # pyarrow: OSError / ArrowInvalid for bad URIs, missing buckets, no access
        raise ConfigError(f"{flag} {uri} cannot be read: {' '.join(str(exc).split())[:300]}") from None
    if kind != pafs.FileType.Directory:
        raise ConfigError(f"{flag} {uri} is not a folder (nothing found there)")


def probe_storage(uri: str, flag: str = "--storage") -> None:
    """Sweep storage the real run could write: a local folder (or creatable under a writable folder, not a
    file), or a URI whose bucket answers and whose path is not a file."""
    import tempfile

    import pyarrow.fs as pafs

    from akdray.storage import resolve

    check_uri(uri, flag)
    if not is_uri(uri):
        path = Path(expand(uri)).absolute()
        if path.exists() and not path.is_dir():
            raise ConfigError(f"{flag} {uri} is a file, not a folder")
        ancestor = path
        while not ancestor.exists():
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            raise ConfigError(f"{flag} {uri} cannot be written: {ancestor} is a file, not a folder")
        try:
            os.rmdir(tempfile.mkdtemp(prefix=".akdray-probe-", dir=ancestor))
        except OSError as exc:
            raise ConfigError(f"{flag} {uri} cannot be written: {ancestor}: {exc.strerror or exc}") from None
        return
    try:
        fs, path = resolve(uri)
        bucket = path.split("/", 1)[0]
        kind = fs.get_file_info(path).type
        local = isinstance(fs, pafs.LocalFileSystem)
        bucket_kind = None if local else fs.get_file_info(bucket).type
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{flag} {uri} cannot be reached: {' '.join(str(exc).split())[:300]}") from None
    if kind == pafs.FileType.File:
        raise ConfigError(f"{flag} {uri} is a file, not a folder")
    if bucket_kind == pafs.FileType.NotFound:
        raise ConfigError(f"{flag} {uri}: bucket {bucket!r} does not exist")
    if local:
        probe_storage(path, flag)
