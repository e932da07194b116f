#!/usr/bin/env python
"""How training and evaluation cost grow with the number of users and the catalogue size.

    python benchmarks/scaling.py

Two sweeps on MovieLens-100K with the default model (SmolLM2-135M + LoRA, bf16 autocast on the CPU as
in configs/cpu.yaml; ``--precision fp32`` for a CPU without bf16 instructions):

* users: a seeded 25% / 50% / 100% sample of the users, same catalogue;
* catalogue: the same users with their items mapped into synthetic catalogues of 1k / 10k /
  100k items (a seeded random map of the 1,682 real ids onto the larger id space, each
  synthetic item with its own text; with 1k items some movies merge), so only the number of
  items to score changes.

Full CPU epochs of every point would take hours, so each point times a few real training
steps (batches of real training windows) and a few evaluation batches, and scales the medians
by the number of batches of that point: epoch seconds = training batches x median step time,
evaluation seconds = users / users per second. The figures are estimates of that kind and the
output says so. Results: benchmarks/results/scaling.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmark_utils import REPO, write_results
from hf_seqrec.data import DataConfig, NextItemCollator, prepare_data, training_windows
from hf_seqrec.modeling import SeqRecForNextItem


def subsample_users(splits, fraction: float, seed: int):
    rng = np.random.default_rng(seed)
    users = sorted(set(splits["train"]["user_id"]))
    keep = set(rng.choice(users, size=max(1, int(round(fraction * len(users)))), replace=False).tolist())
    return {name: split.filter(lambda row: row["user_id"] in keep) for name, split in splits.items()}


def remap_items(splits, num_items: int, real_items: int, seed: int):
    mapping = np.random.default_rng(seed).permutation(num_items)[:real_items] if num_items >= real_items else \
        np.random.default_rng(seed).integers(0, num_items, size=real_items)
    mapping = mapping.tolist()

    def remap(row):
        out = dict(row)
        for key in ("items", "history"):
            if key in row:
                out[key] = [mapping[i] for i in row[key]]
        if "target" in row:
            out["target"] = mapping[row["target"]]
        return out

    return {name: split.map(remap) for name, split in splits.items()}


def autocast(args) -> torch.autocast:
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16")


def time_point(splits, item_texts, args) -> dict:
    torch.manual_seed(0)
    model, _ = SeqRecForNextItem.from_backbone(args.backbone, item_texts, max_len=args.max_len)
    collator = NextItemCollator(max_len=args.max_len)
    windows = training_windows(splits["train"], args.max_len).shuffle(seed=0)
    n_batches = -(-len(windows) // args.batch_size)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    step_times = []
    for step in range(args.warmup + args.steps):
        batch = collator([windows[i] for i in range(step * args.batch_size, (step + 1) * args.batch_size)])
        start = time.perf_counter()
        with autocast(args):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step >= args.warmup:
            step_times.append(time.perf_counter() - start)
    model.eval()
    test = splits["test"]
    rows = [test[i] for i in range(min(args.eval_users, len(test)))]
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(rows), args.eval_batch_size):
            batch = collator(rows[i : i + args.eval_batch_size])
            with autocast(args):
                model(input_item_ids=batch["input_item_ids"], attention_mask=batch["attention_mask"])
    users_per_s = len(rows) / (time.perf_counter() - start)
    step = statistics.median(step_times)
    return {
        "users": len(test),
        "items": len(item_texts),
        "training_windows": len(windows),
        "step_seconds_median": round(step, 3),
        "epoch_seconds_estimated": round(n_batches * step, 1),
        "eval_users_per_s": round(users_per_s, 2),
        "eval_seconds_estimated": round(len(test) / users_per_s, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="smollm2-135m")
    parser.add_argument("--user_fractions", default="0.25,0.5,1.0")
    parser.add_argument("--catalogue_sizes", default="1000,10000,100000")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--eval_batch_size", type=int, default=64)
    parser.add_argument("--max_len", type=int, default=50)
    parser.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--eval_users", type=int, default=64)
    parser.add_argument("--output_dir", default=str(REPO / "benchmarks" / "results"))
    args = parser.parse_args()

    prepared = prepare_data(DataConfig(dataset="movielens-100k"))
    splits = {name: prepared.splits[name] for name in ("train", "test")}
    texts = prepared.catalog.texts
    results = {"users": [], "catalogue": []}
    for fraction in (float(f) for f in args.user_fractions.split(",")):
        point = time_point(subsample_users(splits, fraction, seed=0), texts, args)
        point["user_fraction"] = fraction
        results["users"].append(point)
        print(json.dumps(point), flush=True)
    for size in (int(s) for s in args.catalogue_sizes.split(",")):
        synthetic_texts = [f"Synthetic item {i} | catalogue of {size}" for i in range(size)]
        point = time_point(remap_items(splits, size, len(texts), seed=0), synthetic_texts, args)
        results["catalogue"].append(point)
        print(json.dumps(point), flush=True)

    payload = {
        "command": "python " + " ".join([os.path.relpath(sys.argv[0], REPO), *sys.argv[1:]]),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
                    "threads": torch.get_num_threads()},
        "backbone": args.backbone,
        "precision": args.precision,
        "method": f"median of {args.steps} timed training steps (batch {args.batch_size}, max_len {args.max_len}) after "
                  f"{args.warmup} warm-up, scaled by the number of training batches; evaluation rate from "
                  f"{args.eval_users} users in batches of {args.eval_batch_size}, scaled by the number of users",
        **results,
    }
    output_dir = Path(args.output_dir)
    write_results(output_dir / "scaling", payload, render_markdown(payload))
    plot(payload, output_dir / "scaling.png")


def render_markdown(payload: dict) -> str:
    lines = [
        f"# Cost scaling: {payload['backbone']} + LoRA on the CPU",
        "",
        f"Command: `{payload['command']}`  ",
        f"Machine: {payload['machine']['platform']}, {payload['machine']['cpu_count']} CPUs, torch {payload['machine']['torch']}  ",
        f"Method (estimates): {payload['method']}",
        "",
        "| sweep | users | items | training windows | step (s) | epoch (s, est.) | eval users/s | eval (s, est.) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for sweep in ("users", "catalogue"):
        for p in payload[sweep]:
            lines.append(
                f"| {sweep} | {p['users']} | {p['items']} | {p['training_windows']} | {p['step_seconds_median']} | "
                f"{p['epoch_seconds_estimated']} | {p['eval_users_per_s']} | {p['eval_seconds_estimated']} |"
            )
    return "\n".join(lines) + "\n"


def plot(payload: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    # (axis, sweep, what varies along x, x label, title)
    panels = (
        (axes[0], "users", "users", "users", "Cost vs users (1,682 items)"),
        (axes[1], "catalogue", "items", "catalogue size (items)", "Cost vs catalogue size (943 users)"),
    )
    for axis, sweep, x_key, x_label, title in panels:
        x = [p[x_key] for p in payload[sweep]]
        axis.plot(x, [p["epoch_seconds_estimated"] for p in payload[sweep]], "o-", label="training epoch")
        axis.plot(x, [p["eval_seconds_estimated"] for p in payload[sweep]], "s-", label="evaluation (all users)")
        axis.set_xlabel(x_label)
        axis.set_title(title)
        axis.legend()
    axes[0].set_ylabel("seconds (estimated)")
    axes[1].set_xscale("log")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
