#!/usr/bin/env python
"""What each lever does to the LM on MovieLens-100K: studies of one change at a time against a pinned base.

    python benchmarks/ablations.py --study convergence                 # every variant of one study
    python benchmarks/ablations.py --study depth --variants layers-4,layers-12
    python benchmarks/ablations.py --report_only

Five studies, each with its own base, pinned option by option so that a row reproduces whatever
``configs/cpu.yaml`` later becomes:

- ``one-epoch``: one epoch of the CPU default of its time (all 30 layers, batch 16, no score offset).
- ``depth``: how many of SmolLM2's 30 decoder layers to keep (``--backbone_layers``), each for 3 epochs
  of the previous CPU default (constant learning rate, batch 8, score offset), seed 0.
- ``item-text``: how the LM reads item text: contextual encodings of the texts for the item table, and
  ``--input_mode id+text`` (item vectors followed by text tokens) at the base's training time.
- ``convergence``: the levers for training the 8-layer LM to convergence (schedule, regularisation,
  LoRA placement and rank, an untied output table, context length), one change each against a base of
  8 layers with a warm-up and cosine decay, seed 0 unless a variant says otherwise.

- ``tail``: the levers aimed at the long tail, where the LM loses most to SASRec: training windows cut at new
  places every epoch, cosine scores, a narrow item table, and distillation from a SASRec run (trained first),
  against the convergence study's base, seed 0. Each row also breaks test NDCG@10 down by how often the test
  target occurs in training, and the report ends with how well validation ranks the runs the way test does.

One seed of one run: with 943 test users the standard error of NDCG@10 is about 0.007, so differences
under ~0.015 are not evidence. Reported: validation and test NDCG@10 / HR@10 of the best epoch, the best
epoch and the training seconds, with the change relative to the study's base.

Results: ``benchmarks/results/ablations.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark_utils import (
    POPULARITY_BUCKETS, REPO, command_line, display_path, finetune_command, load_results, machine_summary,
    ndcg_by_target_popularity, relative_command, run_logged, spearman, utc_now, write_results,
)
from quality import LM_30_LAYERS

ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]
ATTENTION_MLP = ATTENTION + ["gate_proj", "up_proj", "down_proj"]


@dataclass(frozen=True)
class Study:
    """A base (finetune options on top of configs/cpu.yaml) and variants that each change a few of them."""

    title: str
    base_description: str
    base: dict[str, Any]
    variants: dict[str, tuple[str, dict[str, Any]]]  # name -> (what it changes, options)


# The previous CPU default (all 30 layers, 3 epochs, constant rate, batch 8, score offset), minus its depth.
PREVIOUS_DEFAULT = {key: value for key, value in LM_30_LAYERS.items() if key != "backbone_layers"}
# The 8-layer LM trained towards convergence: warm-up, cosine decay over 6 epochs, early stopping.
CONVERGENCE_BASE = {
    **PREVIOUS_DEFAULT,
    "backbone_layers": 8,
    "num_epochs": 6,
    "lr_scheduler": "cosine",
    "warmup_steps": 100,
}

# The teacher of the distillation variant: SASRec (configs/sasrec.yaml), seed 0 like the study, trained first.
SASREC_TEACHER = "runs/teachers/sasrec-seed0"
SASREC_TEACHER_OPTIONS = {"seed": 0, "report_to": "none", "output_dir": SASREC_TEACHER}

STUDIES: dict[str, Study] = {
    "one-epoch": Study(
        title="One epoch of the 30-layer default of its time",
        base_description="`--num_epochs 1 --seed 0 --batch_size 16 --no-item_score_bias` (all 30 layers, bf16 autocast, "
        "max_len 50, length-grouped batches): the CPU default before it took up batches of 8 and the score offset",
        base={**PREVIOUS_DEFAULT, "backbone_layers": 30, "num_epochs": 1, "seed": 0, "report_to": "none", "batch_size": 16, "item_score_bias": False},
        variants={
            "base": ("item table from text, LoRA r=8 on q/k/v/o, lr 1e-3, clipping at 1.0, batch 16, no score offset", {}),
            "random-batches": ("random batches instead of length-grouped ones (--no-group_by_length)", {"group_by_length": False}),
            "random-item-table": ("item table initialised at random (N(0, 0.02)) instead of from the item texts", {"item_text_init": False}),
            "no-grad-clipping": ("no gradient clipping (max_grad_norm 0 instead of 1.0)", {"max_grad_norm": 0}),
            "lora-attention-mlp": ("LoRA on attention and MLP (q/k/v/o + gate/up/down) instead of attention only", {"lora_target_modules": ATTENTION_MLP}),
            "item-table-lr-3e-3": ("item table learning rate 3e-3 (LoRA stays at 1e-3)", {"item_table_learning_rate": 0.003}),
            "learning-rate-3e-3": ("learning rate 3e-3 for LoRA and the item table (instead of 1e-3)", {"learning_rate": 0.003}),
            "batch-size-8": ("batches of 8 windows instead of 16: twice the optimizer steps per epoch (302 instead of 151)", {"batch_size": 8}),
            "item-score-bias": (
                "a learned per-item score offset, started at the item's log training frequency (--item_score_bias)",
                {"item_score_bias": True},
            ),
        },
    ),
    "depth": Study(
        title="Depth: the first K of SmolLM2's 30 decoder layers",
        base_description="the previous CPU default pinned (3 epochs, constant lr 1e-3, batch 8, LoRA r=8 on q/k/v/o, score "
        "offset, bf16 autocast), seed 0; `layers-8` is the base",
        base={**PREVIOUS_DEFAULT, "seed": 0, "report_to": "none", "backbone_layers": 8},
        variants={
            "layers-8": ("the first 8 of 30 decoder layers (the base)", {}),
            "layers-4": ("the first 4 decoder layers", {"backbone_layers": 4}),
            "layers-12": ("the first 12 decoder layers", {"backbone_layers": 12}),
            "layers-30": ("all 30 decoder layers (the previous CPU default)", {"backbone_layers": 30}),
        },
    ),
    "convergence": Study(
        title="Convergence of the 8-layer LM",
        base_description="8 layers, 6 epochs, 100 warm-up steps then cosine decay, lr 1e-3, batch 8, LoRA r=8 on q/k/v/o, "
        "score offset, early stopping after 3 epochs without a better validation NDCG@10, seed 0",
        base={**CONVERGENCE_BASE, "seed": 0, "report_to": "none"},
        variants={
            "base": ("the study's base", {}),
            "constant-lr": ("constant learning rate, no warm-up (instead of warm-up + cosine)", {"lr_scheduler": "constant_with_warmup", "warmup_steps": 0}),
            "max-len-200": ("read the last 200 items instead of 50 (as SASRec does); training windows of 200", {"max_len": 200}),
            "untied-output": ("a separate output item table, initialised from text like the input one (--no-tie_item_table)", {"tie_item_table": False}),
            "dropout": ("item-embedding dropout 0.2 and weight decay 0.01 on LoRA", {"item_embedding_dropout": 0.2, "weight_decay": 0.01}),
            "lora-dropout": ("LoRA dropout 0.1", {"lora_dropout": 0.1}),
            "lora-attention-mlp": ("LoRA on attention and MLP (q/k/v/o + gate/up/down)", {"lora_target_modules": ATTENTION_MLP}),
            "lora-r16": ("LoRA rank 16, alpha 32 (instead of 8, 16)", {"lora_r": 16, "lora_alpha": 32}),
            "epochs-10": ("10 epochs of cosine decay instead of 6", {"num_epochs": 10}),
        },
    ),
    "item-text": Study(
        title="How the LM reads item text",
        base_description="the convergence study's base (8 layers, 6 epochs, warm-up and cosine decay, item table from the mean "
        "input token embedding of each text), seed 0",
        base={**CONVERGENCE_BASE, "seed": 0, "report_to": "none"},
        variants={
            "base": ("the study's base (the convergence study's base run)", {}),
            "contextual-encoding": (
                "item table started from contextual encodings: all 30 pretrained layers read each text, final states mean-pooled",
                {"item_text_encoder": "mean-pooled", "item_text_encoder_layers": 30},
            ),
            "id-text": (
                "`--input_mode id+text`: the 5 most recent items each followed by the first 16 tokens of their text, at the base's "
                "training time (3 epochs, cosine decay over 900 steps: a step costs 2.4x an id step)",
                {"input_mode": "id+text", "text_items_in_context": 5, "item_text_max_tokens": 16, "num_epochs": 3, "max_steps": 900},
            ),
        },
    ),
    "tail": Study(
        title="The long tail: training windows, scoring and the item table",
        base_description="the convergence study's base (8 layers, 6 epochs, warm-up and cosine decay, fixed training windows, "
        "dot-product scores with the popularity offset, a 576-wide item table from text), seed 0",
        base={**CONVERGENCE_BASE, "seed": 0, "report_to": "none"},
        variants={
            "base": ("the study's base (fixed training windows)", {}),
            "varied-windows": (
                "training windows cut at a new random offset per user and epoch (--vary_windows)", {"vary_windows": True},
            ),
            "varied-cosine": (
                "varied windows + cosine scores with a learned temperature (--item_scoring cosine)",
                {"vary_windows": True, "item_scoring": "cosine"},
            ),
            "varied-distill": (
                "varied windows + distillation from a SASRec run of the same seed (configs/sasrec.yaml, trained first into "
                f"{SASREC_TEACHER}; KL to its full-catalogue softmax at every trained position, weight 0.5, temperature 1)",
                {"vary_windows": True, "teacher": SASREC_TEACHER, "distill_weight": 0.5, "distill_temperature": 1.0},
            ),
            "varied-narrow-64": (
                "varied windows + a 64-wide item table with learned maps to and from the backbone, from the texts' principal "
                "components (--item_embedding_dim 64)",
                {"vary_windows": True, "item_embedding_dim": 64},
            ),
            "varied-narrow-64-distill": (
                "varied windows + the 64-wide item table + distillation from the SASRec run of the same seed (weight 0.5, "
                "temperature 1, as in varied-distill)",
                {"vary_windows": True, "item_embedding_dim": 64, "teacher": SASREC_TEACHER, "distill_weight": 0.5,
                 "distill_temperature": 1.0},
            ),
            "varied-narrow-32": (
                "varied windows + a 32-wide item table (--item_embedding_dim 32)",
                {"vary_windows": True, "item_embedding_dim": 32},
            ),
        },
    ),
}


def variant_options(study: str, variant: str, run_dir: Path) -> dict[str, Any]:
    return {**STUDIES[study].base, **STUDIES[study].variants[variant][1], "output_dir": str(run_dir)}


def variant_command(study: str, variant: str, run_dir: Path) -> list[str]:
    return finetune_command("configs/cpu.yaml", variant_options(study, variant, run_dir))


def finished_run_matches(study: str, variant: str, run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a finished run whose recorded config has every option this variant sets."""
    import yaml

    if not (run_dir / "metrics.json").is_file() or not (run_dir / "training_config.yaml").is_file():
        return False
    recorded = yaml.safe_load((run_dir / "training_config.yaml").read_text(encoding="utf-8"))
    wanted = {k: v for k, v in variant_options(study, variant, run_dir).items() if k not in ("output_dir", "report_to")}
    mismatched = {k: (v, recorded.get(k)) for k, v in wanted.items() if recorded.get(k) != v}
    if mismatched:
        print(f"[ablations] {run_dir}: not reused, its config differs: {mismatched}", flush=True)
    return not mismatched


def run_variant(study: str, variant: str, runs_dir: Path, reuse_finished: bool) -> dict[str, Any]:
    run_dir = runs_dir / variant if study == "one-epoch" else runs_dir / study / variant
    command = variant_command(study, variant, run_dir)
    wall = None
    teacher = variant_options(study, variant, run_dir).get("teacher")
    if teacher and not (REPO / teacher / "metrics.json").is_file():
        # The teacher's training time is part of what the variant costs; it is logged next to the variant's.
        teacher_command = finetune_command("configs/sasrec.yaml", SASREC_TEACHER_OPTIONS)
        print(f"[ablations] {study}/{variant}: training its teacher first: {shlex.join(teacher_command)}", flush=True)
        run_logged(teacher_command, runs_dir / "logs" / f"{study}-{variant}-teacher.log", f"{variant} teacher")
    if reuse_finished and finished_run_matches(study, variant, run_dir):
        print(f"[ablations] {study}/{variant}: reusing the finished run in {run_dir}", flush=True)
    else:
        print(f"[ablations] {study}/{variant}: {shlex.join(command)}", flush=True)
        wall = round(run_logged(command, runs_dir / "logs" / f"{study}-{variant}.log", variant), 1)
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    return {
        "variant": variant,
        "change": STUDIES[study].variants[variant][0],
        "validation_ndcg@10": metrics["validation"]["ndcg@10"],
        "validation_hr@10": metrics["validation"]["hr@10"],
        "test_ndcg@10": metrics["test"]["ndcg@10"],
        "test_hr@10": metrics["test"]["hr@10"],
        "test_ndcg@10_interval": metrics["test"]["intervals"]["ndcg@10"],
        "best_epoch": metrics["training"]["best_epoch"],
        "epochs_run": metrics["training"]["epochs_run"],
        "validation_by_epoch": [round(e["validation_ndcg@10"], 4) for e in metrics["training"]["history"]],
        "train_seconds": metrics["training"]["train_seconds"],
        "test_ndcg@10_by_target_popularity": popularity_breakdown(run_dir),
        "run_dir": display_path(run_dir),
        "command": shlex.join(relative_command(command)),
        "wall_seconds": wall,
        "machine": machine_summary(),
    }


def popularity_breakdown(run_dir: Path) -> dict[str, dict[str, float]] | None:
    """Test NDCG@10 by test-target popularity from a run's ``test_ranks.json`` (None if the run has none)."""
    ranks_path = run_dir / "test_ranks.json"
    if not ranks_path.is_file():
        return None
    saved = json.loads(ranks_path.read_text(encoding="utf-8"))
    return ndcg_by_target_popularity(saved["user_ids"], saved["ranks"])


def _other_benchmarks() -> list[str]:
    """One line per lever measured by another benchmark, with its numbers read from that benchmark's files."""
    results = REPO / "benchmarks" / "results"
    lines = []
    coldstart = results / "coldstart.json"
    if coldstart.is_file():
        models = json.loads(coldstart.read_text(encoding="utf-8"))["summary"]["models"]
        if {"smollm2-lora", "smollm2-lora-text"} <= set(models):
            plain, text = models["smollm2-lora"], models["smollm2-lora-text"]
            lines.append(
                f"- **Text tower** (`--item_text_tower`, ID dropout 0.5; `coldstart.md`, cold-start protocol and schedule, "
                f"{text['n_seeds']} seeds): warm-target NDCG@10 {plain['warm_ndcg@10']['mean']:.4f} → {text['warm_ndcg@10']['mean']:.4f}, "
                f"cold-target HR@10 {plain['cold_hr@10']['mean']:.4f} → {text['cold_hr@10']['mean']:.4f}, all targets NDCG@10 "
                f"{plain['ndcg@10']['mean']:.4f} → {text['ndcg@10']['mean']:.4f}."
            )
    encoding = results / "text-encoding.json"
    if encoding.is_file():
        rows = {row["encoder"]: row for row in json.loads(encoding.read_text(encoding="utf-8"))["rows"]}
        parts = [f"{name} {row['encode_seconds']:.1f} s, probe NDCG@10 {row['ndcg@10']:.4f}" for name, row in rows.items()]
        lines.append(f"- **Item text encoders** (`text-encoding.md`: encoding the 1,682 texts on this CPU; training-free probe): {'; '.join(parts)}.")
    batching = results / "batching-cpu.json"
    if batching.is_file():
        data = json.loads(batching.read_text(encoding="utf-8"))
        random_row, grouped_row = data["rows"]
        lines.append(
            f"- **Length-grouped batches** (`--group_by_length`; `batching-cpu.md`): padding {random_row['padding_fraction']:.1%} → "
            f"{grouped_row['padding_fraction']:.1%} of computed positions, epoch time {data['epoch_speedup']:.2f}x shorter."
        )
    lines.append(
        "- **bf16 autocast vs fp32** (quoted from `benchmarks/results/throughput-notes.md`, which is written by hand; not "
        "computed by this script; seed 42, 2 epochs, random batches): test NDCG@10 0.0539 (fp32) → 0.0641 (bf16), "
        "HR@10 0.1071 → 0.1304; training 1064 s → 773 s."
    )
    return lines


def render_study(name: str, rows: list[dict[str, Any]], notes: list[str]) -> list[str]:
    """One study's table: each variant against the study's base."""
    study = STUDIES[name]
    base_name = "base" if "base" in study.variants else next(iter(study.variants))
    base = next((r for r in rows if r["variant"] == base_name), None)
    lines = [
        f"## {study.title} (`--study {name}`)",
        "",
        f"Base: {study.base_description}. Δ is relative to `{base_name}`.",
        "",
        "| variant | change | validation NDCG@10 | Δ | test NDCG@10 [95% interval] | Δ | test HR@10 | best / run epochs | train s |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        def delta(key: str) -> str:
            if base is None or row is base:
                return ""
            return f"{row[key] / base[key] - 1:+.1%}" if base[key] else "n/a"

        low, high = row["test_ndcg@10_interval"]
        epochs = f"{row['best_epoch']} / {row['epochs_run']}" if "best_epoch" in row else "1 / 1"
        lines.append(
            f"| {row['variant']} | {row['change']} | {row['validation_ndcg@10']:.4f} | {delta('validation_ndcg@10')} | "
            f"{row['test_ndcg@10']:.4f} [{low:.4f}, {high:.4f}] | {delta('test_ndcg@10')} | {row['test_hr@10']:.4f} | "
            f"{epochs} | {row['train_seconds']:.0f} |"
        )
    by_epoch = [r for r in rows if r.get("validation_by_epoch")]
    if by_epoch:
        lines += ["", "Validation NDCG@10 by epoch: " + "; ".join(
            f"{r['variant']} {' / '.join(f'{v:.4f}' for v in r['validation_by_epoch'])}" for r in by_epoch
        ) + "."]
    broken_down = [r for r in rows if r.get("test_ndcg@10_by_target_popularity")]
    if broken_down:
        names = [name for name, _, _ in POPULARITY_BUCKETS]
        first = broken_down[0]["test_ndcg@10_by_target_popularity"]
        lines += [
            "",
            "Test NDCG@10 by how often the test target occurs in training (users per bucket: "
            + ", ".join(f"{name}: {first[name]['n_users']}" for name in names) + "):",
            "",
            "| variant | " + " | ".join(names) + " |",
            "|---|" + "---:|" * len(names),
        ]
        for row in broken_down:
            cells = row["test_ndcg@10_by_target_popularity"]
            lines.append(f"| {row['variant']} | " + " | ".join(f"{cells[name]['ndcg@10']:.4f}" for name in names) + " |")
    missing = [v for v in study.variants if v not in {r["variant"] for r in rows}]
    if missing:
        lines += ["", f"Not run yet: {', '.join(missing)} (`python benchmarks/ablations.py --study {name} --variants {','.join(missing)}`)."]
    if notes:
        lines += ["", "Notes (written by hand in ablations.json, not computed by this script):", "", *(f"- {note}" for note in notes)]
    lines += ["", "Commands:", ""] + [f"- {r['variant']}: `{r['command']}`" for r in rows]
    return lines + [""]


def render_markdown(results: dict[str, Any]) -> str:
    lines = [
        "# Ablations: what each lever does to the LM (MovieLens-100K)",
        "",
        f"Last updated by `{results['command']}` on {results['generated']}. Machine: {results['machine']}.",
        "",
        "SmolLM2-135M with LoRA, bf16 autocast, length-grouped batches; one change at a time against each study's base, "
        "every option pinned in the command. Metrics of the best validation epoch, full-catalogue ranking over 943 users; "
        "the test 95% interval is the bootstrap interval over users. One seed: the standard error of NDCG@10 is about "
        "0.007, so differences under ~0.015 (or ~15%) are not evidence.",
        "",
    ]
    for name in STUDIES:
        study_results = results["studies"].get(name)
        if study_results and study_results["rows"]:
            lines += render_study(name, study_results["rows"], study_results.get("notes", []))
    lines += render_selection_signal(results["studies"])
    lines += ["## Levers measured by other benchmarks", "", *_other_benchmarks()]
    return "\n".join(lines) + "\n"


def render_selection_signal(studies: dict[str, dict[str, Any]]) -> list[str]:
    """How well validation NDCG@10 ranks runs the way test NDCG@10 does (Spearman), within each study and over all.

    Choices are made on validation alone; this says how far that choice can be trusted. Only runs of the same
    schedule family are comparable, so each study is reported on its own, then all rows together.
    """
    lines = ["## Does validation rank the runs as test does?", "",
             "Spearman rank correlation of validation and test NDCG@10 across runs (1 = the same order).", ""]
    pooled_validation, pooled_test = [], []
    for name, study_results in studies.items():
        rows = study_results.get("rows", [])
        validation = [r["validation_ndcg@10"] for r in rows]
        test = [r["test_ndcg@10"] for r in rows]
        pooled_validation += validation
        pooled_test += test
        if len(rows) >= 3:
            lines.append(f"- `{name}` ({len(rows)} runs): {spearman(validation, test):+.2f}")
    if len(pooled_test) >= 3:
        lines.append(f"- every run above ({len(pooled_test)} runs): {spearman(pooled_validation, pooled_test):+.2f}")
    return lines + [""]


def load_studies(path: Path) -> dict[str, dict[str, Any]]:
    """Rows per study from ablations.json (files from before the studies hold one-epoch rows at the top level)."""
    data = load_results(path)
    if "studies" in data:
        return data["studies"]
    return {"one-epoch": {"rows": data.get("rows", [])}} if data.get("rows") else {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", default="convergence", choices=list(STUDIES))
    parser.add_argument("--variants", default=None, help="comma-separated subset of the study's variants (default: all)")
    parser.add_argument("--runs_dir", default="runs/ablations")
    parser.add_argument("--results_dir", default=str(REPO / "benchmarks" / "results"))
    parser.add_argument("--reuse_finished", action="store_true", help="take a variant's row from its finished run directory when its config matches")
    parser.add_argument("--report_only", action="store_true")
    args = parser.parse_args(argv)
    study = STUDIES[args.study]
    variants = [v.strip() for v in (args.variants or ",".join(study.variants)).split(",") if v.strip()]
    unknown = [v for v in variants if v not in study.variants]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown} of study {args.study!r}; choose from {', '.join(study.variants)}")
    runs_dir = Path(args.runs_dir) if Path(args.runs_dir).is_absolute() else REPO / args.runs_dir
    results_dir = Path(args.results_dir)
    studies = load_studies(results_dir / "ablations.json")
    current = studies.setdefault(args.study, {"rows": []})
    rows = {r["variant"]: r for r in current["rows"]}
    for variant in [] if args.report_only else variants:
        rows[variant] = run_variant(args.study, variant, runs_dir, args.reuse_finished)
        current["rows"] = [rows[name] for name in study.variants if name in rows]
        _write(results_dir, studies, argv)
    current["rows"] = [rows[name] for name in study.variants if name in rows]
    for name, study_results in studies.items():
        for row in study_results["rows"]:
            row["command"] = current_command(name, row)
            if not row.get("test_ndcg@10_by_target_popularity") and row.get("run_dir"):
                run_dir = Path(row["run_dir"]) if Path(row["run_dir"]).is_absolute() else REPO / row["run_dir"]
                row["test_ndcg@10_by_target_popularity"] = popularity_breakdown(run_dir)
    _write(results_dir, studies, argv)
    return 0


def current_command(study: str, row: dict[str, Any]) -> str:
    """The command this script runs for the row's variant and run directory, every option written out.

    A row keeps the command of today's script rather than the one it was run with: older rows recorded only
    the options their base changed on top of configs/cpu.yaml, which no longer reproduce them once the
    config file changes. Every option is pinned, so this command gives the options the run used (a run from
    before ``--backbone_layers`` kept all 30 layers, which is what ``--backbone_layers 30`` builds).
    """
    run_dir = Path(row["run_dir"]) if Path(row["run_dir"]).is_absolute() else REPO / row["run_dir"]
    return shlex.join(relative_command(variant_command(study, row["variant"], run_dir)))


def _write(results_dir: Path, studies: dict[str, dict[str, Any]], argv: list[str] | None) -> None:
    results = {
        "title": "LM ablations on MovieLens-100K",
        "command": command_line("ablations.py", argv),
        "generated": utc_now(),
        "machine": machine_summary(),
        "studies": {name: studies[name] for name in STUDIES if name in studies},
        "study_bases": {name: {"config": "configs/cpu.yaml", **study.base} for name, study in STUDIES.items()},
    }
    write_results(results_dir / "ablations", results, render_markdown(results))
    print(f"[ablations] wrote {results_dir / 'ablations.md'}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
