"""Atomic file writes: a killed process leaves either the old file or the new one."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success.

    The temporary file lives in the same directory so the final ``os.replace`` is a
    rename within one filesystem, which POSIX guarantees to be atomic.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp makes the file private (0600); the renamed file should read like one written with open():
    # the old file's mode, or the usual 0666 minus the umask for a new one.
    tmp.chmod(path.stat().st_mode & 0o7777 if path.is_file() else _new_file_mode())
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _new_file_mode() -> int:
    umask = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(umask)
    return 0o666 & ~umask


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike, payload: Any) -> None:
    """Write ``payload`` as indented JSON to ``path`` atomically."""
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=False) + "\n")


@contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``path`` as a whole on success.

    An existing ``path`` is moved aside first and deleted only once the new directory
    is in place, so a kill at any moment leaves a complete directory under ``path``
    or under its ``.old`` sibling, never a half-written one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; a checkpoint should read like any directory
    try:
        yield tmp
        replace_directory(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def replace_directory(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """Move the complete directory ``source`` onto ``target``, replacing it.

    The old ``target`` is renamed aside before the new one is renamed in, and deleted last,
    so at every instant one complete copy exists under ``target`` or ``.<target>.old``.
    """
    source, target = Path(source), Path(target)
    old = recover_directory(target)
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        os.replace(target, old)
    os.replace(source, target)
    if old.exists():
        shutil.rmtree(old)


def recover_directory(target: str | os.PathLike) -> Path:
    """Finish a :func:`replace_directory` that was killed between its two renames; returns the ``.old`` path.

    A kill right after the old ``target`` was renamed aside leaves the only complete copy under
    ``.<target>.old`` and nothing under ``target``: rename it back. When both exist, the new
    ``target`` was already in place and the ``.old`` copy is a stale leftover (safe to delete).
    """
    target = Path(target)
    old = target.with_name(f".{target.name}.old")
    if old.is_dir() and not target.exists():
        os.replace(old, target)
    return old
