#!/usr/bin/env python
"""Faithfulness of the next-item pipeline's explanations (`explain=True`) on MovieLens-100K test users.

    HF_HUB_OFFLINE=1 python benchmarks/explain.py

For a seeded sample of test users (each user's history before the test target, the most recent
`max_len` items the model reads) and each trained checkpoint:

1. the top-1 recommendation, as the pipeline makes it (history items excluded);
2. its explanation by occlusion and by integrated gradients (from the mean item vector), timed;
3. deletion curves: remove the history items one by one in the order an explanation ranks them
   (largest contribution first), against removal in a seeded random order (averaged over draws) and
   most-recent-first; after each step, the item's score and its rank among the items the user has not
   seen (the user's full history stays excluded, as in the pipeline). A faithful explanation makes
   the score fall fastest.
4. AOPC@k: the mean score drop over the first k removal steps (higher: the explanation found the
   items the score depends on), with paired 95% bootstrap intervals against the random order.

Also: integrated gradients' completeness gap (sum of contributions against score(history) -
score(baseline)), from the mean item vector for every user and from zero vectors for a few users,
and one example explanation made through `pipeline("next-item")` itself.

Writes benchmarks/results/explain.json, .md and .png with the command, the machine and the versions.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmark_utils import RESULTS, load_average, run_header, write_results

RUNS = Path(__file__).resolve().parents[1] / "runs"
CHECKPOINTS = {
    "smollm2-lora": RUNS / "ablations" / "convergence" / "base",
    "sasrec": RUNS / "quality" / "sasrec-seed0",
}
ORDERS = ("occlusion", "integrated_gradients", "most_recent_first", "random")


def test_users(checkpoint: Path) -> list[dict]:
    """The checkpoint's own test split: user id, history (item-table rows, oldest first), target."""
    from hf_seqrec.data.prepare import prepare_data
    from hf_seqrec.training.config import FinetuneConfig

    config = FinetuneConfig.from_yaml(checkpoint / "training_config.yaml")
    return list(prepare_data(config.data_config()).splits["test"])


def order_by(contributions: torch.Tensor) -> list[int]:
    """Positions by contribution, largest first; ties go to the most recent position first."""
    values = contributions.tolist()
    return sorted(range(len(values)), key=lambda p: (-values[p], -p))


def deletion_histories(window: list[int], order: list[int], k: int) -> list[list[int]]:
    """The histories left after removing the first 1..k positions of `order`."""
    histories = []
    for step in range(1, k + 1):
        removed = set(order[:step])
        histories.append([row for position, row in enumerate(window) if position not in removed])
    return histories


def bootstrap_interval(values: np.ndarray, samples: int = 2000, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(samples, len(values)))].mean(axis=1)
    return [round(float(np.percentile(means, 2.5)), 4), round(float(np.percentile(means, 97.5)), 4)]


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ranks_a = torch.argsort(torch.argsort(a)).float()
    ranks_b = torch.argsort(torch.argsort(b)).float()
    return float(torch.corrcoef(torch.stack([ranks_a, ranks_b]))[0, 1])


def evaluate_model(name: str, checkpoint: Path, args: argparse.Namespace) -> dict:
    from hf_seqrec import SeqRecForNextItem
    from hf_seqrec.modeling.explain import integrated_gradients, occlusion, score_histories

    model = SeqRecForNextItem.from_pretrained(checkpoint).eval()
    max_len = int(model.config.max_len)
    users = test_users(checkpoint)
    count = args.users if name == "smollm2-lora" else args.sasrec_users
    sample = sorted(random.Random(args.seed).sample(range(len(users)), min(count, len(users))))
    k = args.k
    curves = {order: {"score_drop": [], "rank": []} for order in ORDERS}
    times = {"occlusion": [], "integrated_gradients": []}
    completeness, agreement, skipped = [], [], []
    zero_baseline = []
    for number, index in enumerate(sample):
        user = users[index]
        history = [int(r) for r in user["history"]]
        window = history[-max_len:]
        if len(window) <= k:
            skipped.append(user["user_id"])
            continue
        seen = torch.tensor(sorted(set(history)))
        full = score_histories(model, [window])[0]
        masked = full.clone()
        masked[seen] = -float("inf")
        item = int(masked.argmax())

        start = time.perf_counter()
        occ = occlusion(model, window, [item])[0]
        times["occlusion"].append(time.perf_counter() - start)
        start = time.perf_counter()
        ig, delta = integrated_gradients(model, window, [item], n_steps=args.ig_steps, return_convergence_delta=True)
        times["integrated_gradients"].append(time.perf_counter() - start)
        ig = ig[0]
        completeness.append({"sum": float(ig.sum()), "gap": float(delta[0])})
        agreement.append(spearman(occ, ig))
        if number < args.zero_baseline_users:
            _, zero_delta = integrated_gradients(
                model, window, [item], baseline="zeros", n_steps=args.ig_steps, return_convergence_delta=True
            )
            zero_baseline.append(float(zero_delta[0]))

        rng = random.Random(args.seed * 100003 + index)
        orders = {
            "occlusion": [order_by(occ)],
            "integrated_gradients": [order_by(ig)],
            "most_recent_first": [list(range(len(window) - 1, -1, -1))],
            "random": [rng.sample(range(len(window)), len(window)) for _ in range(args.random_draws)],
        }
        batch = [h for name_ in ORDERS for order in orders[name_] for h in deletion_histories(window, order, k)]
        scores = score_histories(model, batch)
        allowed = torch.ones(scores.size(1), dtype=torch.bool)
        allowed[seen] = False
        item_scores = scores[:, item]
        ranks = 1 + ((scores[:, allowed] > item_scores.unsqueeze(1)).sum(1))
        offset = 0
        for name_ in ORDERS:
            draws = len(orders[name_])
            block = slice(offset, offset + draws * k)
            offset += draws * k
            drop = (float(full[item]) - item_scores[block]).view(draws, k).mean(0)
            rank = ranks[block].float().view(draws, k).mean(0)
            curves[name_]["score_drop"].append(drop.tolist())
            curves[name_]["rank"].append(rank.tolist())
        if (number + 1) % 20 == 0:
            print(f"{name}: {number + 1}/{len(sample)} users", flush=True)

    summary: dict = {"orders": {}}
    drops = {order: np.array(curves[order]["score_drop"]) for order in ORDERS}
    ranks = {order: np.array(curves[order]["rank"]) for order in ORDERS}
    for order in ORDERS:
        aopc = drops[order].mean(axis=1)
        summary["orders"][order] = {
            f"aopc@{k}": round(float(aopc.mean()), 4),
            f"aopc@{k}_95ci": bootstrap_interval(aopc),
            "mean_score_drop_curve": [round(float(x), 4) for x in drops[order].mean(axis=0)],
            "median_rank_curve": [float(np.median(ranks[order][:, j])) for j in range(k)],
            f"top10_after_{k}": round(float((ranks[order][:, -1] <= 10).mean()), 3),
            "still_top1_after_1": round(float((ranks[order][:, 0] <= 1).mean()), 3),
        }
        if order != "random":
            difference = aopc - drops["random"].mean(axis=1)
            summary["orders"][order][f"aopc@{k}_minus_random_95ci"] = bootstrap_interval(difference)
    gaps = np.array([c["gap"] for c in completeness])
    summary["integrated_gradients_completeness"] = {
        "baseline": "mean item vector",
        "n_steps": args.ig_steps,
        "median_abs_gap": round(float(np.median(np.abs(gaps))), 5),
        "max_abs_gap": round(float(np.abs(gaps).max()), 5),
        "median_abs_sum": round(float(np.median(np.abs([c["sum"] for c in completeness]))), 4),
        "zero_baseline_users": len(zero_baseline),
        "zero_baseline_median_abs_gap": round(float(np.median(np.abs(zero_baseline))), 4) if zero_baseline else None,
        "zero_baseline_max_abs_gap": round(float(np.abs(zero_baseline).max()), 4) if zero_baseline else None,
    }
    summary["spearman_occlusion_vs_ig_mean"] = round(float(np.mean(agreement)), 3)
    summary["seconds_per_explained_recommendation"] = {
        method: {"median": round(statistics.median(values), 3), "mean": round(statistics.fmean(values), 3)}
        for method, values in times.items()
    }
    return {
        "checkpoint": str(checkpoint),
        "backbone": model.config.backbone_name_or_path,
        "max_len": max_len,
        "users": len(sample) - len(skipped),
        "users_skipped_history_too_short": skipped,
        "median_history_length_read": float(np.median([min(len(users[i]["history"]), max_len) for i in sample])),
        "k": k,
        "summary": summary,
    }


def example_explanation(checkpoint: Path, user_id: str) -> dict:
    """One real explanation, made exactly as a user would: through pipeline("next-item")."""
    import hf_seqrec  # noqa: F401
    from transformers import pipeline

    recommend = pipeline("next-item", model=str(checkpoint))
    users = {u["user_id"]: u for u in test_users(checkpoint)}
    history = [recommend.catalog.item_ids[r] for r in users[user_id]["history"]]
    result = {"user_id": user_id, "history_length": len(history), "history_read": history[-recommend.max_len :]}
    for method in ("occlusion", "integrated_gradients"):
        top = recommend({"history": history}, top_k=1, explain=True, explain_method=method)[0]
        result["recommended"] = {"item_id": top["item_id"], "text": top["text"], "score": round(top["score"], 4)}
        result[method] = [
            {**entry, "contribution": round(entry["contribution"], 4)} for entry in top["explanation"]
        ]
    target = users[user_id]["target"]
    result["test_target"] = {"item_id": recommend.catalog.item_ids[target], "text": recommend.catalog.texts[target]}
    return result


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = result["models"]
    figure, axes = plt.subplots(2, len(models), figsize=(5.5 * len(models), 7), squeeze=False)
    for column, (name, model) in enumerate(models.items()):
        steps = list(range(1, model["k"] + 1))
        for order, values in model["summary"]["orders"].items():
            axes[0][column].plot(steps, values["mean_score_drop_curve"], marker="o", label=order)
            axes[1][column].plot(steps, values["median_rank_curve"], marker="o", label=order)
        axes[0][column].set_title(f"{name} ({model['users']} test users)")
        axes[0][column].set_ylabel("mean drop of the top-1 item's score")
        axes[1][column].set_ylabel("median rank of the top-1 item")
        axes[1][column].set_yscale("log")
        axes[1][column].set_xlabel("history items removed")
        axes[0][column].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def title(text: str) -> str:
    """"Toy Story (1995) | Animation, ..." -> "Toy Story (1995)" (a table cell cannot hold the "|")."""
    return text.split(" | ", 1)[0]


def render_markdown(result: dict) -> str:
    m = result["machine"]
    lines = [
        "# Faithfulness of `explain=True` (MovieLens-100K test users)",
        "",
        f"Command: `{result['command'].strip()}`  ({result['date']}, {result['wall_seconds']} s)",
        "",
        f"Machine: {m['cpu']}, {m['cpu_count']} CPU cores, torch {m['torch']} with {m['torch_threads']} threads, "
        f"transformers {m['transformers']}, captum {m['captum']}, Python {m['python']}. Load average when the run "
        f"started: {m['load_average_at_start']} (other jobs on the machine inflate the times).",
        "",
        "For each sampled test user (seed " + str(result["seed"]) + "), the top-1 recommendation of the history the model reads "
        "is explained by occlusion and by integrated gradients (from the mean item vector, "
        f"{result['ig_steps']} steps). Then the history items are removed one at a time, in the order each explanation "
        "ranks them (largest contribution first), in a seeded random order "
        f"(mean of {result['random_draws']} draws) and most recent first. AOPC@k is the mean drop of the item's score "
        "over the first k removals: the faster an order finds what the score rests on, the larger. Rank: among the items "
        "the user has not seen (the pipeline's exclusion), 1 = still the recommendation. Float32 scores, as the pipeline's default.",
        "",
    ]
    for name, model in result["models"].items():
        s, k = model["summary"], model["k"]
        lines += [
            f"## {name}",
            "",
            f"`{model['checkpoint']}`: {model['users']} test users (median {model['median_history_length_read']:.0f} history "
            f"items read, max_len {model['max_len']}), k = {k}.",
            "",
            f"| removal order | AOPC@{k} [95% CI] | minus random [95% CI] | still top-1 after 1 removal | in top 10 after {k} | median rank after 1, 5, {k} |",
            "|---|---|---|---|---|---|",
        ]
        for order, v in s["orders"].items():
            ci = v[f"aopc@{k}_95ci"]
            diff = v.get(f"aopc@{k}_minus_random_95ci")
            ranks = v["median_rank_curve"]
            lines.append(
                f"| {order} | {v[f'aopc@{k}']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}] | "
                + (f"[{diff[0]:.3f}, {diff[1]:.3f}]" if diff else "—")
                + f" | {v['still_top1_after_1']:.0%} | {v[f'top10_after_{k}']:.0%} | {ranks[0]:.3g}, {ranks[min(4, k - 1)]:.3g}, {ranks[-1]:.3g} |"
            )
        c, t = s["integrated_gradients_completeness"], s["seconds_per_explained_recommendation"]
        lines += [
            "",
            f"Integrated gradients' completeness (sum of contributions against score(history) - score(mean item at every "
            f"position)): median |gap| {c['median_abs_gap']}, max {c['max_abs_gap']}, for a median |sum| of "
            f"{c['median_abs_sum']}."
            + (
                f" From zero vectors instead ({c['zero_baseline_users']} users): median |gap| "
                f"{c['zero_baseline_median_abs_gap']}, max {c['zero_baseline_max_abs_gap']}."
                if c["zero_baseline_users"]
                else ""
            ),
            "",
            f"Agreement of the two methods: mean Spearman correlation of their contributions {s['spearman_occlusion_vs_ig_mean']}.",
            "",
            f"Time per explained recommendation (top-1, this CPU): occlusion median {t['occlusion']['median']} s "
            f"(mean {t['occlusion']['mean']}), integrated gradients median {t['integrated_gradients']['median']} s "
            f"(mean {t['integrated_gradients']['mean']}).",
            "",
        ]
    example = result.get("example")
    if example:
        lines += [
            "## Example (through `pipeline(\"next-item\")`)",
            "",
            f"{result['example_model']}, test user {example['user_id']} ({example['history_length']} items in the history): "
            f"recommended **{example['recommended']['text']}** (score {example['recommended']['score']}); "
            f"the held-out next item was {example['test_target']['text']}. The model reads the last "
            f"{len(example['history_read'])} items.",
            "",
            "| occlusion: top contributions | integrated gradients: top contributions |",
            "|---|---|",
        ]
        for a, b in zip(example["occlusion"][:5], example["integrated_gradients"][:5]):
            lines.append(f"| {title(a['text'])} ({a['contribution']:+.3f}) | {title(b['text'])} ({b['contribution']:+.3f}) |")
        lines.append("")
    lines += [f"![deletion curves]({result['figure']})", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="smollm2-lora,sasrec", help=f"comma-separated, from {sorted(CHECKPOINTS)}")
    parser.add_argument("--users", type=int, default=100, help="sampled test users for the LM")
    parser.add_argument("--sasrec_users", type=int, default=200, help="sampled test users for SASRec")
    parser.add_argument("--k", type=int, default=10, help="removal steps (AOPC@k)")
    parser.add_argument("--random_draws", type=int, default=3)
    parser.add_argument("--ig_steps", type=int, default=16)
    parser.add_argument("--zero_baseline_users", type=int, default=10, help="users whose IG is also run from zero vectors")
    parser.add_argument("--example_user", default="1", help="test user whose explanation is shown")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=str(RESULTS / "explain"), help="path without extension")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    load_before = load_average()
    begin = time.perf_counter()
    torch.manual_seed(args.seed)

    models = {}
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        if name not in CHECKPOINTS:
            raise SystemExit(f"error: unknown model {name!r}; expected one of {sorted(CHECKPOINTS)}")
        models[name] = evaluate_model(name, CHECKPOINTS[name], args)
    example_model = "smollm2-lora" if "smollm2-lora" in models else next(iter(models))
    result = {
        **run_header("explain.py", argv, load_before, "captum"),
        "seed": args.seed,
        "ig_steps": args.ig_steps,
        "random_draws": args.random_draws,
        "models": models,
        "example_model": example_model,
        "example": example_explanation(CHECKPOINTS[example_model], args.example_user),
    }
    result["wall_seconds"] = round(time.perf_counter() - begin, 1)

    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    result["figure"] = output.with_suffix(".png").name
    write_results(output, result, render_markdown(result))
    plot(result, output.with_suffix(".png"))
    print(render_markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
