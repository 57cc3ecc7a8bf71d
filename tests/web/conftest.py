"""Browser fixtures: Debian's Chromium driven by Playwright against a live ``sdcpp serve``.

Without Playwright or Chromium the browser tests skip with one line; with
``SDCPP_REQUIRE_BROWSER=1`` (set by ``.ci/run``) or ``CI=true`` a missing browser fails instead.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.synth.kit import Kit
from tests.web.server import Server, model_folder, serve

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str | None:
    return (
        os.environ.get("SDCPP_CHROMIUM")
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
    )


def _missing(reason: str) -> None:
    required = os.environ.get("SDCPP_REQUIRE_BROWSER") == "1" or os.environ.get("CI") == "true"
    if required:
        pytest.fail(f"browser tests need {reason}", pytrace=False)
    pytest.skip(f"no browser: {reason} (apt-get install chromium; pip install playwright)")


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright package")
    path = chromium_path()
    if path is None:
        _missing("Chromium (/usr/bin/chromium)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def models_dir(kit: Kit, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return model_folder(kit, tmp_path_factory.mktemp("web-models"))


@pytest.fixture(scope="session")
def server(
    browser: Any, models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """One live server for the session (the browser fixture first: no server without a browser)."""
    with serve(models_dir, tmp_path_factory.mktemp("web-data")) as live:
        yield live


class Console:
    """Console errors and uncaught page errors seen during a test."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.allowed: list[str] = []

    def allow(self, text: str) -> None:
        """A message the test provokes on purpose (Chromium logs every 4xx response)."""
        self.allowed.append(text)

    @property
    def errors(self) -> list[str]:
        return [e for e in self.seen if not any(a in e for a in self.allowed)]

    def attach(self, page: Any) -> None:
        page.on("console", lambda m: m.type == "error" and self.seen.append(m.text))
        page.on("pageerror", lambda e: self.seen.append(f"uncaught: {e}"))


@pytest.fixture
def console() -> Console:
    return Console()


def open_page(browser: Any, url: str, console: Console, **context: Any) -> Any:
    ctx = browser.new_context(**context)
    ctx.set_default_timeout(60_000)
    page = ctx.new_page()
    console.attach(page)
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]")
    return page


@pytest.fixture
def page(browser: Any, server: Server, console: Console) -> Iterator[Any]:
    """The page at ``/`` in a fresh context (empty localStorage), desktop size, light; after the
    test, no console error may have been logged."""
    p = open_page(browser, server.url + "/", console, viewport={"width": 1280, "height": 900})
    try:
        yield p
    finally:
        p.context.close()
    assert console.errors == []
