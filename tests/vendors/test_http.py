"""vendors/http.py pacing: per-endpoint pacers, and one pacer shared by every route for vendors
that limit the whole key (fal). Pure arithmetic on the clock passed in: no sleeping. A shared slot's
caller that wakes too late books another (the clock and sleep injected)."""

from __future__ import annotations

from collections.abc import Sequence

import httpx
import pytest

from gpusupply.core.ratelimit import Bucket
from gpusupply.vendors.fal import LIMITS, FalAdapter
from gpusupply.vendors.http import MAX_LATE_REBOOKINGS, VendorHttp, before_unsafe_send, pacing


def waits(http: VendorHttp, endpoints: list[str], now: float = 100.0) -> list[float]:
    return [round(http.reserve(endpoint, now), 6) for endpoint in endpoints]


async def test_endpoint_pacers_are_independent_without_a_shared_rate() -> None:
    http = VendorHttp("v", "http://127.0.0.1:9", auth_headers={}, rates={"a": (2.0, 1.0), "b": (2.0, 1.0)})
    assert waits(http, ["a", "a", "b", "a"]) == [0.0, 0.5, 0.0, 1.0]
    await http.aclose()


async def test_a_shared_rate_paces_every_route_together() -> None:
    http = VendorHttp("v", "http://127.0.0.1:9", auth_headers={}, shared_rate=(4.0, 2.0))
    # Burst of two, then one slot every 0.25 s whichever route asks.
    assert waits(http, ["create", "get", "list", "create", "get"]) == [0.0, 0.0, 0.25, 0.5, 0.75]
    await http.aclose()


async def test_a_route_cap_under_the_shared_rate_books_the_shared_slot_at_its_own_slot() -> None:
    http = VendorHttp("v", "http://127.0.0.1:9", auth_headers={}, rates={"create": (1.0, 1.0)}, shared_rate=(10.0, 1.0))
    assert waits(http, ["create", "create"]) == [0.0, 1.0]
    # The second create holds the shared slot at +1 s, where it is sent: calls leave in booking
    # order, so delayed calls never bunch up into a burst the vendor would refuse.
    assert waits(http, ["get"]) == [1.1]
    await http.aclose()


@pytest.mark.parametrize("rate_scale", [1.0, 20.0])
async def test_fal_creates_may_use_the_whole_key_rate(rate_scale: float) -> None:
    adapter = FalAdapter("http://127.0.0.1:9", "key", rate_scale=rate_scale)
    assert LIMITS.key is not None
    rate, burst = pacing(LIMITS.key)
    created = waits(adapter._http, ["create"] * (int(burst) + 3))
    assert created[: int(burst)] == [0.0] * int(burst)
    assert created[int(burst):] == pytest.approx([n / (rate * rate_scale) for n in (1, 2, 3)], abs=1e-5)
    await adapter.aclose()


class StallingClock:
    """The pacer's time: `sleep(s)` moves it by s, plus the stall scheduled for that sleep (an event
    loop that woke the sleeper late)."""

    def __init__(self, stalls: list[float]):
        self.now = 1000.0
        self.stalls = stalls
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds + (self.stalls.pop(0) if self.stalls else 0.0)


class FixedWaitBuckets:
    """Shared buckets whose every booking waits `wait` seconds; counts the bookings."""

    def __init__(self, wait: float):
        self.wait = wait
        self.bookings: list[list[str]] = []

    async def reserve(self, vendor: str, key_id: str, buckets: Sequence[Bucket]) -> float:
        self.bookings.append([bucket.route for bucket in buckets])
        return self.wait


def _shared_http(clock: StallingClock, shared: FixedWaitBuckets) -> VendorHttp:
    http = VendorHttp("v", "http://127.0.0.1:9", auth_headers={}, rates={"create": (1.0, 1.0)},
                      clock=clock, sleep=clock.sleep)
    http.share_buckets(shared)
    return http


async def test_a_shared_slot_woken_late_is_given_up_and_booked_again() -> None:
    # The first sleep overshoots its slot by 0.8 s (more than half the 1 s interval): sent then, the
    # call would reach the vendor with the next slot's holder in another process.
    clock, shared = StallingClock(stalls=[0.8, 0.1]), FixedWaitBuckets(wait=2.0)
    http = _shared_http(clock, shared)
    await http._pace("create")
    assert shared.bookings == [["create"], ["create"]]
    assert clock.slept == [2.0, 2.0]
    await http.aclose()


async def test_a_shared_slot_used_within_half_an_interval_is_kept() -> None:
    clock, shared = StallingClock(stalls=[0.4]), FixedWaitBuckets(wait=2.0)
    http = _shared_http(clock, shared)
    await http._pace("create")
    assert shared.bookings == [["create"]]
    await http.aclose()


async def test_a_caller_late_every_time_sends_after_its_last_booking() -> None:
    # A process that cannot keep time still calls the vendor, on its last slot, instead of never.
    clock, shared = StallingClock(stalls=[5.0] * 10), FixedWaitBuckets(wait=1.0)
    http = _shared_http(clock, shared)
    await http._pace("create")
    assert len(shared.bookings) == MAX_LATE_REBOOKINGS + 1
    await http.aclose()


def _recording_http(clock: StallingClock, sent: list[str]) -> VendorHttp:
    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(f"{request.method} {request.url.path}")
        return httpx.Response(200, json={})

    return VendorHttp("v", "http://vendor.test", auth_headers={}, rates={"create": (1.0, 1.0), "list": (100.0, 10.0)},
                      clock=clock, sleep=clock.sleep, transport=httpx.MockTransport(answer))


async def test_a_create_runs_the_callers_guard_after_its_pacing_wait_and_before_it_leaves() -> None:
    clock, sent = StallingClock(stalls=[]), []
    http = _recording_http(clock, sent)
    guarded: list[tuple[float, int]] = []  # (the pacer's time, calls sent so far) at each guard

    async def guard() -> None:
        guarded.append((clock.now, len(sent)))

    with before_unsafe_send(guard):
        await http.request("POST", "/create", endpoint="create", safe=False, creates=True)
        await http.request("POST", "/create", endpoint="create", safe=False, creates=True)  # waits 1 s for its slot
        await http.request("POST", "/keys", endpoint="list", safe=False)  # unsafe, but makes no instance: no guard
        await http.request("GET", "/list", endpoint="list", safe=True)  # a read: no guard
    await http.request("POST", "/create", endpoint="create", safe=False, creates=True)  # outside the block: no guard
    assert sent == ["POST /create", "POST /create", "POST /keys", "GET /list", "POST /create"]
    assert clock.slept == [1.0, 1.0]
    assert guarded == [(1000.0, 0), (1001.0, 1)]  # the second ran after its wait, before it was sent
    await http.aclose()


async def test_a_guard_that_raises_keeps_the_call_unsent() -> None:
    clock, sent = StallingClock(stalls=[]), []
    http = _recording_http(clock, sent)

    async def withdrawn() -> None:
        raise LookupError("the row no longer wants it")

    with before_unsafe_send(withdrawn), pytest.raises(LookupError):
        await http.request("POST", "/create", endpoint="create", safe=False, creates=True)
    assert sent == []
    await http.aclose()


async def test_a_guard_that_outlasts_half_the_slot_books_another_and_runs_again_before_the_send() -> None:
    # The guard is a database write: when it takes longer than half the 1 s interval, the call would
    # leave late, next to the next slot's holder in another process. It books again instead, and
    # the guard runs again after that wait (the row may have changed meanwhile); one call leaves.
    clock, sent = StallingClock(stalls=[]), []
    http = _recording_http(clock, sent)
    shared = FixedWaitBuckets(wait=2.0)
    http.share_buckets(shared)
    guard_times = [0.7, 0.1]  # seconds each run of the guard takes
    guarded: list[float] = []

    async def slow_guard() -> None:
        guarded.append(clock.now)
        clock.now += guard_times.pop(0)

    with before_unsafe_send(slow_guard):
        await http.request("POST", "/create", endpoint="create", safe=False, creates=True)
    assert shared.bookings == [["create"], ["create"]]
    assert guarded == [1002.0, 1004.7]  # after each wait: 2 s, then 0.7 s of guard and 2 s more
    assert sent == ["POST /create"]
    await http.aclose()
