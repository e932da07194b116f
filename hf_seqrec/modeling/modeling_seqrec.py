"""`SeqRecForNextItem`: a causal-LM backbone that reads item sequences and scores the whole catalogue."""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from peft import LoraConfig, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModel, PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import ModelOutput

# Same-folder import (copied into checkpoints with this file): registers the from-scratch baseline
# backbones with AutoConfig/AutoModel, so a GRU4Rec or LSTM checkpoint rebuilds its backbone anywhere.
from .baselines import is_baseline_backbone
from .configuration_seqrec import TEXT_DESIGNS, SeqRecConfig
from .text_inputs import ItemTextInputs, gather_item_states
from .text_encoding import TOKEN_EMBEDDINGS, adapters_disabled, contextual_encodings, mean_token_embeddings, render_prompt

ITEM_TABLE_FILE = "item_table.safetensors"
ADAPTER_FILE = "adapter_model.safetensors"
# Not peft's "adapter_config.json": with that file at the root, transformers' AutoModel and pipeline()
# take a Hub repo for a bare peft adapter and load `base_model_name_or_path` (the backbone) instead.
ADAPTER_CONFIG_FILE = "seqrec_adapter_config.json"
BACKBONE_FILE = "backbone.safetensors"
CATALOG_FILE = "item_catalog.jsonl"
IGNORE_INDEX = -100
# The next-item pipeline (hf_seqrec/pipelines/next_item.py), copied next to this file in every checkpoint.
PIPELINE_FILE = "next_item.py"
# Same-folder modules next_item.py imports (explanations, inference precision), copied with it.
PIPELINE_MODULE_FILES = ("explain.py", "precision.py")
POPULARITY_FILE = "item_popularity.json"
PIPELINE_TASK = "next-item"
# How a text tower builds an item's vector (see ItemTable).
PROJECTION, BOUNDED_DELTA, NULL_SPACE = TEXT_DESIGNS
# L2 penalty of the ridge regression that starts the text popularity map (standardised text features).
TEXT_OFFSET_RIDGE = 100.0
# Every item's text encoding, kept with the checkpoint so it is computed once per catalogue.
TEXT_ENCODINGS_FILE = "item_text_encodings.safetensors"


@dataclass
class NextItemOutput(ModelOutput):
    """Output of :class:`SeqRecForNextItem`.

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*):
            Full-catalogue cross-entropy of the next item, over every labelled position.
        logits (`torch.FloatTensor` of shape `(batch_size, num_items)`, *optional*):
            Scores of every catalogue item as the next item after each sequence's last real
            position (the one a recommendation is made from).
        last_hidden_state (`torch.FloatTensor` of shape `(batch_size, seq_len, hidden_size)`):
            The backbone's final hidden states.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    last_hidden_state: torch.FloatTensor | None = None


class ItemTable(nn.Module):
    """One vector per catalogue item: the input embedding of an item and, tied, its output embedding.

    A module of its own (not a bare `nn.Parameter`) so that it is trained and saved in full
    alongside a LoRA adapter, and kept outside the backbone's vocabulary so the adapter never
    has to carry the 49k-row token embedding.

    With `text_tower=True` an item's vector is `text_projection(z[i]) + weight[i]`, where `z[i]` is
    the frozen encoding of the item's text standardised per dimension with the catalogue's mean and
    spread (`text_mean`, `text_scale`), and `weight[i]` an ID embedding that only items seen in
    training use (`has_id_embedding`). Standardising removes the component every item's text shares,
    so the projection learns from what tells items apart. An item that training never saw, or one
    added later with :meth:`SeqRecForNextItem.add_items`, is scored from its text alone instead of
    from an untrained row. `id_dropout` leaves out whole ID embeddings during training (without
    rescaling the kept ones), so a text-only item is a state the model is trained on: a cold item
    at test time looks like a warm item whose ID was dropped.

    `text_design` says how the tower builds that vector. `"projection"` is the above. With
    `"bounded-delta"` an item's vector is its frozen content vector (the standardised text encoding,
    scaled to a fixed length) plus a trained delta whose norm is at most `delta_max` times that
    length; a cold item is its content vector. Nothing maps the text, so a new item lands exactly
    where a trained item with the same text started, and no trained item is ever far from it.
    `"null-space"` keeps the text in the subspace holding `semantic_variance` of the encodings'
    variance (whitened) and lets the deltas use only the directions the text leaves empty, so
    the ID part never overwrites what the text says (bounded by `delta_max` too, unless it is None).

    With `text_popularity=True` (and `score_bias`), an item without an ID embedding takes the score
    offset a linear map predicts from its standardised text encoding, instead of the one offset of
    an item of unknown popularity. ID dropout trains the map: an item whose ID a pass drops is
    scored with the predicted offset, so the map learns how popular items with such texts are.

    With `score_bias=True` every item also has a scalar added to its score (`bias[i]`, started at the
    item's log training frequency by :meth:`set_score_bias_from_counts`), so popularity does not
    have to be learned into the vectors. Items without an ID
    embedding get the offset of an item of unknown popularity (`unknown_item_offset`): their
    popularity is unknown, not zero. So does, for one training pass, an item whose ID embedding ID
    dropout left out (:meth:`vectors_and_offsets`): it looks like a cold item in full.
    """

    def __init__(
        self,
        num_items: int,
        hidden_size: int,
        text_tower: bool = False,
        id_dropout: float = 0.0,
        score_bias: bool = False,
        tied: bool = True,
        text_design: str = PROJECTION,
        delta_max: float | None = 0.5,
        semantic_variance: float = 0.9,
        text_popularity: bool = False,
    ) -> None:
        super().__init__()
        if text_design not in TEXT_DESIGNS:
            raise ValueError(f"text_design must be one of {TEXT_DESIGNS}, got {text_design!r}")
        self.weight = nn.Parameter(torch.empty(num_items, hidden_size))
        # Untied: the scores use a second table of their own (`output_weight`), so what an item
        # means as context and what makes it a likely next item are learned apart.
        self.output_weight = None if tied else nn.Parameter(torch.empty(num_items, hidden_size))
        self.text_tower = text_tower
        self.id_dropout = id_dropout
        self.bias = nn.Parameter(torch.zeros(num_items)) if score_bias else None
        self.text_design = text_design
        self.text_popularity = text_popularity
        self.delta_max = delta_max
        self.semantic_variance = semantic_variance
        if text_tower:
            self.register_buffer("text_features", torch.zeros(num_items, hidden_size))
            self.register_buffer("text_mean", torch.zeros(hidden_size))
            self.register_buffer("text_scale", torch.ones(hidden_size))
            self.register_buffer("has_id_embedding", torch.ones(num_items))
            if text_design == PROJECTION:
                self.text_projection = nn.Linear(hidden_size, hidden_size)
            else:
                # The frozen content vectors' length: the mean norm of the raw text encodings, so
                # they enter the backbone at the scale of the embeddings it was trained on.
                self.register_buffer("content_norm", torch.ones(()))
            if text_popularity:
                if not score_bias:
                    raise ValueError("text_popularity needs score_bias=True: it predicts the score offset of items without one")
                # An item without an ID embedding takes the offset this predicts from its text.
                self.text_offset = nn.Linear(hidden_size, 1)
            if text_design == NULL_SPACE:
                # Right singular vectors of the centred text encodings, their spreads, and which of
                # them carry the text (the rest are the null space the ID deltas live in).
                self.register_buffer("text_basis", torch.eye(hidden_size))
                self.register_buffer("text_spread", torch.ones(hidden_size))
                self.register_buffer("semantic_mask", torch.ones(hidden_size))

    @property
    def num_items(self) -> int:
        return self.weight.size(0)

    def vectors(self) -> torch.Tensor:
        """Every item's vector, `[num_items, hidden_size]` (the ID table itself without a text tower)."""
        return self._vectors(self._id_mask_for_step())

    def vectors_and_offsets(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Every item's vector and score offset for one forward pass, from one ID-dropout draw.

        An item whose ID embedding is dropped in this pass also takes the offset of an unknown item
        (see :meth:`score_bias`): with both, it looks exactly like a cold item at test time, which
        is what ID dropout trains for. Separate calls to :meth:`vectors` and :meth:`score_bias`
        cannot give that: each would see its own draw, or none.
        """
        uses_id = self._id_mask_for_step()
        return self._vectors(uses_id), self._offsets(uses_id)

    def _id_mask_for_step(self) -> torch.Tensor | None:
        """1 for the items whose ID embedding this pass uses (ID dropout applied in training); None without a text tower."""
        if not self.text_tower:
            return None
        uses_id = self.has_id_embedding
        if self.training and self.id_dropout > 0:
            # Not rescaled: a kept ID embedding is the same at training and test time.
            uses_id = uses_id * (torch.rand_like(uses_id) >= self.id_dropout).to(uses_id.dtype)
        return uses_id

    def _vectors(self, uses_id: torch.Tensor | None) -> torch.Tensor:
        if uses_id is None:
            return self.weight
        if self.text_design == PROJECTION:
            standardised = (self.text_features - self.text_mean) / self.text_scale
            text_part = self.text_projection(standardised.to(self.text_projection.weight.dtype))
            return text_part + self.weight * uses_id.to(self.weight.dtype).unsqueeze(1)
        return self.content_vectors().to(self.weight.dtype) + self.bounded_deltas() * uses_id.to(self.weight.dtype).unsqueeze(1)

    def content_vectors(self) -> torch.Tensor:
        """`[num_items, hidden]`: each item's frozen content vector (bounded-delta and null-space designs).

        `bounded-delta`: the standardised text encoding scaled to `content_norm`. `null-space`: its
        whitened component in the subspace that holds `semantic_variance` of the text encodings'
        variance, scaled the same way. Unit direction times a fixed length: every item, trained or
        not, sits on the same sphere, so a new item is as reachable as a trained one.
        """
        if self.text_design == NULL_SPACE:
            # One [hidden, hidden] map (whiten, keep the text subspace, map back), then one product with
            # the catalogue: the map costs hidden**3, the catalogue product num_items * hidden**2.
            semantic_map = (self.text_basis * (self.semantic_mask / self.text_spread)) @ self.text_basis.T
            direction = (self.text_features - self.text_mean) @ semantic_map
        else:
            direction = (self.text_features - self.text_mean) / self.text_scale
        return F.normalize(direction, dim=1) * self.content_norm

    def bounded_deltas(self) -> torch.Tensor:
        """`[num_items, hidden]`: the trained per-item corrections, each no longer than `delta_max` × `content_norm`.

        The bound keeps a trained item within a fixed angle of its content vector (cosine at least
        `sqrt(1 - delta_max**2)`), so trained items cannot drift into regions no cold item reaches.
        The null-space design first projects each delta onto the directions the text does not use.
        """
        delta = self.weight
        if self.text_design == NULL_SPACE:
            null_map = (self.text_basis * (1.0 - self.semantic_mask)) @ self.text_basis.T
            delta = delta @ null_map.to(delta.dtype)
        if self.delta_max is None:
            return delta
        limit = self.delta_max * self.content_norm.to(delta.dtype)
        norms = delta.norm(dim=1, keepdim=True)
        return delta * torch.clamp(limit / norms.clamp(min=1e-12), max=1.0)

    @torch.no_grad()
    def set_text_features(self, encodings: torch.Tensor) -> None:
        """Store every item's text encoding and restart the projection at the identity on them.

        The standardisation statistics come from these encodings (the training catalogue) and stay
        fixed afterwards, so items added later are standardised exactly like the training items.
        With the projection at `diag(scale)` and bias `mean`, every item's vector starts as its raw
        text encoding: where an ID-only table initialised from text starts.
        """
        self.text_features.copy_(encodings.to(self.text_features))
        self.text_mean.copy_(self.text_features.mean(0))
        self.text_scale.copy_(self.text_features.std(0).clamp(min=1e-6) if self.num_items > 1 else torch.ones_like(self.text_scale))
        if self.text_design == PROJECTION:
            self.text_projection.weight.copy_(torch.diag(self.text_scale))
            self.text_projection.bias.copy_(self.text_mean)
            return
        self.content_norm.copy_(self.text_features.norm(dim=1).mean())
        if self.text_design == NULL_SPACE:
            centred = (self.text_features - self.text_mean).double()
            _, singular, basis_t = torch.linalg.svd(centred, full_matrices=True)
            spread = torch.zeros(self.text_features.size(1), dtype=torch.float64)
            spread[: singular.numel()] = singular / max(self.num_items - 1, 1) ** 0.5
            share = torch.cumsum(spread**2, 0) / (spread**2).sum().clamp(min=1e-30)
            kept = int(torch.searchsorted(share, torch.tensor(self.semantic_variance, dtype=torch.float64)).item()) + 1
            self.text_basis.copy_(basis_t.T.to(self.text_basis))
            self.text_spread.copy_(spread.clamp(min=1e-6).to(self.text_spread))
            self.semantic_mask.copy_((torch.arange(spread.numel()) < kept).to(self.semantic_mask))

    @property
    def semantic_dims(self) -> int | None:
        """With the null-space design: how many directions the text keeps (the ID deltas get the rest)."""
        return int(self.semantic_mask.sum().item()) if self.text_design == NULL_SPACE and self.text_tower else None

    def output_vectors(self, input_vectors: torch.Tensor | None = None) -> torch.Tensor:
        """The vectors items are scored with: the input vectors when tied (pass them to reuse a step's table)."""
        if self.output_weight is not None:
            return self.output_weight
        return self.vectors() if input_vectors is None else input_vectors

    def score_bias(self) -> torch.Tensor | None:
        """Each item's score offset, `[num_items]`, or `None` without `score_bias`; no ID dropout.

        With a text tower, an item without an ID embedding (never seen in training, or added later)
        takes :func:`unknown_item_offset` of the items that have one; detached, so these stand-ins
        do not pull the trained offsets down as never-chosen negatives. A training pass takes its
        offsets from :meth:`vectors_and_offsets`, where dropped IDs count as missing too.
        """
        return self._offsets(self.has_id_embedding if self.text_tower else None)

    def _offsets(self, uses_id: torch.Tensor | None) -> torch.Tensor | None:
        """The offsets when only the items in `uses_id` count as known (the unknown offset still comes from every item with an ID)."""
        if self.bias is None or uses_id is None:
            return self.bias
        if self.text_popularity:
            # Trained through the items whose ID this pass drops: the offset an item's text predicts.
            standardised = (self.text_features - self.text_mean) / self.text_scale
            predicted = self.text_offset(standardised.to(self.text_offset.weight.dtype)).squeeze(-1)
            return torch.where(uses_id.bool(), self.bias, predicted.to(self.bias.dtype))
        has_id = self.has_id_embedding.bool()
        if not bool(has_id.any()):
            return self.bias
        return torch.where(uses_id.bool(), self.bias, unknown_item_offset(self.bias[has_id]).detach())

    def untrained_items_left_out(self, offsets: torch.Tensor | None) -> torch.Tensor | None:
        """The offsets for the training loss: with a text tower, items without an ID embedding get -inf.

        An item training never sees is never a positive; left in the softmax it is only ever a
        negative, and the backbone learns to point away from its text, the one thing that places it
        once it is recommended. So the loss ranks the items training knows, and such items (cold,
        or listed in the item file without interactions) are scored only at inference.
        """
        if not self.text_tower or bool(self.has_id_embedding.bool().all()):
            return offsets
        left_out = torch.where(self.has_id_embedding.bool(), 0.0, float("-inf")).to(self.has_id_embedding.device)
        return left_out if offsets is None else offsets.float() + left_out

    @torch.no_grad()
    def set_score_bias_from_counts(self, counts: Sequence[int]) -> None:
        """Start each item's offset at the log of its smoothed training frequency (centred).

        The offset learns at the item table's rate, about 1e-3 per step, while log-frequencies span
        several nats: from zero it would take many epochs to learn what counting gives at once. So
        the model starts as the popularity ranking plus the backbone's scores.
        """
        if self.bias is None:
            raise ValueError("set_score_bias_from_counts needs an item table built with score_bias=True")
        if len(counts) != self.num_items:
            raise ValueError(f"got {len(counts)} item counts for an item table of {self.num_items} rows")
        log_frequency = torch.log(torch.as_tensor(counts, dtype=torch.float32) + 1.0)
        self.bias.copy_((log_frequency - log_frequency.mean()).to(self.bias))
        if self.text_popularity:
            self._fit_text_offset(torch.as_tensor(counts) > 0)

    @torch.no_grad()
    def _fit_text_offset(self, known: torch.Tensor) -> None:
        """Start the text popularity map as a ridge regression of the known items' offsets on their text.

        Trained from zero through ID dropout alone, at the fan-in-scaled rate a 576-wide map needs,
        it would barely move in an epoch; the closed-form fit starts it at what the training counts
        already say about how popular items with such texts are. The intercept is shifted so the
        mean prediction equals the offset of an item of unknown popularity (log-mean-exp of the known
        offsets), where an item without a text signal would sit.
        """
        if not bool(known.any()):
            nn.init.zeros_(self.text_offset.weight)
            self.text_offset.bias.fill_(float(unknown_item_offset(self.bias)))
            return
        features = ((self.text_features - self.text_mean) / self.text_scale)[known].double()
        targets = self.bias[known].double()
        centred = features - features.mean(0)
        gram = centred.T @ centred + TEXT_OFFSET_RIDGE * torch.eye(features.size(1), dtype=torch.float64)
        weight = torch.linalg.solve(gram, centred.T @ (targets - targets.mean()))
        predicted_mean = float(features.mean(0) @ weight)
        self.text_offset.weight.copy_(weight.to(self.text_offset.weight).unsqueeze(0))
        self.text_offset.bias.fill_(float(unknown_item_offset(self.bias[known])) - predicted_mean)

    def forward(self, item_ids: torch.LongTensor, table: torch.Tensor | None = None) -> torch.Tensor:
        return F.embedding(item_ids, self.vectors() if table is None else table)

    def set_items_with_id_embedding(self, item_indices: Sequence[int]) -> None:
        """Only these items use their ID embedding (the ones training sees); the rest are scored from text."""
        if not self.text_tower:
            raise ValueError("only an item table with a text tower tells items with and without ID embeddings apart")
        mask = torch.zeros_like(self.has_id_embedding)
        if len(item_indices):
            mask[torch.as_tensor(list(item_indices), dtype=torch.long, device=mask.device)] = 1.0
        self.has_id_embedding.copy_(mask)

    @torch.no_grad()
    def append_rows(self, text_features: torch.Tensor) -> None:
        """Grow the table by one row per new item: text features only, no ID embedding (the item was never trained)."""
        added = text_features.size(0)
        weight = self.weight.detach()
        # Without a text tower the new rows hold the text encoding itself, as every row did before training.
        new_rows = weight.new_zeros(added, weight.size(1)) if self.text_tower else text_features
        self.weight = nn.Parameter(torch.cat([weight, new_rows.to(weight)]), requires_grad=self.weight.requires_grad)
        if self.output_weight is not None:
            output = self.output_weight.detach()
            self.output_weight = nn.Parameter(torch.cat([output, new_rows.to(output)]), requires_grad=self.output_weight.requires_grad)
        if self.bias is not None:
            # Without a text tower a new item's offset is fixed here (with one, score_bias() imputes it).
            fill = 0.0 if self.text_tower else float(unknown_item_offset(self.bias.detach()))
            bias = self.bias.detach()
            self.bias = nn.Parameter(torch.cat([bias, bias.new_full((added,), fill)]), requires_grad=self.bias.requires_grad)
        if self.text_tower:
            self.text_features = torch.cat([self.text_features, text_features.to(self.text_features)])
            self.has_id_embedding = torch.cat([self.has_id_embedding, self.has_id_embedding.new_zeros(added)])


def unknown_item_offset(offsets: torch.Tensor) -> torch.Tensor:
    """The score offset of an item whose popularity is unknown: the log of the mean of `exp(offsets)`.

    An offset acts on the softmax through `exp`, so an item drawn at random from the catalogue has,
    in expectation, `mean(exp(offset))` of probability mass. Taking the mean of the offsets instead
    would rank a new item like a typical long-tail item, far below where a random item's share of
    interactions puts it.
    """
    return torch.logsumexp(offsets.float(), dim=0) - math.log(offsets.numel())


class SeqRecPreTrainedModel(PreTrainedModel):
    config_class = SeqRecConfig
    base_model_prefix = "seqrec"
    supports_gradient_checkpointing = True
    _supports_sdpa = True

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, ItemTable):
            if module.text_tower:
                # Zero ID embeddings (zero deltas) and, with a projection, an identity map of the (not
                # yet set) text features: every item starts at its text (set_text_features).
                nn.init.zeros_(module.weight)
                if module.text_design == PROJECTION:
                    with torch.no_grad():
                        module.text_projection.weight.copy_(torch.diag(module.text_scale))
                        module.text_projection.bias.copy_(module.text_mean)
            else:
                nn.init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
            if module.output_weight is not None:
                nn.init.normal_(module.output_weight, mean=0.0, std=self.config.initializer_range)


class SeqRecForNextItem(SeqRecPreTrainedModel):
    """Next-item recommender: item embeddings in, a backbone in the middle, the tied item table out.

    Build a fresh model with :meth:`from_backbone`; load a trained one with
    :meth:`from_pretrained` (or `AutoModel.from_pretrained` once `hf_seqrec` is imported).
    A checkpoint stores the LoRA adapter and the item table, not the backbone: the backbone is
    rebuilt from `config.backbone_name_or_path`.
    """

    def __init__(self, config: SeqRecConfig, backbone: PreTrainedModel | None = None) -> None:
        super().__init__(config)
        if backbone is None:
            backbone = AutoModel.from_config(config.build_backbone_config())
        if config.hidden_size != backbone.config.hidden_size:
            raise ValueError(
                f"SeqRecConfig.hidden_size={config.hidden_size} does not match the backbone's hidden size "
                f"{backbone.config.hidden_size}"
            )
        # The backbone reads whole sequences at once; a key/value cache would only cost memory.
        backbone.config.use_cache = False
        self.backbone = backbone
        self.item_table = ItemTable(
            config.num_items,
            config.hidden_size,
            text_tower=getattr(config, "item_text_tower", False),
            id_dropout=getattr(config, "item_id_dropout", 0.0),
            score_bias=getattr(config, "item_score_bias", False),
            tied=config.tie_item_table,
            text_design=config.item_text_design,
            delta_max=config.item_delta_max,
            semantic_variance=config.item_semantic_variance,
            text_popularity=config.item_text_popularity,
        )
        self.item_dropout = nn.Dropout(config.item_embedding_dropout)
        self.item_catalog = None  # an ItemCatalog, saved with the checkpoint when set
        self.item_popularity = None  # training counts per item, saved with the checkpoint when set
        # input_mode="id+text": the items' text token ids, read after the most recent items (text_inputs.py).
        self.item_text_inputs = (
            ItemTextInputs(config.num_items, config.item_text_max_tokens, config.text_items_in_context)
            if getattr(config, "input_mode", "id") == "id+text"
            else None
        )
        self.item_text_encodings = None  # [num_items, hidden] text encodings, saved with the checkpoint when set
        # Weight init runs before LoRA is attached: initialising after would overwrite the
        # adapter's zero-initialised B matrices and the model would not start from the backbone.
        self.post_init()
        if config.use_lora:
            self.backbone = get_peft_model(backbone, self._lora_config())

    def _lora_config(self) -> LoraConfig:
        return LoraConfig(
            r=self.config.lora_r,
            lora_alpha=self.config.lora_alpha,
            lora_dropout=self.config.lora_dropout,
            target_modules=list(self.config.lora_target_modules),
            bias="none",
        )

    # ----------------------------------------------------------------------------- building
    @classmethod
    def from_backbone(
        cls,
        backbone_name_or_path: str,
        item_texts: Sequence[str] | None = None,
        *,
        num_items: int | None = None,
        pretrained: bool | None = None,
        dtype: torch.dtype = torch.float32,
        backbone_options: dict[str, Any] | None = None,
        **config_kwargs: Any,
    ) -> tuple["SeqRecForNextItem", PreTrainedTokenizerBase | None]:
        """A fresh model on a backbone, with the item table initialised from the item texts.

        Each item's row starts as the mean of the backbone's own token embeddings of its text,
        so the model begins with what the LM already knows about "Toy Story (1995)" instead of
        noise; measured on MovieLens-100K this nearly doubles NDCG@10 after one epoch.

        `pretrained` defaults to `True` for a language model. A baseline alias (`sasrec`, `gru4rec`,
        `lstm`) is always from scratch, trained in full (`use_lora=False`) and has no tokenizer (the
        second return value is `None`, so give `num_items`, not `item_texts`); `backbone_options`
        (`hidden_size`, `max_len`, `dropout`, `num_layers`, `num_heads`) size it.
        """
        from .backbones import load_backbone

        baseline = is_baseline_backbone(backbone_name_or_path)
        backbone_layers = config_kwargs.get("backbone_layers")
        if baseline:
            if backbone_layers is not None:
                raise ValueError(
                    f"backbone_layers keeps the first layers of a pretrained backbone; size the {backbone_name_or_path!r} "
                    "baseline with backbone_options={'num_layers': ...} instead"
                )
            if pretrained:
                raise ValueError(f"{backbone_name_or_path!r} is a from-scratch baseline; it has no pretrained weights")
            if config_kwargs.get("use_lora"):
                raise ValueError(f"{backbone_name_or_path!r} is a from-scratch baseline, trained in full; use_lora must be False")
            pretrained = False
            config_kwargs["use_lora"] = False
            backbone_options = {"max_len": config_kwargs.get("max_len", 50), **(backbone_options or {})}
        elif pretrained is None:
            pretrained = True
        backbone, tokenizer = load_backbone(
            backbone_name_or_path, dtype=dtype, backbone_layers=backbone_layers, **(backbone_options or {})
        )
        if not pretrained and not baseline:
            backbone = AutoModel.from_config(backbone.config)
        if item_texts is not None and tokenizer is None:
            raise ValueError(
                f"{backbone_name_or_path!r} has no tokenizer, so its item table cannot be initialised from item texts; "
                "pass num_items instead of item_texts"
            )
        if config_kwargs.get("item_text_tower") and item_texts is None:
            raise ValueError("item_text_tower=True needs item_texts: the text tower scores items from their text")
        if num_items is None:
            if item_texts is None:
                raise ValueError("from_backbone needs item_texts or num_items")
            num_items = len(item_texts)
        config_kwargs.setdefault("hidden_size", backbone.config.hidden_size)
        config = SeqRecConfig(
            num_items=num_items,
            backbone_name_or_path=backbone_name_or_path,
            backbone_config=backbone.config.to_dict(),
            backbone_pretrained=pretrained,
            **config_kwargs,
        )
        if config.item_text_encoder != TOKEN_EMBEDDINGS and config.item_text_encoder_layers is None:
            config.item_text_encoder_layers = backbone.config.num_hidden_layers  # recorded: the depth that read the texts
        model = cls(config, backbone=backbone)
        if item_texts is not None:
            model.init_item_table_from_text(item_texts, tokenizer)
            if config.input_mode == "id+text":
                model.set_item_text_tokens(item_texts, tokenizer)
        return model, tokenizer

    @torch.no_grad()
    def init_item_table_from_text(self, texts: Sequence[str], tokenizer: PreTrainedTokenizerBase) -> None:
        """Set each item's text encoding (or, without a text tower, its row) to the mean token embedding of its text."""
        if len(texts) != self.config.num_items:
            raise ValueError(f"got {len(texts)} item texts for an item table of {self.config.num_items} rows")
        encodings = self.encode_item_texts(texts, tokenizer)
        self.item_text_encodings = encodings
        if self.item_table.text_tower:
            self.item_table.set_text_features(encodings)
        else:
            self.item_table.weight.copy_(encodings.to(self.item_table.weight))
        if self.item_table.output_weight is not None:
            self.item_table.output_weight.copy_(encodings.to(self.item_table.output_weight))

    @torch.no_grad()
    def encode_item_texts(self, texts: Sequence[str], tokenizer: PreTrainedTokenizerBase) -> torch.Tensor:
        """`[len(texts), hidden_size]`: each text's encoding, as `config.item_text_encoder` says.

        `token-embeddings`: the mean of the backbone's input token embeddings (zeros for an empty
        text). `mean-pooled` / `last-token`: the frozen pretrained decoder (LoRA off) of
        `config.item_text_encoder_layers` layers reads the text, wrapped in `config.item_text_prompt`.
        Both depend only on frozen weights, so an item added after training is encoded exactly as
        the training items were.
        """
        rendered = render_prompt(texts, self.config.item_text_prompt)
        token_embeddings = self.get_backbone().get_input_embeddings().weight
        if self.config.item_text_encoder == TOKEN_EMBEDDINGS:
            return mean_token_embeddings(rendered, tokenizer, token_embeddings)
        target_norm = float(token_embeddings.float().norm(dim=1).mean())
        layers = self.config.item_text_encoder_layers or self.get_backbone().config.num_hidden_layers
        if layers == self.get_backbone().config.num_hidden_layers:
            with adapters_disabled(self.backbone):
                return contextual_encodings(rendered, tokenizer, self.get_backbone(), self.config.item_text_encoder, target_norm)
        from transformers import AutoConfig

        from .backbones import load_pretrained_decoder, resolve_backbone

        # Deeper (or shallower) than the sequence backbone: the pretrained model cut to `layers`,
        # loaded for the encoding only.
        location = resolve_backbone(self.config.backbone_name_or_path)
        available = AutoConfig.from_pretrained(location).num_hidden_layers
        if layers > available:
            raise ValueError(f"item_text_encoder_layers: expected a number of layers in 1..{available} for {location}, got {layers}")
        decoder = load_pretrained_decoder(location, num_layers=layers).eval()
        return contextual_encodings(rendered, tokenizer, decoder, self.config.item_text_encoder, target_norm)

    def add_items(self, items: Any, tokenizer: PreTrainedTokenizerBase | None = None) -> list[int]:
        """Add items that training never saw, from their text alone; returns their new rows.

        `items` is a list of `{"item_id", "text"}` dicts, a pandas DataFrame or a `datasets.Dataset`
        with those columns. With a text tower (`item_text_tower=True`) a new item is scored by the
        trained projection of its text, like any cold item; without one, its row is the untrained
        text encoding every row started from. The catalogue (and the popularity counts, at zero)
        grow with the table, so the next-item pipeline and `save_pretrained` see the new items.
        `tokenizer` defaults to the checkpoint's own (or the backbone's).
        """
        if self.item_catalog is None:
            raise ValueError("add_items needs the model's item catalogue (load a checkpoint that has item_catalog.jsonl)")
        rows = _item_rows(items)
        known = set(self.item_catalog.item_ids)
        seen: set[str] = set()
        for number, (item_id, text) in enumerate(rows):
            if item_id in known or item_id in seen:
                raise ValueError(f"add_items: row {number}: item_id {item_id!r} is already in the catalogue; expected new ids only")
            if not text.strip():
                raise ValueError(f"add_items: row {number} (item_id {item_id!r}): empty text; a new item is known by its text alone")
            seen.add(item_id)
        if not rows:
            return []
        tokenizer = tokenizer or self._load_tokenizer()
        encodings = self.encode_item_texts([text for _, text in rows], tokenizer)
        if self.item_text_encodings is not None:
            self.item_text_encodings = torch.cat([self.item_text_encodings, encodings.to(self.item_text_encodings)])
        first = self.item_table.num_items
        self.item_table.append_rows(encodings.to(self.item_table.weight.device))
        self.append_item_text_tokens([text for _, text in rows], tokenizer)
        self.config.num_items = self.item_table.num_items
        catalog_class = type(self.item_catalog)
        self.item_catalog = catalog_class(
            list(self.item_catalog.item_ids) + [item_id for item_id, _ in rows],
            list(self.item_catalog.texts) + [text for _, text in rows],
        )
        popularity = self.item_popularity
        if popularity is None and getattr(self, "checkpoint_dir", None):
            path = Path(self.checkpoint_dir) / POPULARITY_FILE
            if path.is_file():
                popularity = json.loads(path.read_text(encoding="utf-8"))["counts"]
        if popularity is not None:
            self.item_popularity = list(popularity) + [0] * len(rows)
        return list(range(first, first + len(rows)))

    def _load_tokenizer(self) -> PreTrainedTokenizerBase:
        from transformers import AutoTokenizer

        directory = getattr(self, "checkpoint_dir", None)
        if directory and (Path(directory) / "tokenizer_config.json").is_file():
            return AutoTokenizer.from_pretrained(directory)
        from .backbones import resolve_backbone

        return AutoTokenizer.from_pretrained(resolve_backbone(self.config.backbone_name_or_path))

    def get_backbone(self) -> PreTrainedModel:
        """The backbone without its peft wrapper."""
        backbone = self.backbone
        return backbone.get_base_model() if hasattr(backbone, "get_base_model") else backbone

    def get_input_embeddings(self) -> nn.Module:
        return self.item_table

    # ----------------------------------------------------------------------------- item text in the input
    def set_item_text_tokens(self, texts: Sequence[str], tokenizer: PreTrainedTokenizerBase) -> None:
        """With `input_mode="id+text"`: tokenise every item's text (`texts[i]` for row `i`); nothing to do otherwise.

        Each text keeps its first `config.item_text_max_tokens` tokens, without special tokens. The
        token ids are saved with the checkpoint (`item_text_tokens.safetensors`).
        """
        if self.item_text_inputs is not None:
            self.item_text_inputs.set_texts(texts, tokenizer)

    def append_item_text_tokens(self, texts: Sequence[str], tokenizer: PreTrainedTokenizerBase) -> None:
        """With `input_mode="id+text"`: tokenise the texts of rows just appended to the item table; nothing to do otherwise."""
        if self.item_text_inputs is not None:
            self.item_text_inputs.append_texts(texts, tokenizer)

    def _item_hidden_states(
        self,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        input_item_ids: torch.LongTensor | None,
        **kwargs: Any,
    ) -> torch.Tensor:
        """`[batch, items, hidden]`: the backbone's hidden state at each item, whatever the input mode.

        With `input_mode="id+text"` the backbone reads a longer sequence (the most recent items are
        followed by their text's token embeddings, see text_inputs.py) and each item's state is
        taken at its last position, where the next item is predicted from.
        """
        if self.item_text_inputs is None:
            return self.backbone(inputs_embeds=inputs_embeds, attention_mask=attention_mask, **kwargs).last_hidden_state
        if input_item_ids is None:
            raise ValueError("input_mode='id+text' needs input_item_ids: an item's text tokens are looked up by its id")
        layout = self.item_text_inputs.layout(input_item_ids, attention_mask)
        token_embedding = self.get_backbone().get_input_embeddings()  # frozen: LoRA does not adapt it
        expanded = self.item_text_inputs.expand(inputs_embeds, token_embedding, layout)
        hidden = self.backbone(inputs_embeds=expanded, attention_mask=layout.attention_mask, **kwargs).last_hidden_state
        return gather_item_states(hidden, layout.last_positions)

    # ----------------------------------------------------------------------------- forward
    def score(
        self, hidden_states: torch.Tensor, table: torch.Tensor | None = None, offsets: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Scores of every catalogue item for each hidden state (the head tied to the item table), in fp32.

        Always fp32, also under bf16 autocast: bf16 keeps 8 bits of mantissa, so scores near 4 are
        rounded to steps of 0.03 and many items tie, and the evaluator counts ties against the model.
        The product is a small part of a step's work. Pass a pass's `table` and `offsets` (from
        `item_table.vectors_and_offsets()`) to score with that pass's ID dropout.
        """
        if table is None:
            table, offsets = self.item_table.vectors_and_offsets()
        elif offsets is None:
            offsets = self.item_table.score_bias()
        return _fp32_scores(hidden_states, self.item_table.output_vectors(table), offsets)

    def _summed_cross_entropy(
        self, hidden: torch.Tensor, targets: torch.Tensor, table: torch.Tensor, offsets: torch.Tensor | None
    ) -> torch.Tensor:
        """Full-catalogue cross-entropy summed over positions, chunked when `config.loss_chunk_size` is set."""
        chunk = getattr(self.config, "loss_chunk_size", None)
        if not chunk or hidden.size(0) <= chunk:
            return F.cross_entropy(self.score(hidden, table, offsets).float(), targets, reduction="sum")
        table = self.item_table.output_vectors(table)

        def chunk_loss(h: torch.Tensor, t: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(_fp32_scores(h, table, offsets), t, reduction="sum")

        total = hidden.new_zeros((), dtype=torch.float32)
        for start in range(0, hidden.size(0), chunk):
            # Checkpointing drops each chunk's logits after the forward and recomputes them in the
            # backward: peak memory is one chunk of logits instead of all of them.
            total = total + torch.utils.checkpoint.checkpoint(
                chunk_loss, hidden[start : start + chunk], targets[start : start + chunk], table,
                use_reentrant=False,
            )
        return total

    def forward(
        self,
        input_item_ids: torch.LongTensor | None = None,
        attention_mask: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        num_items_in_batch: int | torch.Tensor | None = None,
        return_logits: bool | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        **kwargs: Any,
    ) -> NextItemOutput:
        r"""
        Args:
            input_item_ids (`torch.LongTensor` of shape `(batch_size, seq_len)`):
                Catalogue indices of each user's items, oldest first, padded on the right.
            attention_mask (`torch.LongTensor` of shape `(batch_size, seq_len)`, *optional*):
                1 for real items, 0 for padding.
            labels (`torch.LongTensor` of shape `(batch_size, seq_len)`, *optional*):
                The next item at each position, `-100` where there is none.
            num_items_in_batch (`int`, *optional*):
                Denominator of the loss. Across processes the training loop passes the global
                number of labelled positions divided by the number of processes, so that
                gradient averaging gives exactly the single-process gradient.
            return_logits (`bool`, *optional*):
                Whether to score the catalogue after each sequence's last item; defaults to
                `labels is None` (training does not need them).
            inputs_embeds (`torch.FloatTensor` of shape `(batch_size, seq_len, hidden_size)`, *optional*):
                The input vector of each position instead of `input_item_ids`, as
                `model.get_input_embeddings()(input_item_ids)` gives them: lets attribution methods
                (integrated gradients) differentiate the scores with respect to the items read.
        """
        if (input_item_ids is None) == (inputs_embeds is None):
            raise ValueError("SeqRecForNextItem.forward takes exactly one of input_item_ids and inputs_embeds")
        if attention_mask is None:
            given = input_item_ids if inputs_embeds is None else inputs_embeds
            attention_mask = torch.ones(given.shape[:2], dtype=torch.long, device=given.device)
        # One table per step: inputs and scores see the same item vectors and offsets (and the same ID dropout).
        table, offsets = self.item_table.vectors_and_offsets()
        if inputs_embeds is None:
            inputs_embeds = self.item_table(input_item_ids, table)
        inputs_embeds = self.item_dropout(inputs_embeds)
        hidden = self._item_hidden_states(inputs_embeds, attention_mask, input_item_ids, **kwargs)

        loss = None
        if labels is not None:
            labelled = labels != IGNORE_INDEX
            # Only labelled positions are scored: the [positions, num_items] logits are the
            # largest tensor of a step, and padding would waste most of it.
            denominator = num_items_in_batch if num_items_in_batch is not None else labelled.sum().clamp(min=1)
            loss_offsets = self.item_table.untrained_items_left_out(offsets)
            loss = self._summed_cross_entropy(hidden[labelled], labels[labelled], table, loss_offsets) / denominator

        logits = None
        if return_logits if return_logits is not None else labels is None:
            last_position = attention_mask.sum(dim=1).clamp(min=1) - 1
            last_hidden = hidden[torch.arange(hidden.size(0), device=hidden.device), last_position]
            logits = self.score(last_hidden, table, offsets).float()
        return NextItemOutput(loss=loss, logits=logits, last_hidden_state=hidden)

    # ----------------------------------------------------------------------------- saving
    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        is_main_process: bool = True,
        push_to_hub: bool = False,
        **kwargs: Any,
    ) -> None:
        """Write config, adapter (or full backbone), item table and catalogue as safetensors/JSON.

        The pretrained backbone is not copied: it is resolved again from
        `config.backbone_name_or_path`, so a checkpoint of SmolLM2-135M with LoRA r=8 is a few MB.
        """
        if push_to_hub:
            # PushToHubMixin.push_to_hub calls save_pretrained into a temporary folder and uploads it.
            repo_id = kwargs.pop("repo_id", None) or Path(save_directory).name
            self.save_pretrained(save_directory, is_main_process=is_main_process)
            self.push_to_hub(repo_id, **{k: v for k, v in kwargs.items() if k in {"token", "private", "commit_message"}})
            return
        if not is_main_process:
            return
        precision = getattr(self, "inference_precision", "fp32")
        if precision != "fp32":
            # A bf16 or int8 model has its adapter merged and its weights rounded: checkpoints stay fp32.
            raise ValueError(
                f"this model was prepared for {precision} inference and cannot be saved; checkpoints are fp32: "
                "save the model as loaded, before preparing it"
            )
        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self._auto_class is not None:
            from transformers.dynamic_module_utils import custom_object_save

            custom_object_save(self, directory, config=self.config)
            _save_pipeline_code(directory, self.config)
        self.config.save_pretrained(directory)
        save_file({k: v.detach().contiguous().cpu() for k, v in self.item_table.state_dict().items()}, directory / ITEM_TABLE_FILE)
        if self.item_text_inputs is not None:
            self.item_text_inputs.save(directory)
        if self.item_popularity is not None:
            counts = {"source": "training sequences (items added later count 0)", "counts": list(self.item_popularity)}
            staging = directory / f".{POPULARITY_FILE}.tmp"
            staging.write_text(json.dumps(counts) + "\n", encoding="utf-8")
            os.replace(staging, directory / POPULARITY_FILE)
        if self.config.use_lora:
            adapter_state = get_peft_model_state_dict(self.backbone)
            save_file({k: v.detach().contiguous().cpu() for k, v in adapter_state.items()}, directory / ADAPTER_FILE)
            adapter_config = self.backbone.peft_config["default"]
            adapter_config.base_model_name_or_path = self.config.backbone_name_or_path
            adapter_config.save_pretrained(directory)
            os.replace(directory / "adapter_config.json", directory / ADAPTER_CONFIG_FILE)
        elif not self.config.backbone_pretrained:
            state = {k: v.detach().contiguous().cpu() for k, v in self.get_backbone().state_dict().items()}
            save_file(_untie(state), directory / BACKBONE_FILE)
        if self.item_text_encodings is not None:
            _save_file_atomically({"encodings": self.item_text_encodings.detach().contiguous().cpu().float()}, directory / TEXT_ENCODINGS_FILE)
        if self.item_catalog is not None:
            self.item_catalog.save(directory)

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *model_args: Any,
        config: SeqRecConfig | None = None,
        dtype: torch.dtype | str | None = None,
        **kwargs: Any,
    ) -> "SeqRecForNextItem":
        """Load a checkpoint written by :meth:`save_pretrained`, from a directory or a Hub repo."""
        directory = _local_checkpoint_dir(pretrained_model_name_or_path, **kwargs)
        if config is None or not isinstance(config, SeqRecConfig):
            config = SeqRecConfig.from_pretrained(directory)
        if isinstance(dtype, str) and dtype != "auto":
            dtype = getattr(torch, dtype)
        torch_dtype = dtype if isinstance(dtype, torch.dtype) else torch.float32

        if config.backbone_pretrained:
            from .backbones import load_pretrained_decoder, resolve_backbone

            location = resolve_backbone(config.backbone_name_or_path)
            backbone = load_pretrained_decoder(location, dtype=torch_dtype, num_layers=config.backbone_layers)
        else:
            backbone = AutoModel.from_config(config.build_backbone_config())
            _load_backbone_weights(backbone, directory / BACKBONE_FILE)
        model = cls(config, backbone=backbone)
        model.item_table.load_state_dict(load_file(directory / ITEM_TABLE_FILE))
        if model.item_text_inputs is not None:
            model.item_text_inputs.load(directory)
        if config.use_lora:
            _load_adapter_weights(model.backbone, directory / ADAPTER_FILE)
        if (directory / TEXT_ENCODINGS_FILE).is_file():
            model.item_text_encodings = load_file(directory / TEXT_ENCODINGS_FILE)["encodings"]
        model.checkpoint_dir = str(directory)  # where the pipeline finds the catalogue and popularity files
        catalog_class = _item_catalog_class()
        if catalog_class is not None and (directory / CATALOG_FILE).is_file():
            model.item_catalog = catalog_class.load(directory)
        model.to(torch_dtype)
        model.eval()
        return model

    def merge_adapter(self) -> "SeqRecForNextItem":
        """Fold the LoRA adapter into the backbone; the result saves as a standalone model."""
        if not self.config.use_lora:
            return self
        self.backbone = self.backbone.merge_and_unload()
        self.config.use_lora = False
        self.config.backbone_pretrained = False
        self.config.backbone_config = self.backbone.config.to_dict()
        return self


def _load_backbone_weights(backbone: PreTrainedModel, path: Path) -> None:
    """Load a from-scratch (or merged) backbone's saved weights; every weight must be in the file.

    Not strict: weights tied to another (filled by `tie_weights`) may be left out of a file. Any
    other missing weight would silently stay at its random initialisation.
    """
    outcome = backbone.load_state_dict(load_file(path), strict=False)
    backbone.tie_weights()
    tied = set(getattr(backbone, "all_tied_weights_keys", None) or ())
    missing = [key for key in outcome.missing_keys if key not in tied]
    if missing or outcome.unexpected_keys:
        raise ValueError(
            f"{path}: backbone weights do not fit the {type(backbone).__name__} backbone of config.json: "
            f"{_key_mismatch(missing, outcome.unexpected_keys)}; expected every weight of the backbone"
        )


def _load_adapter_weights(peft_model: nn.Module, path: Path) -> None:
    """Load the LoRA adapter; every LoRA weight must be in the file and every weight in it must fit.

    peft reports the frozen base weights as missing too (they come from the backbone, not the
    adapter file), so only LoRA weights count as missing.
    """
    outcome = set_peft_model_state_dict(peft_model, load_file(path))
    unexpected = list(getattr(outcome, "unexpected_keys", []))
    missing = [key for key in getattr(outcome, "missing_keys", []) if "lora_" in key]
    if missing or unexpected:
        raise ValueError(f"{path}: adapter weights do not fit the backbone: {_key_mismatch(missing, unexpected)}")


def _key_mismatch(missing: Sequence[str], unexpected: Sequence[str]) -> str:
    """E.g. "28 weights missing (['wte.weight', ...])": the counts and the first few names of each kind."""
    parts = [f"{len(keys)} weights {kind} ({list(keys[:5])})" for kind, keys in (("missing", missing), ("unexpected", unexpected)) if keys]
    return ", ".join(parts)


def _fp32_scores(hidden_states: torch.Tensor, table: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    with torch.autocast(device_type=hidden_states.device.type, enabled=False):
        scores = hidden_states.float() @ table.float().T
        return scores if bias is None else scores + bias.float()


def _is_remote_code() -> bool:
    """Whether this is a checkpoint's copy of this file, imported by transformers for trust_remote_code."""
    return __name__.startswith("transformers_modules.")


def _item_catalog_class():
    """hf_seqrec's ItemCatalog; None in a checkpoint's copy of this file.

    transformers copies only this file and its same-folder imports into a checkpoint (its scanner
    cannot follow `from ..`), so the data package is imported by name, and only inside hf_seqrec.
    Without it the next-item pipeline reads item_catalog.jsonl itself.
    """
    if _is_remote_code() or not __package__:
        return None
    import importlib

    return importlib.import_module("..data.catalog", __package__).ItemCatalog


def _save_pipeline_code(directory: Path, config: SeqRecConfig) -> None:
    """Copy the next-item pipeline next to the model code and name it in `config.custom_pipelines`.

    With both, `pipeline(model=checkpoint, trust_remote_code=True)` works where hf_seqrec is not
    installed. The source is hf_seqrec's own pipelines/next_item.py, or, for a model that was itself
    loaded from a checkpoint's code, the copy that came with it.
    """
    here = Path(__file__).parent
    source = here / PIPELINE_FILE if _is_remote_code() else here.parent / "pipelines" / PIPELINE_FILE
    if not source.is_file():
        config.custom_pipelines = {}
        return
    shutil.copyfile(source, directory / PIPELINE_FILE)
    for name in PIPELINE_MODULE_FILES:
        # A checkpoint written by an older hf_seqrec has a next_item.py that imports none of them.
        if (source.parent / name).is_file():
            shutil.copyfile(source.parent / name, directory / name)
    config.custom_pipelines = {
        PIPELINE_TASK: {"impl": f"{Path(PIPELINE_FILE).stem}.NextItemPipeline", "pt": ["AutoModel"], "tf": [], "type": "multimodal"}
    }


def _item_rows(items: Any) -> list[tuple[str, str]]:
    """`(item_id, text)` pairs from a list of dicts, a pandas DataFrame or a `datasets.Dataset`."""
    if hasattr(items, "to_dict") and hasattr(items, "columns"):  # pandas
        items = items.to_dict("records")
    elif hasattr(items, "column_names") and hasattr(items, "to_list"):  # datasets.Dataset
        items = items.to_list()
    if isinstance(items, dict) or isinstance(items, (str, bytes)):
        raise TypeError("add_items expects a list of {'item_id', 'text'} rows (or a DataFrame / Dataset with those columns)")
    rows = []
    for number, row in enumerate(items):
        if not isinstance(row, dict) or "item_id" not in row or "text" not in row:
            found = sorted(row) if isinstance(row, dict) else type(row).__name__
            raise ValueError(f"add_items: row {number}: expected an 'item_id' and a 'text' field, found {found}")
        if row["item_id"] is None or not isinstance(row["text"], str):
            raise ValueError(f"add_items: row {number}: expected a non-null item_id and a string text, found {row!r}")
        item_id = row["item_id"]
        if isinstance(item_id, float) and item_id.is_integer():
            item_id = int(item_id)  # 12.0 from a pandas column is the catalogue's "12"
        rows.append((str(item_id).strip(), row["text"]))
    return rows


def _save_file_atomically(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """safetensors into a hidden sibling, then renamed: a reader never sees half a file."""
    staging = path.with_name(f".{path.name}.tmp")
    save_file(tensors, staging)
    os.replace(staging, path)


def _untie(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses shared storage; give tied tensors their own copy."""
    seen: dict[int, str] = {}
    result = {}
    for name, tensor in state.items():
        pointer = tensor.data_ptr()
        result[name] = tensor.clone() if pointer in seen else tensor
        seen.setdefault(pointer, name)
    return result


def _local_checkpoint_dir(name_or_path: str | os.PathLike, **kwargs: Any) -> Path:
    """A local directory for a checkpoint given as a path or a Hub repo id."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path}: not a hf_seqrec checkpoint (no config.json)")
        return path
    from huggingface_hub import snapshot_download

    hub_kwargs = {k: kwargs[k] for k in ("revision", "token", "cache_dir", "local_files_only") if k in kwargs}
    return Path(snapshot_download(str(name_or_path), **hub_kwargs))
