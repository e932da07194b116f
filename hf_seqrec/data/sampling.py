"""Length-grouped batching of training windows: less of every batch is padding.

Most MovieLens windows are full (50 items) but a fifth are shorter, and a randomly drawn batch is
padded to its longest window: about 19% of the positions a random batch computes are padding. Grouping
windows of similar length into the same batch (transformers' ``get_length_grouped_indices``: shuffle,
cut into mega-batches of 50 batches, sort each by length) removes nearly all of it while every epoch
still sees the windows in a fresh random order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch
from torch.utils.data import Sampler
from transformers.trainer_pt_utils import get_length_grouped_indices


class LengthGroupedSampler(Sampler[int]):
    """Indices in length-grouped order, a pure function of ``(seed, epoch)``.

    The order depends on nothing but the seed and the epoch (set by accelerate's ``set_epoch``), not on
    the global RNG, so a run resumed mid-epoch rebuilds the same order and ``skip_first_batches`` skips
    exactly the batches the killed run had consumed.
    """

    def __init__(
        self, lengths: Sequence[int], batch_size: int, seed: int, lengths_for_epoch: Callable[[int], Sequence[int]] | None = None
    ) -> None:
        self.lengths = list(lengths)
        # Windows cut anew every epoch (VaryingTrainingWindows) have new lengths every epoch.
        self.lengths_for_epoch = lengths_for_epoch
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        lengths = self.lengths if self.lengths_for_epoch is None else list(self.lengths_for_epoch(self.epoch))
        return iter(get_length_grouped_indices(lengths, self.batch_size, generator=generator))
