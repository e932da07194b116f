"""Each model option is declared once, in ``ModelOptions``: the model's config, its rules, the fine-tuning
flags and config.json all follow from that declaration."""

from __future__ import annotations

import dataclasses
import json

import pytest

from hf_seqrec.modeling import configuration_seqrec
from hf_seqrec.modeling.baselines import BASELINE_SIZES
from hf_seqrec.modeling.configuration_seqrec import (
    DEFAULT_LORA_TARGET_MODULES,
    MODEL_OPTION_NAMES,
    ModelOptions,
    SeqRecConfig,
    check_model_options,
)
from hf_seqrec.training import config as training_config
from hf_seqrec.training.config import ConfigError, FinetuneConfig, ModelArguments, SeqRecArgumentParser, build_argument_parser

# Model options away from their defaults that the model's rules accept together; between them they move
# every option but use_lora and tie_item_table, which the last two sets move.
NON_DEFAULT_OPTIONS = [
    {
        "backbone_layers": 2, "input_mode": "id+text", "text_items_in_context": 3, "item_text_max_tokens": 8,
        "max_len": 20, "lora_r": 4, "lora_alpha": 8, "lora_dropout": 0.1, "lora_target_modules": ["q_proj"],
        "item_embedding_dropout": 0.1, "item_text_tower": True, "item_score_bias": True, "item_id_dropout": 0.3,
        "item_text_design": "let-it-go", "item_delta_max": 0.2, "item_text_center_deltas": True,
        "item_semantic_variance": 0.8, "item_text_popularity": True, "item_text_encoder": "mean-pooled",
        "item_text_prompt": "Item: {text}", "item_text_encoder_layers": 2, "loss_chunk_size": 32,
        "item_scoring": "cosine", "hidden_dropout": 0.1, "residual_dropout": 0.1,
    },
    {"use_lora": False, "item_embedding_dim": 16},
    {"tie_item_table": False},
]


def _option_values(config: SeqRecConfig) -> dict[str, object]:
    return {name: getattr(config, name) for name in MODEL_OPTION_NAMES}


def test_the_model_takes_its_defaults_from_the_declaration():
    declared = dataclasses.asdict(ModelOptions())
    assert _option_values(SeqRecConfig()) == declared
    assert declared["lora_target_modules"] == list(DEFAULT_LORA_TARGET_MODULES)
    for empty in (None, []):  # no targets named: the default ones
        assert SeqRecConfig(lora_target_modules=empty).lora_target_modules == list(DEFAULT_LORA_TARGET_MODULES)


@pytest.mark.parametrize("options", NON_DEFAULT_OPTIONS)
def test_every_model_option_is_saved_in_config_json_and_rebuilt_by_from_pretrained(tmp_path, options):
    config = SeqRecConfig(num_items=5, **options)
    assert _option_values(config) == {**dataclasses.asdict(ModelOptions()), **options}
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert {name: saved[name] for name in MODEL_OPTION_NAMES} == _option_values(config)
    assert _option_values(SeqRecConfig.from_pretrained(tmp_path)) == _option_values(config)


def test_every_model_option_is_a_finetune_flag_with_the_declared_help():
    parser = build_argument_parser("test")
    flags = {action.dest: action for action in parser._actions if f"--{action.dest}" in action.option_strings}
    for spec in dataclasses.fields(ModelOptions):
        assert flags[spec.name].help == spec.metadata["help"]


def test_model_arguments_are_the_model_options_the_backbone_item_text_init_and_the_baseline_sizes():
    # In this order, which is the order of the flags in --help and of the keys in training_config.yaml.
    names = [spec.name for spec in dataclasses.fields(ModelArguments)]
    lora = MODEL_OPTION_NAMES.index("use_lora")
    assert names == [
        "backbone", *MODEL_OPTION_NAMES[:lora], "item_text_init", *MODEL_OPTION_NAMES[lora:], *BASELINE_SIZES
    ]
    defaults = dataclasses.asdict(ModelOptions())
    settled = {"text_items_in_context", "item_text_max_tokens", "item_id_dropout"}  # by the run, from its other options
    arguments = FinetuneConfig()
    assert {name: getattr(arguments, name) for name in MODEL_OPTION_NAMES} == {
        **defaults, "text_items_in_context": None, "item_text_max_tokens": None, "item_id_dropout": 0.0
    }
    assert {spec.name for spec in dataclasses.fields(ModelArguments) if spec.default is None} >= settled


def test_a_run_hands_its_model_options_to_the_model_whole():
    assert _option_values(SeqRecConfig(**FinetuneConfig().model_options())) == _option_values(SeqRecConfig())
    run = FinetuneConfig(input_mode="id+text", text_items_in_context=3, item_text_tower=True, item_score_bias=True)
    model = SeqRecConfig(**run.model_options())
    assert (model.text_items_in_context, model.item_text_max_tokens, model.item_id_dropout) == (3, 16, 0.5)
    assert _option_values(model) == {name: getattr(run, name) for name in MODEL_OPTION_NAMES}


def test_the_rules_take_the_options_whole_and_name_the_option():
    check_model_options(ModelOptions())
    with pytest.raises(ValueError, match=r"^lora_r: expected a positive LoRA rank, got 0$"):
        check_model_options(ModelOptions(lora_r=0))
    with pytest.raises(ValueError, match=r"^lora_r: "):
        SeqRecConfig(lora_r=0)
    with pytest.raises(ConfigError, match=r"^lora_r: "):
        FinetuneConfig(lora_r=0)


def test_a_new_option_is_one_declaration(monkeypatch):
    @dataclasses.dataclass
    class WithNewOption(ModelOptions):
        item_warmth: float = dataclasses.field(default=0.25, metadata={"help": "how warm an item starts"})

    names = (*MODEL_OPTION_NAMES, "item_warmth")
    for module in (configuration_seqrec, training_config):
        monkeypatch.setattr(module, "ModelOptions", WithNewOption)
        monkeypatch.setattr(module, "MODEL_OPTION_NAMES", names)

    @dataclasses.dataclass
    @training_config._with_model_options
    class Arguments(ModelArguments):
        backbone: str = "tiny-llama"
        item_text_init: bool = True

    parser = SeqRecArgumentParser([Arguments])
    assert "--item_warmth" in parser.format_help() and "how warm an item starts" in parser.format_help()
    assert parser.given_options(["--item_warmth", "0.5"]) == {"item_warmth": "0.5"}
    run = Arguments(item_warmth=0.5)
    assert run.model_options()["item_warmth"] == 0.5
    assert SeqRecConfig(**run.model_options()).item_warmth == 0.5
    assert SeqRecConfig().item_warmth == 0.25
    assert "item_warmth" in SeqRecConfig().to_dict()
