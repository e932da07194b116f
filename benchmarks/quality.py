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
validation epoch), training seconds and the run's peak RSS. Rows are merged into
``<results_dir>/<name>.json`` (a re-run of a model and seed replaces its row), so long runs can be done
model by model, and then the table ``<name>.md`` (mean and 95% t-interval across seeds, the
smollm2-lora / sasrec ratio of test NDCG@10, and which rows are still missing) and the bar chart
``<name>.png`` are rebuilt from every row in the file.

``--quick`` rows (a few optimizer steps, a user subset) go to ``<name>-quick.*`` unless ``--name`` says
otherwise, so they never mix with real numbers.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
FINETUNE = REPO / "scripts" / "finetune.py"

# model name -> (config file, fixed overrides). The LM runs with its default CPU config.
MODELS: dict[str, tuple[str | None, dict[str, Any]]] = {
    "popularity": (None, {"backbone": "popularity"}),
    "lstm": ("configs/lstm.yaml", {}),
    "gru4rec": ("configs/gru4rec.yaml", {}),
    "sasrec": ("configs/sasrec.yaml", {}),
    "smollm2-lora": ("configs/cpu.yaml", {}),
}
LM_MODEL = "smollm2-lora"
REFERENCE_MODEL = "sasrec"
DEFAULT_SEEDS = (0, 1, 2)  # the protocol: every model, these 3 seeds
METRICS = ("ndcg@10", "hr@10", "mrr", "ndcg@20", "hr@20")
ROW_KEYS = ("model", "seed", *METRICS, "train_seconds", "peak_rss_mb")
# --quick: enough to run every code path (train, validate, save, reload, test) in seconds per model.
QUICK = {"num_epochs": 1, "max_steps": 3, "eval_max_users": 100, "bootstrap_samples": 50}
QUICK_PER_MODEL = {"smollm2-lora": {"max_len": 20, "batch_size": 4}, "sasrec": {"max_len": 50}}


# ----------------------------------------------------------------------------- running one model
def finetune_command(model: str, seed: int, run_dir: Path, quick: bool, overrides: dict[str, str]) -> list[str]:
    config_file, fixed = MODELS[model]
    options: dict[str, Any] = {**fixed, "seed": seed, "output_dir": str(run_dir), "report_to": "none"}
    if quick:
        options.update(QUICK)
        options.update(QUICK_PER_MODEL.get(model, {}))
    options.update(overrides)
    command = [sys.executable, str(FINETUNE)]
    if config_file:
        command += ["--config", str(REPO / config_file)]
    for key, value in options.items():
        command += [f"--{key}", str(value)]
    return command + ["--overwrite_output_dir"]


def run_model(model: str, seed: int, runs_dir: Path, quick: bool, overrides: dict[str, str], log_dir: Path) -> dict[str, Any]:
    run_dir = runs_dir / f"{model}-seed{seed}"
    command = finetune_command(model, seed, run_dir, quick, overrides)
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{model}-seed{seed}.log"
    print(f"[quality] {model} seed {seed}: {shlex.join(command)}", flush=True)
    wall = run_logged(command, log_path, f"{model} seed {seed}")
    row = row_from_run(run_dir, model)
    row.update(command=shlex.join(_relative(command)), wall_seconds=round(wall, 1), quick=quick, overrides=overrides)
    return row


def run_logged(command: list[str], log_path: Path, label: str) -> float:
    """Run a ``scripts/finetune.py`` command from the repository root, its output in ``log_path``.

    Returns the wall seconds; a failed run raises with the tail of its log, so a long benchmark stops
    at the first broken model instead of writing a row without numbers.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    start = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        result = subprocess.run(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise RuntimeError(f"{label} failed (exit {result.returncode}); log {log_path}:\n{tail}")
    return time.perf_counter() - start


def stopped_by(row: dict[str, Any]) -> str:
    """Why a run ended: early stopping (converged on validation), or a cap that may have cut it short."""
    if row.get("epochs_run") in (0, None):
        return "no training"
    if row.get("max_steps"):
        return "max_steps cap"
    if row.get("num_epochs") is not None and row["epochs_run"] >= row["num_epochs"]:
        return "epoch cap (may be under-trained)" if row.get("best_epoch") == row["epochs_run"] else "epoch cap"
    return "early stopping"


def _relative(command: list[str]) -> list[str]:
    """The command as typed from the repository root (no absolute paths of this machine)."""
    out = []
    for part in command:
        path = Path(part)
        if part == sys.executable:
            out.append("python")
        elif path.is_absolute() and REPO in path.parents:
            out.append(str(path.relative_to(REPO)))
        else:
            out.append(part)
    return out


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
        run_dir=_display_path(run_dir),
        machine=machine_summary(),
    )
    row["validation_ndcg@10"] = round(float(metrics["validation"]["ndcg@10"]), 6)
    return row


def _display_path(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(REPO)) if REPO in path.parents else str(path)


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


# ----------------------------------------------------------------------------- machine and protocol
def machine_summary() -> str:
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU, {os.cpu_count()} cores"
    return f"{platform.machine()} {device}; torch {torch.__version__}, {torch.get_num_threads()} threads"


def protocol_description() -> dict[str, Any]:
    sys.path.insert(0, str(REPO))
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
def load_results(path: Path) -> dict[str, Any]:
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    return {"rows": []}


def merge_rows(existing: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """New rows replace old rows of the same (model, seed); order: model order of MODELS, then seed."""
    merged = {(row["model"], row["seed"]): row for row in existing}
    for row in new:
        merged[(row["model"], row["seed"])] = row
    order = {name: index for index, name in enumerate(MODELS)}
    return sorted(merged.values(), key=lambda r: (order.get(r["model"], len(order)), r["model"], r["seed"]))


def t_interval(values: list[float]) -> tuple[float, float | None]:
    """Mean and the half-width of its two-sided 95% Student-t interval (None with fewer than 2 values)."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    from scipy import stats

    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return mean, float(stats.t.ppf(0.975, len(values) - 1)) * sd / math.sqrt(len(values))


def summarise(rows: list[dict[str, Any]], expected_models: list[str], expected_seeds: list[int]) -> dict[str, Any]:
    by_model: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_model.setdefault(row["model"], []).append(row)
    summary: dict[str, Any] = {"models": {}, "missing": []}
    for model, model_rows in by_model.items():
        entry: dict[str, Any] = {"n_seeds": len(model_rows), "seeds": sorted(r["seed"] for r in model_rows)}
        for name in (*METRICS, "train_seconds", "peak_rss_mb"):
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
    if LM_MODEL in models and REFERENCE_MODEL in models:
        lm, ref = models[LM_MODEL]["ndcg@10"]["mean"], models[REFERENCE_MODEL]["ndcg@10"]["mean"]
        summary["ratio_ndcg@10_lm_over_sasrec"] = lm / ref if ref else None
    return summary


def _cell(stat: dict[str, Any] | None, digits: int = 4) -> str:
    if not stat:
        return "—"
    if stat["ci95_half_width"] is None:
        return f"{stat['mean']:.{digits}f}"
    return f"{stat['mean']:.{digits}f} ± {stat['ci95_half_width']:.{digits}f}"


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
        "| model | seeds | NDCG@10 | HR@10 | MRR | NDCG@20 | HR@20 | train s | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for model, entry in summary["models"].items():
        cells = [_cell(entry.get(name)) for name in METRICS]
        lines.append(
            f"| {model} | {entry['n_seeds']} ({', '.join(map(str, entry['seeds']))}) | {' | '.join(cells)} | "
            f"{_cell(entry.get('train_seconds'), 0)} | {_cell(entry.get('peak_rss_mb'), 0)} |"
        )
    if "popularity" in summary["models"]:
        lines.append("")
        lines.append("`popularity` counts the training split; it has no randomness, so its seeds agree exactly.")
    lines.append("")
    ratio = summary.get("ratio_ndcg@10_lm_over_sasrec")
    if ratio is not None:
        lm = summary["models"][LM_MODEL]["ndcg@10"]["mean"]
        ref = summary["models"][REFERENCE_MODEL]["ndcg@10"]["mean"]
        lines.append(
            f"**{LM_MODEL} / {REFERENCE_MODEL}, mean test NDCG@10: {lm:.4f} / {ref:.4f} = {ratio:.2f}** "
            f"({summary['models'][LM_MODEL]['n_seeds']} and {summary['models'][REFERENCE_MODEL]['n_seeds']} seeds)."
        )
    else:
        lines.append(f"**{LM_MODEL} / {REFERENCE_MODEL} ratio of test NDCG@10: not available** (one of them has no rows yet).")
    lines.append("")
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
        if row.get("max_steps"):
            configured = f"{configured}, max_steps {row['max_steps']}"
        lines.append(
            f"| {row['model']} | {row['seed']} | {row['ndcg@10']:.4f} | {row['hr@10']:.4f} | "
            f"{row.get('validation_ndcg@10', float('nan')):.4f} | {row.get('epochs_run')} ({configured}) | {row.get('best_epoch')} | "
            f"{stopped_by(row)} | "
            f"{row.get('train_seconds')} | `{row.get('run_dir')}` |"
        )
    lines += ["", "Commands (one per row):", ""]
    for row in rows:
        note = f" — {row['note']}" if row.get("note") else ""
        lines.append(f"- {row['model']} seed {row['seed']}: `{row.get('command')}`{note}")
    lines.append("")
    return "\n".join(lines)


def render_chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(results["summary"]["models"].items())
    if not models:
        return
    names = [name for name, _ in models]
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, metric in zip(axes, ("ndcg@10", "hr@10")):
        means = [entry[metric]["mean"] for _, entry in models]
        errors = [entry[metric]["ci95_half_width"] or 0.0 for _, entry in models]
        axis.bar(names, means, yerr=errors, capsize=4, color=["#888888" if n == "popularity" else "#4477aa" if n != LM_MODEL else "#cc6677" for n in names])
        axis.set_title(f"test {metric.upper()} (mean, 95% CI over seeds)")
        axis.tick_params(axis="x", rotation=20)
        for index, (_, entry) in enumerate(models):
            axis.annotate(f"n={entry['n_seeds']}", (index, 0), ha="center", va="bottom", fontsize=8, color="white")
    figure.suptitle(results["title"])
    figure.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(tmp, dpi=120)
    plt.close(figure)
    os.replace(tmp, path)


def write_results(results_dir: Path, name: str, results: dict[str, Any]) -> None:
    results_dir.mkdir(parents=True, exist_ok=True)
    for suffix, text in ((".json", json.dumps(results, indent=2) + "\n"), (".md", render_markdown(results))):
        path = results_dir / f"{name}{suffix}"
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
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
            for seed in seeds:
                row = run_model(model, seed, runs_dir, args.quick, overrides, runs_dir / "logs")
                if args.note:
                    row["note"] = args.note
                print(f"[quality] {model} seed {seed}: test NDCG@10 {row['ndcg@10']:.4f} HR@10 {row['hr@10']:.4f} "
                      f"({row['epochs_run']} epochs, best {row['best_epoch']}, {row['train_seconds']} s)", flush=True)
                new_rows.append(row)
                # Write after every run: a long benchmark that dies keeps what it finished.
                results = _assemble(results, merge_rows(results.get("rows", []), [row]), args, seeds)
                write_results(results_dir, name, results)
    results = _assemble(results, merge_rows(results.get("rows", []), new_rows), args, seeds)
    write_results(results_dir, name, results)
    print(f"[quality] wrote {results_dir / name}.json, .md and .png ({len(results['rows'])} rows)")
    return 0


def _assemble(previous: dict[str, Any], rows: list[dict[str, Any]], args: argparse.Namespace, seeds: list[int]) -> dict[str, Any]:
    # The protocol asks for DEFAULT_SEEDS of every model; rows with other seeds are kept and shown too.
    expected_seeds = seeds if args.quick else sorted(set(DEFAULT_SEEDS) | {row["seed"] for row in rows})
    results = {
        "title": "MovieLens-100K: next-item recommendation quality" + (" (quick wiring check)" if args.quick else ""),
        "command": shlex.join(["python", "benchmarks/quality.py", *sys.argv[1:]]),
        "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_summary(),
        "protocol": protocol_description(),
        "expected_models": list(MODELS),
        "expected_seeds": expected_seeds,
        "rows": rows,
    }
    results["summary"] = summarise(rows, results["expected_models"], expected_seeds)
    return results


if __name__ == "__main__":
    sys.exit(main())
