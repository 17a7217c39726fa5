"""Webhooks over HTTP: register (secret shown once), list, get, delete, deliveries, tenancy and
refusals; and end to end with the engine: a procurement's events arrive signed at a receiver on
loopback that fails the first time, and the delivery log shows it."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from sqlalchemy import update

from gpusupply.db.models import Webhook, WebhookDelivery, utcnow
from gpusupply.domain.webhooks import EVENT_TYPES, verify_signature
from tests.api.helpers import first_offer, procure, wait_for
from tests.engine.webhook_helpers import Receiver, receiving

PRIVATE_OK = {"allow_private_webhook_urls": True}


async def test_private_urls_are_refused_by_default(service: Any) -> None:
    for url, fragment in (
        ("http://127.0.0.1:9/hook", "127.0.0.1 is a loopback address"),
        ("http://localhost/hook", "resolves to"),
        ("http://169.254.169.254/latest", "link-local"),
        ("file:///etc/passwd", "must start with http:// or https://"),
    ):
        response = await service.alice.post("/webhooks", json={"url": url})
        assert response.status_code == 422, url
        assert fragment in response.json()["detail"][0]["msg"]
        assert response.json()["detail"][0]["loc"] == ["body", "url"]


@pytest.mark.parametrize("settings_overrides", [PRIVATE_OK])
async def test_register_list_get_delete(service: Any) -> None:
    created = await service.alice.post(
        "/webhooks", json={"url": "http://127.0.0.1:9/hook", "events": ["resource.ready", "budget.alert"], "description": "ops"}
    )
    assert created.status_code == 201, created.text
    body = created.json()
    webhook_id, secret = body["webhook_id"], body["secret"]
    assert secret.startswith("whsec_")
    assert body["events"] == ["resource.ready", "budget.alert"] and body["deliveries_url"] == f"/webhooks/{webhook_id}/deliveries"
    async with service.db.session() as session:
        stored = await session.get(Webhook, uuid.UUID(webhook_id))
    assert stored is not None and secret not in stored.secret_encrypted  # encrypted at rest

    listed = (await service.alice.get("/webhooks")).json()
    assert [w["webhook_id"] for w in listed["webhooks"]] == [webhook_id]
    assert listed["event_types"] == EVENT_TYPES
    assert "secret" not in listed["webhooks"][0]  # shown once, at creation
    one = (await service.alice.get(f"/webhooks/{webhook_id}")).json()
    assert "secret" not in one and one["description"] == "ops"
    assert (await service.alice.get(f"/webhooks/{webhook_id}/deliveries")).json()["deliveries"] == []

    for call in (service.bob.get(f"/webhooks/{webhook_id}"), service.bob.delete(f"/webhooks/{webhook_id}"),
                 service.bob.get(f"/webhooks/{webhook_id}/deliveries")):
        assert (await call).status_code == 404
    assert (await service.bob.get("/webhooks")).json()["webhooks"] == []

    removed = await service.alice.delete(f"/webhooks/{webhook_id}")
    assert removed.status_code == 200 and removed.json()["webhook_id"] == webhook_id
    assert (await service.alice.get(f"/webhooks/{webhook_id}")).status_code == 404
    assert (await service.alice.delete(f"/webhooks/{webhook_id}")).status_code == 404


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"url": "https://93.184.216.34/x", "events": ["resource.exploded"]}, "unknown event type(s) 'resource.exploded'"),
        ({"url": "https://user:pw@93.184.216.34/x"}, "must not carry credentials"),
        ({"url": "https://93.184.216.34/x", "secret": "mine"}, "Extra inputs are not permitted"),
        ({"events": ["*"]}, "Field required"),
    ],
)
async def test_register_refuses_bad_input(service: Any, body: dict[str, Any], fragment: str) -> None:
    response = await service.alice.post("/webhooks", json=body)
    assert response.status_code == 422
    assert fragment in response.json()["detail"][0]["msg"]


async def test_deliveries_refuse_bad_paging_and_status(service: Any) -> None:
    created = (await service.alice.post("/webhooks", json={"url": "https://93.184.216.34/hook"})).json()
    url = f"/webhooks/{created['webhook_id']}/deliveries"
    assert (await service.alice.get(url, params={"status": "lost"})).status_code == 422
    assert (await service.alice.get(url, params={"limit": 0})).status_code == 422
    assert (await service.alice.get("/webhooks/not-a-uuid/deliveries")).status_code == 422


E2E = {**PRIVATE_OK, "engine_poll_seconds": 0.1, "provisioning_poll_seconds": 0.2, "webhook_poll_seconds": 0.1}


@pytest.mark.parametrize("settings_overrides", [E2E])
@pytest.mark.parametrize("service_engine", [True])
async def test_procurement_events_arrive_signed(service: Any) -> None:
    # Fails the first time: the engine's deliverer retries 10 s later on its clock, so the test
    # moves the failed delivery's next attempt to now instead of waiting.
    async with receiving(Receiver(fail_first=1)) as receiver:
        created = (await service.alice.post("/webhooks", json={"url": receiver.url + "/in", "events": ["resource.ready"]})).json()
        everything = (await service.alice.post("/webhooks", json={"url": receiver.url + "/all"})).json()
        offer = await first_offer(service.alice, "nebula")
        rid = (await procure(service.alice, offer["offer_id"])).json()["resource_ids"][0]
        deliveries_url = f"/webhooks/{created['webhook_id']}/deliveries"

        async def first_failed() -> dict[str, Any] | None:
            found = (await service.alice.get(deliveries_url)).json()["deliveries"]
            return found[0] if found and found[0]["attempts"] >= 1 else None

        failed = await wait_for(first_failed, within=30)
        if failed["status"] == "pending":  # the first POST of all went to this webhook: it failed
            assert failed["last_error"] == "answered HTTP 500" and failed["next_attempt_at"] is not None
            await _due_now(service)

        async def delivered() -> dict[str, Any] | None:
            found = (await service.alice.get(deliveries_url)).json()["deliveries"]
            return found[0] if found and found[0]["status"] == "delivered" else None

        done = await wait_for(delivered, within=30)

        async def all_four() -> bool:
            found = (await service.alice.get(f"/webhooks/{everything['webhook_id']}/deliveries")).json()["deliveries"]
            if any(d["status"] == "pending" and d["attempts"] for d in found):
                await _due_now(service)
            return len(found) == 4 and all(d["status"] == "delivered" for d in found)

        await wait_for(all_four, within=30)

    assert done["event_type"] == "resource.ready" and done["payload"]["data"]["resource_id"] == rid
    assert [a["status_code"] for a in done["attempt_log"]][-1] == 200
    ready = [r for r in receiver.requests if r.path == "/in"]
    assert ready and all(r.json["type"] == "resource.ready" for r in ready)
    for request in ready:
        assert verify_signature(created["secret"], request.headers["x-gpusupply-signature"], request.body, now=int(time.time()))
        assert not verify_signature(everything["secret"], request.headers["x-gpusupply-signature"], request.body, now=int(time.time()))
    # One delivery per event and type (a failed attempt is retried under the same delivery id).
    unique = {r.headers["x-gpusupply-delivery"]: r.json for r in receiver.requests if r.path == "/all"}
    statuses = sorted(p["data"]["to_status"] for p in unique.values() if p["type"] == "resource.status_changed")
    assert statuses == ["pending", "provisioning", "running"]
    assert [p["type"] for p in unique.values()].count("resource.ready") == 1


async def _due_now(service: Any) -> None:
    async with service.db.transaction() as session:
        await session.execute(
            update(WebhookDelivery).where(WebhookDelivery.status == "pending").values(next_attempt_at=utcnow())
        )
