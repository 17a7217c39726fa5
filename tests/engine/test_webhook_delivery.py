"""Webhook delivery: the retry schedule (tables), and signed deliveries to a real receiver on
loopback that fails the first N times, retried on the test's clock until delivered or, after a
day, failed; Retry-After, timeouts, refused private URLs, secrets kept out of logs, and leases."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from gpusupply.core.states import ResourceStatus
from gpusupply.db.models import Resource, WebhookDelivery, WebhookOutbox
from gpusupply.db.session import Database
from gpusupply.domain.events import change_status
from gpusupply.domain.webhooks import verify_signature
from gpusupply.engine.context import EngineContext
from gpusupply.engine.webhook_delivery import (
    RETRY_DELAYS,
    WebhookDeliverer,
    after_attempt,
    claim,
    parse_retry_after,
    retry_delay,
)
from gpusupply.services.webhooks import create_webhook, delete_webhook
from gpusupply.settings import Settings
from gpusupply.vendors.registry import VendorSet
from tests.conftest import make_test_settings
from tests.engine.helpers import MovableClock
from tests.engine.webhook_helpers import Receiver, receiving
from tests.services.cost_helpers import make_resource, make_tenant, principal_for

T = datetime(2026, 11, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    ("attempts", "retry_after", "delay"),
    [(1, None, 10), (2, None, 30), (3, None, 60), (10, None, 28800), (25, None, 28800), (1, 120.0, 120), (4, 5.0, 300),
     (1, 99999.0, 3600)],
)
def test_retry_delay(attempts: int, retry_after: float | None, delay: float) -> None:
    assert retry_delay(attempts, retry_after) == delay


@pytest.mark.parametrize(
    ("ok", "attempts", "age", "expected"),
    [
        (True, 5, timedelta(hours=30), ("delivered", None)),
        (False, 1, timedelta(0), ("pending", T + timedelta(seconds=10))),
        (False, 10, timedelta(hours=15), ("pending", T + timedelta(hours=8))),
        (False, 10, timedelta(hours=16, seconds=1), ("failed", None)),
    ],
)
def test_after_attempt(ok: bool, attempts: int, age: timedelta, expected: tuple[str, datetime | None]) -> None:
    assert after_attempt(ok=ok, attempts=attempts, created_at=T - age, now=T) == expected


def test_the_schedule_retries_for_about_a_day() -> None:
    elapsed, attempts = 0.0, 1
    while True:
        status, when = after_attempt(ok=False, attempts=attempts, created_at=T, now=T + timedelta(seconds=elapsed))
        if status == "failed":
            break
        assert when is not None
        elapsed, attempts = (when - T).total_seconds(), attempts + 1
    assert attempts == 12 and timedelta(hours=23) < timedelta(seconds=elapsed) <= timedelta(days=1)
    assert sum(RETRY_DELAYS) < 86400


@pytest.mark.parametrize(("value", "seconds"), [(None, None), ("120", 120.0), (" 5 ", 5.0), ("-1", None),
                                                 ("Wed, 21 Oct 2026 07:28:00 GMT", None)])
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value) == seconds


# ----- against a receiver on loopback --------------------------------------------------------------
class Setup:
    def __init__(self, db: Database, settings: Settings, clock: MovableClock):
        self.db, self.settings, self.clock = db, settings, clock
        self.ctx = EngineContext(db, VendorSet({}, {}, {}), settings, None, "test-owner", clock)
        self.deliverer = WebhookDeliverer(self.ctx)
        self.tenant: Any = None

    async def webhook(self, url: str, events: list[str] | None = None) -> tuple[uuid.UUID, str]:
        if self.tenant is None:
            self.tenant = await make_tenant(self.db)
        webhook, secret = await create_webhook(self.db, self.settings, principal_for(self.tenant), url=url, events=events)
        return webhook.id, secret

    async def ready_event(self) -> uuid.UUID:
        """A resource becomes ready (provisioning -> running) at engine time: its events go to the outbox."""
        rid = await make_resource(self.db, self.tenant.id, created=self.clock() - timedelta(minutes=5))
        for status in (ResourceStatus.PROVISIONING, ResourceStatus.RUNNING):
            async with self.db.transaction() as session:
                row = await session.get(Resource, rid)
                assert row is not None
                change_status(session, row, status, f"now {status.value}", at=self.clock())
        return rid

    async def deliveries(self) -> list[WebhookDelivery]:
        async with self.db.session() as session:
            return list((await session.execute(select(WebhookDelivery).order_by(WebhookDelivery.event_id, WebhookDelivery.event_type))).scalars())


@pytest.fixture
async def setup(database: Database, tmp_path: Path) -> Any:
    settings = make_test_settings(tmp_path, allow_private_webhook_urls=True, webhook_timeout_seconds=2.0)
    rig = Setup(database, settings, MovableClock())
    try:
        yield rig
    finally:
        await rig.deliverer.aclose()


async def test_signed_delivery_retried_until_the_receiver_accepts(setup: Setup) -> None:
    async with receiving(Receiver(fail_first=2)) as receiver:
        webhook_id, secret = await setup.webhook(receiver.url + "/hooks/gpusupply", events=["resource.ready"])
        rid = await setup.ready_event()

        await setup.deliverer.run_once()  # fan-out, then attempt 1: 500
        (delivery,) = await setup.deliveries()
        assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, 500)
        assert delivery.last_error == "answered HTTP 500"
        first_try = datetime.fromisoformat(delivery.attempt_log[0]["at"])
        assert delivery.next_attempt_at == first_try + timedelta(seconds=10)

        await setup.deliverer.run_once()  # not due yet: nothing is sent
        assert len(receiver.requests) == 1
        setup.clock.advance(10)
        await setup.deliverer.run_once()  # attempt 2: 500
        setup.clock.advance(30)
        await setup.deliverer.run_once()  # attempt 3: 200
        (delivery,) = await setup.deliveries()
        assert (delivery.status, delivery.attempts, delivery.last_status_code, delivery.last_error) == ("delivered", 3, 200, None)
        assert delivery.delivered_at is not None
        assert [a["status_code"] for a in delivery.attempt_log] == [500, 500, 200]
        setup.clock.advance(3600)
        await setup.deliverer.run_once()
        assert len(receiver.requests) == 3  # delivered once, never again

    bodies = {r.body for r in receiver.requests}
    assert len(bodies) == 1  # every retry sends the same body
    for request in receiver.requests:
        assert request.path == "/hooks/gpusupply"
        assert request.headers["content-type"] == "application/json"
        assert request.headers["x-gpusupply-event"] == "resource.ready"
        assert request.headers["x-gpusupply-delivery"] == str(delivery.id)
        assert request.headers["user-agent"].startswith("gpusupply-webhooks/")
        signature = request.headers["x-gpusupply-signature"]
        timestamp = int(signature.split(",")[0].removeprefix("t="))
        assert verify_signature(secret, signature, request.body, now=timestamp)
        assert not verify_signature("whsec_wrong", signature, request.body, now=timestamp)
    payload = receiver.requests[0].json
    assert payload["id"] == str(delivery.id) and payload["type"] == "resource.ready"
    assert payload["tenant"] == setup.tenant.name
    assert payload["data"]["resource_id"] == str(rid) and payload["data"]["to_status"] == "running"
    assert payload["data"]["resource"]["resource_id"] == str(rid)
    async with setup.db.session() as session:
        assert (await session.execute(select(WebhookOutbox))).first() is None  # every outbox row was fanned out
    assert webhook_id == delivery.webhook_id


async def test_fan_out_follows_each_webhooks_filter(setup: Setup) -> None:
    async with receiving(Receiver()) as receiver:
        everything, _ = await setup.webhook(receiver.url + "/all")
        ready_only, _ = await setup.webhook(receiver.url + "/ready", events=["resource.ready"])
        budget_only, _ = await setup.webhook(receiver.url + "/budget", events=["budget.alert"])
        await setup.ready_event()
        await setup.deliverer.run_once()
        deliveries = await setup.deliveries()
    got = sorted((d.webhook_id == everything, d.webhook_id == ready_only, d.event_type) for d in deliveries)
    # "*" gets provisioning and running as status changes plus ready (the "pending" event happened
    # before the webhooks existed: not delivered); the filtered webhook only ready.
    assert [t for *_, t in got].count("resource.status_changed") == 2
    assert sum(1 for d in deliveries if d.webhook_id == ready_only) == 1
    assert all(d.webhook_id != budget_only for d in deliveries)
    assert all(d.status == "delivered" for d in deliveries)
    assert sorted(r.path for r in receiver.requests) == ["/all"] * 3 + ["/ready"]


async def test_gives_up_after_a_day(setup: Setup) -> None:
    async with receiving(Receiver(always_fail=True, fail_status=503)) as receiver:
        await setup.webhook(receiver.url + "/down", events=["resource.ready"])
        await setup.ready_event()
        await setup.deliverer.run_once()
        for _ in range(20):
            (delivery,) = await setup.deliveries()
            if delivery.status != "pending":
                break
            setup.clock.advance((delivery.next_attempt_at - setup.clock()).total_seconds())
            await setup.deliverer.run_once()
    (delivery,) = await setup.deliveries()
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("failed", 12, "answered HTTP 503")
    assert len(receiver.requests) == 12
    first, last = (datetime.fromisoformat(delivery.attempt_log[i]["at"]) for i in (0, -1))
    assert timedelta(hours=23) < last - first <= timedelta(days=1)


async def test_retry_after_is_honoured(setup: Setup) -> None:
    async with receiving(Receiver(fail_first=1, fail_status=429, extra_headers={"Retry-After": "120"})) as receiver:
        await setup.webhook(receiver.url + "/slow-down", events=["resource.ready"])
        await setup.ready_event()
        await setup.deliverer.run_once()
        (delivery,) = await setup.deliveries()
        assert delivery.last_status_code == 429
        assert delivery.next_attempt_at == datetime.fromisoformat(delivery.attempt_log[0]["at"]) + timedelta(seconds=120)
        setup.clock.advance(60)
        await setup.deliverer.run_once()
        assert len(receiver.requests) == 1
        setup.clock.advance(61)
        await setup.deliverer.run_once()
        assert (await setup.deliveries())[0].status == "delivered"


async def test_a_slow_receiver_times_out_and_is_retried(setup: Setup) -> None:
    setup.settings = setup.settings.model_copy(update={"webhook_timeout_seconds": 0.2})
    setup.ctx.settings = setup.settings
    async with receiving(Receiver(delay=1.0)) as receiver:
        await setup.webhook(receiver.url + "/slow", events=["resource.ready"])
        await setup.ready_event()
        await setup.deliverer.run_once()
    (delivery,) = await setup.deliveries()
    assert (delivery.status, delivery.last_status_code, delivery.last_error) == ("pending", None, "no answer within 0.2 s")


async def test_private_urls_are_refused_at_delivery_time(setup: Setup, caplog: pytest.LogCaptureFixture) -> None:
    async with receiving(Receiver()) as receiver:
        await setup.webhook(receiver.url + "/token-abc123/hook", events=["resource.ready"])
        setup.ctx.settings = setup.settings.model_copy(update={"allow_private_webhook_urls": False})
        await setup.ready_event()
        with caplog.at_level(logging.DEBUG):
            await setup.deliverer.run_once()
    assert receiver.requests == []
    (delivery,) = await setup.deliveries()
    assert delivery.status == "pending" and delivery.last_error is not None
    assert delivery.last_error.startswith("not sent: host '127.0.0.1' resolves to 127.0.0.1 is a loopback address")
    assert "token-abc123" not in caplog.text  # the URL (which may carry a token) is never logged


@pytest.mark.parametrize(
    ("host", "refusal"),
    [
        ("[2002:7f00:1::]", "2002:7f00:1:: embeds 127.0.0.1 (6to4) and 127.0.0.1 is a loopback address"),
        ("[64:ff9b::a9fe:a9fe]", "64:ff9b::a9fe:a9fe embeds 169.254.169.254 (NAT64) and 169.254.169.254 is a link-local address"),
    ],
)
async def test_embedded_private_ipv4_is_refused_at_delivery_time(setup: Setup, host: str, refusal: str) -> None:
    """Registration and delivery share one check (domain/webhooks.url_refusal)."""
    await setup.webhook(f"http://{host}:9/hook", events=["resource.ready"])  # allowed while private URLs are
    setup.ctx.settings = setup.settings.model_copy(update={"allow_private_webhook_urls": False})
    await setup.ready_event()
    await setup.deliverer.run_once()
    (delivery,) = await setup.deliveries()
    assert delivery.status == "pending" and delivery.attempts == 1
    assert delivery.last_error == f"not sent: host {host.strip('[]')!r} resolves to {refusal}; webhooks go to public " \
        "addresses only (GPUSUPPLY_ALLOW_PRIVATE_WEBHOOK_URLS=true allows private ones)"


async def test_secrets_never_reach_the_logs(setup: Setup, caplog: pytest.LogCaptureFixture) -> None:
    async with receiving(Receiver(fail_first=1)) as receiver:
        _, secret = await setup.webhook(receiver.url + "/hook/s3cr3t-path", events=["resource.ready"])
        await setup.ready_event()
        with caplog.at_level(logging.DEBUG):
            await setup.deliverer.run_once()
            setup.clock.advance(10)
            await setup.deliverer.run_once()
    assert len(receiver.requests) == 2
    assert secret not in caplog.text and "s3cr3t-path" not in caplog.text
    assert "webhook delivery attempt" in caplog.text


async def test_a_deleted_webhook_drops_its_pending_deliveries(setup: Setup) -> None:
    async with receiving(Receiver(always_fail=True)) as receiver:
        webhook_id, _ = await setup.webhook(receiver.url + "/gone", events=["resource.ready"])
        await setup.ready_event()
        await setup.deliverer.run_once()
        await delete_webhook(setup.db, principal_for(setup.tenant), webhook_id)
        setup.clock.advance(3600)
        await setup.deliverer.run_once()
    assert len(receiver.requests) == 1
    assert await setup.deliveries() == []


async def test_events_without_webhooks_leave_nothing_behind(setup: Setup) -> None:
    setup.tenant = await make_tenant(setup.db)
    await setup.ready_event()
    assert await setup.deliverer.run_once() == 3
    async with setup.db.session() as session:
        assert (await session.execute(select(WebhookOutbox))).first() is None
    assert await setup.deliveries() == []


async def test_claims_are_exclusive_until_the_lease_expires(setup: Setup) -> None:
    setup.tenant = await make_tenant(setup.db)
    await setup.ready_event()
    now = setup.clock()
    lease = timedelta(seconds=30)
    first = await claim(setup.db, WebhookOutbox, [], owner="a", lease=lease, now=now, limit=10)
    assert len(first) == 3
    assert await claim(setup.db, WebhookOutbox, [], owner="b", lease=lease, now=now, limit=10) == []
    taken_over = await claim(setup.db, WebhookOutbox, [], owner="b", lease=lease, now=now + lease + timedelta(seconds=1), limit=10)
    assert sorted(i for i, _ in taken_over) == sorted(i for i, _ in first)
