"""The item catalogue: the bridge between a user's item ids and the model's item table.

The catalogue is part of the checkpoint format (`item_catalog.jsonl`), so its class lives in
`hf_seqrec/modeling/checkpoint_format.py`, which every checkpoint carries. Here it reports an unusable
catalogue as a :class:`DataValidationError`, like every other problem with the user's data.
"""

from __future__ import annotations

from typing import Any

from ..modeling import checkpoint_format
from ..modeling.checkpoint_format import CATALOG_FILE, normalize_text
from .errors import DataValidationError

__all__ = ["CATALOG_FILE", "ItemCatalog", "normalize_text"]


class ItemCatalog(checkpoint_format.ItemCatalog):
    __doc__ = checkpoint_format.ItemCatalog.__doc__

    @staticmethod
    def _invalid(problem: str, **where: Any) -> Exception:
        return DataValidationError(problem, **where)
