"""Choosing `new_item_boost` on a cold-start validation split: how far to lift items without a trained ID.

A text-tower model scores an item that training never saw from its text alone, and such an item ranks
below trained items that would suit a user as well. Adding a constant to those items' scores
(`SeqRecConfig.new_item_boost`) trades the trained items' accuracy for the new items' reach; where to
stop is a choice for the validation split, which a run made with `--cold_start_fraction` splits into
users whose target is held out of training (cold) and the rest (warm). The rule: the largest boost on
`BOOST_GRID` whose warm NDCG@10 loses at most `max_warm_loss` of the unboosted model's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from .ranking import full_ranking_metrics, target_ranks

# Boosts tried: 0 to 2 in steps of 0.05. A boost of 2 multiplies a new item's softmax odds by e^2; on
# MovieLens-100K a boost of 1 already costs the let-it-go LM about a quarter of its warm NDCG@10.
BOOST_GRID: tuple[float, ...] = tuple(round(0.05 * step, 2) for step in range(41))


@torch.no_grad()
def boosted_ranks(
    model: torch.nn.Module, dataloader: DataLoader, boosts: Sequence[float], accelerator: Any | None = None
) -> np.ndarray:
    """`[len(boosts), users]`: every user's target rank with each boost added to the items without a trained ID.

    The catalogue is scored once, without a boost, and re-ranked per boost: the boost is a constant on a
    fixed set of items, so this is exactly what scoring the model with each boost would give.
    """
    was_training, saved_boost = model.training, model.config.new_item_boost
    model.eval()
    model.config.new_item_boost = 0.0
    without_id = (1.0 - model.item_table.has_id_embedding.float())
    ranks = []
    try:
        for batch in dataloader:
            logits = model(input_item_ids=batch["input_item_ids"], attention_mask=batch["attention_mask"], return_logits=True).logits
            targets, seen = batch["targets"].to(logits.device), batch["seen_items"].to(logits.device)
            shift = without_id.to(logits.device)
            per_boost = torch.stack([target_ranks(logits + boost * shift, targets, seen) for boost in boosts], dim=1)
            if accelerator is not None:
                per_boost = accelerator.gather_for_metrics(per_boost)
            ranks.append(per_boost.cpu())
    finally:
        model.config.new_item_boost = saved_boost
        model.train(was_training)
    return torch.cat(ranks).T.numpy().astype(np.int64)


def choose_new_item_boost(
    model: torch.nn.Module,
    dataloader: DataLoader,
    targets: Sequence[int],
    cold_items: Sequence[int],
    max_warm_loss: float,
    *,
    boosts: Sequence[float] = BOOST_GRID,
    accelerator: Any | None = None,
    split: str = "validation",
) -> dict[str, Any]:
    """The largest boost whose warm NDCG@10 on `split` stays within `max_warm_loss` of the unboosted model's.

    `dataloader` serves the users whose `targets` are given (in order); `cold_items` are the items held out
    of training. Returns the choice with the whole sweep (each boost's cold and warm HR@10 and NDCG@10), for
    metrics.json. Raises `ValueError` when the split has no cold or no warm targets: there is nothing to
    trade, and a run without `--cold_start_fraction` has no cold targets at all.
    """
    if not 0.0 <= max_warm_loss < 1.0:
        raise ValueError(f"new_item_boost_max_warm_loss: expected a share in [0, 1), got {max_warm_loss}")
    if not getattr(model.config, "item_text_tower", False):
        raise ValueError("new_item_boost: the model has no item text tower, so no item is scored without a trained ID")
    boosts = sorted(float(boost) for boost in boosts)
    if not boosts or boosts[0] != 0.0:
        raise ValueError("the boosts tried must start at 0 (the unboosted model the warm loss is measured against)")
    is_cold = cold_targets(targets, cold_items)
    problem = nothing_to_trade(is_cold, split)
    if problem:
        raise ValueError(problem)
    ranks = boosted_ranks(model, dataloader, boosts, accelerator)
    if ranks.shape[1] != len(is_cold):
        raise ValueError(f"the dataloader served {ranks.shape[1]} users for {len(is_cold)} targets")
    sweep = []
    for boost, boost_ranks in zip(boosts, ranks):
        cold_metrics = full_ranking_metrics(boost_ranks[is_cold], ks=(10,), n_bootstrap=0)
        warm_metrics = full_ranking_metrics(boost_ranks[~is_cold], ks=(10,), n_bootstrap=0)
        sweep.append({
            "boost": boost,
            "cold_hr@10": cold_metrics["hr@10"], "cold_ndcg@10": cold_metrics["ndcg@10"],
            "warm_hr@10": warm_metrics["hr@10"], "warm_ndcg@10": warm_metrics["ndcg@10"],
        })
    floor = (1.0 - max_warm_loss) * sweep[0]["warm_ndcg@10"]
    chosen = max(point["boost"] for point in sweep if point["warm_ndcg@10"] >= floor)
    return {
        "chosen": chosen,
        "rule": f"the largest boost whose {split} warm NDCG@10 is at least {1.0 - max_warm_loss:g} x the unboosted model's",
        "max_warm_loss": max_warm_loss,
        "split": split,
        f"n_{split}_users_cold": int(is_cold.sum()),
        f"n_{split}_users_warm": int((~is_cold).sum()),
        "sweep": sweep,
    }


def cold_targets(targets: Sequence[int], cold_items: Sequence[int]) -> np.ndarray:
    """A bool per target: whether it is one of the items held out of training."""
    cold = {int(item) for item in cold_items}
    return np.array([int(target) in cold for target in targets], dtype=bool)


def nothing_to_trade(is_cold: np.ndarray, split: str = "validation") -> str | None:
    """Why no boost can be chosen on these targets (none held out of training, or all of them), or None.

    The fine-tuning run asks before it trains, and scripts/evaluate_checkpoint.py before it scores, so a
    run that cannot choose says so at once.
    """
    n_cold = int(is_cold.sum())
    if 0 < n_cold < len(is_cold):
        return None
    return (
        f"choosing new_item_boost needs {split} targets both held out of training (cold) and not (warm); the "
        f"{len(is_cold)} users scored have {n_cold} held out"
    )


def boost_summary(choice: dict[str, Any]) -> str:
    """One line for the terminal: the chosen boost and what it does to the cold and warm targets it was chosen on."""
    by_boost = {point["boost"]: point for point in choice["sweep"]}
    base, chosen = by_boost[0.0], by_boost[choice["chosen"]]
    return (
        f"new_item_boost {choice['chosen']:g}, chosen on {choice['split']} (warm NDCG@10 loss at most "
        f"{choice['max_warm_loss']:.0%}): cold HR@10 {base['cold_hr@10']:.4f} -> {chosen['cold_hr@10']:.4f}, "
        f"warm NDCG@10 {base['warm_ndcg@10']:.4f} -> {chosen['warm_ndcg@10']:.4f}"
    )
