"""Item popularity counts (``item_popularity.json``): how often each item-table row occurs in training.

The next-item pipeline ranks by them under ``fallback="popular"`` (cold-start users), and
``SeqRecForNextItem.from_pretrained`` loads them into the model (``model.item_popularity``), so this
file travels with every checkpoint (a same-folder import of ``modeling_seqrec.py``) and imports only
the standard library and its same-folder modules.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Sequence

from .atomic_writes import write_text_atomic
from .checkpoint_files import POPULARITY_FILE


def item_popularity(sequences: Iterable[Sequence[int]], num_items: int) -> list[int]:
    """How often each item-table row occurs in ``sequences`` (lists of row indices)."""
    counts = [0] * num_items
    for sequence in sequences:
        for row in sequence:
            counts[int(row)] += 1
    return counts


def write_item_popularity(directory: str | os.PathLike, counts: Sequence[int], *, source: str) -> Path:
    """Write ``item_popularity.json``: ``{"source": where the counts come from, "counts": one per item-table row}``."""
    path = Path(directory) / POPULARITY_FILE
    write_text_atomic(path, json.dumps({"source": source, "counts": list(counts)}) + "\n")
    return path


def read_item_popularity(directory: str | os.PathLike) -> list[int] | None:
    """The counts of ``item_popularity.json`` in ``directory``; None when the checkpoint has none."""
    path = Path(directory) / POPULARITY_FILE
    if not path.is_file():
        return None
    return list(json.loads(path.read_text(encoding="utf-8"))["counts"])


def save_item_popularity(
    directory: str | os.PathLike, sequences: Iterable[Sequence[int]], num_items: int, *, source: str = "training sequences"
) -> Path:
    """Write ``item_popularity.json``: the count of every item in ``sequences``, in item-table order.

    The pipeline ranks by these counts under ``fallback="popular"`` (cold-start users). Count the
    training split only, so the fallback never sees the evaluation targets.
    """
    return write_item_popularity(directory, item_popularity(sequences, num_items), source=source)
