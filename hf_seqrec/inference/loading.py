"""Loading ``pipeline("next-item")`` for the scripts that serve a checkpoint: the batch job and the HTTP service.

One loader, so both accept the same ``--model`` (a checkpoint directory or a Hub id) and both turn
one that holds no checkpoint into a one-line ``FileNotFoundError`` (exit status 2 from the scripts),
not a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from huggingface_hub.errors import HFValidationError
from transformers import pipeline

import hf_seqrec  # noqa: F401  (registers the "next-item" task)

from ..modeling import SeqRecForNextItem
from ..modeling.checkpoint_location import local_checkpoint_dir


def checkpoint_dir(name: str | os.PathLike) -> Path:
    """The local directory of the checkpoint ``name`` (a directory, or a Hub id, downloaded if need be).

    Raises a one-line ``FileNotFoundError`` naming ``--model`` for a path or Hub id that holds no checkpoint.
    """
    name = str(name)
    if not Path(name).exists() and (name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name):
        raise FileNotFoundError(f"--model {name}: no such checkpoint directory")
    try:
        return local_checkpoint_dir(name)
    except (OSError, HFValidationError) as error:
        if Path(name).expanduser().is_dir():  # a directory without config.json: the message says so
            raise
        # Not a local directory, and not a Hub repository that can be reached (offline: not in the cache either).
        reason = " ".join(str(error).split())  # one line, whatever huggingface_hub's message looks like
        raise FileNotFoundError(f"--model {name}: cannot load a checkpoint from it ({reason})") from None


def load_pipeline(model: str | os.PathLike | Any, *, precision: str | None = None, device: Any = None) -> Any:
    """`pipeline("next-item")` for a checkpoint directory, a Hub id or a loaded `SeqRecForNextItem`.

    ``precision`` ("fp32", "bf16" or "int8", checked by the pipeline) and ``device`` are passed to the
    pipeline only when given, so the pipeline's own defaults apply otherwise.
    """
    if isinstance(model, (str, os.PathLike)):
        model = SeqRecForNextItem.from_pretrained(checkpoint_dir(model))
    options: dict[str, Any] = {}
    if precision is not None:
        options["precision"] = precision
    if device is not None:
        options["device"] = device
    return pipeline("next-item", model=model, **options)
