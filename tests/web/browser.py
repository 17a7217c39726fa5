"""Driving the console in a real browser: Debian's Chromium through Playwright, and the whole
service (API, console, engine, sandbox vendors) on a loopback port.

Chromium is the system package (`/usr/bin/chromium`; `scripts/ensure-browser.sh`, run by
`make test`, installs it). Without it the browser tests are skipped locally and fail under CI.
Playwright never downloads a browser of its own here.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gpusupply.db.session import Database
from gpusupply.services.keys import create_key
from gpusupply.settings import Settings

CHROMIUM = Path(os.environ.get("GPUSUPPLY_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 30_000  # upper bound for the engine and the 3 s refresh to show a change; not a timing check
# Set to a directory (docs/screenshots) to write the console's screenshots there.
SCREENSHOT_DIR = os.environ.get("GPUSUPPLY_SCREENSHOTS")


def require_chromium() -> Path:
    if CHROMIUM.exists() and os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    found = shutil.which("chromium")
    if found:
        return Path(found)
    message = f"Chromium not found at {CHROMIUM}; `make test` installs it (scripts/ensure-browser.sh, apt-get install chromium)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class Console:
    """The service on a loopback port (engine on, sandbox vendors in-process)."""

    url: str
    settings: Settings
    screenshots: Path
    keys: dict[str, str] = field(default_factory=dict)

    def key(self, tenant: str) -> str:
        """An API key of a tenant of its own (each test gets a clean tenant)."""
        if tenant not in self.keys:
            # Own thread and loop: Playwright's sync API keeps a loop running in this one.
            with ThreadPoolExecutor(1) as pool:
                self.keys[tenant] = pool.submit(asyncio.run, _create_key(self.settings, tenant)).result()
        return self.keys[tenant]

    def wait_for_every_vendor(self, within: float = 90.0) -> None:
        """Until a search answers with every vendor's offers: a vendor's first catalog read can fail
        on a loaded machine (SQLite busy past its timeout) and is read again 10 s later; pages
        that count offers must not look before that."""
        import time

        import httpx

        headers = {"Authorization": f"Bearer {self.key('catalog-check')}"}
        deadline = time.monotonic() + within
        while True:
            answer = httpx.post(f"{self.url}/get_offers", params={"limit": 1}, json={"compute": {"gpu_type": "H100", "gpu_count": 1}}, headers=headers, timeout=30)
            answer.raise_for_status()
            body = answer.json()
            if not body["partial"]:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"vendors still missing from the catalog: {body['failed_vendors']}")
            time.sleep(0.5)

    def screenshot(self, page: Any, name: str, *, max_height: int | None = None) -> Path:
        """The whole page, or its top `max_height` pixels (a long table need not be shown whole)."""
        path = self.screenshots / f"{name}.png"
        if max_height is None:
            page.screenshot(path=str(path), full_page=True)
        else:
            width = page.viewport_size["width"]
            page.screenshot(path=str(path), full_page=True, clip={"x": 0, "y": 0, "width": width, "height": max_height})
        return path


async def _create_key(settings: Settings, tenant: str) -> str:
    db = Database(settings.effective_database_url)
    try:
        _, token = await create_key(db, f"{tenant}-key", tenant=tenant)
        return token
    finally:
        await db.dispose()


@dataclass
class PageProblems:
    """What went wrong inside the page: script errors and Content-Security-Policy refusals."""

    items: list[str] = field(default_factory=list)

    def watch(self, page: Any) -> None:
        page.on("pageerror", lambda error: self.items.append(f"page error: {error}"))
        page.on(
            "console",
            lambda message: self.items.append(f"console: {message.text}")
            if message.type == "error" and "Content Security Policy" in message.text
            else None,
        )


def tab_to(page: Any, selector: str, *, limit: int = 80, backwards: bool = False) -> int:
    """Press Tab (or Shift+Tab) until the focused element matches `selector`; the number of presses."""
    for presses in range(1, limit + 1):
        page.keyboard.press("Shift+Tab" if backwards else "Tab")
        if page.evaluate("(s) => document.activeElement !== null && document.activeElement.matches(s)", selector):
            return presses
    raise AssertionError(f"{selector!r} not reached with {limit} presses of Tab")


def focus_outline(page: Any) -> str:
    """The outline the focused element is drawn with (focus must be visible)."""
    return page.evaluate(
        "() => { const s = getComputedStyle(document.activeElement); return `${s.outlineStyle} ${s.outlineWidth}`; }"
    )
