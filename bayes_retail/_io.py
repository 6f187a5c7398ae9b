"""Atomic writes and content hashing shared by every module that writes artifacts."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

_HASH_CHUNK = 1 << 22


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` on success.

    On any exception the temporary file is removed and ``target`` is left untouched,
    so a reader never sees a half-written file.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; a finished file gets the usual mode
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory beside ``target``; move it onto ``target`` on success.

    An existing ``target`` is replaced only after the new directory is complete.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; a finished folder gets the usual mode
    try:
        yield tmp
        _move_onto(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _move_onto(tmp: Path, target: Path, attempts: int = 10) -> None:
    """Move the finished folder ``tmp`` onto ``target``, replacing a folder there.

    Another writer (a second process filling the same cache) may land its
    own ``target`` between any two steps: the folder found there is moved
    aside and removed, and the move is tried again.
    """
    moved_aside = []
    error: OSError | None = None
    try:
        for attempt in range(attempts):
            try:
                os.replace(tmp, target)  # no target (or an empty one): done
                return
            except OSError as exc:
                error = exc
            old = target.with_name(f".{target.name}.old-{os.getpid()}-{attempt}")
            try:
                os.replace(target, old)
                moved_aside.append(old)
            except FileNotFoundError:
                continue  # the other writer moved it first
        raise error
    finally:
        for old in moved_aside:
            shutil.rmtree(old, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_parquet(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write ``df`` to ``path`` as parquet, atomically."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def write_json(obj: Any, path: str | os.PathLike) -> None:
    """Write ``obj`` to ``path`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot serialise {type(value).__name__} to JSON")


def hash_files(paths: Iterable[str | os.PathLike], *, extra: str = "") -> str:
    """Return a short blake2b digest of the named files' contents (in the given order)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(extra.encode())
    for path in paths:
        path = Path(path)
        digest.update(path.name.encode())
        with path.open("rb") as fh:
            while chunk := fh.read(_HASH_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()
