"""What a training run needs for the reward-aware objective (``--reward``).

The objective itself is the model's: SQN's Q-learning head (``hf_seqrec.modeling.q_learning``), or with
``--reward_objective reward-weighted`` the cross-entropy of each position weighted by its target's reward
(``label_weights`` of ``SeqRecForNextItem.forward``). Here the run's options become the model's ``q_head``
settings and the collator's reward function and batch key, and rated data is required. The
test targets' ratings in ``test_ranks.json`` and the liked / disliked metrics of ``metrics.json`` are
``hf_seqrec.evaluation.final_test``'s, shared with ``scripts/evaluate_checkpoint.py``.
"""

from __future__ import annotations

from typing import Any

from ..data.prepare import PreparedData
from ..data.rewards import RewardRules
from .config import ConfigError, FinetuneConfig


def q_head_settings(config: FinetuneConfig) -> dict[str, Any] | None:
    """``SeqRecConfig.q_head`` for the run: its discount and weight, a unit-length state, and the reward rules for the record; None without ``--reward``."""
    if config.reward is None or config.reward_objective != "sqn":
        return None
    return {"discount": config.reward_discount, "weight": config.reward_weight, "normalized": True, "reward": config.reward}


def reward_function(config: FinetuneConfig) -> RewardRules | None:
    """The collator's function from a target's rating to its reward; None without ``--reward``."""
    return None if config.reward is None else RewardRules.parse(config.reward)


def reward_batch_key(config: FinetuneConfig) -> str:
    """Where the collator puts the rewards: ``rewards`` (SQN's TD targets) or ``label_weights`` (the weighted cross-entropy)."""
    return "label_weights" if config.reward_objective == "reward-weighted" else "rewards"


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
