"""Resources over HTTP: list envelope and filters, details, delete (and force), actions, events."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from gpusupply.contract import schemas
from gpusupply.db.models import Resource, utcnow
from tests.api.helpers import procured_resource
from tests.conftest import BACKENDS


async def set_row(service: Any, resource_id: str, **values: Any) -> None:
    """Test setup: put the row where the engine would have put it."""
    async with service.db.transaction() as session:
        await session.execute(update(Resource).where(Resource.id == uuid.UUID(resource_id)).values(**values))


async def test_list_envelope_filters_and_tenancy(service: Any) -> None:
    first = await procured_resource(service.alice, "nebula")
    second = await procured_resource(service.alice, "fal")
    await procured_resource(service.bob, "nebula")
    body = (await service.alice.get("/resources")).json()
    assert set(body) == {"resources", "total_count", "limit", "offset"}
    assert [r["resource_id"] for r in body["resources"]] == [second, first] and body["total_count"] == 2
    assert body["resources"][0]["resource_type"] == "vm" and "access" in body["resources"][0]
    assert [r["resource_id"] for r in (await service.alice.get("/resources", params={"vendor": "nebula"})).json()["resources"]] == [first]
    assert (await service.alice.get("/resources", params={"status": "running"})).json()["total_count"] == 0
    offer_id = body["resources"][1]["offer_id"]
    assert (await service.alice.get("/resources", params={"offer_id": offer_id})).json()["total_count"] == 1
    page = (await service.alice.get("/resources", params={"limit": 1, "offset": 1})).json()
    assert [r["resource_id"] for r in page["resources"]] == [first] and (page["limit"], page["offset"]) == (1, 1)
    for bad in ({"status": "melted"}, {"vendor": "aws"}, {"offer_id": "x"}, {"limit": 0}, {"limit": 5000}, {"offset": -3}):
        assert (await service.alice.get("/resources", params=bad)).status_code == 422, bad


@pytest.mark.parametrize("service_backend", BACKENDS)
async def test_the_listing_is_what_its_models_would_serialize(service: Any) -> None:
    """The listing is rendered without building its models (api/views.resource_list_json): its
    bytes must be those the `ResourceList` model gives for the same data, floats and times
    included, for rows in every shape (pending, running with access, billed nothing yet)."""
    pending = await procured_resource(service.alice, "nebula")
    running = await procured_resource(service.alice, "fal")
    not_yet = await procured_resource(service.alice, "vast")
    now = utcnow()
    await set_row(service, running, status="running", external_ip="198.51.100.4", ssh_port=2222, running_since=now - timedelta(hours=1),
                  price_per_hour=2.0, last_synced_at=now)
    # Running from a moment after now: nothing billed, a cost of exactly 0.
    await set_row(service, not_yet, status="running", running_since=now + timedelta(hours=1), price_per_hour=3, last_synced_at=now)
    raw = (await service.alice.get("/resources")).content
    assert schemas.ResourceList.model_validate_json(raw).model_dump_json().encode() == raw
    listed = {r["resource_id"]: r for r in json.loads(raw)["resources"]}
    assert listed[running]["cost_so_far"] > 0 and listed[not_yet]["cost_so_far"] == 0.0 and listed[pending]["cost_so_far"] == 0.0
    assert listed[running]["access"]["ssh_command"] == "ssh root@198.51.100.4 -p 2222"


async def test_details(service: Any) -> None:
    rid = await procured_resource(service.alice, "nebula")
    # Synced just now, so the GET does not re-read the (made-up) instance from the vendor.
    await set_row(
        service, rid, status="running", external_ip="198.51.100.4", ssh_port=2222, vendor_instance_id="n-1", last_synced_at=utcnow()
    )
    response = await service.alice.get(f"/resources/{rid}")
    assert response.status_code == 200
    body = response.json()
    for field in ("resource_id", "resource_type", "vendor", "vendor_region", "status", "created_at", "name", "status_message",
                  "access", "spec", "linked_resources", "offer_history", "pricing_total_hourly", "valid_from", "valid_to",
                  "last_synced_at", "region", "gpu_type", "gpu_count", "events_url"):
        assert field in body, field
    assert body["access"] == {"external_ip": "198.51.100.4", "internal_ip": None, "ssh_command": "ssh root@198.51.100.4 -p 2222", "ssh_port": 2222}
    assert body["offer_history"][-1]["role"] == "primary" and body["events_url"] == f"/resources/{rid}/events"
    assert body["spec"]["gpu_count"] == body["gpu_count"]
    assert (await service.bob.get(f"/resources/{rid}")).status_code == 404
    assert (await service.alice.get(f"/resources/{uuid.uuid4()}")).status_code == 404
    assert (await service.alice.get("/resources/123")).status_code == 422
    assert (await service.alice.get(f"/resources/{rid}", params={"force_refresh": "maybe"})).status_code == 422


async def test_delete_twice_is_409(service: Any) -> None:
    rid = await procured_resource(service.alice)
    response = await service.alice.delete(f"/resources/{rid}")
    assert response.status_code == 200
    assert response.json()["resource_id"] == rid and response.json()["status"] == "deleting" and response.json()["message"]
    again = await service.alice.delete(f"/resources/{rid}")
    assert again.status_code == 409 and "already being deleted" in again.json()["detail"]
    await set_row(service, rid, status="deleted")
    assert (await service.alice.delete(f"/resources/{rid}")).status_code == 409
    assert (await service.alice.get(f"/resources/{rid}")).json()["status"] == "deleted"


async def test_delete_errors(service: Any) -> None:
    rid = await procured_resource(service.alice)
    assert (await service.bob.delete(f"/resources/{rid}")).status_code == 404
    assert (await service.alice.delete(f"/resources/{uuid.uuid4()}")).status_code == 404
    assert (await service.alice.delete("/resources/not-a-uuid")).status_code == 422
    assert (await service.alice.delete(f"/resources/{rid}", params={"force": "perhaps"})).status_code == 422
    assert (await service.alice.get(f"/resources/{rid}")).json()["status"] == "pending"


async def test_force_delete_during_an_action(service: Any) -> None:
    rid = await procured_resource(service.alice, "nebula")
    await set_row(service, rid, status="running", vendor_instance_id="n-1")
    assert (await service.alice.post(f"/resources/{rid}/stop")).status_code == 202
    refused = await service.alice.delete(f"/resources/{rid}")
    assert refused.status_code == 409 and "force=true" in refused.json()["detail"]
    forced = await service.alice.delete(f"/resources/{rid}", params={"force": "true"})
    assert forced.status_code == 200 and forced.json()["status"] == "deleting"
    details = (await service.alice.get(f"/resources/{rid}")).json()
    assert details["pending_action"] is None and details["delete_requested_at"]


@pytest.mark.parametrize(
    ("vendor", "status", "action", "code", "after"),
    [
        ("nebula", "running", "stop", 202, "stopping"),
        ("nebula", "stopped", "start", 202, "starting"),
        ("nebula", "running", "reboot", 202, "rebooting"),
        ("nebula", "pending", "stop", 409, "pending"),
        ("nebula", "running", "start", 409, "running"),
        ("fal", "running", "stop", 409, "running"),
        ("fal", "running", "reboot", 409, "running"),
    ],
)
async def test_actions(service: Any, vendor: str, status: str, action: str, code: int, after: str) -> None:
    rid = await procured_resource(service.alice, vendor)
    await set_row(service, rid, status=status)
    response = await service.alice.post(f"/resources/{rid}/{action}")
    assert response.status_code == code, response.text
    if code == 202:
        assert response.json() == {
            "resource_id": rid, "status": after, "action": action,
            "message": f"{action} requested; poll GET /resources/{rid} for the outcome.",
        }
    else:
        assert isinstance(response.json()["detail"], str)
    assert (await service.alice.get(f"/resources/{rid}")).json()["status"] == after
    assert (await service.bob.post(f"/resources/{rid}/{action}")).status_code == 404


async def test_events(service: Any) -> None:
    rid = await procured_resource(service.alice)
    await service.alice.delete(f"/resources/{rid}")
    body = (await service.alice.get(f"/resources/{rid}/events")).json()
    assert body["resource_id"] == rid and body["total_count"] == 2
    assert [(e["from_status"], e["to_status"]) for e in body["events"]] == [(None, "pending"), ("pending", "deleting")]
    assert all(e["kind"] == "status_change" and e["at"] and e["reason"] for e in body["events"])
    assert (await service.bob.get(f"/resources/{rid}/events")).status_code == 404
    assert (await service.alice.get(f"/resources/{rid}/events", params={"limit": 0})).status_code == 422
    assert (await service.alice.get("/resources/x/events")).status_code == 422


async def test_oversized_body_on_any_post_is_413(service: Any) -> None:
    rid = await procured_resource(service.alice)
    response = await service.alice.post(f"/resources/{rid}/stop", content=b"x" * 300_000)
    assert response.status_code == 413 and "larger than" in response.json()["detail"]
    response = await service.alice.post("/procure_offer", content=b"{" + b" " * 300_000 + b"}", headers={"Content-Type": "application/json"})
    assert response.status_code == 413


async def test_paging_bounds(service: Any) -> None:
    for path in ("/resources", f"/resources/{uuid.uuid4()}/events"):
        response = await service.alice.get(path, params={"offset": 10**30})
        assert response.status_code == 422, response.text
