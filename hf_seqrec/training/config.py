"""The fine-tuning configuration, in the shape of transformers' example scripts and peft's ``LoraConfig``.

The options are three dataclasses whose fields carry their ``--help`` text in ``metadata["help"]``:
``DataConfig`` (data/prepare.py: where the data comes from and how it is read), :class:`ModelArguments`
(what model is built; the model's own options are declared with the model, in ``ModelOptions``) and
:class:`RunArguments` (optimisation, evaluation, output). :class:`FinetuneConfig` is the three in one
flat dataclass, so ``config.dataset``, ``config.backbone`` and ``config.num_epochs`` all work and
training_config.yaml is one flat mapping. Each ``__post_init__`` checks and normalises its
own options (wrong types, impossible combinations, defaults that depend on other options) and warns
about legal but suspicious ones. :class:`SeqRecArgumentParser` (an ``HfArgumentParser``) makes one flag
per field; a YAML file given with ``--config`` is read first and the flags given override it.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import difflib
import functools
import math
import types
import typing
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import yaml
from transformers import HfArgumentParser

from ..data.prepare import DataConfig
from ..data.rewards import RewardRules, RewardSyntaxError
from ..modeling.baselines import BASELINE_BACKBONES, BASELINE_SIZES, POPULARITY, baseline_sizes
from ..modeling.configuration_seqrec import (
    DEFAULT_ITEM_ID_DROPOUT,
    ITEM_TEXT_MAX_TOKENS,
    MODEL_OPTION_NAMES,
    TEXT_ITEMS_IN_CONTEXT,
    ModelOptions,
    check_model_options,
)
from ..modeling.q_learning import DEFAULT_DISCOUNT, DEFAULT_WEIGHT
from ..modeling.text_encoding import is_sentence_encoder
from ..option_checks import check_positive_int

# What --reward trains: SQN's Q-learning head, or the cross-entropy weighted by each target's reward.
REWARD_OBJECTIVES = ("sqn", "reward-weighted")


class ConfigError(ValueError):
    """A configuration value (from YAML or the command line) that cannot be used."""


# The model options whose flags default to none: the run settles them from its other options (ModelArguments._settle_*).
_SETTLED_BY_THE_RUN = ("text_items_in_context", "item_text_max_tokens", "item_id_dropout")


def _with_model_options(cls: type) -> type:
    """Give ``cls`` a field, and so a flag, for every model option, with the type, default and help ``ModelOptions`` declares.

    The model's options are declared once, with the model; this makes each of them a flag without a second
    declaration. The options in ``_SETTLED_BY_THE_RUN`` default to none instead. The fields keep the order
    of the flags: ``backbone``, the model options with ``item_text_init`` before the LoRA ones, then the
    other fields of ``cls``.
    """
    own = dict(cls.__annotations__)
    annotations = {"backbone": own.pop("backbone")}
    for spec in fields(ModelOptions):
        if spec.name == "use_lora":
            annotations["item_text_init"] = own.pop("item_text_init")
        settled = spec.name in _SETTLED_BY_THE_RUN
        annotations[spec.name] = f"{spec.type} | None" if settled else spec.type
        default = None if settled else spec.default
        setattr(cls, spec.name, field(default=default, default_factory=spec.default_factory, metadata=spec.metadata))
    cls.__annotations__ = {**annotations, **own}
    return cls


@dataclass
@_with_model_options
class ModelArguments:
    """What model a run builds: the backbone, how items enter it and are scored, LoRA, and the baselines' sizes.

    The model's own options (``ModelOptions``, what ``SeqRecConfig`` stores in config.json) are fields too,
    added by ``_with_model_options`` with the type, default and help declared there; :meth:`model_options`
    hands them to the model whole.
    """

    _argument_group_name = "model"

    backbone: str = field(
        default="smollm2-135m",
        metadata={
            "help": "backbone alias (smollm2-135m, tiny-llama), local directory or Hub id; or a baseline: sasrec, "
            "gru4rec, lstm, svae (from scratch), popularity"
        },
    )
    item_text_init: bool = field(
        default=True, metadata={"help": "initialise the item table from the backbone's embeddings of the item text"}
    )
    # from-scratch baseline backbones only (sasrec, gru4rec, lstm, svae; none = the baseline's default)
    hidden_size: int | None = field(
        default=None, metadata={"help": "baselines: width of the item table and the backbone (default 64)"}
    )
    num_layers: int | None = field(
        default=None,
        metadata={"help": "baselines: transformer blocks (sasrec, default 2) or stacked recurrent layers (default 1)"},
    )
    num_heads: int | None = field(default=None, metadata={"help": "baselines: attention heads (sasrec only, default 1)"})
    dropout: float | None = field(default=None, metadata={"help": "baselines: dropout inside the backbone (default 0.2)"})
    # the svae baseline only (none = its default)
    latent_size: int | None = field(default=None, metadata={"help": "svae: width of each step's Gaussian latent (default 64)"})
    kl_anneal_cap: float | None = field(
        default=None, metadata={"help": "svae: the largest weight of the KL term, reached after kl_anneal_steps (default 0.2)"}
    )
    kl_anneal_steps: int | None = field(
        default=None,
        metadata={
            "help": "svae: optimizer steps over which the KL weight rises linearly from 0 to kl_anneal_cap "
            "(default 2000; 0 = the cap from the first step)"
        },
    )
    latent_decoder: str | None = field(
        default=None,
        metadata={"help": 'svae: "tanh" (one tanh hidden layer, as in the paper; the default) or "linear" from latent to output'},
    )

    def __post_init__(self) -> None:
        coerce_fields(self, ModelArguments)
        self._check_model_options()

    def model_options(self) -> dict[str, Any]:
        """The run's model options as ``SeqRecConfig`` takes them; a size the run left unset takes the model's default.

        Only ``text_items_in_context`` and ``item_text_max_tokens`` are ever left unset (none): without
        ``--input_mode id+text`` they do not apply, and the model records its defaults.
        """
        options = {name: getattr(self, name) for name in MODEL_OPTION_NAMES}
        return {name: value for name, value in options.items() if value is not None or name not in _SETTLED_BY_THE_RUN}

    @property
    def is_baseline(self) -> bool:
        """A from-scratch baseline backbone or popularity: no pretrained weights and no tokenizer."""
        return self.backbone in BASELINE_BACKBONES or self.backbone == POPULARITY

    def _check_model_options(self) -> None:
        """Settle what depends on the backbone and the other options, then apply the model's own rules."""
        self._settle_input_mode_options()
        self._settle_baseline_options()
        self._settle_text_tower_options()
        # The model's rules live with the model (check_model_options, also run by SeqRecConfig); checked here,
        # before any data or weights are loaded, with the option named.
        try:
            check_model_options(ModelOptions(**self.model_options()))
        except ValueError as error:
            raise ConfigError(str(error)) from None
        if not self.use_lora and any(getattr(self, name) != default for name, default in _lora_defaults().items()):
            warnings.warn("lora_*: LoRA options are set but use_lora is false, so they are not used", UserWarning, stacklevel=3)

    def _settle_input_mode_options(self) -> None:
        """"id+text" reads item text through the backbone's tokenizer and embeddings; its two sizes apply to it alone."""
        sizes = {"text_items_in_context": TEXT_ITEMS_IN_CONTEXT, "item_text_max_tokens": ITEM_TEXT_MAX_TOKENS}
        if self.input_mode == "id":
            given = [name for name in sizes if getattr(self, name) is not None]
            if given:
                raise ConfigError(f"{', '.join(given)}: applies only with --input_mode id+text")
            return
        if self.is_baseline:
            raise ConfigError(f"input_mode: 'id+text' reads item text, and the {self.backbone!r} baseline has no tokenizer to read it with")
        for name, default in sizes.items():
            if getattr(self, name) is None:
                setattr(self, name, default)

    def _settle_baseline_options(self) -> None:
        """Fill in the baseline sizes, so training_config.yaml records what was actually built.

        From-scratch backbones have no pretrained weights (nothing for LoRA to adapt, the whole backbone
        is trained) and no tokenizer (no item text to initialise the table from): ``use_lora`` and
        ``item_text_init`` are set to false for them and for popularity, here and nowhere else.
        """
        if self.backbone in BASELINE_BACKBONES:
            try:
                sizes = baseline_sizes(self.backbone, **{name: getattr(self, name) for name in BASELINE_SIZES})
            except ValueError as error:
                raise ConfigError(str(error)) from None
            for name, value in sizes.items():
                setattr(self, name, value)
            if self.backbone_layers is not None:
                raise ConfigError(f"backbone_layers: keeps layers of a pretrained backbone; size the {self.backbone!r} baseline with num_layers")
        else:
            given = [name for name in BASELINE_SIZES if getattr(self, name) is not None]
            if given:
                raise ConfigError(
                    f"{', '.join(given)}: apply only to the from-scratch baselines ({', '.join(BASELINE_BACKBONES)}); "
                    f"the {self.backbone!r} backbone brings its own architecture"
                )
        if self.is_baseline:
            self.use_lora = False
            # A from-scratch backbone reads item text only through a sentence encoder of its own, in the text tower.
            self.item_text_init = self.item_text_tower and is_sentence_encoder(self.item_text_encoder)

    def _settle_text_tower_options(self) -> None:
        """The text tower and the LM's own text encoders read item text through the backbone's tokenizer.

        So they need a pretrained LM with ``item_text_init``; a sentence encoder (``sentence-transformer:...``)
        reads the text itself, so with it the tower works on a from-scratch backbone too. ``item_id_dropout``
        defaults to ``DEFAULT_ITEM_ID_DROPOUT`` with a tower (0 with let-it-go, which the paper trains
        without it) and to 0 without one.
        """
        sentence_encoder = is_sentence_encoder(self.item_text_encoder)
        lm_encoding = self.item_text_encoder != "token-embeddings" or self.item_text_prompt is not None or self.item_text_encoder_layers is not None
        if lm_encoding and not sentence_encoder and (not self.item_text_init or self.is_baseline):
            raise ConfigError("item_text_encoder: item text is encoded only for a pretrained LM backbone with item_text_init")
        if not self.item_text_tower:
            if self.item_id_dropout is None:
                self.item_id_dropout = 0.0
            return
        if self.backbone == POPULARITY:
            raise ConfigError("item_text_tower: the popularity baseline is a count, not a model; it has no item vectors")
        if self.is_baseline and not sentence_encoder:
            raise ConfigError(
                f"item_text_tower: the {self.backbone!r} baseline has no tokenizer to read item text with; give it a sentence "
                "encoder of its own (--item_text_encoder sentence-transformer:minilm --item_text_design let-it-go)"
            )
        if not self.item_text_init:
            raise ConfigError("item_text_tower: needs item_text_init (the tower starts from the item texts' encodings)")
        if self.item_id_dropout is None:
            self.item_id_dropout = 0.0 if self.item_text_design == "let-it-go" else DEFAULT_ITEM_ID_DROPOUT


@dataclass
class RunArguments:
    """How a run trains, evaluates and saves: optimisation, evaluation, checkpoints and output."""

    _argument_group_name = "run"

    # optimisation
    num_epochs: int = field(default=2, metadata={"help": "passes over the training windows"})
    max_steps: int | None = field(
        default=None,
        metadata={"help": "stop after this many optimizer steps (overrides num_epochs when reached first)"},
    )
    batch_size: int = field(default=16, metadata={"help": "training windows per device per step"})
    eval_batch_size: int = field(default=64, metadata={"help": "users per device per evaluation batch"})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "micro-batches per optimizer step"})
    group_by_length: bool = field(
        default=False,
        metadata={
            "help": "batch training windows of similar length together (less padding; order still reshuffled every epoch)"
        },
    )
    learning_rate: float = field(
        default=1e-3, metadata={"help": "AdamW learning rate of the LoRA adapter (or the backbone)"}
    )
    item_table_learning_rate: float | None = field(
        default=None, metadata={"help": "AdamW learning rate of the item table (default: learning_rate)"}
    )
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay (not applied to the item table)"})
    lr_scheduler: str = field(
        default="constant_with_warmup",
        metadata={"help": "any transformers scheduler name: linear, cosine, constant_with_warmup, ..."},
    )
    warmup_steps: int = field(default=0, metadata={"help": "linear warm-up steps"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping (0 = off)"})
    mixed_precision: str = field(
        default="auto",
        metadata={"help": '"auto" = bf16 on a GPU, fp32 on the CPU; or "no", "bf16", "fp16"'},
    )
    seed: int = field(default=42, metadata={"help": "seeds Python, NumPy, torch and the data order"})
    # evaluation and checkpoints
    early_stopping_patience: int | None = field(
        default=3, metadata={"help": "epochs without a better validation NDCG@10 before stopping"}
    )
    checkpoint_every_steps: int = field(
        default=200, metadata={"help": "save the full training state every this many optimizer steps"}
    )
    cold_start_fraction: float = field(
        default=0.0,
        metadata={
            "help": "hold out this fraction of items (seeded by seed) from training and report cold and warm test "
            "metrics separately (0 = off)"
        },
    )
    new_item_boost_max_warm_loss: float | None = field(
        default=None,
        metadata={
            "help": "with cold_start_fraction and item_text_tower: after training, set new_item_boost to the largest "
            "value from 0 to 2 (steps of 0.05) whose validation NDCG@10 on warm targets loses at most this share "
            "against no boost (e.g. 0.05); the checkpoint keeps it and the test split is scored with it"
        },
    )
    eval_max_users: int | None = field(
        default=None, metadata={"help": "evaluate on the first N users only (quick runs; metrics files say so)"}
    )
    bootstrap_samples: int = field(default=1000, metadata={"help": "resamples for the metrics' 95% intervals"})
    num_workers: int = field(default=0, metadata={"help": "DataLoader worker processes"})
    vary_windows: bool = field(
        default=False,
        metadata={
            "help": "cut each history into training windows at a different place every epoch (a random offset per "
            "user and epoch, a function of the seed), instead of at the same places every epoch"
        },
    )
    # distillation
    teacher: str | None = field(
        default=None,
        metadata={
            "help": "a trained hf_seqrec run directory (e.g. a SASRec run) on the same data and split; its "
            "full-catalogue scores are distilled into this model"
        },
    )
    distill_weight: float = field(
        default=0.5,
        metadata={"help": "with --teacher: loss = (1 - w) * cross-entropy + w * T^2 * KL(teacher || student)"},
    )
    distill_temperature: float = field(default=1.0, metadata={"help": "with --teacher: softmax temperature T of both"})
    # the reward-aware objective (SQN: a Q-learning head next to the next-item head; or the reward-weighted cross-entropy)
    reward: str | None = field(
        default=None,
        metadata={
            "help": 'reward of an interaction from its rating, as ordered rules ending in else, e.g. "rating>=4:1.0,else:0.2"; '
            "trains a Q-learning head on these rewards next to the next-item head (SQN); needs rated data"
        },
    )
    reward_objective: str = field(
        default="sqn",
        metadata={
            "help": "with --reward: sqn (a Q-learning head with a TD loss next to the cross-entropy) or reward-weighted "
            "(each position's cross-entropy weighted by its target's reward; no extra head)"
        },
    )
    reward_weight: float = field(
        default=DEFAULT_WEIGHT, metadata={"help": "with --reward: weight of the TD loss added to the cross-entropy"}
    )
    reward_discount: float = field(
        default=DEFAULT_DISCOUNT, metadata={"help": "with --reward: discount gamma of future rewards (SQN's 0.5)"}
    )
    # output
    output_dir: str = field(
        default="runs/smollm2-ml100k", metadata={"help": "where the checkpoint, metrics and logs go"}
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "allow writing into a non-empty output directory"}
    )
    resume: bool = field(default=False, metadata={"help": "continue from the last saved training state in output_dir"})
    report_to: str | None = field(
        default="tensorboard", metadata={"help": 'accelerate tracker ("tensorboard", "all", none)'}
    )
    log_level: str = field(
        default="warning",
        metadata={
            "help": "log level of the libraries (debug, info, warning, error): info shows accelerate's lines for "
            "every saved training state; hf_seqrec's own notices show at any level"
        },
    )
    merge: bool = field(
        default=False, metadata={"help": "also write a standalone merged model (adapter folded in) to output_dir/merged"}
    )
    push_to_hub: bool = field(default=False, metadata={"help": "upload the final checkpoint to the Hub"})
    hub_model_id: str | None = field(default=None, metadata={"help": "repository id for --push_to_hub"})

    def __post_init__(self) -> None:
        coerce_fields(self, RunArguments)
        self._check_run_options()

    def _check_run_options(self) -> None:
        for name in ("num_epochs", "batch_size", "eval_batch_size", "gradient_accumulation_steps"):
            check_positive_int(name, getattr(self, name), error=ConfigError, message="{name}: expected a positive integer, got {value}")
        if self.max_steps is not None and self.max_steps < 0:
            raise ConfigError(f"max_steps: expected a non-negative integer, got {self.max_steps}")
        if self.mixed_precision not in ("auto", "no", "bf16", "fp16"):
            raise ConfigError(f"mixed_precision: expected auto, no, bf16 or fp16, got {self.mixed_precision!r}")
        if self.push_to_hub and not self.hub_model_id:
            raise ConfigError("push_to_hub: --hub_model_id is required to push")
        if not 0.0 <= self.cold_start_fraction < 1.0:
            raise ConfigError(f"cold_start_fraction: expected a value in [0, 1), got {self.cold_start_fraction}")
        if self.new_item_boost_max_warm_loss is not None and not 0.0 <= self.new_item_boost_max_warm_loss < 1.0:
            raise ConfigError(f"new_item_boost_max_warm_loss: expected a share in [0, 1), got {self.new_item_boost_max_warm_loss}")
        if not 0.0 <= self.distill_weight <= 1.0:
            raise ConfigError(f"distill_weight: expected a weight in [0, 1], got {self.distill_weight}")
        if not self.distill_temperature > 0:
            raise ConfigError(f"distill_temperature: expected a positive temperature, got {self.distill_temperature}")
        if self.teacher is not None and not (Path(self.teacher) / "config.json").is_file():
            raise ConfigError(f"teacher: expected a trained hf_seqrec run directory with config.json, got {self.teacher!r}")
        self._check_reward_options()
        if self.warmup_steps and self.lr_scheduler == "constant":
            warnings.warn(
                "warmup_steps: the constant scheduler has no warm-up; use constant_with_warmup to warm up",
                UserWarning,
                stacklevel=3,
            )


    def _check_reward_options(self) -> None:
        """A readable ``--reward`` and a usable weight and discount; the two alone, without ``--reward``, are a warning."""
        if self.reward is None:
            if (self.reward_weight, self.reward_discount, self.reward_objective) != (DEFAULT_WEIGHT, DEFAULT_DISCOUNT, "sqn"):
                warnings.warn(
                    "reward_weight, reward_discount, reward_objective: set but --reward is not, so they are not used",
                    UserWarning, stacklevel=4,
                )
            return
        try:
            rules = RewardRules.parse(self.reward)
        except RewardSyntaxError as error:
            raise ConfigError(str(error)) from None
        if self.reward_objective not in REWARD_OBJECTIVES:
            raise ConfigError(f"reward_objective: expected one of {', '.join(REWARD_OBJECTIVES)}, got {self.reward_objective!r}")
        values = [rule.value for rule in rules.rules] + [rules.otherwise]
        if self.reward_objective == "reward-weighted" and (min(values) < 0 or max(values) == 0):
            # A negative weight rewards a higher cross-entropy: the loss would fall without bound.
            raise ConfigError(
                f"reward: --reward_objective reward-weighted weighs the cross-entropy by the reward, so the rewards must be "
                f"non-negative and not all 0; {self.reward!r} gives {', '.join(f'{v:g}' for v in values)}"
            )
        if self.reward_objective == "reward-weighted" and (self.reward_weight, self.reward_discount) != (DEFAULT_WEIGHT, DEFAULT_DISCOUNT):
            warnings.warn(
                "reward_weight, reward_discount: they shape SQN's TD loss, which --reward_objective reward-weighted does not have",
                UserWarning, stacklevel=4,
            )
        if not (self.reward_weight > 0 and math.isfinite(self.reward_weight)):
            raise ConfigError(f"reward_weight: expected a positive weight, got {self.reward_weight}")
        if not 0.0 <= self.reward_discount < 1.0:
            raise ConfigError(f"reward_discount: expected a discount in [0, 1), got {self.reward_discount}")


@dataclass
class FinetuneConfig(RunArguments, ModelArguments, DataConfig):
    """Everything a fine-tuning run needs: the data, model and run options as one flat dataclass.

    Fields come in that order (data, model, run), which is also the order of training_config.yaml.
    A data option that ``DataConfig`` refuses is a :class:`ConfigError` here, like every other option.
    """

    def __post_init__(self) -> None:
        coerce_fields(self, DataConfig)  # values from a command line arrive as text
        try:
            DataConfig.__post_init__(self)
        except (TypeError, ValueError) as error:
            raise ConfigError(str(error)) from None
        ModelArguments.__post_init__(self)
        RunArguments.__post_init__(self)
        self._check_reward_data()
        self._check_new_item_boost_options()

    def _check_new_item_boost_options(self) -> None:
        """Choosing the boost needs cold validation targets to choose on and a model that scores items from text."""
        if self.new_item_boost_max_warm_loss is None:
            return
        if not self.cold_start_fraction:
            raise ConfigError(
                "new_item_boost_max_warm_loss: the boost is chosen on validation targets held out of training; "
                "set --cold_start_fraction (e.g. 0.1)"
            )
        if not self.item_text_tower:
            raise ConfigError("new_item_boost_max_warm_loss: needs --item_text_tower (only a text tower scores items without a trained ID)")

    def _check_reward_data(self) -> None:
        """``--reward`` needs a model to hold the Q-learning head and a rating on every interaction."""
        if self.reward is None:
            return
        if self.backbone == POPULARITY:
            raise ConfigError("reward: the popularity baseline is a count, not a model; there is no encoder for a Q-learning head")
        if not self.is_builtin and self.rating_column is None:
            raise ConfigError(
                f"reward: rewards are computed from ratings, but no rating column is named for {self.dataset}; "
                "set --rating_column to the interactions column that holds the ratings"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> "FinetuneConfig":
        """Read a YAML file; unknown keys and wrong types are errors that name the key and the file."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not valid YAML ({error})") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: expected a mapping of option names to values, found {type(values).__name__}")
        known = {spec.name for spec in fields(cls)}
        for key in values:
            if key not in known:
                close = difflib.get_close_matches(str(key), sorted(known), n=3)
                hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
                raise ConfigError(f"{path}: unknown option {key!r}{hint}")
        try:
            return cls(**{**values, **overrides})
        except ConfigError as error:
            raise ConfigError(f"{path}: {error}") from None


def resolve_mixed_precision(mixed_precision: str) -> str:
    """accelerate's ``mixed_precision`` for a run's setting: "auto" is bf16 on a GPU that supports it, else fp32 ("no").

    One function for the trainer and scripts/evaluate_checkpoint.py, so a checkpoint is re-scored under the
    precision its run scored it with.
    """
    if mixed_precision != "auto":
        return mixed_precision
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


def _lora_defaults() -> dict[str, Any]:
    """The defaults of the ``lora_*`` options, read from their fields."""
    return {
        spec.name: spec.default_factory() if spec.default is dataclasses.MISSING else spec.default
        for spec in fields(ModelArguments)
        if spec.name.startswith("lora_")
    }


@functools.cache
def _type_hints(owner: type) -> dict[str, Any]:
    return typing.get_type_hints(owner)


def coerce_fields(options: Any, owner: type) -> None:
    """Check (and gently convert) every field of ``owner`` that ``options`` holds against its annotation."""
    hints = _type_hints(owner)
    for spec in fields(owner):
        setattr(options, spec.name, _coerce(spec.name, getattr(options, spec.name), hints[spec.name]))


def _coerce(name: str, value: Any, annotation: Any) -> Any:
    """Check (and gently convert, e.g. int -> float) a value against its field's type.

    Command-line values arrive as text: "none"/"null" for an optional value, "a,b" for a list.
    """
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None:
            return None
        if isinstance(value, str) and value.lower() in ("none", "null") and type(None) in typing.get_args(annotation):
            return None
        return _coerce(name, value, options[0])
    if origin is list:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name}: expected a list, got {value!r}")
        (inner,) = typing.get_args(annotation)
        return [_coerce(name, v, inner) for v in value]
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{name}: expected true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ConfigError(f"{name}: expected an integer, got {value!r}")
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"{name}: expected an integer, got {value!r}") from None
    if annotation is float:
        if isinstance(value, bool):
            raise ConfigError(f"{name}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: expected a number, got {value!r}") from None
    if annotation is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{name}: expected a string, got {value!r}")
        return str(value)
    return value


class LiteralHelpFormatter(argparse.HelpFormatter):
    """Help texts printed as written.

    argparse formats every help text with ``%`` to fill in ``%(default)s``; a help text that merely
    mentions a percentage ("95% intervals") then crashes ``--help``. The help texts here are prose.
    """

    def _expand_help(self, action: argparse.Action) -> str:
        return self._get_help_string(action)


class SeqRecArgumentParser(HfArgumentParser):
    """``HfArgumentParser`` for option dataclasses that check and convert their own values in ``__post_init__``.

    What it adds, each kept from the scripts' command lines:

    - a value other than a boolean reaches the dataclass as written, so "none"/"null" works for an
      optional value, a list is comma-separated, and a wrong type is reported by the dataclass with the
      option named (``batch_size: expected an integer, got 'big'``), as it is for a YAML file;
    - every boolean has ``--NAME``, ``--NAME false`` and ``--no-NAME``;
    - help texts are prose (a ``%`` in one is printed as is);
    - no defaults are filled in: :meth:`given_options` returns only the options on the command line, so
      they override a ``--config`` file and the dataclass supplies the rest.
    """

    def __init__(self, dataclass_types: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", LiteralHelpFormatter)
        super().__init__(dataclass_types, **kwargs)
        names = {spec.name for dtype in self.dataclass_types for spec in fields(dtype)}
        for action in self._actions:
            if action.dest in names:
                action.default = argparse.SUPPRESS

    @staticmethod
    def _parse_dataclass_field(parser: argparse.ArgumentParser, field: dataclasses.Field) -> None:
        if field.type is not bool:
            field = copy.copy(field)
            field.type = str  # the dataclass converts and checks it
        HfArgumentParser._parse_dataclass_field(parser, field)
        if field.type is bool:
            missing = [o for o in (f"--no-{field.name}", f"--no_{field.name}") if o not in parser._option_string_actions]
            if missing:
                parser.add_argument(*missing, action="store_false", dest=field.name, help=f"set {field.name} to false")

    def given_options(self, argv: list[str] | None = None) -> dict[str, Any]:
        """The options given on the command line (``config`` among them when the parser has it)."""
        return vars(self.parse_args(argv))


# For command lines that take a few options of a dataclass (scripts/recommend.py takes DataConfig's
# data options): the flag of one field as SeqRecArgumentParser makes it, and the conversion of the
# text given to the field's type, so that those options read exactly as scripts/finetune.py reads them.
def add_field_option(parser: argparse.ArgumentParser, field: dataclasses.Field) -> None:
    """Add the flag of one dataclass field to ``parser``, as :class:`SeqRecArgumentParser` makes it."""
    SeqRecArgumentParser._parse_dataclass_field(parser, field)


def build_argument_parser(description: str) -> SeqRecArgumentParser:
    """One flag per option of :class:`FinetuneConfig`, grouped as data, model and run options, and ``--config``."""
    parser = SeqRecArgumentParser((DataConfig, ModelArguments, RunArguments), description=description)
    parser.add_argument("--config", default=argparse.SUPPRESS, help="YAML file with option values (command-line options override it)")
    return parser


def config_from_args(argv: list[str] | None = None, description: str = "") -> FinetuneConfig:
    """The run's config: ``--config FILE.yaml`` (if given) overridden by the other flags given."""
    given = build_argument_parser(description).given_options(argv)
    config_path = given.pop("config", None)
    if config_path:
        return FinetuneConfig.from_yaml(config_path, **given)
    return FinetuneConfig(**given)
