#!/usr/bin/env python
"""Recommendation quality of every model on MovieLens-100K: one protocol, one evaluator, several seeds.

    python benchmarks/quality.py                                   # every model, seeds 0,1,2 (hours on a CPU)
    python benchmarks/quality.py --models popularity,sasrec --seeds 0   # a subset; rows are merged into the results
    python benchmarks/quality.py --models smollm2-lora --lm_runs 'runs/smollm2-seed*'  # LM rows from finished runs
    python benchmarks/quality.py --quick --results_dir /tmp/q      # a few steps per model: checks the wiring only
    python benchmarks/quality.py --report_only                     # rebuild the table and chart from the JSON

Each model is trained and evaluated by running ``scripts/finetune.py`` (the code every user runs) in a
subprocess with the model's config (``MODELS`` below), one run directory per model and seed under
``--runs_dir``. Its ``metrics.json`` gives the row: test NDCG@10, HR@10, MRR, NDCG@20, HR@20 (best
validation epoch), training seconds and the run's peak RSS; its ``test_ranks.json`` gives each user's
test rank, kept in the row for the paired tests. Rows are merged into ``<results_dir>/<name>.json`` (a
re-run of a model and seed replaces its row), so long runs can be done model by model, and then the table
``<name>.md`` (mean and 95% t-interval across seeds, the LM / sasrec ratios of test NDCG@10, paired tests
over users of the LM against sasrec, lstm, gru4rec and svae, and which rows are still missing) and the bar
chart ``<name>.png`` are rebuilt from every row in the file.

``--quick`` rows (a few optimizer steps, a user subset) go to ``<name>-quick.*`` unless ``--name`` says
otherwise, so they never mix with real numbers.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from benchmark_utils import (
    POPULARITY_BUCKETS, REPO, command_line, display_path, finetune_command, json_text, load_results, machine_summary, mean_cell,
    ndcg_by_target_popularity, relative_command, run_logged, t_interval, user_bootstrap, utc_now,
)

TEST_RANKS_FILE = "test_ranks.json"  # hf_seqrec.training.output_dir.TEST_RANKS_FILE (not imported: no torch needed here)

# The LM with every one of SmolLM2-135M's 30 decoder layers, in the CPU default of the time its rows
# were measured (they were recorded as smollm2-lora): every option that default set is pinned here, so
# the row reproduces whatever configs/cpu.yaml becomes.
LM_30_LAYERS: dict[str, Any] = {
    "backbone_layers": 30,
    "num_epochs": 3,
    "lr_scheduler": "constant_with_warmup",
    "warmup_steps": 0,
    "early_stopping_patience": 3,
    "batch_size": 8,
    "learning_rate": 0.001,
    "lora_r": 8,
    "lora_alpha": 16,
    "lora_target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "lora_dropout": 0.0,
    "item_embedding_dropout": 0.0,
    "weight_decay": 0.0,
    "max_len": 50,
    "item_text_init": True,
    "item_score_bias": True,
    "group_by_length": True,
    "mixed_precision": "bf16",
    # Options the CPU default took up later, pinned to what they were then.
    "item_embedding_dim": None,
    "vary_windows": False,
}
# model name -> (config file, fixed overrides). smollm2-lora is the CPU default config as it is.
MODELS: dict[str, tuple[str | None, dict[str, Any]]] = {
    "popularity": (None, {"backbone": "popularity"}),
    "lstm": ("configs/lstm.yaml", {}),
    "gru4rec": ("configs/gru4rec.yaml", {}),
    "svae": ("configs/svae.yaml", {}),
    "sasrec": ("configs/sasrec.yaml", {}),
    "smollm2-lora": ("configs/cpu.yaml", {}),
    "smollm2-lora-30l": ("configs/cpu.yaml", LM_30_LAYERS),
    # The CPU default distilled from this benchmark's SASRec run of the same seed (TEACHERS): the KL
    # divergence to the teacher's softmax over the whole catalogue at every trained position, weight 0.5,
    # temperature 1 (the tail study's setting).
    "smollm2-lora-distill": ("configs/cpu.yaml", {"distill_weight": 0.5, "distill_temperature": 1.0}),
}
LM_MODEL = "smollm2-lora"
LM_MODELS = (LM_MODEL, "smollm2-lora-30l", "smollm2-lora-distill")
# model -> the model whose run of the same seed, in the same runs directory, is its distillation teacher.
TEACHERS = {"smollm2-lora-distill": "sasrec"}
REFERENCE_MODEL = "sasrec"
# Paired tests over users of per-user test NDCG@10: (model A, model B), reported as A - B.
PAIRED_COMPARISONS = [(lm, other) for lm in LM_MODELS for other in (REFERENCE_MODEL, "lstm", "gru4rec", "svae")]
PAIRED_COMPARISONS.append(("smollm2-lora-distill", LM_MODEL))
PAIRED_RESAMPLES = 10_000
PAIRED_SEED = 0
DEFAULT_SEEDS = (0, 1, 2)  # the protocol: every model, these 3 seeds
METRICS = ("ndcg@10", "hr@10", "mrr", "ndcg@20", "hr@20")
ROW_KEYS = ("model", "seed", *METRICS, "train_seconds", "peak_rss_mb")
# --quick: enough to run every code path (train, validate, save, reload, test) in seconds per model.
QUICK = {"num_epochs": 1, "max_steps": 3, "eval_max_users": 100, "bootstrap_samples": 50}
QUICK_PER_MODEL = {
    "smollm2-lora": {"max_len": 20, "batch_size": 4},
    "smollm2-lora-30l": {"max_len": 20, "batch_size": 4},
    "smollm2-lora-distill": {"max_len": 20, "batch_size": 4},
    "sasrec": {"max_len": 50},
}


# ----------------------------------------------------------------------------- running one model
def model_command(model: str, seed: int, run_dir: Path, quick: bool, overrides: dict[str, str]) -> list[str]:
    """The finetune command of one model and seed: its config file and fixed options, then --quick's, then ``overrides``."""
    config_file, fixed = MODELS[model]
    options: dict[str, Any] = {**fixed, "seed": seed, "output_dir": str(run_dir), "report_to": "none"}
    if model in TEACHERS:
        options["teacher"] = str(teacher_dir(model, seed, run_dir.parent))
    if quick:
        options.update(QUICK)
        options.update(QUICK_PER_MODEL.get(model, {}))
    options.update(overrides)
    return finetune_command(config_file, options)


def teacher_dir(model: str, seed: int, runs_dir: Path) -> Path:
    """The run directory of ``model``'s distillation teacher for ``seed``."""
    return runs_dir / f"{TEACHERS[model]}-seed{seed}"


def finished_run_matches(command: list[str], run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a finished run made with exactly the configuration ``command`` gives.

    Compared option by option after both are parsed (the command through scripts/finetune.py's own
    parser, the run through its training_config.yaml), so a run made by another benchmark with the same
    options counts, and one that differs in anything that shapes the result does not.
    """
    if not (run_dir / "metrics.json").is_file() or not (run_dir / "training_config.yaml").is_file():
        return False
    from hf_seqrec.training.config import config_from_args

    wanted = config_from_args(command[2:]).to_dict()
    recorded = yaml.safe_load((run_dir / "training_config.yaml").read_text(encoding="utf-8"))
    ignored = {"output_dir", "overwrite_output_dir", "report_to", "resume"}
    # A run records what "auto" resolved to (timestamp_column: the column it found), so "auto" matches any value.
    differences = {
        k: (v, recorded.get(k)) for k, v in wanted.items() if k not in ignored and v != "auto" and recorded.get(k, v) != v
    }
    if differences:
        print(f"[quality] {run_dir}: not reused, its configuration differs: {differences}", flush=True)
    return not differences


def run_model(
    model: str, seed: int, runs_dir: Path, quick: bool, overrides: dict[str, str], log_dir: Path, reuse: Path | None = None
) -> dict[str, Any]:
    run_dir = runs_dir / f"{model}-seed{seed}"
    command = model_command(model, seed, run_dir, quick, overrides)
    if reuse is not None and finished_run_matches(command, reuse):
        print(f"[quality] {model} seed {seed}: reusing {reuse}, a finished run with the same configuration", flush=True)
        row = row_from_run(reuse, model)
        row.update(command=shlex.join(relative_command(command)), reused_from=display_path(reuse), wall_seconds=None, quick=quick, overrides=overrides)
        return row
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{model}-seed{seed}.log"
    print(f"[quality] {model} seed {seed}: {shlex.join(command)}", flush=True)
    wall = run_logged(command, log_path, f"{model} seed {seed}")
    row = row_from_run(run_dir, model)
    row.update(command=shlex.join(relative_command(command)), wall_seconds=round(wall, 1), quick=quick, overrides=overrides)
    return row


def stopped_by(row: dict[str, Any]) -> str:
    """Why a run ended: early stopping (converged on validation), or a cap that may have cut it short."""
    if row.get("epochs_run") in (0, None):
        return "no training"
    if row.get("max_steps"):
        return "max_steps cap"
    if row.get("num_epochs") is not None and row["epochs_run"] >= row["num_epochs"]:
        return "epoch cap (may be under-trained)" if row.get("best_epoch") == row["epochs_run"] else "epoch cap"
    return "early stopping"


def row_from_run(run_dir: Path, model: str) -> dict[str, Any]:
    """One benchmark row from a finished run directory of scripts/finetune.py."""
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    config_path = run_dir / "training_config.yaml"
    config = yaml.safe_load(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    training = metrics.get("training", {})
    test = metrics["test"]
    row: dict[str, Any] = {"model": model, "seed": config.get("seed")}
    row.update({name: round(float(test[name]), 6) for name in METRICS})
    row.update(
        train_seconds=training.get("train_seconds"),
        peak_rss_mb=training.get("peak_rss_mb"),
        n_users=test.get("n_users"),
        backbone=config.get("backbone", training.get("backbone")),
        num_epochs=config.get("num_epochs"),
        max_steps=config.get("max_steps"),
        early_stopping_patience=config.get("early_stopping_patience"),
        epochs_run=training.get("epochs_run"),
        best_epoch=training.get("best_epoch"),
        eval_max_users=config.get("eval_max_users"),
        run_dir=display_path(run_dir),
        machine=machine_summary(),
    )
    row["validation_ndcg@10"] = round(float(metrics["validation"]["ndcg@10"]), 6)
    teacher_metrics = Path(config["teacher"]) / "metrics.json" if config.get("teacher") else None
    if teacher_metrics is not None and teacher_metrics.is_file():
        # A distilled model's cost includes training its teacher.
        row["teacher_train_seconds"] = json.loads(teacher_metrics.read_text(encoding="utf-8"))["training"].get("train_seconds")
    row["test_ranks"] = read_test_ranks(run_dir, float(test["ndcg@10"]))
    return row


def ndcg_at_10(ranks: Any) -> np.ndarray:
    """Per-user NDCG@10 from 1-based ranks: 1/log2(rank+1) if rank <= 10, else 0."""
    ranks = np.asarray(ranks, dtype=np.float64)
    return np.where(ranks <= 10, 1.0 / np.log2(ranks + 1.0), 0.0)


def read_test_ranks(run_dir: Path, test_ndcg: float) -> dict[str, list] | None:
    """The run's per-user test ranks (``test_ranks.json``), or None where the run has none (older runs)."""
    path = run_dir / TEST_RANKS_FILE
    if not path.is_file():
        print(f"[quality] {run_dir}: no {TEST_RANKS_FILE}; this row cannot enter the paired tests", flush=True)
        return None
    saved = json.loads(path.read_text(encoding="utf-8"))
    if saved.get("split") != "test" or saved.get("rank_base", 1) != 1 or len(saved["user_ids"]) != len(saved["ranks"]):
        raise ValueError(f"{path}: expected 1-based test ranks, one per user id")
    recomputed = float(ndcg_at_10(saved["ranks"]).mean())
    if not math.isclose(recomputed, test_ndcg, abs_tol=1e-9):
        raise ValueError(f"{path}: its ranks give test NDCG@10 {recomputed:.6f}, metrics.json says {test_ndcg:.6f} (stale file?)")
    return {"user_ids": [str(user) for user in saved["user_ids"]], "ranks": [int(rank) for rank in saved["ranks"]]}


def rows_from_lm_runs(pattern: str) -> list[dict[str, Any]]:
    """smollm2-lora rows from finished run directories (the LM's runs can take hours)."""
    rows = []
    for directory in sorted(glob.glob(pattern)):
        run_dir = Path(directory)
        if not (run_dir / "metrics.json").is_file():
            print(f"[quality] skipping {run_dir}: no metrics.json (not finished)", flush=True)
            continue
        row = row_from_run(run_dir, LM_MODEL)
        row.update(command=f"read from {row['run_dir']} (--lm_runs)", quick=bool(row.get("eval_max_users")), overrides={})
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- protocol
def protocol_description() -> dict[str, Any]:
    from hf_seqrec.evaluation.ranking import PROTOCOL

    protocol = json.loads(json.dumps(PROTOCOL))
    protocol["dataset"] = "movielens-100k (ratings as implicit interactions, no k-core filter)"
    protocol["reported"] = (
        "test metrics of each run's best validation epoch (validation NDCG@10, early stopping); "
        "mean over seeds with a two-sided 95% Student-t interval across seeds"
    )
    protocol["models"] = {name: {"config": cfg, "overrides": fixed} for name, (cfg, fixed) in MODELS.items()}
    return protocol


# ----------------------------------------------------------------------------- results files
def merge_rows(existing: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """New rows replace old rows of the same (model, seed); order: model order of MODELS, then seed."""
    merged = {(row["model"], row["seed"]): row for row in existing}
    for row in new:
        merged[(row["model"], row["seed"])] = row
    order = {name: index for index, name in enumerate(MODELS)}
    return sorted(merged.values(), key=lambda r: (order.get(r["model"], len(order)), r["model"], r["seed"]))


def summarise(rows: list[dict[str, Any]], expected_models: list[str], expected_seeds: list[int]) -> dict[str, Any]:
    by_model: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_model.setdefault(row["model"], []).append(row)
    summary: dict[str, Any] = {"models": {}, "missing": []}
    for model, model_rows in by_model.items():
        entry: dict[str, Any] = {"n_seeds": len(model_rows), "seeds": sorted(r["seed"] for r in model_rows)}
        for name in ("validation_ndcg@10", *METRICS, "train_seconds", "teacher_train_seconds", "peak_rss_mb"):
            values = [float(r[name]) for r in model_rows if r.get(name) is not None]
            if values:
                mean, half = t_interval(values)
                entry[name] = {"mean": mean, "ci95_half_width": half}
        summary["models"][model] = entry
    for model in expected_models:
        have = {r["seed"] for r in by_model.get(model, [])}
        lacking = [seed for seed in expected_seeds if seed not in have]
        if lacking:
            summary["missing"].append({"model": model, "seeds": lacking})
    models = summary["models"]
    summary["ratios_ndcg@10_over_sasrec"] = {}
    for lm_model in LM_MODELS:
        if lm_model in models and REFERENCE_MODEL in models:
            lm, ref = models[lm_model]["ndcg@10"]["mean"], models[REFERENCE_MODEL]["ndcg@10"]["mean"]
            summary["ratios_ndcg@10_over_sasrec"][lm_model] = lm / ref if ref else None
    if LM_MODEL in summary["ratios_ndcg@10_over_sasrec"]:
        summary["ratio_ndcg@10_lm_over_sasrec"] = summary["ratios_ndcg@10_over_sasrec"][LM_MODEL]
    return summary


# ----------------------------------------------------------------------------- paired tests over users
def paired_comparison(rows_a: list[dict[str, Any]], rows_b: list[dict[str, Any]], n_resamples: int, seed: int) -> dict[str, Any]:
    """Per-user test NDCG@10 of model A minus model B, seed s of A against seed s of B, user by user.

    Pairs are matched by user id and pooled over the seeds both models have (where both runs kept their
    test ranks). Returns the mean difference, the ratio of the means, a paired t-test on the pooled pairs,
    and a paired bootstrap that resamples users (each with its pairs of every pooled seed): the 95%
    percentile interval of the mean difference and a two-sided p-value (the resampled differences
    centred on the observed one, counted as far from it as the observed one is from 0).
    """
    from scipy import stats

    by_seed_a = {row["seed"]: row for row in rows_a}
    by_seed_b = {row["seed"]: row for row in rows_b}
    common = sorted(set(by_seed_a) & set(by_seed_b))
    lacking = [row.get("run_dir") or f"{row['model']} seed {row['seed']}"
               for s in common for row in (by_seed_a[s], by_seed_b[s]) if not row.get("test_ranks")]
    seeds = [s for s in common if by_seed_a[s].get("test_ranks") and by_seed_b[s].get("test_ranks")]
    if not common:
        return {"computed": False, "reason": "no seed was run by both models", "lacking_test_ranks": []}
    if not seeds:
        runs = ", ".join(f"`{run}`" for run in lacking)
        reason = f"run {runs} has no {TEST_RANKS_FILE}" if len(lacking) == 1 else f"runs {runs} have no {TEST_RANKS_FILE}"
        return {"computed": False, "reason": reason, "lacking_test_ranks": lacking}
    values_a, values_b, users = [], [], []
    for s in seeds:
        ranks_a, ranks_b = by_seed_a[s]["test_ranks"], by_seed_b[s]["test_ranks"]
        ndcg_b = dict(zip(ranks_b["user_ids"], ndcg_at_10(ranks_b["ranks"])))
        for user, value in zip(ranks_a["user_ids"], ndcg_at_10(ranks_a["ranks"])):
            if user in ndcg_b:
                values_a.append(value)
                values_b.append(ndcg_b[user])
                users.append(user)
    a, b = np.asarray(values_a), np.asarray(values_b)
    differences = a - b
    mean = float(differences.mean())
    if len(differences) < 2:
        t_stat = p_t = None
    elif np.all(differences == differences[0]):  # no spread: the t statistic is undefined
        t_stat, p_t = None, 1.0 if mean == 0 else 0.0
    else:
        result = stats.ttest_rel(a, b)
        t_stat, p_t = float(result.statistic), float(result.pvalue)
    # Bootstrap over users: a user's pairs of every seed travel together (they are not independent).
    bootstrap = user_bootstrap(differences, users, n_resamples, seed)
    mean_a, mean_b = float(a.mean()), float(b.mean())
    return {
        "computed": True,
        "metric": "ndcg@10",
        "seeds": seeds,
        "n_users": bootstrap["n_users"],
        "n_pairs": len(differences),
        "lacking_test_ranks": lacking,
        "seeds_not_pooled": [s for s in common if s not in seeds],
        "mean_a": mean_a,
        "mean_b": mean_b,
        "mean_difference": mean,
        "ratio_of_means": mean_a / mean_b if mean_b else None,
        "t_test": {"method": "scipy.stats.ttest_rel on the pooled pairs (two-sided)", "statistic": t_stat,
                   "df": len(differences) - 1, "p_value": p_t},
        "bootstrap": {"method": "paired bootstrap over users, each with its pairs of every pooled seed (two-sided)",
                      **{k: v for k, v in bootstrap.items() if k != "n_users"}},
    }


def paired_tests(rows: list[dict[str, Any]], n_resamples: int = PAIRED_RESAMPLES, seed: int = PAIRED_SEED) -> list[dict[str, Any]]:
    """``paired_comparison`` of every pair in PAIRED_COMPARISONS, from the rows' stored test ranks."""
    tests = []
    for model_a, model_b in PAIRED_COMPARISONS:
        rows_a = [r for r in rows if r["model"] == model_a]
        rows_b = [r for r in rows if r["model"] == model_b]
        absent = [m for m, model_rows in ((model_a, rows_a), (model_b, rows_b)) if not model_rows]
        if absent:
            names = " and ".join(f"`{m}`" for m in absent)
            result = {"computed": False, "reason": f"{names} {'has' if len(absent) == 1 else 'have'} no rows yet", "lacking_test_ranks": []}
        else:
            result = paired_comparison(rows_a, rows_b, n_resamples, seed)
        tests.append({"a": model_a, "b": model_b, **result})
    return tests


def render_markdown(results: dict[str, Any]) -> str:
    summary = results["summary"]
    rows = results["rows"]
    lines = [
        f"# {results['title']}",
        "",
        f"Last updated by `{results['command']}` on {results['generated']}; `python benchmarks/quality.py` reruns every "
        "model and seed (rows are merged by model and seed, so subsets can be run one at a time).",
        f"Machine: {results['machine']}.",
        "",
        "Protocol: leave-one-out by timestamp (last item = test, second to last = validation), full ranking of every "
        "item with the user's history masked, pessimistic ties; test metrics of the best validation epoch (NDCG@10). "
        "The same data pipeline, collator, trainer and evaluator for every model. Cells: mean ± half-width of the "
        "two-sided 95% Student-t interval across seeds (a single seed shows the mean only).",
        "",
    ]
    if any(r.get("quick") for r in rows):
        lines += ["**Quick rows (a few optimizer steps, a subset of users): they check the wiring and say nothing about quality.**", ""]
    lines += [
        "| model | seeds | validation NDCG@10 | NDCG@10 | HR@10 | MRR | NDCG@20 | HR@20 | train s | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for model, entry in summary["models"].items():
        cells = [mean_cell(entry.get(name)) for name in ("validation_ndcg@10", *METRICS)]
        train_cell = mean_cell(entry.get("train_seconds"), 0)
        if entry.get("teacher_train_seconds"):
            train_cell += f" (+ {mean_cell(entry['teacher_train_seconds'], 0)} teacher)"
        lines.append(
            f"| {model} | {entry['n_seeds']} ({', '.join(map(str, entry['seeds']))}) | {' | '.join(cells)} | "
            f"{train_cell} | {mean_cell(entry.get('peak_rss_mb'), 0)} |"
        )
    if "popularity" in summary["models"]:
        lines.append("")
        lines.append("`popularity` counts the training split; it has no randomness, so its seeds agree exactly.")
    lines.append("")
    ratios = summary.get("ratios_ndcg@10_over_sasrec", {})
    for lm_model in LM_MODELS:
        ratio = ratios.get(lm_model)
        if ratio is not None:
            lm = summary["models"][lm_model]["ndcg@10"]["mean"]
            ref = summary["models"][REFERENCE_MODEL]["ndcg@10"]["mean"]
            lines.append(
                f"- **{lm_model} / {REFERENCE_MODEL}, mean test NDCG@10: {lm:.4f} / {ref:.4f} = {ratio:.2f}** "
                f"({summary['models'][lm_model]['n_seeds']} and {summary['models'][REFERENCE_MODEL]['n_seeds']} seeds)."
            )
        else:
            lines.append(f"- **{lm_model} / {REFERENCE_MODEL} ratio of test NDCG@10: not available** (one of them has no rows yet).")
    lines.append("")
    lines += render_paired_tests(results.get("paired_tests", []))
    lines += render_popularity_breakdown(rows)
    if summary["missing"]:
        lines += ["## Missing rows", ""]
        for item in summary["missing"]:
            lines.append(f"- `{item['model']}`: seeds {', '.join(map(str, item['seeds']))} not run yet")
        lines += [
            "",
            f"Run them with `python benchmarks/quality.py --models MODEL --seeds SEEDS`; `{LM_MODEL}` rows can also be read from "
            f"finished `scripts/finetune.py --config {MODELS[LM_MODEL][0]} --seed S` run directories with `--lm_runs 'GLOB'`.",
            "",
        ]
    lines += [
        "## Runs",
        "",
        "| model | seed | NDCG@10 | HR@10 | validation NDCG@10 | epochs run (configured) | best epoch | ended by | train s | run directory |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        configured = row.get("num_epochs") if stopped_by(row) != "no training" else "no epochs"
        # A row whose run directory was later reused by another run keeps its numbers but not the directory.
        run_dir_cell = f"`{row['run_dir']}`" if row.get("run_dir") else "not kept"
        if row.get("max_steps"):
            configured = f"{configured}, max_steps {row['max_steps']}"
        lines.append(
            f"| {row['model']} | {row['seed']} | {row['ndcg@10']:.4f} | {row['hr@10']:.4f} | "
            f"{row.get('validation_ndcg@10', float('nan')):.4f} | {row.get('epochs_run')} ({configured}) | {row.get('best_epoch')} | "
            f"{stopped_by(row)} | "
            f"{row.get('train_seconds')} | {run_dir_cell} |"
        )
    lines += ["", "Commands (one per row):", ""]
    for row in rows:
        note = f" — {row['note']}" if row.get("note") else ""
        if row.get("renamed_from"):
            note += f" (recorded as `{row['renamed_from']}`, the CPU default of the time; `--models {row['model']}` reruns it)"
        lines.append(f"- {row['model']} seed {row['seed']}: `{row.get('command')}`{note}")
    lines.append("")
    return "\n".join(lines)


def _p(value: float | None, floor: float | None = None) -> str:
    if value is None:
        return "—"
    if floor is not None and value <= floor:
        return f"≤ {value:.1g}"
    return f"{value:.2g}" if value < 0.01 else f"{value:.3f}"


def render_paired_tests(tests: list[dict[str, Any]]) -> list[str]:
    if not tests:
        return []
    done = [t for t in tests if t["computed"]]
    lines = [
        "## Paired tests over users (test NDCG@10)",
        "",
        "Per-user test NDCG@10 of A minus B, user by user (matched by user id), seed s of A against seed s of B, "
        "pooled over the seeds both have. p-values are two-sided: a paired t-test on the pooled pairs (it takes them "
        "as independent, though a user appears once per seed), and a paired bootstrap that resamples users, each with "
        f"its pairs of every pooled seed ({PAIRED_RESAMPLES:,} resamples, seed {PAIRED_SEED}; the interval is its 95% "
        "percentile interval of the mean difference).",
        "",
    ]
    if done:
        lines += [
            "| A − B | seeds pooled | users | pairs | NDCG@10 A | NDCG@10 B | mean difference [95% bootstrap] | A / B | t-test p | bootstrap p |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for t in done:
            boot = t["bootstrap"]
            low, high = boot["ci95"]
            ratio = f"{t['ratio_of_means']:.2f}" if t["ratio_of_means"] is not None else "—"
            lines.append(
                f"| {t['a']} − {t['b']} | {len(t['seeds'])} ({', '.join(map(str, t['seeds']))}) | {t['n_users']} | {t['n_pairs']} | "
                f"{t['mean_a']:.4f} | {t['mean_b']:.4f} | {t['mean_difference']:+.4f} [{low:+.4f}, {high:+.4f}] | {ratio} | "
                f"{_p(t['t_test']['p_value'])} | {_p(boot['p_value'], floor=1 / (boot['n_resamples'] + 1))} |"
            )
        lines.append("")
    for t in tests:
        if not t["computed"]:
            lines.append(f"- {t['a']} − {t['b']}: not computed: {t['reason']}.")
        elif t["lacking_test_ranks"]:
            runs = ", ".join(f"`{run}`" for run in t["lacking_test_ranks"])
            seeds = ", ".join(map(str, t.get("seeds_not_pooled", [])))
            lines.append(f"- {t['a']} − {t['b']}: seed(s) {seeds} not pooled: no {TEST_RANKS_FILE} in {runs}.")
    if any(t["lacking_test_ranks"] for t in tests):
        lines += ["", f"Rows made before runs wrote `{TEST_RANKS_FILE}` have no per-user ranks; rerunning them adds them.", ""]
    return lines


def render_popularity_breakdown(rows: list[dict[str, Any]]) -> list[str]:
    """Test NDCG@10 by how often the test target occurs in training, per model (mean over its seeds with test ranks).

    A mean over all users hides where a model wins and loses: most test targets are popular items, and a
    model can match another on them while losing the rarer ones.
    """
    by_model: dict[str, list[dict[str, dict[str, float]]]] = {}
    for row in rows:
        if row.get("test_ranks") and not row.get("quick"):
            by_model.setdefault(row["model"], []).append(ndcg_by_target_popularity(row["test_ranks"]["user_ids"], row["test_ranks"]["ranks"]))
    if not by_model:
        return []
    names = [name for name, _, _ in POPULARITY_BUCKETS]
    first = next(iter(by_model.values()))[0]
    lines = [
        "## By test-target popularity",
        "",
        "Test NDCG@10 of the users whose test target occurs ≥ 100, 20–99 or < 20 times in the training split "
        f"({', '.join(name + ': ' + str(first[name]['n_users']) + ' users' for name in names)}), mean over the model's seeds that kept "
        "per-user ranks.",
        "",
        "| model | seeds | " + " | ".join(names) + " |",
        "|---|---|" + "---:|" * len(names),
    ]
    for model, breakdowns in by_model.items():
        cells = [f"{sum(b[name]['ndcg@10'] for b in breakdowns) / len(breakdowns):.4f}" for name in names]
        lines.append(f"| {model} | {len(breakdowns)} | " + " | ".join(cells) + " |")
    return lines + [""]


def render_chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(results["summary"]["models"].items())
    if not models:
        return
    names = [name for name, _ in models]
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for axis, metric in zip(axes, ("ndcg@10", "hr@10")):
        means = [entry[metric]["mean"] for _, entry in models]
        errors = [entry[metric]["ci95_half_width"] or 0.0 for _, entry in models]
        axis.bar(names, means, yerr=errors, capsize=4, color=["#888888" if n == "popularity" else "#cc6677" if n in LM_MODELS else "#4477aa" for n in names])
        axis.set_title(f"test {metric.upper()} (mean, 95% CI over seeds)")
        axis.tick_params(axis="x", rotation=25)
        for index, (_, entry) in enumerate(models):
            axis.annotate(f"n={entry['n_seeds']}", (index, 0), ha="center", va="bottom", fontsize=8, color="white")
    figure.suptitle(results["title"])
    figure.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(tmp, dpi=120)
    plt.close(figure)
    os.replace(tmp, path)


def write_report(results_dir: Path, name: str, results: dict[str, Any]) -> None:
    """``<name>.json`` (one line per list of plain values), ``.md`` and ``.png``, each written atomically."""
    from hf_seqrec.io_utils import write_text_atomic

    write_text_atomic(results_dir / f"{name}.json", json_text(results) + "\n")
    write_text_atomic(results_dir / f"{name}.md", render_markdown(results))
    render_chart(results, results_dir / f"{name}.png")


# ----------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of {', '.join(MODELS)}")
    parser.add_argument("--seeds", default=",".join(map(str, DEFAULT_SEEDS)), help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--quick", action="store_true", help=f"a few steps per model ({QUICK}); rows are marked quick")
    parser.add_argument("--lm_runs", help=f"glob of finished run directories to read the {LM_MODEL} rows from instead of training it")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE", help="finetune option for every trained model (repeatable)")
    parser.add_argument("--runs_dir", default="runs/quality", help="where the run directories go")
    parser.add_argument("--results_dir", default=str(REPO / "benchmarks" / "results"))
    parser.add_argument("--name", help="results file stem (default ml100k, or ml100k-quick with --quick)")
    parser.add_argument("--note", help="a note stored with every row this invocation adds (e.g. why epochs were capped)")
    parser.add_argument("--report_only", action="store_true", help="rebuild the table and chart from the JSON without running anything")
    parser.add_argument(
        "--reuse", action="append", default=[], metavar="SEED=DIR",
        help="take that seed's row from a finished run directory (e.g. an ablation) when its configuration is the model's",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise SystemExit(f"unknown model(s) {unknown}; choose from {', '.join(MODELS)}")
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    overrides = {}
    for item in args.override:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--override expects KEY=VALUE, got {item!r}")
        overrides[key.lstrip("-")] = value
    name = args.name or ("ml100k-quick" if args.quick else "ml100k")
    results_dir = Path(args.results_dir)
    runs_dir = Path(args.runs_dir)
    if not runs_dir.is_absolute():
        runs_dir = REPO / runs_dir
    results = load_results(results_dir / f"{name}.json")

    new_rows: list[dict[str, Any]] = []
    if not args.report_only:
        for model in models:
            if model == LM_MODEL and args.lm_runs:
                lm_rows = rows_from_lm_runs(args.lm_runs)
                for row in lm_rows:
                    if args.note:
                        row["note"] = args.note
                new_rows += lm_rows
                continue
            reuse = {int(seed): Path(directory) for seed, _, directory in (item.partition("=") for item in args.reuse)}
            for seed in seeds:
                teacher = TEACHERS.get(model)
                if teacher and not (teacher_dir(model, seed, runs_dir) / "metrics.json").is_file():
                    # The teacher's run is trained first; its row joins the results like any other.
                    print(f"[quality] {model} seed {seed}: training its teacher, {teacher} seed {seed}, first", flush=True)
                    teacher_row = run_model(teacher, seed, runs_dir, args.quick, overrides, runs_dir / "logs")
                    results = _assemble(results, merge_rows(results.get("rows", []), [teacher_row]), args, seeds)
                    write_report(results_dir, name, results)
                row = run_model(model, seed, runs_dir, args.quick, overrides, runs_dir / "logs", reuse.get(seed))
                if args.note:
                    row["note"] = args.note
                print(f"[quality] {model} seed {seed}: test NDCG@10 {row['ndcg@10']:.4f} HR@10 {row['hr@10']:.4f} "
                      f"({row['epochs_run']} epochs, best {row['best_epoch']}, {row['train_seconds']} s)", flush=True)
                new_rows.append(row)
                # Write after every run: a long benchmark that dies keeps what it finished.
                results = _assemble(results, merge_rows(results.get("rows", []), [row]), args, seeds)
                write_report(results_dir, name, results)
    results = _assemble(results, merge_rows(results.get("rows", []), new_rows), args, seeds)
    write_report(results_dir, name, results)
    print(f"[quality] wrote {results_dir / name}.json, .md and .png ({len(results['rows'])} rows)")
    return 0


def _assemble(previous: dict[str, Any], rows: list[dict[str, Any]], args: argparse.Namespace, seeds: list[int]) -> dict[str, Any]:
    # The protocol asks for DEFAULT_SEEDS of every model; rows with other seeds are kept and shown too.
    expected_seeds = seeds if args.quick else sorted(set(DEFAULT_SEEDS) | {row["seed"] for row in rows})
    results = {
        "title": "MovieLens-100K: next-item recommendation quality" + (" (quick wiring check)" if args.quick else ""),
        "command": command_line("quality.py", None),
        "generated": utc_now(),
        "machine": machine_summary(),
        "protocol": protocol_description(),
        "expected_models": list(MODELS),
        "expected_seeds": expected_seeds,
        "rows": rows,
    }
    results["summary"] = summarise(rows, results["expected_models"], expected_seeds)
    results["paired_tests"] = paired_tests(rows)
    return results


if __name__ == "__main__":
    sys.exit(main())
