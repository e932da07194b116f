#!/usr/bin/env python
"""The reward-aware objective (SQN) on MovieLens-100K: each model with and without ``--reward``, paired over users.

    python benchmarks/reward.py                                    # sasrec and the LM, with and without, seeds 0,1,2
    python benchmarks/reward.py --models sasrec --seeds 0          # a subset; rows are merged into the results
    python benchmarks/reward.py --reuse_finished                   # take rows from finished runs whose config matches
    python benchmarks/reward.py --cross_entropy_runs_dir runs/quality  # cross-entropy rows from the quality benchmark's runs
    python benchmarks/reward.py --quick --results_dir /tmp/r       # a few steps per run: checks the wiring only
    python benchmarks/reward.py --report_only                      # rebuild the table from the JSON

Every run is ``scripts/finetune.py`` with the model's config (SASRec: ``configs/sasrec.yaml``, the LM:
``configs/cpu.yaml``), once as it is (``cross-entropy``) and once with ``--reward "rating>=4:1.0,else:0.2"``
(``sqn``: a Q-learning head trained on those rewards next to the next-item head, SQN's discount 0.5 and
TD weight 1; the head is normalized, see ``hf_seqrec/modeling/q_learning.py``), and once more with
``--reward_weight 0.1`` as well (``sqn-w0.1``: the TD loss at a tenth of its weight), and once with
``--reward_objective reward-weighted`` (``reward-weighted``: no Q head; each position's cross-entropy is
weighted by its target's reward). One run directory per model, objective and seed under ``--runs_dir``. A row holds the run's
test NDCG@10 and HR@10, the HR@10 and NDCG@10 over the test targets the user liked (rating >= 4), the rate
at which a disliked target (rating <= 2) lands in the top 10, each with the run's own bootstrap 95%
interval from ``metrics.json``, and the per-user test ranks and target ratings from ``test_ranks.json``
for the paired tests: per model, SQN minus cross-entropy on liked-target HR@10, overall NDCG@10 and
disliked-target HR@10, user by user, pooled over the seeds both have, with a paired bootstrap over
users. Results: ``<results_dir>/reward.json`` and ``reward.md`` (``reward-quick.*`` with ``--quick``).

The quality benchmark (``benchmarks/quality.py``) runs the same two config files under the same model names
with nothing added, so its finished runs are this benchmark's cross-entropy runs: ``--cross_entropy_runs_dir``
takes the cross-entropy row of model M, seed S from ``<dir>/<M>-seed<S>`` when that run's recorded
configuration is the one this benchmark would run. A run made before runs recorded the target ratings is
re-evaluated with ``scripts/evaluate_checkpoint.py --ranks_output`` into ``<runs_dir>/reevaluated/<M>-seed<S>``
(the quality run's own files are never written; with ``--reuse_finished`` a re-evaluation made after the run
finished is reused), and its row says so, with the command.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

from benchmark_utils import (
    REPO, command_line, display_path, finetune_command, json_text, load_results, machine_summary, mean_cell, relative_command,
    run_logged, t_interval, user_bootstrap, utc_now,
)
from quality import finished_run_matches, ndcg_at_10

TEST_RANKS_FILE = "test_ranks.json"  # hf_seqrec.training.output_dir.TEST_RANKS_FILE (not imported: no torch needed here)
EVALUATE = REPO / "scripts" / "evaluate_checkpoint.py"
REEVALUATED_DIR = "reevaluated"  # under --runs_dir: re-evaluations of other benchmarks' runs, whose own files stay as they are
REWARD = "rating>=4:1.0,else:0.2"
LIKED_MIN_RATING, DISLIKED_MAX_RATING = 4.0, 2.0  # hf_seqrec.evaluation.ratings
MODELS: dict[str, str] = {"sasrec": "configs/sasrec.yaml", "smollm2-lora": "configs/cpu.yaml"}
# objective -> the options it adds to the model's config. `sqn-w0.1` weighs the TD loss at a tenth of SQN's 1:
# the objective's pull on the shared encoder made smaller, for a backbone (the LM) on which weight 1 costs accuracy.
# `reward-weighted` has no Q head: each position's cross-entropy is weighted by its target's reward.
OBJECTIVES: dict[str, dict[str, Any]] = {
    "cross-entropy": {},
    "sqn": {"reward": REWARD},
    "sqn-w0.1": {"reward": REWARD, "reward_weight": 0.1},
    "reward-weighted": {"reward": REWARD, "reward_objective": "reward-weighted"},
}
BASELINE_OBJECTIVE, REWARD_OBJECTIVE = "cross-entropy", "sqn"
# Each is paired with the baseline; the first (SQN as published) is reported even before it has rows.
REWARD_OBJECTIVES = ("sqn", "sqn-w0.1", "reward-weighted")
DEFAULT_SEEDS = (0, 1, 2)
# A row's metrics: (key in the row, where metrics.json has it, label in the tables).
METRICS = (
    ("ndcg@10", ("test", "ndcg@10"), "NDCG@10"),
    ("hr@10", ("test", "hr@10"), "HR@10"),
    ("liked_hr@10", ("test_by_rating", "test_liked", "hr@10"), "liked HR@10"),
    ("liked_ndcg@10", ("test_by_rating", "test_liked", "ndcg@10"), "liked NDCG@10"),
    ("disliked_hr@10", ("test_by_rating", "test_disliked", "hr@10"), "disliked in top 10"),
)
PAIRED_RESAMPLES = 10_000
PAIRED_SEED = 0
# --quick: every code path (train, validate, save, reload, test) in seconds per run.
QUICK = {"num_epochs": 1, "max_steps": 3, "eval_max_users": 100, "bootstrap_samples": 50}
QUICK_PER_MODEL = {"smollm2-lora": {"max_len": 20, "batch_size": 4}, "sasrec": {"max_len": 50}}


# ----------------------------------------------------------------------------- per-user values
def hit_at_10(ranks: Any) -> np.ndarray:
    """Per-user HR@10 from 1-based ranks."""
    return (np.asarray(ranks) <= 10).astype(np.float64)


def _liked(ratings: np.ndarray) -> np.ndarray:
    return ratings >= LIKED_MIN_RATING


def _disliked(ratings: np.ndarray) -> np.ndarray:
    return ratings <= DISLIKED_MAX_RATING


def _everyone(ratings: np.ndarray) -> np.ndarray:
    return np.ones(len(ratings), dtype=bool)


# metric of a paired test -> (which users, per-user value from ranks, description)
PAIRED_METRICS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], Callable[[Any], np.ndarray], str]] = {
    "liked_hr@10": (_liked, hit_at_10, f"HR@10 over the test targets rated >= {LIKED_MIN_RATING:g}"),
    "ndcg@10": (_everyone, ndcg_at_10, "NDCG@10 over every test target"),
    "disliked_hr@10": (_disliked, hit_at_10, f"HR@10 over the test targets rated <= {DISLIKED_MAX_RATING:g} (lower is better)"),
}


# ----------------------------------------------------------------------------- running one model
def run_name(model: str, objective: str, seed: int) -> str:
    return f"{model}-{objective}-seed{seed}"


def run_command(model: str, objective: str, seed: int, run_dir: Path, quick: bool) -> list[str]:
    """The finetune command of one run: the model's config file, the objective's options, the seed, then --quick's."""
    options: dict[str, Any] = {**OBJECTIVES[objective], "seed": seed, "output_dir": str(run_dir), "report_to": "none"}
    if quick:
        options.update(QUICK)
        options.update(QUICK_PER_MODEL.get(model, {}))
    return finetune_command(MODELS[model], options)


def run_one(model: str, objective: str, seed: int, runs_dir: Path, quick: bool, reuse_finished: bool) -> dict[str, Any]:
    """Train (or, with ``reuse_finished``, read a finished run with the same configuration) and return its row."""
    run_dir = runs_dir / run_name(model, objective, seed)
    command = run_command(model, objective, seed, run_dir, quick)
    if reuse_finished and finished_run_matches(command, run_dir) and q_head_matches(command, run_dir):
        print(f"[reward] {run_name(model, objective, seed)}: reusing {run_dir}, a finished run with the same configuration", flush=True)
        wall = None
    else:
        print(f"[reward] {run_name(model, objective, seed)}: {shlex.join(command)}", flush=True)
        wall = round(run_logged(command, runs_dir / "logs" / f"{run_name(model, objective, seed)}.log", run_name(model, objective, seed)), 1)
    row = row_from_run(run_dir, model, objective)
    row.update(command=shlex.join(relative_command(command)), wall_seconds=wall, quick=quick, reused=wall is None)
    return row


def q_head_matches(command: list[str], run_dir: Path) -> bool:
    """Whether the run's Q-learning head is the one ``command`` trains today (its ``q_head`` in config.json).

    The options alone do not say it: a run made before the head read a unit-length state has the same
    options and a different head, and its row would not measure the objective as it now is.
    """
    from hf_seqrec.training.config import config_from_args
    from hf_seqrec.training.reward_objective import q_head_settings

    wanted = q_head_settings(config_from_args(command[2:]))
    recorded = json.loads((run_dir / "config.json").read_text(encoding="utf-8")).get("q_head")
    if recorded != wanted:
        print(f"[reward] {run_dir}: not reused, its Q-learning head {recorded} is not today's {wanted}", flush=True)
    return recorded == wanted


def row_from_run(run_dir: Path, model: str, objective: str, evaluation_dir: Path | None = None) -> dict[str, Any]:
    """One row from a finished run directory of scripts/finetune.py on rated data.

    ``evaluation_dir``: a re-evaluation of the run's checkpoint (``reevaluate``) whose test metrics, rating
    breakdown and test ranks replace the run's own, for a run made before runs recorded them.
    """
    import yaml

    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    if evaluation_dir is not None:
        evaluated = json.loads((evaluation_dir / "metrics.json").read_text(encoding="utf-8"))
        metrics.update({key: evaluated[key] for key in ("test", "test_by_rating") if key in evaluated})
    if "test_by_rating" not in metrics:
        raise ValueError(f"{run_dir}/metrics.json has no test_by_rating: the run's data had no ratings, or it predates them")
    config = yaml.safe_load((run_dir / "training_config.yaml").read_text(encoding="utf-8"))
    by_rating = metrics["test_by_rating"]
    row: dict[str, Any] = {"model": model, "objective": objective, "seed": config["seed"], "reward": config.get("reward"), "intervals": {}}
    for key, path, _ in METRICS:
        block = _lookup(metrics, path[:-1])
        row[key] = None if block is None else round(float(block[path[-1]]), 6)
        row["intervals"][key] = None if block is None else block.get("intervals", {}).get(path[-1])
    training = metrics.get("training", {})
    row.update(
        n_users=metrics["test"]["n_users"],
        n_liked=by_rating["n_test_users_liked"],
        n_disliked=by_rating["n_test_users_disliked"],
        epochs_run=training.get("epochs_run"),
        best_epoch=training.get("best_epoch"),
        train_seconds=training.get("train_seconds"),
        run_dir=display_path(run_dir),
        machine=machine_summary(),
        test_ranks=read_test_ranks(evaluation_dir or run_dir),
    )
    return row


def _lookup(mapping: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any] | None:
    for key in path:
        mapping = mapping.get(key) if mapping is not None else None
    return mapping


def read_test_ranks(run_dir: Path) -> dict[str, list] | None:
    """The run's per-user test ranks and target ratings, or None where its test_ranks.json has no ratings."""
    path = run_dir / TEST_RANKS_FILE
    if not path.is_file():
        return None
    saved = json.loads(path.read_text(encoding="utf-8"))
    if "target_ratings" not in saved:
        return None
    return {"user_ids": [str(u) for u in saved["user_ids"]], "ranks": [int(r) for r in saved["ranks"]], "target_ratings": saved["target_ratings"]}


# ----------------------------------------------------------------------------- cross-entropy rows from the quality benchmark
def row_for(model: str, objective: str, seed: int, args: argparse.Namespace, runs_dir: Path) -> dict[str, Any]:
    """A run's row: with ``--cross_entropy_runs_dir``, a cross-entropy row from the quality run that matches; else ``run_one``."""
    if objective == BASELINE_OBJECTIVE and args.cross_entropy_runs_dir:
        row = quality_run_row(model, seed, repo_path(args.cross_entropy_runs_dir), runs_dir, args.quick, args.reuse_finished)
        if row is not None:
            return row
    return run_one(model, objective, seed, runs_dir, args.quick, args.reuse_finished)


def quality_run_row(
    model: str, seed: int, quality_runs_dir: Path, runs_dir: Path, quick: bool, reuse_finished: bool
) -> dict[str, Any] | None:
    """The cross-entropy row of ``model`` and ``seed`` from the quality benchmark's run ``<quality_runs_dir>/<model>-seed<seed>``.

    None where that run is missing, unfinished or made with another configuration than this benchmark's
    cross-entropy run would have (this benchmark then trains its own). A run without target ratings in its
    test_ranks.json is re-evaluated into ``<runs_dir>/reevaluated/<model>-seed<seed>``.
    """
    run_dir = quality_runs_dir / f"{model}-seed{seed}"
    command = run_command(model, BASELINE_OBJECTIVE, seed, run_dir, quick)
    if not finished_run_matches(command, run_dir):
        return None
    name = run_name(model, BASELINE_OBJECTIVE, seed)
    print(f"[reward] {name}: reusing {run_dir}, the quality benchmark's run with the same configuration", flush=True)
    reevaluated, evaluation_dir = None, None
    if not has_rated_results(run_dir):
        evaluation_dir = runs_dir / REEVALUATED_DIR / f"{model}-seed{seed}"
        reevaluated = reevaluate(run_dir, evaluation_dir, runs_dir / "logs" / f"{name}-reevaluate.log", reuse_finished)
    row = row_from_run(run_dir, model, BASELINE_OBJECTIVE, evaluation_dir)
    row.update(command=shlex.join(relative_command(command)), wall_seconds=None, quick=quick, reused=True, reevaluated=reevaluated)
    return row


def repo_path(path: str) -> Path:
    """A directory option: absolute as given, else relative to the repository root (where every run command runs)."""
    return Path(path) if Path(path).is_absolute() else REPO / path


def has_rated_results(run_dir: Path) -> bool:
    """Whether the run recorded ``test_by_rating`` in metrics.json and each test target's rating in test_ranks.json."""
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    return "test_by_rating" in metrics and read_test_ranks(run_dir) is not None


def reevaluation_command(run_dir: Path, output_dir: Path) -> list[str]:
    """``scripts/evaluate_checkpoint.py`` on the run's final checkpoint (the top of its directory) with the run's own test settings.

    The run's eval batch size, bootstrap samples and first-N users, and (read by the script from the
    training_config.yaml next to the checkpoint) its data and precision: what the trainer's final test used,
    so the ranks are the run's and ``test_by_rating`` is what the run would have recorded.
    """
    import yaml

    config = yaml.safe_load((run_dir / "training_config.yaml").read_text(encoding="utf-8"))
    options: dict[str, Any] = {
        "model": run_dir, "split": "test", "batch_size": config["eval_batch_size"], "bootstrap_samples": config["bootstrap_samples"],
    }
    if config.get("eval_max_users") is not None:
        options["max_users"] = config["eval_max_users"]
    options.update(output=output_dir / "metrics.json", ranks_output=output_dir / TEST_RANKS_FILE)
    return [sys.executable, str(EVALUATE), *(part for key, value in options.items() for part in (f"--{key}", str(value)))]


def reevaluate(run_dir: Path, output_dir: Path, log_path: Path, reuse_finished: bool) -> dict[str, Any]:
    """Re-evaluate the run's checkpoint into ``output_dir`` (with ``reuse_finished``, only where no current one is there).

    Returns the record the row keeps: the command, where its files are, its seconds, and whether its ranks
    are the run's own test ranks (a re-evaluation that ranks differently is reported, not hidden).
    """
    command = reevaluation_command(run_dir, output_dir)
    if reuse_finished and reevaluation_is_current(run_dir, output_dir):
        print(f"[reward] {run_dir}: reusing its re-evaluation in {output_dir}", flush=True)
        wall = None
    else:
        print(f"[reward] {run_dir}: re-evaluating, {shlex.join(command)}", flush=True)
        output_dir.mkdir(parents=True, exist_ok=True)
        wall = round(run_logged(command, log_path, f"re-evaluation of {run_dir}"), 1)
    matches = ranks_match(run_dir, output_dir)
    if matches is False:
        print(f"[reward] warning: the re-evaluation in {output_dir} ranks differently from {run_dir}/{TEST_RANKS_FILE}", flush=True)
    return {"command": shlex.join(relative_command(command)), "output_dir": display_path(output_dir), "wall_seconds": wall,
            "ranks_match_run": matches}


def reevaluation_is_current(run_dir: Path, output_dir: Path) -> bool:
    """Whether ``output_dir`` holds a re-evaluation of this run's checkpoint made after the run finished."""
    files = [output_dir / "metrics.json", output_dir / TEST_RANKS_FILE]
    if not all(path.is_file() for path in files):
        return False
    finished = (run_dir / "metrics.json").stat().st_mtime
    evaluated = json.loads(files[0].read_text(encoding="utf-8"))
    return evaluated.get("model") == str(run_dir) and all(path.stat().st_mtime >= finished for path in files)


def ranks_match(run_dir: Path, output_dir: Path) -> bool | None:
    """Whether the re-evaluation's users and ranks are those of the run's test_ranks.json; None where the run has none."""
    path = run_dir / TEST_RANKS_FILE
    if not path.is_file():
        return None
    saved = json.loads(path.read_text(encoding="utf-8"))
    evaluated = json.loads((output_dir / TEST_RANKS_FILE).read_text(encoding="utf-8"))
    return saved["user_ids"] == evaluated["user_ids"] and saved["ranks"] == evaluated["ranks"]


# ----------------------------------------------------------------------------- summary and paired tests
def merge_rows(existing: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """New rows replace old rows of the same (model, objective, seed); ordered by model, objective, seed."""
    merged = {(r["model"], r["objective"], r["seed"]): r for r in existing}
    merged.update({(r["model"], r["objective"], r["seed"]): r for r in new})
    models, objectives = list(MODELS), list(OBJECTIVES)
    return sorted(merged.values(), key=lambda r: (models.index(r["model"]) if r["model"] in models else len(models),
                                                  objectives.index(r["objective"]), r["seed"]))


def summarise(rows: list[dict[str, Any]], expected_seeds: list[int]) -> dict[str, Any]:
    """Mean and 95% t-interval across seeds of every metric, per model and objective, and the runs still missing."""
    groups: dict[str, dict[str, Any]] = {}
    missing = []
    for model in MODELS:
        for objective in OBJECTIVES:
            group = [r for r in rows if r["model"] == model and r["objective"] == objective]
            lacking = [seed for seed in expected_seeds if seed not in {r["seed"] for r in group}]
            if lacking:
                missing.append({"model": model, "objective": objective, "seeds": lacking})
            if not group:
                continue
            entry: dict[str, Any] = {"model": model, "objective": objective, "n_seeds": len(group), "seeds": sorted(r["seed"] for r in group)}
            for key in (*(m[0] for m in METRICS), "train_seconds"):
                values = [float(r[key]) for r in group if r.get(key) is not None]
                if values:
                    mean, half = t_interval(values)
                    entry[key] = {"mean": mean, "ci95_half_width": half}
            groups[f"{model} / {objective}"] = entry
    return {"groups": groups, "missing": missing}


def paired_test(rows_a: list[dict[str, Any]], rows_b: list[dict[str, Any]], metric: str,
                n_resamples: int = PAIRED_RESAMPLES, seed: int = PAIRED_SEED) -> dict[str, Any]:
    """Per-user ``metric`` of A minus B, seed s of A against seed s of B, matched by user id, pooled over seeds.

    The users are those ``PAIRED_METRICS[metric]`` selects by their test target's rating. Returns the
    means, the mean difference and a paired bootstrap over users (each user's pairs of every pooled seed
    resampled together): its 95% percentile interval and a two-sided p-value (the resampled differences
    centred on the observed one, counted as far from it as the observed one is from 0).
    """
    select, per_user, _ = PAIRED_METRICS[metric]
    by_seed_a, by_seed_b = {r["seed"]: r for r in rows_a}, {r["seed"]: r for r in rows_b}
    seeds = [s for s in sorted(set(by_seed_a) & set(by_seed_b)) if by_seed_a[s].get("test_ranks") and by_seed_b[s].get("test_ranks")]
    if not seeds:
        return {"computed": False, "reason": "no seed has test ranks with target ratings for both"}
    values_a, values_b, users = [], [], []
    for s in seeds:
        b = _selected_values(by_seed_b[s]["test_ranks"], select, per_user)
        for user, value in _selected_values(by_seed_a[s]["test_ranks"], select, per_user).items():
            if user in b:
                values_a.append(value)
                values_b.append(b[user])
                users.append(user)
    if not users:
        return {"computed": False, "reason": "no user is in the selected group of both runs"}
    differences = np.asarray(values_a) - np.asarray(values_b)
    mean = float(differences.mean())
    bootstrap = user_bootstrap(differences, users, n_resamples, seed)
    return {
        "computed": True,
        "metric": metric,
        "seeds": seeds,
        "n_users": bootstrap["n_users"],
        "n_pairs": len(differences),
        "mean_a": float(np.mean(values_a)),
        "mean_b": float(np.mean(values_b)),
        "mean_difference": mean,
        "bootstrap": {k: v for k, v in bootstrap.items() if k != "n_users"},
    }


def _selected_values(test_ranks: dict[str, list], select: Callable, per_user: Callable) -> dict[str, float]:
    """User id -> the per-user value, for the users whose target rating ``select`` keeps."""
    ratings = np.asarray(test_ranks["target_ratings"], dtype=np.float64)
    keep = select(ratings)
    values = per_user(test_ranks["ranks"])
    return {user: float(value) for user, value, kept in zip(test_ranks["user_ids"], values, keep) if kept}


def paired_tests(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each reward objective minus cross-entropy, per model and paired metric (a variant without rows is left out)."""
    tests = []
    for model in MODELS:
        rows_b = [r for r in rows if r["model"] == model and r["objective"] == BASELINE_OBJECTIVE]
        for objective in REWARD_OBJECTIVES:
            rows_a = [r for r in rows if r["model"] == model and r["objective"] == objective]
            if not rows_a and objective != REWARD_OBJECTIVE:
                continue
            for metric in PAIRED_METRICS:
                if not rows_a or not rows_b:
                    result = {"computed": False, "reason": "one of the two objectives has no rows yet"}
                else:
                    result = paired_test(rows_a, rows_b, metric)
                tests.append({"model": model, "a": objective, "b": BASELINE_OBJECTIVE, "metric": metric, **result})
    return tests


# ----------------------------------------------------------------------------- report
def _p(value: float, n_resamples: int) -> str:
    floor = 1 / (n_resamples + 1)
    if value <= floor:
        return f"≤ {value:.1g}"
    return f"{value:.2g}" if value < 0.01 else f"{value:.3f}"


def _with_interval(value: float | None, interval: list[float] | None) -> str:
    if value is None:
        return "—"
    return f"{value:.4f}" + (f" [{interval[0]:.4f}, {interval[1]:.4f}]" if interval else "")


def render_markdown(results: dict[str, Any]) -> str:
    rows, summary = results["rows"], results["summary"]
    lines = [
        f"# {results['title']}",
        "",
        f"Last updated by `{results['command']}` on {results['generated']}; `python benchmarks/reward.py` reruns every run "
        "(rows are merged by model, objective and seed, so subsets can be run one at a time).",
        f"Machine: {results['machine']}.",
        "",
        f"Objectives: `cross-entropy` is the model's config as it is; `sqn` adds `--reward \"{REWARD}\"` (SQN, Xin et al. 2020: a "
        "Q-learning head on the shared encoder, normalized (a unit-length state, a dot product scaled by 1/sqrt(width)) and "
        "trained with a Huber TD loss of weight 1 and discount 0.5 next to the cross-entropy; `sqn-w0.1` is the same with "
        "`--reward_weight 0.1`; `reward-weighted` adds `--reward_objective reward-weighted` instead: no Q head, each "
        "position's cross-entropy weighted by its target's reward; "
        "recommendations come from the next-item head). Protocol: leave-one-out by timestamp, full ranking with the history "
        "masked, pessimistic ties, test metrics of the best validation epoch (NDCG@10). `liked`: the test targets the user "
        f"rated >= {LIKED_MIN_RATING:g}; `disliked in top 10`: HR@10 over the targets rated <= {DISLIKED_MAX_RATING:g} (lower is "
        "better). Cells: mean ± half-width of the 95% Student-t interval across seeds.",
        "",
    ]
    if any(r.get("quick") for r in rows):
        lines += ["**Quick rows (a few optimizer steps, a subset of users): they check the wiring and say nothing about quality.**", ""]
    lines += [
        "| model | objective | seeds | " + " | ".join(label for _, _, label in METRICS) + " | train s |",
        "|---|---|---|" + "---|" * (len(METRICS) + 1),
    ]
    for entry in summary["groups"].values():
        cells = [mean_cell(entry.get(key)) for key, _, _ in METRICS]
        lines.append(
            f"| {entry['model']} | {entry['objective']} | {entry['n_seeds']} ({', '.join(map(str, entry['seeds']))}) | "
            f"{' | '.join(cells)} | {mean_cell(entry.get('train_seconds'), 0)} |"
        )
    lines.append("")
    lines += render_paired_tests(results.get("paired_tests", []))
    if summary["missing"]:
        lines += ["## Missing runs", ""]
        lines += [f"- `{m['model']}` / `{m['objective']}`: seeds {', '.join(map(str, m['seeds']))} not run yet" for m in summary["missing"]]
        lines += ["", "Run them with `python benchmarks/reward.py --models MODEL --objectives OBJECTIVE --seeds SEEDS`.", ""]
    lines += [
        "## Runs",
        "",
        "Each run's values with its own bootstrap 95% interval over users (from its metrics.json).",
        "",
        "| model | objective | seed | NDCG@10 | liked HR@10 | disliked in top 10 | liked / disliked users | epochs (best) | train s | run directory |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        intervals = row.get("intervals", {})
        lines.append(
            f"| {row['model']} | {row['objective']} | {row['seed']} | {_with_interval(row['ndcg@10'], intervals.get('ndcg@10'))} | "
            f"{_with_interval(row['liked_hr@10'], intervals.get('liked_hr@10'))} | "
            f"{_with_interval(row['disliked_hr@10'], intervals.get('disliked_hr@10'))} | {row['n_liked']} / {row['n_disliked']} | "
            f"{row.get('epochs_run')} ({row.get('best_epoch')}) | {row.get('train_seconds')} | `{row.get('run_dir')}` |"
        )
    lines += ["", "Commands (one per row):", ""]
    lines += [f"- {r['model']} / {r['objective']} seed {r['seed']}: `{r.get('command')}`" + _provenance(r) for r in rows]
    return "\n".join(lines) + "\n"


def _provenance(row: dict[str, Any]) -> str:
    """How a row was obtained besides its command: reused from a finished run, and re-evaluated with what command."""
    if not row.get("reused"):
        return ""
    reevaluated = row.get("reevaluated")
    if not reevaluated:
        return " (reused)"
    return f" (reused; test ranks and ratings re-evaluated: `{reevaluated['command']}`)"


def render_paired_tests(tests: list[dict[str, Any]]) -> list[str]:
    if not tests:
        return []
    lines = [
        "## Paired tests over users: the reward-aware objective − cross-entropy",
        "",
        "Per model, the per-user metric with the reward-aware objective minus without it, user by user (matched by user "
        "id), seed s against seed s, pooled over the seeds both have; a paired bootstrap resamples users, each with its "
        f"pairs of every pooled seed ({PAIRED_RESAMPLES:,} resamples, seed {PAIRED_SEED}): its 95% percentile interval of "
        "the mean difference and a two-sided p-value. "
        + " ".join(f"`{name}`: {description}." for name, (_, _, description) in PAIRED_METRICS.items()),
        "",
        "| model | objective | metric | seeds pooled | users | pairs | cross-entropy | with the objective | difference [95% bootstrap] | bootstrap p |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for t in tests:
        if not t["computed"]:
            lines.append(f"| {t['model']} | {t['a']} | {t['metric']} | — | — | — | — | — | not computed: {t['reason']} | — |")
            continue
        low, high = t["bootstrap"]["ci95"]
        lines.append(
            f"| {t['model']} | {t['a']} | {t['metric']} | {len(t['seeds'])} ({', '.join(map(str, t['seeds']))}) | {t['n_users']} | {t['n_pairs']} | "
            f"{t['mean_b']:.4f} | {t['mean_a']:.4f} | {t['mean_difference']:+.4f} [{low:+.4f}, {high:+.4f}] | "
            f"{_p(t['bootstrap']['p_value'], t['bootstrap']['n_resamples'])} |"
        )
    return lines + [""]


def assemble(rows: list[dict[str, Any]], seeds: list[int], quick: bool, argv: list[str] | None) -> dict[str, Any]:
    """The results file: the rows, their summary and paired tests, and how and where they were made."""
    expected = seeds if quick else sorted(set(DEFAULT_SEEDS) | {r["seed"] for r in rows})
    return {
        "title": "MovieLens-100K: the reward-aware objective (SQN)" + (" (quick wiring check)" if quick else ""),
        "command": command_line("reward.py", argv),
        "generated": utc_now(),
        "machine": machine_summary(),
        "reward": REWARD,
        "models": MODELS,
        "objectives": OBJECTIVES,
        "expected_seeds": expected,
        "rows": rows,
        "summary": summarise(rows, expected),
        "paired_tests": paired_tests(rows),
    }


def write_report(results_dir: Path, name: str, results: dict[str, Any]) -> None:
    """``<name>.json`` (one line per list of plain values: a row's per-user ranks stay one line) and ``<name>.md``."""
    from hf_seqrec.io_utils import write_text_atomic

    results_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(results_dir / f"{name}.json", json_text(results) + "\n")
    write_text_atomic(results_dir / f"{name}.md", render_markdown(results))


# ----------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of {', '.join(MODELS)}")
    parser.add_argument("--seeds", default=",".join(map(str, DEFAULT_SEEDS)), help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--objectives", default=",".join(OBJECTIVES), help=f"comma-separated subset of {', '.join(OBJECTIVES)}")
    parser.add_argument("--runs_dir", default="runs/reward", help="where the run directories go")
    parser.add_argument("--results_dir", default=str(REPO / "benchmarks" / "results"))
    parser.add_argument("--name", help="results file stem (default reward, or reward-quick with --quick)")
    parser.add_argument("--quick", action="store_true", help=f"a few steps per run ({QUICK}); rows are marked quick")
    parser.add_argument("--reuse_finished", action="store_true",
                        help="take a run's row from its finished run directory when its configuration matches the run's command")
    parser.add_argument(
        "--cross_entropy_runs_dir",
        help="take each cross-entropy row from <dir>/<model>-seed<seed> (e.g. runs/quality, the quality benchmark's runs) when "
             "its configuration matches; a run without target ratings is re-evaluated into <runs_dir>/reevaluated",
    )
    parser.add_argument("--report_only", action="store_true", help="rebuild the report from the JSON without running anything")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise SystemExit(f"unknown model(s) {unknown}; choose from {', '.join(MODELS)}")
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    objectives = [o.strip() for o in args.objectives.split(",") if o.strip()]
    if unknown := [o for o in objectives if o not in OBJECTIVES]:
        raise SystemExit(f"unknown objective(s) {unknown}; choose from {', '.join(OBJECTIVES)}")
    name = args.name or ("reward-quick" if args.quick else "reward")
    results_dir = Path(args.results_dir)
    runs_dir = repo_path(args.runs_dir)
    rows = load_results(results_dir / f"{name}.json").get("rows", [])
    for model in [] if args.report_only else models:
        for objective in objectives:
            for seed in seeds:
                row = row_for(model, objective, seed, args, runs_dir)
                print(f"[reward] {run_name(model, objective, seed)}: NDCG@10 {_with_interval(row['ndcg@10'], None)}, liked HR@10 "
                      f"{_with_interval(row['liked_hr@10'], None)}, disliked in top 10 {_with_interval(row['disliked_hr@10'], None)}", flush=True)
                rows = merge_rows(rows, [row])
                write_report(results_dir, name, assemble(rows, seeds, args.quick, argv))  # a benchmark that dies keeps what it finished
    write_report(results_dir, name, assemble(rows, seeds, args.quick, argv))
    print(f"[reward] wrote {results_dir / name}.json and .md ({len(rows)} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
