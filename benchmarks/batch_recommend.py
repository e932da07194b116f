#!/usr/bin/env python
"""Users per second of `scripts/recommend.py` (batch top-100 to Parquet) on this machine's CPU.

    HF_HUB_OFFLINE=1 python benchmarks/batch_recommend.py

Two workloads, each run as the real command line (`python scripts/recommend.py ...`, or
`accelerate launch --multi_gpu --num_processes 2 scripts/recommend.py ...` with ACCELERATE_USE_CPU=1):

- MovieLens-100K (943 users, 1,682 items) with a trained LM checkpoint (SmolLM2 cut to 8 layers + LoRA),
  one process, fp32 and int8;
- a synthetic data set of `--synthetic_users` users x 20,000 items, generated deterministically (seed 0):
  item popularity Zipf-like (weight 1/rank^0.8), history lengths 3 + geometric (mean about 12 items),
  one interaction per second. The model is an *untrained* model of the same LM architecture (SmolLM2-135M
  cut to 8 layers, LoRA r=8 at its initialisation, item table initialised from the items' text "Item
  <id> | Category <id mod 50>"): training does not change the cost per user. int8, with 1 and 2 processes.

Users/s is the number of users divided by the job's own recommending time (from the model being ready
to the last shard written, all processes); the wall time of the whole command (start-up, loading the
data and the model, writing the final Parquet file) is reported next to it. Writes
benchmarks/results/batch-cpu.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmark_utils import DEFAULT_MODEL, REPO, RESULTS, load_average, run_header, write_results

SYNTHETIC_ITEMS = 20_000
TOP_K = 100


def synthetic_interactions(path: Path, n_users: int, n_items: int, seed: int = 0) -> dict:
    """Write a deterministic interactions file (user_id, item_id, timestamp) and describe it."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    lengths = 3 + rng.geometric(1 / 10, size=n_users) - 1
    weights = 1.0 / np.arange(1, n_items + 1) ** 0.8
    items = rng.choice(n_items, size=int(lengths.sum()), p=weights / weights.sum()) + 1
    users = np.repeat(np.arange(n_users), lengths)
    frame = pd.DataFrame({"user_id": [f"u{u}" for u in users], "item_id": items.astype(str), "timestamp": np.arange(len(items))})
    frame.to_parquet(path, index=False)
    return {
        "users": n_users,
        "items": n_items,
        "interactions": int(len(frame)),
        "history_length_mean": round(float(lengths.mean()), 2),
        "history_length_median": float(np.median(lengths)),
        "history_length_max": int(lengths.max()),
    }


def untrained_lm_checkpoint(directory: Path, n_items: int, max_len: int = 50) -> dict:
    """An untrained SeqRecForNextItem of the CPU default's architecture with ``n_items`` items."""
    import torch

    from hf_seqrec import SeqRecForNextItem
    from hf_seqrec.modeling.item_catalog import ItemCatalog

    ids = [str(i) for i in range(1, n_items + 1)]
    texts = [f"Item {i} | Category {i % 50}" for i in range(1, n_items + 1)]
    torch.manual_seed(0)
    model, tokenizer = SeqRecForNextItem.from_backbone("smollm2-135m", texts, max_len=max_len, backbone_layers=8)
    model.item_catalog = ItemCatalog(ids, texts)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return {"backbone": "smollm2-135m", "backbone_layers": 8, "lora": "r=8 (untrained)", "max_len": max_len, "items": n_items}


def run_job(model: Path, dataset: str, output: Path, *, precision: str | None, processes: int, batch_size: int, shard_size: int) -> dict:
    """One `scripts/recommend.py` run; returns its JSON summary plus the command's wall time."""
    script = [str(REPO / "scripts" / "recommend.py"), "--model", str(model), "--dataset", dataset, "--output", str(output),
              "--top_k", str(TOP_K), "--batch_size", str(batch_size), "--shard_size", str(shard_size), "--no_progress"]
    if precision:
        script += ["--precision", precision]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    if processes == 1:
        command = [sys.executable] + script
        shown = "python scripts/recommend.py"
    else:
        command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
                   "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"] + script
        env["ACCELERATE_USE_CPU"] = "1"
        shown = f"ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes {processes} scripts/recommend.py"
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    import pyarrow.parquet as pq

    rows = pq.read_metadata(output).num_rows
    output.unlink()
    users = summary["n_users_recommended"]
    return {
        "command": f"{shown} --model {_shown_path(model)} --dataset {dataset if not Path(dataset).is_file() else Path(dataset).name} "
        f"--output recs.parquet --top_k {TOP_K}"
        + (f" --precision {precision}" if precision else "") + f" --batch_size {batch_size} --shard_size {shard_size}",
        "processes": processes,
        "precision": precision or "fp32",
        "users": users,
        "rows": rows,
        "seconds_recommending": summary["seconds_recommending"],
        "users_per_second": round(users / summary["seconds_recommending"], 1),
        "wall_seconds": round(wall, 1),
        "users_per_second_wall": round(users / wall, 1),
    }


def _shown_path(path: Path) -> str:
    """A repository path relative to the repository; a temporary one by its name."""
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return Path(path).name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="trained LM checkpoint for the MovieLens-100K runs")
    parser.add_argument("--synthetic_users", type=int, default=50_000)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--shard_size", type=int, default=1000)
    parser.add_argument("--output", default=str(RESULTS / "batch-cpu"), help="path without extension")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    load_before = load_average()
    started = time.perf_counter()

    runs = []
    with tempfile.TemporaryDirectory(prefix="batch-bench-") as scratch:
        scratch = Path(scratch)
        for precision in (None, "int8"):
            run = run_job(Path(args.model), "movielens-100k", scratch / "ml.parquet", precision=precision, processes=1,
                          batch_size=args.batch_size, shard_size=args.shard_size)
            runs.append({"workload": "MovieLens-100K, trained LM checkpoint", **run})
            print(json.dumps(runs[-1]), flush=True)
        data = scratch / "synthetic.parquet"
        synthetic = synthetic_interactions(data, args.synthetic_users, SYNTHETIC_ITEMS)
        model_dir = scratch / "untrained-lm"
        synthetic_model = untrained_lm_checkpoint(model_dir, SYNTHETIC_ITEMS)
        for processes in (1, 2):
            run = run_job(model_dir, str(data), scratch / "synthetic-recs.parquet", precision="int8", processes=processes,
                          batch_size=args.batch_size, shard_size=args.shard_size)
            runs.append({"workload": f"synthetic {args.synthetic_users:,} users x {SYNTHETIC_ITEMS:,} items, untrained LM", **run})
            print(json.dumps(runs[-1]), flush=True)

    result = {
        **run_header("batch_recommend.py", argv, load_before),
        "setup": {
            "movielens_model": str(args.model),
            "synthetic_data": synthetic,
            "synthetic_model": synthetic_model,
            "top_k": TOP_K,
            "batch_size": args.batch_size,
            "shard_size": args.shard_size,
            "benchmark_seconds": round(time.perf_counter() - started, 1),
        },
        "runs": runs,
    }
    write_results(Path(args.output), result, render_markdown(result))
    print(json.dumps(result, indent=2))
    return 0


def render_markdown(result: dict) -> str:
    m, setup, runs = result["machine"], result["setup"], result["runs"]
    synthetic, model = setup["synthetic_data"], setup["synthetic_model"]
    lines = [
        "# Batch recommendations on the CPU: users per second",
        "",
        f"Command: `{result['command'].strip()}`  ({result['date']}; {setup['benchmark_seconds']} s in all)",
        "",
        f"Machine: {m['cpu']}, {m['cpu_count']} CPU cores, torch {m['torch']}, transformers {m['transformers']}, "
        f"Python {m['python']}. Load average when the run started: {m['load_average_at_start']} (other jobs on the "
        "machine slow these runs down). One process uses torch's default threads (one per core); under "
        "`accelerate launch` on the CPU each of the 2 processes gets one thread.",
        "",
        f"Every run writes the top {setup['top_k']} items of every user (history excluded) to Parquet, in batches of "
        f"{setup['batch_size']} histories and shards of {setup['shard_size']} users. Users/s = users / the job's "
        "recommending time (model ready to last shard written); the wall time also counts start-up, loading the "
        "data and the model, and writing the final file.",
        "",
        f"- MovieLens-100K: the trained checkpoint `{setup['movielens_model']}` (SmolLM2-135M cut to 8 layers, LoRA), "
        "943 users, 1,682 items, histories truncated to the model's 50 items.",
        f"- Synthetic: {synthetic['users']:,} users x {synthetic['items']:,} items, {synthetic['interactions']:,} "
        f"interactions generated with seed 0 (Zipf-like item popularity; history lengths 3 + geometric: mean "
        f"{synthetic['history_length_mean']}, median {synthetic['history_length_median']:g}, max {synthetic['history_length_max']}, "
        f"read up to {model['max_len']}). Model: an **untrained** model of the same architecture ({model['backbone']} cut to "
        f"{model['backbone_layers']} layers, LoRA {model['lora']}, {model['items']:,}-item table from the items' text); the "
        "cost per user does not depend on training. Every user of the data set is recommended for (no subset).",
        "",
        "| workload | processes | precision | users | rows | recommending | users/s | wall time | users/s (wall) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        lines.append(
            f"| {run['workload']} | {run['processes']} | {run['precision']} | {run['users']:,} | {run['rows']:,} "
            f"| {run['seconds_recommending']} s | {run['users_per_second']} | {run['wall_seconds']} s | {run['users_per_second_wall']} |"
        )
    lines += ["", "Commands (run from the repository root):", ""]
    lines += [f"- `{run['command']}`" for run in runs]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
