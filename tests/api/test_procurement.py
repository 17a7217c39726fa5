"""POST /procure_offer and GET /offers/{id}/status over HTTP: answers, errors, idempotency, tenancy."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from gpusupply.db.models import OfferRow, Procurement, Resource, utcnow
from tests.api.helpers import first_offer, procure
from tests.conftest import SSH_KEY


async def count_rows(service: Any) -> tuple[int, int]:
    async with service.db.session() as session:
        procurements = (await session.execute(select(func.count()).select_from(Procurement))).scalar_one()
        resources = (await session.execute(select(func.count()).select_from(Resource))).scalar_one()
    return procurements, resources


async def test_procure_answers_at_once(service: Any) -> None:
    offer = await first_offer(service.alice, "vast")
    response = await procure(service.alice, offer["offer_id"], resource_name="trainer", cloud_init="#!/bin/sh\necho hi\n")
    assert response.status_code == 200
    body = response.json()
    assert body["offer_id"] == offer["offer_id"] and body["status"] == "provisioning_in_progress"
    assert body["error"] is None and body["procured_at"] and len(body["resource_ids"]) == 1
    details = (await service.alice.get(f"/offers/{offer['offer_id']}")).json()
    assert details["status"] == "procured" and details["procured_at"] == body["procured_at"]
    resource = (await service.alice.get(f"/resources/{body['resource_ids'][0]}")).json()
    assert resource["name"] == "trainer" and resource["status"] == "pending"


@pytest.mark.parametrize(
    ("change", "status", "needle"),
    [
        ({"ssh_public_key": "nope"}, 422, "OpenSSH"),
        ({"ssh_public_key": ""}, 422, "at least 1"),
        ({"cloud_init": "echo hi"}, 422, "#cloud-config"),
        ({"cloud_init": "#cloud-config\n" + "x" * 70_000}, 422, "64 KB"),
        ({"cloud_init": "#!/bin/sh\necho hi\n"}, 422, "vendor nebula takes no cloud_init"),
        ({"resource_name": "x" * 201}, 422, "at most 200"),
        ({"offer_id": "not-a-uuid"}, 422, "UUID"),
        ({"offer_id": None}, 422, "exactly one of offer_id or spec"),
        ({"spec": {"compute": {"gpu_type": "H100"}}}, 422, "exactly one of offer_id or spec"),
        ({"surprise": 1}, 422, "Extra inputs"),
        ({"ssh_public_key": 42}, 422, "string"),
    ],
)
async def test_invalid_requests_change_nothing(service: Any, change: dict, status: int, needle: str) -> None:
    offer = await first_offer(service.alice)
    body = {"offer_id": offer["offer_id"], "ssh_public_key": SSH_KEY, **change}
    response = await service.alice.post("/procure_offer", json=body)
    assert response.status_code == status, response.text
    assert needle in response.text
    assert await count_rows(service) == (0, 0)
    assert (await service.alice.get(f"/offers/{offer['offer_id']}")).json()["status"] == "available"


async def test_not_json_at_all(service: Any) -> None:
    response = await service.alice.post("/procure_offer", content=b"offer_id=1", headers={"Content-Type": "text/plain"})
    assert response.status_code == 415 and "send application/json" in response.json()["detail"]
    response = await service.alice.post("/procure_offer", content=b"{broken", headers={"Content-Type": "application/json"})
    assert response.status_code == 422 and response.json()["detail"][0]["type"] == "json_invalid"
    response = await service.alice.post("/procure_offer", content=b'{"a": "\xff"}', headers={"Content-Type": "application/json"})
    assert response.status_code == 422 and response.json()["detail"][0]["type"] == "body_invalid"


async def test_a_repeated_search_drops_an_offer_once_it_is_procured(service: Any) -> None:
    """Identical searches share one answer (catalog.search(shared=True)) until the catalog
    changes: a procurement takes its offer out of the very next answer."""
    document = {"compute": {"gpu_type": "RTX4090"}}
    first = await service.alice.post("/get_offers", json=document)
    again = await service.alice.post("/get_offers", json=document)
    assert first.status_code == again.status_code == 200 and again.content == first.content
    taken = first.json()["offers"][0]["offer_id"]
    assert (await procure(service.alice, taken)).status_code == 200
    after = (await service.bob.post("/get_offers", json=document)).json()
    assert taken not in [offer["offer_id"] for offer in after["offers"]]
    assert after["total_count"] == first.json()["total_count"] - 1


async def test_unknown_taken_and_expired_offers(service: Any) -> None:
    response = await procure(service.alice, str(uuid.uuid4()))
    assert response.status_code == 404 and "not found" in response.json()["detail"]
    offer = await first_offer(service.alice)
    assert (await procure(service.alice, offer["offer_id"])).status_code == 200
    response = await procure(service.bob, offer["offer_id"])
    assert response.status_code == 409 and "already procured" in response.json()["detail"]
    other = await first_offer(service.alice)
    async with service.db.transaction() as session:
        await session.execute(
            update(OfferRow).where(OfferRow.id == uuid.UUID(other["offer_id"])).values(expires_at=utcnow() - timedelta(minutes=1))
        )
    response = await procure(service.alice, other["offer_id"])
    assert response.status_code == 410 and "expired" in response.json()["detail"]
    assert await count_rows(service) == (1, 1)


async def test_idempotency_key(service: Any) -> None:
    offer = await first_offer(service.alice)
    headers = {"Idempotency-Key": "order-42"}
    first = await procure(service.alice, offer["offer_id"], headers=headers)
    again = await procure(service.alice, offer["offer_id"], headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    other = await first_offer(service.alice)
    mismatch = await procure(service.alice, other["offer_id"], headers=headers)
    assert mismatch.status_code == 422 and "different request body" in mismatch.text
    too_long = await procure(service.alice, other["offer_id"], headers={"Idempotency-Key": "k" * 201})
    assert too_long.status_code == 422
    assert await count_rows(service) == (1, 1)


async def test_procure_by_spec(service: Any) -> None:
    body = {"spec": {"compute": {"gpu_type": "H100", "gpu_count": 1}, "vendor": "nebula"}, "ssh_public_key": SSH_KEY}
    response = await service.alice.post("/procure_offer", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["offer_id"] is None and answer["status"] == "provisioning_in_progress"
    resource = (await service.alice.get(f"/resources/{answer['resource_ids'][0]}")).json()
    assert resource["status"] == "pending" and resource["vendor"] is None and resource["gpu_family"] == "H100"
    bad = await service.alice.post("/procure_offer", json={**body, "spec": {"compute": {"gpu_type": "Z1"}}})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "spec", "compute", "gpu_type"]


async def test_a_spec_matching_nothing_is_refused_at_once_unless_asked_to_wait(service: Any) -> None:
    spec = {"compute": {"gpu_type": "H100", "max_price_per_gpu_hour": 0.0001}, "vendor": "nebula"}
    body = {"spec": spec, "ssh_public_key": SSH_KEY}
    refused = await service.alice.post("/procure_offer", json=body)
    assert refused.status_code == 409, refused.text
    detail = refused.json()["detail"]
    assert detail.startswith("no offer matches the spec now (without compute.max_price_per_gpu_hour ")
    assert "cheapest: 1x H100 on nebula at $" in detail and "wait_for_capacity: true" in detail
    assert await count_rows(service) == (0, 0)
    waiting = await service.alice.post("/procure_offer", json={**body, "wait_for_capacity": True})
    assert waiting.status_code == 200, waiting.text
    resource = (await service.alice.get(f"/resources/{waiting.json()['resource_ids'][0]}")).json()
    assert resource["status"] == "pending"
    assert await count_rows(service) == (1, 1)


async def test_a_spec_no_vendor_lists_says_so(service: Any) -> None:
    from gpusupply.core.gpus import families
    from gpusupply.core.offers import OfferQuery

    absent = [f for f in families() if not (await service.catalog.search(OfferQuery(gpu_family=f), limit=1)).total]
    assert absent, "the sandboxes list every family; this test needs one they do not"
    refused = await service.alice.post("/procure_offer", json={"spec": {"compute": {"gpu_type": absent[0]}},
                                                               "ssh_public_key": SSH_KEY})
    assert refused.status_code == 409
    assert f"(no vendor lists {absent[0]} offers now)" in refused.json()["detail"]


async def test_offer_status(service: Any) -> None:
    offer = await first_offer(service.alice)
    unprocured = (await service.bob.get(f"/offers/{offer['offer_id']}/status")).json()
    assert unprocured["procurement_status"] == "pending" and unprocured["instances"] == [] and unprocured["status"] == "available"
    rid = (await procure(service.alice, offer["offer_id"])).json()["resource_ids"][0]
    status = await service.alice.get(f"/offers/{offer['offer_id']}/status")
    assert status.status_code == 200
    body = status.json()
    assert body["status"] == "procured" and body["procurement_status"] == "pending"
    assert body["resource_ids"] == [rid] and body["progress"] == "0/1 instances running" and body["failure_reason"] is None
    # Another tenant's procurement is invisible: 404, never 403.
    assert (await service.bob.get(f"/offers/{offer['offer_id']}/status")).status_code == 404
    assert (await service.alice.get(f"/offers/{uuid.uuid4()}/status")).status_code == 404
    assert (await service.alice.get("/offers/nope/status")).status_code == 422
    # Derived from the resources as the engine moves them.
    async with service.db.transaction() as session:
        await session.execute(
            update(Resource).where(Resource.id == uuid.UUID(rid)).values(
                status="running", vendor_instance_id="i-1", external_ip="203.0.113.7", ssh_port=22
            )
        )
    body = (await service.alice.get(f"/offers/{offer['offer_id']}/status")).json()
    assert body["procurement_status"] == "ready" and body["progress"] == "1/1 instances running"
    assert body["instances"] == [
        {"resource_id": rid, "status": "running", "external_ip": "203.0.113.7", "ssh_command": "ssh root@203.0.113.7 -p 22", "ssh_port": 22}
    ]
    async with service.db.transaction() as session:
        await session.execute(
            update(Resource).where(Resource.id == uuid.UUID(rid)).values(status="failed", status_message="vendor said no")
        )
    body = (await service.alice.get(f"/offers/{offer['offer_id']}/status")).json()
    assert body["procurement_status"] == "failed" and body["failure_reason"] == "vendor said no"


@pytest.mark.parametrize(
    ("ran", "final", "expected", "reason"),
    [
        (True, "deleted", "ready", None),
        (True, "terminated", "ready", None),
        (False, "deleted", "failed", "the resource was deleted before it ran"),
        (False, "deleting", "failed", "the resource was deleting before it ran"),
        (False, "terminated", "failed", "the resource was terminated before it ran"),
    ],
)
async def test_a_deleted_procurement_says_whether_it_ever_delivered(
    service: Any, ran: bool, final: str, expected: str, reason: str | None
) -> None:
    offer = await first_offer(service.alice)
    rid = (await procure(service.alice, offer["offer_id"])).json()["resource_ids"][0]
    async with service.db.transaction() as session:
        await session.execute(
            update(Resource).where(Resource.id == uuid.UUID(rid)).values(
                status=final, vendor_instance_id="i-1", running_since=utcnow() if ran else None
            )
        )
    body = (await service.alice.get(f"/offers/{offer['offer_id']}/status")).json()
    assert body["procurement_status"] == expected and body["failure_reason"] == reason, body
