"""The Prices and Usage pages over HTTP (no browser): the chart's table holds the API's numbers,
the window changes them, and bad parameters fall back with a message. (Drawn: test_console_charts.py.)"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from gpusupply.core.prices import Market, PricePoint
from gpusupply.db.models import utcnow
from gpusupply.domain.price_history import add_points
from gpusupply.web.charts import spend_table
from tests.web.helpers import console_client, sign_in

MARKET = Market("vast", "nvidia-h100-sxm5-80gb", "H100", 1, "US", "spot")


def table_values(page: str, table_id: str) -> dict[str, list[float]]:
    """A chart table's columns: header -> the numbers in it (gaps left out)."""
    table = re.search(rf'<table[^>]*id="{table_id}".*?</table>', page, flags=re.S)
    assert table, f"no table {table_id}"
    headers = re.findall(r'<th scope="col">([^<]*)</th>', table.group(0))[1:]
    columns: dict[str, list[float]] = {h: [] for h in headers}
    for row in re.findall(r"<tr>\s*<th scope=\"row\">.*?</tr>", table.group(0), flags=re.S):
        for header, cell in zip(headers, re.findall(r'<td class="number"(?: data-value="([^"]*)")?>', row), strict=True):
            if cell:
                columns[header].append(float(cell))
    return columns


async def test_the_prices_chart_table_is_the_apis_history(service: Any) -> None:
    await service.catalog.refresh()
    async with service.db.transaction() as session:  # a week of history, so the 7-day window differs from 24 h
        await add_points(session, [PricePoint(MARKET, utcnow() - timedelta(days=6, hours=n), 1.0 + n / 100, 1.5, 2.0, 2) for n in range(5)])
    async with console_client(service) as client:
        await sign_in(client, service.tenants["alice"].token)
        day = (await client.get("/console/prices?gpu=H100&window=24h")).text
        week = (await client.get("/console/prices?gpu=H100&window=7d")).text
    api = (await service.alice.get("/prices/history", params={"gpu_type": "H100", "since": "7d"})).json()
    shown = table_values(week, "price-table")
    for series in api["series"]:
        assert shown[f"{series['vendor']} {series['contract_type']}"] == [p["min"] for p in series["points"]]
    assert "vast spot" in shown and 1.0 in shown["vast spot"]
    assert 1.0 not in table_values(day, "price-table").get("vast spot", [])  # the 24 h window leaves last week out
    assert 'id="price-chart"' in week and 'data-chart="price-chart"' in week and "uplot.iife.min.js" in week
    assert 'id="window-7d" href="/console/prices?gpu=H100&amp;window=7d" aria-current="page"' in week
    assert 'id="cheapest-now"' in week


async def test_bad_parameters_fall_back_with_a_message(service: Any) -> None:
    async with console_client(service) as client:
        await sign_in(client, service.tenants["alice"].token)
        page = (await client.get("/console/prices?gpu=Z9000&window=forever")).text
    assert "showing 24 hours" in page and "Prices: H100" in page


async def test_pages_need_a_session(service: Any) -> None:
    async with console_client(service) as client:
        for path in ("/console/prices", "/console/usage"):
            response = await client.get(path)
            assert response.status_code == 303 and response.headers["location"].startswith("/console/sign-in")


async def test_the_usage_page_charts_spend_per_day(service: Any) -> None:
    async with console_client(service) as client:
        await sign_in(client, service.tenants["alice"].token)
        page = (await client.get("/console/usage")).text
    spend = table_values(page, "spend-table")["spend"]
    assert len(spend) == 30 and set(spend) == {0.0}  # no resources yet: thirty days at $0
    assert 'id="spend-chart"' in page and "$0.00" in page


def test_spend_days_without_usage_are_zero() -> None:
    start = datetime(2027, 1, 1, tzinfo=UTC)
    table = spend_table([("2027-01-02", 3.456)], start, 3)
    assert [values for _, values in table.rows] == [[0.0], [3.46], [0.0]]
