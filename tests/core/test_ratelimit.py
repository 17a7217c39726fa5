"""GCRA: the same arithmetic paces our clients (`reserve`) and limits the sandboxes (`try_acquire`)."""

from __future__ import annotations

import pytest

from gpusupply.core.ratelimit import Gcra


@pytest.mark.parametrize(
    ("rate", "burst", "calls_at", "waits"),
    [
        (1.0, 1.0, [0, 0, 0], [0, 1, 2]),
        (2.0, 1.0, [0, 0, 0], [0, 0.5, 1.0]),
        (1.0, 3.0, [0, 0, 0, 0], [0, 0, 0, 1]),
        (1.0, 1.0, [0, 5, 5], [0, 0, 1]),  # idle time does not bank credit beyond the burst
        (1.0, 2.0, [0, 10, 10, 10], [0, 0, 0, 1]),
    ],
)
def test_reserve(rate: float, burst: float, calls_at: list[float], waits: list[float]) -> None:
    limiter = Gcra(rate, burst)
    assert [pytest.approx(limiter.reserve(t)) for t in calls_at] == waits


@pytest.mark.parametrize(
    ("rate", "burst", "calls_at", "allowed"),
    [
        (1.0, 1.0, [0, 0.5, 1.0, 1.5], [True, False, True, False]),
        (1.0, 2.0, [0, 0, 0, 1.0], [True, True, False, True]),
        (10.0, 1.0, [0, 0.1, 0.15, 0.2], [True, True, False, True]),
    ],
)
def test_try_acquire(rate: float, burst: float, calls_at: list[float], allowed: list[bool]) -> None:
    limiter = Gcra(rate, burst)
    assert [limiter.try_acquire(t)[0] for t in calls_at] == allowed


def test_refusal_says_how_long_to_wait_and_books_nothing() -> None:
    limiter = Gcra(1.0, 1.0)
    assert limiter.try_acquire(0.0) == (True, 0.0)
    ok, wait = limiter.try_acquire(0.25)
    assert not ok and wait == pytest.approx(0.75)
    assert limiter.try_acquire(1.0) == (True, 0.0)  # the refusal did not push the slot back


def test_reserving_never_lets_two_requests_closer_than_the_interval() -> None:
    limiter = Gcra(4.0, 1.0)
    sends = []
    for t in [0, 0.01, 0.02, 0.03, 1.0, 1.0]:
        sends.append(t + limiter.reserve(t))
    gaps = [b - a for a, b in zip(sends, sends[1:], strict=False)]
    assert all(gap >= 0.25 - 1e-9 for gap in gaps)
    assert Gcra(4.0).interval == 0.25
