"""The price history in the database (docs/prices.md): every catalog refresh adds one point per
market in the snapshot's own transaction (`add_points`, called by domain/catalog.py), and the
engine's `prices:downsample` job merges old points into hours and days (`downsample_round`).

Downsampling works window by window: one transaction inserts a whole hour's (or day's) merged
points and deletes the points it merged, so a crash or a second worker never merges a point twice
or loses one, and a round interrupted anywhere is simply continued by the next one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Select, Table, and_, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from gpusupply.core.prices import (
    DAY,
    HOUR,
    HOURLY_DAYS,
    RAW_DAYS,
    RAW_STEP,
    Market,
    PricePoint,
    bucket_start,
    downsample,
)
from gpusupply.db.models import PricePointRow
from gpusupply.db.session import Database

# (the resolution merged, the resolution it becomes, the age past which it is merged)
TIERS: tuple[tuple[int, int, timedelta], ...] = (
    (RAW_STEP, HOUR, timedelta(days=RAW_DAYS)),
    (HOUR, DAY, timedelta(days=HOURLY_DAYS)),
)
# Windows merged per round and tier: a round stays short; a backlog is worked off round by round.
WINDOWS_PER_ROUND = 48


@dataclass(frozen=True, slots=True)
class HistoryFilter:
    gpu_family: str | None = None
    gpu_type: str | None = None  # canonical
    gpu_count: int | None = None
    region: str | None = None
    contract_type: str | None = None
    vendor: str | None = None


def _row(point: PricePoint, step: int) -> dict[str, object]:
    m = point.market
    return {
        "vendor": m.vendor, "gpu_type": m.gpu_type[:100], "gpu_family": m.gpu_family[:50], "gpu_count": m.gpu_count,
        "region": m.region, "contract_type": m.contract_type, "step_seconds": step, "at": point.at,
        "min_price": point.min_price, "median_price": point.median_price, "max_price": point.max_price,
        "offers": point.offers, "samples": point.samples,
    }


def _point(row: PricePointRow) -> PricePoint:
    market = Market(row.vendor, row.gpu_type, row.gpu_family, row.gpu_count, row.region, row.contract_type)
    return PricePoint(market, row.at, row.min_price, row.median_price, row.max_price, row.offers, row.samples)


async def add_points(session: AsyncSession, points: Sequence[PricePoint], step: int = RAW_STEP) -> None:
    if points:
        await session.execute(cast(Table, PricePointRow.__table__).insert(), [_row(p, step) for p in points])  # Core: one executemany


def _filtered(query: Select[Any], f: HistoryFilter) -> Select[Any]:
    conditions = [
        column == value
        for column, value in (
            (PricePointRow.gpu_family, f.gpu_family), (PricePointRow.gpu_type, f.gpu_type),
            (PricePointRow.gpu_count, f.gpu_count), (PricePointRow.region, f.region),
            (PricePointRow.contract_type, f.contract_type), (PricePointRow.vendor, f.vendor),
        )
        if value is not None
    ]
    return query.where(and_(*conditions)) if conditions else query


async def read_points(db: Database, f: HistoryFilter, since: datetime, until: datetime) -> list[PricePoint]:
    """Points of every resolution in [since, until), oldest first."""
    query = _filtered(select(PricePointRow), f).where(PricePointRow.at >= since, PricePointRow.at < until)
    async with db.session() as session:
        rows = (await session.execute(query.order_by(PricePointRow.at, PricePointRow.id))).scalars().all()
    return [_point(row) for row in rows]


async def points_near(db: Database, f: HistoryFilter, at: datetime, within: timedelta) -> dict[Market, PricePoint]:
    """Per market, the newest point in (at - within, at]: what the market cost back then."""
    query = _filtered(select(PricePointRow), f).where(PricePointRow.at <= at, PricePointRow.at > at - within)
    async with db.session() as session:
        rows = (await session.execute(query.order_by(PricePointRow.at))).scalars().all()
    return {point.market: point for point in map(_point, rows)}


# ----- downsampling ---------------------------------------------------------------------------------
async def downsample_round(db: Database, now: datetime, *, windows: int = WINDOWS_PER_ROUND) -> int:
    """Merge points past each tier's age into the next resolution, at most `windows` windows per
    tier. Returns the number of points merged (0: nothing was due)."""
    merged = 0
    for source, target, age in TIERS:
        # Only whole windows that lie entirely past the age: every point of a window merges at once.
        cutoff = bucket_start(now - age, target)
        for _ in range(windows):
            count = await _merge_oldest_window(db, source, target, cutoff)
            if count == 0:
                break
            merged += count
    return merged


async def _merge_oldest_window(db: Database, source: int, target: int, cutoff: datetime) -> int:
    async with db.transaction() as session:
        oldest = (
            await session.execute(
                select(func.min(PricePointRow.at)).where(PricePointRow.step_seconds == source, PricePointRow.at < cutoff)
            )
        ).scalar_one_or_none()
        if oldest is None:
            return 0
        start = bucket_start(oldest, target)
        end = start + timedelta(seconds=target)
        in_window = (PricePointRow.step_seconds == source, PricePointRow.at >= start, PricePointRow.at < end)
        rows = (await session.execute(select(PricePointRow).where(*in_window))).scalars().all()
        await add_points(session, downsample(map(_point, rows), target), target)
        await session.execute(delete(PricePointRow).where(*in_window))
        return len(rows)


async def count_points(db: Database) -> dict[int, int]:
    """Points stored per resolution (step seconds), for the size figures and the tests."""
    async with db.session() as session:
        rows = (await session.execute(select(PricePointRow.step_seconds, func.count()).group_by(PricePointRow.step_seconds))).all()
    return {int(step): int(n) for step, n in rows}
