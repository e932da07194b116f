"""Configuration of :class:`SeqRecForNextItem`."""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig, PretrainedConfig

# How an item enters the backbone; "id" (one position per item, from the item table) is the one built.
INPUT_MODES = ("id",)


class SeqRecConfig(PretrainedConfig):
    r"""Configuration of a next-item recommender built on a causal-LM backbone.

    A user's history is read by the backbone as a sequence of item embeddings; the hidden
    state at each item is scored against every row of the item table (tied head).

    Args:
        num_items (`int`):
            Number of items in the catalogue, i.e. rows in the item table and width of the logits.
        backbone_name_or_path (`str`):
            Where the backbone comes from: a built-in alias (`smollm2-135m`, `tiny-llama`), a local
            directory or a Hub id. Recorded so that a checkpoint, which stores only the adapter and
            the item table, can rebuild the backbone on another machine.
        backbone_config (`dict`, *optional*):
            The backbone's own config (`to_dict()`), so the architecture is known without a download.
        backbone_layers (`int`, *optional*):
            Keep only the first `backbone_layers` decoder layers of the pretrained backbone (all of them
            when unset). Stored so that every load rebuilds the same truncated backbone; `backbone_config`
            then describes the truncated model.
        backbone_pretrained (`bool`, defaults to `True`):
            Whether the backbone's weights come from `backbone_name_or_path`. When `False` (baselines
            trained from scratch) the whole backbone is trained and saved with the checkpoint.
        hidden_size (`int`, *optional*):
            Width of the item table; must match the backbone's hidden size (filled in from it).
        max_len (`int`, defaults to 50):
            Most recent items the model reads; longer histories are truncated on the left.
        input_mode (`str`, defaults to `"id"`):
            `"id"`: one position per item, fed from the item table.
        use_lora (`bool`, defaults to `True`):
            Adapt a pretrained backbone with LoRA instead of training it in full.
        lora_r, lora_alpha, lora_dropout, lora_target_modules:
            The LoRA adapter (see `peft.LoraConfig`).
        loss_chunk_size (`int`, *optional*):
            Score the catalogue for at most this many positions at a time and recompute each chunk's
            logits in the backward pass, so a step never holds the full `[positions, num_items]`
            logits. Off by default: it costs one extra scoring pass and only pays off for large
            catalogues (hundreds of thousands of items).
        item_embedding_dropout (`float`, defaults to 0.0):
            Dropout on the input item embeddings (a regulariser; the scoring head is not affected).
        item_text_tower (`bool`, defaults to `False`):
            Score items through a text tower: an item's vector is a learned projection of a frozen
            encoding of its text plus an ID embedding that only items seen in training use. Items that
            training never saw (cold items, or items added with `add_items`) then get a useful vector
            from their text alone.
        item_id_dropout (`float`, defaults to 0.0):
            With a text tower: the probability, per item and training step, of dropping the item's ID
            embedding, so the text path alone learns to rank (what a cold item relies on).
        item_score_bias (`bool`, defaults to `False`):
            Add a learned per-item offset to every score, so the items' popularity sits there
            instead of in the item vectors. Training starts it at each item's log training
            frequency (`ItemTable.set_score_bias_from_counts`).
        tie_item_table (`bool`, defaults to `True`):
            Score items with the same table that feeds them in (tied). `False` gives the scores a second
            item table of their own (initialised like the first); not available with `item_text_tower`,
            whose point is that an item's text alone places it for scoring.
        initializer_range (`float`, defaults to 0.02):
            Std of the normal initialisation of the item table when it is not initialised from text.
    """

    model_type = "seqrec"

    def __init__(
        self,
        num_items: int = 1,
        backbone_name_or_path: str = "tiny-llama",
        backbone_config: dict[str, Any] | None = None,
        backbone_layers: int | None = None,
        backbone_pretrained: bool = True,
        hidden_size: int | None = None,
        max_len: int = 50,
        input_mode: str = "id",
        use_lora: bool = True,
        lora_r: int = 8,
        lora_alpha: int = 16,
        lora_dropout: float = 0.0,
        lora_target_modules: list[str] | None = None,
        item_embedding_dropout: float = 0.0,
        loss_chunk_size: int | None = None,
        item_text_tower: bool = False,
        item_id_dropout: float = 0.0,
        item_score_bias: bool = False,
        tie_item_table: bool = True,
        initializer_range: float = 0.02,
        **kwargs: Any,
    ) -> None:
        if input_mode not in INPUT_MODES:
            raise ValueError(f"input_mode must be one of {INPUT_MODES}, got {input_mode!r}")
        if num_items < 1:
            raise ValueError(f"num_items must be at least 1, got {num_items}")
        if max_len < 1:
            raise ValueError(f"max_len must be at least 1, got {max_len}")
        if backbone_layers is not None and (isinstance(backbone_layers, bool) or not isinstance(backbone_layers, int) or backbone_layers < 1):
            raise ValueError(f"backbone_layers must be a positive number of decoder layers or None, got {backbone_layers!r}")
        if use_lora and lora_r < 1:
            raise ValueError(f"lora_r must be at least 1 when use_lora is set, got {lora_r}")
        self.num_items = num_items
        self.backbone_name_or_path = backbone_name_or_path
        self.backbone_config = backbone_config
        self.backbone_layers = backbone_layers
        self.backbone_pretrained = backbone_pretrained
        if hidden_size is None and backbone_config is not None:
            hidden_size = backbone_config.get("hidden_size")
        self.hidden_size = hidden_size
        self.max_len = max_len
        self.input_mode = input_mode
        self.use_lora = use_lora
        self.lora_r = lora_r
        self.lora_alpha = lora_alpha
        self.lora_dropout = lora_dropout
        self.lora_target_modules = list(lora_target_modules) if lora_target_modules else ["q_proj", "k_proj", "v_proj", "o_proj"]
        self.item_embedding_dropout = item_embedding_dropout
        if loss_chunk_size is not None and loss_chunk_size < 1:
            raise ValueError(f"loss_chunk_size must be a positive number of positions or None, got {loss_chunk_size}")
        self.loss_chunk_size = loss_chunk_size
        if not 0.0 <= item_id_dropout < 1.0:
            raise ValueError(f"item_id_dropout must be in [0, 1), got {item_id_dropout}")
        if item_id_dropout and not item_text_tower:
            raise ValueError("item_id_dropout needs item_text_tower=True: without a text tower an item has nothing but its ID")
        self.item_text_tower = item_text_tower
        self.item_id_dropout = item_id_dropout
        self.item_score_bias = item_score_bias
        if not tie_item_table and item_text_tower:
            raise ValueError("tie_item_table=False is not available with item_text_tower=True: cold items are scored from their text")
        self.tie_item_table = tie_item_table
        self.initializer_range = initializer_range
        if not __name__.startswith("transformers_modules."):
            # A checkpoint names its own copy of the pipeline in "custom_pipelines" (for processes
            # without hf_seqrec). transformers prefers that entry to the registered "next-item" task and
            # would then demand trust_remote_code, so hf_seqrec's own config ignores it on load.
            kwargs.pop("custom_pipelines", None)
        super().__init__(**kwargs)

    def build_backbone_config(self) -> PretrainedConfig:
        """The backbone's `PretrainedConfig`, rebuilt from the stored dict."""
        if self.backbone_config is None:
            raise ValueError("SeqRecConfig.backbone_config is not set; build the model with SeqRecForNextItem.from_backbone")
        config = dict(self.backbone_config)
        model_type = config.pop("model_type")
        return AutoConfig.for_model(model_type, **config)
