"""From interactions to per-user sequences and the leave-one-out splits every model is evaluated on.

The protocol (kept exact because every model is compared on it): per user, items in
chronological order with ties kept in file order; the last item is the test target,
the second to last the validation target, the rest is training. Users with fewer
than 3 interactions are dropped from evaluation and counted in the report.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from datasets import Dataset, DatasetDict, Features, List, Value

from .errors import DataValidationError

MIN_ITEMS_FOR_EVALUATION = 3  # one to train on, one validation target, one test target
MIN_ITEMS_FOR_TRAINING = 2  # a single item has no next item to predict

TRAIN_FEATURES = Features({"user_id": Value("string"), "items": List(Value("int64"))})
EVAL_FEATURES = Features(
    {"user_id": Value("string"), "history": List(Value("int64")), "target": Value("int64")}
)
# The same splits when the interactions have ratings: the rating of every training item, and of each target.
RATED_TRAIN_FEATURES = Features({**TRAIN_FEATURES, "ratings": List(Value("float64"))})
RATED_EVAL_FEATURES = Features({**EVAL_FEATURES, "target_rating": Value("float64")})


def k_core_filter(interactions: pd.DataFrame, k: int) -> pd.DataFrame:
    """Keep only users and items with at least ``k`` interactions each.

    Dropping a sparse item can push a user below ``k`` and the other way round, so the
    two filters repeat until neither removes anything. ``k <= 1`` is a no-op and
    returns ``interactions`` itself. Rows keep their order and index.

    Raises:
        DataValidationError: when no interaction survives, naming ``k`` and the size
            of the data, since that is almost always a ``k`` too large for the data.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k must be an int; got {k!r}")
    if k <= 1:
        return interactions
    frame = interactions
    while True:
        user_counts = frame["user_id"].map(frame["user_id"].value_counts())
        item_counts = frame["item_id"].map(frame["item_id"].value_counts())
        keep = (user_counts >= k) & (item_counts >= k)
        if keep.all():
            return frame
        frame = frame[keep]
        if frame.empty:
            raise DataValidationError(
                f"the {k}-core filter removed every interaction",
                found=f"{interactions['user_id'].nunique()} users, {interactions['item_id'].nunique()} items, "
                f"{len(interactions)} interactions",
                expected=f"some users and items with at least {k} interactions each after iterative filtering",
                hint="Use a smaller k_core (0 or 1 disables the filter)",
            )


def user_sequences(interactions: pd.DataFrame) -> dict[str, list[str]]:
    """Each user's item ids in chronological order, users in order of first appearance.

    The sort by ``timestamp`` is stable, so items with equal timestamps keep their order
    in ``interactions`` (the file order); without a ``timestamp`` column the file order
    is the time order. Stability is what makes the splits reproducible when a
    dataset, like MovieLens, has many interactions in the same second.
    """
    return {str(user): [str(item) for item in chunk] for user, chunk in _per_user(interactions, "item_id", object)}


def user_ratings(interactions: pd.DataFrame) -> dict[str, list[float]]:
    """Each user's ratings in the order of :func:`user_sequences`: ``ratings[user][i]`` rates ``sequences[user][i]``.

    Needs the ``rating`` column (loaded when a rating column is named, always for the built-in data).
    """
    return {str(user): [float(rating) for rating in chunk] for user, chunk in _per_user(interactions, "rating", np.float64)}


def _per_user(interactions: pd.DataFrame, column: str, dtype: object) -> list[tuple[object, np.ndarray]]:
    """``(user, values of column)`` per user in order of first appearance, each user's values in time order.

    The one definition of the order, so that items and their ratings always line up.
    """
    codes, user_ids = pd.factorize(interactions["user_id"])  # codes follow first appearance
    order = np.arange(len(interactions))
    if "timestamp" in interactions.columns:
        order = np.argsort(interactions["timestamp"].to_numpy(), kind="stable")
    # A second stable sort by user keeps the chronological order inside each user.
    order = order[np.argsort(codes[order], kind="stable")]
    values = interactions[column].to_numpy(dtype=dtype)[order]
    boundaries = np.cumsum(np.bincount(codes, minlength=len(user_ids)))[:-1]
    return list(zip(user_ids, np.split(values, boundaries)))


def leave_one_out(
    sequences: dict[str, list[int]], ratings: dict[str, list[float]] | None = None
) -> tuple[DatasetDict, dict[str, int]]:
    """Split per-user sequences of item indices into train / validation / test.

    For a user with ``n >= 3`` items:

    - train: ``{"user_id", "items": items[:-2]}``
    - validation: ``{"user_id", "history": items[:-2], "target": items[-2]}``
    - test: ``{"user_id", "history": items[:-1], "target": items[-1]}``

    A user with 2 items is not evaluated but still trains on its one transition; a
    user with 1 item teaches nothing and is dropped. The splits have explicit
    ``Features`` so that even an empty split has a schema.

    With ``ratings`` (each user's ratings, parallel to their items) the training split
    also holds ``ratings`` (one per item of ``items``) and the evaluation splits
    ``target_rating``: what the reward-aware objective learns from and the rating
    breakdown of the test metrics reads.

    Returns:
        The ``DatasetDict`` and a report with ``n_users``, ``n_users_evaluated`` and
        ``n_users_too_short`` (users with fewer than 3 items).

    Raises:
        DataValidationError: when no user has 3 items, since nothing could be evaluated.
    """
    train: dict[str, list] = {"user_id": [], "items": []}
    validation: dict[str, list] = {"user_id": [], "history": [], "target": []}
    test: dict[str, list] = {"user_id": [], "history": [], "target": []}
    if ratings is not None:
        train["ratings"], validation["target_rating"], test["target_rating"] = [], [], []
    for user, items in sequences.items():
        items = list(items)
        rated = None if ratings is None else _ratings_of(ratings, user, len(items))
        if len(items) >= MIN_ITEMS_FOR_EVALUATION:
            _append(train, user_id=user, items=items[:-2])
            _append(validation, user_id=user, history=items[:-2], target=items[-2])
            _append(test, user_id=user, history=items[:-1], target=items[-1])
            if rated is not None:
                _append(train, ratings=rated[:-2])
                _append(validation, target_rating=rated[-2])
                _append(test, target_rating=rated[-1])
        elif len(items) >= MIN_ITEMS_FOR_TRAINING:
            _append(train, user_id=user, items=items)
            if rated is not None:
                _append(train, ratings=rated)
    n_evaluated = len(test["user_id"])
    if n_evaluated == 0:
        raise DataValidationError(
            "no user has enough interactions for leave-one-out evaluation",
            found=f"{len(sequences)} users, the longest with {max(map(len, sequences.values()), default=0)} items",
            expected=f"at least {MIN_ITEMS_FOR_EVALUATION} interactions for some users "
            "(one to train on, one validation target, one test target)",
        )
    splits = DatasetDict(
        {
            "train": Dataset.from_dict(train, features=TRAIN_FEATURES if ratings is None else RATED_TRAIN_FEATURES),
            "validation": Dataset.from_dict(validation, features=EVAL_FEATURES if ratings is None else RATED_EVAL_FEATURES),
            "test": Dataset.from_dict(test, features=EVAL_FEATURES if ratings is None else RATED_EVAL_FEATURES),
        }
    )
    report = {
        "n_users": len(sequences),
        "n_users_evaluated": n_evaluated,
        "n_users_too_short": len(sequences) - n_evaluated,
    }
    return splits, report


def _ratings_of(ratings: dict[str, list[float]], user: str, n_items: int) -> list[float]:
    """The user's ratings, checked to be one per item (a mismatch would misalign every reward)."""
    values = list(ratings.get(user, ()))
    if len(values) != n_items:
        raise ValueError(f"user {user!r} has {n_items} items but {len(values)} ratings; expected one rating per item")
    return values


def _append(columns: dict[str, list], **values: object) -> None:
    for name, value in values.items():
        columns[name].append(value)
