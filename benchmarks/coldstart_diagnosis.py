#!/usr/bin/env python
"""Where cold items land in a cold-start run's rankings, and why: one run directory, three views.

    python benchmarks/coldstart_diagnosis.py runs/coldstart/smollm2-lora-text-seed0

For the test users of a run made with ``--cold_start_fraction`` (the same held-out items are rebuilt
from its training_config.yaml), it ranks every target three ways with the run's own hidden states:

- ``full``: the model as trained (what metrics.json reports);
- ``text part only``: every item scored by its text vector alone (ID embeddings left out), so warm and
  cold items are treated alike; with a text tower this is what a cold item always gets;
- ``among cold items only``: the full model, but only the held-out items compete (random would give
  HR@10 = 10 / number of cold items);
- for a model with per-item score offsets (``--item_score_bias``), also ``cold offsets from their true
  counts (oracle)``: the full model, with each cold item's offset replaced by what a warm item with the
  cold item's training count has (a line fitted to the warm items' trained offsets against log count).
  It uses the interactions the run held out, so no model can have it: it bounds what any popularity
  prior predicted from text could add.

The gap between the first and the last two views is what the ID embeddings of warm items add on top
of text. Results: printed, and written to ``benchmarks/results/coldstart-diagnosis.md`` (one section
per run directory, replaced when the same directory is diagnosed again).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import yaml

from hf_seqrec.data import DataConfig, NextItemCollator, prepare_data
from hf_seqrec.data.cold_start_split import apply_cold_start
from hf_seqrec.evaluation.ranking import target_ranks
from hf_seqrec.modeling import SeqRecForNextItem

REPO = Path(__file__).resolve().parents[1]


def last_hidden_states(model: SeqRecForNextItem, rows: list[dict], max_len: int, bf16: bool) -> torch.Tensor:
    collator = NextItemCollator(max_len)
    states = []
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for start in range(0, len(rows), 64):
            batch = collator(rows[start : start + 64])
            hidden = model(input_item_ids=batch["input_item_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
            states.append(hidden[torch.arange(hidden.size(0)), batch["attention_mask"].sum(1) - 1].float())
    return torch.cat(states)


def ranks(scores: torch.Tensor, targets: torch.Tensor, histories: list[list[int]], excluded: torch.Tensor | None = None) -> np.ndarray:
    """The evaluator's own ranks (history masked, ties against the model), optionally with some items left out."""
    candidates = None
    if excluded is not None:
        candidates = torch.ones(scores.size(1), dtype=torch.bool)
        candidates[excluded] = False
    seen = torch.full((len(histories), max(len(h) for h in histories)), -1, dtype=torch.long)
    for user, history in enumerate(histories):
        seen[user, : len(history)] = torch.tensor(history)
    return target_ranks(scores, targets, seen, candidate_mask=candidates).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "results" / "coldstart-diagnosis.md"))
    args = parser.parse_args()
    run_dir = Path(args.run_dir).resolve()
    config = yaml.safe_load((run_dir / "training_config.yaml").read_text(encoding="utf-8"))
    model = SeqRecForNextItem.from_pretrained(run_dir).eval()
    prepared = prepare_data(DataConfig(dataset=config["dataset"]))
    true_counts = torch.zeros(len(prepared.catalog))
    for items in prepared.splits["train"]["items"]:  # before the hold-out: what the cold items really had
        true_counts.index_add_(0, torch.tensor(items), torch.ones(len(items)))
    cold = apply_cold_start(prepared, config["cold_start_fraction"], config["seed"])
    cold_set = set(cold)
    test = prepared.splits["test"]
    rows = [test[i] for i in range(len(test))]
    hidden = last_hidden_states(model, rows, model.config.max_len, config.get("mixed_precision") == "bf16")
    table = model.item_table
    with torch.no_grad():
        vectors = table.vectors().float()
        if table.text_tower and table.text_design != "projection":
            text_vectors = table.content_vectors().float()  # the content vector: what an item without a delta is
        elif table.text_tower:
            text_vectors = (vectors - table.weight * table.has_id_embedding[:, None]).float()
        else:
            text_vectors = vectors
    targets = torch.tensor(test["target"])
    histories = [row["history"] for row in rows]
    is_cold = np.array([target in cold_set for target in test["target"]])
    warm_items = torch.tensor([i for i in range(len(prepared.catalog)) if i not in cold_set])
    with torch.no_grad():
        offsets = table.score_bias()
        offsets = torch.zeros(len(prepared.catalog)) if offsets is None else offsets.detach().float()
    full = hidden @ vectors.T + offsets
    views = {
        "full": ranks(full, targets, histories),
        "text part only" if table.text_tower else "text part only (no text tower: the ID rows)": ranks(hidden @ text_vectors.T, targets, histories),
        "among cold items only": ranks(full, targets, histories, excluded=warm_items),
    }
    if table.bias is not None:
        cold_index = torch.tensor(sorted(cold_set))
        log_count = torch.log(true_counts + 1)
        slope, intercept = np.polyfit(log_count[warm_items].numpy(), offsets[warm_items].numpy(), 1)
        oracle = offsets.clone()
        oracle[cold_index] = float(slope) * log_count[cold_index] + float(intercept)
        views["cold offsets from their true counts (oracle)"] = ranks(hidden @ vectors.T + oracle, targets, histories)
    lines = [
        f"## `{run_dir.relative_to(REPO) if REPO in run_dir.resolve().parents else run_dir}`",
        "",
        f"`python benchmarks/coldstart_diagnosis.py {args.run_dir}`: {int(is_cold.sum())} cold and {int((~is_cold).sum())} warm test "
        f"targets, {len(cold)} held-out items (random HR@10 among them: {10 / len(cold):.3f}).",
        "",
        "| view | cold HR@10 | cold HR@50 | cold median rank | warm HR@10 | warm median rank |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, view in views.items():
        warm_cell = "n/a" if name == "among cold items only" else f"{(view[~is_cold] <= 10).mean():.4f}"
        warm_rank = "n/a" if name == "among cold items only" else f"{np.median(view[~is_cold]):.0f}"
        lines.append(
            f"| {name} | {(view[is_cold] <= 10).mean():.4f} | {(view[is_cold] <= 50).mean():.3f} | {np.median(view[is_cold]):.0f} | "
            f"{warm_cell} | {warm_rank} |"
        )
    section = "\n".join(lines) + "\n"
    print(section)
    output = Path(args.output)
    header = "# Cold-start diagnosis: where held-out items rank\n\nWritten by `benchmarks/coldstart_diagnosis.py`; see its docstring for the three views.\n\n"
    existing = output.read_text(encoding="utf-8") if output.is_file() else header
    sections = [s for s in existing.split("\n## ")[1:] if not s.startswith(lines[0][3:])]
    output.write_text(header + "".join("## " + s.rstrip("\n") + "\n\n" for s in sections) + section, encoding="utf-8")


if __name__ == "__main__":
    main()
