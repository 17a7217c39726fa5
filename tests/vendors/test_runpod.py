"""The RunPod adapter: pure mapping functions table-driven, then the real adapter against the RunPod
sandbox over HTTP on loopback (GraphQL): lifecycle, spot, recovery and every fault mode, checked
against the sandbox's own truth (no duplicate, no lost pod)."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest

from gpusupply.core.errors import (
    AuthFailed,
    CapacityGone,
    InvalidRequest,
    NotFoundOnVendor,
    RateLimited,
    Unsupported,
    VendorUnavailable,
)
from gpusupply.core.states import InstanceState
from gpusupply.sandbox import runpod as sim
from gpusupply.vendors.base import VendorAdapter
from gpusupply.vendors.http import RetryPolicy, pacing
from gpusupply.vendors.runpod import (
    CAPABILITIES,
    DEPLOY_ON_DEMAND,
    LIMITS,
    OPERATION_GROUPS,
    RENT_INTERRUPTABLE,
    MalformedAnswer,
    RunPodAdapter,
    catalog_query,
    classify_failure,
    create_input,
    map_offers,
    map_pod,
    map_state,
    parse_pods,
    ssh_endpoint,
)

from .runpod_fixtures import (
    API_KEY,
    READY_AFTER,
    SSH_PUBLIC_KEY,
    available,
    creates_for,
    live_markers,
    make_adapter,
    procure_like_the_engine,
    request_for,
    running_sandbox,
)

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
IS = InstanceState
MARKER = "gpusupply-6b1e0f0e-3f0a-4c1e-9a57-1c2b3d4e5f60"

# ===== pure functions ===============================================================================

RUNTIME = {"uptimeInSeconds": 12, "ports": [
    {"ip": "100.65.0.7", "isIpPublic": False, "privatePort": 8888, "publicPort": 60001, "type": "http"},
    {"ip": "203.0.113.9", "isIpPublic": True, "privatePort": 22, "publicPort": 40022, "type": "tcp"},
]}
POD = {  # the fields the official SDK's get_pods asks for, plus our marker as the name
    "id": "x7k2m9p4q1w3ab", "name": MARKER, "desiredStatus": "RUNNING", "podType": "RESERVED", "imageName": "runpod/base",
    "gpuCount": 2, "costPerHr": 5.98, "machineId": "m1", "uptimeSeconds": 12, "lastStatusChange": "Rented by User",
    "machine": {"gpuDisplayName": "H100 SXM"}, "runtime": RUNTIME,
}


@pytest.mark.parametrize(
    ("change", "state"),
    [
        ({}, IS.RUNNING), ({"runtime": None}, IS.PROVISIONING), ({"desiredStatus": "CREATED", "runtime": None}, IS.PROVISIONING),
        ({"desiredStatus": "RESTARTING"}, IS.REBOOTING), ({"desiredStatus": "EXITED", "runtime": None}, IS.STOPPED),
        ({"desiredStatus": "EXITED", "podType": "INTERRUPTABLE", "runtime": None}, IS.STOPPED),  # stopped, still has its GPUs
        ({"desiredStatus": "EXITED", "podType": "INTERRUPTABLE", "gpuCount": 0, "runtime": None}, IS.TERMINATED),  # taken back
        ({"desiredStatus": "EXITED", "gpuCount": 0}, IS.STOPPED),  # an on-demand pod is never preempted
        ({"desiredStatus": "PAUSED"}, IS.STOPPED), ({"desiredStatus": "DEAD"}, IS.ERROR),
        ({"desiredStatus": "TERMINATED"}, IS.TERMINATED), ({"desiredStatus": "MIGRATING"}, IS.UNKNOWN), ({"desiredStatus": None}, IS.UNKNOWN),
    ],
)
def test_map_state(change, state) -> None:
    assert map_state({**POD, **change}) == state


def test_every_status_the_sandbox_shows_maps_to_a_known_state() -> None:
    for status in ("CREATED", "RUNNING", "RESTARTING", "EXITED"):
        assert map_state({"desiredStatus": status, "runtime": {}}) != IS.UNKNOWN


@pytest.mark.parametrize(
    ("runtime", "endpoint"),
    [
        (RUNTIME, ("203.0.113.9", 40022)),
        (None, (None, None)),
        ({"ports": None}, (None, None)),
        ({"ports": [{**RUNTIME["ports"][1], "isIpPublic": False}]}, (None, None)),  # only RunPod's proxy reaches it
        ({"ports": [{**RUNTIME["ports"][1], "type": "http"}]}, (None, None)),
        ({"ports": [{**RUNTIME["ports"][1], "publicPort": None}]}, (None, None)),
        ({"ports": ["22:40022"]}, (None, None)),
    ],
)
def test_ssh_endpoint(runtime, endpoint) -> None:
    assert ssh_endpoint(runtime) == endpoint


def test_map_pod() -> None:
    pod = map_pod(POD)
    assert (pod.vendor_instance_id, pod.state, pod.raw_status, pod.marker) == ("x7k2m9p4q1w3ab", IS.RUNNING, "RUNNING", MARKER)
    assert pod.resource_id == UUID(MARKER.removeprefix("gpusupply-"))
    assert (pod.external_ip, pod.ssh_port, pod.gpu_name, pod.gpu_count, pod.price_per_hour) == (
        "203.0.113.9", 40022, "nvidia-h100-sxm5-80gb", 2, 5.98)
    assert pod.extra["ssh_user"] == "root" and pod.extra["preempted"] is False and not pod.lingers
    stopped = map_pod({**POD, "desiredStatus": "EXITED"})
    assert stopped.state == IS.STOPPED and stopped.external_ip is None  # no address unless running
    taken = map_pod({**POD, "desiredStatus": "EXITED", "podType": "INTERRUPTABLE", "gpuCount": 0, "runtime": None})
    assert taken.state == IS.TERMINATED and taken.raw_status == "EXITED (interrupted)" and taken.extra["preempted"] and taken.lingers
    assert map_pod({**POD, "name": ""}).marker is None
    for broken in ({**POD, "id": None}, {**POD, "id": ""}, {"name": MARKER}):
        with pytest.raises(MalformedAnswer):
            map_pod(broken)


def price_entry(price: float | None, bid: float | None, stock: str | None = "High", country: str | None = "US") -> dict[str, Any]:
    return {"uninterruptablePrice": price, "minimumBidPrice": bid, "stockStatus": stock, "countryCode": country, "minVcpu": 16, "minMemory": 62}


GPU = {
    "id": "NVIDIA A100 80GB PCIe", "displayName": "A100 PCIe", "memoryInGb": 80, "maxGpuCount": 2,
    "secureCloud": True, "communityCloud": True, "securePrice": 1.64, "communityPrice": 1.19,
    "secure1": price_entry(1.64, 0.82), "secure2": price_entry(1.64, 0.82, "Low", "RO"),
    "community1": price_entry(1.19, None, None, None), "community2": None,
    "secure3": price_entry(1.64, 0.82),  # above maxGpuCount: never offered
}


def test_map_offers() -> None:
    offers = {(o.vendor_offer_id, o.contract_type): o for o in map_offers(GPU, NOW)}
    assert set(offers) == {
        ("NVIDIA A100 80GB PCIe|SECURE|1", "ondemand"), ("NVIDIA A100 80GB PCIe|SECURE|1", "spot"),
        ("NVIDIA A100 80GB PCIe|SECURE|2", "ondemand"), ("NVIDIA A100 80GB PCIe|SECURE|2", "spot"),
        ("NVIDIA A100 80GB PCIe|COMMUNITY|1", "ondemand"),
    }
    two = offers[("NVIDIA A100 80GB PCIe|SECURE|2", "ondemand")]
    assert (two.gpu_type, two.gpu_family, two.gpu_count, two.gpu_memory_gb) == ("nvidia-a100-pcie-80gb", "A100", 2, 80.0)
    assert (two.gpu_price_per_hour, two.total_price_per_hour, two.region, two.country, two.vendor_region) == (1.64, 3.28, "EU", "RO", "secure-RO")
    assert two.available and two.vcpu_count == 16 and two.memory_gb == 62 and two.fetched_at == NOW
    assert two.vendor_data == {**two.vendor_data, "gpu_type_id": GPU["id"], "cloud_type": "SECURE", "gpu_count": 2, "min_bid": 0.82}
    spot = offers[("NVIDIA A100 80GB PCIe|SECURE|1", "spot")]
    assert (spot.gpu_price_per_hour, spot.total_price_per_hour, spot.region) == (0.82, 0.82, "US")
    community = offers[("NVIDIA A100 80GB PCIe|COMMUNITY|1", "ondemand")]
    assert not community.available and community.region == "Other" and community.vendor_region == "community"
    assert [o.vendor_offer_id for o in map_offers({**GPU, "communityCloud": False, "secureCloud": False}, NOW)] == []
    fallback = map_offers({**GPU, "secure1": price_entry(None, None)}, NOW)
    assert [o.gpu_price_per_hour for o in fallback if o.vendor_offer_id.endswith("SECURE|1")] == [1.64]  # the list price
    unknown = map_offers({**GPU, "displayName": "MI300X", "memoryInGb": 192}, NOW)[0]
    assert not unknown.gpu_known and unknown.gpu_memory_gb == 192
    with pytest.raises(MalformedAnswer):
        map_offers({**GPU, "id": None}, NOW)


def test_the_catalog_query_asks_every_count_and_cloud_once() -> None:
    query = catalog_query()
    assert query.count("lowestPrice(") == 16 and "secure8: lowestPrice(input: {gpuCount: 8, secureCloud: true})" in query
    assert "community1: lowestPrice(input: {gpuCount: 1, secureCloud: false})" in query


@pytest.mark.parametrize(
    ("message", "code", "status", "kind"),
    [
        (sim.MSG_NO_CAPACITY, "INTERNAL_SERVER_ERROR", 200, CapacityGone),
        ("This machine does not have the resources to deploy your pod.", None, 200, CapacityGone),
        (sim.MSG_UNAUTHORIZED, "UNAUTHENTICATED", 401, AuthFailed),
        ("Unauthorized", None, 200, AuthFailed),
        ("anything", None, 403, AuthFailed),
        (sim.MSG_RATE_LIMITED, "RATE_LIMITED", 429, RateLimited),
        ("Too many requests", None, 200, RateLimited),
        (sim.MSG_POD_NOT_FOUND, "NOT_FOUND", 200, NotFoundOnVendor),
        ("pod does not exist", None, 200, NotFoundOnVendor),
        (sim.MSG_SERVER_ERROR, "INTERNAL_SERVER_ERROR", 200, VendorUnavailable),
        ("Bad gateway", None, 502, VendorUnavailable),
        ("Your bid of $0.100/GPU is below the minimum bid", "BAD_USER_INPUT", 200, InvalidRequest),
        ("Cannot query field 'bogus' on type 'Pod'.", "GRAPHQL_VALIDATION_FAILED", 400, InvalidRequest),
    ],
)
def test_classify_failure(message, code, status, kind) -> None:
    error = classify_failure(status, code, message, retry_after=2.0)
    assert type(error) is kind and error.vendor_message == message and error.status == status
    if kind is RateLimited:
        assert error.retry_after == 2.0


@pytest.mark.parametrize(
    "body",
    [None, [], {}, {"myself": None}, {"myself": {"pods": None}}, {"myself": {"pods": {"items": []}}},
     {"myself": {"pods": [None]}}, {"myself": {"pods": [{"name": MARKER}]}}, {"myself": {"pods": [{"id": 7}]}}],
)
def test_parse_pods_refuses_wrong_shapes(body) -> None:
    with pytest.raises(MalformedAnswer):
        parse_pods(body)


def test_parse_pods_reads_the_documented_shape() -> None:
    assert parse_pods({"myself": {"pods": []}}) == [] and parse_pods({"myself": {"pods": [POD]}}) == [POD]


def offer_from(gpu: dict[str, Any], contract: str = "ondemand", count: int = 1):
    return next(o for o in map_offers(gpu, NOW) if o.contract_type == contract and o.gpu_count == count and "SECURE" in o.vendor_offer_id)


def test_create_input() -> None:
    request = request_for(offer_from(GPU))
    document, field, fields = create_input(request)
    assert (document, field) == (DEPLOY_ON_DEMAND, "podFindAndDeployOnDemand")
    assert fields == {
        "name": request.marker, "imageName": fields["imageName"], "gpuTypeId": GPU["id"], "gpuCount": 1, "cloudType": "SECURE",
        "supportPublicIp": True, "startSsh": True, "ports": "22/tcp", "containerDiskInGb": 40, "volumeInGb": 0,
        "env": [{"key": "PUBLIC_KEY", "value": SSH_PUBLIC_KEY}], "countryCode": "US",
    }
    document, field, fields = create_input(request_for(offer_from(GPU, "spot")))
    assert (document, field, fields["bidPerGpu"]) == (RENT_INTERRUPTABLE, "podRentInterruptable", 0.82)
    no_country = dataclasses.replace(offer_from(GPU), vendor_data={})
    assert create_input(request_for(no_country))[2]["gpuTypeId"] == GPU["id"] and "countryCode" not in create_input(request_for(no_country))[2]
    with pytest.raises(InvalidRequest, match="cloud-init"):
        create_input(request_for(offer_from(GPU), cloud_init="#!/bin/sh\n"))
    for key in ("", "not-a-key", "ssh-ed25519 AAAA\nssh-rsa BBBB"):
        with pytest.raises(InvalidRequest, match="ssh public key"):
            create_input(request_for(offer_from(GPU), ssh_public_key=key))
    with pytest.raises(InvalidRequest, match="not runpod"):
        create_input(request_for(dataclasses.replace(offer_from(GPU), vendor="vast")))


def test_capabilities_and_protocol() -> None:
    adapter = RunPodAdapter("http://127.0.0.1:9", "k")
    assert isinstance(adapter, VendorAdapter) and adapter.capabilities == CAPABILITIES
    assert CAPABILITIES.spot and CAPABILITIES.stop_start and CAPABILITIES.marker and not CAPABILITIES.reboot
    assert not CAPABILITIES.stopped_bills_gpu
    with pytest.raises(TypeError):
        RunPodAdapter("http://127.0.0.1:9", "k", page_size=3)


def test_pacing_stays_under_every_assumed_limit_and_scales() -> None:
    for limit in LIMITS.routes.values():
        rate, burst = pacing(limit)
        limit_rate, limit_burst = limit
        assert rate < limit_rate and burst < limit_burst or burst == 1.0
    assert pacing(LIMITS.routes["create"], 2.0)[0] == pytest.approx(2 * pacing(LIMITS.routes["create"])[0])
    assert set(OPERATION_GROUPS.values()) == set(LIMITS.routes)


def test_the_sandbox_enforces_the_limits_the_adapter_assumes() -> None:
    assert sim.RunPodSandbox.rate_limits is LIMITS.routes  # stated once, read by both


# ===== against the sandbox over HTTP ===============================================================


@pytest.fixture
def served():
    with running_sandbox() as pair:
        yield pair


@pytest.fixture
async def adapter(served):
    adapter = make_adapter(served[1])
    yield adapter
    await adapter.aclose()


async def test_offers_are_every_gpu_type_normalized(served, adapter) -> None:
    sandbox, _ = served
    offers = await adapter.list_offers()
    assert {o.vendor_data["gpu_type_id"] for o in offers} == set(sandbox.gpu_types)
    assert {"H100", "A100"} <= {o.gpu_family for o in offers if o.available and o.contract_type == "ondemand"}
    assert {o.contract_type for o in offers} == {"ondemand", "spot"} and all(o.gpu_known for o in offers)
    for offer in offers:
        truth = sandbox.gpu_types[offer.vendor_data["gpu_type_id"]]
        cloud = offer.vendor_data["cloud_type"]
        expected = truth.price(cloud) if offer.contract_type == "ondemand" else truth.spot(cloud)
        assert offer.gpu_price_per_hour == expected and offer.total_price_per_hour == pytest.approx(expected * offer.gpu_count)
        fits = sandbox.free_machines(truth.gpu.id, offer.gpu_count, cloud=cloud)
        assert offer.available == bool(fits)
        if fits:
            assert offer.country in {m.country for _, m in fits}
        assert offer.gpu_count <= sandbox.max_count(truth.gpu.id, cloud)


async def test_full_lifecycle(served, adapter) -> None:
    sandbox, _ = served
    offer = available(await adapter.list_offers(), gpu_family="H100")
    request = request_for(offer)

    created = await adapter.create(request)
    assert created.state == IS.PROVISIONING and created.marker == request.marker and created.external_ip is None
    assert created.resource_id == request.resource_id
    pod_id = created.vendor_instance_id
    pod = sandbox.instances[pod_id]
    assert pod.data["env"] == [("PUBLIC_KEY", SSH_PUBLIC_KEY)] and pod.data["volume"] == 0 and not pod.interruptible
    machine = sandbox.machines[pod.machine_id]
    assert (machine.cloud, machine.country, machine.gpu_type_id) == (offer.vendor_data["cloud_type"], offer.country, offer.vendor_data["gpu_type_id"])

    sandbox.clock.advance(READY_AFTER + 1)
    running = await adapter.get(pod_id)
    assert running.state == IS.RUNNING and running.external_ip == pod.data["public_ip"]
    assert running.ssh_port == next(public for private, public, _ in pod.data["port_map"] if private == 22)
    assert running.price_per_hour == pytest.approx(offer.total_price_per_hour)
    assert [i.vendor_instance_id for i in await adapter.list_instances()] == [pod_id]

    await adapter.stop(pod_id)
    await adapter.stop(pod_id)  # a repeat: done
    sandbox.clock.advance(2)
    assert (await adapter.get(pod_id)).state == IS.STOPPED
    await adapter.start(pod_id)
    assert (await adapter.get(pod_id)).state == IS.PROVISIONING  # RUNNING, container not up yet
    await adapter.start(pod_id)  # a repeat: done
    sandbox.clock.advance(2)
    assert (await adapter.get(pod_id)).state == IS.RUNNING
    with pytest.raises(Unsupported):
        await adapter.reboot(pod_id)

    await adapter.delete(pod_id)
    await adapter.delete(pod_id)  # gone already: fine
    with pytest.raises(NotFoundOnVendor):
        await adapter.get(pod_id)
    assert await adapter.list_instances() == [] and await adapter.recover(request) is None
    truth = sandbox.state()
    assert [c["marker"] for c in truth["creates"]] == [request.marker]
    assert [d["instance_id"] for d in truth["deletes"]] == [pod_id]


async def test_spot_pods_are_rented_with_the_minimum_bid_and_preempted(served, adapter) -> None:
    sandbox, _ = served
    offers = await adapter.list_offers()
    spot = available(offers, "spot")
    on_demand = await adapter.create(request_for(available(offers)))
    request = request_for(spot)
    created = await adapter.create(request)
    pod = sandbox.instances[created.vendor_instance_id]
    assert pod.interruptible and pod.data["cost_per_hr"] == pytest.approx(spot.total_price_per_hour)
    assert creates_for(sandbox, request.marker)[0]["interruptible"] is True
    sandbox.clock.advance(READY_AFTER + 1)
    with pytest.raises(Unsupported):
        await adapter.stop(created.vendor_instance_id)  # a spot pod is never stopped by us
    sandbox.faults.faults = {"preempt": 1.0}
    sandbox.clock.advance(61)
    taken = await adapter.get(created.vendor_instance_id)  # still there, EXITED without GPUs
    assert taken.state == IS.TERMINATED and taken.raw_status == "EXITED (interrupted)" and taken.gpu_count == 0
    assert (await adapter.get(on_demand.vendor_instance_id)).state == IS.RUNNING  # on-demand is never taken back
    listed = {i.vendor_instance_id: i.state for i in await adapter.list_instances()}
    assert listed == {created.vendor_instance_id: IS.TERMINATED, on_demand.vendor_instance_id: IS.RUNNING}
    assert (await adapter.recover(request)).vendor_instance_id == created.vendor_instance_id
    await adapter.delete(created.vendor_instance_id)  # the record can still be terminated
    assert [i.vendor_instance_id for i in await adapter.list_instances()] == [on_demand.vendor_instance_id]


async def test_a_bid_under_the_minimum_is_refused(served, adapter) -> None:
    sandbox, _ = served
    spot = available(await adapter.list_offers(), "spot")
    low = dataclasses.replace(spot, vendor_data={**spot.vendor_data, "min_bid": spot.vendor_data["min_bid"] / 2})
    with pytest.raises(InvalidRequest) as caught:
        await adapter.create(request_for(low))
    assert "minimum bid" in caught.value.vendor_message and sandbox.state()["creates"] == []


async def test_no_capacity_is_capacity_gone_and_the_offer_turns_unavailable(served, adapter) -> None:
    sandbox, _ = served
    offer = available(await adapter.list_offers(), gpu_family="A100")
    for machine in sandbox.machines.values():
        if machine.gpu_type_id == offer.vendor_data["gpu_type_id"]:
            machine.reserved = machine.size  # everyone else rented them
    request = request_for(offer)
    with pytest.raises(CapacityGone) as caught:
        await adapter.create(request)
    assert caught.value.vendor_message == sim.MSG_NO_CAPACITY and creates_for(sandbox, request.marker) == []
    again = [o for o in await adapter.list_offers() if o.vendor_data["gpu_type_id"] == offer.vendor_data["gpu_type_id"]]
    assert again and not any(o.available for o in again)


async def test_pods_take_gpus_from_one_machine_and_give_them_back(served, adapter) -> None:
    sandbox, _ = served
    offer = available(await adapter.list_offers(), gpu_family="H100")
    gpu_id, cloud = offer.vendor_data["gpu_type_id"], offer.vendor_data["cloud_type"]
    free_before = sum(f for f, _ in sandbox.free_machines(gpu_id, 1, cloud=cloud))
    created = await adapter.create(request_for(offer))
    assert sum(f for f, _ in sandbox.free_machines(gpu_id, 1, cloud=cloud)) == free_before - offer.gpu_count
    await adapter.delete(created.vendor_instance_id)
    assert sum(f for f, _ in sandbox.free_machines(gpu_id, 1, cloud=cloud)) == free_before


async def test_cloud_init_and_bad_keys_are_refused_before_any_create(served, adapter) -> None:
    sandbox, _ = served
    offer = available(await adapter.list_offers())
    with pytest.raises(InvalidRequest, match="cloud-init"):
        await adapter.create(request_for(offer, cloud_init="#cloud-config\n"))
    with pytest.raises(InvalidRequest):
        await adapter.create(request_for(offer, ssh_public_key="not-a-key"))
    assert sandbox.requests == 1 and sandbox.state()["creates"] == []  # only the catalog read


async def test_unknown_pods(served, adapter) -> None:
    with pytest.raises(NotFoundOnVendor):
        await adapter.get("nosuchpod00000")
    await adapter.delete("nosuchpod00000")
    with pytest.raises(NotFoundOnVendor):
        await adapter.stop("nosuchpod00000")
    with pytest.raises(NotFoundOnVendor):
        await adapter.start("nosuchpod00000")


async def test_other_accounts_are_invisible(served, adapter) -> None:
    _, url = served
    created = await adapter.create(request_for(available(await adapter.list_offers())))
    stranger = make_adapter(url, api_key="rp_someone_else")
    assert await stranger.list_instances() == []
    with pytest.raises(NotFoundOnVendor):
        await stranger.get(created.vendor_instance_id)
    await stranger.delete(created.vendor_instance_id)  # not theirs: not found, so "gone" for them
    await stranger.aclose()
    assert [i.vendor_instance_id for i in await adapter.list_instances()] == [created.vendor_instance_id]


@pytest.mark.parametrize("api_key", ["", "   ", "short", "revoked_key_0001", "has space in it"])
async def test_a_missing_or_bad_key_is_auth_failed(served, api_key) -> None:
    adapter = make_adapter(served[1], api_key=api_key)
    with pytest.raises(AuthFailed) as caught:
        await adapter.list_offers()
    assert caught.value.status == 401 and caught.value.vendor_message == sim.MSG_UNAUTHORIZED
    await adapter.aclose()


async def test_errors_never_carry_the_api_key(served, adapter) -> None:
    errors: list[Exception] = []
    offer = available(await adapter.list_offers())
    for call in (adapter.get("nope"), adapter.stop("nope"), adapter.create(request_for(offer, ssh_public_key="x"))):
        try:
            await call
        except Exception as exc:  # noqa: BLE001 - any error type: we only check its text
            errors.append(exc)
    assert len(errors) == 3
    for exc in errors:
        assert API_KEY not in str(exc) and API_KEY not in getattr(exc, "vendor_message", "")


async def test_an_invalid_document_is_a_400_with_graphql_errors(served) -> None:
    import httpx

    _, url = served
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {API_KEY}"}) as client:
        bad_field = await client.post("/graphql", json={"query": "{ myself { pods { bogus } } }"})
        bad_syntax = await client.post("/graphql", json={"query": "{ myself { pods "})
        no_query = await client.post("/graphql", content=b"not json")
    assert bad_field.status_code == 400 and bad_field.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert bad_syntax.status_code == 400 and bad_syntax.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
    assert no_query.status_code == 400 and no_query.json()["errors"][0]["message"] == sim.MSG_BAD_BODY


# ----- faults --------------------------------------------------------------------------------------


async def test_429_storm_calls_still_succeed(served, adapter) -> None:
    sandbox, _ = served
    await adapter.create(request_for(available(await adapter.list_offers())))
    sandbox.faults.faults = {"429": 0.5}
    for _ in range(4):
        assert len(await adapter.list_instances()) == 1
    assert sandbox.faults.injected["429"] >= 2  # each one answered with Retry-After: 1, and waited out


async def test_pacing_keeps_a_burst_under_the_rate_limit() -> None:
    # Scale 2: one spare request of burst is a quarter second of jitter absorbed on a loaded machine.
    with running_sandbox(rate_limits=True, rate_scale=2.0) as (sandbox, url):
        adapter = make_adapter(url, rate_scale=2.0)
        results = await asyncio.gather(*(adapter.list_instances() for _ in range(16)))
        await adapter.aclose()
        assert all(r == [] for r in results)
        # Not counted here: whether the sandbox said 429 depends on the machine's load (a starved
        # process handles paced requests together). That the pacing stays inside the limits is
        # checked as arithmetic, load-free, in test_registry.py for every vendor and route.


async def test_without_pacing_the_limit_bites_and_retries_still_succeed() -> None:
    with running_sandbox(rate_limits=True, rate_scale=4.0) as (sandbox, url):
        adapter = make_adapter(url, rate_scale=1000.0, retry=RetryPolicy(attempts=40, base_delay=0.01, max_delay=0.1))
        results = await asyncio.gather(*(adapter.list_instances() for _ in range(24)))
        await adapter.aclose()
        assert all(r == [] for r in results)
        assert sandbox.rate_limited > 0  # Retry-After was honoured, every call succeeded


async def test_5xx_on_reads_is_retried(served, adapter) -> None:
    sandbox, _ = served
    await adapter.create(request_for(available(await adapter.list_offers())))
    sandbox.faults.faults = {"500": 0.3, "503": 0.3}
    for _ in range(4):
        assert len(await adapter.list_instances()) == 1
    assert sandbox.faults.injected["500"] + sandbox.faults.injected["503"] >= 1


async def test_persistent_5xx_is_vendor_unavailable_and_a_create_is_not_repeated(served) -> None:
    sandbox, url = served
    adapter = make_adapter(url, retry=RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02))
    offer = available(await adapter.list_offers())
    sandbox.faults.faults = {"503": 1.0}
    with pytest.raises(VendorUnavailable) as caught:
        await adapter.list_instances()
    assert caught.value.status == 503
    before = sandbox.requests
    request = request_for(offer)
    with pytest.raises(VendorUnavailable):
        await adapter.create(request)
    assert sandbox.requests - before == 1  # a create is never retried blindly
    sandbox.faults.faults = {}
    assert await adapter.recover(request) is None and creates_for(sandbox, request.marker) == []
    await adapter.aclose()


async def test_a_hang_is_vendor_unavailable_after_the_timeout() -> None:
    with running_sandbox(faults={"hang": 1.0}, hang_seconds=1.0) as (_, url):
        adapter = make_adapter(url, timeout=0.2, retry=RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02))
        with pytest.raises(VendorUnavailable, match="timed out"):
            await adapter.list_instances()
        await adapter.aclose()


@pytest.mark.parametrize(("client_timeout", "hang_seconds"), [(0.2, 0.6), (2.0, 0.1)], ids=["timeout", "502-after-hang"])
async def test_a_lost_create_is_recovered_exactly_once(client_timeout, hang_seconds) -> None:
    with running_sandbox(hang_seconds=hang_seconds) as (sandbox, url):
        adapter = make_adapter(url, timeout=client_timeout)
        request = request_for(available(await adapter.list_offers()))
        sandbox.faults.faults = {"lost": 1.0}
        with pytest.raises(VendorUnavailable):
            await adapter.create(request)
        sandbox.faults.faults = {}
        first = await adapter.recover(request)
        again = await adapter.recover(request)
        assert first is not None and first.marker == request.marker and first.resource_id == request.resource_id
        assert again is not None and again.vendor_instance_id == first.vendor_instance_id
        assert len(creates_for(sandbox, request.marker)) == 1 and live_markers(sandbox).count(request.marker) == 1
        await adapter.aclose()


async def test_malformed_lists_raise_and_never_read_as_empty(served, adapter) -> None:
    sandbox, _ = served
    request = request_for(available(await adapter.list_offers()))
    await adapter.create(request)
    sandbox.faults.faults = {"malformed": 1.0}
    for _ in range(3):  # truncated JSON, pods as an object, a pod without its id
        with pytest.raises(VendorUnavailable):
            await adapter.list_instances()
    with pytest.raises(VendorUnavailable):
        await adapter.recover(request)  # never "nothing there", which would invite a second create
    for _ in range(2):  # truncated JSON, gpuTypes as an object
        with pytest.raises(VendorUnavailable):
            await adapter.list_offers()
    assert sandbox.faults.injected["malformed"] >= 6


async def test_an_empty_account_list_malformed_as_null_data_is_refused(served, adapter) -> None:
    sandbox, _ = served
    sandbox._malformed_served = 2  # the third variant: with no pod to break, `data` is null
    sandbox.faults.faults = {"malformed": 1.0}
    with pytest.raises(VendorUnavailable, match="without data"):
        await adapter.list_instances()


async def test_no_duplicate_and_no_leak_under_mixed_faults() -> None:
    faults = {"429": 0.03, "500": 0.1, "503": 0.1, "lost": 0.3, "malformed": 0.2}
    with running_sandbox(seed=11, hang_seconds=0.05) as (sandbox, url):
        adapter = make_adapter(url, timeout=2.0)
        offers = await adapter.list_offers()
        sandbox.faults.faults = faults
        requests = [request_for(available(offers)) for _ in range(6)]
        instances = [await procure_like_the_engine(adapter, request) for request in requests]
        for request, instance in zip(requests, instances, strict=True):
            assert instance.marker == request.marker
            assert len(creates_for(sandbox, request.marker)) == 1  # never created twice
        for instance in instances:
            await adapter.delete(instance.vendor_instance_id)
        sandbox.faults.faults = {}
        assert await adapter.list_instances() == []
        truth: dict[str, Any] = sandbox.state()
        assert len(truth["creates"]) == 6 and {i["phase"] for i in truth["instances"]} == {"deleted"}
        injected = truth["injected"]
        assert injected["lost"] >= 2 and injected["malformed"] >= 1 and injected["500"] + injected["503"] >= 1
        await adapter.aclose()
