"""vendors/http.py pacing: per-endpoint pacers, and one pacer shared by every route for vendors
that limit the whole key (fal). Pure arithmetic on the clock passed in: no sleeping."""

from __future__ import annotations

import pytest

from gpusupply.vendors.fal import LIMITS, FalAdapter
from gpusupply.vendors.http import VendorHttp, pacing


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
