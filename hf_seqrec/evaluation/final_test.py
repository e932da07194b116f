"""What a test evaluation reports besides its overall metrics: the per-user ranks file and the metrics by target rating.

The trainer's final test and ``scripts/evaluate_checkpoint.py`` both build them here (the metrics by rating
through ``evaluator.evaluate_split``), from the prepared data, the ranks of ``rank_targets`` and how many test
users were scored, so re-evaluating a checkpoint gives the ``test_ranks.json`` and the ``test_by_rating`` of
``metrics.json`` that its run wrote. Runs finished before either existed get them that way without retraining.
(No name here starts with ``test_``: pytest would collect it as a test wherever a test module imports it.)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..io_utils import write_json_atomic
from .ratings import rating_metrics

if TYPE_CHECKING:
    from ..data.prepare import PreparedData


def _first(values: list, max_users: int | None) -> list:
    """The values of the users scored: every one, or the first ``max_users`` in test-split order."""
    return values if max_users is None else values[:max_users]


def target_ratings(prepared: PreparedData, max_users: int | None) -> list[float] | None:
    """The rating of each evaluated user's test target, in test-split order; None for data without ratings."""
    test = prepared.splits["test"]
    if "target_rating" not in test.column_names:
        return None
    return _first([float(rating) for rating in test["target_rating"]], max_users)


def ranks_file_payload(prepared: PreparedData, ranks: Sequence[int], test: dict[str, Any], max_users: int | None) -> dict[str, Any]:
    """The contents of ``test_ranks.json``: the 1-based rank of each evaluated user's test target, in test-split order.

    The ranks are those of ``rank_targets`` (1 = first, pessimistic ties), the ones ``full_ranking_metrics``
    turned into ``test``: NDCG@10 = mean of 1/log2(rank+1) over ranks <= 10. Next to them, how often each
    target occurs in the training split (quality by target popularity, the long tail) and, on rated data,
    each target's rating (benchmarks pair runs on the liked targets).
    """
    from ..modeling.popularity_counts import item_popularity

    user_ids = _first(prepared.splits["test"]["user_id"], max_users)
    targets = _first(prepared.splits["test"]["target"], max_users)
    train_counts = item_popularity(prepared.splits["train"]["items"], len(prepared.catalog))
    ranks = [int(rank) for rank in ranks]
    if len(ranks) != len(user_ids):
        raise RuntimeError(f"{len(ranks)} test ranks for {len(user_ids)} test users")
    payload = {
        "split": "test",
        "rank_base": 1,
        "n_users": len(ranks),
        "ndcg@10": test["ndcg@10"],  # the metrics.json value these ranks give, to check they belong together
        "user_ids": list(user_ids),
        "ranks": ranks,
        "target_train_counts": [int(train_counts[target]) for target in targets],
    }
    ratings = target_ratings(prepared, max_users)
    if ratings is not None:
        payload["target_ratings"] = ratings
    return payload


def write_ranks_file(
    path: str | os.PathLike, prepared: PreparedData, ranks: Sequence[int], test: dict[str, Any], max_users: int | None
) -> None:
    """Write ``ranks_file_payload`` to ``path`` atomically, so a rerun replaces a previous file whole."""
    write_json_atomic(path, ranks_file_payload(prepared, ranks, test, max_users))


def rating_report(
    ranks: Sequence[int], prepared: PreparedData, max_users: int | None, n_bootstrap: int
) -> dict[str, Any] | None:
    """``test_by_rating``: the test metrics of the liked and of the disliked targets (``ratings``); None without ratings."""
    ratings = target_ratings(prepared, max_users)
    if ratings is None:
        return None
    return rating_metrics(ranks, ratings, n_bootstrap=n_bootstrap)
