"""The batch the next-item pipeline feeds the model: right-padded item rows and their attention mask.

A module of its own because two modules need the same batch: the pipeline, which scores with it,
and ``explain.py``, which re-scores histories exactly as the pipeline does; the pipeline imports
``explain.py``, so the shared piece cannot live in either. Like them it travels into every checkpoint
(``trust_remote_code``), so it imports only torch and the standard library.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def pad_histories(histories: Sequence[Sequence[int]], device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and attention mask (``[len(histories), longest]`` each) for histories of item rows."""
    length = max(len(h) for h in histories)
    ids = torch.zeros(len(histories), length, dtype=torch.long)
    mask = torch.zeros(len(histories), length, dtype=torch.long)
    for row, history in enumerate(histories):
        ids[row, : len(history)] = torch.tensor(list(history), dtype=torch.long)
        mask[row, : len(history)] = 1
    return ids.to(device), mask.to(device)
