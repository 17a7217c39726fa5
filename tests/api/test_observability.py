"""/metrics, request ids and request logs, through the whole app with the sandbox vendors."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from gpusupply import metrics
from gpusupply.api.observability import UNMATCHED_ROUTE, accepted_request_id, method_label, route_label
from gpusupply.logging import build_handler
from tests.api.helpers import first_offer, procure, procured_resource, wait_for

FAST_ENGINE = {"engine_poll_seconds": 0.1, "provisioning_poll_seconds": 0.2, "refresh_interval_seconds": 1.0}
UNKNOWN = "00000000-0000-4000-8000-000000000000"


async def scrape(service: Any) -> str:
    response = await service.anonymous.get("/metrics")  # no key needed
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def value(text: str, name: str, **labels: str) -> float:
    """The sample `name{labels}` in an exposition (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def total(text: str, name: str, **labels: str) -> float:
    """The sum of every `name` sample whose labels include `labels`."""
    return sum(
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def labels_of(text: str, name: str) -> list[dict[str, str]]:
    return [s.labels for f in text_string_to_metric_families(text) for s in f.samples if s.name == name]


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """Everything logged during the test, as our JSON lines (with request ids and redaction)."""
    stream = io.StringIO()
    handler = build_handler("json", stream)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


# ----- /metrics ----------------------------------------------------------------------------------
async def test_every_declared_metric_is_exposed(service: Any) -> None:
    text = await scrape(service)
    exposed = {family.name for family in text_string_to_metric_families(text)}
    declared = {m._name for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)}
    assert len(declared) >= 15 and declared <= exposed
    assert "/metrics" not in (await service.anonymous.get("/openapi.json")).json()["paths"]


async def test_resources_by_status_and_catalog_age_are_read_when_scraped(service: Any) -> None:
    kept = await procured_resource(service.alice, "nebula")
    deleted = await procured_resource(service.bob, "vast")  # every tenant counts
    assert (await service.bob.delete(f"/resources/{deleted}")).status_code == 200
    text = await scrape(service)
    assert value(text, "gpusupply_resources", status="pending") == 1
    assert value(text, "gpusupply_resources", status="deleting") == 1
    assert value(text, "gpusupply_resources", status="running") == 0
    assert {"pending", "deleted", "failed", "terminated"} <= {labels["status"] for labels in labels_of(text, "gpusupply_resources")}
    ages = {labels["vendor"] for labels in labels_of(text, "gpusupply_offer_cache_age_seconds")}
    assert {"nebula", "vast"} <= ages
    assert value(text, "gpusupply_offer_cache_age_seconds", vendor="nebula") >= 0
    assert value(text, "gpusupply_vendor_requests_total", vendor="nebula", outcome="ok") > 0
    assert kept


async def test_http_requests_are_counted_by_route_template(service: Any) -> None:
    before = await scrape(service)
    for _ in range(2):
        assert (await service.alice.get(f"/resources/{UNKNOWN}")).status_code == 404
    assert (await service.alice.get("/no/such/page")).status_code == 404
    assert (await service.anonymous.get("/resources")).status_code == 401
    after = await scrape(service)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("gpusupply_http_requests_total", method="GET", route="/resources/{resource_id}", status="404") == 2
    assert delta("gpusupply_http_request_seconds_count", method="GET", route="/resources/{resource_id}") == 2
    assert delta("gpusupply_http_requests_total", method="GET", route=UNMATCHED_ROUTE, status="404") == 1
    assert delta("gpusupply_http_requests_total", method="GET", route="/resources", status="401") == 1
    assert not [labels for labels in labels_of(after, "gpusupply_http_requests_total") if UNKNOWN in labels["route"]]


@pytest.mark.parametrize("settings_overrides", [FAST_ENGINE])
@pytest.mark.parametrize("service_engine", [True])
async def test_engine_work_shows_in_the_metrics(service: Any) -> None:
    before = await scrape(service)
    offer = await first_offer(service.alice, "nebula")
    rid = (await procure(service.alice, offer["offer_id"])).json()["resource_ids"][0]

    async def status_is(wanted: str) -> bool:
        return (await service.alice.get(f"/resources/{rid}")).json()["status"] == wanted

    await wait_for(lambda: status_is("running"))
    assert (await service.alice.delete(f"/resources/{rid}")).status_code == 200
    await wait_for(lambda: status_is("deleted"))
    after = await scrape(service)
    attempts = total(after, "gpusupply_procurement_attempts_total", vendor="nebula")
    assert attempts >= total(before, "gpusupply_procurement_attempts_total", vendor="nebula") + 1
    assert total(after, "gpusupply_vendor_requests_total", vendor="nebula") > total(
        before, "gpusupply_vendor_requests_total", vendor="nebula"
    )
    assert value(after, "gpusupply_resources", status="deleted") == 1
    assert value(after, "gpusupply_resources", status="running") == 0


# ----- request ids -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("incoming", "kept"),
    [
        ("abc-123", True),
        ("trace.id:7_x", True),
        ("a" * 128, True),
        ("a" * 129, False),
        ("has space", False),
        ("-leading-dash", False),
        ("quote\"", False),
        ("", False),
        (None, False),
    ],
)
def test_which_request_ids_are_accepted(incoming: str | None, kept: bool) -> None:
    assert accepted_request_id(incoming) == (incoming if kept else None)


def test_labels_stay_bounded() -> None:
    assert method_label("GET") == "GET" and method_label("BREW") == "OTHER"
    assert route_label({}) == UNMATCHED_ROUTE


async def test_every_answer_carries_a_request_id(service: Any) -> None:
    echoed = await service.alice.get("/available_regions", headers={"X-Request-ID": "client-trace-1"})
    assert echoed.headers["X-Request-ID"] == "client-trace-1"
    replaced = await service.alice.get("/available_regions", headers={"X-Request-ID": "x" * 300})
    generated = replaced.headers["X-Request-ID"]
    assert len(generated) == 32 and int(generated, 16) >= 0
    answers = [
        await service.anonymous.get("/resources"),  # 401
        await service.alice.get("/resources/not-a-uuid"),  # 422
        await service.alice.post("/get_offers", content=b"x" * 300_000),  # 413
        await service.anonymous.get("/healthz"),
    ]
    ids = [answer.headers.get("X-Request-ID") for answer in answers]
    assert all(ids) and len(set(ids)) == len(ids)


async def test_an_unexpected_error_is_a_500_with_its_request_id_logged_without_secrets(
    service: Any, json_logs: io.StringIO
) -> None:
    token = service.tenants["alice"].token

    async def broken() -> None:
        raise RuntimeError(f"exploded while holding {token} and Authorization: Bearer {token}")

    service.app.add_api_route("/_test/broken", broken, methods=["GET"])
    answer = await service.alice.get("/_test/broken", headers={"X-Request-ID": "boom-1"})
    assert answer.status_code == 500 and answer.json() == {"detail": "internal error"}
    assert answer.headers["X-Request-ID"] == "boom-1"
    logged = json_logs.getvalue()
    assert token not in logged and "gsk_[REDACTED]" in logged
    (error,) = [line for line in lines(json_logs) if line["message"] == "unhandled error"]
    assert error["request_id"] == "boom-1" and error["level"] == "error" and "RuntimeError" in error["exc_info"]
    (access,) = [line for line in lines(json_logs) if line["logger"] == "gpusupply.http" and line["request_id"] == "boom-1"]
    assert access["status"] == 500 and access["route"] == "/_test/broken"


async def test_request_lines_in_json(service: Any, json_logs: io.StringIO) -> None:
    await service.alice.get(f"/resources/{UNKNOWN}?force_refresh=true", headers={"X-Request-ID": "line-1"})
    await service.anonymous.get("/metrics")
    entries = [line for line in lines(json_logs) if line["logger"] == "gpusupply.http"]
    (entry,) = [line for line in entries if line["request_id"] == "line-1"]
    assert entry["message"] == "request" and entry["method"] == "GET" and entry["status"] == 404
    assert entry["path"] == f"/resources/{UNKNOWN}" and entry["route"] == "/resources/{resource_id}"
    assert entry["duration_ms"] >= 0 and entry["time"].endswith("Z") and entry["level"] == "info"
    assert not [line for line in entries if line["path"] == "/metrics"]  # scrapes log at debug level
