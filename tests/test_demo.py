"""The demo page (hf_seqrec.demo, scripts/demo.py): its answers are the pipeline's, its errors are messages.

The callbacks are tested directly (fast, no browser); one test drives the real page in a headless
system Chromium, as a user would, over a tiny model with the MovieLens-100K catalogue.
"""

from __future__ import annotations

import html
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from transformers import pipeline

pytest.importorskip("gradio", reason='the demo needs its extra: pip install -e ".[demo]"')

import gradio as gr  # noqa: E402

from hf_seqrec import SeqRecForNextItem  # noqa: E402
from hf_seqrec.data.builtin import load_builtin  # noqa: E402
from hf_seqrec.modeling.item_catalog import ItemCatalog  # noqa: E402
from hf_seqrec.data.prepare import DataConfig, load_user_histories  # noqa: E402
from hf_seqrec.demo import DemoError, DemoModel, browser, search  # noqa: E402
from hf_seqrec.demo.callbacks import PageCallbacks, PageState  # noqa: E402
from testing_utils import REPO, save_tiny_lm_checkpoint, script_env  # noqa: E402

# Gradio's queue calls pandas options that pandas 3 deprecates; not this project's to fix.
pytestmark = [
    pytest.mark.filterwarnings("ignore:'future.no_silent_downcasting' is deprecated"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]

TOY_STORY, GOLDENEYE, FOUR_ROOMS = "1", "2", "3"
SUGGESTIONS = {  # what is typed into the search box -> the suggestion picked
    "toy story": "Toy Story (1995) | Animation, Children's, Comedy",
    "goldeneye": "GoldenEye (1995) | Action, Adventure, Thriller",
    "four rooms": "Four Rooms (1995) | Thriller",
}


@pytest.fixture(scope="module")
def movielens_catalog() -> ItemCatalog:
    _, items = load_builtin("movielens-100k")
    return ItemCatalog(list(items["item_id"]), list(items["text"]))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, movielens_catalog) -> Path:
    """A tiny-llama checkpoint over the real MovieLens-100K catalogue, so titles and test users are real."""
    return save_tiny_lm_checkpoint(tmp_path_factory.mktemp("demo") / "ckpt", movielens_catalog, max_len=20)


@pytest.fixture
def demo_model(checkpoint, one_torch_thread) -> DemoModel:
    """A fresh model per test: adding items changes it."""
    return DemoModel.load(checkpoint)


@pytest.fixture
def sasrec_model(movielens_catalog) -> DemoModel:
    torch.manual_seed(0)
    model, _ = SeqRecForNextItem.from_backbone(
        "sasrec", num_items=len(movielens_catalog), max_len=20, backbone_options={"hidden_size": 16}
    )
    model.item_catalog = movielens_catalog
    return DemoModel(pipeline("next-item", model=model), "sasrec")


def table_rows(html: str) -> list[tuple[str, int, float]]:
    """(item id, rank, exact score) of each row of a rendered recommendations table."""
    return [
        (item_id, int(rank), float(score))
        for item_id, score, rank in re.findall(r'data-item-id="([^"]+)" data-score="([^"]+)" data-rank="(\d+)"', html)
    ]


def text(message: str) -> str:
    """A rendered message as the reader sees it (tags dropped, entities decoded)."""
    return html.unescape(re.sub(r"<[^>]+>", "", message))


def is_error(message: str) -> bool:
    return 'class="seqrec-msg error"' in message


def skipped(value) -> bool:
    return value == gr.skip()


# ----------------------------------------------------------------------------- search
def test_search_resolves_suggestions_and_lenient_titles_like_the_pipeline(demo_model):
    catalog = demo_model.catalog
    assert search.resolve(catalog, GOLDENEYE) == GOLDENEYE  # a suggestion's value is its id
    assert search.resolve(catalog, "  toy STORY ") == TOY_STORY  # case, spaces and the missing year do not matter
    assert search.resolve(catalog, "Toy Story (1995)") == TOY_STORY
    with pytest.raises(DemoError, match="No item .* titled “Toy Stroy”.*Did you mean: Toy Story"):
        search.resolve(catalog, "Toy Stroy")
    with pytest.raises(DemoError, match="Type a title"):
        search.resolve(catalog, "   ")
    # MovieLens-100K lists a few films twice: the title is ambiguous, and both ids are named.
    with pytest.raises(DemoError, match=r"matches 2 items.*\[item 246\].*\[item 268\]"):
        search.resolve(catalog, "Chasing Amy")


def test_suggestions_name_the_id_only_where_a_text_is_shared(demo_model):
    labels = dict((item_id, label) for label, item_id in search.choices(demo_model.catalog))
    assert labels[TOY_STORY] == SUGGESTIONS["toy story"]
    assert labels["246"] == "Chasing Amy (1997) | Drama, Romance [item 246]"
    assert len(labels) == len(demo_model.catalog)


def test_new_item_text_has_the_catalogue_shape():
    assert search.item_text(" Dune:  Part Two (2024) ", ["Action", "Sci-Fi", "Action"]) == "Dune: Part Two (2024) | Action, Sci-Fi"
    assert search.item_text("Dune", "") == "Dune"
    with pytest.raises(DemoError, match="title"):
        search.item_text("  ", ["Drama"])


# ----------------------------------------------------------------------------- callbacks
def test_history_recommendations_and_explanation_are_the_pipelines(demo_model, checkpoint):
    page = PageCallbacks([demo_model])
    state = PageState()
    for typed in ("toy story", GOLDENEYE, "Four Rooms"):
        state, history_html, search_update, message = page.add_to_history(state, typed)
        assert not is_error(message) and search_update["value"] is None
    assert state.history == [TOY_STORY, GOLDENEYE, FOUR_ROOMS]
    assert history_html.count("<li") == 3

    reference = pipeline("next-item", model=str(checkpoint))
    expected = reference({"history": state.history}, top_k=10)
    first, second, overlap, choices, chart, explanation, note, message = page.recommend(state, 10)
    assert table_rows(first) == [(r["item_id"], r["rank"], r["score"]) for r in expected]
    assert second == overlap == explanation == note == message == "" and chart is None
    assert [value for _, value in choices["choices"]] == [r["item_id"] for r in expected]

    explained = reference({"history": state.history}, top_k=10, explain=True)[1]
    figure, table, note = page.explain(state, explained["item_id"], "occlusion")
    shown = re.findall(r'data-item-id="([^"]+)" data-position="(\d+)" data-contribution="([^"]+)"', table)
    assert [(i, int(p)) for i, p, _ in shown] == [(e["item_id"], e["position"]) for e in explained["explanation"]]
    assert [float(c) for _, _, c in shown] == pytest.approx([e["contribution"] for e in explained["explanation"]], abs=1e-5)
    assert len(figure.axes[0].patches) == 3 and "occlusion" in note

    figure, table, note = page.explain(state, explained["item_id"], "integrated_gradients")
    assert table.count("data-contribution") == 3 and "integrated gradients" in note


def test_errors_are_messages_and_leave_the_page_as_it_was(demo_model, monkeypatch):
    page = PageCallbacks([demo_model])
    empty = PageState()
    *unchanged, message = page.recommend(empty, 10)
    assert all(skipped(value) for value in unchanged)
    assert is_error(message) and "history is empty" in message

    *unchanged, message = page.add_to_history(empty, "A film nobody made (2031)")
    assert all(skipped(value) for value in unchanged) and is_error(message) and "No item" in message

    *_, message = page.explain(empty, None, "occlusion")
    assert is_error(message) and "Ask for recommendations first" in message
    assert is_error(page.recommend(PageState(history=[TOY_STORY]), 0)[-1])

    # A fault of the program: one line on the page, the traceback only in the server's log.
    monkeypatch.setattr(demo_model, "recommend", lambda *args: 1 / 0)
    *_, message = page.recommend(PageState(history=[TOY_STORY]), 10)
    assert is_error(message) and "ZeroDivisionError" in message and "Traceback" not in message


def test_a_test_user_is_loaded_from_movielens(demo_model):
    page = PageCallbacks([demo_model])
    state, history_html, user_update, message = page.load_user(PageState(), "7")
    items = load_user_histories(DataConfig(dataset="movielens-100k"))[0]["7"]
    assert state.history == items[:-1] and state.target == items[-1] and user_update["value"] == "7"
    assert "held-out next item" in message and "the model reads the 20 most recent" in history_html
    assert is_error(page.load_user(PageState(), "99999")[-1])
    assert page.load_user(PageState(), "")[0].user is not None  # empty: a random user

    top = page.recommend(state, 50)
    assert "Held-out next item" in top[-1]


def test_a_new_item_is_ranked_as_the_pipeline_ranks_it(demo_model, checkpoint):
    page = PageCallbacks([demo_model])
    state = PageState(history=[TOY_STORY, GOLDENEYE])
    choices, message = page.add_new_item(state, "Dune: Part Two (2024)", ["Action", "Sci-Fi"])
    assert not is_error(message)
    assert ("Dune: Part Two (2024) | Action, Sci-Fi", "new-1") in choices["choices"]

    reference = pipeline("next-item", model=str(checkpoint))
    reference.add_items([{"item_id": "new-1", "text": "Dune: Part Two (2024) | Action, Sci-Fi"}])
    ranking = reference({"history": state.history}, top_k=len(reference.catalog))
    rank = next(r["rank"] for r in ranking if r["item_id"] == "new-1")
    assert f"ranks it #{rank} of {len(ranking):,}" in message
    assert "has no text tower" in message and "text-similarity hint" in message
    # The lists are asked again (the new item may be among them); the explanation is left as it was.
    first, *_ = page.refresh_lists(state, 10)
    assert table_rows(first) == [(r["item_id"], r["rank"], r["score"]) for r in ranking[:10]]
    # The next one gets the next id; without a history the page says how to see the rank.
    _, message = page.add_new_item(PageState(), "Dune", [])
    assert "as item new-2" in message and "Build a history" in message


def test_side_by_side_shows_both_lists_and_their_overlap(demo_model, sasrec_model):
    page = PageCallbacks([demo_model, sasrec_model])
    state = PageState(history=[TOY_STORY, GOLDENEYE, FOUR_ROOMS])
    first, second, overlap, *_ = page.recommend(state, 10)
    lm = table_rows(first)
    sasrec = table_rows(second)
    assert [r[0] for r in sasrec] == [r["item_id"] for r in sasrec_model.pipe({"history": state.history}, top_k=10)]
    both = {r[0] for r in lm} & {r[0] for r in sasrec}
    assert f"Overlap: {len(both)} of 10 items" in overlap
    assert first.count('class="both"') == len(both) == second.count('class="both"')

    # SASRec reads no text: the page says so, and the LM still takes the item.
    _, message = page.add_new_item(state, "Dune: Part Two (2024)", ["Sci-Fi"])
    assert not is_error(message) and "sasrec is a sasrec model trained from item ids alone" in message
    assert "ckpt ranks it #" in message
    _, message = PageCallbacks([sasrec_model]).add_new_item(state, "Dune", [])
    assert is_error(message) and "cannot read a new item's text" in text(message)


def test_the_callbacks_read_no_file_but_the_checkpoint(demo_model, checkpoint):
    """Beyond the named checkpoint, only Python's own files (imports, fonts) and the OS's are opened."""
    import matplotlib

    import hf_seqrec

    allowed = [str(checkpoint), str(Path(hf_seqrec.__file__).parent), sys.prefix, sys.base_prefix, matplotlib.get_cachedir(), matplotlib.get_configdir(), "/proc", "/sys", "/dev", "/usr/share/fonts"]
    opened: list[str] = []
    recording = [True]

    def audit(event: str, args: tuple) -> None:
        if recording[0] and event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            opened.append(os.fsdecode(args[0]))

    page = PageCallbacks([demo_model])
    sys.addaudithook(audit)  # cannot be removed: `recording` switches it off after this test
    try:
        state, *_ = page.add_to_history(PageState(), "toy story")
        result = page.recommend(state, 10)
        page.explain(state, table_rows(result[0])[0][0], "occlusion")
        page.add_new_item(state, "Dune", ["Sci-Fi"])
    finally:
        recording[0] = False
    outside = [path for path in opened if not path.startswith(tuple(allowed)) and os.path.isabs(path)]
    assert outside == []


# ----------------------------------------------------------------------------- the command line
def test_the_script_binds_to_loopback_and_shares_nothing_by_default():
    from hf_seqrec.demo.demo_command import build_parser

    args = build_parser().parse_args(["--model", "x"])
    assert (args.host, args.share, args.compare) == ("127.0.0.1", False, None)
    assert build_parser().parse_args(["--model", "x", "--share", "true"]).share is True
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--model", "x", "--share", "maybe"])


def test_the_script_turns_a_missing_checkpoint_into_one_line(tmp_path):
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "demo.py"), "--model", str(tmp_path / "nowhere")],
        cwd=REPO, env=script_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: --model") and "Traceback" not in done.stderr


# ----------------------------------------------------------------------------- in a real browser
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def browser_or_skip():
    problem = browser.missing_browser()
    if problem:
        if os.environ.get("CI"):  # .ci/run installs the browser: CI must never skip this test
            pytest.fail(f"CI has no browser for the demo test: {problem}")
        pytest.skip(f"no headless browser for the demo test: {problem}")


def test_the_page_in_a_real_browser(browser_or_skip, demo_model, checkpoint, tmp_path):
    from hf_seqrec.demo.app import build_app, launch

    app = build_app([demo_model])
    port = free_port()
    launch(app, port=port, block=False)
    timings = {}
    try:
        with browser.chromium_page() as chromium:
            page = chromium.page
            start = time.perf_counter()
            browser.open_demo(page, f"http://127.0.0.1:{port}/")
            timings["open_page_s"] = time.perf_counter() - start

            # Mistakes are answered on the page, in words.
            page.click("#recommend")
            assert "history is empty" in browser.wait_for_message(page, "recommend", "error")
            page.locator("#search input").press_sequentially("A film nobody made (2031)")
            page.click("#add-to-history")
            assert "No item" in browser.wait_for_message(page, "history", "error")

            for typed, suggestion in SUGGESTIONS.items():
                browser.add_by_search(page, typed, suggestion)
            history = browser.history_ids(page)
            assert history == [TOY_STORY, GOLDENEYE, FOUR_ROOMS]
            browser.settle(page)  # each change of the history refreshes the lists: let the last refresh finish

            timings["recommend_s"] = browser.recommend(page, 10)
            reference = pipeline("next-item", model=str(checkpoint))
            expected = reference({"history_text": [s.split(" | ")[0] for s in SUGGESTIONS.values()]}, top_k=10, explain=True)
            shown = browser.read_table(page)
            assert [(r["item_id"], r["rank"], r["text"].strip()) for r in shown] == [(r["item_id"], r["rank"], r["text"]) for r in expected]
            assert [r["score"] for r in shown] == [r["score"] for r in expected]

            chosen = expected[1]
            timings["explain_s"] = browser.explain(page, f"2. {chosen['text']}")
            explanation = browser.read_explanation(page)
            assert [(e["item_id"], e["position"]) for e in explanation] == [(e["item_id"], e["position"]) for e in chosen["explanation"]]
            assert [e["contribution"] for e in explanation] == pytest.approx([e["contribution"] for e in chosen["explanation"]], abs=1e-5)

            answer = browser.add_new_item(page, "Dune: Part Two (2024)", ["Action", "Sci-Fi"])
            assert "Added Dune: Part Two (2024) | Action, Sci-Fi as item new-1" in answer and "ranks it #" in answer

            page.screenshot(path=str(tmp_path / "demo.png"), full_page=True)
            assert chromium.refused == []  # the page asked nothing of the internet
    finally:
        app.close()
    assert (tmp_path / "demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "timings.json").write_text(json.dumps(timings))
    print(f"demo page timings (tiny model): {json.dumps({k: round(v, 3) for k, v in timings.items()})}")
