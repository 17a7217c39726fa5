"""Fixtures of the browser tests (helpers in tests/web/browser.py): a headless Chromium for the
module, the whole service on a loopback port per module, and a fresh page per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpusupply.sandbox.runner import ServerThread
from tests.web.browser import CHROMIUM_ARGS, SCREENSHOT_DIR, Console, PageProblems, require_chromium


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """A headless Chromium (the system package), per module: Playwright's sync API keeps an event
    loop running in this thread while it is open, which the asyncio tests of other modules cannot share."""
    executable = require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(executable), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    from gpusupply.app import create_app
    from tests.conftest import make_test_settings

    root = tmp_path_factory.mktemp("console")
    # More offers than the default test sandboxes: a fuller search page (and screenshot).
    settings = make_test_settings(root, sandbox_offers=600, engine_poll_seconds=0.2, provisioning_poll_seconds=0.3)
    screenshots = Path(SCREENSHOT_DIR) if SCREENSHOT_DIR else root / "screenshots"
    screenshots.mkdir(parents=True, exist_ok=True)
    with ServerThread(create_app(settings, run_engine=True)) as server:
        console = Console(server.url, settings, screenshots)
        console.wait_for_every_vendor()
        yield console


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    """A fresh browser context (no cookies) and page; fails the test on script or CSP errors."""
    context = chromium.new_context(viewport={"width": 1280, "height": 860}, color_scheme="light", locale="en-US")
    page = context.new_page()
    problems = PageProblems()
    problems.watch(page)
    try:
        yield page
    finally:
        context.close()
    assert problems.items == []


