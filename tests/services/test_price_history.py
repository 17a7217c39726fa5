"""The price history in the database (domain/price_history.py), on both backends: points written,
read back, and downsampled window by window (7 days raw, 90 days hourly, daily after)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from gpusupply.core.prices import DAY, HOUR, RAW_STEP, Market, PricePoint
from gpusupply.db.session import Database
from gpusupply.domain.price_history import (
    HistoryFilter,
    add_points,
    count_points,
    downsample_round,
    points_near,
    read_points,
)

NOW = datetime(2027, 6, 1, 12, 0, tzinfo=UTC)
H100 = Market("vast", "nvidia-h100-sxm5-80gb", "H100", 1, "US", "ondemand")
A100 = Market("nebula", "nvidia-a100-sxm4-80gb", "A100", 8, "EU", "spot")


def refreshes(market: Market, start: datetime, hours: float, every_minutes: int = 5, price: float = 2.0) -> list[PricePoint]:
    count = int(hours * 60 / every_minutes)
    return [
        PricePoint(market, start + timedelta(minutes=every_minutes * n), price + n % 7 / 100, price + 0.1, price + 0.5, 3 + n % 2)
        for n in range(count)
    ]


async def store(db: Database, points: list[PricePoint], step: int = RAW_STEP) -> None:
    async with db.transaction() as session:
        await add_points(session, points, step)


async def test_points_are_read_back_filtered(database: Database) -> None:
    await store(database, refreshes(H100, NOW - timedelta(hours=2), 2) + refreshes(A100, NOW - timedelta(hours=2), 2))
    h100 = await read_points(database, HistoryFilter(gpu_family="H100"), NOW - timedelta(hours=3), NOW)
    assert len(h100) == 24 and {p.market for p in h100} == {H100}
    assert [p.at for p in h100] == sorted(p.at for p in h100)
    assert await read_points(database, HistoryFilter(gpu_family="A100", contract_type="ondemand"), NOW - timedelta(hours=3), NOW) == []
    spot = await read_points(database, HistoryFilter(vendor="nebula", gpu_count=8, region="EU"), NOW - timedelta(hours=1), NOW)
    assert len(spot) == 12
    near = await points_near(database, HistoryFilter(gpu_family="H100"), NOW - timedelta(hours=1), timedelta(hours=2))
    assert near[H100].at == NOW - timedelta(hours=1)


async def test_downsampling_merges_old_points_once(database: Database) -> None:
    # Ten days of 5-minute points for one market: the oldest three days become hours.
    start = NOW - timedelta(days=10)
    await store(database, refreshes(H100, start, 10 * 24))
    before = await read_points(database, HistoryFilter(), start, NOW)
    merged = await downsample_round(database, NOW, windows=1000)
    counts = await count_points(database)
    cutoff = NOW - timedelta(days=7)
    raw_left = [p for p in before if p.at >= cutoff]
    assert counts == {RAW_STEP: len(raw_left), HOUR: 72}
    assert merged == len(before) - len(raw_left)
    assert await downsample_round(database, NOW) == 0  # nothing else is due: a second worker changes nothing
    hours = [p for p in await read_points(database, HistoryFilter(), start, cutoff)]
    assert all(p.samples == 12 for p in hours)
    first_hour = [p for p in before if p.at < start + timedelta(hours=1)]
    assert hours[0].min_price == min(p.min_price for p in first_hour)
    assert hours[0].max_price == max(p.max_price for p in first_hour)


async def test_a_round_is_bounded_and_the_next_continues(database: Database) -> None:
    start = NOW - timedelta(days=8)
    await store(database, refreshes(H100, start, 24))
    assert await downsample_round(database, NOW, windows=5) == 5 * 12
    assert (await count_points(database))[HOUR] == 5
    await downsample_round(database, NOW, windows=1000)
    assert await count_points(database) == {HOUR: 24}


async def test_hours_older_than_ninety_days_become_days(database: Database) -> None:
    start = datetime(2027, 2, 1, tzinfo=UTC)  # 120 days before NOW
    hourly = [replace(p, samples=12) for p in refreshes(H100, start, 48, every_minutes=60)]
    await store(database, hourly, HOUR)
    await downsample_round(database, NOW)
    days = await read_points(database, HistoryFilter(), start, NOW)
    assert [(p.at, p.samples) for p in days] == [(start, 24 * 12), (start + timedelta(days=1), 24 * 12)]
    assert await count_points(database) == {DAY: 2}
