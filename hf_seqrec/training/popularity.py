"""The most-popular baseline as a run: the same data, evaluation and metrics.json as a fine-tuned model, no training loop."""

from __future__ import annotations

import time
from typing import Any

from ..data.collator import NextItemCollator
from ..io_utils import write_json_atomic, write_text_atomic
from .config import FinetuneConfig
from .output_dir import check_output_dir, releases_output_dir_lock
from .popularity_model import PopularityRecommender
from .results import final_evaluation, run_results, summary_line, training_record, write_test_ranks
from .run_data import evaluation_loader, prepare_run


@releases_output_dir_lock
def fit_popularity(config: FinetuneConfig) -> dict[str, Any]:
    """The most-popular baseline: count the items of the training split and score both splits with the same evaluator.

    No optimizer steps. The output directory gets what the other models' runs give the benchmark and
    the pipeline's popularity fallback: training_config.yaml, metrics.json (same format, zero epochs),
    item_popularity.json and item_catalog.jsonl. There is no model checkpoint: the counts are the model.
    """
    from ..modeling.popularity_counts import save_item_popularity

    output_dir = check_output_dir(config)
    prepared = prepare_run(config, output_dir)
    collator = NextItemCollator(max_len=config.max_len)  # masking uses the whole history, whatever max_len is
    start = time.perf_counter()
    model = PopularityRecommender.from_sequences(prepared.splits["train"]["items"], num_items=len(prepared.catalog))
    train_seconds = time.perf_counter() - start
    validation, test = final_evaluation(
        model,
        evaluation_loader(prepared.splits["validation"], config, collator),
        evaluation_loader(prepared.splits["test"], config, collator),
        prepared,
        config,
    )
    training = training_record(
        config.backbone, best_epoch=0, epochs_run=0, optimizer_steps=0, train_seconds=train_seconds, trained_positions=0,
        num_processes=1, history=[],
    )
    results = run_results(config, prepared, validation, test, training, show=print)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(output_dir / "training_config.yaml", config.to_yaml())
    save_item_popularity(output_dir, prepared.splits["train"]["items"], num_items=len(prepared.catalog))
    prepared.catalog.save(output_dir)
    write_test_ranks(output_dir, prepared, config, test)
    write_json_atomic(output_dir / "metrics.json", results)
    print(f"popularity: {summary_line(test.metrics, prepared)}")
    return results
