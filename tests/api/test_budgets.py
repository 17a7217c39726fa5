"""Guardrails over HTTP: GET/PUT /budget (tenant and admin keys), procurements refused with 402 and
their messages, `auto_delete` at procurement and with PATCH /resources/{id} (merge, clear, 409,
422, 404), and the whole path with the engine: a TTL deletes the resource on the vendor."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from gpusupply.db.models import Resource
from gpusupply.services.keys import create_key
from tests.api.helpers import first_offer, procure, wait_for
from tests.conftest import SSH_KEY


async def test_budget_get_put_and_tenancy(service: Any) -> None:
    empty = await service.alice.get("/budget")
    assert empty.status_code == 200
    body = empty.json()
    assert (body["tenant"], body["max_hourly_spend"], body["monthly_budget"], body["spent_this_month"]) == ("alice", None, None, 0.0)
    put = await service.alice.put("/budget", json={"max_hourly_spend": 12.5, "monthly_budget": 400, "delete_on_exhaustion": True})
    assert put.status_code == 200, put.text
    assert (put.json()["max_hourly_spend"], put.json()["monthly_budget"], put.json()["delete_on_exhaustion"]) == (12.5, 400.0, True)
    assert (await service.alice.get("/budget")).json()["monthly_budget"] == 400.0
    # PUT is the whole budget: a limit left out is removed.
    assert (await service.alice.put("/budget", json={"monthly_budget": 300})).json()["max_hourly_spend"] is None
    for call in (service.bob.get("/budget", params={"tenant": "alice"}),
                 service.bob.put("/budget", params={"tenant": "alice"}, json={"monthly_budget": 1})):
        refused = await call
        assert refused.status_code == 404 and refused.json() == {"detail": "tenant 'alice' not found"}
    assert (await service.bob.get("/budget", params={"tenant": "bob"})).json()["tenant"] == "bob"
    assert (await service.anonymous.get("/budget")).status_code == 401


async def test_admin_sees_and_sets_every_budget(service: Any) -> None:
    _, token = await create_key(service.db, "ops-key", tenant="ops", admin=True)
    async with service.client(token) as admin:
        assert (await admin.get("/budget")).json()["tenant"] == "ops"
        set_bob = await admin.put("/budget", params={"tenant": "bob"}, json={"max_hourly_spend": 3})
        assert set_bob.status_code == 200 and set_bob.json()["tenant"] == "bob"
        assert (await admin.get("/budget", params={"tenant": "bob"})).json()["max_hourly_spend"] == 3.0
        assert (await admin.get("/budget", params={"tenant": "nobody"})).status_code == 404
    assert (await service.bob.get("/budget")).json()["max_hourly_spend"] == 3.0


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"monthly_budget": 0}, "monthly_budget must be a positive amount"),
        ({"max_hourly_spend": -1}, "max_hourly_spend must be a positive amount"),
        ({"delete_on_exhaustion": True}, "delete_on_exhaustion needs a monthly_budget"),
        ({"monthly_budget": 10, "colour": "red"}, "Extra inputs are not permitted"),
        ({"monthly_budget": "lots"}, "Input should be a valid number"),
    ],
)
async def test_put_budget_refuses_bad_input(service: Any, body: dict[str, Any], fragment: str) -> None:
    response = await service.alice.put("/budget", json=body)
    assert response.status_code == 422
    assert fragment in response.json()["detail"][0]["msg"]


async def test_procurements_over_budget_are_402_with_the_numbers(service: Any) -> None:
    offer = await first_offer(service.alice, "nebula")
    price = offer["total_price_per_hour"]
    await service.alice.put("/budget", json={"max_hourly_spend": round(price / 2, 4)})
    refused = await procure(service.alice, offer["offer_id"])
    assert refused.status_code == 402
    detail = refused.json()["detail"]
    assert detail.startswith("procurement refused: max_hourly_spend exceeded: your live resources cost 0.00 USD/h")
    assert f"this procurement adds {price:,.2f} USD/h" in detail
    assert (await service.alice.get(f"/offers/{offer['offer_id']}")).json()["status"] == "available"

    await service.alice.put("/budget", json={"monthly_budget": round(price / 2, 4)})
    monthly = await procure(service.alice, offer["offer_id"])
    assert monthly.status_code == 402 and monthly.json()["detail"].startswith("procurement refused: monthly_budget exceeded")

    spec = {"compute": {"gpu_type": "H100", "gpu_count": 2, "max_price_per_gpu_hour": 5}}
    await service.alice.put("/budget", json={"max_hourly_spend": 8})
    by_spec = await service.alice.post("/procure_offer", json={"spec": spec, "ssh_public_key": SSH_KEY})
    assert by_spec.status_code == 402 and "this procurement adds 10.00 USD/h" in by_spec.json()["detail"]
    unbounded = await service.alice.post("/procure_offer", json={"spec": {"compute": {"gpu_type": "H100"}}, "ssh_public_key": SSH_KEY})
    assert unbounded.status_code == 422
    assert unbounded.json()["detail"][0]["loc"] == ["body", "spec", "compute", "max_price_per_gpu_hour"]

    await service.alice.put("/budget", json={})  # no limits: procures again
    assert (await procure(service.alice, offer["offer_id"])).status_code == 200


async def test_auto_delete_at_procurement_and_patch(service: Any) -> None:
    offer = await first_offer(service.alice, "nebula")
    response = await procure(service.alice, offer["offer_id"], auto_delete={"ttl_seconds": 3600, "spend_limit": 20})
    assert response.status_code == 200, response.text
    rid = response.json()["resource_ids"][0]
    detail = (await service.alice.get(f"/resources/{rid}")).json()
    delete_at = datetime.fromisoformat(detail["auto_delete"]["delete_at"])
    assert timedelta(minutes=59) < delete_at - datetime.now(UTC) <= timedelta(hours=1)
    assert detail["auto_delete"]["spend_limit"] == 20.0

    later = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    patched = await service.alice.patch(f"/resources/{rid}", json={"auto_delete": {"delete_at": later.isoformat()}})
    assert patched.status_code == 200, patched.text
    assert patched.json()["auto_delete"] == {"delete_at": later.isoformat().replace("+00:00", "Z"), "spend_limit": 20.0}
    cleared_limit = await service.alice.patch(f"/resources/{rid}", json={"auto_delete": {"spend_limit": None}})
    assert cleared_limit.json()["auto_delete"]["spend_limit"] is None  # null removes one limit, the other stays
    assert cleared_limit.json()["auto_delete"]["delete_at"] is not None
    cleared = await service.alice.patch(f"/resources/{rid}", json={"auto_delete": None})
    assert cleared.json()["auto_delete"] is None

    assert (await service.bob.patch(f"/resources/{rid}", json={"auto_delete": {"ttl_seconds": 60}})).status_code == 404
    past = await service.alice.patch(f"/resources/{rid}", json={"auto_delete": {"delete_at": "2020-01-01T00:00:00Z"}})
    assert past.status_code == 422 and "delete_at must be in the future" in past.json()["detail"][0]["msg"]
    both = await service.alice.patch(f"/resources/{rid}", json={"auto_delete": {"delete_at": later.isoformat(), "ttl_seconds": 5}})
    assert both.status_code == 422 and "not both" in both.json()["detail"][0]["msg"]
    assert (await service.alice.patch(f"/resources/{rid}", json={})).status_code == 422
    assert (await service.alice.patch(f"/resources/{rid}", json={"auto_delete": {"when": "soon"}})).status_code == 422

    assert (await service.alice.delete(f"/resources/{rid}")).status_code == 200
    too_late = await service.alice.patch(f"/resources/{rid}", json={"auto_delete": {"ttl_seconds": 60}})
    assert too_late.status_code == 409 and too_late.json()["detail"].endswith("is deleting; its limits can no longer change")


async def test_procure_refuses_bad_auto_delete(service: Any) -> None:
    offer = await first_offer(service.alice, "nebula")
    response = await procure(service.alice, offer["offer_id"], auto_delete={"spend_limit": -5})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "auto_delete", "spend_limit"]
    assert (await service.alice.get(f"/offers/{offer['offer_id']}")).json()["status"] == "available"


FAST_ENGINE = {"engine_poll_seconds": 0.1, "provisioning_poll_seconds": 0.2, "guardrail_interval_seconds": 0.5}


@pytest.mark.parametrize("settings_overrides", [FAST_ENGINE])
@pytest.mark.parametrize("service_engine", [True])
async def test_a_ttl_deletes_the_resource_through_the_engine(service: Any) -> None:
    offer = await first_offer(service.alice, "nebula")
    rid = (await procure(service.alice, offer["offer_id"])).json()["resource_ids"][0]

    async def status(wanted: str) -> bool:
        return (await service.alice.get(f"/resources/{rid}")).json()["status"] == wanted

    await wait_for(lambda: status("running"), within=30)
    assert (await service.alice.patch(f"/resources/{rid}", json={"auto_delete": {"ttl_seconds": 3600}})).status_code == 200
    # The hour passes (test setup, instead of waiting): the engine's next guardrail round deletes it.
    async with service.db.transaction() as session:
        await session.execute(
            update(Resource).where(Resource.id == uuid.UUID(rid)).values(auto_delete_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    await wait_for(lambda: status("deleted"), within=30)
    events = (await service.alice.get(f"/resources/{rid}/events")).json()["events"]
    (auto,) = [e for e in events if e["kind"] == "auto_delete"]
    assert auto["reason"].startswith("auto-delete: delete_at ") and auto["data"] == {"trigger": "delete_at"}
    state = service.vendors.sandboxes["nebula"].state()
    assert not any(i["marker"] and rid in i["marker"] and i["phase"] not in ("deleted", "preempted") for i in state["instances"])
