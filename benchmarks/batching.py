#!/usr/bin/env python
"""Epoch time of the default model with random vs length-grouped training batches, side by side.

    python benchmarks/batching.py                 # SmolLM2-135M + LoRA, bf16 autocast (the CPU default)

A random batch is padded to its longest window; ``group_by_length`` batches windows of similar length
(``hf_seqrec.data.sampling.LengthGroupedSampler``). This script

1. counts, over one whole epoch of MovieLens-100K training windows, the positions each batching
   computes (batch size x longest window, summed over batches) against the real ones;
2. times real training steps (forward, backward, AdamW) on batches drawn at random from each epoch's
   batch list, alternating the two kinds so machine noise hits both alike, and estimates the epoch
   time as batches x mean step time (a mean over a random sample of batches, since grouped batches
   differ in length).

Results: ``benchmarks/results/batching-<device>.{json,md}``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmark_utils import REPO, machine_summary, write_results
from hf_seqrec.data import DataConfig, NextItemCollator, prepare_data, training_windows
from hf_seqrec.data.sampling import LengthGroupedSampler
from hf_seqrec.modeling import SeqRecForNextItem


def epoch_batches(windows, batch_size: int, grouped: bool, seed: int) -> list[list[int]]:
    """The batches (lists of window indices) of epoch 0 under either batching."""
    lengths = [len(items) for items in windows["input_items"]]
    if grouped:
        order = list(LengthGroupedSampler(lengths, batch_size, seed=seed))
    else:
        order = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(seed)).tolist()
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def computed_positions(batches: list[list[int]], lengths: list[int]) -> int:
    return sum(len(batch) * max(lengths[i] for i in batch) for batch in batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="smollm2-135m")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--max_len", type=int, default=50)
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="bf16")
    parser.add_argument("--steps", type=int, default=12, help="timed steps per batching")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output_dir", default=str(REPO / "benchmarks" / "results"))
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    prepared = prepare_data(DataConfig())
    windows = training_windows(prepared.splits["train"], args.max_len)
    lengths = [len(items) for items in windows["input_items"]]
    collator = NextItemCollator(max_len=args.max_len)
    torch.manual_seed(args.seed)
    model, _ = SeqRecForNextItem.from_backbone(args.backbone, prepared.catalog.texts, max_len=args.max_len)
    model.to(device).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16")

    def step(batch_indices: list[int]) -> float:
        batch = collator([windows[i] for i in batch_indices])
        batch = {k: v.to(device) for k, v in batch.items()}
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with autocast:
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    kinds = {"random": epoch_batches(windows, args.batch_size, False, args.seed), "length-grouped": epoch_batches(windows, args.batch_size, True, args.seed)}
    rng = np.random.default_rng(args.seed)
    samples = {kind: [batches[i] for i in rng.choice(len(batches), size=args.steps + args.warmup, replace=False)] for kind, batches in kinds.items()}
    times: dict[str, list[float]] = {kind: [] for kind in kinds}
    for index in range(args.steps + args.warmup):
        for kind in kinds:  # alternate: noise hits both alike
            seconds = step(samples[kind][index])
            if index >= args.warmup:
                times[kind].append(seconds)

    real = sum(lengths)
    rows = []
    for kind, batches in kinds.items():
        mean = statistics.fmean(times[kind])
        rows.append({
            "batching": kind,
            "batches_per_epoch": len(batches),
            "computed_positions": computed_positions(batches, lengths),
            "padding_fraction": 1 - real / computed_positions(batches, lengths),
            "mean_step_s": mean,
            "median_step_s": statistics.median(times[kind]),
            "epoch_s_estimate": mean * len(batches),
        })
    speedup = rows[0]["epoch_s_estimate"] / rows[1]["epoch_s_estimate"]
    machine = machine_summary()  # device is the GPU where there is one, as machine_summary reports it
    command = "python benchmarks/batching.py " + " ".join(sys.argv[1:])
    result = {
        "device": device.type, "machine": machine, "command": command.strip(), "backbone": args.backbone,
        "batch_size": args.batch_size, "max_len": args.max_len, "precision": args.precision, "timed_steps": args.steps,
        "real_positions": real, "rows": rows, "epoch_speedup": speedup,
    }
    lines = [
        f"# Random vs length-grouped training batches ({device.type})",
        "",
        f"`{result['command']}` on {machine}. {args.backbone} + LoRA, {args.precision}, batch {args.batch_size}, max_len "
        f"{args.max_len}, MovieLens-100K training windows ({real} real positions per epoch). Step times: {args.steps} "
        "real training steps per batching on batches drawn at random from each epoch, the two kinds alternating.",
        "",
        "| batching | batches/epoch | positions computed | padding | mean step s | median step s | epoch s (estimate) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['batching']} | {row['batches_per_epoch']} | {row['computed_positions']} | {row['padding_fraction']:.1%} | "
            f"{row['mean_step_s']:.3f} | {row['median_step_s']:.3f} | {row['epoch_s_estimate']:.0f} |"
        )
    lines += ["", f"Epoch time, random / length-grouped: **{speedup:.2f}x**."]
    write_results(Path(args.output_dir) / f"batching-{device.type}", result, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
