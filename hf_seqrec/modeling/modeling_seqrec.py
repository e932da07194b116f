"""`SeqRecForNextItem`: a causal-LM backbone that reads item sequences and scores the whole catalogue."""

from __future__ import annotations

import copy
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from peft import LoraConfig, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
from safetensors.torch import load_file
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.dynamic_module_utils import custom_object_save
from transformers.utils import ModelOutput

from .atomic_writes import save_safetensors_atomic
from .backbones import adapter_base_model, load_backbone, load_pretrained_decoder, resolve_backbone

# Same-folder import (copied into checkpoints with this file): registers the from-scratch baseline
# backbones with AutoConfig/AutoModel, so a GRU4Rec, LSTM or SVAE checkpoint rebuilds its backbone anywhere.
from .baselines import is_baseline_backbone
from .checkpoint_files import ADAPTER_CONFIG_FILE, ADAPTER_FILE, BACKBONE_FILE, CATALOG_FILE, ITEM_TABLE_FILE
from .checkpoint_location import local_checkpoint_dir
from .configuration_seqrec import SeqRecConfig
from .item_catalog import ItemCatalog, new_item_rows
from .item_table import LET_IT_GO, PROJECTION, ItemTable

# The next-item pipeline, which the model only names in its config (`_name_pipeline`): importing it makes
# it one of this file's same-folder modules, which transformers copies into every checkpoint with the
# model code, so that `pipeline(model=checkpoint, trust_remote_code=True)` finds it.
from .next_item import TASK as PIPELINE_TASK
from .next_item import NextItemPipeline
from .next_item_labels import IGNORE_INDEX
from .popularity_counts import read_item_popularity, write_item_popularity
from .q_learning import QHead
from .text_inputs import ItemTextInputs, gather_item_states
from .text_encoding import (
    TOKEN_EMBEDDINGS,
    adapters_disabled,
    contextual_encodings,
    is_sentence_encoder,
    mean_token_embeddings,
    render_prompt,
    resolve_sentence_encoder,
    sentence_embeddings,
    sentence_encoder_width,
)


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
        kl (`torch.FloatTensor` of shape `()`, *optional*):
            With `labels` and a backbone with a latent per position (SVAE): its KL divergence from the
            prior, averaged over the labelled positions like the cross-entropy. `loss` includes it
            times the backbone's annealed weight (`kl_weight`).
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    last_hidden_state: torch.FloatTensor | None = None
    kl: torch.FloatTensor | None = None


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
            text_tower=config.item_text_tower,
            id_dropout=config.item_id_dropout,
            score_bias=config.item_score_bias,
            tied=config.tie_item_table,
            text_design=config.item_text_design,
            delta_max=config.item_delta_max,
            semantic_variance=config.item_semantic_variance,
            text_popularity=config.item_text_popularity,
            embedding_dim=config.item_embedding_dim,
            scoring=config.item_scoring,
            text_dim=getattr(config, "item_text_encoder_dim", None),
            center_deltas=getattr(config, "item_text_center_deltas", False),
        )
        self.item_dropout = nn.Dropout(config.item_embedding_dropout)
        self.hidden_dropout = nn.Dropout(config.hidden_dropout)
        if config.residual_dropout:
            _add_residual_dropout(backbone, config.residual_dropout)
        self.item_catalog = None  # an ItemCatalog, saved with the checkpoint when set
        self.item_popularity = None  # training counts per item, saved with the checkpoint when set
        # input_mode="id+text": the items' text token ids, read after the most recent items (text_inputs.py).
        self.item_text_inputs = (
            ItemTextInputs(config.num_items, config.item_text_max_tokens, config.text_items_in_context)
            if config.input_mode == "id+text"
            else None
        )
        # The reward-aware objective (SQN): a Q-learning head trained next to the next-item head (q_learning.py).
        q_head = getattr(config, "q_head", None)
        self.q_head = (
            QHead(config.hidden_size, q_head["discount"], q_head["weight"], q_head.get("normalized", False)) if q_head else None
        )
        # Weight init runs before LoRA is attached: initialising after would overwrite the
        # adapter's zero-initialised B matrices and the model would not start from the backbone.
        self.post_init()
        if config.use_lora:
            with warnings.catch_warnings():
                # peft reads transformers' deprecated `is_gradient_checkpointing` while it wraps the backbone: a
                # FutureWarning about peft's code, not about this model or the user's run.
                warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
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
        `lstm`, `svae`) is always from scratch, trained in full (`use_lora=False`) and has no tokenizer (the
        second return value is `None`, so give `num_items`, not `item_texts`, unless a sentence encoder of its
        own reads the texts: `item_text_encoder="sentence-transformer:..."` with the let-it-go text tower); `backbone_options`
        (`hidden_size`, `max_len`, `dropout`, `num_layers`, `num_heads`, and SVAE's `latent_size`,
        `kl_anneal_cap`, `kl_anneal_steps`, `latent_decoder`) size it.
        """
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
            pretrained = False
            config_kwargs.setdefault("use_lora", False)  # trained in full (SeqRecConfig refuses LoRA without pretrained weights)
            backbone_options = {"max_len": config_kwargs.get("max_len", 50), **(backbone_options or {})}
        elif pretrained is None:
            pretrained = True
        backbone, tokenizer = load_backbone(
            backbone_name_or_path, dtype=dtype, backbone_layers=backbone_layers, **(backbone_options or {})
        )
        if not pretrained and not baseline:
            backbone = AutoModel.from_config(backbone.config)
        sentence_encoder = is_sentence_encoder(config_kwargs.get("item_text_encoder"))
        if item_texts is not None and tokenizer is None and not sentence_encoder:
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
        if sentence_encoder:  # recorded: the width of the encodings the item table holds
            config.item_text_encoder_dim = sentence_encoder_width(resolve_sentence_encoder(config.item_text_encoder))
        elif config.item_text_encoder != TOKEN_EMBEDDINGS and config.item_text_encoder_layers is None:
            config.item_text_encoder_layers = backbone.config.num_hidden_layers  # recorded: the depth that read the texts
        model = cls(config, backbone=backbone)
        if config.item_text_tower and config.item_text_design == LET_IT_GO:
            model.item_table.set_content_norm(1.0 if baseline else _mean_token_embedding_norm(backbone))
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
        if self.item_table.text_tower:
            self.item_table.set_text_features(encodings)
        elif self.item_table.embedding_dim is not None:
            self.item_table.set_narrow_rows_from_encodings(encodings)
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
        `sentence-transformer:...`: the sentence encoder the config names reads the text (mean-pooled,
        L2-normalised; `tokenizer` is not used). All depend only on frozen weights, so an item added
        after training is encoded exactly as the training items were.
        """
        rendered = render_prompt(texts, self.config.item_text_prompt)
        if is_sentence_encoder(self.config.item_text_encoder):
            return sentence_embeddings(rendered, resolve_sentence_encoder(self.config.item_text_encoder))
        token_embeddings = self.get_backbone().get_input_embeddings().weight
        if self.config.item_text_encoder == TOKEN_EMBEDDINGS:
            return mean_token_embeddings(rendered, tokenizer, token_embeddings)
        target_norm = float(token_embeddings.float().norm(dim=1).mean())
        layers = self.config.item_text_encoder_layers or self.get_backbone().config.num_hidden_layers
        # The model's own decoder reads as the pretrained one only while LoRA can be switched off: a
        # merged adapter (merge_adapter, reduced-precision pipelines) or a full fine-tune changed its weights.
        if self.config.use_lora and layers == self.get_backbone().config.num_hidden_layers:
            with adapters_disabled(self.backbone):
                return contextual_encodings(rendered, tokenizer, self.get_backbone(), self.config.item_text_encoder, target_norm)
        # Otherwise, and for a depth other than the sequence backbone's: the pretrained model cut to
        # `layers`, loaded for the encoding only.
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
        `tokenizer` defaults to the checkpoint's own (or the backbone's); a model whose items are read by a
        sentence encoder needs none (it encodes the texts with that encoder, as in training).
        """
        if self.item_catalog is None:
            raise ValueError(f"add_items needs the model's item catalogue (load a checkpoint that has {CATALOG_FILE})")
        rows = new_item_rows(items, self.item_catalog)
        if not rows:
            return []
        needs_tokenizer = not is_sentence_encoder(self.config.item_text_encoder) or self.item_text_inputs is not None
        if tokenizer is None and needs_tokenizer:
            tokenizer = self._load_tokenizer()
        encodings = self.encode_item_texts([text for _, text in rows], tokenizer)
        first = self.item_table.num_items
        self.item_table.append_rows(encodings.to(self.item_table.weight.device))
        self.append_item_text_tokens([text for _, text in rows], tokenizer)
        self.config.num_items = self.item_table.num_items
        self.item_catalog = self.item_catalog.with_items(rows)
        if self.item_popularity is not None:
            self.item_popularity = list(self.item_popularity) + [0] * len(rows)
        return list(range(first, first + len(rows)))

    def _load_tokenizer(self) -> PreTrainedTokenizerBase:
        """The tokenizer saved with the checkpoint this model was loaded from, else the backbone's."""
        directory = self.name_or_path  # the checkpoint directory (see from_pretrained); "" for a fresh model
        if directory and (Path(directory) / "tokenizer_config.json").is_file():
            return AutoTokenizer.from_pretrained(directory)
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
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`[batch, items, hidden]`: the backbone's hidden state at each item, whatever the input mode; and
        `[batch, items]`: the KL divergence of each item's latent from its prior where the backbone has one
        (the `kl` of SVAE's output), else `None`.

        With `input_mode="id+text"` the backbone reads a longer sequence (the most recent items are
        followed by their text's token embeddings, see text_inputs.py) and each item's state is
        taken at its last position, where the next item is predicted from.
        """
        if self.item_text_inputs is None:
            output = self.backbone(inputs_embeds=inputs_embeds, attention_mask=attention_mask, **kwargs)
            return output.last_hidden_state, getattr(output, "kl", None)
        if input_item_ids is None:
            raise ValueError("input_mode='id+text' needs input_item_ids: an item's text tokens are looked up by its id")
        layout = self.item_text_inputs.layout(input_item_ids, attention_mask)
        token_embedding = self.get_backbone().get_input_embeddings()  # frozen: LoRA does not adapt it
        expanded = self.item_text_inputs.expand(inputs_embeds, token_embedding, layout)
        hidden = self.backbone(inputs_embeds=expanded, attention_mask=layout.attention_mask, **kwargs).last_hidden_state
        return gather_item_states(hidden, layout.last_positions), None  # a pretrained LM: no latent

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
        return _fp32_scores(hidden_states, self.item_table.output_vectors(table), offsets, self.item_table.score_scale())

    def new_item_offsets(self, offsets: torch.Tensor | None) -> torch.Tensor | None:
        """`offsets` with `config.new_item_boost` added for every item without a trained ID, when recommending.

        Such an item (held out of training, or added with `add_items`) is scored from its text alone and
        lacks what training adds to a trained item's vector, so it ranks below trained items that suit a
        user as well. The boost is an inference-time choice: in training mode, and with no boost, the
        offsets are returned as they are, so the loss never sees it.
        """
        boost = self.config.new_item_boost  # 0 for a config saved before the option (SeqRecConfig fills in defaults)
        if not boost or self.training or not self.item_table.text_tower:
            return offsets
        without_id = (1.0 - self.item_table.has_id_embedding.float()) * boost
        return without_id if offsets is None else offsets.float() + without_id

    def _summed_cross_entropy(
        self,
        hidden: torch.Tensor,
        targets: torch.Tensor,
        table: torch.Tensor,
        offsets: torch.Tensor | None,
        weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Full-catalogue cross-entropy summed over positions (each times its weight, if given), chunked when
        `config.loss_chunk_size` is set."""
        chunk = self.config.loss_chunk_size
        if not chunk or hidden.size(0) <= chunk:
            return _summed_weighted_cross_entropy(self.score(hidden, table, offsets).float(), targets, weights)
        table = self.item_table.output_vectors(table)
        scale = self.item_table.score_scale()

        def chunk_loss(h: torch.Tensor, t: torch.Tensor, table: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
            return _summed_weighted_cross_entropy(_fp32_scores(h, table, offsets, scale), t, w)

        total = hidden.new_zeros((), dtype=torch.float32)
        for start in range(0, hidden.size(0), chunk):
            # Checkpointing drops each chunk's logits after the forward and recomputes them in the
            # backward: peak memory is one chunk of logits instead of all of them.
            total = total + torch.utils.checkpoint.checkpoint(
                chunk_loss, hidden[start : start + chunk], targets[start : start + chunk], table,
                None if weights is None else weights[start : start + chunk], use_reentrant=False,
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
        training_step: int | None = None,
        rewards: torch.FloatTensor | None = None,
        label_weights: torch.FloatTensor | None = None,
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
            training_step (`int`, *optional*):
                Optimizer steps taken so far, which the training loop passes: with a backbone that has a
                latent (SVAE), the weight of its KL term follows the backbone's annealing schedule from it
                (`None`: the schedule's cap). Other backbones ignore it.
            rewards (`torch.FloatTensor` of shape `(batch_size, seq_len)`, *optional*):
                With `labels`, on a model with a Q-learning head (`config.q_head`): the reward of choosing each
                position's label. The loss then adds the head's TD loss (SQN, q_learning.py), averaged over the
                same positions as the cross-entropy. The logits are the next-item head's either way.
            label_weights (`torch.FloatTensor` of shape `(batch_size, seq_len)`, *optional*):
                With `labels`: a weight for each position's cross-entropy (the reward-weighted objective passes each
                label's reward, so a target the user rated low teaches the model less). The sum is still divided by
                the number of labelled positions. Unset: every position weighs 1.
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
        hidden, position_kl = self._item_hidden_states(inputs_embeds, attention_mask, input_item_ids, **kwargs)
        hidden = self.hidden_dropout(hidden)

        loss = kl = None
        if labels is not None:
            labelled = labels != IGNORE_INDEX
            # Only labelled positions are scored: the [positions, num_items] logits are the
            # largest tensor of a step, and padding would waste most of it.
            denominator = num_items_in_batch if num_items_in_batch is not None else labelled.sum().clamp(min=1)
            loss_offsets = self.item_table.untrained_items_left_out(offsets)
            weights = None if label_weights is None else label_weights[labelled].float()
            loss = self._summed_cross_entropy(hidden[labelled], labels[labelled], table, loss_offsets, weights) / denominator
            if position_kl is not None:
                # SVAE's regulariser, averaged over the same positions as the cross-entropy, weighted by its annealed beta.
                kl = position_kl[labelled].sum() / denominator
                loss = loss + self.get_backbone().kl_weight(training_step) * kl
            if rewards is not None:
                if self.q_head is None:
                    raise ValueError("rewards were given, but this model has no Q-learning head (config.q_head is unset)")
                item_vectors = self.item_table.output_vectors(table)
                loss = loss + self.q_head.loss(hidden, item_vectors, attention_mask, labels, rewards) / denominator

        logits = None
        if return_logits if return_logits is not None else labels is None:
            last_position = attention_mask.sum(dim=1).clamp(min=1) - 1
            last_hidden = hidden[torch.arange(hidden.size(0), device=hidden.device), last_position]
            logits = self.score(last_hidden, table, self.new_item_offsets(offsets)).float()
        return NextItemOutput(loss=loss, logits=logits, last_hidden_state=hidden, kl=kl)

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
            # This file and its same-folder imports, the next-item pipeline among them (trust_remote_code).
            custom_object_save(self, directory, config=self.config)
            _name_pipeline(self.config)
        self.config.save_pretrained(directory)
        save_safetensors_atomic(_cpu_state(self.item_table.state_dict()), directory / ITEM_TABLE_FILE)
        if self.item_text_inputs is not None:
            self.item_text_inputs.save(directory)
        if self.q_head is not None:
            self.q_head.save(directory)
        if self.item_popularity is not None:
            write_item_popularity(directory, self.item_popularity, source="training sequences (items added later count 0)")
        if self.config.use_lora:
            # save_embedding_layers=False: the backbone's vocabulary matrix is never resized nor copied (it is
            # resolved again on load), and peft's "auto" would look the base model up on the Hub to decide.
            adapter_state = get_peft_model_state_dict(self.backbone, save_embedding_layers=False)
            save_safetensors_atomic(_cpu_state(adapter_state), directory / ADAPTER_FILE)
            adapter_config = copy.copy(self.backbone.peft_config["default"])
            # Named so that from_pretrained can load it (a built-in alias means something to hf_seqrec only).
            adapter_config.base_model_name_or_path = adapter_base_model(self.config.backbone_name_or_path)
            adapter_config.save_pretrained(directory)
            os.replace(directory / "adapter_config.json", directory / ADAPTER_CONFIG_FILE)
        elif not self.config.backbone_pretrained:
            save_safetensors_atomic(_untie(_cpu_state(self.get_backbone().state_dict())), directory / BACKBONE_FILE)
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
        """Load a checkpoint written by :meth:`save_pretrained`, from a directory or a Hub repo.

        The model gets the checkpoint's item catalogue (`item_catalog`) and popularity counts
        (`item_popularity`), so the next-item pipeline needs nothing but the model. Its
        `name_or_path` is the local directory the files were read from (the snapshot folder of a
        Hub repo): `add_items` loads the checkpoint's tokenizer from there.
        """
        directory = local_checkpoint_dir(pretrained_model_name_or_path, **kwargs)
        if config is None or not isinstance(config, SeqRecConfig):
            config = SeqRecConfig.from_pretrained(directory)
        config.name_or_path = str(directory)
        if is_sentence_encoder(config.item_text_encoder):
            # Items added later must be encoded by the encoder training used: say now, naming what to install, if it is missing.
            resolve_sentence_encoder(config.item_text_encoder)
        if isinstance(dtype, str) and dtype != "auto":
            dtype = getattr(torch, dtype)
        torch_dtype = dtype if isinstance(dtype, torch.dtype) else torch.float32

        if config.backbone_pretrained:
            location = resolve_backbone(config.backbone_name_or_path)
            backbone = load_pretrained_decoder(location, dtype=torch_dtype, num_layers=config.backbone_layers)
        else:
            backbone = AutoModel.from_config(config.build_backbone_config())
            _load_backbone_weights(backbone, directory / BACKBONE_FILE)
        model = cls(config, backbone=backbone)
        model.item_table.load_state_dict(load_file(directory / ITEM_TABLE_FILE))
        if model.item_text_inputs is not None:
            model.item_text_inputs.load(directory)
        if model.q_head is not None:
            model.q_head.load(directory)
        if config.use_lora:
            _load_adapter_weights(model.backbone, directory / ADAPTER_FILE)
        if (directory / CATALOG_FILE).is_file():
            model.item_catalog = ItemCatalog.load(directory)
        model.item_popularity = read_item_popularity(directory)
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


def _mean_token_embedding_norm(backbone: PreTrainedModel) -> float:
    """The mean norm of a pretrained LM's input token embeddings: the scale of the inputs it was trained on."""
    return float(backbone.get_input_embeddings().weight.float().norm(dim=1).mean())


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


def _summed_weighted_cross_entropy(scores: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """The cross-entropy of each row summed, each times its weight when there are weights."""
    if weights is None:
        return F.cross_entropy(scores, targets, reduction="sum")
    return (F.cross_entropy(scores, targets, reduction="none") * weights.to(scores.dtype)).sum()


def _fp32_scores(
    hidden_states: torch.Tensor, table: torch.Tensor, bias: torch.Tensor | None = None, scale: torch.Tensor | None = None
) -> torch.Tensor:
    """Dot products in fp32; with a `scale` (cosine scoring), cosines times that scale."""
    with torch.autocast(device_type=hidden_states.device.type, enabled=False):
        hidden_states, table = hidden_states.float(), table.float()
        if scale is not None:
            hidden_states = F.normalize(hidden_states, dim=-1) * scale.float()
            table = F.normalize(table, dim=-1)
        scores = hidden_states @ table.T
        return scores if bias is None else scores + bias.float()


def _add_residual_dropout(backbone: nn.Module, probability: float) -> None:
    """Dropout on each decoder layer's attention and MLP outputs, the two branches added to the residual stream.

    Pretrained LMs are trained without it (their configs have attention dropout at most), so it is added
    as forward hooks on the `self_attn` and `mlp` submodules of every decoder layer; LoRA wraps only the
    linear layers inside them, so the hooks see the adapted branch. Active only in training mode.
    """
    layers = [m for m in backbone.modules() if hasattr(m, "self_attn") and hasattr(m, "mlp")]
    if not layers:
        raise ValueError(f"residual_dropout: {type(backbone).__name__} has no decoder layers with self_attn and mlp submodules")
    for layer in layers:
        for branch in (layer.self_attn, layer.mlp):
            branch.register_forward_hook(_ResidualDropoutHook(probability))


class _ResidualDropoutHook:
    """A forward hook that drops out a branch's output (the first element of a tuple output) in training mode."""

    def __init__(self, probability: float) -> None:
        self.probability = probability

    def __call__(self, module: nn.Module, args: Any, output: Any) -> Any:
        if not module.training:
            return output
        if isinstance(output, tuple):
            return (F.dropout(output[0], self.probability, training=True), *output[1:])
        return F.dropout(output, self.probability, training=True)


def _name_pipeline(config: SeqRecConfig) -> None:
    """Name the next-item pipeline in `config.custom_pipelines`, for `pipeline(model=checkpoint, trust_remote_code=True)`.

    transformers loads `impl` ("<module>.<class>") from the checkpoint's own code files, where
    `custom_object_save` has copied the pipeline's module (a same-folder import of this file), so this
    works where hf_seqrec is not installed.
    """
    module = NextItemPipeline.__module__.rsplit(".", 1)[-1]
    config.custom_pipelines = {
        PIPELINE_TASK: {"impl": f"{module}.{NextItemPipeline.__name__}", "pt": ["AutoModel"], "tf": [], "type": "multimodal"}
    }


def _cpu_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU copies of a state dict's tensors, as safetensors writes them."""
    return {k: v.detach().contiguous().cpu() for k, v in state.items()}


def _untie(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses shared storage; give tied tensors their own copy."""
    seen: dict[int, str] = {}
    result = {}
    for name, tensor in state.items():
        pointer = tensor.data_ptr()
        result[name] = tensor.clone() if pointer in seen else tensor
        seen.setdefault(pointer, name)
    return result
