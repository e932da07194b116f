"""Data: load and validate interactions and item metadata, filter, catalogue, split."""

from ..modeling.item_catalog import ItemCatalog
from .builtin import BUILTIN_DATASETS, load_builtin
from .collator import NextItemCollator, sequence_windows, training_windows
from .errors import DataValidationError
from .loading import SUPPORTED_FORMATS, InteractionColumns, ItemColumns, load_interactions, load_items
from .prepare import DataConfig, PreparedData, prepare_data
from .splitting import k_core_filter, leave_one_out, user_ratings, user_sequences

__all__ = [
    "BUILTIN_DATASETS",
    "DataConfig",
    "DataValidationError",
    "InteractionColumns",
    "ItemCatalog",
    "ItemColumns",
    "NextItemCollator",
    "PreparedData",
    "SUPPORTED_FORMATS",
    "k_core_filter",
    "leave_one_out",
    "load_builtin",
    "load_interactions",
    "load_items",
    "prepare_data",
    "sequence_windows",
    "training_windows",
    "user_ratings",
    "user_sequences",
]
