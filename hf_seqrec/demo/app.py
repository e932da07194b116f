"""The demo page's layout: Gradio components and which callback each click runs.

The behaviour lives in :mod:`hf_seqrec.demo.callbacks`; this module only places components and wires
events, so the page can be read top to bottom here. Element ids (``elem_id``) are stable hooks for
the browser test and for anyone scripting the page.

The page reaches nothing outside the machine: Gradio's analytics are off (``hf_seqrec.demo`` sets
``GRADIO_ANALYTICS_ENABLED=False`` before Gradio is imported), the theme uses the system's fonts
(Gradio's default theme would fetch web fonts), and nothing is shared unless asked.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gradio as gr

from . import render
from .callbacks import DEFAULT_TOP_K, MAX_TOP_K, PageCallbacks, PageState
from .model import EXPLAIN_METHODS, DemoModel

TITLE = "hf_seqrec: next-item recommendations"
_SYSTEM_FONTS = ["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica Neue", "Arial", "sans-serif"]
_MONO_FONTS = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"]
# A browser-side event handler: empties two HTML outputs without a round trip to the server.
_CLEAR_TWO = "() => ['', '']"


def theme() -> gr.themes.Theme:
    """Gradio's default look with the system's fonts: nothing is fetched from a font service."""
    return gr.themes.Default(font=_SYSTEM_FONTS, font_mono=_MONO_FONTS)


def build_app(models: Sequence[DemoModel]) -> gr.Blocks:
    """The page over one checkpoint, or two side by side (the first one is explained and searched)."""
    callbacks = PageCallbacks(models)
    comparing = len(models) == 2
    names = [model.name for model in models]
    with gr.Blocks(title=TITLE, analytics_enabled=False) as app:
        state = gr.State(PageState())
        gr.Markdown(
            f"# Next-item recommendations\nCheckpoint: **{names[0]}**"
            + (f" compared with **{names[1]}**" if comparing else "")
            + ". Build a history, oldest first, and see what the model recommends next, and why."
        )
        with gr.Row():
            with gr.Column(scale=5):
                gr.Markdown("## 1. History")
                search_box = gr.Dropdown(
                    choices=callbacks.search_choices(), value=None, label="Search the catalogue by title",
                    info="Type to filter the suggestions, pick one, then add it. A typed title is matched "
                    "leniently (case, accents, punctuation and the year may differ).",
                    allow_custom_value=True, filterable=True, elem_id="search",
                )  # fmt: skip
                with gr.Row():
                    add_button = gr.Button("Add to history", variant="primary", elem_id="add-to-history")
                    remove_button = gr.Button("Remove last", elem_id="remove-last")
                    clear_button = gr.Button("Clear", elem_id="clear-history")
                with gr.Row():
                    user_box = gr.Textbox(label="MovieLens-100K test user (empty: a random one)", elem_id="user-id", scale=2)
                    user_button = gr.Button("Load a test user's history", elem_id="load-user", scale=1)
                history_message = gr.HTML(elem_id="history-message")
                history_view = gr.HTML(callbacks.history_html(PageState()), elem_id="history")
            with gr.Column(scale=7):
                gr.Markdown("## 2. Recommendations")
                with gr.Row():
                    top_k = gr.Slider(1, MAX_TOP_K, value=DEFAULT_TOP_K, step=1, label="How many", elem_id="top-k", scale=3)
                    recommend_button = gr.Button("Recommend", variant="primary", elem_id="recommend", scale=1)
                recommend_message = gr.HTML(elem_id="recommend-message")
                overlap = gr.HTML(elem_id="overlap", visible=comparing)
                with gr.Row():
                    with gr.Column():
                        if comparing:
                            gr.Markdown(f"**{names[0]}**")
                        first_table = gr.HTML(elem_id="recommendations")
                    with gr.Column(visible=comparing):
                        gr.Markdown(f"**{names[1]}**" if comparing else "")
                        second_table = gr.HTML(elem_id="recommendations-compare")
        with gr.Row():
            with gr.Column(scale=7):
                gr.Markdown(f"## 3. Why{f' ({names[0]})' if comparing else ''}")
                with gr.Row():
                    explain_choice = gr.Dropdown(choices=[], label="Recommendation to explain", elem_id="explain-item", scale=3)
                    method = gr.Radio(list(EXPLAIN_METHODS), value=EXPLAIN_METHODS[0], label="Method", elem_id="explain-method", scale=2)
                explain_button = gr.Button("Explain", elem_id="explain")
                explain_message = gr.HTML(elem_id="explain-message")
                chart = gr.Plot(label="Contribution of each history item", elem_id="explanation-chart", format="png")
                explanation = gr.HTML(elem_id="explanation")
            with gr.Column(scale=5):
                gr.Markdown("## 4. A new item")
                new_title = gr.Textbox(label="Title", placeholder="Dune: Part Two (2024)", elem_id="new-title")
                new_genres = gr.Dropdown(
                    choices=callbacks.genre_choices(), multiselect=True, allow_custom_value=True,
                    label="Genres", elem_id="new-genres",
                )  # fmt: skip
                new_button = gr.Button("Add the new item and rank it", elem_id="add-new-item")
                new_message = gr.HTML(render.message("\n".join(model.new_item_note() for model in models)), elem_id="new-item-message")

        lists = [first_table, second_table, overlap, explain_choice]
        results = [*lists, chart, explanation, explain_message, recommend_message]
        history_outputs = [state, history_view]

        def after_history_change(event: Any) -> None:
            event.then(callbacks.refresh, [state, top_k], results)

        after_history_change(add_button.click(callbacks.add_to_history, [state, search_box], [*history_outputs, search_box, history_message]))
        after_history_change(remove_button.click(callbacks.remove_last, [state], [*history_outputs, history_message]))
        after_history_change(clear_button.click(callbacks.clear_history, [state], [*history_outputs, history_message]))
        after_history_change(user_button.click(callbacks.load_user, [state, user_box], [*history_outputs, user_box, history_message]))
        # The old answer is cleared in the browser at once, so a new one is never mistaken for it.
        recommend_button.click(None, None, [first_table, second_table], js=_CLEAR_TWO).then(
            callbacks.recommend, [state, top_k], results
        )
        explain_button.click(None, None, [explanation, explain_message], js=_CLEAR_TWO).then(
            callbacks.explain, [state, explain_choice, method], [chart, explanation, explain_message]
        )
        new_button.click(callbacks.add_new_item, [state, new_title, new_genres], [search_box, new_message]).then(
            callbacks.refresh_lists, [state, top_k], [*lists, recommend_message]
        )
    return app


def launch(app: gr.Blocks, *, host: str = "127.0.0.1", port: int | None = None, share: bool = False, block: bool = True) -> Any:
    """Serve the page on ``host:port`` (loopback by default) with the offline theme; ``block=False`` returns at once."""
    return app.launch(
        server_name=host,
        server_port=port,
        share=share,
        prevent_thread_lock=not block,
        theme=theme(),
        css=render.CSS,
        ssr_mode=False,  # no Node server: the page is rendered in the browser from Gradio's own files
        show_error=False,  # callbacks turn errors into messages; nothing else may reach the page
        quiet=not block,
        footer_links=[],
        run_history=False,  # nothing about the user's clicks is kept, in the browser or elsewhere
    )
