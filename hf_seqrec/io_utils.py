"""Atomic writes: a killed process leaves either the old file (or directory) or the new one.

The file-level writers are the checkpoint code's (`hf_seqrec/modeling/atomic_writes.py`, which
checkpoints carry); this module adds whole directories.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .modeling.atomic_writes import atomic_path, write_json_atomic, write_text_atomic

__all__ = ["atomic_directory", "atomic_path", "recover_directory", "replace_directory", "write_json_atomic", "write_text_atomic"]


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
