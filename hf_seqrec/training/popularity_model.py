"""The most-popular baseline's model: every item scored by its count in the training sequences.

Not a backbone and never saved as a checkpoint (a popularity run writes the counts as
``item_popularity.json``), so it lives with the run that fits it (``popularity.py``), not with the
checkpoint code in ``hf_seqrec/modeling``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import torch
from torch import nn
from transformers.utils import ModelOutput


@dataclass
class PopularityOutput(ModelOutput):
    """Scores of every item (its training count), the same for every user."""

    logits: torch.FloatTensor | None = None


class PopularityRecommender(nn.Module):
    """Most-popular baseline: every user gets the items ranked by their count in the training sequences.

    It answers the evaluator's call like :class:`SeqRecForNextItem` (``logits`` of shape
    ``(batch_size, num_items)``), so it is ranked, masked and scored by the same code.
    """

    def __init__(self, counts: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("counts", counts.float())

    @classmethod
    def from_sequences(cls, sequences: Iterable[Sequence[int]], num_items: int) -> "PopularityRecommender":
        """The model of the counts of every item-table row in ``sequences`` (lists of row indices)."""
        counts = torch.zeros(num_items, dtype=torch.long)
        for items in sequences:
            if len(items):
                counts += torch.bincount(torch.as_tensor(items, dtype=torch.long), minlength=num_items)
        return cls(counts)

    def forward(self, input_item_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None, **kwargs: Any) -> PopularityOutput:
        return PopularityOutput(logits=self.counts.to(input_item_ids.device).expand(input_item_ids.size(0), -1))
