"""Price history arithmetic (core/prices.py) and the alert rule (domain/price_alerts.decide)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from gpusupply.core.errors import UnprocessableError
from gpusupply.core.offers import Offer
from gpusupply.core.prices import (
    DAY,
    HOUR,
    MAX_POINTS_PER_SERIES,
    Market,
    PricePoint,
    auto_step,
    bucket_start,
    combine_refreshes,
    downsample,
    parse_duration,
    parse_instant,
    points_from_offers,
)
from gpusupply.domain.price_alerts import ABOVE, BELOW, NEW, PRICE_ABOVE, PRICE_BELOW, Decision, decide
from gpusupply.services.prices import history_window

T = datetime(2027, 1, 15, 12, 0, tzinfo=UTC)
H100 = Market("vast", "nvidia-h100-sxm5-80gb", "H100", 1, "US", "ondemand")


def offer(price: float, *, vendor: str = "vast", count: int = 1, region: str = "US", contract: str = "ondemand", available: bool = True) -> Offer:
    return Offer(
        vendor=vendor, vendor_offer_id=f"{vendor}-{price}-{count}-{region}-{contract}", gpu_type="nvidia-h100-sxm5-80gb",
        gpu_family="H100", gpu_count=count, gpu_memory_gb=80, gpu_price_per_hour=price, total_price_per_hour=price * count,
        contract_type=contract, vendor_region="x", region=region, fetched_at=T, available=available,  # type: ignore[arg-type]
    )


def test_a_refresh_gives_one_point_per_market() -> None:
    offers = [offer(2.0), offer(3.0), offer(2.5), offer(1.0, count=8), offer(0.9, contract="spot"), offer(0.5, available=False)]
    points = {p.market: p for p in points_from_offers(offers, T)}
    assert len(points) == 3
    one = points[H100]
    assert (one.min_price, one.median_price, one.max_price, one.offers, one.at) == (2.0, 2.5, 3.0, 3, T)
    assert points[replace(H100, gpu_count=8)].offers == 1
    assert points[replace(H100, contract_type="spot")].min_price == 0.9  # the unavailable 0.5 is not on the market


def test_downsampling_keeps_the_extremes_and_means_the_offers() -> None:
    raw = [
        PricePoint(H100, T + timedelta(minutes=3 * n), 2.0 + n / 10, 2.5 + n / 10, 3.0 + n / 10, 4 + n % 2) for n in range(40)
    ]  # 2 hours of 3-minute refreshes
    hourly = downsample(raw, HOUR)
    assert [p.at for p in hourly] == [T, T + timedelta(hours=1)]
    first = hourly[0]
    assert (first.min_price, first.max_price, first.samples) == (2.0, 3.0 + 1.9, 20)
    assert first.offers == 4.5
    daily = downsample(hourly, DAY)
    assert len(daily) == 1 and daily[0].samples == 40 and daily[0].min_price == 2.0 and daily[0].offers == 4.5


def test_refreshes_of_several_markets_add_their_offers() -> None:
    a = PricePoint(H100, T, 2.0, 2.2, 2.4, 3)
    b = PricePoint(replace(H100, region="EU"), T, 1.8, 2.0, 3.0, 2)
    c = PricePoint(H100, T + timedelta(minutes=3), 2.1, 2.1, 2.1, 1)
    combined = combine_refreshes([a, b, c], H100)
    assert [(p.at, p.min_price, p.max_price, p.offers) for p in combined] == [(T, 1.8, 3.0, 5), (T + timedelta(minutes=3), 2.1, 2.1, 1)]


def test_buckets_align_on_the_epoch() -> None:
    assert bucket_start(T + timedelta(minutes=59, seconds=59), HOUR) == T
    assert bucket_start(T + timedelta(hours=3), DAY) == datetime(2027, 1, 15, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("15m", 900), ("1h", 3600), ("7d", 7 * DAY), ("2w", 14 * DAY), ("0m", None), ("1y", None), ("h", None)]
)
def test_durations(text: str, seconds: int | None) -> None:
    assert parse_duration(text) == seconds


def test_instants_are_iso_times_or_durations_back() -> None:
    assert parse_instant("7d", T) == T - timedelta(days=7)
    assert parse_instant("2027-01-01T00:00:00Z", T) == datetime(2027, 1, 1, tzinfo=UTC)
    assert parse_instant("2027-01-01T00:00:00", T) == datetime(2027, 1, 1, tzinfo=UTC)  # no zone: UTC
    assert parse_instant("last tuesday", T) is None
    assert parse_instant("999999w", T) is None  # before year 1: not a time


def test_the_auto_step_keeps_a_series_short() -> None:
    assert auto_step(24 * HOUR) == 300
    assert auto_step(7 * DAY) == HOUR
    assert auto_step(365 * DAY) == DAY


def test_a_year_of_five_minute_points_is_refused_with_a_step_that_fits() -> None:
    with pytest.raises(UnprocessableError) as refused:
        history_window("365d", None, "5m", T)
    assert "105120 points per series" in refused.value.detail and "step=6h fits" in refused.value.detail
    since, until, step = history_window("365d", None, "1d", T)
    assert (until - since, step) == (timedelta(days=365), DAY)
    assert history_window(None, None, None, T) == (T - timedelta(hours=24), T, 300)
    assert MAX_POINTS_PER_SERIES == 2000


@pytest.mark.parametrize(
    ("since", "until", "step", "field"),
    [("tomorrow", None, None, "since"), (None, "soon", None, "until"), (None, "0001-01-01T00:00:00Z", None, "since"), ("1h", "2h", None, "since"), (None, None, "30s", "step"), (None, None, "fast", "step")],
)
def test_bad_windows_name_the_parameter(since: str | None, until: str | None, step: str | None, field: str) -> None:
    with pytest.raises(UnprocessableError) as refused:
        history_window(since, until, step, T)
    assert refused.value.errors[0]["loc"] == ["query", field]


@pytest.mark.parametrize(
    ("state", "price", "expected"),
    [
        (NEW, 1.9, Decision(BELOW, PRICE_BELOW)),  # already below at its first evaluation: fires
        (NEW, 2.0, Decision(BELOW, PRICE_BELOW)),  # at the threshold counts
        (NEW, 2.1, Decision(ABOVE, None)),
        (NEW, None, Decision(ABOVE, None)),
        (ABOVE, 1.5, Decision(BELOW, PRICE_BELOW)),
        (ABOVE, 2.3, Decision(ABOVE, None)),
        (BELOW, 1.5, Decision(BELOW, None)),  # still below: once per crossing
        (BELOW, 2.05, Decision(BELOW, None)),  # over the line but inside the hysteresis (3 %: 2.06)
        (BELOW, 2.07, Decision(ABOVE, PRICE_ABOVE)),
        (BELOW, None, Decision(ABOVE, PRICE_ABOVE)),  # nothing matches any more
    ],
)
def test_the_alert_rule(state: str, price: float | None, expected: Decision) -> None:
    assert decide(state, price, 2.0, 0.03) == expected


def test_a_price_dancing_around_the_line_fires_once_each_way() -> None:
    state, fired = NEW, []
    for price in [2.1, 1.99, 2.01, 1.98, 2.04, 1.97, 2.02, 2.2, 2.05, 1.9]:
        decision = decide(state, price, 2.0, 0.03)
        state = decision.state
        fired += [decision.fire] if decision.fire else []
    assert fired == [PRICE_BELOW, PRICE_ABOVE, PRICE_BELOW]
