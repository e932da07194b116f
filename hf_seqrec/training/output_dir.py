"""One run per output directory: an exclusive lock taken before any work, and a writable directory.

Two runs started into the same ``--output_dir`` would otherwise both pass the "is it empty?" check
and then mix their files. The lock is ``flock`` on a file inside the directory: the operating system
releases it when the process ends, however it ends, so a killed run never leaves a stale lock that
blocks the next one. The lock file names its holder (pid and host) for the error the next run gets.
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import shutil
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from accelerate.utils import get_int_from_env

from ..io_utils import recover_directory
from ..modeling.configuration_seqrec import SeqRecConfig
from ..publishing.model_card import CURVE, README

if TYPE_CHECKING:
    from .config import FinetuneConfig

LOCK_FILE = ".hf_seqrec.lock"
# What a run writes besides the checkpoint at the top of its output directory.
CHECKPOINTS_DIR = "checkpoints"
LAST_STATE = "last"
BEST_MODEL_DIR = "best"
TRAINER_STATE_FILE = "trainer_state.json"
TRAINABLE_WEIGHTS_FILE = "trainable_weights.safetensors"
TEST_RANKS_FILE = "test_ranks.json"  # per-user 1-based test ranks of the final evaluation (paired tests between runs)

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


def check_output_dir(config: FinetuneConfig) -> Path:
    """Lock the output directory for this run, then refuse to write over a previous run unless asked to.

    The first thing a run does, before any data or model is loaded: a second run into the same
    directory, or one that cannot write there, fails at once. A failed run never loses user files.
    In a multi-process run only the main process locks and checks (the others would race it and
    block on its lock); when it refuses, it exits and the launcher ends the other processes.
    """
    output_dir = Path(config.output_dir)
    if _is_main_process():
        _lock_and_check_output_dir(output_dir, config)
    return output_dir


def _is_main_process() -> bool:
    """Whether this is the process that owns the output directory (global rank 0, or the only process).

    Read from the launcher's environment (accelerate launch and torchrun set RANK, MPI launchers
    their own variable), not from accelerate's PartialState: creating that before the Accelerator
    would settle the distributed set-up without the Accelerator's options (a multi-CPU run would
    start as independent single processes).
    """
    return get_int_from_env(["RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK"], 0) == 0


def _lock_and_check_output_dir(output_dir: Path, config: FinetuneConfig) -> None:
    """Take the lock, check the directory's contents, and give a lock taken here back if the run is refused."""
    locked_here = not holds_output_dir_lock(output_dir)
    lock_output_dir(output_dir)
    try:
        _check_previous_run(output_dir, config)
    except OutputDirError:
        if locked_here:
            release_output_dir(output_dir)
        raise


def _check_previous_run(output_dir: Path, config: FinetuneConfig) -> None:
    last_state = output_dir / CHECKPOINTS_DIR / LAST_STATE
    recover_directory(last_state)  # a kill between replace_directory's two renames left it under .last.old
    if config.resume:
        if not (last_state / TRAINER_STATE_FILE).is_file():
            raise OutputDirError(f"{output_dir}: --resume was given but there is no saved training state in {last_state}")
        return
    holds_files = any(entry.name != LOCK_FILE for entry in output_dir.iterdir())
    if holds_files and not config.overwrite_output_dir:
        raise OutputDirError(
            f"{output_dir}: output directory exists and is not empty; pass --overwrite_output_dir to replace "
            "its run, --resume to continue it, or choose another --output_dir"
        )


def releases_output_dir_lock(run: Callable[[FinetuneConfig], dict[str, Any]]) -> Callable[[FinetuneConfig], dict[str, Any]]:
    """Give the output directory's lock back when ``run`` ends, however it ends, if ``run`` took it.

    ``run`` takes the lock in its first line (``check_output_dir``); a lock already held when it
    started was taken by a caller, whose to release it is. A killed process needs none of this:
    the operating system drops its lock.
    """

    @functools.wraps(run)
    def run_then_release(config: FinetuneConfig) -> dict[str, Any]:
        output_dir = Path(config.output_dir)
        held_before = holds_output_dir_lock(output_dir)
        try:
            return run(config)
        finally:
            if not held_before:
                release_output_dir(output_dir)

    return run_then_release


# Tokenizer files transformers' save_pretrained writes (the set depends on the tokenizer class).
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "vocab.json",
    "vocab.txt", "merges.txt", "tokenizer.model", "spiece.model", "chat_template.jinja", "chat_template.json",
)


def clear_previous_run(output_dir: Path) -> None:
    """With --overwrite_output_dir, remove what a previous hf_seqrec run wrote at the top of ``output_dir``.

    Everything, not only the training state: a checkpoint file the new run does not write (a
    tokenizer after a popularity run, an adapter after a full fine-tune) would otherwise stay and be
    loaded with the new files. Only hf_seqrec's own names are removed, and config.json and README.md
    only when they are hf_seqrec's: whatever else the user keeps in the directory stays.
    """
    for name in (CHECKPOINTS_DIR, BEST_MODEL_DIR, "logs", "merged", ".final"):
        target = output_dir / name
        if target.is_dir():
            shutil.rmtree(target)
    for path in _previous_run_files(output_dir):
        path.unlink()


def _previous_run_files(output_dir: Path) -> list[Path]:
    """The files at the top of ``output_dir`` that an hf_seqrec run writes (see :func:`clear_previous_run`)."""
    from ..modeling import checkpoint_files

    names = {
        *checkpoint_files.CHECKPOINT_FILES, *checkpoint_files.RETIRED_FILES,
        "metrics.json", "training_config.yaml", TEST_RANKS_FILE, CURVE, *TOKENIZER_FILES,
    }
    # The model code transformers copies next to a checkpoint for trust_remote_code: hf_seqrec's modeling modules.
    names |= {path.name for path in Path(checkpoint_files.__file__).parent.glob("*.py") if path.name != "__init__.py"}
    found = [output_dir / name for name in sorted(names) if (output_dir / name).is_file()]
    if _is_seqrec_config(output_dir / "config.json"):
        found.append(output_dir / "config.json")
    if _is_seqrec_model_card(output_dir / README):
        found.append(output_dir / README)
    return found


def _is_seqrec_config(path: Path) -> bool:
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(values, dict) and values.get("model_type") == SeqRecConfig.model_type


def _is_seqrec_model_card(path: Path) -> bool:
    """Whether ``path`` is a model card hf_seqrec rendered: its YAML front matter says ``library_name: hf_seqrec``."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    if not text.startswith("---"):
        return False
    front_matter = text[3:].split("\n---", 1)[0]
    return any(line.strip() == "library_name: hf_seqrec" for line in front_matter.splitlines())
