"""What happens when the demo page's user clicks: one method per event, page state in, page updates out.

Each method takes the page's state (one :class:`PageState` per browser tab) and the values of its
inputs, and returns the new values of its outputs, the last one always a message. A
:class:`~hf_seqrec.demo.errors.DemoError` becomes that message and leaves everything else as it was;
any other exception is logged with its traceback on the server and shown as one line, so the page
never shows a traceback. Every answer about items comes from :class:`~hf_seqrec.demo.model.DemoModel`,
that is from ``pipeline("next-item")``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from . import render, search
from .errors import DemoError
from .model import DemoModel
from .users import load_test_user

logger = logging.getLogger(__name__)

DEFAULT_TOP_K = 10
MAX_TOP_K = 50
_FAULT = "Something went wrong on the server ({kind}); the details are in its log. The page still works: try again."


@dataclass
class PageState:
    """One browser tab's state: the history being built and, for a test user, the held-out next item."""

    history: list[str] = field(default_factory=list)
    user: str | None = None
    target: str | None = None


def _shows_errors(outputs: int) -> Callable:
    """Make a callback with ``outputs`` outputs (the message last) turn every exception into that message."""

    def decorate(callback: Callable) -> Callable:
        @functools.wraps(callback)
        def run(*args: Any) -> Any:
            try:
                return callback(*args)
            except DemoError as error:
                shown = render.message(str(error), "error")
            except Exception as error:  # a fault of the program, not of the user: the log has the traceback
                logger.exception("demo: %s failed", callback.__name__)
                shown = render.message(_FAULT.format(kind=type(error).__name__), "error")
            return shown if outputs == 1 else (*[gr.skip()] * (outputs - 1), shown)

        return run

    return decorate


class PageCallbacks:
    """The page's behaviour over one or two loaded checkpoints (the second for side-by-side comparison)."""

    def __init__(self, models: Sequence[DemoModel]) -> None:
        if not 1 <= len(models) <= 2:
            raise ValueError(f"the demo shows one checkpoint or compares two; got {len(models)}")
        self.models = list(models)
        self.primary = self.models[0]

    # ------------------------------------------------------------------ what the page starts with
    def search_choices(self) -> list[tuple[str, str]]:
        """The search box's suggestions: the first checkpoint's catalogue (new items included)."""
        return search.choices(self.primary.catalog)

    def genre_choices(self) -> list[str]:
        return search.genres(self.primary.catalog)

    def history_html(self, state: PageState) -> str:
        catalog = self.primary.catalog
        texts = {item_id: catalog.texts[catalog.row_of[item_id]] for item_id in state.history if item_id in catalog.row_of}
        return render.history_list(state.history, texts, self.primary.max_len)

    # ------------------------------------------------------------------ building the history
    @_shows_errors(outputs=4)
    def add_to_history(self, state: PageState, value: Any) -> tuple[PageState, str, Any, str]:
        """Add the item the search box names (a suggestion, or a typed title matched leniently)."""
        item_id = search.resolve(self.primary.catalog, value)
        state = PageState(history=[*state.history, item_id])  # a history of one's own: no held-out target
        text = self.primary.catalog.texts[self.primary.catalog.row_of[item_id]]
        return state, self.history_html(state), gr.update(value=None), render.message(f"Added {text}.")

    @_shows_errors(outputs=3)
    def remove_last(self, state: PageState) -> tuple[PageState, str, str]:
        if not state.history:
            raise DemoError("The history is already empty.")
        state = PageState(history=state.history[:-1])
        return state, self.history_html(state), ""

    @_shows_errors(outputs=3)
    def clear_history(self, state: PageState) -> tuple[PageState, str, str]:
        state = PageState()
        return state, self.history_html(state), ""

    @_shows_errors(outputs=4)
    def load_user(self, state: PageState, user_id: Any) -> tuple[PageState, str, Any, str]:
        """Load a MovieLens-100K test user's history (a random user when ``user_id`` is empty)."""
        user = load_test_user(user_id)
        known = [item for item in user.history if item in self.primary.catalog.row_of]
        if not known:
            raise DemoError(
                f"None of MovieLens-100K user {user.user_id}'s items is in {self.primary.name}'s catalogue: "
                "this checkpoint was not trained on MovieLens-100K."
            )
        state = PageState(history=known, user=user.user_id, target=user.target)
        left_out = len(user.history) - len(known)
        note = f" {left_out} of its items are not in this checkpoint's catalogue and were left out." if left_out else ""
        target = self._text(user.target)
        return state, self.history_html(state), gr.update(value=user.user_id), render.message(
            f"MovieLens-100K user {user.user_id}: {len(known)} items, every interaction but the last. "
            f"The held-out next item, which the evaluation asks the model to find, is {target}.{note}"
        )

    # ------------------------------------------------------------------ recommendations
    # recommend and refresh: the lists (2 tables, overlap, explanation choices), the explanation (chart,
    # table, note; cleared, since it explained an older answer) and the message.
    RESULT_OUTPUTS = 8
    # refresh_lists: the lists and the message only.
    LIST_OUTPUTS = 5

    @_shows_errors(outputs=RESULT_OUTPUTS)
    def recommend(self, state: PageState, top_k: Any) -> tuple:
        """The top-k of every loaded checkpoint for the history, exactly as the pipeline returns them."""
        *lists, message = self._lists(state, top_k)
        return (*lists, None, "", "", message)

    def refresh(self, state: PageState, top_k: Any) -> tuple:
        """After the history changed: new recommendations, or cleared ones for an empty history."""
        if not state.history:
            return ("", "", "", gr.update(choices=[], value=None), None, "", "", "")
        return self.recommend(state, top_k)

    @_shows_errors(outputs=LIST_OUTPUTS)
    def refresh_lists(self, state: PageState, top_k: Any) -> tuple:
        """After a new item was added: the lists again (it may be among them); the explanation stays."""
        if not state.history:
            return (gr.skip(),) * self.LIST_OUTPUTS
        return self._lists(state, top_k)

    def _lists(self, state: PageState, top_k: Any) -> tuple:
        top_k = _top_k(top_k)
        answers = [model.recommend(state.history, top_k) for model in self.models]
        lists = [results for results, _ in answers]
        notes = [note for _, notes in answers for note in notes]
        shared = None
        overlap = ""
        if len(lists) == 2:
            shared = {r["item_id"] for r in lists[0]} & {r["item_id"] for r in lists[1]}
            overlap = render.overlap_summary(lists[0], lists[1], (self.models[0].name, self.models[1].name))
        tables = [
            render.recommendations_table(results, model=model.name, shared=shared, target=state.target)
            for model, results in zip(self.models, lists)
        ]
        if len(tables) == 1:
            tables.append("")
        choices = [(f"{r['rank']}. {r['text']}", r["item_id"]) for r in lists[0]]
        explain_choice = gr.update(choices=choices, value=choices[0][1] if choices else None)
        if state.target is not None:
            notes.append(self._target_note(state.target, lists))
        return (*tables, overlap, explain_choice, render.message("\n".join(notes)) if notes else "")

    def _target_note(self, target: str, lists: list[list[dict]]) -> str:
        found = []
        for model, results in zip(self.models, lists):
            ranks = [r["rank"] for r in results if r["item_id"] == target]
            found.append(f"{model.name}: rank {ranks[0]}" if ranks else f"{model.name}: not in its top {len(results)}")
        return f"Held-out next item {self._text(target)}: " + "; ".join(found) + "."

    # ------------------------------------------------------------------ explanations
    @_shows_errors(outputs=3)
    def explain(self, state: PageState, item_id: Any, method: str) -> tuple[Any, str, str]:
        """Why the first checkpoint recommends ``item_id``: each history item's contribution to its score."""
        if not item_id:
            raise DemoError("Ask for recommendations first, then choose one of them to explain.")
        record = self.primary.explain(state.history, str(item_id), method)
        return render.explanation_chart(record, method), render.explanation_table(record), render.explanation_note(method)

    # ------------------------------------------------------------------ new items
    @_shows_errors(outputs=2)
    def add_new_item(self, state: PageState, title: Any, genres: Any) -> tuple[Any, str]:
        """Add an item from its title and genres to every checkpoint that can read text, and rank it for the history."""
        text = search.item_text(title, genres)
        item_id = self._new_item_id()
        lines = []
        added = []
        for model in self.models:
            if not model.reads_text:
                lines.append(model.new_item_note())
                continue
            model.add_item(item_id, text)
            added.append(model)
            lines.append(model.new_item_note())
        if not added:
            raise DemoError("\n".join(lines))
        ranks = []
        for model in added:
            if state.history:
                place = model.rank_of(state.history, item_id)
                ranks.append(
                    f"{model.name} ranks it #{place.rank} of {place.ranked:,} for this history "
                    f"(score {place.score:.3f}; its first recommendation scores {place.top_score:.3f})."
                )
        if not state.history:
            ranks.append("Build a history to see where it ranks.")
        summary = f"Added {text} as item {item_id}."
        return gr.update(choices=self.search_choices()), render.message("\n".join([summary, *ranks, *lines]))

    def _new_item_id(self) -> str:
        taken = {item for model in self.models for item in model.catalog.item_ids}
        number = 1
        while f"new-{number}" in taken:
            number += 1
        return f"new-{number}"

    def _text(self, item_id: str) -> str:
        catalog = self.primary.catalog
        row = catalog.row_of.get(item_id)
        return catalog.texts[row] if row is not None else f"item {item_id}"


def _top_k(value: Any) -> int:
    try:
        top_k = int(value)
    except (TypeError, ValueError):
        raise DemoError(f"The number of recommendations must be a whole number from 1 to {MAX_TOP_K}.") from None
    if not 1 <= top_k <= MAX_TOP_K:
        raise DemoError(f"The number of recommendations must be from 1 to {MAX_TOP_K}; got {top_k}.")
    return top_k
