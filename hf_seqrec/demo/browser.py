"""Driving the demo page in a real headless Chromium: the browser test and the README screenshot.

The browser is the system's Chromium (Debian's ``chromium`` package), driven through the
``playwright`` Python package with ``executable_path``: nothing downloads a browser build of its own.
Chromium starts with a fresh profile and without its background services (updates, sync, field
trials), and every request that leaves the machine is refused and recorded, so a page that tried to
reach the internet (web fonts, analytics) is caught instead of silently waiting for a timeout.

Each step waits for the page's answer itself, so the steps can be timed as a user would feel them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

CHROMIUM_ENV = "HF_SEQREC_CHROMIUM"  # a browser executable to use instead of the system's chromium
CHROMIUM_NAMES = ("chromium", "chromium-browser")
INSTALL_HINT = (
    "install the system's Chromium (Debian/Ubuntu: apt-get install -y chromium) and the playwright package "
    '(pip install -e ".[test]"); never `playwright install`, which downloads a browser of its own'
)
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--metrics-recording-only", "--mute-audio",
)  # fmt: skip
LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")
TIMEOUT_MS = 30_000


def find_chromium() -> str | None:
    """The Chromium executable to drive: ``$HF_SEQREC_CHROMIUM``, else ``chromium`` on the PATH; None if neither."""
    chosen = os.environ.get(CHROMIUM_ENV)
    if chosen:
        return chosen if os.access(chosen, os.X_OK) else None
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def missing_browser() -> str | None:
    """Why the page cannot be driven here (no browser, no playwright), or None when it can."""
    try:  # optional (the test extra): its absence is a reason, not a crash
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return f"the playwright package is not installed: {INSTALL_HINT}"
    if find_chromium() is None:
        return f"no Chromium executable found (looked for {', '.join(CHROMIUM_NAMES)} and ${CHROMIUM_ENV}): {INSTALL_HINT}"
    return None


@dataclass
class Browser:
    """An open page, and the outside requests the page tried to make (all refused)."""

    page: Any
    refused: list[str] = field(default_factory=list)


@contextlib.contextmanager
def chromium_page(width: int = 1400, height: int = 1000) -> Iterator[Browser]:
    """A page in a headless system Chromium with a fresh profile; requests off this machine are refused."""
    problem = missing_browser()
    if problem:
        raise RuntimeError(problem)
    from playwright.sync_api import sync_playwright  # optional (the test extra): checked just above

    with sync_playwright() as playwright, tempfile.TemporaryDirectory(prefix="seqrec-chromium-") as profile:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=find_chromium(), headless=True, args=list(CHROMIUM_FLAGS),
            viewport={"width": width, "height": height}, device_scale_factor=1,
        )  # fmt: skip
        browser = Browser(page=context.pages[0] if context.pages else context.new_page())

        def only_local(route: Any) -> None:
            url = route.request.url
            if urlparse(url).scheme in ("data", "blob") or urlparse(url).hostname in LOCAL_HOSTS:
                route.continue_()
            else:
                browser.refused.append(url)
                route.abort()

        context.route("**/*", only_local)
        context.set_default_timeout(TIMEOUT_MS)
        try:
            yield browser
        finally:
            context.close()


# ----------------------------------------------------------------------------- steps on the page
def open_demo(page: Any, url: str) -> None:
    """Load the page and wait until its search box is there."""
    page.goto(url)
    page.wait_for_selector("#search input")


def add_by_search(page: Any, typed: str, suggestion: str) -> None:
    """Type ``typed`` into the search box, pick the suggestion labelled ``suggestion``, add it, wait for the history."""
    before = page.locator("#history li").count()
    search = page.locator("#search input")
    search.click()
    search.fill("")
    search.press_sequentially(typed)  # key by key, as a user types: the suggestions filter on each key
    page.locator(f'#search li[role="option"][aria-label="{_css_string(suggestion)}"]').click()
    page.click("#add-to-history")
    page.wait_for_function(f"document.querySelectorAll('#history li').length === {before + 1}")


def settle(page: Any, quiet_ms: int = 400) -> None:
    """Wait until no event of the page has been running for ``quiet_ms`` (Gradio shows a status on each pending output)."""
    page.wait_for_function(
        """quiet => {
            const busy = [...document.querySelectorAll('[data-testid="status-tracker"]')].some(s => !s.classList.contains('hide'));
            const now = performance.now();
            if (busy || window.__seqrecIdleSince === undefined) { window.__seqrecIdleSince = busy ? undefined : now; return false; }
            return now - window.__seqrecIdleSince >= quiet;
        }""",
        arg=quiet_ms,
        polling=50,
    )


def history_ids(page: Any) -> list[str]:
    return page.eval_on_selector_all("#history li", "items => items.map(li => li.dataset.itemId)")


def recommend(page: Any, top_k: int) -> float:
    """Ask for recommendations; return the seconds until the page showed all ``top_k`` of them.

    Call :func:`settle` first for a timing that no earlier event overlaps.
    """
    start = time.perf_counter()
    page.click("#recommend")
    page.wait_for_function(f"document.querySelectorAll('#recommendations tr[data-item-id]').length === {top_k}")
    return time.perf_counter() - start


def read_table(page: Any, selector: str = "#recommendations") -> list[dict[str, Any]]:
    """The rows of a recommendations table as the page shows them: item id, rank, exact score, text."""
    return page.eval_on_selector_all(
        f"{selector} tr[data-item-id]",
        """rows => rows.map(tr => ({item_id: tr.dataset.itemId, rank: Number(tr.dataset.rank),
            score: Number(tr.dataset.score), text: tr.children[1].textContent}))""",
    )


def explain(page: Any, choice: str, method: str = "occlusion") -> float:
    """Explain the recommendation whose choice label is ``choice``; return the seconds until the answer showed."""
    page.locator("#explain-item input").click()
    page.locator(f'#explain-item li[role="option"][aria-label="{_css_string(choice)}"]').click()
    page.locator("#explain-method label", has_text=method).click()
    start = time.perf_counter()
    page.click("#explain")
    page.wait_for_selector("#explanation tr[data-item-id]")
    page.wait_for_selector("#explanation-chart img")
    return time.perf_counter() - start


def read_explanation(page: Any) -> list[dict[str, Any]]:
    return page.eval_on_selector_all(
        "#explanation tr[data-item-id]",
        """rows => rows.map(tr => ({item_id: tr.dataset.itemId, position: Number(tr.dataset.position),
            contribution: Number(tr.dataset.contribution)}))""",
    )


def add_new_item(page: Any, title: str, genres: list[str]) -> str:
    """Add a new item by title and genres; return the message the page answered with."""
    page.fill("#new-title textarea, #new-title input", title)
    for genre in genres:
        page.locator("#new-genres input").click()
        page.locator(f'#new-genres li[role="option"][aria-label="{_css_string(genre)}"]').click()
    page.keyboard.press("Escape")
    page.click("#add-new-item")
    answer = page.locator("#new-item-message .seqrec-msg", has_text="Added").or_(page.locator("#new-item-message .seqrec-msg.error"))
    answer.wait_for()
    return answer.inner_text()


def wait_for_message(page: Any, area: str, kind: str = "info", containing: str = "") -> str:
    """Wait until an area's message (``area``: history, recommend, explain, new-item) of ``kind`` shows; return its text."""
    box = page.locator(f"#{area}-message .seqrec-msg.{kind}", has_text=containing)
    box.wait_for()
    return box.inner_text()


def _css_string(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')
