"""End to end through the API with the engine running and the sandbox vendors over HTTP:
procure -> ready with an SSH command -> stop/start -> delete -> deleted, nothing left on the vendor."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.helpers import first_offer, procure, wait_for
from tests.conftest import BACKENDS, SSH_KEY

FAST_ENGINE = {"engine_poll_seconds": 0.1, "provisioning_poll_seconds": 0.2, "refresh_interval_seconds": 1.0}


async def status_of(client: Any, resource_id: str) -> str:
    return (await client.get(f"/resources/{resource_id}")).json()["status"]


async def until_status(client: Any, resource_id: str, wanted: str) -> None:
    async def reached() -> bool:
        return await status_of(client, resource_id) == wanted

    await wait_for(reached, within=30)


def live_markers(service: Any, vendor: str) -> list[str]:
    state = service.vendors.sandboxes[vendor].state()
    return [i["marker"] for i in state["instances"] if i["phase"] not in ("deleted", "preempted")]


@pytest.mark.parametrize("settings_overrides", [FAST_ENGINE])
@pytest.mark.parametrize("service_engine", [True])
@pytest.mark.parametrize("service_backend", BACKENDS)
async def test_procure_stop_start_delete(service: Any) -> None:
    client = service.alice
    offer = await first_offer(client, "nebula")
    rid = (await procure(client, offer["offer_id"])).json()["resource_ids"][0]

    async def ready() -> dict[str, Any] | None:
        body = (await client.get(f"/offers/{offer['offer_id']}/status")).json()
        return body if body["procurement_status"] == "ready" else None

    status = await wait_for(ready, within=30)
    assert status["progress"] == "1/1 instances running"
    (instance,) = status["instances"]
    assert instance["status"] == "running" and instance["ssh_command"].startswith("ssh root@")
    details = (await client.get(f"/resources/{rid}", params={"force_refresh": "true"})).json()
    assert details["last_synced_at"] and details["valid_from"] and details["access"]["ssh_command"]
    assert any(m and rid in m for m in live_markers(service, "nebula"))

    assert (await client.post(f"/resources/{rid}/stop")).status_code == 202
    await until_status(client, rid, "stopped")
    assert (await client.post(f"/resources/{rid}/start")).status_code == 202
    await until_status(client, rid, "running")

    assert (await client.delete(f"/resources/{rid}")).status_code == 200
    await until_status(client, rid, "deleted")
    assert not any(m and rid in m for m in live_markers(service, "nebula"))
    # Ended: no address to an instance that is gone, and the vendor status is what the vendor last said.
    ended = (await client.get(f"/resources/{rid}")).json()
    assert ended["access"] == {"external_ip": None, "internal_ip": None, "ssh_command": None, "ssh_port": None}
    assert ended["vendor_status"] not in ("running", "RUNNING", None), ended["vendor_status"]
    assert (await client.get(f"/offers/{offer['offer_id']}/status")).json()["instances"][0]["ssh_command"] is None
    assert (await client.delete(f"/resources/{rid}")).status_code == 409
    events = (await client.get(f"/resources/{rid}/events")).json()["events"]
    path = [e["to_status"] for e in events if e["kind"] == "status_change"]
    assert path[0] == "pending" and path[-1] == "deleted"
    assert "running" in path and "stopped" in path and "deleting" in path


@pytest.mark.parametrize("settings_overrides", [FAST_ENGINE])
@pytest.mark.parametrize("service_engine", [True])
async def test_procure_by_spec_then_delete(service: Any) -> None:
    client = service.alice
    body = {"spec": {"compute": {"gpu_type": "H100", "gpu_count": 1}, "vendor": "fal"}, "ssh_public_key": SSH_KEY}
    rid = (await client.post("/procure_offer", json=body)).json()["resource_ids"][0]
    await until_status(client, rid, "running")
    details = (await client.get(f"/resources/{rid}")).json()
    assert details["vendor"] == "fal" and details["offer_id"] and details["offer_history"][-1]["role"] == "primary"
    assert (await client.delete(f"/resources/{rid}")).status_code == 200
    await until_status(client, rid, "deleted")
