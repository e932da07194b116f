"""One run per output directory: an exclusive lock taken before any work, and a writable directory.

Two runs started into the same ``--output_dir`` would otherwise both pass the "is it empty?" check
and then mix their files. The lock is ``flock`` on a file inside the directory: the operating system
releases it when the process ends, however it ends, so a killed run never leaves a stale lock that
blocks the next one. The lock file names its holder (pid and host) for the error the next run gets.
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

LOCK_FILE = ".hf_seqrec.lock"

# This process's locks: resolved output directory -> descriptor of its locked lock file.
_HELD_LOCKS: dict[Path, int] = {}


class OutputDirError(RuntimeError):
    """The output directory cannot be used as asked (in use by another run, not writable, holds a previous run, or nothing to resume)."""


def create_output_dir(output_dir: Path) -> None:
    """Create ``output_dir`` (and its parents) and check that a run can write into it.

    Done before the data and the model are loaded, so a bad ``--output_dir`` costs a second, not a
    run that fails when it saves.
    """
    if output_dir.exists() and not output_dir.is_dir():
        raise OutputDirError(f"{output_dir}: --output_dir names an existing file; expected a directory (or a path where one can be created)")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputDirError(f"{output_dir}: cannot create the output directory ({error.strerror}); choose a --output_dir you can write to") from None
    if not os.access(output_dir, os.W_OK | os.X_OK):
        raise OutputDirError(f"{output_dir}: the output directory is not writable; choose a --output_dir you can write to")


def lock_output_dir(output_dir: Path) -> None:
    """Take this process's exclusive lock on ``output_dir`` (created if missing), or fail at once naming the holder.

    Re-entrant within a process: ``train`` hands a popularity run to ``fit_popularity``, and a caller
    may check the directory before starting the run.
    """
    key = output_dir.resolve()
    if key in _HELD_LOCKS:
        return
    create_output_dir(output_dir)
    path = output_dir / LOCK_FILE
    while True:
        descriptor = _open_lock_file(path)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(descriptor)
            os.close(descriptor)
            raise OutputDirError(
                f"{output_dir}: another hf_seqrec run ({holder}) is using this output directory; "
                "wait for it to finish or choose another --output_dir"
            ) from None
        if _is_current_file(descriptor, path):
            break
        # The previous holder removed the file between our open and our flock: lock the new one.
        os.close(descriptor)
    os.ftruncate(descriptor, 0)
    os.write(descriptor, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
    _HELD_LOCKS[key] = descriptor


def holds_output_dir_lock(output_dir: Path) -> bool:
    return output_dir.resolve() in _HELD_LOCKS


def release_output_dir(output_dir: Path) -> None:
    """Give the lock back and remove its file (a no-op when this process does not hold it).

    The file is removed while still locked, so a run that opened it meanwhile finds it gone after
    its flock succeeds and retries on a new file (see :func:`lock_output_dir`).
    """
    descriptor = _HELD_LOCKS.pop(output_dir.resolve(), None)
    if descriptor is None:
        return
    try:
        (output_dir / LOCK_FILE).unlink(missing_ok=True)
    finally:
        os.close(descriptor)


def _open_lock_file(path: Path) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise OutputDirError(
            f"{path.parent}: the output directory is not writable (cannot create {path.name}: {error.strerror}); "
            "choose a --output_dir you can write to"
        ) from None


def _read_holder(descriptor: int) -> str:
    holder = os.pread(descriptor, 200, 0).decode("utf-8", errors="replace").strip()
    return holder or "pid unknown"


def _is_current_file(descriptor: int, path: Path) -> bool:
    """Whether ``descriptor`` is still the file at ``path`` (not one removed by the previous holder)."""
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(descriptor)
    return (on_disk.st_dev, on_disk.st_ino) == (opened.st_dev, opened.st_ino)
