"""Entry points behind ``scripts/finetune.py`` and ``scripts/evaluate_checkpoint.py`` (``hf-seqrec-finetune``, ``hf-seqrec-evaluate``).

A user mistake (bad data, bad option, an output directory in use) ends the process with a
one-paragraph message and exit status 2, not a traceback; anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable

from .console import configure_console
from .data.errors import DataValidationError

USER_ERRORS: tuple[type[BaseException], ...] = (DataValidationError, FileNotFoundError)


def _user_error_types() -> tuple[type[BaseException], ...]:
    from .training.config import ConfigError
    from .hub.push import PushError
    from .training.output_dir import OutputDirError

    return USER_ERRORS + (ConfigError, OutputDirError, PushError)


def run_cli(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run ``main`` and turn user mistakes into a clear message and exit status 2."""
    # Libraries log at warning level, hf_seqrec at info; no progress bars unless stderr is a terminal.
    configure_console()
    try:
        return main(argv)
    except _user_error_types() as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


# Console entry points ([project.scripts] in pyproject.toml); scripts/*.py call the same functions.
def finetune() -> int:
    """``hf-seqrec-finetune``, ``scripts/finetune.py``."""
    return run_cli(finetune_main)


def evaluate() -> int:
    """``hf-seqrec-evaluate``, ``scripts/evaluate_checkpoint.py``."""
    return run_cli(evaluate_main)


def recommend() -> int:
    """``hf-seqrec-recommend``, ``scripts/recommend.py``."""
    from .inference.cli import recommend_main

    return run_cli(recommend_main)


def serve() -> int:
    """``hf-seqrec-serve``, ``scripts/serve.py``."""
    from .serving.cli import serve_main

    return run_cli(serve_main)


def finetune_main(argv: list[str] | None = None) -> int:
    from .training.config import ConfigError, config_from_args
    from .training.trainer import train

    # Every option, data options included, is checked here: a bad one costs seconds, not a run.
    config = config_from_args(argv, description="Fine-tune a next-item recommender (LoRA on a pretrained LM) with accelerate.")
    try:
        configure_console(config.log_level)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    results = train(config)
    from accelerate import PartialState

    if not PartialState().is_main_process:
        return 0  # one process reports and pushes; the others wrote nothing of their own
    # The results first: a failed push below must not hide what the finished run achieved.
    print(json.dumps({"test": {k: results["test"][k] for k in ("ndcg@10", "hr@10", "mrr")}, "output_dir": config.output_dir}))
    sys.stdout.flush()
    if config.push_to_hub:
        from .hub.push import push_checkpoint

        push_checkpoint(config.output_dir, config.hub_model_id)  # PushError: exit 2, local checkpoint kept
    return 0


def evaluate_main(argv: list[str] | None = None) -> int:
    from .training.config import LiteralHelpFormatter

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
    args = parser.parse_args(argv)
    if args.ranks_output and args.split != "test":
        parser.error("--ranks_output writes test ranks: it needs --split test")

    from accelerate import Accelerator
    from torch.utils.data import DataLoader

    from .data.collator import NextItemCollator
    from .data.cold_start import apply_cold_start
    from .data.prepare import prepare_data
    from .evaluation.cold_start import cold_start_summary
    from .evaluation.evaluator import evaluate_split
    from .evaluation.final_test import write_ranks_file
    from .evaluation.ranking import evaluation_protocol, user_counts
    from .evaluation.ratings import rating_summary
    from .inference.loading import checkpoint_dir
    from .io_utils import write_json_atomic
    from .modeling import SeqRecForNextItem
    from .training.config import FinetuneConfig, resolve_mixed_precision

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
    split = prepared.splits[args.split]
    if args.max_users is not None:
        split = split.select(range(min(args.max_users, len(split))))
    accelerator = Accelerator(mixed_precision=resolve_mixed_precision(_run_precision(args.mixed_precision, default_config)))
    loader = accelerator.prepare(DataLoader(split, batch_size=args.batch_size, collate_fn=NextItemCollator(model.config.max_len)))
    model = model.to(accelerator.device)
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


def _run_precision(requested: str | None, run_config: Path) -> str:
    """The precision to score under: ``--mixed_precision``, else the run's own, else fp32 ("no").

    The trainer scores its final test under the run's autocast (bf16 on the CPU default); scoring the
    same checkpoint in fp32 ranks some items differently, so metrics.json would not be reproduced.
    """
    if requested is not None:
        return requested
    if not run_config.is_file():
        return "no"
    from .training.config import FinetuneConfig

    return FinetuneConfig.from_yaml(run_config).mixed_precision

