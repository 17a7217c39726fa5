"""The console's charts in headless Chromium: the Prices chart is drawn from the API's history,
the window changes it, the table is there without JavaScript, and the Usage page draws spend."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from gpusupply.core.prices import Market, PricePoint
from gpusupply.db.models import utcnow
from gpusupply.db.session import Database
from gpusupply.domain.price_history import add_points
from tests.e2e.helpers import wait_for
from tests.web.browser import WAIT_MS, Console
from tests.web.test_console_browser import sign_in

MARKET = Market("vast", "nvidia-h100-sxm5-80gb", "H100", 1, "US", "spot")


def store_last_week(console: Console) -> None:
    """Points six days ago: the 7-day window reaches them, the 24-hour one does not."""
    async def store() -> None:
        db = Database(console.settings.effective_database_url)
        try:
            async with db.transaction() as session:
                await add_points(session, [PricePoint(MARKET, utcnow() - timedelta(days=6, hours=n), 1.0 + n / 100, 1.5, 2.0, 2) for n in range(5)])
        finally:
            await db.dispose()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, store()).result()


# What console.js draws from: per column of the chart's table, time (epoch seconds) -> value.
CHART_TABLE = """() => {
  const table = document.getElementById("price-table");
  const labels = Array.from(table.tHead.rows[0].cells).slice(1).map(c => c.textContent);
  const columns = Object.fromEntries(labels.map(l => [l, {}]));
  for (const row of table.tBodies[0].rows) {
    const at = Date.parse(row.querySelector("time").getAttribute("datetime")) / 1000;
    row.querySelectorAll("td").forEach((cell, n) => {
      if (cell.hasAttribute("data-value")) columns[labels[n]][at] = parseFloat(cell.getAttribute("data-value"));
    });
  }
  return columns;
}"""


def _epoch(text: str) -> str:
    return str(int(datetime.fromisoformat(text.replace('Z', '+00:00')).timestamp()))


def drawn(page: Any) -> dict[str, Any]:
    page.wait_for_selector('#price-chart[data-drawn="true"] canvas', timeout=WAIT_MS)
    chart = page.locator("#price-chart")
    return {name: chart.get_attribute(f"data-{name}") for name in ("points", "series", "from")}


def test_the_prices_chart_is_drawn_and_the_window_changes_it(page: Any, console: Console) -> None:
    from playwright.sync_api import expect

    store_last_week(console)
    token = console.key("charts")

    def history() -> dict[str, Any]:
        request = urllib.request.Request(console.url + "/prices/history?gpu_type=H100&since=24h", headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - our own loopback server
            return dict(json.load(answer))

    # Every vendor's first catalog is in (the engine reads them as it starts): the series are all there.
    vendors = set(console.settings.vendors)
    wait_for(lambda: {s["vendor"] for s in history()["series"]} >= vendors, within=60, what="every vendor's first catalog")
    sign_in(page, console, "charts")
    page.get_by_role("link", name="Prices").click()
    expect(page).to_have_url(re.compile(r"/console/prices$"))
    day = drawn(page)
    assert int(day["series"]) >= 1 and int(day["points"]) >= 1
    expect(page.locator("details.chart-table")).not_to_have_attribute("open", "")  # folded once drawn
    console.screenshot(page, "prices")

    # The chart's lines are the API's series, point for point.
    api = history()
    assert int(day["series"]) == len(api["series"])
    shown = page.evaluate(CHART_TABLE)
    assert list(shown) == [f"{s['vendor']} {s['contract_type']}" for s in api["series"]]
    for series in api["series"]:
        by_time = {_epoch(p["at"]): p["min"] for p in series["points"]}
        drawn_points = shown[f"{series['vendor']} {series['contract_type']}"]
        common = set(by_time) & set(drawn_points)  # the two reads' windows may differ by a bucket at the edge
        assert common and all(by_time[t] == drawn_points[t] for t in common)

    page.locator("#window-7d").click()
    expect(page).to_have_url(re.compile(r"window=7d"))
    week = drawn(page)
    assert float(week["from"]) < float(day["from"])  # reaches back to last week's points
    assert week != day
    expect(page.locator("#window-7d")).to_have_attribute("aria-current", "page")


def test_without_javascript_the_table_is_the_chart(chromium: Any, console: Console) -> None:
    context = chromium.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(console.url + "/console/sign-in")
        page.get_by_label("API key").fill(console.key("nojs"))
        page.get_by_role("button", name="Sign in").click()
        page.goto(console.url + "/console/prices?window=7d")
        assert page.locator("details.chart-table").get_attribute("open") is not None
        assert page.locator("#price-table tbody tr").count() >= 1
        assert page.locator("#price-chart canvas").count() == 0
    finally:
        context.close()


def test_the_usage_page_draws_spend(page: Any, console: Console) -> None:
    sign_in(page, console, "spend")
    page.get_by_role("link", name="Usage").click()
    page.wait_for_selector('#spend-chart[data-drawn="true"] canvas', timeout=WAIT_MS)
    assert page.locator("#spend-chart").get_attribute("data-points") == "30"
    console.screenshot(page, "usage")
