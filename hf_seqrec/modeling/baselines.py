"""Classic sequential recommenders as from-scratch backbones of :class:`SeqRecForNextItem`, and popularity.

Each neural baseline is only a *backbone*: ``SeqRecForNextItem`` feeds it the item embeddings and
scores its hidden states against the tied item table with a full-catalogue cross-entropy, exactly as
for the pretrained LM. So every model shares the data pipeline, collator, loss, trainer and evaluator,
and only the sequence encoder differs.

Built-in aliases
----------------
``sasrec``
    SASRec (Kang & McAuley, 2018) with full cross-entropy: a small causal transformer with learned
    positions. It is transformers' ``GPT2Model`` (pre-LayerNorm blocks, final LayerNorm, dropout on the
    embeddings, attention and residuals) with a one-row token vocabulary, since items come in as
    ``inputs_embeds``.
``gru4rec``
    GRU4Rec (Hidasi et al., 2016): item embedding -> GRU -> scores over the catalogue.
``lstm``
    The LSTM recommender: the same with an LSTM cell.

The recurrent backbones are small ``PreTrainedModel``s with their own config classes, registered with
``AutoConfig``/``AutoModel`` when this module is imported, so ``AutoModel.from_config`` rebuilds them
from a checkpoint's ``config.json``.

``popularity`` is not a backbone: :class:`PopularityRecommender` scores every item by its count in the
training split and is evaluated by the same evaluator (history masked like every other model).

This file is copied into every checkpoint for ``trust_remote_code``: it imports nothing from
hf_seqrec, only torch and transformers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, GPT2Config, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput
from transformers.utils import ModelOutput

BASELINE_BACKBONES = ("sasrec", "gru4rec", "lstm")
POPULARITY = "popularity"
BASELINES = (POPULARITY, *BASELINE_BACKBONES)

# Starting points of the from-scratch backbones. SASRec's reference setting: 2 blocks and one head, as in
# the SASRec paper, hidden 64, dropout 0.2.
BASELINE_DEFAULTS: dict[str, dict[str, Any]] = {
    "sasrec": {"hidden_size": 64, "num_layers": 2, "num_heads": 1, "dropout": 0.2},
    "gru4rec": {"hidden_size": 64, "num_layers": 1, "num_heads": None, "dropout": 0.2},
    "lstm": {"hidden_size": 64, "num_layers": 1, "num_heads": None, "dropout": 0.2},
}
# The size options of a baseline backbone, in the order the messages check them.
BASELINE_SIZES = ("hidden_size", "num_layers", "num_heads", "dropout")


def is_baseline_backbone(name: str) -> bool:
    """Whether ``name`` is the alias of a from-scratch baseline backbone (not ``popularity``)."""
    return name in BASELINE_BACKBONES


def baseline_sizes(
    name: str,
    hidden_size: int | None = None,
    num_layers: int | None = None,
    num_heads: int | None = None,
    dropout: float | None = None,
) -> dict[str, Any]:
    """The sizes of a baseline backbone: ``None`` values take the alias' defaults, and every size is checked.

    The one place that says what a baseline may be given; a run's config fills its options in with it
    (so training_config.yaml records what was built), and :func:`baseline_backbone_config` builds from it.
    Errors start with the option's name (``num_heads: ...``).
    """
    if name not in BASELINE_DEFAULTS:
        raise ValueError(f"unknown baseline backbone {name!r}; expected one of {BASELINE_BACKBONES}")
    if name != "sasrec" and num_heads is not None:
        raise ValueError(f"num_heads: applies to the sasrec backbone only, not {name!r}")
    given = {"hidden_size": hidden_size, "num_layers": num_layers, "num_heads": num_heads, "dropout": dropout}
    sizes = {key: BASELINE_DEFAULTS[name][key] if value is None else value for key, value in given.items()}
    for key in ("hidden_size", "num_layers"):
        if sizes[key] < 1:
            raise ValueError(f"{key}: expected a positive integer, got {sizes[key]}")
    if sizes["num_heads"] is not None and (sizes["num_heads"] < 1 or sizes["hidden_size"] % sizes["num_heads"]):
        raise ValueError(f"num_heads: expected a positive divisor of hidden_size {sizes['hidden_size']}, got {sizes['num_heads']}")
    if not 0.0 <= sizes["dropout"] < 1.0:
        raise ValueError(f"dropout: expected a value in [0, 1), got {sizes['dropout']}")
    return sizes


def baseline_backbone_config(
    name: str,
    hidden_size: int | None = None,
    max_len: int = 50,
    dropout: float | None = None,
    num_layers: int | None = None,
    num_heads: int | None = None,
) -> PretrainedConfig:
    """The backbone config of a baseline alias; ``None`` values take the alias' defaults (see :func:`baseline_sizes`).

    ``max_len`` is the longest sequence the model reads; SASRec learns one position embedding per
    position up to it.
    """
    sizes = baseline_sizes(name, hidden_size=hidden_size, num_layers=num_layers, num_heads=num_heads, dropout=dropout)
    hidden_size, num_layers, num_heads, dropout = (sizes[key] for key in BASELINE_SIZES)
    if max_len < 1:
        raise ValueError(f"max_len: expected a positive integer, got {max_len}")
    if name == "sasrec":
        return GPT2Config(
            vocab_size=1,  # items arrive as inputs_embeds; the token table is never read
            n_positions=max_len,
            n_embd=hidden_size,
            n_layer=num_layers,
            n_head=num_heads,
            resid_pdrop=dropout,
            embd_pdrop=dropout,
            attn_pdrop=dropout,
            bos_token_id=0,
            eos_token_id=0,
            use_cache=False,
        )
    config_class = GRU4RecConfig if name == "gru4rec" else LSTMRecConfig
    return config_class(hidden_size=hidden_size, num_hidden_layers=num_layers, dropout=dropout)


def build_baseline_backbone(name: str, dtype: torch.dtype | None = None, **options: Any) -> PreTrainedModel:
    """A freshly initialised baseline backbone (see :func:`baseline_backbone_config` for ``options``)."""
    backbone = AutoModel.from_config(baseline_backbone_config(name, **options))
    return backbone.to(dtype) if dtype is not None else backbone


# ----------------------------------------------------------------------------- recurrent backbones
class RecurrentConfig(PretrainedConfig):
    r"""Configuration of a recurrent sequence encoder (GRU4Rec, the LSTM recommender).

    Args:
        hidden_size (`int`, defaults to 64):
            Width of the input item embeddings and of the recurrent state (the item table is tied, so
            they are the same).
        num_hidden_layers (`int`, defaults to 1):
            Stacked recurrent layers.
        dropout (`float`, defaults to 0.2):
            Dropout on the input embeddings, between stacked layers and on the output states.
    """

    # Dataclass fields, as in transformers' own configs (PretrainedConfig turns every subclass into a
    # keyword-only dataclass; a custom __init__ here would be replaced in the subclasses below).
    hidden_size: int = 64
    num_hidden_layers: int = 1
    dropout: float = 0.2


class GRU4RecConfig(RecurrentConfig):
    model_type = "seqrec_gru4rec"


class LSTMRecConfig(RecurrentConfig):
    model_type = "seqrec_lstm"


class RecurrentBackbone(PreTrainedModel):
    """Item embeddings -> dropout -> stacked GRU/LSTM -> dropout -> one hidden state per position.

    The recurrence is causal, and batches are padded on the right, so a real position never reads
    padding: ``attention_mask`` needs no handling (the states at padded positions are never scored).
    """

    config_class = RecurrentConfig
    base_model_prefix = "recurrent"
    main_input_name = "inputs_embeds"
    rnn_class: type[nn.RNNBase] = nn.GRU

    def __init__(self, config: RecurrentConfig) -> None:
        super().__init__(config)
        self.dropout = nn.Dropout(config.dropout)
        self.rnn = self.rnn_class(
            input_size=config.hidden_size,
            hidden_size=config.hidden_size,
            num_layers=config.num_hidden_layers,
            dropout=config.dropout if config.num_hidden_layers > 1 else 0.0,
            batch_first=True,
        )
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        # Keep PyTorch's own RNN initialisation (uniform in +-1/sqrt(hidden_size)).
        if isinstance(module, nn.RNNBase):
            module.reset_parameters()

    def forward(
        self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs: Any
    ) -> BaseModelOutput:
        hidden, _ = self.rnn(self.dropout(inputs_embeds))
        return BaseModelOutput(last_hidden_state=self.dropout(hidden))


class GRU4RecModel(RecurrentBackbone):
    config_class = GRU4RecConfig
    rnn_class = nn.GRU


class LSTMRecModel(RecurrentBackbone):
    config_class = LSTMRecConfig
    rnn_class = nn.LSTM


def register_baseline_backbones() -> None:
    """Make ``AutoConfig.for_model`` / ``AutoModel.from_config`` know the recurrent backbones (idempotent)."""
    for config_class, model_class in ((GRU4RecConfig, GRU4RecModel), (LSTMRecConfig, LSTMRecModel)):
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        AutoModel.register(config_class, model_class, exist_ok=True)


register_baseline_backbones()


# ----------------------------------------------------------------------------- popularity
@dataclass
class PopularityOutput(ModelOutput):
    """Scores of every item (its training count), the same for every user."""

    logits: torch.FloatTensor | None = None


class PopularityRecommender(nn.Module):
    """Most-popular baseline: every user gets the items ranked by their count in the training sequences.

    It answers the evaluator's call like :class:`SeqRecForNextItem` (``logits`` of shape
    ``(batch_size, num_items)``), so it is ranked, masked and scored by the same code.
    """

    def __init__(self, counts: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("counts", counts.float())

    @classmethod
    def from_sequences(cls, sequences: Iterable[Sequence[int]], num_items: int) -> "PopularityRecommender":
        counts = torch.zeros(num_items, dtype=torch.long)
        for items in sequences:
            if len(items):
                counts += torch.bincount(torch.as_tensor(items, dtype=torch.long), minlength=num_items)
        return cls(counts)

    def forward(self, input_item_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None, **kwargs: Any) -> PopularityOutput:
        return PopularityOutput(logits=self.counts.to(input_item_ids.device).expand(input_item_ids.size(0), -1))
