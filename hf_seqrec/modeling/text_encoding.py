"""Item text encodings: what the pretrained LM makes of each item's text, one vector per item.

Two kinds. ``token-embeddings`` averages the backbone's input token embeddings of the text: cheap,
but it never lets the LM read the words in context ("Toy" next to "Story"). ``mean-pooled`` and
``last-token`` run the frozen pretrained decoder over the text (optionally wrapped in a prompt) and
pool its final hidden states. The decoder is frozen and the computation deterministic, so an item
added to a trained model later is encoded exactly like the items it was trained with.

This file is copied into checkpoints with the model code (same-folder import), so a model loaded
with ``trust_remote_code`` encodes new items the same way.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import torch
from torch import nn

TOKEN_EMBEDDINGS = "token-embeddings"
MEAN_POOLED = "mean-pooled"
LAST_TOKEN = "last-token"
TEXT_ENCODERS = (TOKEN_EMBEDDINGS, MEAN_POOLED, LAST_TOKEN)


def check_text_prompt(prompt: str | None) -> None:
    """A prompt is a `str.format` template with exactly one `{text}` field (the item's text)."""
    if prompt is None:
        return
    if not isinstance(prompt, str) or "{text}" not in prompt:
        raise ValueError(f"item_text_prompt must be a template containing '{{text}}', got {prompt!r}")
    try:
        prompt.format(text="")
    except (KeyError, IndexError, ValueError) as error:
        raise ValueError(f"item_text_prompt {prompt!r}: only the {{text}} field is allowed ({error})") from None


def render_prompt(texts: Sequence[str], prompt: str | None) -> list[str]:
    return list(texts) if prompt is None else [prompt.format(text=text) for text in texts]


@torch.no_grad()
def mean_token_embeddings(texts: Sequence[str], tokenizer, token_embeddings: torch.Tensor) -> torch.Tensor:
    """`[len(texts), hidden]`: the mean input token embedding of each text (zeros for an empty text)."""
    encoded = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    result = torch.zeros(len(encoded), token_embeddings.size(1), dtype=torch.float32)
    for row, token_ids in enumerate(encoded):
        if token_ids:
            ids = torch.tensor(token_ids, device=token_embeddings.device)
            result[row] = token_embeddings[ids].float().mean(0).cpu()
    return result


@torch.no_grad()
def contextual_encodings(
    texts: Sequence[str],
    tokenizer,
    decoder: nn.Module,
    pooling: str,
    target_norm: float,
    batch_size: int = 32,
) -> torch.Tensor:
    """`[len(texts), hidden]`: the decoder's final hidden states of each text, pooled, at `target_norm`.

    Right padding under a causal mask: a real token never attends to the padding after it, so a text's
    states do not depend on what else is in its batch. Texts are sorted by length so batches carry
    little padding. Each pooled vector is rescaled to `target_norm` (the mean norm of the backbone's
    input token embeddings): the encodings feed the backbone as input vectors, and the final layer's
    (normalised) states live at a very different scale from the embeddings the backbone was trained on.
    """
    if pooling not in (MEAN_POOLED, LAST_TOKEN):
        raise ValueError(f"pooling must be {MEAN_POOLED!r} or {LAST_TOKEN!r}, got {pooling!r}")
    encoded = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    device = next(decoder.parameters()).device
    hidden_size = decoder.config.hidden_size
    result = torch.zeros(len(encoded), hidden_size, dtype=torch.float32)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    order = sorted((row for row in range(len(encoded)) if encoded[row]), key=lambda row: len(encoded[row]))
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        longest = max(len(encoded[row]) for row in rows)
        input_ids = torch.full((len(rows), longest), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), longest), dtype=torch.long)
        for slot, row in enumerate(rows):
            input_ids[slot, : len(encoded[row])] = torch.tensor(encoded[row])
            mask[slot, : len(encoded[row])] = 1
        states = decoder(input_ids=input_ids.to(device), attention_mask=mask.to(device)).last_hidden_state.float().cpu()
        if pooling == MEAN_POOLED:
            pooled = (states * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)
        else:
            pooled = states[torch.arange(len(rows)), mask.sum(1) - 1]
        result[rows] = pooled
    norms = result.norm(dim=1, keepdim=True)
    return torch.where(norms > 0, result / norms.clamp(min=1e-12) * target_norm, result)


@contextlib.contextmanager
def adapters_disabled(backbone: nn.Module) -> Iterator[None]:
    """Run a (possibly peft-wrapped) backbone as the pretrained model: LoRA off, eval mode, restored after."""
    was_training = backbone.training
    backbone.eval()
    context = backbone.disable_adapter() if hasattr(backbone, "disable_adapter") else contextlib.nullcontext()
    try:
        with context:
            yield
    finally:
        backbone.train(was_training)
