#!/usr/bin/env python
"""Training and evaluation throughput of the default model, with model FLOPs utilisation.

    python benchmarks/throughput.py                         # CPU: fp32, small grid
    python benchmarks/throughput.py --batch_sizes 32,64,128 --seq_lens 50,200   # GPU: bf16 autocast

For each (batch size, sequence length) it times full training steps (forward, backward,
optimizer step) on MovieLens-sized inputs after a warm-up, synchronising the device around
each step, and reports the median. MFU divides the achieved model FLOP/s by the device's
matrix-product FLOP/s measured in the same process (fp32 on the CPU, bf16 on a GPU), so the
ratio does not lean on a datasheet number.

Model FLOPs per trained position (LoRA: frozen weights need input gradients but no weight
gradients, so 4 x params instead of the usual 6 x):
    4 * backbone_params + 6 * hidden * num_items + 6 * layers * seq_len * hidden
for the backbone's matrix products, the tied full-catalogue head (forward, input and weight
gradients) and attention scores.

Results go to benchmarks/results/throughput-<device>.json and .md with the command and machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

from benchmark_utils import REPO
from hf_seqrec.data import DataConfig, NextItemCollator, prepare_data
from hf_seqrec.modeling import SeqRecForNextItem


def shape_only_model(num_items: int, max_len: int) -> SeqRecForNextItem:
    """SmolLM2-135M's exact architecture with random weights; throughput does not depend on weight values."""
    from transformers import AutoConfig, AutoModel

    from hf_seqrec import SeqRecConfig

    values = json.loads((REPO / "benchmarks" / "assets" / "smollm2-135m-config.json").read_text())
    backbone = AutoModel.from_config(AutoConfig.for_model(values.pop("model_type"), **values))
    config = SeqRecConfig(num_items=num_items, backbone_name_or_path="smollm2-135m", backbone_config=backbone.config.to_dict(), max_len=max_len)
    return SeqRecForNextItem(config, backbone=backbone)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measured_peak_flops(device: torch.device, dtype: torch.dtype, size: int, repeats: int) -> float:
    """FLOP/s of a large square matrix product on this device: the denominator of MFU."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        synchronize(device)
        times.append(time.perf_counter() - start)
    # The fastest repeat is the device's peak; slower ones measure whatever else was running.
    return 2 * size**3 / min(times)


def flops_per_position(model: SeqRecForNextItem, seq_len: int) -> float:
    backbone = model.get_backbone()
    params = sum(p.numel() for n, p in backbone.named_parameters() if "embed_tokens" not in n and "lora_" not in n)
    config = backbone.config
    return 4 * params + 6 * config.hidden_size * model.config.num_items + 6 * config.num_hidden_layers * seq_len * config.hidden_size


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_training(model, device, dtype, batch_size, seq_len, num_items, warmup, steps) -> list[float]:
    generator = torch.Generator().manual_seed(0)
    items = torch.randint(0, num_items, (batch_size, seq_len + 1), generator=generator)
    batch = {
        "input_item_ids": items[:, :-1].to(device),
        "attention_mask": torch.ones(batch_size, seq_len, dtype=torch.long, device=device),
        "labels": items[:, 1:].to(device),
    }
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.train()
    times = []
    for step in range(warmup + steps):
        synchronize(device)
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        synchronize(device)
        if step >= warmup:
            times.append(time.perf_counter() - start)
    return times


@torch.no_grad()
def time_evaluation(model, device, dtype, split, max_len, batch_size, max_users) -> float:
    collator = NextItemCollator(max_len=max_len)
    rows = [split[i] for i in range(min(max_users, len(split)))]
    batches = [collator(rows[i : i + batch_size]) for i in range(0, len(rows), batch_size)]
    model.eval()
    synchronize(device)
    start = time.perf_counter()
    for batch in batches:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            model(input_item_ids=batch["input_item_ids"].to(device), attention_mask=batch["attention_mask"].to(device))
    synchronize(device)
    return len(rows) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="smollm2-135m")
    parser.add_argument("--batch_sizes", default="8,16")
    parser.add_argument("--seq_lens", default="20,50")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--eval_users", type=int, default=256)
    parser.add_argument("--matmul_size", type=int, default=0, help="0: 2048 on the CPU, 8192 on a GPU")
    parser.add_argument("--output_dir", default=str(REPO / "benchmarks" / "results"))
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="auto: bf16 autocast on a GPU, fp32 on the CPU; bf16 on a CPU uses its bf16 instructions (AVX512-BF16/AMX)")
    parser.add_argument(
        "--shape_only", action="store_true",
        help="SmolLM2-135M's architecture with random weights (benchmarks/assets/smollm2-135m-config.json): "
             "the same FLOPs and memory, for machines that cannot carry the 98 MB GGUF",
    )
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.precision == "auto":
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    else:
        dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu-{os.cpu_count()}cores"
    peak = measured_peak_flops(device, dtype, args.matmul_size or (8192 if device.type == "cuda" else 2048), repeats=10)

    prepared = prepare_data(DataConfig(dataset="movielens-100k"))
    num_items = len(prepared.catalog)
    max_len = max(int(s) for s in args.seq_lens.split(","))
    if args.shape_only:
        model = shape_only_model(num_items, max_len)
    else:
        model, _ = SeqRecForNextItem.from_backbone(args.backbone, prepared.catalog.texts, max_len=max_len)
    model.to(device)

    rows = []
    for seq_len in (int(s) for s in args.seq_lens.split(",")):
        for batch_size in (int(b) for b in args.batch_sizes.split(",")):
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            times = time_training(model, device, dtype, batch_size, seq_len, num_items, args.warmup, args.steps)
            step = statistics.median(times)
            tokens_per_s = batch_size * seq_len / step
            row = {
                "batch_size": batch_size,
                "seq_len": seq_len,
                "step_seconds_median": round(step, 4),
                "tokens_per_s": round(tokens_per_s, 1),
                "sequences_per_s": round(batch_size / step, 2),
                "mfu": round(tokens_per_s * flops_per_position(model, seq_len) / peak, 4),
                "peak_mem_mb": round(peak_memory_mb(device), 1),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)

    eval_users_per_s = time_evaluation(model, device, dtype, prepared.splits["test"], 50, 64, args.eval_users)
    result = {
        "device": device_name,
        "weights": "random (SmolLM2-135M shape)" if args.shape_only else "pretrained",
        "dtype": str(dtype).replace("torch.", ""),
        "backbone": args.backbone,
        "num_items": num_items,
        "command": "python " + " ".join([os.path.relpath(sys.argv[0], REPO), *sys.argv[1:]]),
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpu_count": os.cpu_count(),
                    "torch": torch.__version__, "threads": torch.get_num_threads()},
        "peak_flops_measured": peak,
        "rows": rows,
        "evaluation": {"users_per_s": round(eval_users_per_s, 2), "history_len": 50, "batch_size": 64, "users": args.eval_users},
        "timing": f"median of {args.steps} steps after {args.warmup} warm-up steps, device synchronised",
    }
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    tag = "cpu" if device.type == "cpu" else device_name.lower().replace(" ", "-")
    if args.precision != "auto":
        tag += f"-{args.precision}"
    (output_dir / f"throughput-{tag}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# Training throughput: {args.backbone} + LoRA on {device_name} ({result['dtype']})",
        "",
        f"Command: `{result['command']}`  ",
        f"Machine: {result['machine']['platform']}, {result['machine']['cpu_count']} CPUs, torch {torch.__version__}  ",
        f"Measured peak matrix-product rate: {peak / 1e12:.3f} TFLOP/s ({result['dtype']})  ",
        f"Timing: {result['timing']}",
        "",
        "| batch | seq len | tokens/s | sequences/s | MFU | peak mem (MB) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| {r['batch_size']} | {r['seq_len']} | {r['tokens_per_s']:.0f} | {r['sequences_per_s']:.2f} | {r['mfu']:.1%} | {r['peak_mem_mb']:.0f} |" for r in rows]
    lines += ["", f"Evaluation (full-catalogue scoring of {num_items} items, 50-item histories, batches of 64): "
              f"{eval_users_per_s:.1f} users/s.", ""]
    (output_dir / f"throughput-{tag}.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
