"""`SeqRecForNextItem`: a causal-LM backbone that reads item sequences and scores the whole catalogue."""

from __future__ import annotations

import json
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
from .configuration_seqrec import SeqRecConfig

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
PIPELINE_TASK = "next-item"


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
    """

    def __init__(self, num_items: int, hidden_size: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_items, hidden_size))

    def forward(self, item_ids: torch.LongTensor) -> torch.Tensor:
        return F.embedding(item_ids, self.weight)


class SeqRecPreTrainedModel(PreTrainedModel):
    config_class = SeqRecConfig
    base_model_prefix = "seqrec"
    supports_gradient_checkpointing = True
    _supports_sdpa = True

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, ItemTable):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)


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
        self.item_table = ItemTable(config.num_items, config.hidden_size)
        self.item_dropout = nn.Dropout(config.item_embedding_dropout)
        self.item_catalog = None  # an ItemCatalog, saved with the checkpoint when set
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
        if baseline:
            if pretrained:
                raise ValueError(f"{backbone_name_or_path!r} is a from-scratch baseline; it has no pretrained weights")
            if config_kwargs.get("use_lora"):
                raise ValueError(f"{backbone_name_or_path!r} is a from-scratch baseline, trained in full; use_lora must be False")
            pretrained = False
            config_kwargs["use_lora"] = False
            backbone_options = {"max_len": config_kwargs.get("max_len", 50), **(backbone_options or {})}
        elif pretrained is None:
            pretrained = True
        backbone, tokenizer = load_backbone(backbone_name_or_path, dtype=dtype, **(backbone_options or {}))
        if not pretrained and not baseline:
            backbone = AutoModel.from_config(backbone.config)
        if item_texts is not None and tokenizer is None:
            raise ValueError(
                f"{backbone_name_or_path!r} has no tokenizer, so its item table cannot be initialised from item texts; "
                "pass num_items instead of item_texts"
            )
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
        model = cls(config, backbone=backbone)
        if item_texts is not None:
            model.init_item_table_from_text(item_texts, tokenizer)
        return model, tokenizer

    @torch.no_grad()
    def init_item_table_from_text(self, texts: Sequence[str], tokenizer: PreTrainedTokenizerBase) -> None:
        """Set each item's row to the mean backbone token embedding of its text."""
        if len(texts) != self.config.num_items:
            raise ValueError(f"got {len(texts)} item texts for an item table of {self.config.num_items} rows")
        token_embeddings = self.get_backbone().get_input_embeddings().weight
        encoded = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        for row, token_ids in enumerate(encoded):
            if token_ids:
                ids = torch.tensor(token_ids, device=token_embeddings.device)
                self.item_table.weight[row] = token_embeddings[ids].mean(0).to(self.item_table.weight.dtype)

    def get_backbone(self) -> PreTrainedModel:
        """The backbone without its peft wrapper."""
        backbone = self.backbone
        return backbone.get_base_model() if hasattr(backbone, "get_base_model") else backbone

    def get_input_embeddings(self) -> nn.Module:
        return self.item_table

    # ----------------------------------------------------------------------------- forward
    def score(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """Scores of every catalogue item for each hidden state (the head tied to the item table)."""
        return hidden_states @ self.item_table.weight.to(hidden_states.dtype).T

    def _summed_cross_entropy(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Full-catalogue cross-entropy summed over positions, chunked when `config.loss_chunk_size` is set."""
        chunk = getattr(self.config, "loss_chunk_size", None)
        if not chunk or hidden.size(0) <= chunk:
            return F.cross_entropy(self.score(hidden).float(), targets, reduction="sum")

        def chunk_loss(h: torch.Tensor, t: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy((h @ table.to(h.dtype).T).float(), t, reduction="sum")

        total = hidden.new_zeros((), dtype=torch.float32)
        for start in range(0, hidden.size(0), chunk):
            # Checkpointing drops each chunk's logits after the forward and recomputes them in the
            # backward: peak memory is one chunk of logits instead of all of them.
            total = total + torch.utils.checkpoint.checkpoint(
                chunk_loss, hidden[start : start + chunk], targets[start : start + chunk], self.item_table.weight,
                use_reentrant=False,
            )
        return total

    def forward(
        self,
        input_item_ids: torch.LongTensor,
        attention_mask: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        num_items_in_batch: int | torch.Tensor | None = None,
        return_logits: bool | None = None,
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
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_item_ids)
        inputs_embeds = self.item_dropout(self.item_table(input_item_ids))
        hidden = self.backbone(inputs_embeds=inputs_embeds, attention_mask=attention_mask, **kwargs).last_hidden_state

        loss = None
        if labels is not None:
            labelled = labels != IGNORE_INDEX
            # Only labelled positions are scored: the [positions, num_items] logits are the
            # largest tensor of a step, and padding would waste most of it.
            denominator = num_items_in_batch if num_items_in_batch is not None else labelled.sum().clamp(min=1)
            loss = self._summed_cross_entropy(hidden[labelled], labels[labelled]) / denominator

        logits = None
        if return_logits if return_logits is not None else labels is None:
            last_position = attention_mask.sum(dim=1).clamp(min=1) - 1
            last_hidden = hidden[torch.arange(hidden.size(0), device=hidden.device), last_position]
            logits = self.score(last_hidden).float()
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
        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self._auto_class is not None:
            from transformers.dynamic_module_utils import custom_object_save

            custom_object_save(self, directory, config=self.config)
            _save_pipeline_code(directory, self.config)
        self.config.save_pretrained(directory)
        save_file({"weight": self.item_table.weight.detach().contiguous().cpu()}, directory / ITEM_TABLE_FILE)
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
            from .backbones import resolve_backbone

            backbone = AutoModel.from_pretrained(resolve_backbone(config.backbone_name_or_path), dtype=torch_dtype)
        else:
            backbone = AutoModel.from_config(config.build_backbone_config())
            backbone.load_state_dict(load_file(directory / BACKBONE_FILE), strict=False)
            backbone.tie_weights()
        model = cls(config, backbone=backbone)
        model.item_table.load_state_dict(load_file(directory / ITEM_TABLE_FILE))
        if config.use_lora:
            outcome = set_peft_model_state_dict(model.backbone, load_file(directory / ADAPTER_FILE))
            unexpected = getattr(outcome, "unexpected_keys", [])
            if unexpected:
                raise ValueError(f"{directory / ADAPTER_FILE}: adapter weights do not fit the backbone: {unexpected[:5]}")
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
    config.custom_pipelines = {
        PIPELINE_TASK: {"impl": f"{Path(PIPELINE_FILE).stem}.NextItemPipeline", "pt": ["AutoModel"], "tf": [], "type": "multimodal"}
    }


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
