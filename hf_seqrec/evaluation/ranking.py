"""Full-catalogue ranking of the target item, and the ranking metrics computed from it.

Every model (the LM recommender and every baseline) is evaluated through these two functions,
so the protocol below is the same for all of them:

1. `target_ranks` turns a batch of scores over the whole catalogue into the 1-based rank of each
   user's target item (history masked, ties pessimistic).
2. `full_ranking_metrics` turns the ranks of all users into HR@K, NDCG@K, MRR and bootstrap
   intervals, through the `evaluate` module in `metrics/next_item_ranking`.

`PROTOCOL` describes the protocol in words and values; it is written into every metrics.json and
model card so a number is never separated from how it was measured.
"""

from __future__ import annotations

import copy
import functools
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

DEFAULT_KS: tuple[int, ...] = (1, 5, 10, 20)
"""Cut-offs for HR@K and NDCG@K."""

METRIC_DIR: Path = Path(__file__).parent / "metrics" / "next_item_ranking"
"""Directory of the `evaluate` metric module (shipped as package data)."""


def metric_names(ks: Sequence[int] = DEFAULT_KS) -> tuple[str, ...]:
    """Keys of the metric values `full_ranking_metrics` returns for cut-offs `ks`, in order."""
    return (*(f"hr@{k}" for k in ks), *(f"ndcg@{k}" for k in ks), "mrr")


METRIC_NAMES: tuple[str, ...] = metric_names(DEFAULT_KS)
"""("hr@1", "hr@5", "hr@10", "hr@20", "ndcg@1", ..., "ndcg@20", "mrr")."""

# The evaluation protocol, in words and values. JSON-serialisable; copy it (copy.deepcopy) before
# changing anything, since every metrics.json and model card of this process shares this object.
PROTOCOL: dict = {
    "split": (
        "leave-one-out by timestamp: each user's interactions are sorted by timestamp (ties kept in "
        "file order); the last item is the test target, the second to last the validation target, "
        "the rest is training"
    ),
    "min_interactions": 3,
    "min_interactions_rule": (
        "users with fewer than 3 interactions after filtering are dropped from evaluation "
        "(reported as a count)"
    ),
    "ranking": "full: every item in the catalogue is scored; no sampled negatives",
    "masking": (
        "items in the user's input history are masked out (cannot outrank the target); "
        "the target itself is never masked, even if it also appears in the history"
    ),
    "ties": (
        "pessimistic: rank = 1 + #unmasked items scored higher than the target + #other unmasked "
        "items scored equal to it (a constant model gets the worst rank); NaN scores count as -inf"
    ),
    "metrics": {
        "hr@K": "1 if rank <= K else 0 (equals Recall@K with one target item)",
        "ndcg@K": "1/log2(rank+1) if rank <= K else 0 (one relevant item, so the ideal DCG is 1)",
        "mrr": "1/rank (no cut-off)",
    },
    "ks": list(DEFAULT_KS),
    "metric_names": list(METRIC_NAMES),
    "aggregation": "mean over evaluated users",
    "interval": {
        "method": "percentile bootstrap over users (resampled with replacement)",
        "confidence": 0.95,
        "n_resamples": 1000,
        "rng": "numpy.random.default_rng",
        "seed": 0,
    },
}


def evaluation_protocol(
    *,
    n_resamples: int,
    dataset: str,
    k_core: int,
    max_len: int,
    max_users: int | None = None,
    max_users_option: str = "eval_max_users",
) -> dict:
    """The ``protocol`` block of a metrics file: `PROTOCOL` with the values of this evaluation.

    The trainer's metrics.json and scripts' evaluation output both build it here, so a number
    evaluated either way carries the same description. ``max_users`` (the option named
    ``max_users_option`` limited the users) marks the metrics as a subset, not comparable to full runs.
    """
    protocol = copy.deepcopy(PROTOCOL)
    protocol["interval"]["n_resamples"] = n_resamples
    protocol["dataset"] = dataset
    protocol["k_core"] = k_core
    protocol["max_len"] = max_len
    if max_users is not None:
        protocol["subset"] = f"first {max_users} users only ({max_users_option}); not comparable to full runs"
    return protocol


def user_counts(data_report: dict, n_evaluated: int) -> dict[str, int]:
    """The user counts of a metrics file: ``n_users`` every user of the data, ``n_users_evaluated`` those the metrics average over.

    ``n_users_evaluated`` is smaller than the users the split could evaluate when the evaluation
    was limited to the first users; ``n_users_too_short`` had too few interactions to be evaluated.
    """
    return {
        "n_users": data_report["n_users"],
        "n_users_evaluated": n_evaluated,
        "n_users_too_short": data_report["n_users_too_short"],
    }


def target_ranks(
    scores: torch.Tensor,
    targets: torch.Tensor,
    seen: torch.Tensor | None = None,
    candidate_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """1-based rank of each user's target item among all (unmasked) catalogue items.

    rank = 1 + #{unmasked items i : score_i > score_target}
             + #{unmasked items i != target : score_i == score_target}

    Ties are counted **pessimistically**: every other item with exactly the target's score is placed
    ahead of it. With the optimistic rule (count only strictly higher items) a model that returns a
    constant score for every item would rank every target first and get HR@1 = 1; with this rule it
    gets the worst possible rank, which is what it deserves. Comparisons are exact (no tolerance) and
    done in the dtype of `scores`, so two float64 scores that differ in the last bit are not a tie.

    Args:
        scores (`torch.Tensor` of shape `[B, N]`):
            A score for every item of the catalogue (higher = more likely next). Any real dtype and
            any device. Not modified.
            NaN scores are treated as -inf: a NaN item never outranks a finite-scored target, and a
            NaN target ties (pessimistically) with every other NaN/-inf item and sits below every
            finite one, so NaNs can only hurt the metrics, never help them. A warning is issued when
            NaNs are seen, because they usually mean a numerical bug upstream.
        targets (`torch.Tensor` of shape `[B]`):
            Item index of each user's target, in `[0, N)`.
        seen (`torch.Tensor` of shape `[B, S]`, *optional*):
            Item indices already in each user's input history, padded with -1. These items are masked
            out: they cannot outrank the target (the same rule for every model). The target itself is
            never masked, even when it appears in `seen` (repeat consumption): masking it would make
            the target unrankable, a guaranteed miss that says nothing about the model, and it would
            silently drop that user from every HR/NDCG numerator. The history mask exists to stop
            already-consumed items from taking top-K slots, not to hide the answer.
        candidate_mask (`torch.Tensor` of dtype bool and shape `[B, N]` or `[N]`, *optional*):
            True for items that may be ranked; False items are masked like seen items (e.g. padding
            rows of the item table, items outside the catalogue's evaluation subset). The target is
            always kept.

    Returns:
        `torch.Tensor` of dtype int64 and shape `[B]` on `scores.device`: ranks in `[1, N]`.

    Example:
        >>> scores = torch.tensor([[0.1, 0.5, 0.3, 0.5]])
        >>> target_ranks(scores, torch.tensor([1])).tolist()  # item 3 ties with item 1: counted ahead
        [2]
        >>> target_ranks(scores, torch.tensor([2]), seen=torch.tensor([[1, -1]])).tolist()
        [2]
    """
    if scores.ndim != 2:
        raise ValueError(f"scores must have shape [batch, n_items], got {tuple(scores.shape)}")
    if scores.is_complex() or scores.dtype == torch.bool:
        raise TypeError(f"scores must be a real-valued tensor, got dtype {scores.dtype}")
    batch, n_items = scores.shape
    device = scores.device

    targets = torch.as_tensor(targets, device=device)
    if targets.shape != (batch,):
        raise ValueError(f"targets must have shape [{batch}] to match scores, got {tuple(targets.shape)}")
    if targets.is_floating_point() or targets.dtype == torch.bool:
        raise TypeError(f"targets must be integer item indices, got dtype {targets.dtype}")
    targets = targets.long()
    if batch and (int(targets.min()) < 0 or int(targets.max()) >= n_items):
        raise ValueError(f"targets must be item indices in [0, {n_items}), got values outside that range")

    if scores.is_floating_point():
        nan = torch.isnan(scores)
        if bool(nan.any()):
            warnings.warn(
                "target_ranks: NaN scores found; they are ranked as -inf (below every finite score).",
                RuntimeWarning,
                stacklevel=2,
            )
            # torch.where returns a new tensor: the caller's scores are left untouched.
            scores = torch.where(nan, torch.full((), float("-inf"), dtype=scores.dtype, device=device), scores)

    rows = torch.arange(batch, device=device)
    unmasked = torch.ones(batch, n_items, dtype=torch.bool, device=device)

    if seen is not None:
        seen = torch.as_tensor(seen, device=device)
        if seen.ndim != 2 or seen.shape[0] != batch:
            raise ValueError(f"seen must have shape [{batch}, S] (padded with -1), got {tuple(seen.shape)}")
        if seen.is_floating_point() or seen.dtype == torch.bool:
            raise TypeError(f"seen must hold integer item indices padded with -1, got dtype {seen.dtype}")
        seen = seen.long()
        if seen.numel() and (int(seen.min()) < -1 or int(seen.max()) >= n_items):
            raise ValueError(f"seen must hold item indices in [0, {n_items}) or the padding value -1")
        # Padding (-1) is redirected to the target, which is re-enabled just below anyway.
        seen = torch.where(seen < 0, targets[:, None], seen)
        unmasked.scatter_(1, seen, False)

    if candidate_mask is not None:
        candidate_mask = torch.as_tensor(candidate_mask, device=device)
        if candidate_mask.dtype != torch.bool:
            raise TypeError(f"candidate_mask must be a bool tensor, got dtype {candidate_mask.dtype}")
        if candidate_mask.shape not in ((n_items,), (batch, n_items)):
            raise ValueError(
                f"candidate_mask must have shape [{n_items}] or [{batch}, {n_items}], got {tuple(candidate_mask.shape)}"
            )
        unmasked &= candidate_mask

    unmasked[rows, targets] = True  # the target is never masked

    target_scores = scores[rows, targets][:, None]
    higher = ((scores > target_scores) & unmasked).sum(dim=1)
    # The target equals itself and is unmasked, so "other items with an equal score" is this minus 1.
    equal_others = ((scores == target_scores) & unmasked).sum(dim=1) - 1
    return 1 + higher + equal_others


@functools.lru_cache(maxsize=1)
def _ranking_metric():
    """The `next_item_ranking` evaluate module, loaded once per process from its local directory."""
    import evaluate  # imported here: evaluate pulls in datasets, which is slow to import

    # keep_in_memory: the ranks never touch the disk cache, and no file locks are taken.
    return evaluate.load(str(METRIC_DIR), keep_in_memory=True)


def _as_rank_array(ranks: Sequence[int] | np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(ranks, torch.Tensor):
        ranks = ranks.detach().cpu().numpy()
    array = np.asarray(ranks)
    if array.ndim != 1:
        raise ValueError(f"ranks must be one-dimensional (one rank per user), got shape {array.shape}")
    if array.size == 0:
        raise ValueError("ranks is empty: there are no users to evaluate")
    if array.dtype == np.bool_ or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise TypeError(f"ranks must be integers, got dtype {array.dtype}")
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)) or not np.array_equal(array, np.round(array)):
            raise ValueError("ranks must be whole numbers (1-based positions of the target item)")
    array = array.astype(np.int64)
    if array.min() < 1:
        raise ValueError(f"ranks are 1-based and must be >= 1, got a rank of {int(array.min())}")
    return array


def full_ranking_metrics(
    ranks: Sequence[int] | np.ndarray | torch.Tensor,
    *,
    ks: Sequence[int] = DEFAULT_KS,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict:
    """HR@K, NDCG@K and MRR over users, with percentile-bootstrap intervals.

    Args:
        ranks: 1-based rank of each user's target item (e.g. the concatenated outputs of
            `target_ranks`), one per user.
        ks: cut-offs for HR@K and NDCG@K.
        n_bootstrap: number of bootstrap resamples of the users (0 skips the intervals).
        confidence: coverage of the intervals.
        seed: seed of `numpy.random.default_rng` for the resampling.

    Returns:
        A JSON-serialisable dict of plain Python numbers, e.g. for the default `ks`::

            {"hr@1": ..., "hr@5": ..., "hr@10": ..., "hr@20": ...,
             "ndcg@1": ..., "ndcg@5": ..., "ndcg@10": ..., "ndcg@20": ...,
             "mrr": ..., "n_users": 943,
             "intervals": {"hr@1": [low, high], ..., "mrr": [low, high]}}

    Raises:
        ValueError: if `ranks` is empty or holds a rank below 1 (or a non-whole number).
    """
    array = _as_rank_array(ranks)
    return _ranking_metric().compute(
        predictions=array,
        ks=[int(k) for k in ks],
        n_bootstrap=int(n_bootstrap),
        confidence=float(confidence),
        seed=seed,
    )
