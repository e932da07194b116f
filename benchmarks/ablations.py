#!/usr/bin/env python
"""What each lever does to the LM on MovieLens-100K: one epoch of the CPU default, one change at a time.

    python benchmarks/ablations.py                     # every variant (about 7 minutes each on 2 CPU cores)
    python benchmarks/ablations.py --variants base,random-item-table
    python benchmarks/ablations.py --report_only

Each variant is ``scripts/finetune.py --config configs/cpu.yaml --num_epochs 1 --seed 0 --batch_size 16
--no-item_score_bias`` plus its change: the CPU default before it took up batches of 8 and the score
offset, pinned so that all rows share one base. One epoch keeps a variant within a CPU session; one
seed leaves differences of about 15% within noise (``random-batches`` moves validation and test NDCG@10
in opposite directions by that much). Reported: validation and test NDCG@10 / HR@10 after that epoch and the
training seconds, with the change relative to ``base``. Levers measured by other benchmarks (text
tower, precision, batching) are summarised from their results files.

Results: ``benchmarks/results/ablations.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import _display_path, _relative, load_results, machine_summary, run_logged  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FINETUNE = REPO / "scripts" / "finetune.py"
# The CPU default as it was when these variants were defined (batch 16, no score offset), pinned so
# every row compares with the same base even though configs/cpu.yaml has since taken two of them up.
BASE_OPTIONS = {"num_epochs": 1, "seed": 0, "report_to": "none", "batch_size": 16, "item_score_bias": False}
# variant -> (what it changes, finetune options)
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "base": ("item table from text, LoRA r=8 on q/k/v/o, lr 1e-3, clipping at 1.0, batch 16, no score offset", {}),
    "random-batches": ("random batches instead of length-grouped ones (--no-group_by_length)", {"group_by_length": False}),
    "random-item-table": ("item table initialised at random (N(0, 0.02)) instead of from the item texts", {"item_text_init": False}),
    "no-grad-clipping": ("no gradient clipping (max_grad_norm 0 instead of 1.0)", {"max_grad_norm": 0}),
    "lora-attention-mlp": (
        "LoRA on attention and MLP (q/k/v/o + gate/up/down) instead of attention only",
        {"lora_target_modules": "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"},
    ),
    "item-table-lr-3e-3": ("item table learning rate 3e-3 (LoRA stays at 1e-3)", {"item_table_learning_rate": 0.003}),
    "learning-rate-3e-3": ("learning rate 3e-3 for LoRA and the item table (instead of 1e-3)", {"learning_rate": 0.003}),
    "batch-size-8": ("batches of 8 windows instead of 16: twice the optimizer steps per epoch (302 instead of 151)", {"batch_size": 8}),
    "item-score-bias": (
        "a learned per-item score offset, started at the item's log training frequency (--item_score_bias)",
        {"item_score_bias": True},
    ),
}


def finetune_command(variant: str, run_dir: Path) -> list[str]:
    options = {**BASE_OPTIONS, **VARIANTS[variant][1], "output_dir": str(run_dir)}
    command = [sys.executable, str(FINETUNE), "--config", str(REPO / "configs" / "cpu.yaml")]
    for key, value in options.items():
        if isinstance(value, bool):
            command.append(f"--{key}" if value else f"--no-{key}")
        else:
            command += [f"--{key}", str(value)]
    return command + ["--overwrite_output_dir"]


def run_variant(variant: str, runs_dir: Path) -> dict[str, Any]:
    run_dir = runs_dir / variant
    command = finetune_command(variant, run_dir)
    print(f"[ablations] {variant}: {shlex.join(command)}", flush=True)
    wall = run_logged(command, runs_dir / "logs" / f"{variant}.log", variant)
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    return {
        "variant": variant,
        "change": VARIANTS[variant][0],
        "validation_ndcg@10": metrics["validation"]["ndcg@10"],
        "validation_hr@10": metrics["validation"]["hr@10"],
        "test_ndcg@10": metrics["test"]["ndcg@10"],
        "test_hr@10": metrics["test"]["hr@10"],
        "test_ndcg@10_interval": metrics["test"]["intervals"]["ndcg@10"],
        "train_seconds": metrics["training"]["train_seconds"],
        "run_dir": _display_path(run_dir),
        "command": shlex.join(_relative(command)),
        "wall_seconds": round(wall, 1),
        "machine": machine_summary(),
    }


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
                f"- **Text tower** (`--item_text_tower`, ID dropout 0.5; `coldstart.md`, cold-start protocol, 1 epoch, "
                f"{text['n_seeds']} seeds): warm-target NDCG@10 {plain['warm_ndcg@10']['mean']:.4f} → {text['warm_ndcg@10']['mean']:.4f}, "
                f"cold-target HR@10 {plain['cold_hr@10']['mean']:.4f} → {text['cold_hr@10']['mean']:.4f}, all targets NDCG@10 "
                f"{plain['ndcg@10']['mean']:.4f} → {text['ndcg@10']['mean']:.4f}."
            )
    batching = results / "batching-cpu.json"
    if batching.is_file():
        data = json.loads(batching.read_text(encoding="utf-8"))
        random_row, grouped_row = data["rows"]
        lines.append(
            f"- **Length-grouped batches** (`--group_by_length`; `batching-cpu.md`): padding {random_row['padding_fraction']:.1%} → "
            f"{grouped_row['padding_fraction']:.1%} of computed positions, epoch time {data['epoch_speedup']:.2f}x shorter."
        )
    lines.append(
        "- **bf16 autocast vs fp32** (`throughput-notes.md`, seed 42, 2 epochs, random batches): test NDCG@10 0.0539 (fp32) → "
        "0.0641 (bf16), HR@10 0.1071 → 0.1304; training 1064 s → 773 s."
    )
    return lines


def render_markdown(results: dict[str, Any]) -> str:
    rows = results["rows"]
    base = next((r for r in rows if r["variant"] == "base"), None)
    lines = [
        "# Ablations: what each lever does to the LM (MovieLens-100K)",
        "",
        f"Last updated by `{results['command']}` on {results['generated']}. Machine: {results['machine']}.",
        "",
        "Each variant: `scripts/finetune.py --config configs/cpu.yaml --num_epochs 1 --seed 0 --batch_size 16 --no-item_score_bias` "
        "plus one change (SmolLM2-135M, bf16 autocast, batch 16, max_len 50, length-grouped batches, no score offset: the CPU "
        "default before it took up batches of 8 and the score offset). One seed: differences within about 15% are noise. "
        "Metrics after that one epoch, "
        "full-catalogue ranking over 943 users; the test 95% interval is the bootstrap interval over users. "
        "Δ is relative to `base`.",
        "",
        "| variant | change | validation NDCG@10 | Δ | test NDCG@10 [95% interval] | Δ | test HR@10 | train s |",
        "|---|---|---:|---:|---|---:|---:|---:|",
    ]
    for row in rows:
        def delta(key: str) -> str:
            if base is None or row is base:
                return ""
            return f"{row[key] / base[key] - 1:+.1%}" if base[key] else "n/a"

        low, high = row["test_ndcg@10_interval"]
        lines.append(
            f"| {row['variant']} | {row['change']} | {row['validation_ndcg@10']:.4f} | {delta('validation_ndcg@10')} | "
            f"{row['test_ndcg@10']:.4f} [{low:.4f}, {high:.4f}] | {delta('test_ndcg@10')} | {row['test_hr@10']:.4f} | {row['train_seconds']:.0f} |"
        )
    missing = [name for name in VARIANTS if name not in {r["variant"] for r in rows}]
    if missing:
        lines += ["", f"Not run yet: {', '.join(missing)} (`python benchmarks/ablations.py --variants {','.join(missing)}`)."]
    lines += ["", "## Levers measured by other benchmarks", "", *_other_benchmarks()]
    lines += ["", "## Commands", ""] + [f"- {r['variant']}: `{r['command']}`" for r in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {', '.join(VARIANTS)}")
    parser.add_argument("--runs_dir", default="runs/ablations")
    parser.add_argument("--results_dir", default=str(REPO / "benchmarks" / "results"))
    parser.add_argument("--report_only", action="store_true")
    args = parser.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}")
    runs_dir = Path(args.runs_dir) if Path(args.runs_dir).is_absolute() else REPO / args.runs_dir
    results_dir = Path(args.results_dir)
    rows = {r["variant"]: r for r in load_results(results_dir / "ablations.json").get("rows", [])}
    for variant in [] if args.report_only else variants:
        rows[variant] = run_variant(variant, runs_dir)
        _write(results_dir, rows, argv)
    _write(results_dir, rows, argv)
    return 0


def _write(results_dir: Path, rows: dict[str, dict[str, Any]], argv: list[str] | None) -> None:
    ordered = [rows[name] for name in VARIANTS if name in rows]
    results = {
        "title": "LM ablations on MovieLens-100K",
        "command": shlex.join(["python", "benchmarks/ablations.py", *(sys.argv[1:] if argv is None else argv)]),
        "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_summary(),
        "base_options": {"config": "configs/cpu.yaml", **BASE_OPTIONS},
        "rows": ordered,
    }
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "ablations.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (results_dir / "ablations.md").write_text(render_markdown(results), encoding="utf-8")
    print(f"[ablations] wrote {results_dir / 'ablations.md'} ({len(ordered)} variants)", flush=True)


if __name__ == "__main__":
    sys.exit(main())
