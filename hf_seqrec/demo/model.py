"""One checkpoint behind the demo page, reached only through ``pipeline("next-item")``.

Every number the page shows comes from the pipeline's public calls: recommendations from
``pipe({"history": ids}, top_k=k)``, an explanation from the same call restricted to the chosen item
(``candidates=[id], explain=True``), a new item from ``pipe.add_items`` and its rank from the
pipeline's full ranking. So the page shows what a user of the library would get for the same input,
never a second implementation of it.
"""

from __future__ import annotations

import os
import threading
import warnings
from dataclasses import dataclass
from typing import Any

from ..inference.loading import load_pipeline
from ..modeling.baselines import is_baseline_backbone
from ..pipelines import AmbiguousItemWarning, UnknownItemWarning
from .errors import DemoError

EXPLAIN_METHODS = ("occlusion", "integrated_gradients")
# The pipeline's warnings about the user's input (items it skipped); the page shows them.
_ITEM_WARNINGS = (UnknownItemWarning, AmbiguousItemWarning)


@dataclass(frozen=True)
class NewItemRank:
    """Where a new item lands in one model's full ranking for a history."""

    item_id: str
    rank: int  # 1 = first; among every item the pipeline may recommend (the history excluded)
    score: float
    ranked: int  # how many items were ranked
    top_score: float  # the score of the first recommendation, for scale


class DemoModel:
    """A loaded checkpoint's next-item pipeline, named for the page, with the calls the page makes.

    Calls are serialised by a lock: the page serves several browser tabs from threads, and
    ``add_items`` grows the model that the other calls read.
    """

    def __init__(self, pipe: Any, name: str) -> None:
        self.pipe = pipe
        self.name = name
        self._lock = threading.Lock()

    @classmethod
    def load(cls, location: str | os.PathLike, name: str | None = None) -> "DemoModel":
        """The pipeline of the checkpoint at ``location`` (a directory or a Hub id); one-line errors if there is none."""
        return cls(load_pipeline(location), name or os.path.basename(os.path.normpath(str(location))) or str(location))

    # ------------------------------------------------------------------ what the checkpoint is
    @property
    def catalog(self) -> Any:
        """The pipeline's catalogue lookups (ids, texts, lenient title matching)."""
        return self.pipe.catalog

    @property
    def max_len(self) -> int:
        """How many of the most recent history items the model reads."""
        return int(self.pipe.model.config.max_len)

    @property
    def has_text_tower(self) -> bool:
        return bool(getattr(self.pipe.model.config, "item_text_tower", False))

    @property
    def reads_text(self) -> bool:
        """Whether the checkpoint can encode a new item's text (a from-scratch baseline has no tokenizer)."""
        return not is_baseline_backbone(str(self.pipe.model.config.backbone_name_or_path))

    def new_item_note(self) -> str:
        """What a new item's score means for this checkpoint, in plain words."""
        config = self.pipe.model.config
        if not self.reads_text:
            return (
                f"{self.name} is a {config.backbone_name_or_path} model trained from item ids alone: it has no "
                "tokenizer, cannot read a new item's text, and so cannot score a new item."
            )
        if self.has_text_tower:
            return (
                f"{self.name} has a text tower: a new item is scored through the trained projection of its "
                "text, the way the model scores any item it never saw in training. Its rank is the model's "
                "own judgement of the text."
            )
        offset = (
            " Its score offset is the one of an item of unknown popularity." if getattr(config, "item_score_bias", False) else ""
        )
        return (
            f"{self.name} has no text tower. A new item's vector is the untrained encoding of its text "
            f"({config.item_text_encoder}), the point every item started from before training moved it.{offset} "
            "Its score therefore says how close that raw text encoding lies to what the history predicts, "
            "not what the model learned from interactions: read its rank as a rough text-similarity hint. "
            "A checkpoint trained with --item_text_tower scores new items from what it learned."
        )

    # ------------------------------------------------------------------ the pipeline's answers
    def recommend(self, history: list[str], top_k: int) -> tuple[list[dict[str, Any]], list[str]]:
        """The pipeline's top ``top_k`` for ``history`` (item ids, oldest first) and the warnings it gave."""
        _require_history(history)
        return self._call({"history": list(history)}, top_k=int(top_k))

    def explain(self, history: list[str], item_id: str, method: str) -> dict[str, Any]:
        """The pipeline's recommendation record of ``item_id`` for ``history``, with its ``"explanation"``."""
        _require_history(history)
        if method not in EXPLAIN_METHODS:
            raise DemoError(f"Unknown explanation method {method!r}; choose one of {', '.join(EXPLAIN_METHODS)}.")
        if item_id not in self.catalog.row_of:
            raise DemoError(f"Item {item_id} is not in {self.name}'s catalogue; ask for recommendations again.")
        try:
            results, _ = self._call(
                {"history": list(history)}, top_k=1, candidates=[item_id], explain=True, explain_method=method
            )
        except ImportError as error:  # integrated gradients need captum
            raise DemoError(f"{method} is not available here: {error}") from None
        if not results:
            raise DemoError(f"Item {item_id} is part of the history, so it is not recommended and has nothing to explain.")
        return results[0]

    def add_item(self, item_id: str, text: str) -> None:
        """Add one new item through the pipeline's ``add_items``."""
        if not self.reads_text:
            raise DemoError(self.new_item_note())
        with self._lock:
            try:
                self.pipe.add_items([{"item_id": item_id, "text": text}])
            except (OSError, ValueError) as error:
                raise DemoError(f"{self.name} could not add the item: {error}") from None

    def rank_of(self, history: list[str], item_id: str) -> NewItemRank:
        """Where ``item_id`` lands in the pipeline's full ranking for ``history`` (every item, history excluded)."""
        _require_history(history)
        results, _ = self._call({"history": list(history)}, top_k=len(self.catalog))
        for result in results:
            if result["item_id"] == item_id:
                return NewItemRank(item_id, result["rank"], result["score"], len(results), results[0]["score"])
        raise DemoError(f"Item {item_id} is part of the history, so {self.name} does not rank it.")

    def _call(self, inputs: dict[str, Any], **params: Any) -> tuple[list[dict[str, Any]], list[str]]:
        """One pipeline call under the lock; its warnings (unknown or ambiguous items) become messages."""
        with self._lock, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                results = self.pipe(inputs, **params)
            except (TypeError, ValueError) as error:
                raise DemoError(f"{self.name}: {error}") from None
        notes = [f"{self.name}: {w.message}" for w in caught if issubclass(w.category, _ITEM_WARNINGS)]
        return results, notes


def _require_history(history: list[str]) -> None:
    if not history:
        raise DemoError("The history is empty: add at least one item (search by title), or load a test user's history.")
