"""The console at 1280 px (a laptop) and 390 px (a phone) in headless Chromium: no table runs
past the screen, the offers sort by memory and vCPUs, the SSH command has a copy button, and the
browser remembers the last SSH key. Screenshots of both widths (docs/screenshots with
GPUSUPPLY_SCREENSHOTS=docs/screenshots)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import SSH_KEY
from tests.web.browser import WAIT_MS, Console, PageProblems
from tests.web.test_console_browser import search, sign_in, status_of

WIDTHS = {"laptop": (1280, 860), "phone": (390, 844)}
# Wider than the viewport: the page scrolls sideways, or a table is cut inside its scroll box.
OVERFLOW = """() => {
  const page = document.documentElement.scrollWidth - window.innerWidth;
  const boxes = [...document.querySelectorAll('.table-scroll')].map(b => b.scrollWidth - b.clientWidth);
  return {page, boxes};
}"""


@pytest.fixture(params=list(WIDTHS))
def sized(request: pytest.FixtureRequest, chromium: Any) -> Iterator[tuple[str, Any]]:
    width, height = WIDTHS[request.param]
    context = chromium.new_context(viewport={"width": width, "height": height}, color_scheme="light", locale="en-US")
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = context.new_page()
    problems = PageProblems()
    problems.watch(page)
    try:
        yield request.param, page
    finally:
        context.close()
    assert problems.items == []


def fits(page: Any) -> None:
    overflow = page.evaluate(OVERFLOW)
    assert overflow["page"] <= 0 and all(extra <= 1 for extra in overflow["boxes"]), overflow


def test_tables_fit_the_screen_and_the_console_helps(sized: tuple[str, Any], console: Console) -> None:
    from playwright.sync_api import expect

    name, page = sized
    sign_in(page, console, f"fit-{name}")
    search(page, vendor="")
    expect(page.locator("#results-summary")).to_contain_text("Showing 1–50 of")
    rows = page.locator("table.offers tbody tr")
    assert max(rows.nth(i).bounding_box()["height"] for i in range(10)) < 60  # one line a row
    fits(page)
    console.screenshot(page, f"offers-{name}", max_height=1200 if name == "laptop" else 2400)
    if name == "laptop":  # the columns a phone hides
        page.locator("#sort-vcpus").click()
        expect(page.locator("th[aria-sort]")).to_have_attribute("aria-sort", "descending")
        vcpus = [int(t) for t in page.locator("table.offers tbody tr td:nth-child(7)").all_inner_texts()]
        assert vcpus == sorted(vcpus, reverse=True)
        page.locator("#sort-gpu-memory").click()
        expect(page.locator("#results-summary")).to_contain_text("by GPU memory, largest first")

    page.get_by_label("Vendor").select_option("nebula")
    page.get_by_role("button", name="Search offers").click()
    page.locator("table.offers tbody tr").first.get_by_role("link", name=re.compile("^Procure")).click()
    key = page.get_by_label("SSH public key")
    expect(key).to_have_value("")
    key.fill(SSH_KEY)
    page.get_by_label("Name (optional)").fill(f"fit-{name}")
    page.get_by_label("After (hours)").fill("2")
    page.get_by_label("Once it has cost (USD)").fill("15")
    fits(page)
    page.get_by_label("Name (optional)").focus()  # a full-page shot with a number field focused eats the next click on a phone
    console.screenshot(page, f"procure-{name}")
    page.locator("#procure-submit").click()
    live = page.locator("#resource-live")
    expect(status_of(live)).to_have_text(re.compile("running"), timeout=WAIT_MS)
    copy = live.locator("button.copy")
    expect(copy).to_be_visible()
    copy.click()
    expect(copy).to_have_text("Copied")
    assert re.match(r"ssh [a-z]+@", page.evaluate("navigator.clipboard.readText()"))
    fits(page)
    console.screenshot(page, f"resource-{name}")

    page.get_by_role("link", name="Resources", exact=True).click()
    row = page.locator("#resource-rows tr").filter(has_text=f"fit-{name}")
    expect(status_of(row)).to_have_text(re.compile("running"))
    expect(row.get_by_role("button", name=re.compile("^Delete"))).to_be_visible()
    box, screen = row.get_by_role("button", name=re.compile("^Delete")).bounding_box(), page.viewport_size
    assert box["x"] + box["width"] <= screen["width"]  # the Actions column is on the screen
    fits(page)
    console.screenshot(page, f"resources-{name}")

    # The next procurement starts with the key this browser sent last.
    page.goto(console.url + "/console/offers")
    search(page, vendor="")
    page.locator("table.offers tbody tr").first.get_by_role("link", name=re.compile("^Procure")).click()
    expect(page.get_by_label("SSH public key")).to_have_value(SSH_KEY)
