"""Price history arithmetic (pure): markets, the point a catalog refresh adds per market, merging
points into coarser buckets, steps and windows. The database side is domain/price_history.py.

A market is (vendor, canonical GPU, GPUs per offer, region group, contract type). A point is what
one refresh saw in one market: the cheapest, median and highest price per GPU-hour and how many
offers there were. Merged points (downsampling, and the buckets of `GET /prices/history`) keep the
lowest low and the highest high; their median is the median of the merged medians and their offer
count the mean over the refreshes merged (a count of offers on the market, not of sightings).
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from gpusupply.core.offers import Offer

# Resolutions the history keeps (docs/prices.md): full resolution (one point per refresh) for
# RAW_DAYS, then hourly points for HOURLY_DAYS, then daily points.
RAW_STEP = 0
HOUR = 3600
DAY = 86_400
RAW_DAYS = 7
HOURLY_DAYS = 90

# The most points one series of `GET /prices/history` may hold (a year of 5-minute points is 105,120).
MAX_POINTS_PER_SERIES = 2000
# Steps the history answers in, and the one picked when none is asked for (the finest that keeps a
# series under AUTO_POINTS).
STEPS: dict[str, int] = {"5m": 300, "15m": 900, "1h": HOUR, "6h": 6 * HOUR, "1d": DAY, "7d": 7 * DAY}
AUTO_POINTS = 500
_DURATION = re.compile(r"^(\d{1,6})([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": HOUR, "d": DAY, "w": 7 * DAY}


@dataclass(frozen=True, slots=True)
class Market:
    vendor: str
    gpu_type: str  # canonical
    gpu_family: str
    gpu_count: int
    region: str
    contract_type: str


@dataclass(frozen=True, slots=True)
class PricePoint:
    market: Market
    at: datetime
    min_price: float
    median_price: float
    max_price: float
    offers: float  # offers on the market (a mean once points are merged)
    samples: int = 1  # refreshes merged into it


def market_of(offer: Offer) -> Market:
    return Market(offer.vendor, offer.gpu_type, offer.gpu_family, offer.gpu_count, offer.region, offer.contract_type)


def points_from_offers(offers: Iterable[Offer], at: datetime) -> list[PricePoint]:
    """One point per market seen in one refresh (offers not available are not on the market)."""
    prices: dict[Market, list[float]] = {}
    for offer in offers:
        if offer.available:
            prices.setdefault(market_of(offer), []).append(offer.gpu_price_per_hour)
    return [
        PricePoint(market, at, min(values), statistics.median(values), max(values), len(values))
        for market, values in sorted(prices.items(), key=lambda item: _market_sort_key(item[0]))
    ]


def _market_sort_key(market: Market) -> tuple[str, str, int, str, str]:
    return market.vendor, market.gpu_type, market.gpu_count, market.region, market.contract_type


def merge(points: Sequence[PricePoint], market: Market, at: datetime) -> PricePoint:
    """Points of one market (or of several, for a series across them) as one point at `at`."""
    samples = sum(p.samples for p in points)
    return PricePoint(
        market,
        at,
        min(p.min_price for p in points),
        statistics.median(p.median_price for p in points),
        max(p.max_price for p in points),
        round(sum(p.offers * p.samples for p in points) / samples, 2),
        samples,
    )


def bucket_start(at: datetime, step: int) -> datetime:
    """The start of the `step`-second bucket holding `at` (buckets aligned on the Unix epoch, UTC)."""
    seconds = at.timestamp()
    return datetime.fromtimestamp(seconds - seconds % step, UTC)


def downsample(points: Iterable[PricePoint], step: int) -> list[PricePoint]:
    """Points merged per market and `step`-second bucket."""
    buckets: dict[tuple[Market, datetime], list[PricePoint]] = {}
    for point in points:
        buckets.setdefault((point.market, bucket_start(point.at, step)), []).append(point)
    return [merge(group, market, at) for (market, at), group in sorted(buckets.items(), key=lambda kv: (_market_sort_key(kv[0][0]), kv[0][1]))]


def combine_refreshes(points: Iterable[PricePoint], market: Market) -> list[PricePoint]:
    """Points of several markets that share a refresh time as one point per refresh: the offers add
    up (they are all on the market at once); low, median and high as in `merge`."""
    by_time: dict[datetime, list[PricePoint]] = {}
    for point in points:
        by_time.setdefault(point.at, []).append(point)
    combined = []
    for at, group in sorted(by_time.items()):
        merged = merge(group, market, at)
        samples = max(p.samples for p in group)
        offers = round(sum(p.offers for p in group), 2)
        combined.append(PricePoint(market, at, merged.min_price, merged.median_price, merged.max_price, offers, samples))
    return combined


# ----- windows and steps ---------------------------------------------------------------------------
def parse_duration(text: str) -> int | None:
    """'90s', '15m', '1h', '7d', '2w' -> seconds; None when it is not one of those."""
    match = _DURATION.match(text.strip().lower())
    if match is None:
        return None
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    return seconds if seconds > 0 else None


def parse_instant(text: str, now: datetime) -> datetime | None:
    """An ISO 8601 time (UTC when it names no zone), or a duration back from now ('7d'); None if neither."""
    back = parse_duration(text)
    try:
        if back is not None:
            return now - timedelta(seconds=back)
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except (ValueError, OverflowError):  # not a time, or before year 1
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def auto_step(window_seconds: float) -> int:
    """The finest step that keeps a window under AUTO_POINTS points."""
    for step in sorted(STEPS.values()):
        if window_seconds / step <= AUTO_POINTS:
            return step
    return max(STEPS.values())


def points_in_window(window_seconds: float, step: int) -> int:
    return math.ceil(window_seconds / step)


def step_name(step: int) -> str:
    return next((name for name, seconds in STEPS.items() if seconds == step), f"{step}s")
