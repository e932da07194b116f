"""Finding catalogue items by title for the demo's search box.

The page's suggestions are the catalogue itself (the browser filters them as the user types); what
the user finally adds goes through the next-item pipeline's own lenient title matching
(``CatalogIndex.match_text``: exact text, exact title, then case-, accent- and punctuation-blind,
then without the year), so the page accepts exactly the titles ``pipeline("next-item")`` accepts in
``{"history_text": [...]}``, and refuses the ones it would skip.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from typing import Any

from ..modeling.item_catalog import normalize_text
from ..modeling.next_item import TITLE_SEPARATOR
from .errors import DemoError

_YEAR = re.compile(r"\s*\(\d{4}\)\s*$")
# How many near misses an unknown title's message offers.
SUGGESTIONS = 5


def choices(catalog: Any) -> list[tuple[str, str]]:
    """``(label, item id)`` for every catalogue item, in catalogue order: the search box's suggestions.

    The label is the item's text; a text that several items share (MovieLens-100K lists a few films
    twice) also names the item id, so every suggestion points at one item.
    """
    repeated = {text for text, count in Counter(catalog.texts).items() if count > 1}
    return [
        (f"{text} [item {item_id}]" if text in repeated else text, item_id)
        for item_id, text in zip(catalog.item_ids, catalog.texts)
    ]


def resolve(catalog: Any, value: object) -> str:
    """The item id the search box's ``value`` names: a chosen suggestion's id, or a typed title.

    A typed title is matched as the pipeline matches ``history_text``. Raises :class:`DemoError`
    for an empty value, a title that matches several items (naming them) or none (with near misses).
    """
    text = "" if value is None else str(value).strip()
    if not text:
        raise DemoError("Type a title in the search box, or pick one of its suggestions, before adding it.")
    if text in catalog.row_of:  # a suggestion carries the item id as its value (so does a typed id)
        return text
    rows = catalog.match_text(text)
    if len(rows) == 1:
        return catalog.item_ids[rows[0]]
    if rows:
        listed = "; ".join(f"{catalog.texts[row]} [item {catalog.item_ids[row]}]" for row in rows[:SUGGESTIONS])
        raise DemoError(f"“{text}” matches {len(rows)} items ({listed}). Pick one from the suggestions.")
    near = close_titles(catalog, text)
    hint = f" Did you mean: {'; '.join(near)}?" if near else ""
    raise DemoError(f"No item of this checkpoint's catalogue is titled “{text}”.{hint}")


def close_titles(catalog: Any, text: str, limit: int = SUGGESTIONS) -> list[str]:
    """Catalogue texts close to ``text``: those containing it (normalised) first, then similar titles."""
    wanted = normalize_text(text)
    if not wanted:
        return []
    normalised = [normalize_text(t) for t in catalog.texts]
    containing = [catalog.texts[row] for row, t in enumerate(normalised) if wanted in t]
    if containing:
        return containing[:limit]
    # Typos: compare with the bare titles ("toy story" for "Toy Story (1995) | Animation, ..."), as typed.
    by_title: dict[str, list[str]] = {}
    for text_of_item in catalog.texts:
        title = _YEAR.sub("", text_of_item.split(TITLE_SEPARATOR, 1)[0])
        by_title.setdefault(normalize_text(title), []).append(text_of_item)
    close = difflib.get_close_matches(wanted, list(by_title), n=limit, cutoff=0.6)
    return [text_of_item for title in close for text_of_item in by_title[title]][:limit]


def genres(catalog: Any) -> list[str]:
    """The genres the catalogue's texts list after the title ("Toy Story (1995) | Animation, Comedy"), sorted."""
    found = set()
    for text in catalog.texts:
        if TITLE_SEPARATOR in text:
            found.update(part.strip() for part in text.split(TITLE_SEPARATOR, 1)[1].split(",") if part.strip())
    return sorted(found)


def item_text(title: str, genre_list: list[str] | str | None) -> str:
    """A new item's text in the catalogue's own shape: "Title (year) | Genre, Genre", or the title alone."""
    title = " ".join(str(title or "").split())
    if not title:
        raise DemoError("Give the new item a title (for example “Dune: Part Two (2024)”).")
    if isinstance(genre_list, str):
        genre_list = genre_list.split(",")
    chosen = [" ".join(str(g).split()) for g in genre_list or []]
    chosen = list(dict.fromkeys(g for g in chosen if g))  # in the order given, once each
    return f"{title}{TITLE_SEPARATOR}{', '.join(chosen)}" if chosen else title
