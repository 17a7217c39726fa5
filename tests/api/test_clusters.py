"""Clusters end to end (issue 15's "Done means"): the API with the engine running and the sandbox
vendors over HTTP. A cluster is procured all or nothing: ready with every node running, or every
created node deleted on the vendor and the procurement failed."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api.helpers import procure, search, wait_for
from tests.conftest import BACKENDS, SSH_KEY

FAST_ENGINE = {"engine_poll_seconds": 0.1, "provisioning_poll_seconds": 0.2, "refresh_interval_seconds": 1.0}
SECTORS = ("sector_1", "sector_2", "sector_3")
IB_16 = "compute:\n  gpu_type: H100\n  gpu_count: 16\n  interconnect: infiniband\n"


async def fal_sector_cluster(service: Any, free_nodes: int = 2) -> dict[str, Any]:
    """The cheapest 2 x 8 H100 InfiniBand offer (a fal sector), every sector holding `free_nodes`."""
    for sector in SECTORS:
        service.vendors.sandboxes["fal"].stock[("gpu_8x_h100_sxm5", sector)] = free_nodes
    body = await search(service.alice, IB_16, limit=100)
    offer: dict[str, Any] = body["offers"][0]
    assert offer["vendor"] == "fal"
    return offer


def live_fal_instances(service: Any) -> list[dict[str, Any]]:
    state = service.vendors.sandboxes["fal"].state()
    return [i for i in state["instances"] if i["phase"] not in ("deleted", "preempted")]


async def offer_status(client: Any, offer_id: str) -> dict[str, Any]:
    return (await client.get(f"/offers/{offer_id}/status")).json()


async def resource(client: Any, resource_id: str) -> dict[str, Any]:
    return (await client.get(f"/resources/{resource_id}")).json()


async def arm(service: Any, vendor: str, fault: str, *, after: int = 0) -> None:
    """A one-shot fault through the sandbox's own admin route (`after` such calls go through first)."""
    async with httpx.AsyncClient(base_url=service.vendors.urls[vendor]) as client:
        response = await client.post("/_sandbox/arm", json={"fault": fault, "after": after})
        assert response.status_code == 200, response.text


@pytest.mark.parametrize("settings_overrides", [FAST_ENGINE])
@pytest.mark.parametrize("service_engine", [True])
@pytest.mark.parametrize("service_backend", BACKENDS)
async def test_procure_a_fal_infiniband_cluster_then_delete_it(service: Any) -> None:
    client = service.alice
    offer = await fal_sector_cluster(service)
    assert (offer["type"], offer["node_count"], offer["gpus_per_node"]) == ("cluster", 2, 8)
    answer = await procure(client, offer["offer_id"], cluster_name="trainer")
    assert answer.status_code == 200, answer.text
    cluster_id, *node_ids = answer.json()["resource_ids"]
    assert len(node_ids) == 2

    async def ready() -> dict[str, Any] | None:
        status = await offer_status(client, offer["offer_id"])
        assert status["procurement_status"] != "failed", status
        return status if status["procurement_status"] == "ready" else None

    status = await wait_for(ready, within=60)
    assert status["progress"] == "2/2 instances running"
    assert sorted(i["resource_id"] for i in status["instances"]) == sorted(node_ids)
    assert all(i["status"] == "running" and i["ssh_command"].startswith("ssh root@") for i in status["instances"])
    assert status["resource_ids"] == [cluster_id, *node_ids] or set(status["resource_ids"]) == {cluster_id, *node_ids}

    cluster = await resource(client, cluster_id)
    assert (cluster["resource_type"], cluster["name"], cluster["status"]) == ("cluster", "trainer", "running")
    assert {(link["resource_id"], link["link_type"], link["status"]) for link in cluster["linked_resources"]} == {
        (node_id, "member", "running") for node_id in node_ids
    }
    assert cluster["pricing_total_hourly"] == pytest.approx(offer["total_price_per_hour"])
    node = await resource(client, node_ids[0])
    assert node["resource_type"] == "vm" and node["access"]["ssh_command"]
    assert [(link["resource_id"], link["link_type"]) for link in node["linked_resources"]] == [(cluster_id, "member_of")]
    # Both nodes in one sector's fabric.
    creates = service.vendors.sandboxes["fal"].state()["creates"]
    assert len(creates) == 2 and len({c["sector"] for c in creates}) == 1 and len(live_fal_instances(service)) == 2

    refused = await client.delete(f"/resources/{node_ids[0]}")
    assert refused.status_code == 409 and cluster_id in refused.json()["detail"] and "trainer" in refused.json()["detail"]

    assert (await client.delete(f"/resources/{cluster_id}")).status_code == 200

    async def deleted() -> bool:
        return (await resource(client, cluster_id))["status"] == "deleted"

    await wait_for(deleted, within=60)
    assert [(await resource(client, n))["status"] for n in node_ids] == ["deleted", "deleted"]
    assert live_fal_instances(service) == []


@pytest.mark.parametrize("settings_overrides", [FAST_ENGINE])
@pytest.mark.parametrize("service_engine", [True])
@pytest.mark.parametrize("service_backend", BACKENDS)
async def test_a_node_refused_by_the_vendor_rolls_the_cluster_back(service: Any) -> None:
    client = service.alice
    offer = await fal_sector_cluster(service)
    await arm(service, "fal", "refuse_create", after=1)  # the first create is made, the second refused
    answer = await procure(client, offer["offer_id"])
    cluster_id, *node_ids = answer.json()["resource_ids"]

    async def failed() -> dict[str, Any] | None:
        status = await offer_status(client, offer["offer_id"])
        return status if status["procurement_status"] == "failed" and (await resource(client, cluster_id))["status"] == "failed" else None

    status = await wait_for(failed, within=60)
    assert "rolled back" in status["failure_reason"] and "Insufficient capacity" in status["failure_reason"]
    assert any(node_id in status["failure_reason"] for node_id in node_ids)  # names the node
    sandbox = service.vendors.sandboxes["fal"].state()
    assert len(sandbox["creates"]) == 1  # the first node was made...
    assert live_fal_instances(service) == []  # ...and deleted on the vendor
    assert [(await resource(client, n))["status"] for n in node_ids] == ["failed", "failed"]


@pytest.mark.parametrize("settings_overrides", [FAST_ENGINE])
@pytest.mark.parametrize("service_engine", [True])
async def test_a_cluster_larger_than_the_sectors_free_nodes_is_refused_by_capacity(service: Any) -> None:
    client = service.alice
    offer = await fal_sector_cluster(service, free_nodes=1)
    cluster_id = (await procure(client, offer["offer_id"])).json()["resource_ids"][0]

    async def failed() -> bool:
        return (await resource(client, cluster_id))["status"] == "failed"

    await wait_for(failed, within=60)
    assert live_fal_instances(service) == []


@pytest.mark.parametrize("settings_overrides", [{**FAST_ENGINE, "provisioning_timeout_seconds": 4.0}])
@pytest.mark.parametrize("service_engine", [True])
async def test_a_node_that_never_comes_up_rolls_the_cluster_back_at_the_deadline(service: Any) -> None:
    client = service.alice
    offer = await fal_sector_cluster(service)
    await arm(service, "fal", "stall_create")
    cluster_id = (await procure(client, offer["offer_id"])).json()["resource_ids"][0]

    async def failed() -> dict[str, Any] | None:
        body = await resource(client, cluster_id)
        return body if body["status"] == "failed" else None

    body = await wait_for(failed, within=60)
    assert "rolled back" in body["status_message"]
    assert len(service.vendors.sandboxes["fal"].state()["creates"]) == 2
    assert live_fal_instances(service) == []


@pytest.mark.parametrize("settings_overrides", [FAST_ENGINE])
@pytest.mark.parametrize("service_engine", [True])
@pytest.mark.parametrize("service_backend", BACKENDS)
async def test_by_spec_a_full_sector_fails_over_to_the_next_placement(service: Any) -> None:
    client = service.alice
    fal = service.vendors.sandboxes["fal"]
    for sector, free in zip(SECTORS, (1, 2, 2), strict=True):  # the cheapest (first) sector takes one node only
        fal.stock[("gpu_8x_h100_sxm5", sector)] = free
    spec = {"vendor": "fal", "compute": {"gpu_type": "H100", "gpu_count": 16, "interconnect": "infiniband"}}
    answer = await client.post("/procure_offer", json={"spec": spec, "ssh_public_key": SSH_KEY, "cluster_name": "spec-trainer"})
    assert answer.status_code == 200, answer.text
    (cluster_id,) = answer.json()["resource_ids"]  # the nodes come with the placement

    async def running() -> dict[str, Any] | None:
        body = await resource(client, cluster_id)
        assert body["status"] not in ("failed", "deleting"), body
        return body if body["status"] == "running" else None

    body = await wait_for(running, within=90)
    assert body["resource_type"] == "cluster" and body["name"] == "spec-trainer"
    members = [link for link in body["linked_resources"] if link["link_type"] == "member"]
    assert sorted(link["status"] for link in members) == ["failed", "failed", "running", "running"]
    roles = [entry["role"] for entry in body["offer_history"]]
    assert roles[0] == "failed" and roles[-1] == "primary", body["offer_history"]
    creates = fal.state()["creates"]
    assert [c["sector"] for c in creates].count("sector_1") == 1  # the first placement's one node, then deleted
    assert {c["sector"] for c in creates[1:]} == {"sector_2"}
    assert (await client.delete(f"/resources/{cluster_id}")).status_code == 200

    async def deleted() -> bool:
        return (await resource(client, cluster_id))["status"] == "deleted"

    await wait_for(deleted, within=60)
    assert live_fal_instances(service) == []


@pytest.mark.parametrize("settings_overrides", [{**FAST_ENGINE, "guardrail_interval_seconds": 0.5}])
@pytest.mark.parametrize("service_engine", [True])
async def test_a_spend_limit_counts_every_node_and_deletes_the_whole_cluster(service: Any) -> None:
    client = service.alice
    offer = await fal_sector_cluster(service)
    cluster_id = (await procure(client, offer["offer_id"])).json()["resource_ids"][0]

    async def running() -> bool:
        return (await resource(client, cluster_id))["status"] == "running"

    await wait_for(running, within=60)

    async def costs_something() -> dict[str, Any] | None:
        body = await resource(client, cluster_id)
        return body if body["cost_so_far"] > 0 else None

    body = await wait_for(costs_something, within=30)  # the nodes bill; the cluster is their sum
    node_costs = [(await resource(client, link["resource_id"]))["cost_so_far"] for link in body["linked_resources"]]
    assert all(cost > 0 for cost in node_costs)
    patched = await client.patch(f"/resources/{cluster_id}", json={"auto_delete": {"spend_limit": body["cost_so_far"]}})
    assert patched.status_code == 200, patched.text

    async def deleted() -> bool:
        return (await resource(client, cluster_id))["status"] == "deleted"

    await wait_for(deleted, within=60)
    events = (await client.get(f"/resources/{cluster_id}/events")).json()["events"]
    assert any(e["kind"] == "auto_delete" and "spend limit" in (e["reason"] or "") for e in events)
    assert live_fal_instances(service) == []


@pytest.mark.parametrize("settings_overrides", [FAST_ENGINE])
@pytest.mark.parametrize("service_engine", [True])
async def test_stop_and_start_act_on_every_node_where_the_vendor_can(service: Any) -> None:
    client = service.alice
    body = await search(client, "vendor: nebula\ncompute:\n  gpu_type: H100\n  gpu_count: 16\n", limit=100)
    offer = next(o for o in body["offers"] if o["type"] == "cluster")
    cluster_id, *node_ids = (await procure(client, offer["offer_id"])).json()["resource_ids"]

    async def cluster_is(status: str) -> bool:
        return (await resource(client, cluster_id))["status"] == status

    await wait_for(lambda: cluster_is("running"), within=60)
    assert (await client.post(f"/resources/{cluster_id}/stop")).status_code == 202
    assert {(await resource(client, n))["status"] for n in node_ids} <= {"stopping", "stopped"}
    await wait_for(lambda: cluster_is("stopped"), within=60)
    assert [(await resource(client, n))["status"] for n in node_ids] == ["stopped"] * len(node_ids)
    again = await client.post(f"/resources/{cluster_id}/stop")
    assert again.status_code == 409 and "needs status running" in again.json()["detail"]
    assert (await client.post(f"/resources/{cluster_id}/start")).status_code == 202
    await wait_for(lambda: cluster_is("running"), within=60)
    assert (await client.delete(f"/resources/{cluster_id}")).status_code == 200
    await wait_for(lambda: cluster_is("deleted"), within=60)


@pytest.mark.parametrize("settings_overrides", [FAST_ENGINE])
@pytest.mark.parametrize("service_engine", [True])
async def test_a_cluster_action_the_vendor_cannot_do_is_a_409(service: Any) -> None:
    offer = await fal_sector_cluster(service)
    cluster_id = (await procure(service.alice, offer["offer_id"])).json()["resource_ids"][0]
    refused = await service.alice.post(f"/resources/{cluster_id}/stop")
    assert refused.status_code == 409 and "fal does not support stop" in refused.json()["detail"]
    assert (await service.alice.delete(f"/resources/{cluster_id}")).status_code == 200

    async def gone() -> bool:
        return (await resource(service.alice, cluster_id))["status"] == "deleted"

    await wait_for(gone, within=60)
    assert live_fal_instances(service) == []
