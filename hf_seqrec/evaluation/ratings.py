"""Test metrics split by the rating the user gave the test target: what a reward-aware objective is for.

A mean over all test targets counts a hit on a film the user rated 1 as much as a hit on one rated 5.
On rated data the test metrics are therefore also reported over the targets the user *liked*
(rating >= 4), and the rate at which a *disliked* target (rating <= 2) still lands in the top 10
(HR@10 over the disliked targets: lower means the model is less eager to recommend what the user
will dislike). Both come from the same ranks as the overall metrics, with the same percentile
bootstrap over users (``full_ranking_metrics``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .ranking import full_ranking_metrics

LIKED_MIN_RATING = 4.0
DISLIKED_MAX_RATING = 2.0
PROTOCOL = (
    f"the test metrics over the users whose test target they rated >= {LIKED_MIN_RATING:g} (liked), and over those who "
    f"rated it <= {DISLIKED_MAX_RATING:g} (disliked; their HR@10 is the rate at which a disliked target lands in the top "
    "10); the same ranks and percentile bootstrap over users as the overall test metrics"
)


def rating_metrics(
    ranks: Sequence[int] | np.ndarray, target_ratings: Sequence[float], *, n_bootstrap: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Metrics of the liked and of the disliked test targets, from one ranking pass.

    ``ranks[i]`` is the rank of the target the user rated ``target_ratings[i]``. A group with no users
    gets ``None`` instead of metrics, with its count of 0 saying why. ``disliked_hr@10`` and its
    interval repeat the disliked group's HR@10: the number this breakdown exists to show.
    """
    ranks = np.asarray(ranks)
    ratings = np.asarray(target_ratings, dtype=np.float64)
    if len(ranks) != len(ratings):
        raise ValueError(f"got {len(ranks)} ranks for {len(ratings)} target ratings")
    groups = {"liked": ratings >= LIKED_MIN_RATING, "disliked": ratings <= DISLIKED_MAX_RATING}
    result: dict[str, Any] = {
        "protocol": PROTOCOL,
        "liked_min_rating": LIKED_MIN_RATING,
        "disliked_max_rating": DISLIKED_MAX_RATING,
    }
    for name, selected in groups.items():
        result[f"n_test_users_{name}"] = int(selected.sum())
        result[f"test_{name}"] = (
            full_ranking_metrics(ranks[selected], n_bootstrap=n_bootstrap, seed=seed) if selected.any() else None
        )
    disliked = result["test_disliked"]
    result["disliked_hr@10"] = None if disliked is None else disliked["hr@10"]
    result["disliked_hr@10_interval"] = None if disliked is None else disliked["intervals"].get("hr@10")
    return result


def rating_summary(breakdown: dict[str, Any]) -> str:
    """One line for the terminal: the liked targets' HR@10 and NDCG@10, and the disliked targets' top-10 rate."""
    liked, disliked = breakdown["test_liked"], breakdown["disliked_hr@10"]
    liked_text = "none" if liked is None else f"HR@10 {liked['hr@10']:.4f} NDCG@10 {liked['ndcg@10']:.4f}"
    interval = breakdown["disliked_hr@10_interval"]
    disliked_text = "none" if disliked is None else f"{disliked:.4f}" + (f" [{interval[0]:.4f}, {interval[1]:.4f}]" if interval else "")
    return (
        f"test by target rating: liked (>= {breakdown['liked_min_rating']:g}, {breakdown['n_test_users_liked']} users) {liked_text}; "
        f"disliked (<= {breakdown['disliked_max_rating']:g}, {breakdown['n_test_users_disliked']} users) in the top 10: {disliked_text}"
    )
