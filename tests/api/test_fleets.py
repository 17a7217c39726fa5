"""Fleets over HTTP (docs/fleets.md): create, list, read, scale, delete; clear 422s for bad input,
409s for a taken name and a second delete, 402 for a budget that cannot hold the fleet, 404 for
another tenant's fleet; and the whole path with the engine: members linked to their fleet, the
fleet deleted once every vendor confirmed."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.helpers import wait_for
from tests.conftest import BACKENDS, SSH_KEY

FAST_ENGINE = {"engine_poll_seconds": 0.1, "provisioning_poll_seconds": 0.2, "refresh_interval_seconds": 1.0}
SPEC = {"compute": {"gpu_type": "H100", "gpu_count": 1}}


def body(**overrides: Any) -> dict[str, Any]:
    return {"name": "trainers", "spec": SPEC, "size": 2, "ssh_public_key": SSH_KEY, **overrides}


async def test_create_list_read_patch_delete(service: Any) -> None:
    created = await service.alice.post("/fleets", json=body(placement="pack", on_preemption="shrink", max_hourly_spend=40))
    assert created.status_code == 201, created.text
    fleet = created.json()
    fleet_id = fleet["fleet_id"]
    assert (fleet["status"], fleet["size"], fleet["counting"], fleet["running"]) == ("active", 2, 0, 0)
    assert (fleet["placement"], fleet["on_preemption"], fleet["max_hourly_spend"]) == ("pack", "shrink", 40.0)
    assert fleet["spec"]["compute"]["gpu_type"] == "H100" and fleet["members"] == []
    assert [e["kind"] for e in fleet["events"]] == ["fleet_created"]

    listed = (await service.alice.get("/fleets")).json()
    assert listed["total_count"] == 1 and listed["fleets"][0]["fleet_id"] == fleet_id
    assert (await service.bob.get("/fleets")).json()["total_count"] == 0
    assert (await service.bob.get(f"/fleets/{fleet_id}")).status_code == 404

    patched = await service.alice.patch(f"/fleets/{fleet_id}", json={"size": 3, "placement": "spread", "max_hourly_spend": None})
    assert patched.status_code == 200, patched.text
    assert (patched.json()["size"], patched.json()["placement"], patched.json()["max_hourly_spend"]) == (3, "spread", None)
    assert patched.json()["events"][-1]["kind"] == "fleet_changed"

    deleted = await service.alice.delete(f"/fleets/{fleet_id}")
    assert deleted.status_code == 200 and deleted.json()["status"] == "deleting"
    again = await service.alice.delete(f"/fleets/{fleet_id}")
    assert again.status_code == 409 and "already being deleted" in again.json()["detail"]
    refused = await service.alice.patch(f"/fleets/{fleet_id}", json={"size": 1})
    assert refused.status_code == 409
    events = (await service.alice.get(f"/fleets/{fleet_id}/events")).json()
    assert [e["kind"] for e in events["events"]] == ["fleet_created", "fleet_changed", "fleet_deleting"]


@pytest.mark.parametrize(
    ("overrides", "where", "words"),
    [
        ({"size": -1}, ["body", "size"], "greater than or equal to 0"),
        ({"size": 1001}, ["body", "size"], "less than or equal to 1000"),
        ({"on_preemption": "pray"}, ["body", "on_preemption"], "'replace' or 'shrink'"),
        ({"placement": "random"}, ["body", "placement"], "'spread' or 'pack'"),
        ({"ssh_public_key": "not a key"}, ["body", "ssh_public_key"], "not a valid OpenSSH public key"),
        ({"spec": {"compute": {"gpu_type": "Z999", "gpu_count": 1}}}, ["body", "spec", "compute", "gpu_type"], "Z999"),
        ({"spec": {"compute": {"gpu_type": "H100"}, "region": "Mars"}}, ["body", "spec", "region"], "unknown region"),
        ({"max_hourly_spend": -5}, ["body", "max_hourly_spend"], "positive amount"),
        ({"cloud_init": "echo hi"}, ["body", "cloud_init"], "#cloud-config"),
        ({"name": "   "}, ["body", "name"], "1-200 printable"),
        ({"colour": "blue"}, ["body", "colour"], "Extra inputs"),
    ],
)
async def test_bad_fleets_are_clear_422s(service: Any, overrides: dict[str, Any], where: list[str], words: str) -> None:
    answer = await service.alice.post("/fleets", json=body(**overrides))
    assert answer.status_code == 422, answer.text
    [item] = [i for i in answer.json()["detail"] if i["loc"] == where] or answer.json()["detail"][:1]
    assert item["loc"] == where and words in item["msg"], answer.json()


async def test_patch_and_missing_fleet_errors(service: Any) -> None:
    fleet_id = (await service.alice.post("/fleets", json=body())).json()["fleet_id"]
    empty = await service.alice.patch(f"/fleets/{fleet_id}", json={})
    assert empty.status_code == 422 and "at least one of" in empty.text
    assert (await service.alice.patch(f"/fleets/{fleet_id}", json={"size": 5000})).status_code == 422
    assert (await service.alice.patch(f"/fleets/{fleet_id}", json={"placement": "x"})).status_code == 422
    missing = "00000000-0000-0000-0000-000000000000"
    for call in (service.alice.get(f"/fleets/{missing}"), service.alice.patch(f"/fleets/{missing}", json={"size": 1}),
                 service.alice.delete(f"/fleets/{missing}"), service.alice.get(f"/fleets/{missing}/events")):
        answer = await call
        assert answer.status_code == 404 and answer.json() == {"detail": f"fleet {missing} not found"}
    assert (await service.alice.get("/fleets/not-a-uuid")).status_code == 422
    assert (await service.anonymous.get("/fleets")).status_code == 401


async def test_a_name_is_unique_among_live_fleets(service: Any) -> None:
    first = (await service.alice.post("/fleets", json=body())).json()["fleet_id"]
    taken = await service.alice.post("/fleets", json=body())
    assert taken.status_code == 409 and "already have a fleet named 'trainers'" in taken.json()["detail"]
    assert (await service.bob.post("/fleets", json=body())).status_code == 201  # another tenant's names are theirs
    assert (await service.alice.delete(f"/fleets/{first}")).status_code == 200
    assert (await service.alice.post("/fleets", json=body())).status_code == 409  # deleting is not deleted yet


async def test_budgets_hold_the_whole_fleet(service: Any) -> None:
    assert (await service.alice.put("/budget", json={"max_hourly_spend": 10})).status_code == 200
    unbounded = await service.alice.post("/fleets", json=body())
    assert unbounded.status_code == 422 and "max_price_per_gpu_hour" in unbounded.text
    too_big = await service.alice.post("/fleets", json=body(spec={"compute": {"gpu_type": "H100", "max_price_per_gpu_hour": 4}}, size=3))
    assert too_big.status_code == 402 and "max_hourly_spend exceeded" in too_big.json()["detail"]
    fits = await service.alice.post("/fleets", json=body(spec={"compute": {"gpu_type": "H100", "max_price_per_gpu_hour": 4}}, size=2))
    assert fits.status_code == 201, fits.text
    grown = await service.alice.patch(f"/fleets/{fits.json()['fleet_id']}", json={"size": 3})
    assert grown.status_code == 402


@pytest.mark.parametrize("settings_overrides", [FAST_ENGINE])
@pytest.mark.parametrize("service_engine", [True])
@pytest.mark.parametrize("service_backend", BACKENDS)
async def test_a_fleet_with_the_engine_links_members_and_deletes_them_all(service: Any) -> None:
    client = service.alice
    fleet_id = (await client.post("/fleets", json=body())).json()["fleet_id"]

    async def running() -> dict[str, Any] | None:
        fleet = (await client.get(f"/fleets/{fleet_id}")).json()
        return fleet if fleet["running"] == 2 and fleet["counting"] == 2 else None

    fleet = await wait_for(running, within=60)
    assert fleet["spend_per_hour"] > 0 and all(m["access"]["ssh_command"] for m in fleet["members"])
    member_id = fleet["members"][0]["resource_id"]
    detail = (await client.get(f"/resources/{member_id}")).json()
    assert detail["linked_resources"] == [
        {"resource_id": fleet_id, "resource_type": "fleet", "status": "active", "link_type": "fleet_member",
         "linked_since": detail["created_at"], "name": "trainers", "linked_until": None}
    ]
    patched = await client.patch(f"/resources/{member_id}", json={"auto_delete": {"spend_limit": 1000}})
    assert patched.json()["linked_resources"][0]["link_type"] == "fleet_member"

    assert (await client.delete(f"/fleets/{fleet_id}")).status_code == 200

    async def deleted() -> bool:
        return (await client.get(f"/fleets/{fleet_id}")).json()["status"] == "deleted"

    await wait_for(deleted, within=60)
    statuses = {(await client.get(f"/resources/{m['resource_id']}")).json()["status"] for m in fleet["members"]}
    assert statuses == {"deleted"}
    for sandbox in service.vendors.sandboxes.values():
        assert [i for i in sandbox.state()["instances"] if i["phase"] not in ("deleted", "preempted")] == []
    assert (await client.delete(f"/fleets/{fleet_id}")).status_code == 409
    assert (await client.get("/fleets")).json()["total_count"] == 0
    assert (await client.get("/fleets", params={"include_deleted": "true"})).json()["total_count"] == 1
