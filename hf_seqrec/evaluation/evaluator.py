"""Full-catalogue evaluation of any model that returns next-item logits, on one or many processes.

``evaluate_split`` is the one path from a model and a split of the prepared data to that split's metrics: the
trainer's final evaluation and ``scripts/evaluate_checkpoint.py`` both call it, so re-evaluating a checkpoint
reproduces the numbers its run wrote.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from .cold_warm_metrics import cold_start_metrics
from .final_test import rating_report
from .ranking import full_ranking_metrics, target_ranks

if TYPE_CHECKING:
    from ..data.prepare import PreparedData


@torch.no_grad()
def rank_targets(model: torch.nn.Module, dataloader: DataLoader, accelerator: Any | None = None) -> np.ndarray:
    """1-based rank of every user's target among all catalogue items, history masked.

    With an ``accelerate.Accelerator`` the dataloader may be sharded across processes; ranks are
    collected with ``gather_for_metrics``, which drops the samples padded onto the last batch,
    so every process returns the ranks of every user exactly once, in dataset order.
    """
    was_training = model.training
    model.eval()
    num_items = getattr(getattr(model, "config", None), "num_items", None)
    ranks = []
    for batch in dataloader:
        device = batch["input_item_ids"].device
        if num_items is not None:
            _check_item_indices(batch["input_item_ids"], int(num_items))
        logits = model(
            input_item_ids=batch["input_item_ids"],
            attention_mask=batch["attention_mask"],
            return_logits=True,
        ).logits
        batch_ranks = target_ranks(logits, batch["targets"].to(device), batch["seen_items"].to(device))
        if accelerator is not None:
            batch_ranks = accelerator.gather_for_metrics(batch_ranks)
        ranks.append(batch_ranks.cpu())
    model.train(was_training)
    if not ranks:
        return np.zeros(0, dtype=np.int64)
    return torch.cat(ranks).numpy().astype(np.int64)


@dataclass
class SplitEvaluation:
    """One split's per-user ranks and every metric built from them, kept together so a caller can report or save any of them."""

    split: str
    ranks: np.ndarray
    metrics: dict[str, Any]
    cold_start: dict[str, Any] | None = None  # cold and warm targets, when the run held items out of training
    by_rating: dict[str, Any] | None = None  # liked and disliked targets, for the test split of rated data


def evaluate_split(
    model: torch.nn.Module,
    dataloader: DataLoader,
    prepared: PreparedData,
    split: str,
    *,
    n_bootstrap: int,
    max_users: int | None,
    cold_start_fraction: float = 0.0,
    seed: int = 0,
    accelerator: Any | None = None,
    ranks: np.ndarray | None = None,
) -> SplitEvaluation:
    """Rank ``split``'s targets and build its overall metrics, its cold/warm breakdown and its metrics by target rating.

    ``dataloader`` serves the first ``max_users`` users of ``prepared.splits[split]`` (every user without it), in split
    order. ``ranks`` already computed for this model and split (the training loop's validation of the best epoch) are
    used instead of ranking again. ``cold_start_fraction`` and ``seed`` say how the run chose its cold items; with a
    fraction of 0 there is no cold/warm breakdown. Only the test split has target ratings to break down by.
    """
    if ranks is None:
        ranks = rank_targets(model, dataloader, accelerator)
    metrics = full_ranking_metrics(ranks, n_bootstrap=n_bootstrap)
    cold_start = None
    if cold_start_fraction:
        targets = prepared.splits[split]["target"]
        if max_users is not None:
            targets = targets[:max_users]
        cold_start = cold_start_metrics(
            ranks, targets, prepared.cold_items, fraction=cold_start_fraction, seed=seed, n_bootstrap=n_bootstrap, split=split
        )
    by_rating = rating_report(ranks, prepared, max_users, n_bootstrap) if split == "test" else None
    return SplitEvaluation(split, ranks, metrics, cold_start=cold_start, by_rating=by_rating)


def _check_item_indices(item_ids: torch.Tensor, num_items: int) -> None:
    """A clear error for an input row outside the item table (the embedding lookup would only say "index out of range")."""
    if item_ids.numel() == 0:
        return
    low, high = int(item_ids.min()), int(item_ids.max())
    if low < 0 or high >= num_items:
        bad = low if low < 0 else high
        raise ValueError(
            f"a history holds the item index {bad}, outside the model's catalogue of {num_items} items "
            f"(indices 0..{num_items - 1}); map external item ids to indices with the model's ItemCatalog, "
            "which has no row for an unknown item"
        )
