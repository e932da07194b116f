"""How the command-line programs talk: log levels, the libraries' progress bars, and whole lines.

A log file (CI, a job scheduler, ``tee``) cannot hold a progress bar: every redraw is a ``\\r`` frame,
and lines printed meanwhile end up inside frames, where ``grep`` does not find them. So progress bars
are drawn only on a terminal, and lines are written whole and flushed. The libraries' log
records (accelerate's seven lines per saved training state, matplotlib's font cache) stay below
warning level unless ``log_level`` asks for them; hf_seqrec's own notices ("Preparing built-in
backbone ... (once)") always show, since they say what the program is doing.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, TextIO

from tqdm.auto import tqdm
from transformers.utils import logging as transformers_logging

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


def _is_tty(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def terminal_stream() -> TextIO | None:
    """The stream a progress bar may be drawn on: stderr if it is a terminal, else stdout if that is one, else None.

    Under ``accelerate launch`` the script's stderr is a pipe that accelerate copies through, while its
    stdout is still the terminal itself; with output sent to a file or a pipe there is no terminal at all.
    """
    if _is_tty(sys.stderr):
        return sys.stderr
    if _is_tty(sys.stdout):
        return sys.stdout
    return None


def configure_console(log_level: str = "warning") -> None:
    """Set the libraries' log level (hf_seqrec's own records show from INFO up at any level) and, when
    stderr is not a terminal, switch off the progress bars of transformers, huggingface_hub and datasets.

    Raises ``ValueError`` naming ``log_level`` for a level that is not one of :data:`LOG_LEVELS`.
    """
    if not isinstance(log_level, str) or log_level.lower() not in LOG_LEVELS:
        raise ValueError(f"log_level: expected one of {', '.join(LOG_LEVELS)}, got {log_level!r}")
    level = getattr(logging, log_level.upper())
    logging.basicConfig(level=level, format=LOG_FORMAT)
    logging.getLogger().setLevel(level)
    logging.getLogger("hf_seqrec").setLevel(min(level, logging.INFO))
    if not _is_tty(sys.stderr):  # where the libraries draw their bars
        _disable_library_progress_bars()


def _disable_library_progress_bars() -> None:
    """Weight loading and saving (transformers, which also switches off huggingface_hub's) and ``map`` (datasets)."""
    transformers_logging.disable_progress_bar()
    # datasets reads this when it is imported (not importing it here keeps the service's start light); a value
    # the user set wins, as datasets itself wants.
    if "HF_DATASETS_DISABLE_PROGRESS_BARS" in os.environ:
        return
    os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
    if "datasets" in sys.modules:
        sys.modules["datasets"].disable_progress_bars()


def say(line: str) -> None:
    """Print a whole line on stdout, above a progress bar if one is drawn, and flush it.

    Flushed so that, with stdout and stderr going to the same file, the line lands where it happened
    instead of whenever Python's buffer fills.
    """
    tqdm.write(line, file=sys.stdout)
    sys.stdout.flush()
