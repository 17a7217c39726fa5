"""Moving sandbox prices (sandbox/market.py): a seeded, bounded random walk with a daily cycle, and
offers that come and go, the same for the same seed and clock; off by default."""

from __future__ import annotations

from typing import Any

import pytest

from gpusupply.sandbox.market import (
    CHURN_SHARE,
    CHURN_WINDOW_SECONDS,
    DAY_SECONDS,
    MAX_SWING,
    STEP_SECONDS,
    MarketWalk,
)

T0 = 1_800_000_000.0  # a fixed instant (2027-01-15): tests read the walk at given times only


def test_the_walk_is_bounded_and_moves() -> None:
    walk = MarketWalk(seed=7, vendor="vast")
    factors = [walk.factor("H100 SXM", T0 + n * STEP_SECONDS) for n in range(3 * 1440)]  # three days, minute by minute
    assert all(1 - MAX_SWING <= f <= 1 + MAX_SWING for f in factors)
    assert max(factors) - min(factors) > 0.1  # it really moves: more than 10 % of the base over three days
    assert len({round(f, 6) for f in factors}) > 1000


def test_the_same_seed_and_time_give_the_same_price_in_any_order() -> None:
    forward, jumping = MarketWalk(7, "vast"), MarketWalk(7, "vast")
    times = [T0 + n * STEP_SECONDS for n in range(200)]
    stepped = [forward.factor("H100 SXM", t) for t in times]  # step by step (the incremental update)
    jumped = [jumping.factor("H100 SXM", t) for t in reversed(times)]  # backwards (recomputed in full)
    assert stepped == pytest.approx(list(reversed(jumped)), abs=1e-12)
    assert MarketWalk(8, "vast").factor("H100 SXM", T0) != stepped[0]
    assert MarketWalk(7, "nebula").factor("H100 SXM", T0) != stepped[0]


def test_a_daily_cycle_repeats_over_the_day() -> None:
    walk = MarketWalk(7, "runpod")
    # The walk forgets within hours; what is left on average over many days is the daily cycle.
    by_hour = [sum(walk.factor("h100", T0 + day * DAY_SECONDS + hour * 3600) for day in range(30)) / 30 for hour in range(24)]
    assert max(by_hour) - min(by_hour) > 0.05


def test_offers_come_and_go_per_window() -> None:
    walk = MarketWalk(7, "lambda")
    windows = [[walk.listed(f"offer-{n}", T0 + w * CHURN_WINDOW_SECONDS) for n in range(400)] for w in range(6)]
    shares = [1 - sum(listed) / len(listed) for listed in windows]
    assert all(CHURN_SHARE / 3 < share < CHURN_SHARE * 2 for share in shares), shares  # about CHURN_SHARE withdrawn
    assert windows[0] != windows[1]  # a different set each window
    start = (T0 // CHURN_WINDOW_SECONDS) * CHURN_WINDOW_SECONDS
    for n in range(50):  # constant within a window
        assert walk.listed(f"offer-{n}", start) == walk.listed(f"offer-{n}", start + CHURN_WINDOW_SECONDS - 1)


def _h100_prices(offers: list[Any]) -> dict[str, float]:
    return {o.vendor_offer_id: o.gpu_price_per_hour for o in offers if o.gpu_family == "H100"}


MOVING = ["vast", "nebula", "lambda", "runpod"]


@pytest.mark.parametrize("settings_overrides", [{"sandbox_prices_move": True}])
@pytest.mark.parametrize("vendor", MOVING)
async def test_a_vendor_api_shows_moving_prices(vendor_set: Any, vendor: str) -> None:
    """Read through the real adapter over HTTP, H100 prices at one time, an hour later, and at the
    first time again: they moved, and came back exactly."""
    sandbox, adapter = vendor_set.sandboxes[vendor], vendor_set.adapters[vendor]
    sandbox.config.rate_limits = False
    sandbox.clock.pin(T0)
    first = _h100_prices(await adapter.list_offers())
    sandbox.clock.pin(T0 + 3 * 3600)
    later = _h100_prices(await adapter.list_offers())
    sandbox.clock.pin(T0)
    again = _h100_prices(await adapter.list_offers())
    assert first and later
    assert first == again
    common = set(first) & set(later)
    assert common and any(first[k] != later[k] for k in common)


@pytest.mark.parametrize("vendor", MOVING)
async def test_prices_stay_fixed_unless_turned_on(vendor_set: Any, vendor: str) -> None:
    sandbox, adapter = vendor_set.sandboxes[vendor], vendor_set.adapters[vendor]
    sandbox.config.rate_limits = False
    assert sandbox.market is None
    sandbox.clock.pin(T0)
    first = _h100_prices(await adapter.list_offers())
    sandbox.clock.pin(T0 + 3 * 3600)
    assert _h100_prices(await adapter.list_offers()) == first
