"""The item catalogue (``item_catalog.jsonl``): item ids, their texts, and the rules that normalise them for lookups.

The catalogue is the bridge between a user's item ids and the rows of the model's item table.
``SeqRecForNextItem.from_pretrained`` loads it into the model (``model.item_catalog``) and the next-item
pipeline takes it from there, so this file travels with every checkpoint (a same-folder import of
``modeling_seqrec.py``) and imports only the standard library and its same-folder modules.
"""

from __future__ import annotations

import json
import math
import os
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .atomic_writes import write_text_atomic
from .checkpoint_files import CATALOG_FILE
from .validation_errors import DataValidationError

_INTEGRAL_FLOAT_TEXT = re.compile(r"^([+-]?\d+)\.0*$")


def normalize_text(text: str) -> str:
    """Case-, accent- and punctuation-insensitive form of an item text, for lenient lookups."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    return " ".join(re.sub(r"[^\w\s]", " ", text).split())


def normalize_item_id(value: object) -> str:
    """An item id as the catalogue stores it: 12, 12.0, "12" and " 12 " are all "12"."""
    if isinstance(value, bool) or value is None:
        raise TypeError(f"item ids are strings or integers; got {value!r}")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"item ids are strings or integers; got {value!r}")
        return str(int(value)) if value.is_integer() else str(value)
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy / torch scalars
        return normalize_item_id(value.item())
    text = str(value).strip()
    return _INTEGRAL_FLOAT_TEXT.sub(r"\1", text)


@dataclass
class ItemCatalog:
    """External item ids, their rendered texts and the row of each in the item table.

    Item ids are kept as strings so that ``12`` in one file and ``"12"`` in another
    refer to the same item. Row ``i`` of the model's item table belongs to
    ``item_ids[i]``; the catalogue is saved with every checkpoint so that
    recommendations can be mapped back to the user's own ids.

    The normalisation rules (:meth:`normalize_text`, :meth:`normalize_item_id`) come with the
    catalogue, so code that receives one (the next-item pipeline) matches ids and titles by the
    checkpoint's own rules without importing anything. A catalogue that cannot be used (a duplicate
    id, an unreadable line) raises :class:`DataValidationError`, like every other problem with the
    user's data.
    """

    item_ids: list[str]
    texts: list[str]
    _index: dict[str, int] = field(init=False, repr=False)

    normalize_text = staticmethod(normalize_text)
    normalize_item_id = staticmethod(normalize_item_id)

    def __post_init__(self) -> None:
        self.item_ids = [str(item_id) for item_id in self.item_ids]
        self.texts = [str(text) for text in self.texts]
        if len(self.item_ids) != len(self.texts):
            raise ValueError(
                f"ItemCatalog needs one text per item id; got {len(self.item_ids)} ids and {len(self.texts)} texts"
            )
        self._index = {}
        for row, item_id in enumerate(self.item_ids):
            if item_id in self._index:
                raise DataValidationError(
                    "duplicate item id in the catalogue", row=row, field="item_id", found=item_id,
                    expected="each item id exactly once",
                )
            self._index[item_id] = row

    def __len__(self) -> int:
        return len(self.item_ids)

    def __contains__(self, item_id: object) -> bool:
        return str(item_id) in self._index

    def index(self, item_id: object) -> int:
        """Row of ``item_id`` in the item table; ``KeyError`` naming the id if unknown."""
        try:
            return self._index[str(item_id)]
        except KeyError:
            raise KeyError(f"item id {item_id!r} is not in the catalogue of {len(self)} items") from None

    def item_id(self, index: int) -> str:
        return self.item_ids[index]

    def text(self, index: int) -> str:
        return self.texts[index]

    def with_items(self, rows: Sequence[tuple[str, str]]) -> "ItemCatalog":
        """A catalogue of the same class with ``(item_id, text)`` rows appended (rows of new items of the item table)."""
        return type(self)(list(self.item_ids) + [i for i, _ in rows], list(self.texts) + [t for _, t in rows])

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the catalogue as JSON lines (one ``{"item_id", "text"}`` per row, in row order)."""
        path = Path(directory) / CATALOG_FILE
        lines = (json.dumps({"item_id": i, "text": t}, ensure_ascii=False) for i, t in zip(self.item_ids, self.texts))
        write_text_atomic(path, "\n".join(lines) + "\n")
        return path

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "ItemCatalog":
        """The catalogue a checkpoint directory holds (``item_catalog.jsonl``)."""
        path = Path(directory) / CATALOG_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no item catalogue; a hf_seqrec checkpoint holds {CATALOG_FILE}")
        item_ids, texts = [], []
        with open(path, encoding="utf-8") as handle:
            for line_number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    item_ids.append(row["item_id"])
                    texts.append(row["text"])
                except (json.JSONDecodeError, KeyError) as error:
                    raise DataValidationError(
                        f"unreadable catalogue line ({error})", source=str(path), row=line_number,
                        expected='a JSON object with "item_id" and "text"',
                    ) from None
        return cls(item_ids, texts)


def item_rows(items: Any) -> list[tuple[str, str]]:
    """`(item_id, text)` pairs from a list of dicts, a pandas DataFrame or a `datasets.Dataset`."""
    if hasattr(items, "to_dict") and hasattr(items, "columns"):  # pandas
        items = items.to_dict("records")
    elif hasattr(items, "column_names") and hasattr(items, "to_list"):  # datasets.Dataset
        items = items.to_list()
    if isinstance(items, dict) or isinstance(items, (str, bytes)):
        raise TypeError("add_items expects a list of {'item_id', 'text'} rows (or a DataFrame / Dataset with those columns)")
    rows = []
    for number, row in enumerate(items):
        if not isinstance(row, dict) or "item_id" not in row or "text" not in row:
            found = sorted(row) if isinstance(row, dict) else type(row).__name__
            raise ValueError(f"add_items: row {number}: expected an 'item_id' and a 'text' field, found {found}")
        if not isinstance(row["text"], str):
            raise ValueError(f"add_items: row {number}: expected a string text, found {row!r}")
        try:
            # The catalogue's own rule: 12.0 from a pandas column, "12" and " 12 " are all "12".
            item_id = normalize_item_id(row["item_id"])
        except TypeError:
            raise ValueError(f"add_items: row {number}: expected a string or integer item_id, found {row!r}") from None
        rows.append((item_id, row["text"]))
    return rows


def new_item_rows(items: Any, catalog: ItemCatalog) -> list[tuple[str, str]]:
    """The rows of :func:`item_rows`, checked to be items ``catalog`` does not hold yet, each with a text."""
    rows = item_rows(items)
    known = set(catalog.item_ids)
    seen: set[str] = set()
    for number, (item_id, text) in enumerate(rows):
        if item_id in known or item_id in seen:
            raise ValueError(f"add_items: row {number}: item_id {item_id!r} is already in the catalogue; expected new ids only")
        if not text.strip():
            raise ValueError(f"add_items: row {number} (item_id {item_id!r}): empty text; a new item is known by its text alone")
        seen.add(item_id)
    return rows
