"""``scripts/evaluate_checkpoint.py`` (``hf-seqrec-evaluate``): re-score a checkpoint with the full-ranking protocol.

The checkpoint is evaluated on the data and split its run used (its training_config.yaml, the cold-start
hold-out included) and under its run's precision, so the numbers reproduce the run's metrics.json.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from torch.utils.data import DataLoader

from ..data.collator import NextItemCollator
from ..data.cold_start_split import apply_cold_start
from ..data.errors import DataValidationError
from ..data.prepare import prepare_data
from .loading import checkpoint_dir
from ..io_utils import write_json_atomic
from ..modeling import SeqRecForNextItem
from ..training.config import FinetuneConfig, LiteralHelpFormatter, resolve_mixed_precision
from ..evaluation.cold_warm_metrics import cold_start_summary
from ..evaluation.evaluator import evaluate_split
from ..evaluation.new_item_boost import boost_summary, choose_new_item_boost, cold_targets, nothing_to_trade
from ..evaluation.final_test import write_ranks_file
from ..evaluation.ranking import evaluation_protocol, user_counts
from ..evaluation.ratings import rating_summary


def evaluate_main(argv: list[str] | None = None) -> int:
    """Score a checkpoint on a split of its data; print the headline metrics as one JSON line (and write them with ``--output``)."""
    parser = argparse.ArgumentParser(
        description="Evaluate a hf_seqrec checkpoint with the full-ranking protocol.", formatter_class=LiteralHelpFormatter
    )
    parser.add_argument("--model", required=True, help="checkpoint directory or Hub id")
    parser.add_argument("--config", help="YAML data options (default: the checkpoint's training_config.yaml)")
    parser.add_argument("--dataset", help="override the dataset (built-in name or interactions file)")
    parser.add_argument("--split", choices=("validation", "test"), default="test")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--max_users", type=int, default=None, help="evaluate the first N users only")
    parser.add_argument("--bootstrap_samples", type=int, default=1000)
    parser.add_argument("--output", help="write the metrics JSON here (default: print only)")
    parser.add_argument(
        "--ranks_output",
        help="with --split test: write each evaluated user's test rank here, in the format of a run's test_ranks.json",
    )
    parser.add_argument(
        "--mixed_precision", choices=("auto", "no", "bf16", "fp16"), default=None,
        help="autocast precision to score under (default: the run's own, from the training_config.yaml next to the checkpoint; fp32 without one)",
    )
    boost = parser.add_mutually_exclusive_group()
    boost.add_argument(
        "--new_item_boost", type=float, default=None,
        help="score with this new_item_boost instead of the checkpoint's (text-tower models: added to every item without a trained ID)",
    )
    boost.add_argument(
        "--new_item_boost_max_warm_loss", type=float, default=None, metavar="SHARE",
        help="choose new_item_boost first, on the validation split of the run's cold-start hold-out: the largest boost "
        "(0 to 2, steps of 0.05) whose warm NDCG@10 loses at most SHARE (e.g. 0.05); the choice goes into --output",
    )
    args = parser.parse_args(argv)
    if args.ranks_output and args.split != "test":
        parser.error("--ranks_output writes test ranks: it needs --split test")
    if args.new_item_boost is not None and not math.isfinite(args.new_item_boost):
        parser.error(f"--new_item_boost: expected a finite number, got {args.new_item_boost}")
    if args.new_item_boost_max_warm_loss is not None and not 0.0 <= args.new_item_boost_max_warm_loss < 1.0:
        parser.error(f"--new_item_boost_max_warm_loss: expected a share in [0, 1), got {args.new_item_boost_max_warm_loss}")

    directory = checkpoint_dir(args.model)  # a one-line error for a path or Hub id without a checkpoint
    model = SeqRecForNextItem.from_pretrained(directory)
    overrides = {"dataset": args.dataset} if args.dataset else {}
    default_config = directory / "training_config.yaml"
    if args.config:  # asked for by name: a missing file is an error, not a silent fallback to defaults
        config = FinetuneConfig.from_yaml(args.config, **overrides)
    elif default_config.is_file():
        config = FinetuneConfig.from_yaml(default_config, **overrides)
    else:
        config = FinetuneConfig(**overrides)
    prepared = prepare_data(config.data_config())
    if config.cold_start_fraction:  # the run held items out of training: evaluate on the same split
        apply_cold_start(prepared, config.cold_start_fraction, config.seed)
    if model.item_catalog is not None and model.item_catalog.item_ids != prepared.catalog.item_ids:
        raise DataValidationError(
            "the dataset's item catalogue differs from the one the model was trained on",
            source=str(config.dataset), expected=f"the {len(model.item_catalog)} items of {args.model}",
            found=f"{len(prepared.catalog)} items",
        )
    accelerator = Accelerator(mixed_precision=resolve_mixed_precision(_run_precision(args.mixed_precision, default_config)))

    def loader_for(split_name: str) -> DataLoader:
        split = prepared.splits[split_name]
        if args.max_users is not None:
            split = split.select(range(min(args.max_users, len(split))))
        return accelerator.prepare(DataLoader(split, batch_size=args.batch_size, collate_fn=NextItemCollator(model.config.max_len)))

    loader = loader_for(args.split)
    model = model.to(accelerator.device)
    boost_choice = _set_new_item_boost(model, args, config, prepared, loader_for, accelerator, parser.error)
    # The model is not wrapped by accelerate: score it under the autocast explicitly, as the trainer's final test does.
    with accelerator.autocast():
        evaluation = evaluate_split(
            model, loader, prepared, args.split, n_bootstrap=args.bootstrap_samples, max_users=args.max_users,
            # The cold/warm breakdown of the test split only: the validation split's is the trainer's, to choose designs on.
            cold_start_fraction=config.cold_start_fraction if args.split == "test" else 0.0, seed=config.seed,
            accelerator=accelerator,
        )
    metrics = evaluation.metrics
    protocol = evaluation_protocol(
        n_resamples=args.bootstrap_samples, dataset=config.dataset, k_core=config.k_core, max_len=model.config.max_len,
        max_users=args.max_users, max_users_option="max_users",
    )
    # The same layout as the trainer's metrics.json: n_users counts every user, n_users_evaluated those scored here.
    payload = {
        "protocol": protocol, args.split: metrics, **user_counts(prepared.report, metrics["n_users"]),
        "n_items": len(prepared.catalog), "model": str(args.model),
    }
    if boost_choice is not None:
        payload["new_item_boost"] = boost_choice
    if evaluation.cold_start is not None:  # the run held items out of training: its cold and warm test targets
        payload["cold_start"] = evaluation.cold_start
        accelerator.print(cold_start_summary(evaluation.cold_start))
    if evaluation.by_rating is not None:  # rated data: the liked / disliked test metrics, as the trainer's metrics.json has them
        payload["test_by_rating"] = evaluation.by_rating
        accelerator.print(rating_summary(evaluation.by_rating))
    if args.output and accelerator.is_main_process:
        write_json_atomic(args.output, payload)
    if args.ranks_output and accelerator.is_main_process:
        write_ranks_file(args.ranks_output, prepared, evaluation.ranks, metrics, args.max_users)
    accelerator.print(json.dumps({args.split: {k: metrics[k] for k in ("ndcg@10", "hr@10", "mrr")}}))
    return 0


def _set_new_item_boost(
    model: SeqRecForNextItem, args: argparse.Namespace, config: FinetuneConfig, prepared: Any,
    loader_for: Callable[[str], DataLoader], accelerator: Accelerator, fail: Callable[[str], Any],
) -> dict[str, Any] | None:
    """Apply ``--new_item_boost``, or choose the boost on the validation split with ``--new_item_boost_max_warm_loss``.

    Returns what the output file records: the boost given, or the choice made with its sweep; a checkpoint or run the option
    cannot apply to goes to ``fail`` (the parser's error: a usage message and exit status 2).
    """
    if args.new_item_boost is None and args.new_item_boost_max_warm_loss is None:
        return None
    if not model.config.item_text_tower:
        fail(f"{args.model} has no item text tower: a new-item boost applies to items scored from their text (--item_text_tower)")
    if args.new_item_boost is not None:
        model.config.new_item_boost = args.new_item_boost
        return {"chosen": args.new_item_boost, "rule": "given with --new_item_boost"}
    if not config.cold_start_fraction:
        fail(
            f"--new_item_boost_max_warm_loss chooses on validation targets held out of training, but {args.model}'s run "
            "held none out: choose on a run made with --cold_start_fraction"
        )
    targets = prepared.splits["validation"]["target"]
    if args.max_users is not None:
        targets = targets[: args.max_users]
    problem = nothing_to_trade(cold_targets(targets, prepared.cold_items))
    if problem:
        fail(f"--new_item_boost_max_warm_loss: {problem}" + (": score more users (--max_users)" if args.max_users is not None else ""))
    with accelerator.autocast():
        choice = choose_new_item_boost(
            model, loader_for("validation"), targets, prepared.cold_items, args.new_item_boost_max_warm_loss, accelerator=accelerator
        )
    model.config.new_item_boost = choice["chosen"]
    accelerator.print(boost_summary(choice))
    return choice


def _run_precision(requested: str | None, run_config: Path) -> str:
    """The precision to score under: ``--mixed_precision``, else the run's own, else fp32 ("no").

    The trainer scores its final test under the run's autocast (bf16 on the CPU default); scoring the
    same checkpoint in fp32 ranks some items differently, so metrics.json would not be reproduced.
    """
    if requested is not None:
        return requested
    if not run_config.is_file():
        return "no"
    return FinetuneConfig.from_yaml(run_config).mixed_precision

