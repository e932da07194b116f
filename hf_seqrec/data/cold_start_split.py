"""The cold-start protocol: items that training never sees, kept in the catalogue for evaluation.

A seeded random fraction of the catalogue is held out. Their interactions are removed from the
training part of every user's sequence (so no gradient ever touches them as a target or an input)
and from every validation and test input history (a held-out validation target too, where it would
otherwise open the test history), while validation and test targets stay as they are. So a model
never reads a held-out item, exactly as for an item added after training. Test targets that are
held-out items measure how well a model recommends an item it knows only by its text; the other
targets are "warm".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
from datasets import Dataset, DatasetDict

from .splitting import MIN_ITEMS_FOR_TRAINING

if TYPE_CHECKING:
    from .prepare import PreparedData

PROTOCOL = (
    "cold-start: a random fraction of the catalogue (seeded) is held out of training entirely; their interactions are "
    "removed from the training part of every sequence and from every validation and test input history (a held-out "
    "validation target too), the items stay in the catalogue and are ranked like any other; test metrics are reported separately for users whose test target is a held-out "
    "(cold) item and for the rest (warm)"
)


def apply_cold_start(prepared: PreparedData, fraction: float, seed: int) -> list[int]:
    """Hold a seeded fraction of the catalogue out of ``prepared``'s training data; returns the cold items.

    The items go into ``prepared.cold_items`` (what the evaluation splits its metrics by) and, with
    the counts of what was removed, into ``prepared.report["cold_start"]`` (what metrics.json records).
    """
    cold_items = choose_cold_items(len(prepared.catalog), fraction, seed)
    prepared.splits, report = hold_out_items(prepared.splits, cold_items)
    prepared.cold_items = cold_items
    prepared.report["cold_start"] = {"fraction": fraction, "seed": seed, "cold_items": cold_items, **report}
    return cold_items


def choose_cold_items(num_items: int, fraction: float, seed: int) -> list[int]:
    """``round(fraction * num_items)`` distinct item indices, a function of ``seed`` only (sorted)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"the cold-start fraction must be in (0, 1); got {fraction}")
    count = int(round(fraction * num_items))
    if count < 1 or count >= num_items:
        raise ValueError(f"a cold-start fraction of {fraction} holds out {count} of {num_items} items; expected at least 1 and fewer than all")
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(num_items, size=count, replace=False))


def hold_out_items(splits: DatasetDict, cold_items: Sequence[int]) -> tuple[DatasetDict, dict[str, int]]:
    """The same splits with ``cold_items`` removed from every training sequence and input history.

    Validation and test targets are kept (a cold target is what the protocol measures). A test
    history is the training part plus the validation target; a cold validation target is removed
    from it like every other cold item, so no model reads a held-out item at any time (as for an
    item added after training), and it is not masked from the test ranking either, like every cold
    item removed from a history. A training sequence left with fewer than 2 items has no transition
    and is dropped, and so is a validation or test row whose whole history was cold (nothing to
    recommend from); the report counts them.
    """
    cold = set(int(i) for i in cold_items)

    def warm_only(items: Sequence[int]) -> list[int]:
        return [item for item in items if item not in cold]

    train = splits["train"]
    # Rated data (a "ratings" column parallel to "items") keeps the ratings of the items it keeps.
    train_ratings = train["ratings"] if "ratings" in train.column_names else [None] * len(train)
    kept = [(user, *_warm_rows(items, rated, cold)) for user, items, rated in zip(train["user_id"], train["items"], train_ratings)]
    kept = [row for row in kept if len(row[1]) >= MIN_ITEMS_FOR_TRAINING]
    columns = {"user_id": [row[0] for row in kept], "items": [row[1] for row in kept]}
    if "ratings" in train.column_names:
        columns["ratings"] = [row[2] for row in kept]
    new_train = Dataset.from_dict(columns, features=train.features)
    validation = splits["validation"]
    warm_histories = [warm_only(h) for h in validation["history"]]
    rows_kept = [index for index, history in enumerate(warm_histories) if history]
    new_validation = _with_histories(validation, [warm_histories[index] for index in rows_kept], rows_kept)
    test = splits["test"]
    test_histories = [warm_only(h) for h in test["history"]]
    test_kept = [index for index, history in enumerate(test_histories) if history]
    new_test = _with_histories(test, [test_histories[index] for index in test_kept], test_kept)
    report = {
        "n_cold_items": len(cold),
        "n_train_interactions_removed": sum(len(items) for items in train["items"]) - sum(len(row[1]) for row in kept),
        "n_train_users_dropped": len(train) - len(kept),
        "n_validation_users_dropped": len(validation) - len(rows_kept),
        "n_test_users_dropped": len(test) - len(test_kept),
    }
    return DatasetDict({"train": new_train, "validation": new_validation, "test": new_test}), report


def _with_histories(split: Dataset, histories: list[list[int]], rows: Sequence[int]) -> Dataset:
    """The evaluation ``rows`` of ``split`` with new histories; every other column (target, its rating) as it was."""
    columns = {}
    for name in split.column_names:
        values = split[name]  # read once: each split[name] builds the whole column
        columns[name] = histories if name == "history" else [values[i] for i in rows]
    return Dataset.from_dict(columns, features=split.features)


def _warm_rows(items: Sequence[int], ratings: Sequence[float] | None, cold: set[int]) -> tuple[list[int], list[float] | None]:
    """The items that are not cold, and their ratings (``None`` without ratings)."""
    keep = [index for index, item in enumerate(items) if item not in cold]
    return [items[i] for i in keep], None if ratings is None else [ratings[i] for i in keep]
