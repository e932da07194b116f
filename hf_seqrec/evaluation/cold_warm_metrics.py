"""Test (or validation) metrics split by cold (held out of training) and warm targets, for the cold-start protocol."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..data.cold_start_split import PROTOCOL
from .ranking import full_ranking_metrics


def cold_start_metrics(
    ranks: Sequence[int] | np.ndarray,
    targets: Sequence[int],
    cold_items: Sequence[int],
    *,
    fraction: float,
    seed: int,
    n_bootstrap: int = 1000,
    split: str = "test",
) -> dict[str, Any]:
    """Metrics of the users whose target is a cold item and of the others, from one ranking pass.

    ``ranks[i]`` is the rank of ``targets[i]``. A group with no users (a small catalogue or user
    subset) gets ``None`` instead of an error, with its count of 0 saying why. ``split`` names the
    keys (``test_cold``, ``n_test_users_cold``, ...): the validation split's breakdown is what designs
    are chosen on, the test split's what is reported.
    """
    ranks = np.asarray(ranks)
    if len(ranks) != len(targets):
        raise ValueError(f"got {len(ranks)} ranks for {len(targets)} targets")
    cold = set(int(item) for item in cold_items)
    is_cold = np.array([int(target) in cold for target in targets], dtype=bool)
    result: dict[str, Any] = {
        "protocol": PROTOCOL,
        "fraction": fraction,
        "seed": seed,
        "n_cold_items": len(cold),
        f"n_{split}_users_cold": int(is_cold.sum()),
        f"n_{split}_users_warm": int((~is_cold).sum()),
    }
    for name, selected in (("cold", is_cold), ("warm", ~is_cold)):
        result[f"{split}_{name}"] = full_ranking_metrics(ranks[selected], n_bootstrap=n_bootstrap) if selected.any() else None
    return result


def cold_start_summary(cold_start: dict[str, Any], split: str = "test") -> str:
    """One line for the terminal: HR@10 and NDCG@10 of the cold and the warm targets of ``split``."""
    parts = []
    for name in ("cold", "warm"):
        metrics = cold_start[f"{split}_{name}"]
        count = cold_start[f"n_{split}_users_{name}"]
        shown = "none" if metrics is None else f"HR@10 {metrics['hr@10']:.4f} NDCG@10 {metrics['ndcg@10']:.4f}"
        parts.append(f"{name} targets ({count} users): {shown}")
    return f"cold-start {split}, " + "; ".join(parts)
