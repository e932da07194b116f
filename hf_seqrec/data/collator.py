"""Turn user sequences into model inputs: training windows and evaluation batches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import datasets
import torch

from ..modeling.next_item_labels import IGNORE_INDEX
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


def training_windows(train_split: datasets.Dataset, max_len: int, *, with_ratings: bool = False) -> datasets.Dataset:
    """One row per window: ``input_items`` (all but the last item) and ``labels`` (each next item).

    ``with_ratings``: also ``label_ratings``, the rating of each label (from the split's ``ratings``
    column), which the collator turns into the rewards of the reward-aware objective.
    """
    if with_ratings and "ratings" not in train_split.column_names:
        raise ValueError("training_windows(with_ratings=True) needs a training split with a 'ratings' column (rated data)")
    ratings = train_split["ratings"] if with_ratings else [None] * len(train_split)
    columns: dict[str, list] = {"user_id": [], "input_items": [], "labels": [], **({"label_ratings": []} if with_ratings else {})}
    for user_id, items, rated in zip(train_split["user_id"], train_split["items"], ratings):
        # Windows are cut by position alone, so the ratings' windows line up with the items'.
        rating_windows = sequence_windows(rated, max_len) if with_ratings else None
        for index, window in enumerate(sequence_windows(items, max_len)):
            columns["input_items"].append(window[:-1])
            columns["labels"].append(window[1:])
            columns["user_id"].append(user_id)
            if with_ratings:
                columns["label_ratings"].append(rating_windows[index][1:])
    features = {
        "user_id": datasets.Value("string"),
        "input_items": datasets.Sequence(datasets.Value("int64")),
        "labels": datasets.Sequence(datasets.Value("int64")),
    }
    if with_ratings:
        features["label_ratings"] = datasets.Sequence(datasets.Value("float64"))
    return datasets.Dataset.from_dict(columns, features=datasets.Features(features))


def window_count(num_items: int, max_len: int) -> int:
    """How many windows ``sequence_windows`` cuts a sequence of ``num_items`` items into."""
    return -(-(num_items - 1) // max_len) if num_items >= 2 else 0


class VaryingTrainingWindows(torch.utils.data.Dataset):
    """Training windows cut at a different place every epoch: one random offset per user and epoch.

    ``training_windows`` cuts every history at the same places every epoch, so the model trains on
    the very context it is validated on (the last window ends where validation starts) and sees each
    item after the same predecessors every time. Here the newest window of a user holds the last
    ``max_len - offset`` transitions, with ``offset`` drawn per user and epoch in ``[0, max_len)``, and
    the older windows follow back in steps of ``max_len``: the same number of windows as
    ``training_windows`` (offset 0 gives exactly its windows), so an epoch has the same number of
    batches, each transition is a target at most once per epoch, and the oldest ``offset`` transitions
    of a history that does not fit are left out of that epoch. The offsets are a function of
    ``(seed, epoch)`` alone (accelerate calls ``set_epoch``), so a resumed run rebuilds the same windows.
    """

    def __init__(
        self, sequences: Sequence[Sequence[int]], max_len: int, seed: int, ratings: Sequence[Sequence[float]] | None = None
    ) -> None:
        self.sequences = [list(items) for items in sequences if len(items) >= 2]
        # With ratings (parallel to sequences), each row also gives the rating of each label ("label_ratings").
        self.ratings = None if ratings is None else [list(r) for items, r in zip(sequences, ratings) if len(items) >= 2]
        self.max_len = max_len
        self.seed = seed
        # Row -> (user, window index counted from the newest), fixed for the run.
        self.rows = [(user, k) for user, items in enumerate(self.sequences) for k in range(window_count(len(items), max_len))]
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + 7_919 * epoch + 1)
        self.offsets = torch.randint(0, self.max_len, (len(self.sequences),), generator=generator).tolist()

    def _span(self, row: int) -> tuple[int, int]:
        """The targets ``[first, end)`` (indices into the user's items) of a row in the current epoch."""
        user, k = self.rows[row]
        newest_end = len(self.sequences[user])
        end = newest_end if k == 0 else newest_end - (self.max_len - self.offsets[user]) - (k - 1) * self.max_len
        first = max(1, end - (self.max_len - self.offsets[user] if k == 0 else self.max_len))
        return first, max(end, first)

    def lengths(self, epoch: int) -> list[int]:
        """Each row's window length in ``epoch`` (what length-grouped batching sorts by)."""
        if epoch != self.epoch:
            self.set_epoch(epoch)
        return [max(end - first, 1) for first, end in map(self._span, range(len(self.rows)))]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, row: int) -> dict[str, list]:
        user, _ = self.rows[row]
        items = self.sequences[user]
        first, end = self._span(row)
        if end <= first:  # every target of this window was left out this epoch: one padding-only row
            window = {"input_items": [items[0]], "labels": [IGNORE_INDEX]}
            return window if self.ratings is None else {**window, "label_ratings": [0.0]}
        window = {"input_items": items[first - 1 : end - 1], "labels": items[first:end]}
        return window if self.ratings is None else {**window, "label_ratings": self.ratings[user][first:end]}


@dataclass
class NextItemCollator:
    """Pad a batch on the right and build the tensors :class:`SeqRecForNextItem` reads.

    Training rows (``input_items``, ``labels``) give ``input_item_ids``, ``attention_mask`` and
    ``labels``. Evaluation rows (``history``, ``target``) give the most recent ``max_len``
    history items as input, the ``targets``, and every history item as ``seen_items`` (padded
    with -1) so the evaluator can mask items the user already has.

    With a ``reward`` (a function of a rating, e.g. ``hf_seqrec.data.rewards.RewardRules``) training
    rows must also have ``label_ratings``, and the batch gets ``rewards``: the reward of each label's
    rating, 0 on padding, for the reward-aware objective, under ``reward_key`` (``label_weights`` for the
    reward-weighted cross-entropy).
    """

    max_len: int
    reward: Callable[[float], float] | None = None
    reward_key: str = "rewards"

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if "labels" in rows[0]:
            return self._training_batch(rows)
        return self._evaluation_batch(rows)

    def _pad(self, sequences: list[Sequence[int]], value: int | float, dtype: torch.dtype = torch.long) -> torch.Tensor:
        width = max(1, max(len(s) for s in sequences))
        batch = torch.full((len(sequences), width), value, dtype=dtype)
        for row, sequence in enumerate(sequences):
            if len(sequence):
                batch[row, : len(sequence)] = torch.as_tensor(sequence, dtype=dtype)
        return batch

    def _training_batch(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        inputs = [row["input_items"][-self.max_len :] for row in rows]
        labels = [row["labels"][-self.max_len :] for row in rows]
        input_item_ids = self._pad(inputs, PAD_ITEM)
        batch = {
            "input_item_ids": input_item_ids,
            "attention_mask": self._pad([[1] * len(s) for s in inputs], 0),
            "labels": self._pad(labels, IGNORE_INDEX),
        }
        if self.reward is not None:
            batch[self.reward_key] = self._pad([self._rewards(row) for row in rows], 0.0, torch.float32)
        return batch

    def _rewards(self, row: dict[str, Any]) -> list[float]:
        """The reward of each of the row's labels (the same most recent ``max_len`` as the labels)."""
        if "label_ratings" not in row:
            raise ValueError("a reward is set but a training row has no 'label_ratings': build the windows with their ratings")
        return [self.reward(rating) for rating in row["label_ratings"][-self.max_len :]]

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
