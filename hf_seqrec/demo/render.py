"""What the demo page shows, as HTML fragments and a chart: no model calls and no Gradio here.

Every text that comes from the user or the catalogue is escaped. The tables carry the item id and
the exact score as ``data-`` attributes, so that a browser (or a test) reads back precisely what the
pipeline returned, while people read the rounded score.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from matplotlib.figure import Figure

# Bars in the explanation chart at most (the largest contributions); the table lists every position.
CHART_BARS = 20
_LABEL_CHARS = 48
METHOD_MEANINGS = {
    "occlusion": "how much the score drops when that one item is removed from the history",
    "integrated_gradients": "integrated gradients from the mean item: each item's share of the score's distance from an average history",
}

# Page styles for these fragments (passed to Gradio's launch).
CSS = """
.seqrec-table { width: 100%; border-collapse: collapse; border: none !important; font-size: 0.92em; }
.seqrec-table th, .seqrec-table td { text-align: left; padding: 3px 6px; border: none !important; border-bottom: 1px solid var(--border-color-primary) !important; }
.seqrec-table td.num, .seqrec-table th.num { text-align: right; font-variant-numeric: tabular-nums; }
.seqrec-table tr.both td:first-child::after { content: " ◆"; color: var(--color-accent); }
.seqrec-table tr.target { background: var(--color-accent-soft); }
.seqrec-history { max-height: 18em; overflow-y: auto; margin: 0; padding-left: 2.2em; }
.seqrec-history li.unread { opacity: 0.45; }
.seqrec-msg { padding: 6px 10px; border-radius: 6px; margin: 4px 0; }
.seqrec-msg.error { background: #fde8e8; color: #8a1c1c; }
.seqrec-msg.info { background: var(--background-fill-secondary); }
.seqrec-muted { opacity: 0.7; font-size: 0.9em; }
"""


def message(text: str, kind: str = "info") -> str:
    """A message box: ``kind`` is ``"info"`` or ``"error"``; ``text`` is plain text (escaped here)."""
    if not text:
        return ""
    lines = "<br>".join(html.escape(line) for line in text.splitlines())
    return f'<div class="seqrec-msg {kind}" role="{"alert" if kind == "error" else "status"}">{lines}</div>'


def history_list(history: Sequence[str], texts: dict[str, str], read: int) -> str:
    """The history, oldest first; items older than the ``read`` most recent ones are greyed out."""
    if not history:
        return '<p class="seqrec-muted" id="history-empty">No items yet: search for a title, or load a test user.</p>'
    first_read = max(0, len(history) - read)
    items = "".join(
        f'<li data-item-id="{html.escape(item_id)}"{" class=unread" if position < first_read else ""}>'
        f"{html.escape(texts.get(item_id, f'item {item_id}'))}</li>"
        for position, item_id in enumerate(history)
    )
    note = (
        f'<p class="seqrec-muted">{len(history)} items; the model reads the {read} most recent.</p>'
        if first_read
        else f'<p class="seqrec-muted">{len(history)} item{"s" if len(history) != 1 else ""}, oldest first.</p>'
    )
    return f'{note}<ol class="seqrec-history" id="history-items">{items}</ol>'


def recommendations_table(
    results: Sequence[dict[str, Any]], *, model: str, shared: set[str] | None = None, target: str | None = None
) -> str:
    """The pipeline's results as a table: rank, item, score. ``shared`` ids are marked ◆, ``target`` highlighted."""
    rows = []
    for result in results:
        item_id = str(result["item_id"])
        classes = [name for name, on in (("both", shared and item_id in shared), ("target", item_id == target)) if on]
        marker = " 🎯 held-out next item" if item_id == target else ""
        class_attribute = f' class="{" ".join(classes)}"' if classes else ""
        rows.append(
            f'<tr data-item-id="{html.escape(item_id)}" data-score="{float(result["score"])!r}" data-rank="{int(result["rank"])}"'
            f"{class_attribute}>"
            f'<td class="num">{int(result["rank"])}</td><td>{html.escape(str(result["text"]))}{marker}</td>'
            f'<td class="num">{float(result["score"]):.3f}</td></tr>'
        )
    return (
        f'<table class="seqrec-table seqrec-recs" data-model="{html.escape(model)}">'
        '<thead><tr><th class="num">#</th><th>item</th><th class="num">score</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def overlap_summary(first: Sequence[dict[str, Any]], second: Sequence[dict[str, Any]], names: tuple[str, str]) -> str:
    """How many items two top-k lists share, as a sentence."""
    a = [str(r["item_id"]) for r in first]
    b = {str(r["item_id"]) for r in second}
    both = sum(item in b for item in a)
    size = max(len(a), len(b)) or 1
    marked = "; they are marked ◆" if both else ""
    return message(
        f"Overlap: {both} of {size} items are in both lists ({both / size:.0%}){marked}. "
        f"{names[0]} and {names[1]} answer the same history."
    )


def explanation_table(record: dict[str, Any]) -> str:
    """Every history position the model read, largest contribution first, as the pipeline returned them."""
    rows = "".join(
        f'<tr data-item-id="{html.escape(str(e["item_id"]))}" data-position="{int(e["position"])}" '
        f'data-contribution="{float(e["contribution"])!r}"><td class="num">{int(e["position"]) + 1}</td>'
        f'<td>{html.escape(str(e["text"]))}</td><td class="num">{float(e["contribution"]):+.3f}</td></tr>'
        for e in record["explanation"]
    )
    return (
        '<table class="seqrec-table seqrec-explanation">'
        '<thead><tr><th class="num">position</th><th>history item</th><th class="num">contribution</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>"
    )


def explanation_chart(record: dict[str, Any], method: str) -> Figure:
    """A horizontal bar per history item (the largest ``CHART_BARS`` by size): its contribution to the score."""
    shown = sorted(record["explanation"], key=lambda e: abs(e["contribution"]), reverse=True)[:CHART_BARS]
    shown.sort(key=lambda e: e["contribution"])  # largest at the top of a horizontal bar chart
    figure = Figure(figsize=(7.5, 1.2 + 0.32 * max(len(shown), 1)), layout="constrained")
    axes = figure.subplots()
    values = [e["contribution"] for e in shown]
    labels = [f"{e['position'] + 1}. {_short(e['text'])}" for e in shown]
    axes.barh(range(len(shown)), values, color=["#2e7d32" if v >= 0 else "#c62828" for v in values])
    axes.set_yticks(range(len(shown)), labels, fontsize=8)
    axes.axvline(0, color="#666666", linewidth=0.8)
    axes.set_xlabel(f"contribution to the score ({method})", fontsize=9)
    more = len(record["explanation"]) - len(shown)
    title = f"Why “{_short(record['text'])}” (score {record['score']:.3f})"
    axes.set_title(title + (f"; {more} smaller ones in the table" if more > 0 else ""), fontsize=10)
    return figure


def explanation_note(method: str) -> str:
    """What a contribution means under ``method``, for the line under the chart."""
    return message(f"Contribution ({method}): {METHOD_MEANINGS.get(method, method)}. Position 1 is the oldest item read.")


def _short(text: str) -> str:
    return text if len(text) <= _LABEL_CHARS else text[: _LABEL_CHARS - 1] + "…"
