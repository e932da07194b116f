"""Why an item was recommended: the contribution of each item of the history to the item's score.

    >>> recommend({"history": ["50", "172", "133"]}, top_k=3, explain=True)
    [{'item_id': ..., 'text': ..., 'score': ..., 'rank': 1,
      'explanation': [{'item_id': '172', 'text': ..., 'contribution': 0.84, 'position': 1}, ...]}, ...]

The explained quantity is the recommended item's score: the model's logit for it after the history,
computed exactly as the next-item pipeline computes it (the same right-padded ids and attention mask
through the same ``model(input_item_ids, attention_mask, return_logits=True)`` call, in the model's
own dtype). It is the score *before* the pipeline's masking: masking decides which items may be
shown (items already in the history are not), it does not change any score. An item of the history
never has its own score explained away by being removed, since a recommended item is not in the
history unless ``exclude_seen=False``. Only the items the model reads are explained: the most recent
``max_len`` items of the history (older ones are not read, so they contribute nothing and are not listed).

Two methods:

``occlusion`` (default)
    ``contribution = score(item | history) - score(item | history without that one item)``, for every
    position of the history. The ``L`` leave-one-out histories and the full history are scored in
    ONE batched forward pass, which explains every recommended item of the history at once. The
    meaning is exact (how much this item, removed, would lower or raise the score), interactions
    between items are not split: the contributions need not add up to anything.
    Removing the only item of a one-item history leaves an empty history, which the model cannot
    read; it is scored as one position holding the ``baseline`` vector (below), "an item of no
    particular kind".

``integrated_gradients``
    Integrated gradients (Sundararajan et al., 2017, through captum) of the item's score with respect
    to the input vectors of the history, along the straight path from the ``baseline`` vectors to the
    history's vectors; the contribution of a position is the sum of its attribution over the hidden
    dimension. The contributions add up to ``score(item | history) - score(item | baseline at every
    position)`` up to the path integral's numerical error (completeness; captum's convergence delta
    measures the gap, and the tests check it). ``n_steps`` forward and backward passes per item.

``baseline`` (``"mean"`` by default, or ``"zeros"``): the input vector that stands for "no item". The
mean item vector of the catalogue is the default, because a zero vector is a poor reference for a
pretrained LM: its first RMSNorm divides each position by the vector's length, so along the path
``alpha * x`` the normalised input barely changes until ``alpha`` is within ``sqrt(eps)/|x|`` of 0,
and much of the score's change happens there, in a sliver that a few dozen integration steps never
sample; completeness then fails by a wide margin. The path from the mean item keeps every position
at a sensible length, and IG then answers "why this item rather than an average one". ``"zeros"``
suits backbones that add something to every input first (SASRec's position embeddings) or have no
normalisation (the recurrent baselines), and is kept for comparison. Measured on the top-1
recommendations of MovieLens-100K test users with the trained SmolLM2 LM at 16 steps
(benchmarks/results/explain.md): from the mean item the completeness gap had a median of 0.0005
(largest 0.18) for contributions summing to about 2.9; from zeros it had a median of 1.7 (largest 5.0).

Input modes: integrated gradients, and occlusion of a one-item history, feed input vectors
(``inputs_embeds``) and so need ``input_mode="id"``; occlusion of longer histories works in every mode.
Integrated gradients also need gradients through the backbone, which a pipeline built with
``precision="int8"`` (dynamically quantized layers) does not have; occlusion works in every precision.

This file travels with ``next_item.py`` into every checkpoint (``trust_remote_code``), so it imports
nothing from hf_seqrec, only torch, the standard library and its same-folder ``padding.py`` (the
pipeline's batch); captum is imported only when integrated gradients are asked for.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from .padding import pad_histories

OCCLUSION = "occlusion"
INTEGRATED_GRADIENTS = "integrated_gradients"
METHODS = (OCCLUSION, INTEGRATED_GRADIENTS)
DEFAULT_METHOD = OCCLUSION
BASELINES = ("mean", "zeros")
DEFAULT_BASELINE = "mean"
DEFAULT_IG_STEPS = 32
# Histories scored per forward pass by occlusion; L + 1 of them for a history of L items.
OCCLUSION_BATCH = 64


# ----------------------------------------------------------------------------- scoring as the pipeline does
@torch.no_grad()
def score_histories(model: Any, histories: Sequence[Sequence[int]], batch_size: int = OCCLUSION_BATCH) -> torch.Tensor:
    """`[len(histories), num_items]` float32 scores: the pipeline's own forward call on each (non-empty) history."""
    if any(len(h) == 0 for h in histories):
        raise ValueError("score_histories needs non-empty histories; an empty one is scored by reference_scores")
    device = _device(model)
    chunks = []
    with _eval_mode(model):
        for start in range(0, len(histories), batch_size):
            ids, mask = pad_histories(histories[start : start + batch_size], device)
            chunks.append(model(input_item_ids=ids, attention_mask=mask, return_logits=True).logits.float().cpu())
    return torch.cat(chunks)


def baseline_vector(model: Any, baseline: str = DEFAULT_BASELINE) -> torch.Tensor:
    """`[hidden_size]`: the input vector that stands for "no item" (see the module docstring)."""
    _check_choice("baseline", baseline, BASELINES)
    with torch.no_grad(), _eval_mode(model):
        vectors = model.get_input_embeddings().vectors()
        return vectors.mean(0) if baseline == "mean" else torch.zeros_like(vectors[0])


@torch.no_grad()
def reference_scores(model: Any, baseline: str = DEFAULT_BASELINE) -> torch.Tensor:
    """`[num_items]` scores after an empty history: one position holding the baseline vector."""
    vector = baseline_vector(model, baseline)
    with _eval_mode(model):
        return model(inputs_embeds=vector.view(1, 1, -1), return_logits=True).logits.float().cpu()[0]


# ----------------------------------------------------------------------------- the two methods
def occlusion(
    model: Any, history: Sequence[int], items: Sequence[int], *, baseline: str = DEFAULT_BASELINE
) -> torch.Tensor:
    """`[len(items), len(history)]`: score with the full history minus score without each position's item.

    One forward pass scores the full history and its ``L`` leave-one-out histories together (in
    chunks of ``OCCLUSION_BATCH`` histories for long ones), for every item of ``items`` at once.
    """
    history, items = _checked(model, history, items)
    rows = torch.as_tensor(items, dtype=torch.long)
    if len(history) == 1:
        _require_input_vectors(model, "occlusion of a one-item history (its empty history is the baseline vector)")
        full = score_histories(model, [history])[0]
        without = reference_scores(model, baseline).unsqueeze(0)
    else:
        removed = [history[:position] + history[position + 1 :] for position in range(len(history))]
        scores = score_histories(model, [history, *removed])
        full, without = scores[0], scores[1:]
    return (full[rows].unsqueeze(1) - without[:, rows].T).contiguous()


def integrated_gradients(
    model: Any,
    history: Sequence[int],
    items: Sequence[int],
    *,
    baseline: str = DEFAULT_BASELINE,
    n_steps: int = DEFAULT_IG_STEPS,
    internal_batch_size: int | None = None,
    return_convergence_delta: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """`[len(items), len(history)]`: integrated gradients of each item's score, summed over the hidden dimension.

    With ``return_convergence_delta`` also returns, per item, captum's completeness gap:
    ``sum(contributions) - (score(history) - score(baseline at every position))``.
    ``internal_batch_size`` (default ``n_steps``: one item's path per pass) bounds memory.
    """
    try:
        from captum.attr import IntegratedGradients
    except ImportError as error:  # an optional dependency: occlusion needs nothing beyond torch
        raise ImportError(
            "explain_method='integrated_gradients' needs captum: pip install captum (or hf_seqrec[explain]); "
            "explain_method='occlusion' needs nothing more"
        ) from error
    history, items = _checked(model, history, items)
    _require_input_vectors(model, "integrated gradients")
    if getattr(model, "inference_precision", "fp32") == "int8":
        raise ValueError(
            "integrated gradients need gradients through the backbone, and int8 dynamically quantized layers have none; "
            "use explain_method='occlusion', or a pipeline built with precision 'fp32' or 'bf16'"
        )
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 2:
        raise ValueError(f"n_steps must be an integer of at least 2; got {n_steps!r}")
    device = _device(model)
    ids, mask = pad_histories([history], device)
    base = baseline_vector(model, baseline)

    def item_scores(inputs_embeds: torch.Tensor) -> torch.Tensor:
        attention = mask.expand(inputs_embeds.size(0), -1)
        return model(inputs_embeds=inputs_embeds, attention_mask=attention, return_logits=True).logits.float()

    with _eval_mode(model), torch.enable_grad():
        with torch.no_grad():
            embeds = model.get_input_embeddings()(ids)  # [1, L, hidden], the vectors forward() looks up
        inputs = embeds.expand(len(items), -1, -1).detach().clone().requires_grad_(True)
        baselines = base.to(inputs.dtype).view(1, 1, -1).expand_as(inputs).contiguous()
        attributions, delta = IntegratedGradients(item_scores).attribute(
            inputs,
            baselines=baselines,
            target=list(items),
            n_steps=n_steps,
            internal_batch_size=internal_batch_size or n_steps,
            return_convergence_delta=True,
        )
    contributions = attributions.detach().float().sum(-1).cpu()
    if return_convergence_delta:
        return contributions, delta.detach().float().cpu()
    return contributions


def explain(
    model: Any,
    history: Sequence[int],
    items: Sequence[int],
    method: str = DEFAULT_METHOD,
    *,
    baseline: str = DEFAULT_BASELINE,
    n_steps: int = DEFAULT_IG_STEPS,
) -> torch.Tensor:
    """`[len(items), len(history)]` contributions of each history position to each item's score."""
    _check_choice("explain_method", method, METHODS)
    if method == OCCLUSION:
        return occlusion(model, history, items, baseline=baseline)
    return integrated_gradients(model, history, items, baseline=baseline, n_steps=n_steps)


def explanation_records(
    contributions: Sequence[float], history: Sequence[int], item_ids: Sequence[str], texts: Sequence[str]
) -> list[dict[str, Any]]:
    """One ``{"item_id", "text", "contribution", "position"}`` per history position, largest contribution first.

    ``position`` is the item's place in the history the model read (0 = oldest), which tells the
    occurrences of an item seen twice apart. Ties keep the most recent position first.
    """
    records = [
        {"item_id": item_ids[row], "text": texts[row], "contribution": float(value), "position": position}
        for position, (row, value) in enumerate(zip(history, contributions))
    ]
    records.sort(key=lambda r: (-r["contribution"], -r["position"]))
    return records


def explain_parameters(
    explain: bool | None, method: str | None, baseline: str | None, n_steps: int | None
) -> dict[str, Any]:
    """The pipeline's postprocess parameters for its ``explain*`` call parameters (checked; empty when unset)."""
    params: dict[str, Any] = {}
    if explain is not None:
        if not isinstance(explain, bool):
            raise TypeError(f"explain must be True or False; got {explain!r}")
        params["explain"] = explain
    if method is not None:
        _check_choice("explain_method", method, METHODS)
        params["explain_method"] = method
    if baseline is not None:
        _check_choice("explain_baseline", baseline, BASELINES)
        params["explain_baseline"] = baseline
    if n_steps is not None:
        if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 2:
            raise ValueError(f"explain_steps must be an integer of at least 2; got {n_steps!r}")
        params["explain_steps"] = n_steps
    return params


# ----------------------------------------------------------------------------- helpers
def _checked(model: Any, history: Sequence[int], items: Sequence[int]) -> tuple[list[int], list[int]]:
    history = [int(row) for row in history]
    items = [int(row) for row in items]
    num_items = int(model.config.num_items)
    if not history:
        raise ValueError("an explanation needs a non-empty history")
    if not items:
        raise ValueError("an explanation needs at least one item to explain")
    bad = [row for row in history + items if not 0 <= row < num_items]
    if bad:
        raise ValueError(f"item rows {bad[:5]} are outside the item table of {num_items} rows")
    if len(history) > int(model.config.max_len):
        raise ValueError(
            f"the history has {len(history)} items but the model reads at most max_len={model.config.max_len}; "
            "pass the most recent max_len items"
        )
    return history, items


def _require_input_vectors(model: Any, what: str) -> None:
    mode = model.config.input_mode
    if mode != "id":
        raise ValueError(
            f"{what} feeds the model input vectors, which needs input_mode='id'; this model reads input_mode={mode!r}. "
            "Use explain_method='occlusion' on a history of two items or more"
        )


def _check_choice(name: str, value: object, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}; got {value!r}")


def _device(model: Any) -> torch.device:
    return next(model.parameters()).device


@contextlib.contextmanager
def _eval_mode(model: Any) -> Iterator[None]:
    """Explanations are of the scores the pipeline gives: dropout off, whatever mode the model was in."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)
