"""What a training run needs for the reward-aware objective (``--reward``) and the rating breakdown of its metrics.

The objective itself is the model's (``hf_seqrec.modeling.q_learning``); here the run's options become
the model's ``q_head`` settings and the collator's reward function, rated data is required, and the test
targets' ratings are read for ``test_ranks.json`` and the liked / disliked metrics of ``metrics.json``.
"""

from __future__ import annotations

from typing import Any, Sequence

from ..data.prepare import PreparedData
from ..data.rewards import RewardRules
from ..evaluation.ratings import rating_metrics
from .config import ConfigError, FinetuneConfig


def q_head_settings(config: FinetuneConfig) -> dict[str, Any] | None:
    """``SeqRecConfig.q_head`` for the run: its discount and weight, and the reward rules for the record; None without ``--reward``."""
    if config.reward is None:
        return None
    return {"discount": config.reward_discount, "weight": config.reward_weight, "reward": config.reward}


def reward_function(config: FinetuneConfig) -> RewardRules | None:
    """The collator's function from a target's rating to its reward; None without ``--reward``."""
    return None if config.reward is None else RewardRules.parse(config.reward)


def check_rated_data(config: FinetuneConfig, prepared: PreparedData) -> None:
    """Refuse ``--reward`` on data that loaded without ratings, naming the option and the column.

    The configuration already refuses a file without ``--rating_column``; this catches any other way
    to data without a ``rating`` column (a built-in dataset without ratings).
    """
    if config.reward is not None and "ratings" not in prepared.splits["train"].column_names:
        raise ConfigError(
            f"reward: rewards are computed from ratings, but the interactions of {config.dataset} have no rating column; "
            "set --rating_column to the column that holds the ratings, or drop --reward"
        )


def test_target_ratings(prepared: PreparedData, max_users: int | None) -> list[float] | None:
    """The rating of each evaluated user's test target, in test-split order; None for data without ratings."""
    test = prepared.splits["test"]
    if "target_rating" not in test.column_names:
        return None
    ratings = [float(rating) for rating in test["target_rating"]]
    return ratings if max_users is None else ratings[:max_users]


def rating_report(test_ranks: Sequence[int], prepared: PreparedData, config: FinetuneConfig) -> dict[str, Any] | None:
    """The liked / disliked test metrics of metrics.json (``evaluation.ratings``); None for data without ratings."""
    ratings = test_target_ratings(prepared, config.eval_max_users)
    if ratings is None:
        return None
    return rating_metrics(test_ranks, ratings, n_bootstrap=config.bootstrap_samples)
