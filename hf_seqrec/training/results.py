"""What a finished run reports: its final evaluation, ``metrics.json``, ``test_ranks.json`` and its last line on the terminal.

The fine-tuning loop and the popularity baseline both end here, so every model's metrics.json has the same
layout, and its numbers come from ``evaluate_split``, the path ``scripts/evaluate_checkpoint.py`` takes too.
(No name here starts with ``test_``: pytest would collect it as a test wherever a test module imports it.)
"""

from __future__ import annotations

import resource
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader

from ..data.prepare import PreparedData
from ..evaluation.cold_warm_metrics import cold_start_summary
from ..evaluation.evaluator import SplitEvaluation, evaluate_split
from ..evaluation.final_test import write_ranks_file
from ..evaluation.ranking import evaluation_protocol, user_counts
from ..evaluation.ratings import rating_summary
from .config import FinetuneConfig
from .output_dir import TEST_RANKS_FILE


def final_evaluation(
    model: torch.nn.Module, validation_loader: DataLoader, test_loader: DataLoader, prepared: PreparedData,
    config: FinetuneConfig, accelerator: Accelerator | None = None, validation_ranks: np.ndarray | None = None,
) -> tuple[SplitEvaluation, SplitEvaluation]:
    """The final model's validation and test evaluations, with the run's bootstrap, user cut and cold-start items.

    ``validation_ranks`` from the training loop are reused when it has them, so the best epoch is not scored twice; a
    baseline without epochs, or a run whose best epoch was scored before a resume, has none and is scored here.
    """
    settings = {
        "n_bootstrap": config.bootstrap_samples, "max_users": config.eval_max_users,
        "cold_start_fraction": config.cold_start_fraction, "seed": config.seed, "accelerator": accelerator,
    }
    validation = evaluate_split(model, validation_loader, prepared, "validation", ranks=validation_ranks, **settings)
    test = evaluate_split(model, test_loader, prepared, "test", **settings)
    return validation, test


def training_record(
    backbone: str, *, best_epoch: int, epochs_run: int, optimizer_steps: int, train_seconds: float, trained_positions: int,
    num_processes: int, history: list[dict[str, Any]],
) -> dict[str, Any]:
    """metrics.json's ``training`` block: how the run got its model, with its throughput and this process's peak memory."""
    return {
        "backbone": backbone,
        "best_epoch": best_epoch,
        "epochs_run": epochs_run,
        "optimizer_steps": optimizer_steps,
        "train_seconds": round(train_seconds, 2),
        "trained_positions": trained_positions,
        "positions_per_second": round(trained_positions / train_seconds, 2) if train_seconds else None,
        "num_processes": num_processes,
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "history": history,
    }


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_results(
    config: FinetuneConfig, prepared: PreparedData, validation: SplitEvaluation, test: SplitEvaluation,
    training: dict[str, Any], show: Callable[[str], None],
) -> dict[str, Any]:
    """The contents of metrics.json; the cold-start and by-rating breakdowns are also ``show``n on the terminal.

    The validation split's cold/warm breakdown (``cold_start_validation``) is what text designs are chosen on,
    so the test split's stays a final measurement.
    """
    protocol = evaluation_protocol(
        n_resamples=config.bootstrap_samples, dataset=config.dataset, k_core=config.k_core, max_len=config.max_len,
        max_users=config.eval_max_users,
    )
    results = {
        "protocol": protocol,
        "validation": validation.metrics,
        "test": test.metrics,
        **user_counts(prepared.report, test.metrics["n_users"]),
        "n_items": len(prepared.catalog),
        "data_report": prepared.report,
        "training": training,
    }
    if test.cold_start is not None:
        results["cold_start"] = test.cold_start
        show(cold_start_summary(test.cold_start))
        results["cold_start_validation"] = validation.cold_start
        show(cold_start_summary(validation.cold_start, split="validation"))
    if test.by_rating is not None:  # rated data: the test metrics of the liked and of the disliked targets
        results["test_by_rating"] = test.by_rating
        show(rating_summary(test.by_rating))
    return results


def write_test_ranks(output_dir: Path, prepared: PreparedData, config: FinetuneConfig, test: SplitEvaluation) -> None:
    """``test_ranks.json`` (``evaluation.final_test``): the test rank of each evaluated user, in test-split order."""
    write_ranks_file(output_dir / TEST_RANKS_FILE, prepared, test.ranks, test.metrics, config.eval_max_users)


def summary_line(test: dict[str, Any], prepared: PreparedData, extra: str = "") -> str:
    """The run's last line on the terminal: its main test metrics."""
    return (
        f"test NDCG@10 {test['ndcg@10']:.4f}  HR@10 {test['hr@10']:.4f}  MRR {test['mrr']:.4f}  "
        f"({test['n_users']} users, {len(prepared.catalog)} items{extra})"
    )
