"""The fine-tuning configuration: one flat dataclass, read from YAML and overridden on the command line."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from ..data.prepare import TIMESTAMP_AUTO, DataConfig
from ..modeling.baselines import BASELINE_BACKBONES, BASELINE_DEFAULTS, POPULARITY


class ConfigError(ValueError):
    """A configuration value (from YAML or the command line) that cannot be used."""


@dataclass
class FinetuneConfig:
    """Everything a fine-tuning run needs. Field comments are the `--help` texts."""

    # data
    dataset: str = "movielens-100k"  # built-in dataset name or path to an interactions file
    items: str | None = None  # item metadata file (id + text fields)
    user_column: str = "user_id"  # interactions column holding the user id
    item_column: str = "item_id"  # interactions column holding the item id
    timestamp_column: str | None = TIMESTAMP_AUTO  # interactions column holding the time; none = file order; auto = "timestamp" if the file has one, else file order (with a notice)
    rating_column: str | None = None  # interactions column holding a rating (optional)
    min_rating: float | None = None  # keep interactions rated at least this (default: all, implicit feedback)
    item_id_column: str = "item_id"  # item metadata column holding the item id
    item_text_fields: list[str] | None = None  # item metadata columns rendered into the item text
    item_text_template: str | None = None  # str.format template for the item text, e.g. "{title} | {genres}"
    k_core: int = 0  # drop users and items with fewer interactions than this (0 = off)
    file_format: str | None = None  # csv, tsv, parquet or jsonl when the file extension does not say
    delimiter: str | None = None  # field separator of csv/tsv files, e.g. ";"
    # model
    backbone: str = "smollm2-135m"  # backbone alias (smollm2-135m, tiny-llama), local directory or Hub id; or a baseline: sasrec, gru4rec, lstm (from scratch), popularity
    backbone_layers: int | None = None  # keep only the first K decoder layers of a pretrained backbone (none = all)
    input_mode: str = "id"  # "id": one position per item; "id+text": the most recent items are also read as their text's tokens, and the next item is predicted after them
    text_items_in_context: int | None = None  # with input_mode id+text: how many of the most recent items are followed by their text (default 5)
    item_text_max_tokens: int | None = None  # with input_mode id+text: most tokens of an item's text read, the first ones (default 16)
    max_len: int = 50  # most recent items read per user; training sequences are cut into windows of this length
    item_text_init: bool = True  # initialise the item table from the backbone's embeddings of the item text
    use_lora: bool = True  # adapt the backbone with LoRA (False: train it in full)
    lora_r: int = 8  # LoRA rank
    lora_alpha: int = 16  # LoRA scaling numerator
    lora_dropout: float = 0.0  # dropout on the LoRA input
    lora_target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])  # modules adapted by LoRA
    item_embedding_dropout: float = 0.0  # dropout on input item embeddings
    item_text_tower: bool = False  # item vector = learned projection of its text encoding + an ID embedding for items seen in training; unseen and added items are scored from text
    item_score_bias: bool = False  # a learned per-item score offset, started at the item's log training frequency (popularity)
    tie_item_table: bool = True  # score items with the input item table (False: a separate output table)
    item_id_dropout: float | None = None  # with item_text_tower: chance per item and step of dropping its ID embedding (default 0.5)
    item_text_design: str = "projection"  # with item_text_tower: "projection" (learned projection of the text + ID embedding), "bounded-delta" (frozen content vector + a per-item delta of bounded norm) or "null-space" (the delta confined to directions the text leaves empty)
    item_delta_max: float | None = 0.5  # bounded-delta and null-space designs: largest delta norm relative to the content vector's (none = unbounded, null-space only)
    item_semantic_variance: float = 0.9  # null-space design: share of the text encodings' variance kept for the text
    item_text_popularity: bool = False  # with item_text_tower and item_score_bias: items without an ID embedding take a score offset predicted from their text (trained through ID dropout)
    item_text_encoder: str = "token-embeddings"  # how item text becomes a vector: "token-embeddings" (mean input token embedding), "mean-pooled" or "last-token" (the frozen pretrained LM reads the text)
    item_text_prompt: str | None = None  # template with a {text} field that wraps the item text before it is encoded
    item_text_encoder_layers: int | None = None  # contextual encoders: decoder layers of the pretrained model that read the text (default: the backbone's)
    loss_chunk_size: int | None = None  # score the catalogue this many positions at a time (bounds logits memory for huge catalogues)
    # from-scratch baseline backbones only (sasrec, gru4rec, lstm; none = the baseline's default)
    hidden_size: int | None = None  # width of the item table and the backbone (default 64)
    num_layers: int | None = None  # transformer blocks (sasrec, default 2) or stacked recurrent layers (default 1)
    num_heads: int | None = None  # attention heads (sasrec only, default 1)
    dropout: float | None = None  # dropout inside the backbone (default 0.2)
    # optimisation
    num_epochs: int = 2  # passes over the training windows
    max_steps: int | None = None  # stop after this many optimizer steps (overrides num_epochs when reached first)
    batch_size: int = 16  # training windows per device per step
    eval_batch_size: int = 64  # users per device per evaluation batch
    gradient_accumulation_steps: int = 1  # micro-batches per optimizer step
    group_by_length: bool = False  # batch training windows of similar length together (less padding; order still reshuffled every epoch)
    learning_rate: float = 1e-3  # AdamW learning rate of the LoRA adapter (or the backbone)
    item_table_learning_rate: float | None = None  # AdamW learning rate of the item table (default: learning_rate)
    weight_decay: float = 0.0  # AdamW weight decay (not applied to the item table)
    lr_scheduler: str = "constant_with_warmup"  # any transformers scheduler name: linear, cosine, constant_with_warmup, ...
    warmup_steps: int = 0  # linear warm-up steps
    max_grad_norm: float = 1.0  # gradient clipping (0 = off)
    mixed_precision: str = "auto"  # "auto" = bf16 on a GPU, fp32 on the CPU; or "no", "bf16", "fp16"
    seed: int = 42  # seeds Python, NumPy, torch and the data order
    # evaluation and checkpoints
    early_stopping_patience: int | None = 3  # epochs without a better validation NDCG@10 before stopping
    checkpoint_every_steps: int = 200  # save the full training state every this many optimizer steps
    cold_start_fraction: float = 0.0  # hold out this fraction of items (seeded by seed) from training and report cold and warm test metrics separately (0 = off)
    eval_max_users: int | None = None  # evaluate on the first N users only (quick runs; metrics files say so)
    bootstrap_samples: int = 1000  # resamples for the metrics' 95% intervals
    num_workers: int = 0  # DataLoader worker processes
    # output
    output_dir: str = "runs/smollm2-ml100k"  # where the checkpoint, metrics and logs go
    overwrite_output_dir: bool = False  # allow writing into a non-empty output directory
    resume: bool = False  # continue from the last saved training state in output_dir
    report_to: str | None = "tensorboard"  # accelerate tracker ("tensorboard", "all", none)
    merge: bool = False  # also write a standalone merged model (adapter folded in) to output_dir/merged
    push_to_hub: bool = False  # upload the final checkpoint to the Hub
    hub_model_id: str | None = None  # repository id for --push_to_hub

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            setattr(self, spec.name, _coerce(spec.name, value, _field_type(spec)))
        self._settle_input_mode_options()
        for name in ("num_epochs", "batch_size", "eval_batch_size", "gradient_accumulation_steps", "max_len"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: expected a positive integer, got {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps < 0:
            raise ConfigError(f"max_steps: expected a non-negative integer, got {self.max_steps}")
        if self.mixed_precision not in ("auto", "no", "bf16", "fp16"):
            raise ConfigError(f"mixed_precision: expected auto, no, bf16 or fp16, got {self.mixed_precision!r}")
        if self.push_to_hub and not self.hub_model_id:
            raise ConfigError("push_to_hub: --hub_model_id is required to push")
        self._settle_baseline_options()
        self._settle_text_tower_options()
        if not 0.0 <= self.cold_start_fraction < 1.0:
            raise ConfigError(f"cold_start_fraction: expected a value in [0, 1), got {self.cold_start_fraction}")

    def _settle_input_mode_options(self) -> None:
        """"id+text" reads item text through the backbone's tokenizer and embeddings; its two sizes apply to it alone."""
        if self.input_mode not in ("id", "id+text"):
            raise ConfigError(f"input_mode: expected 'id' or 'id+text', got {self.input_mode!r}")
        sizes = {"text_items_in_context": 5, "item_text_max_tokens": 16}
        if self.input_mode == "id":
            given = [name for name in sizes if getattr(self, name) is not None]
            if given:
                raise ConfigError(f"{', '.join(given)}: applies only with --input_mode id+text")
            return
        if self.backbone in BASELINE_BACKBONES or self.backbone == POPULARITY:
            raise ConfigError(f"input_mode: 'id+text' reads item text, and the {self.backbone!r} baseline has no tokenizer to read it with")
        for name, default in sizes.items():
            if getattr(self, name) is None:
                setattr(self, name, default)
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: expected a positive integer, got {getattr(self, name)}")

    def _settle_text_tower_options(self) -> None:
        """The text tower reads item text through the backbone's tokenizer; ID dropout and the design are its options."""
        from ..modeling.configuration_seqrec import TEXT_DESIGNS
        from ..modeling.text_encoding import TEXT_ENCODERS, check_text_prompt

        if self.item_text_design not in TEXT_DESIGNS:
            raise ConfigError(f"item_text_design: expected one of {', '.join(TEXT_DESIGNS)}, got {self.item_text_design!r}")
        if self.item_text_encoder not in TEXT_ENCODERS:
            raise ConfigError(f"item_text_encoder: expected one of {', '.join(TEXT_ENCODERS)}, got {self.item_text_encoder!r}")
        try:
            check_text_prompt(self.item_text_prompt)
        except ValueError as error:
            raise ConfigError(str(error)) from None
        if self.item_delta_max is None and self.item_text_design == "bounded-delta":
            raise ConfigError("item_delta_max: the bounded-delta design needs a bound (a positive number)")
        if self.item_delta_max is not None and not self.item_delta_max > 0:
            raise ConfigError(f"item_delta_max: expected a positive number, got {self.item_delta_max}")
        if self.item_text_encoder != "token-embeddings" or self.item_text_prompt is not None or self.item_text_encoder_layers is not None:
            if not self.item_text_init or self.backbone in BASELINE_BACKBONES or self.backbone == POPULARITY:
                raise ConfigError("item_text_encoder: item text is encoded only for a pretrained LM backbone with item_text_init")
        if self.item_text_popularity and not (self.item_text_tower and self.item_score_bias):
            raise ConfigError("item_text_popularity: needs --item_text_tower and --item_score_bias (it predicts the score offset from text)")
        if self.item_text_design != "projection" and not self.item_text_tower:
            raise ConfigError(f"item_text_design: {self.item_text_design!r} applies only with --item_text_tower")
        if not self.item_text_tower:
            if self.item_id_dropout:
                raise ConfigError("item_id_dropout: applies only with --item_text_tower")
            self.item_id_dropout = 0.0
            return
        if self.backbone in BASELINE_BACKBONES or self.backbone == POPULARITY:
            raise ConfigError(f"item_text_tower: the {self.backbone!r} baseline has no tokenizer to read item text with")
        if not self.tie_item_table:
            raise ConfigError("tie_item_table: a separate output table is not available with --item_text_tower (cold items are scored from text)")
        if not self.item_text_init:
            raise ConfigError("item_text_tower: needs item_text_init (the tower starts from the item texts' encodings)")
        if self.item_id_dropout is None:
            self.item_id_dropout = 0.5
        if not 0.0 <= self.item_id_dropout < 1.0:
            raise ConfigError(f"item_id_dropout: expected a value in [0, 1), got {self.item_id_dropout}")

    def _settle_baseline_options(self) -> None:
        """Fill in the baseline sizes, so training_config.yaml records what was actually built.

        From-scratch backbones have no pretrained weights (nothing for LoRA to adapt, the whole backbone
        is trained) and no tokenizer (no item text to initialise the table from): ``use_lora`` and
        ``item_text_init`` are set to false for them.
        """
        sizes = ("hidden_size", "num_layers", "num_heads", "dropout")
        if self.backbone in BASELINE_BACKBONES:
            for name in sizes:
                if getattr(self, name) is None:
                    setattr(self, name, BASELINE_DEFAULTS[self.backbone][name])
            if self.backbone != "sasrec" and self.num_heads is not None:
                raise ConfigError(f"num_heads: applies to the sasrec backbone only, not {self.backbone!r}")
            for name in ("hidden_size", "num_layers"):
                if getattr(self, name) < 1:
                    raise ConfigError(f"{name}: expected a positive integer, got {getattr(self, name)}")
            if self.num_heads is not None and (self.num_heads < 1 or self.hidden_size % self.num_heads):
                raise ConfigError(f"num_heads: expected a positive divisor of hidden_size {self.hidden_size}, got {self.num_heads}")
            if not 0.0 <= self.dropout < 1.0:
                raise ConfigError(f"dropout: expected a value in [0, 1), got {self.dropout}")
            if self.backbone_layers is not None:
                raise ConfigError(f"backbone_layers: keeps layers of a pretrained backbone; size the {self.backbone!r} baseline with num_layers")
            self.use_lora = False
            self.item_text_init = False
        else:
            if self.backbone_layers is not None and self.backbone_layers < 1:
                raise ConfigError(f"backbone_layers: expected a positive number of decoder layers, got {self.backbone_layers}")
            given = [name for name in sizes if getattr(self, name) is not None]
            if given:
                raise ConfigError(
                    f"{', '.join(given)}: only size the from-scratch baselines ({', '.join(BASELINE_BACKBONES)}); "
                    f"the {self.backbone!r} backbone brings its own architecture"
                )
            if self.backbone == POPULARITY:
                self.use_lora = False
                self.item_text_init = False

    def record_data_report(self, report: dict[str, Any]) -> None:
        """Replace ``timestamp_column: auto`` by what the data gave (a column or None), before training_config.yaml is written.

        The saved config then says how the run read its data, and scripts/evaluate.py reads it the
        same way without repeating the file-order notice.
        """
        if self.timestamp_column == TIMESTAMP_AUTO and "timestamp_column" in report:
            self.timestamp_column = report["timestamp_column"]

    def data_config(self) -> DataConfig:
        return DataConfig(
            dataset=self.dataset,
            items=self.items,
            user_column=self.user_column,
            item_column=self.item_column,
            timestamp_column=self.timestamp_column,
            rating_column=self.rating_column,
            min_rating=self.min_rating,
            item_id_column=self.item_id_column,
            item_text_fields=self.item_text_fields,
            item_text_template=self.item_text_template,
            k_core=self.k_core,
            file_format=self.file_format,
            delimiter=self.delimiter,
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

    One function for the trainer and scripts/evaluate.py, so a checkpoint is re-scored under the
    precision its run scored it with.
    """
    if mixed_precision != "auto":
        return mixed_precision
    import torch

    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


def _field_type(spec: dataclasses.Field) -> Any:
    hints = typing.get_type_hints(FinetuneConfig)
    return hints[spec.name]


def _coerce(name: str, value: Any, annotation: Any) -> Any:
    """Check (and gently convert, e.g. int -> float) a value against its field's type."""
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


class LiteralHelpArgumentParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose help texts are plain text, not ``%``-format strings.

    argparse formats every help text with ``%`` to fill in ``%(default)s``; a help text that
    merely mentions a percentage ("95% intervals") then crashes ``--help``. The field comments that
    become help texts are prose, so every ``%`` in them is escaped.
    """

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        if isinstance(kwargs.get("help"), str):
            kwargs["help"] = kwargs["help"].replace("%", "%%")
        return super().add_argument(*args, **kwargs)


def build_argument_parser(description: str) -> argparse.ArgumentParser:
    """One `--option` per config field; only options actually given override the YAML file."""
    parser = LiteralHelpArgumentParser(description=description)
    parser.add_argument("--config", help="YAML file with option values (command-line options override it)")
    source = Path(__file__).read_text(encoding="utf-8")
    for spec in fields(FinetuneConfig):
        help_text = _field_comment(source, spec.name)
        annotation = _field_type(spec)
        if annotation is bool:
            parser.add_argument(f"--{spec.name}", action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text)
        else:
            parser.add_argument(f"--{spec.name}", default=argparse.SUPPRESS, help=help_text)
    return parser


def config_from_args(argv: list[str] | None = None, description: str = "") -> FinetuneConfig:
    args = vars(build_argument_parser(description).parse_args(argv))
    config_path = args.pop("config", None)
    if config_path:
        return FinetuneConfig.from_yaml(config_path, **args)
    return FinetuneConfig(**args)


def _field_comment(source: str, name: str) -> str | None:
    for line in source.splitlines():
        stripped = line.strip()
        if stripped.startswith(f"{name}:") and "#" in stripped:
            return stripped.split("#", 1)[1].strip()
    return None
