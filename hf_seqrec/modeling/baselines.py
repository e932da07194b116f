"""Classic sequential recommenders as from-scratch backbones of :class:`SeqRecForNextItem`.

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
``svae``
    SVAE (Sachdeva et al., 2019): item embedding -> GRU -> a Gaussian latent ``z_t`` per step -> a
    decoder whose output is scored like every other backbone's hidden state. Its backbone output also
    carries the KL divergence of each step's posterior from ``N(0, I)``, which ``SeqRecForNextItem``
    adds to the loss with an annealed weight (see :class:`SVAEModel`).

The recurrent backbones are small ``PreTrainedModel``s with their own config classes, registered with
``AutoConfig``/``AutoModel`` when this module is imported, so ``AutoModel.from_config`` rebuilds them
from a checkpoint's ``config.json``.

``popularity`` is not a backbone and has no checkpoint: its model (``hf_seqrec/training/popularity_model.py``)
scores every item by its count in the training split; only its name is here, among the baselines a run can be.

This file is copied into every checkpoint for ``trust_remote_code``: it imports nothing from
hf_seqrec, only torch and transformers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import math

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, GPT2Config, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput

BASELINE_BACKBONES = ("sasrec", "gru4rec", "lstm", "svae")
POPULARITY = "popularity"
BASELINES = (POPULARITY, *BASELINE_BACKBONES)

# Starting points of the from-scratch backbones. SASRec's reference setting: 2 blocks and one head, as in
# the SASRec paper, hidden 64, dropout 0.2.
BASELINE_DEFAULTS: dict[str, dict[str, Any]] = {
    "sasrec": {"hidden_size": 64, "num_layers": 2, "num_heads": 1, "dropout": 0.2},
    "gru4rec": {"hidden_size": 64, "num_layers": 1, "num_heads": None, "dropout": 0.2},
    "lstm": {"hidden_size": 64, "num_layers": 1, "num_heads": None, "dropout": 0.2},
    # SVAE: the paper's latent width (64) and anneal cap (0.2); its decoder's tanh hidden layer.
    "svae": {
        "hidden_size": 64, "num_layers": 1, "num_heads": None, "dropout": 0.2,
        "latent_size": 64, "kl_anneal_cap": 0.2, "kl_anneal_steps": 2000, "latent_decoder": "tanh",
    },
}
# The options only the svae backbone takes: its latent, its decoder and the annealing of its KL weight.
SVAE_OPTIONS = ("latent_size", "kl_anneal_cap", "kl_anneal_steps", "latent_decoder")
# How SVAE's decoder maps a latent to the step's output vector: "tanh" (one tanh hidden layer, as in the paper)
# or "linear" (one linear map).
LATENT_DECODERS = ("tanh", "linear")
# The options of a baseline backbone (its sizes, then SVAE's), in the order the messages check them.
BASELINE_SIZES = ("hidden_size", "num_layers", "num_heads", "dropout", *SVAE_OPTIONS)


def is_baseline_backbone(name: str) -> bool:
    """Whether ``name`` is the alias of a from-scratch baseline backbone (not ``popularity``)."""
    return name in BASELINE_BACKBONES


def baseline_sizes(
    name: str,
    hidden_size: int | None = None,
    num_layers: int | None = None,
    num_heads: int | None = None,
    dropout: float | None = None,
    latent_size: int | None = None,
    kl_anneal_cap: float | None = None,
    kl_anneal_steps: int | None = None,
    latent_decoder: str | None = None,
) -> dict[str, Any]:
    """The options of a baseline backbone: ``None`` values take the alias' defaults, and every option is checked.

    The one place that says what a baseline may be given; a run's config fills its options in with it
    (so training_config.yaml records what was built), and :func:`baseline_backbone_config` builds from it.
    The SVAE options stay ``None`` for the other baselines. Errors start with the option's name
    (``num_heads: ...``).
    """
    if name not in BASELINE_DEFAULTS:
        raise ValueError(f"unknown baseline backbone {name!r}; expected one of {BASELINE_BACKBONES}")
    if name != "sasrec" and num_heads is not None:
        raise ValueError(f"num_heads: applies to the sasrec backbone only, not {name!r}")
    given = {
        "hidden_size": hidden_size, "num_layers": num_layers, "num_heads": num_heads, "dropout": dropout,
        "latent_size": latent_size, "kl_anneal_cap": kl_anneal_cap, "kl_anneal_steps": kl_anneal_steps,
        "latent_decoder": latent_decoder,
    }
    if name != "svae":
        for key in SVAE_OPTIONS:
            if given[key] is not None:
                raise ValueError(f"{key}: applies to the svae backbone only, not {name!r}")
    defaults = {key: None for key in SVAE_OPTIONS} | BASELINE_DEFAULTS[name]
    sizes = {key: defaults[key] if value is None else value for key, value in given.items()}
    for key in ("hidden_size", "num_layers"):
        if sizes[key] < 1:
            raise ValueError(f"{key}: expected a positive integer, got {sizes[key]}")
    if sizes["num_heads"] is not None and (sizes["num_heads"] < 1 or sizes["hidden_size"] % sizes["num_heads"]):
        raise ValueError(f"num_heads: expected a positive divisor of hidden_size {sizes['hidden_size']}, got {sizes['num_heads']}")
    if not 0.0 <= sizes["dropout"] < 1.0:
        raise ValueError(f"dropout: expected a value in [0, 1), got {sizes['dropout']}")
    if name == "svae":
        check_svae_options(**{key: sizes[key] for key in SVAE_OPTIONS})
    return sizes


def check_svae_options(latent_size: Any, kl_anneal_cap: Any, kl_anneal_steps: Any, latent_decoder: Any) -> None:
    """SVAE's own options; a ``ValueError`` that starts with the option's name says what was expected.

    Shared by :func:`baseline_sizes` (a run's options, checked before any data is read) and
    :class:`SVAEConfig` (a config built directly, or read from a checkpoint).
    """
    if not _is_count(latent_size) or latent_size < 1:
        raise ValueError(f"latent_size: expected a positive integer, got {latent_size!r}")
    if isinstance(kl_anneal_cap, bool) or not isinstance(kl_anneal_cap, (int, float)) or not (
        math.isfinite(kl_anneal_cap) and kl_anneal_cap >= 0
    ):
        raise ValueError(f"kl_anneal_cap: expected a non-negative number (the largest weight of the KL term), got {kl_anneal_cap!r}")
    if not _is_count(kl_anneal_steps) or kl_anneal_steps < 0:
        raise ValueError(
            f"kl_anneal_steps: expected a non-negative number of optimizer steps (0: the cap from the first step), got {kl_anneal_steps!r}"
        )
    if latent_decoder not in LATENT_DECODERS:
        raise ValueError(f"latent_decoder: expected one of {', '.join(LATENT_DECODERS)}, got {latent_decoder!r}")


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def baseline_backbone_config(
    name: str,
    hidden_size: int | None = None,
    max_len: int = 50,
    dropout: float | None = None,
    num_layers: int | None = None,
    num_heads: int | None = None,
    latent_size: int | None = None,
    kl_anneal_cap: float | None = None,
    kl_anneal_steps: int | None = None,
    latent_decoder: str | None = None,
) -> PretrainedConfig:
    """The backbone config of a baseline alias; ``None`` values take the alias' defaults (see :func:`baseline_sizes`).

    ``max_len`` is the longest sequence the model reads; SASRec learns one position embedding per
    position up to it. ``latent_size``, ``kl_anneal_cap``, ``kl_anneal_steps`` and ``latent_decoder``
    apply to ``svae`` only (see :class:`SVAEConfig`).
    """
    sizes = baseline_sizes(
        name, hidden_size=hidden_size, num_layers=num_layers, num_heads=num_heads, dropout=dropout,
        latent_size=latent_size, kl_anneal_cap=kl_anneal_cap, kl_anneal_steps=kl_anneal_steps, latent_decoder=latent_decoder,
    )
    hidden_size, num_layers, num_heads, dropout = (sizes[key] for key in ("hidden_size", "num_layers", "num_heads", "dropout"))
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
    if name == "svae":
        return SVAEConfig(
            hidden_size=hidden_size, num_hidden_layers=num_layers, dropout=dropout, **{key: sizes[key] for key in SVAE_OPTIONS}
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
        self.rnn = _recurrent_layers(self.rnn_class, config)
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


def _recurrent_layers(rnn_class: type[nn.RNNBase], config: RecurrentConfig) -> nn.RNNBase:
    """Stacked recurrent layers of ``config.hidden_size`` in and out, with dropout between layers."""
    return rnn_class(
        input_size=config.hidden_size,
        hidden_size=config.hidden_size,
        num_layers=config.num_hidden_layers,
        dropout=config.dropout if config.num_hidden_layers > 1 else 0.0,
        batch_first=True,
    )


class GRU4RecModel(RecurrentBackbone):
    config_class = GRU4RecConfig
    rnn_class = nn.GRU


class LSTMRecModel(RecurrentBackbone):
    config_class = LSTMRecConfig
    rnn_class = nn.LSTM


# ----------------------------------------------------------------------------- SVAE
class SVAEConfig(RecurrentConfig):
    r"""Configuration of the SVAE backbone (Sachdeva et al., WSDM 2019): a GRU, a Gaussian latent per step, a decoder.

    Args:
        hidden_size, num_hidden_layers, dropout:
            As for :class:`RecurrentConfig` (the GRU); ``hidden_size`` is also the width of the decoder's
            output, which is scored against the tied item table.
        latent_size (`int`, defaults to 64):
            Width of each step's latent ``z_t``.
        kl_anneal_cap (`float`, defaults to 0.2):
            The largest weight ``beta`` of the KL term, as the paper's anneal cap.
        kl_anneal_steps (`int`, defaults to 2000):
            Optimizer steps over which ``beta`` rises linearly from 0 to ``kl_anneal_cap`` (0: the cap from
            the first step).
        latent_decoder (`str`, defaults to `"tanh"`):
            ``"tanh"``: latent -> linear -> tanh -> linear, the paper's one hidden layer; ``"linear"``: one
            linear map from the latent to the output vector.
    """

    model_type = "seqrec_svae"
    latent_size: int = 64
    kl_anneal_cap: float = 0.2
    kl_anneal_steps: int = 2000
    latent_decoder: str = "tanh"

    def __post_init__(self, **kwargs: Any) -> None:
        super().__post_init__(**kwargs)
        check_svae_options(self.latent_size, self.kl_anneal_cap, self.kl_anneal_steps, self.latent_decoder)


@dataclass
class SVAEOutput(BaseModelOutput):
    """The decoder's output vector at each step, and each step's KL divergence from the prior.

    Args:
        kl (`torch.FloatTensor` of shape `(batch_size, seq_len)`):
            ``KL(q(z_t | items up to t) || N(0, I))`` at each position, in fp32 (padding included: the
            caller keeps the positions it trains on).
    """

    kl: torch.FloatTensor | None = None


class SVAEModel(PreTrainedModel):
    """Item embeddings -> dropout -> GRU -> dropout -> (mean, log-variance) of ``z_t`` -> ``z_t`` -> decoder.

    In training ``z_t`` is sampled with the reparameterisation trick; in evaluation it is the mean, so
    scores are deterministic. The decoder's output replaces the paper's softmax layer over items:
    ``SeqRecForNextItem`` scores it against the tied item table with the full-catalogue cross-entropy
    every model is trained with, so the multinomial likelihood is the project's own. The output also
    carries each step's KL divergence, which the model adds to the loss weighted by :meth:`kl_weight`.

    The recurrence is causal and batches are padded on the right, so ``attention_mask`` needs no
    handling, as for :class:`RecurrentBackbone`.
    """

    config_class = SVAEConfig
    base_model_prefix = "svae"
    main_input_name = "inputs_embeds"

    def __init__(self, config: SVAEConfig) -> None:
        super().__init__(config)
        self.dropout = nn.Dropout(config.dropout)
        self.rnn = _recurrent_layers(nn.GRU, config)
        self.latent = nn.Linear(config.hidden_size, 2 * config.latent_size)  # mean and log-variance of z_t
        self.decoder = _latent_decoder(config)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        # PyTorch's own initialisation of the GRU and the linear maps, as the paper's reference code has.
        if isinstance(module, (nn.RNNBase, nn.Linear)):
            module.reset_parameters()

    def forward(
        self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs: Any
    ) -> SVAEOutput:
        states, _ = self.rnn(self.dropout(inputs_embeds))
        mean, log_variance = self.latent(self.dropout(states)).chunk(2, dim=-1)
        latent = mean + torch.randn_like(mean) * (0.5 * log_variance).exp() if self.training else mean
        return SVAEOutput(last_hidden_state=self.decoder(latent), kl=gaussian_kl(mean, log_variance))

    def kl_weight(self, training_step: int | None) -> float:
        """``beta`` after ``training_step`` optimizer steps: ``kl_anneal_cap * min(1, training_step / kl_anneal_steps)``.

        The step comes from the caller, not from a counter kept here. The training loop passes the
        optimizer steps it has taken (``TrainerState.global_step``), which its checkpoints already save
        and a resumed run restores exactly, so a killed and resumed run anneals exactly as an
        uninterrupted one. A counter in the model would miss that: the loop's checkpoints keep only the
        trainable weights (not buffers), and a forward pass is not an optimizer step under gradient
        accumulation. ``None`` (a call from outside the loop) gives the cap, the objective annealing ends at.
        """
        cap, steps = self.config.kl_anneal_cap, self.config.kl_anneal_steps
        if training_step is None or training_step >= steps:
            return float(cap)
        return cap * max(training_step, 0) / steps


def _latent_decoder(config: SVAEConfig) -> nn.Module:
    """Latent -> the step's output vector (``hidden_size`` wide): one tanh hidden layer, or one linear map."""
    if config.latent_decoder == "linear":
        return nn.Linear(config.latent_size, config.hidden_size)
    return nn.Sequential(
        nn.Linear(config.latent_size, config.hidden_size), nn.Tanh(), nn.Linear(config.hidden_size, config.hidden_size)
    )


def gaussian_kl(mean: torch.Tensor, log_variance: torch.Tensor) -> torch.Tensor:
    """``KL(N(mean, diag(exp(log_variance))) || N(0, I))`` over the last dimension, in fp32."""
    mean, log_variance = mean.float(), log_variance.float()
    return 0.5 * (log_variance.exp() + mean.square() - 1.0 - log_variance).sum(dim=-1)


def register_baseline_backbones() -> None:
    """Make ``AutoConfig.for_model`` / ``AutoModel.from_config`` know the recurrent backbones (idempotent)."""
    for config_class, model_class in ((GRU4RecConfig, GRU4RecModel), (LSTMRecConfig, LSTMRecModel), (SVAEConfig, SVAEModel)):
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        AutoModel.register(config_class, model_class, exist_ok=True)


register_baseline_backbones()
