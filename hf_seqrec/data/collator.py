"""Turn user sequences into model inputs: training windows and evaluation batches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import datasets
import torch

from ..modeling.checkpoint_format import IGNORE_INDEX
PAD_ITEM = 0  # any valid row works: padded positions are masked out of attention and loss


def sequence_windows(items: Sequence[int], max_len: int) -> list[list[int]]:
    """Cut one training sequence into windows of at most ``max_len + 1`` items.

    Windows are taken from the most recent end backwards and overlap by one item, so every
    transition ``items[i] -> items[i+1]`` is a training target exactly once while no window
    is longer than the model reads.
    """
    windows = []
    end = len(items)
    while end >= 2:
        start = max(0, end - (max_len + 1))
        windows.append(list(items[start:end]))
        if start == 0:
            break
        end = start + 1
    windows.reverse()
    return windows


def training_windows(train_split: datasets.Dataset, max_len: int) -> datasets.Dataset:
    """One row per window: ``input_items`` (all but the last item) and ``labels`` (each next item)."""
    inputs, labels, users = [], [], []
    for user_id, items in zip(train_split["user_id"], train_split["items"]):
        for window in sequence_windows(items, max_len):
            inputs.append(window[:-1])
            labels.append(window[1:])
            users.append(user_id)
    features = datasets.Features(
        {
            "user_id": datasets.Value("string"),
            "input_items": datasets.Sequence(datasets.Value("int64")),
            "labels": datasets.Sequence(datasets.Value("int64")),
        }
    )
    return datasets.Dataset.from_dict({"user_id": users, "input_items": inputs, "labels": labels}, features=features)


@dataclass
class NextItemCollator:
    """Pad a batch on the right and build the tensors :class:`SeqRecForNextItem` reads.

    Training rows (``input_items``, ``labels``) give ``input_item_ids``, ``attention_mask`` and
    ``labels``. Evaluation rows (``history``, ``target``) give the most recent ``max_len``
    history items as input, the ``targets``, and every history item as ``seen_items`` (padded
    with -1) so the evaluator can mask items the user already has.
    """

    max_len: int

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if "labels" in rows[0]:
            return self._training_batch(rows)
        return self._evaluation_batch(rows)

    def _pad(self, sequences: list[Sequence[int]], value: int) -> torch.Tensor:
        width = max(1, max(len(s) for s in sequences))
        batch = torch.full((len(sequences), width), value, dtype=torch.long)
        for row, sequence in enumerate(sequences):
            if len(sequence):
                batch[row, : len(sequence)] = torch.as_tensor(sequence, dtype=torch.long)
        return batch

    def _training_batch(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        inputs = [row["input_items"][-self.max_len :] for row in rows]
        labels = [row["labels"][-self.max_len :] for row in rows]
        input_item_ids = self._pad(inputs, PAD_ITEM)
        return {
            "input_item_ids": input_item_ids,
            "attention_mask": self._pad([[1] * len(s) for s in inputs], 0),
            "labels": self._pad(labels, IGNORE_INDEX),
        }

    def _evaluation_batch(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        histories = [row["history"] for row in rows]
        if any(len(h) == 0 for h in histories):
            raise ValueError("cannot recommend from an empty history; every evaluation row needs at least one item")
        inputs = [h[-self.max_len :] for h in histories]
        return {
            "input_item_ids": self._pad(inputs, PAD_ITEM),
            "attention_mask": self._pad([[1] * len(s) for s in inputs], 0),
            "targets": torch.tensor([row["target"] for row in rows], dtype=torch.long),
            "seen_items": self._pad(histories, -1),
        }
