"""The finished run's checkpoint: the best model, its tokenizer, metrics and model card at the top of the output directory.

The card carries one real explanation of this very model (``example_explanation``), so a reader sees what the
pipeline's explanations look like before loading it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from ..data.prepare import PreparedData
from ..io_utils import atomic_directory, write_json_atomic
from ..modeling import SeqRecForNextItem
from ..publishing.model_card import write_model_card
from .config import FinetuneConfig


def export_final_checkpoint(
    output_dir: Path, model: SeqRecForNextItem, tokenizer: Any, results: dict[str, Any], config: FinetuneConfig,
    prepared: PreparedData,
) -> None:
    """Write the best model, tokenizer and metrics at the top of ``output_dir``, each file atomically."""
    from ..modeling.popularity_counts import save_item_popularity

    def write_checkpoint(directory: Path, checkpoint: SeqRecForNextItem) -> None:
        checkpoint.save_pretrained(directory)
        if tokenizer is not None:  # from-scratch baselines have none
            tokenizer.save_pretrained(directory)
        # Training-split counts: the pipeline's fallback="popular" for users with no known history.
        save_item_popularity(directory, prepared.splits["train"]["items"], num_items=len(prepared.catalog))

    with atomic_directory(output_dir / ".final") as staging:
        write_checkpoint(staging, model)
    final = output_dir / ".final"
    for entry in final.iterdir():
        os.replace(entry, output_dir / entry.name)
    shutil.rmtree(final)
    write_json_atomic(output_dir / "metrics.json", results)
    write_model_card(output_dir, results, config.to_dict(), example_explanation=example_explanation(model, prepared))
    if config.merge:
        with atomic_directory(output_dir / "merged") as staging:
            write_checkpoint(staging, SeqRecForNextItem.from_pretrained(output_dir).merge_adapter())


def example_explanation(model: SeqRecForNextItem, prepared: PreparedData, top: int = 3) -> dict[str, Any] | None:
    """The first test user's top recommendation and the history items that drove it (occlusion), for the model card.

    The card then shows what an explanation looks like on this very model, on real data. Scored
    like the pipeline: the last ``max_len`` history items, items already in the history not
    recommended.
    """
    from ..modeling.explain import explain, explanation_records, score_histories

    test = prepared.splits["test"]
    if len(test) == 0 or not test[0]["history"]:
        return None
    row = test[0]
    history = list(row["history"])[-model.config.max_len :]
    scores = score_histories(model, [history])[0]
    scores[list(set(row["history"]))] = float("-inf")  # every item the user has seen, as the pipeline masks them
    recommended = int(scores.argmax())
    contributions = explain(model, history, [recommended])[0]
    catalog = prepared.catalog
    records = explanation_records(contributions.tolist(), history, catalog.item_ids, catalog.texts)
    return {
        "user_id": str(row["user_id"]),
        "history_length": len(history),
        "recent_history": [catalog.texts[item] for item in history[-3:]],
        "recommended": {"item_id": catalog.item_ids[recommended], "text": catalog.texts[recommended]},
        "top_contributions": [{k: r[k] for k in ("item_id", "text", "contribution")} for r in records[:top]],
    }
