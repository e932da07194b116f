"""Full-catalogue evaluation of any model that returns next-item logits, on one or many processes."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from .ranking import full_ranking_metrics, target_ranks


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


def evaluate_ranking(
    model: torch.nn.Module,
    dataloader: DataLoader,
    accelerator: Any | None = None,
    *,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """HR@K, NDCG@K and MRR (K in 1, 5, 10, 20) with bootstrap 95% intervals over users."""
    ranks = rank_targets(model, dataloader, accelerator)
    return full_ranking_metrics(ranks, n_bootstrap=n_bootstrap, seed=seed)


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
