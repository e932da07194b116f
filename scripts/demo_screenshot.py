#!/usr/bin/env python
"""Drive the demo page in headless Chromium over a checkpoint, time it, and save a screenshot.

    python scripts/demo_screenshot.py --model runs/smollm2-ml100k --out docs/demo.png

It serves the page on a free loopback port, loads a MovieLens-100K test user and times one
recommendation and one explanation for that long history, then builds a short history by title,
asks for recommendations, explains one, adds a new item, and saves the full page as a PNG. The
timings (seconds from the click until the page showed the answer) are printed as JSON. Needs the
system's Chromium and the playwright package (see hf_seqrec.demo.browser).
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

DEFAULT_TITLES = ("Star Wars (1977)", "Raiders of the Lost Ark (1981)", "Return of the Jedi (1983)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="checkpoint directory or Hub repo id")
    parser.add_argument("--compare", default=None, help="a second checkpoint shown side by side")
    parser.add_argument("--out", default="docs/demo.png", help="where to write the screenshot (PNG)")
    parser.add_argument("--titles", nargs="+", default=list(DEFAULT_TITLES), help="the short history, by title")
    parser.add_argument("--user", default="7", help="the MovieLens-100K test user whose history is timed")
    parser.add_argument("--new_title", default="Dune: Part Two (2024)")
    parser.add_argument("--new_genres", nargs="*", default=["Action", "Adventure", "Sci-Fi"])
    parser.add_argument("--width", type=int, default=1400)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from hf_seqrec.demo import DemoModel, browser, search
    from hf_seqrec.demo.app import build_app, launch

    problem = browser.missing_browser()
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    models = [DemoModel.load(args.model)] + ([DemoModel.load(args.compare)] if args.compare else [])
    labels = {item_id: label for label, item_id in search.choices(models[0].catalog)}
    picks = [(title, labels[search.resolve(models[0].catalog, title)]) for title in args.titles]
    app = build_app(models)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    launch(app, port=port, block=False)
    timings: dict[str, float] = {}
    try:
        with browser.chromium_page(width=args.width) as chromium:
            page = chromium.page
            browser.open_demo(page, f"http://127.0.0.1:{port}/")
            # A real test user's long history: the model reads its max_len most recent items.
            page.fill("#user-id textarea, #user-id input", args.user)
            page.click("#load-user")
            browser.wait_for_message(page, "history", containing="held-out next item")
            browser.settle(page)
            timings["test_user_recommend_s"] = browser.recommend(page, 10)
            first = browser.read_table(page)[0]
            timings["test_user_explain_s"] = browser.explain(page, f"1. {first['text'].strip()}")
            # The short history of the screenshot.
            page.click("#clear-history")
            page.wait_for_selector("#history-empty")
            for title, label in picks:
                browser.add_by_search(page, title.lower(), label)
            browser.settle(page)
            timings["short_history_recommend_s"] = browser.recommend(page, 10)
            first = browser.read_table(page)[0]
            timings["short_history_explain_s"] = browser.explain(page, f"1. {first['text'].strip()}")
            browser.settle(page)
            timings["new_item_s"] = _timed(lambda: browser.add_new_item(page, args.new_title, args.new_genres))
            browser.settle(page)  # the lists are refreshed after a new item: shoot the page at rest
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=args.out, full_page=True)
            if chromium.refused:
                print(f"warning: the page tried to reach {chromium.refused}", file=sys.stderr)
    finally:
        app.close()
    print(json.dumps({name: round(value, 3) for name, value in timings.items()}, indent=2))
    print(f"screenshot: {args.out}")
    return 0


def _timed(step: Callable[[], object]) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


if __name__ == "__main__":
    sys.exit(main())
