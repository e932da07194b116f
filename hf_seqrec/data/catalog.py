"""The item catalogue: the bridge between a user's item ids and the model's item table."""

from __future__ import annotations

import json
import os
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from ..io_utils import write_text_atomic
from .errors import DataValidationError

CATALOG_FILE = "item_catalog.jsonl"


def normalize_text(text: str) -> str:
    """Case-, accent- and punctuation-insensitive form of an item text, for lenient lookups."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    return " ".join(re.sub(r"[^\w\s]", " ", text).split())


@dataclass
class ItemCatalog:
    """External item ids, their rendered texts and the row of each in the item table.

    Item ids are kept as strings so that ``12`` in one file and ``"12"`` in another
    refer to the same item. Row ``i`` of the model's item table belongs to
    ``item_ids[i]``; the catalogue is saved with every checkpoint so that
    recommendations can be mapped back to the user's own ids.
    """

    item_ids: list[str]
    texts: list[str]
    _index: dict[str, int] = field(init=False, repr=False)

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

    def indices(self, item_ids: Iterable[object]) -> list[int]:
        return [self.index(item_id) for item_id in item_ids]

    def item_id(self, index: int) -> str:
        return self.item_ids[index]

    def text(self, index: int) -> str:
        return self.texts[index]

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the catalogue as JSON lines (one ``{"item_id", "text"}`` per row, in row order)."""
        path = Path(directory) / CATALOG_FILE
        lines = (json.dumps({"item_id": i, "text": t}, ensure_ascii=False) for i, t in zip(self.item_ids, self.texts))
        write_text_atomic(path, "\n".join(lines) + "\n")
        return path

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "ItemCatalog":
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

    @classmethod
    def from_pairs(cls, pairs: Sequence[tuple[object, str]]) -> "ItemCatalog":
        return cls([p[0] for p in pairs], [p[1] for p in pairs])
