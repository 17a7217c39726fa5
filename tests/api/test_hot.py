"""The polled routes answered ahead of FastAPI's routing (api/hot.py): the same answers, byte for
byte, as FastAPI gives the same requests, errors included; and every request the hot path does
not read unambiguously left to FastAPI."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, Depends

from gpusupply.api.deps import get_principal
from gpusupply.api.hot import HotRoutes, _declared, _hot, paging
from gpusupply.services import resources as resource_service
from tests.api.helpers import YAML, procure, procured_resource, search
from tests.conftest import Service

DOCUMENT = "compute:\n  gpu_type: H100\n"
UPPER_ID = "0123ABCD-0000-4000-8000-00000000000A"


def hot_of(service: Service) -> HotRoutes:
    hot = service.app.router.middleware_stack
    assert isinstance(hot, HotRoutes)
    return hot


async def both_ways(service: Service, client: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> tuple[httpx.Response, bool]:
    """The answer with the hot routes, whether they answered it, and a check that FastAPI alone
    answers the same request with the same status, headers and bytes."""
    hot = hot_of(service)
    before = hot.answered
    answer = await client.request(method, url, **kwargs)
    answered_hot = hot.answered > before
    service.app.router.middleware_stack = hot.app  # FastAPI's routing alone
    try:
        alone = await client.request(method, url, **kwargs)
    finally:
        service.app.router.middleware_stack = hot
    assert (answer.status_code, answer.content) == (alone.status_code, alone.content), (method, url)
    kept = {name: value for name, value in answer.headers.items() if name != "x-request-id"}
    assert kept == {name: value for name, value in alone.headers.items() if name != "x-request-id"}
    return answer, answered_hot


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Costs so far and the 30 s refresh rule read the clock: both ways see the same moment."""
    moment = datetime.now(UTC)
    monkeypatch.setattr(resource_service, "utcnow", lambda: moment)


async def test_each_hot_route_answers_as_fastapi_does(service: Service) -> None:
    offer = (await search(service.alice, "vendor: nebula\ncompute:\n  gpu_type: H100\n", limit=1))["offers"][0]
    procured = await procure(service.alice, offer["offer_id"])
    resource_id = procured.json()["resource_ids"][0]
    requests = [
        ("POST", "/get_offers", {"content": DOCUMENT, "headers": YAML}),
        ("POST", "/get_offers?limit=5&offset=2", {"content": DOCUMENT, "headers": YAML}),
        ("POST", "/get_offers", {"json": {"compute": {"gpu_type": "A100"}}}),
        ("GET", "/resources", {}),
        ("GET", "/resources?limit=1&offset=0", {}),
        ("GET", f"/resources/{resource_id}", {}),
        ("GET", f"/offers/{offer['offer_id']}/status", {}),
    ]
    for method, url, kwargs in requests:
        answer, answered_hot = await both_ways(service, service.alice, method, url, **kwargs)
        assert answer.status_code == 200, (url, answer.text)
        assert answered_hot, url


async def test_errors_raised_on_the_hot_path_are_answered_by_the_same_handlers(service: Service) -> None:
    resource_id = await procured_resource(service.alice)
    unknown = "00000000-0000-4000-8000-000000000000"
    stranger = service.client("gsk_not_a_key")
    cases = [
        (service.anonymous, "GET", "/resources", {}, 401),
        (service.anonymous, "POST", "/get_offers", {"content": DOCUMENT, "headers": YAML}, 401),
        (stranger, "GET", f"/resources/{resource_id}", {}, 401),
        (service.bob, "GET", f"/resources/{resource_id}", {}, 404),  # not bob's
        (service.alice, "GET", f"/resources/{unknown}", {}, 404),
        (service.alice, "GET", f"/offers/{unknown}/status", {}, 404),
        (service.alice, "POST", "/get_offers", {"content": "compute: [", "headers": YAML}, 422),
        (service.alice, "POST", "/get_offers", {"content": "<a/>", "headers": {"Content-Type": "application/xml"}}, 415),
        (service.alice, "POST", "/get_offers", {"content": "compute:\n  gpu_count: -1\n", "headers": YAML}, 422),
    ]
    for client, method, url, kwargs, status in cases:
        answer, answered_hot = await both_ways(service, client, method, url, **kwargs)
        assert answer.status_code == status, (url, answer.text)
        assert answered_hot, url
    await stranger.aclose()
    assert "WWW-Authenticate" in (await service.anonymous.get("/resources")).headers


async def test_requests_the_hot_path_does_not_read_unambiguously_go_to_fastapi(service: Service) -> None:
    resource_id = await procured_resource(service.alice)
    fastapi_cases = [
        ("GET", "/resources?limit=0", 422),
        ("GET", "/resources?limit=1001", 422),
        ("GET", "/resources?limit=abc", 422),
        ("GET", "/resources?limit=+5", 200),
        ("GET", "/resources?limit=", 422),
        ("GET", "/resources?limit=1&limit=2", 200),
        ("GET", "/resources?status=running", 200),
        ("GET", "/resources?unknown=1", 200),
        ("GET", "/resources/", 307),  # FastAPI redirects to the path without the slash
        ("HEAD", "/resources", 405),
        ("GET", f"/resources/{resource_id}?force_refresh=false", 200),
        ("GET", f"/resources/{resource_id.upper()}", 200),
        ("GET", f"/resources/{UPPER_ID}", 404),
        ("GET", "/resources/not-an-id", 422),
        ("GET", f"/offers/{UPPER_ID}/status", 404),
        ("POST", "/get_offers?limit=100000", 422),
        ("POST", "/get_offers?offset=-1", 422),
        ("DELETE", "/get_offers", 405),
    ]
    for method, url, status in fastapi_cases:
        kwargs: dict[str, Any] = {"content": DOCUMENT, "headers": YAML} if method == "POST" else {}
        answer, answered_hot = await both_ways(service, service.alice, method, url, **kwargs)
        assert answer.status_code == status, (method, url, answer.text)
        assert not answered_hot, (method, url)


async def test_the_hot_path_labels_its_requests_with_the_route_template(service: Service) -> None:
    resource_id = await procured_resource(service.alice)
    await service.alice.get(f"/resources/{resource_id}")
    metrics = (await service.anonymous.get("/metrics")).text
    assert 'route="/resources/{resource_id}"' in metrics
    assert f'route="/resources/{resource_id}"' not in metrics


def test_paging_reads_only_plain_digits_within_the_declared_bounds() -> None:
    declared = {"limit": (1, 100, 100), "offset": (0, 10, 0)}
    assert paging(b"", declared) == {"limit": 100, "offset": 0}
    assert paging(b"limit=7", declared) == {"limit": 7, "offset": 0}
    assert paging(b"offset=10&limit=1", declared) == {"limit": 1, "offset": 10}
    assert paging(b"limit=%37", declared) == {"limit": 7, "offset": 0}  # decoded as Starlette decodes it
    for fallback in (b"limit=0", b"limit=101", b"offset=11", b"limit=-1", b"limit=+1", b"limit= 1", b"limit=",
                     b"limit=1&limit=1", b"other=1", b"limit=1e2", b"limit=1234567890123", b"limit=\xd9\xa1"):
        assert paging(fallback, declared) is None, fallback


def test_a_hot_route_that_reads_more_than_the_hot_path_knows_fails_at_startup() -> None:
    """A dependency added to a hot route (a rate limit, say) or a new parameter would be skipped on
    the hot path: the app refuses to start instead."""

    async def rate_limit() -> None: ...

    def declared(**extra: Any) -> APIRouter:
        router = APIRouter()

        @router.get("/x", dependencies=[Depends(get_principal), *extra.get("dependencies", [])])
        async def x(limit: int = 1, sort: str | None = None) -> None: ...

        return router

    assert _declared(declared(), "GET", "/x", {"limit", "sort"}).path == "/x"
    with pytest.raises(RuntimeError, match="depends on"):
        _declared(declared(dependencies=[Depends(rate_limit)]), "GET", "/x", {"limit", "sort"})
    with pytest.raises(RuntimeError, match="reads"):
        _declared(declared(), "GET", "/x", {"limit"})
    with pytest.raises(RuntimeError, match="declared 0 times"):
        _declared(declared(), "POST", "/x", {"limit", "sort"})
    with pytest.raises(RuntimeError, match="not an int with bounds"):  # paging bounds are read from the declaration
        _hot(_declared(declared(), "GET", "/x", {"limit", "sort"}), HotRoutes(None)._status.answer)  # type: ignore[arg-type]
