"""The console commands ([project.scripts] in pyproject.toml) and the scripts/*.py that call the same functions.

A user mistake (bad data, bad option, an output directory in use) ends the process with a
one-paragraph message and exit status 2, not a traceback; anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import sys
from typing import Callable

from .console import configure_console
from .data.errors import DataValidationError
from .inference.evaluate_command import evaluate_main
from .inference.recommend_command import recommend_main
from .publishing.push import PushError
from .training.config import ConfigError
from .training.finetune_command import finetune_main
from .training.output_dir import OutputDirError

# What a user can fix: the data, a missing file, an option, the output directory, a failed upload.
USER_ERRORS: tuple[type[BaseException], ...] = (DataValidationError, FileNotFoundError, ConfigError, OutputDirError, PushError)


def run_cli(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run ``main`` and turn user mistakes into a clear message and exit status 2."""
    # Libraries log at warning level, hf_seqrec at info; no progress bars unless stderr is a terminal.
    configure_console()
    try:
        return main(argv)
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def finetune() -> int:
    """``hf-seqrec-finetune``, ``scripts/finetune.py``."""
    return run_cli(finetune_main)


def evaluate() -> int:
    """``hf-seqrec-evaluate``, ``scripts/evaluate_checkpoint.py``."""
    return run_cli(evaluate_main)


def recommend() -> int:
    """``hf-seqrec-recommend``, ``scripts/recommend.py``."""
    return run_cli(recommend_main)


def serve() -> int:
    """``hf-seqrec-serve``, ``scripts/serve.py``."""
    # Imported here: the service needs the optional "serve" extra (fastapi, uvicorn), the other commands do not.
    from .serving.serve_command import serve_main

    return run_cli(serve_main)
