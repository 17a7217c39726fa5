"""The console's chart pages: Prices (a line chart per GPU family, one line per vendor and
contract type, a selectable window, and the cheapest per market now) and Usage (spend per day).

Every chart is drawn by console.js from the table under it (`table.chart-data`), so the chart
shows the table's numbers, the table is the chart without JavaScript, and both are the API's
numbers: the same services (`services.prices.history`, `services.usage.usage_report`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from gpusupply.api.deps import get_ctx
from gpusupply.core.gpus import families
from gpusupply.core.prices import step_name
from gpusupply.db.models import utcnow
from gpusupply.services import prices, usage
from gpusupply.services.prices import History
from gpusupply.web.plumbing import PREFIX, Visitor, page, signed_in

router = APIRouter(prefix=PREFIX, include_in_schema=False)

WINDOWS = {"24h": "24 hours", "7d": "7 days", "30d": "30 days", "90d": "90 days", "365d": "a year"}
DEFAULT_WINDOW = "24h"
DEFAULT_GPU = "H100"
SPEND_DAYS = 30


@dataclass(frozen=True, slots=True)
class ChartTable:
    """A chart's data as a table: one row per x (a time), one column per line."""

    columns: list[str]
    rows: list[tuple[datetime, list[float | None]]]
    since: datetime  # the x axis spans the whole window, however few points it has
    until: datetime


def history_table(history: History) -> ChartTable:
    """The cheapest price per bucket of every series (what `GET /prices/history` answers as `min`)."""
    columns = [f"{s.vendor or 'all'} {s.contract_type}" for s in history.series]
    by_time: dict[datetime, list[float | None]] = {}
    for n, series in enumerate(history.series):
        for point in series.points:
            by_time.setdefault(point.at, [None] * len(columns))[n] = point.min_price
    return ChartTable(columns, sorted(by_time.items()), history.since, history.until)


def spend_table(days: Sequence[tuple[str, float]], start: datetime, count: int) -> ChartTable:
    """Spend per UTC day, every day of the window (a day without spend is 0)."""
    spent = dict(days)
    rows: list[tuple[datetime, list[float | None]]] = []
    for n in range(count):
        day = start + timedelta(days=n)
        rows.append((day, [round(spent.get(day.date().isoformat(), 0.0), 2)]))
    return ChartTable(["spend"], rows, start, start + timedelta(days=count))


@router.get("/prices")
async def prices_page(request: Request, visitor: Visitor = Depends(signed_in)) -> Response:
    ctx = get_ctx(request)
    gpu = request.query_params.get("gpu", DEFAULT_GPU)
    window = request.query_params.get("window", DEFAULT_WINDOW)
    error = None
    if gpu not in families():
        error, gpu = f"Unknown GPU family {gpu!r}: showing {DEFAULT_GPU}.", DEFAULT_GPU
    if window not in WINDOWS:
        error, window = f"Unknown window {window!r}: showing {WINDOWS[DEFAULT_WINDOW]}.", DEFAULT_WINDOW
    query = prices.market_query(gpu)
    history = await prices.history(ctx.db, query, since=window, until=None, step=None)
    now_rows, partial = await prices.prices_now(ctx.db, ctx.catalog, query)
    cheapest: dict[tuple[str, str], prices.MarketPrice] = {}
    for row in sorted(now_rows, key=lambda r: r.cheapest.offer.gpu_price_per_hour):
        cheapest.setdefault((row.market.vendor, row.market.contract_type), row)
    return page(
        request, "prices.html", visitor, nav="prices", gpu=gpu, gpus=families(), window=window, windows=WINDOWS,
        table=history_table(history), step=step_name(history.step), cheapest=sorted(cheapest.values(), key=lambda r: r.cheapest.offer.gpu_price_per_hour),
        partial=partial, error=error,
    )


@router.get("/usage")
async def usage_page(request: Request, visitor: Visitor = Depends(signed_in)) -> Response:
    ctx = get_ctx(request)
    now = utcnow()
    start = datetime(now.year, now.month, now.day, tzinfo=now.tzinfo) - timedelta(days=SPEND_DAYS - 1)
    # The visitor's own tenant (an admin key's report would otherwise cover every tenant).
    own = visitor.principal.tenant_name if visitor.principal.is_admin else None
    report = await usage.usage_report(ctx.db, visitor.principal, start=start, end=now, group_by=("day",), tenant=own, now=now)
    days = [(row.group.get("day", ""), row.cost) for row in report.rows]
    return page(
        request, "usage.html", visitor, nav="usage", table=spend_table(days, start, SPEND_DAYS), total=report.total_cost,
        days=SPEND_DAYS,
    )
