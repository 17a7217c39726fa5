"""/metrics, request ids and request logs, through the whole app with the sandbox vendors."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from gpusupply import metrics
from gpusupply.api.observability import UNMATCHED_ROUTE, accepted_request_id, method_label, route_label
from gpusupply.core.errors import RateLimited, VendorUnavailable
from gpusupply.db.models import utcnow
from gpusupply.logging import build_handler
from gpusupply.vendors import nebula
from gpusupply.vendors.base import CreateRequest
from gpusupply.vendors.http import RetryPolicy, VendorHttp
from gpusupply.vendors.registry import SANDBOX_KEY
from tests.api.helpers import first_offer, procure, procured_resource, search, wait_for
from tests.conftest import SSH_KEY, free_port

FAST_ENGINE = {"engine_poll_seconds": 0.1, "provisioning_poll_seconds": 0.2, "refresh_interval_seconds": 1.0}
UNKNOWN = "00000000-0000-4000-8000-000000000000"
GPUSUPPLY = str(Path(sys.executable).parent / "gpusupply")


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


def moved(before: str, after: str, name: str, **labels: str) -> float:
    """How much the samples `name{labels}` (summed) grew between two scrapes."""
    return total(after, name, **labels) - total(before, name, **labels)


async def test_vendor_call_trouble_shows_in_the_metrics(service: Any) -> None:
    """429s, vendor errors, latencies and rate-limit waits, through the shared HTTP policy against
    the Nebula sandbox (few tries, so the test waits one Retry-After at most)."""
    sandbox = service.vendors.sandboxes["nebula"]
    http = VendorHttp(
        "nebula", service.vendors.urls["nebula"] + nebula.API_PATH,
        auth_headers={"Authorization": f"Bearer {SANDBOX_KEY}"}, rates={"products": (50.0, 1.0)},
        retry=RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02), classifier=nebula.classify_response,
    )
    before = await scrape(service)
    try:
        sandbox.faults.faults = {"429": 1.0}
        with pytest.raises(RateLimited):  # answered 429, waited its Retry-After, 429 again
            await http.request("GET", "computing/products", endpoint="products", safe=True)
        sandbox.faults.faults = {"500": 1.0}
        with pytest.raises(VendorUnavailable):
            await http.request("GET", "computing/products", endpoint="products", safe=False)
        sandbox.faults.faults = {}
        for _ in range(3):  # a burst of one: the later calls are paced
            await http.request("GET", "computing/products", endpoint="products", safe=True)
    finally:
        sandbox.faults.faults = {}
        await http.aclose()
    after = await scrape(service)
    assert moved(before, after, "gpusupply_vendor_429_total", vendor="nebula") >= 2
    assert moved(before, after, "gpusupply_vendor_requests_total", vendor="nebula", endpoint="products", outcome="RateLimited") >= 2
    assert moved(before, after, "gpusupply_vendor_requests_total", vendor="nebula", endpoint="products",
                 outcome="VendorUnavailable") >= 1
    assert moved(before, after, "gpusupply_vendor_requests_total", vendor="nebula", endpoint="products", outcome="ok") >= 3
    assert moved(before, after, "gpusupply_vendor_request_seconds_count", vendor="nebula", endpoint="products") >= 6
    assert moved(before, after, "gpusupply_vendor_request_seconds_sum", vendor="nebula", endpoint="products") > 0
    # the 429's Retry-After (1 s from the sandbox) and the pacing both count as rate-limit waits
    assert moved(before, after, "gpusupply_vendor_rate_limit_wait_seconds_total", vendor="nebula") >= 1.0


async def test_orphans_degraded_vendors_and_lease_takeovers_show_in_the_metrics(service: Any) -> None:
    """The reconciler's and the leases' counters, driven by the engine's own steps on the service's
    database and vendors."""
    from gpusupply.domain import job_leases
    from gpusupply.engine.context import EngineContext
    from gpusupply.engine.reconciler import reconcile_vendor

    clock = [utcnow()]
    ctx = EngineContext(service.db, service.vendors, service.settings, clock=lambda: clock[0])
    adapter = service.vendors.adapters["nebula"]
    offer = next(o for o in await adapter.list_offers() if o.available)
    before = await scrape(service)
    # our installation's marker, no row: an orphan
    await adapter.create(CreateRequest(uuid.uuid4(), offer, SSH_KEY, first_attempt_at=ctx.now(), installation_id=await ctx.installation()))
    assert (await reconcile_vendor(ctx, "nebula")).orphans_pending == 1
    found = await scrape(service)
    assert moved(before, found, "gpusupply_orphans_found_total", vendor="nebula") == 1
    assert moved(before, found, "gpusupply_orphans_terminated_total", vendor="nebula") == 0
    clock[0] += timedelta(seconds=service.settings.orphan_grace_seconds + 1)
    assert len((await reconcile_vendor(ctx, "nebula")).orphans_terminated) == 1
    terminated = await scrape(service)
    assert moved(found, terminated, "gpusupply_orphans_terminated_total", vendor="nebula") == 1
    assert value(terminated, "gpusupply_vendor_degraded", vendor="nebula") == 0

    service.vendors.sandboxes["nebula"].faults.faults = {"500": 1.0}
    try:
        assert (await reconcile_vendor(ctx, "nebula")).degraded
    finally:
        service.vendors.sandboxes["nebula"].faults.faults = {}
    assert value(await scrape(service), "gpusupply_vendor_degraded", vendor="nebula") == 1
    assert not (await reconcile_vendor(ctx, "nebula")).degraded
    assert value(await scrape(service), "gpusupply_vendor_degraded", vendor="nebula") == 0

    # a job whose holder died: the next process takes it over once the lease expires
    lease, interval, now = timedelta(seconds=10), timedelta(seconds=60), utcnow()
    assert await job_leases.claim_job(service.db, "reconcile:metrics-test", owner="dead", lease=lease, interval=interval, now=now)
    before_takeover = await scrape(service)
    assert await job_leases.claim_job(service.db, "reconcile:metrics-test", owner="alive", lease=lease, interval=interval,
                                  now=now + timedelta(seconds=11))
    after_takeover = await scrape(service)
    assert moved(before_takeover, after_takeover, "gpusupply_lease_takeovers_total", pipeline="reconcile") == 1


@pytest.mark.parametrize("settings_overrides", [FAST_ENGINE])
@pytest.mark.parametrize("service_engine", [True])
async def test_failovers_and_deletion_retries_show_in_the_metrics(service: Any) -> None:
    """A procurement by spec whose cheapest offer sold out fails over; a delete the vendor refuses
    for a while is retried."""
    document = "vendor: nebula\ncompute:\n  gpu_type: {gpu}\n"
    for gpu in ("RTX4090", "H100", "A100", "L40S", "RTX3090", "RTX5090", "A6000", "L4", "H200", "B200"):
        ranked = (await search(service.alice, document.format(gpu=gpu), limit=5))["offers"]
        if len(ranked) >= 2:
            break
    else:
        raise AssertionError("no GPU with two 1-GPU Nebula offers")
    sandbox = service.vendors.sandboxes["nebula"]
    cheapest = await service.catalog.get(uuid.UUID(ranked[0]["offer_id"]))
    sandbox.products[cheapest.offer.vendor_offer_id].stock = 0  # sold out after the catalog was read
    before = await scrape(service)
    answer = await service.alice.post("/procure_offer", json={
        "spec": {"vendor": "nebula", "compute": {"gpu_type": gpu, "gpu_count": 1}}, "ssh_public_key": SSH_KEY})
    assert answer.status_code == 200, answer.text
    rid = answer.json()["resource_ids"][0]

    async def status_is(wanted: str) -> bool:
        return (await service.alice.get(f"/resources/{rid}")).json()["status"] == wanted

    await wait_for(lambda: status_is("running"))
    procured = await scrape(service)
    assert moved(before, procured, "gpusupply_procurement_failovers_total", vendor="nebula") >= 1
    assert moved(before, procured, "gpusupply_procurement_attempts_total", vendor="nebula", outcome="failed") >= 1
    assert moved(before, procured, "gpusupply_procurement_attempts_total", vendor="nebula", outcome="created") == 1

    sandbox.faults.faults = {"500": 1.0}
    try:
        assert (await service.alice.delete(f"/resources/{rid}")).status_code == 200

        async def retried() -> bool:
            return moved(procured, await scrape(service), "gpusupply_deletion_retries_total", vendor="nebula") >= 1

        await wait_for(retried)
    finally:
        sandbox.faults.faults = {}
    await wait_for(lambda: status_is("deleted"))


def test_a_worker_serves_its_metrics(tmp_path: Path) -> None:
    """`gpusupply worker --metrics-port`: the engine's counters and the scrape-time gauges, from a
    real worker process; a port it cannot use is one error line."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUSUPPLY_")}
    env.update(GPUSUPPLY_DATA_DIR=str(tmp_path), GPUSUPPLY_SANDBOX_OFFERS="50", GPUSUPPLY_LOG_LEVEL="warning")
    port = free_port()
    worker = subprocess.Popen([GPUSUPPLY, "worker", "--metrics-port", str(port)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert worker.poll() is None, worker.stdout.read() if worker.stdout else ""
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the worker's /metrics never answered"
                time.sleep(0.2)
                continue
            if labels_of(text, "gpusupply_offer_cache_age_seconds"):  # its catalog has read a vendor
                break
            assert time.monotonic() < deadline, text
            time.sleep(0.2)
        assert {labels["status"] for labels in labels_of(text, "gpusupply_resources")} >= {"pending", "running"}
        assert total(text, "gpusupply_vendor_requests_total", outcome="ok") > 0
        assert httpx.get(f"http://127.0.0.1:{port}/resources", timeout=5).status_code == 404  # nothing but /metrics
        # A second worker, with a data directory of its own (the first holds its in-process sandboxes).
        other_env = {**env, "GPUSUPPLY_DATA_DIR": str(tmp_path / "other")}
        taken = subprocess.run([GPUSUPPLY, "worker", "--metrics-port", str(port)], env=other_env, capture_output=True,
                               text=True, timeout=60)
        assert taken.returncode == 1 and "Traceback" not in taken.stderr
        assert f"error: cannot serve metrics on 127.0.0.1:{port}" in taken.stderr
    finally:
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=30)
    assert worker.returncode == 0, output
    assert f"metrics on http://127.0.0.1:{port}/metrics" in output


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
