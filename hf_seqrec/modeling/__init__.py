"""Configuration, model and backbones."""

from .backbones import BUILTIN_BACKBONES, load_backbone, resolve_backbone
from .configuration_seqrec import SeqRecConfig
from .item_table import ItemTable
from .modeling_seqrec import NextItemOutput, SeqRecForNextItem

__all__ = [
    "BUILTIN_BACKBONES",
    "ItemTable",
    "NextItemOutput",
    "SeqRecConfig",
    "SeqRecForNextItem",
    "load_backbone",
    "resolve_backbone",
]
