"""The Lambda Cloud adapter: pure mapping functions table-driven, then the real adapter against the
Lambda sandbox over HTTP on loopback: lifecycle, SSH keys, recovery, and every fault mode, checked
against the sandbox's own truth (no duplicate, no lost instance)."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import httpx
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
from gpusupply.sandbox import lambdalabs as sim
from gpusupply.vendors.base import VendorAdapter
from gpusupply.vendors.http import RetryPolicy, pacing
from gpusupply.vendors.lambdalabs import (
    LIMITS,
    LambdaAdapter,
    MalformedBody,
    classify_failure,
    error_fields,
    gpu_model,
    map_instance,
    map_offers,
    map_state,
    parse_gpu_description,
    parse_instance,
    parse_instance_types,
    parse_instances,
    parse_launch,
    parse_offer_id,
    parse_ssh_keys,
    region_location,
    ssh_key_identity,
)

from .lambda_fixtures import (
    API_KEY,
    READY_AFTER,
    SSH_PUBLIC_KEY,
    account_creates,
    creates_for,
    live_markers,
    make_adapter,
    procure_like_the_engine,
    request_for,
    roomiest,
    running_sandbox,
)

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
IS = InstanceState

# ===== pure functions ===============================================================================


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("booting", IS.PROVISIONING), ("active", IS.RUNNING), ("ACTIVE", IS.RUNNING), ("unhealthy", IS.ERROR),
        ("terminating", IS.TERMINATING), ("terminated", IS.TERMINATED), ("preempted", IS.TERMINATED),
        ("hibernating", IS.UNKNOWN), ("", IS.UNKNOWN), (None, IS.UNKNOWN),
    ],
)
def test_map_state(status, state) -> None:
    assert map_state(status) == state


def test_every_documented_status_maps_to_a_known_state() -> None:
    for word in ("booting", "active", "unhealthy", "terminated", "terminating", "preempted"):  # InstanceStatus enum
        assert map_state(word) != IS.UNKNOWN, word
    for word in set(sim.STATUS_BY_PHASE.values()):
        assert map_state(word) != IS.UNKNOWN, word


@pytest.mark.parametrize(
    ("name", "description", "country", "group"),
    [
        ("us-west-1", "California, USA", "US", "US"), ("us-midwest-2", None, "US", "US"), ("europe-central-1", "Germany", "DE", "EU"),
        ("asia-south-1", "India", "IN", "APAC"), ("asia-northeast-2", None, "KR", "APAC"), ("australia-east-1", None, "AU", "APAC"),
        ("me-west-1", "Israel", "IL", "Other"), ("europe-north-9", "Stockholm, Sweden", "SE", "EU"), ("moon-1", None, None, "Other"),
        (None, None, None, "Other"),
    ],
)
def test_region_location(name, description, country, group) -> None:
    assert region_location(name, description) == (country, group)


@pytest.mark.parametrize(
    ("description", "canonical"),
    [
        ("H100 (80 GB SXM5)", "nvidia-h100-sxm5-80gb"), ("H100 (80 GB PCIe)", "nvidia-h100-pcie-80gb"),
        ("A100 (40 GB SXM4)", "nvidia-a100-sxm4-40gb"), ("A100 (80 GB SXM4)", "nvidia-a100-sxm4-80gb"),
        ("A10 (24 GB PCIe)", "nvidia-a10-pcie-24gb"), ("A6000 (48 GB)", "nvidia-rtx-a6000-48gb"),
        ("GH200 (96 GB)", "nvidia-gh200-96gb"), ("B200 (180 GB SXM6)", "nvidia-b200-sxm6-180gb"),
        ("Tesla V100 (16 GB)", "nvidia-v100-sxm2-16gb"), ("Quantum QPU (1 GB)", "unknown-quantum-qpu"),
    ],
)
def test_gpu_model(description, canonical) -> None:
    assert gpu_model(description).canonical == canonical


def test_parse_gpu_description() -> None:
    assert parse_gpu_description("H100 (80 GB SXM5)") == ("H100 SXM5", 80.0)
    assert parse_gpu_description("GH200 (96 GB)") == ("GH200", 96.0)
    assert parse_gpu_description("RTX 6000") == ("RTX 6000", None)


DOC_ITEM = {  # InstanceTypes example of the OpenAPI document, with the doc's gpu_8x_a100 prices
    "instance_type": {
        "name": "gpu_8x_a100", "description": "8x A100 (40 GB SXM4)", "gpu_description": "A100 (40 GB SXM4)",
        "price_cents_per_hour": 1032, "specs": {"vcpus": 124, "memory_gib": 1800, "storage_gib": 6144, "gpus": 8},
    },
    "regions_with_capacity_available": [{"name": "us-west-1", "description": "California, USA"}, {"name": "europe-central-1", "description": "Germany"}],
}


def _item(**change: Any) -> dict[str, Any]:
    instance_type = {**DOC_ITEM["instance_type"], **change.pop("instance_type", {})}
    return {**DOC_ITEM, "instance_type": instance_type, **change}


@pytest.mark.parametrize(
    ("item", "count"),
    [
        (DOC_ITEM, 2),
        (_item(regions_with_capacity_available=[]), 0),  # no capacity anywhere: no offer
        (_item(instance_type={"price_cents_per_hour": None}), 0),
        (_item(instance_type={"specs": {"gpus": 0}}), 0),
        (_item(instance_type={"name": ""}), 0),
        (_item(regions_with_capacity_available="us-west-1"), 0),
        (_item(regions_with_capacity_available=[{"description": "no name"}, {"name": "us-east-1", "description": "Virginia, USA"}]), 1),
    ],
    ids=["doc-example", "no-region", "no-price", "no-gpus", "no-name", "regions-not-a-list", "one-region-without-name"],
)
def test_map_offers_counts(item, count) -> None:
    assert len(map_offers(item, NOW)) == count


def test_map_offers_normalizes_the_documented_example() -> None:
    west, germany = map_offers(DOC_ITEM, NOW)
    assert (west.vendor, west.vendor_offer_id, west.vendor_region, west.region, west.country) == ("lambda", "gpu_8x_a100@us-west-1", "us-west-1", "US", "US")
    assert (germany.region, germany.country) == ("EU", "DE")
    assert west.gpu_type == "nvidia-a100-sxm4-40gb" and west.gpu_family == "A100" and west.gpu_count == 8 and west.gpu_memory_gb == 40.0
    assert west.total_price_per_hour == pytest.approx(10.32) and west.gpu_price_per_hour == pytest.approx(1.29)
    assert (west.vcpu_count, west.memory_gb, west.disk_gb) == (124.0, 1800.0, 6144.0)
    assert west.contract_type == "ondemand" and west.available and west.fetched_at == NOW
    assert west.vendor_data == {"instance_type": "gpu_8x_a100", "region_name": "us-west-1", "vendor_gpu": "A100 (40 GB SXM4)", "price_cents_per_hour": 1032}


def test_parse_offer_id() -> None:
    assert parse_offer_id("gpu_1x_a10@us-east-1") == ("gpu_1x_a10", "us-east-1")
    for bad in ("gpu_1x_a10", "@us-east-1", "gpu_1x_a10@"):
        with pytest.raises(InvalidRequest):
            parse_offer_id(bad)


DOC_INSTANCE = {  # the Instance example of the OpenAPI document (restart/terminate answers)
    "id": "0920582c7ff041399e34823a0be62549", "name": "My Instance", "ip": "198.51.100.2", "private_ip": "10.0.2.100",
    "status": "active", "ssh_key_names": ["My SSH key"], "file_system_names": ["my-filesystem"],
    "region": {"name": "us-west-1", "description": "California, USA"},
    "instance_type": DOC_ITEM["instance_type"], "hostname": "198.51.100.2", "jupyter_token": "03b7d30d9d3e4d8fa41657bc0d478c1b",
    "actions": {"migrate": {"available": True}, "rebuild": {"available": True}, "restart": {"available": True},
                "cold_reboot": {"available": True}, "terminate": {"available": True}},
}
MARKER = "gpusupply-6b1e0f0e-3f0a-4c1e-9a57-1c2b3d4e5f60"


@pytest.mark.parametrize(
    ("row", "expect"),
    [
        (DOC_INSTANCE, {"vendor_instance_id": "0920582c7ff041399e34823a0be62549", "state": IS.RUNNING, "raw_status": "active",
                        "marker": "My Instance", "external_ip": "198.51.100.2", "ssh_port": 22, "vendor_region": "us-west-1",
                        "gpu_name": "A100 (40 GB SXM4)", "gpu_count": 8, "price_per_hour": 10.32, "resource_id": None}),
        ({**DOC_INSTANCE, "name": MARKER}, {"marker": MARKER, "resource_id": UUID(MARKER.removeprefix("gpusupply-"))}),
        ({k: v for k, v in DOC_INSTANCE.items() if k not in ("ip", "private_ip")} | {"status": "booting"},
         {"state": IS.PROVISIONING, "external_ip": None, "ssh_port": None}),
        ({**DOC_INSTANCE, "status": "preempted"}, {"state": IS.TERMINATED}),
        ({**DOC_INSTANCE, "status": "unhealthy"}, {"state": IS.ERROR}),
        ({**DOC_INSTANCE, "name": "", "instance_type": {}, "region": None}, {"marker": None, "gpu_count": None, "price_per_hour": None, "vendor_region": None}),
    ],
    ids=["doc-example", "ours", "booting", "preempted", "unhealthy", "sparse"],
)
def test_map_instance(row, expect) -> None:
    instance = map_instance(row)
    for name, value in expect.items():
        assert getattr(instance, name) == value, name


def test_map_instance_keeps_extras() -> None:
    extra = map_instance(DOC_INSTANCE).extra
    assert extra["ssh_user"] == "ubuntu" and extra["private_ip"] == "10.0.2.100" and extra["instance_type"] == "gpu_8x_a100"
    assert "jupyter_token" not in extra  # a credential: not copied into our rows


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (401, "global/invalid-api-key", AuthFailed),
        (403, "global/account-inactive", AuthFailed),
        (403, "global/invalid-address", AuthFailed),
        (404, "global/object-does-not-exist", NotFoundOnVendor),
        (400, "instance-operations/launch/insufficient-capacity", CapacityGone),
        (400, "global/quota-exceeded", CapacityGone),
        (400, "global/invalid-parameters", InvalidRequest),
        (400, "instance-operations/launch/file-system-in-wrong-region", InvalidRequest),
        (409, "global/duplicate", InvalidRequest),
        (503, "provider/internal-unavailable", VendorUnavailable),
        (400, "provider/quota-limited", VendorUnavailable),  # upstream: retryable whatever the status
        (500, "global/internal-error", VendorUnavailable),
        (429, "global/rate-limit-exceeded", RateLimited),
        (429, None, RateLimited),
        (401, None, AuthFailed),
        (404, None, NotFoundOnVendor),
        (502, None, VendorUnavailable),
        (418, None, InvalidRequest),
        (404, "global/some-new-code", InvalidRequest),
    ],
)
def test_classify_failure(status, code, kind) -> None:
    error = classify_failure(status, code, "the message", retry_after=2.5)
    assert type(error) is kind and error.vendor == "lambda" and error.vendor_message == "the message" and error.status == status
    if kind is RateLimited:
        assert error.retry_after == 2.5


def test_error_fields() -> None:
    body = {"error": {"code": "global/quota-exceeded", "message": "Quota exceeded.", "suggestion": "Contact Support."}}
    assert error_fields(body) == ("global/quota-exceeded", "Quota exceeded. (Contact Support.)")
    assert error_fields({"error": {"code": "x/y", "message": "m"}}) == ("x/y", "m")
    assert error_fields("<html>Bad Gateway</html>") == (None, "<html>Bad Gateway</html>")
    assert error_fields({"detail": "x"})[0] is None


@pytest.mark.parametrize(
    ("parse", "body"),
    [
        (parse_instance_types, {"data": []}), (parse_instance_types, {"data": {"t": "x"}}), (parse_instance_types, []),
        (parse_instances, {"data": {"items": []}}), (parse_instances, {"data": [{"status": "active"}]}),
        (parse_instances, {"data": [{"id": 7, "status": "active"}]}), (parse_instances, {"data": [{"id": "a"}]}), (parse_instances, None),
        (parse_instance, {"data": []}), (parse_instance, {"data": {"status": "active"}}),
        (parse_launch, {"data": {}}), (parse_launch, {"data": {"instance_ids": [""]}}), (parse_launch, {"data": {"instance_ids": "a"}}),
        (parse_ssh_keys, {"data": {}}), (parse_ssh_keys, {"data": [{"id": "k"}]}),
    ],
)
def test_parsers_refuse_wrong_shapes(parse, body) -> None:
    with pytest.raises(MalformedBody):
        parse(body)


def test_parsers_read_documented_shapes() -> None:
    assert parse_instance_types({"data": {"gpu_8x_a100": DOC_ITEM}}) == [DOC_ITEM]
    assert parse_instances({"data": [DOC_INSTANCE]}) == [DOC_INSTANCE] and parse_instances({"data": []}) == []
    assert parse_instance({"data": DOC_INSTANCE}) == DOC_INSTANCE
    assert parse_launch({"data": {"instance_ids": ["0920582c7ff041399e34823a0be62549"]}}) == ["0920582c7ff041399e34823a0be62549"]
    keys = [{"id": "ddf9a910ceb744a0bb95242cbba6cb50", "name": "my-public-key", "public_key": "ssh-ed25519 AAAA noname"}]
    assert parse_ssh_keys({"data": keys}) == keys


def test_ssh_key_identity() -> None:
    comparable, name = ssh_key_identity(SSH_PUBLIC_KEY)
    assert comparable == " ".join(SSH_PUBLIC_KEY.split()[:2])
    assert name.startswith("gpusupply-") and len(name) == len("gpusupply-") + 16 <= 64
    assert ssh_key_identity("  " + comparable + " another comment\n") == (comparable, name)
    for bad in ("", "ssh-ed25519", "ssh-ed25519 !!!not-base64"):
        with pytest.raises(InvalidRequest):
            ssh_key_identity(bad)


def test_pacing_stays_under_the_documented_limits_and_scales() -> None:
    assert LIMITS.key is not None and LIMITS.documented
    for limit in (LIMITS.key, LIMITS.routes["launch"]):
        rate, burst = pacing(limit)
        assert rate < limit[0] and 1 <= burst < limit[1]
        assert pacing(limit, 2.0)[0] == pytest.approx(2 * rate)
    assert LIMITS.routes["launch"][0] == pytest.approx(1 / 12)  # "one request per 12 seconds"


def test_the_sandbox_enforces_the_limits_the_adapter_assumes() -> None:
    assert sim.DEFAULT_RATE_LIMITS == {"api": LIMITS.key, "launch": LIMITS.routes["launch"]}


@pytest.mark.parametrize("base_url", ["http://127.0.0.1:9", "http://127.0.0.1:9/", "http://127.0.0.1:9/api/v1"])
async def test_the_adapter_appends_the_api_path_once(base_url) -> None:
    adapter = LambdaAdapter(base_url, "k")
    assert str(adapter._http._client.base_url) == "http://127.0.0.1:9/api/v1/"
    assert isinstance(adapter, VendorAdapter) and adapter.vendor == "lambda"
    caps = adapter.capabilities
    assert caps.reboot and caps.marker and not caps.stop_start and not caps.spot and not caps.idempotency_key
    await adapter.aclose()


def test_bad_adapter_options_are_refused() -> None:
    with pytest.raises(TypeError, match="price_table"):
        LambdaAdapter("http://127.0.0.1:9", "k", price_table={})
    with pytest.raises(ValueError):
        LambdaAdapter("http://127.0.0.1:9", "k", rate_scale=0)


# ===== against the sandbox over HTTP ===============================================================


@pytest.fixture
def served():
    with running_sandbox() as pair:
        yield pair


@pytest.fixture
async def adapter(served):
    _, url = served
    adapter = make_adapter(url)
    yield adapter
    await adapter.aclose()


async def test_offers_are_every_type_and_region_with_capacity(served, adapter) -> None:
    sandbox, _ = served
    offers = await adapter.list_offers()
    expected = {f"{t}@{r}" for (t, r), left in sandbox.capacity.items() if left > 0}
    assert {o.vendor_offer_id for o in offers} == expected
    for offer in offers:
        spec = sandbox.types[offer.vendor_data["instance_type"]]
        assert offer.gpu_known and offer.gpu_count == spec.gpus
        assert offer.total_price_per_hour == pytest.approx(spec.price_cents_per_hour / 100)
        assert offer.gpu_price_per_hour == pytest.approx(spec.price_cents_per_hour / 100 / spec.gpus)
    assert not any(o.vendor_data["instance_type"] in sim.NEVER_OFFERED for o in offers)
    assert {"H100", "A100"} <= {o.gpu_family for o in offers if o.region == "US"}


async def test_full_lifecycle(served, adapter) -> None:
    sandbox, _ = served
    offer = roomiest(sandbox, await adapter.list_offers(), gpu_family="H100")
    left = sandbox.capacity[(offer.vendor_data["instance_type"], offer.vendor_region)]
    request = request_for(offer, cloud_init="#cloud-config\npackages: [htop]\n")

    created = await adapter.create(request)
    assert created is not None and created.state == IS.PROVISIONING and created.marker == request.marker
    assert created.resource_id == request.resource_id and created.external_ip is None and created.vendor_region == offer.vendor_region
    instance_id = created.vendor_instance_id
    assert sandbox.capacity[(offer.vendor_data["instance_type"], offer.vendor_region)] == left - 1

    sandbox.clock.advance(READY_AFTER + 1)
    running = await adapter.get(instance_id)
    assert running.state == IS.RUNNING and running.external_ip and running.ssh_port == 22 and running.extra["ssh_user"] == "ubuntu"
    assert [i.vendor_instance_id for i in await adapter.list_instances()] == [instance_id]

    await adapter.reboot(instance_id)
    assert (await adapter.get(instance_id)).raw_status == "booting"
    sandbox.clock.advance(2)
    assert (await adapter.get(instance_id)).state == IS.RUNNING
    for action in (adapter.start, adapter.stop):
        with pytest.raises(Unsupported):
            await action(instance_id)

    await adapter.delete(instance_id)
    with pytest.raises(NotFoundOnVendor):
        await adapter.get(instance_id)
    assert await adapter.list_instances() == [] and await adapter.recover(request) is None
    truth = sandbox.state()
    assert [(c["marker"], c["user_data"]) for c in truth["creates"]] == [(request.marker, request.cloud_init)]
    assert [d["instance_id"] for d in truth["deletes"]] == [instance_id]
    assert sandbox.capacity[(offer.vendor_data["instance_type"], offer.vendor_region)] == left  # given back


async def test_the_ssh_key_is_registered_once_and_reused(served, adapter) -> None:
    sandbox, url = served
    offers = await adapter.list_offers()
    for _ in range(2):
        await adapter.create(request_for(roomiest(sandbox, offers)))
    keys = sandbox.ssh_keys[API_KEY]
    assert len(keys) == 1 and keys[0].name == ssh_key_identity(SSH_PUBLIC_KEY)[1]
    other = make_adapter(url)  # another process: finds the key by its data, whatever its comment
    await other.create(request_for(roomiest(sandbox, offers), ssh_public_key=SSH_PUBLIC_KEY.rsplit(" ", 1)[0] + " renamed@laptop"))
    await other.aclose()
    assert len(sandbox.ssh_keys[API_KEY]) == 1
    assert {c["ssh_key_name"] for c in account_creates(sandbox)} == {keys[0].name}


async def test_a_key_the_user_registered_under_another_name_is_used(served, adapter) -> None:
    sandbox, url = served
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {API_KEY}"}) as client:
        assert (await client.post("/api/v1/ssh-keys", json={"name": "my laptop", "public_key": SSH_PUBLIC_KEY})).status_code == 200
    request = request_for(roomiest(sandbox, await adapter.list_offers()))
    await adapter.create(request)
    assert [k.name for k in sandbox.ssh_keys[API_KEY]] == ["my laptop"] and creates_for(sandbox, request.marker)[0]["ssh_key_name"] == "my laptop"


async def test_a_key_deleted_on_lambda_is_registered_again(served, adapter) -> None:
    sandbox, url = served
    offers = await adapter.list_offers()
    await adapter.create(request_for(roomiest(sandbox, offers)))
    old = sandbox.ssh_keys[API_KEY][0].id
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {API_KEY}"}) as client:
        assert (await client.delete(f"/api/v1/ssh-keys/{old}")).status_code == 200
    request = request_for(roomiest(sandbox, offers))
    assert await adapter.create(request) is not None
    assert [k.id for k in sandbox.ssh_keys[API_KEY]] != [old] and len(sandbox.ssh_keys[API_KEY]) == 1
    assert len(creates_for(sandbox, request.marker)) == 1


async def test_no_capacity_is_capacity_gone_and_the_offer_leaves(served, adapter) -> None:
    sandbox, _ = served
    offers = await adapter.list_offers()
    offer = min(offers, key=lambda o: (sandbox.capacity[(o.vendor_data["instance_type"], o.vendor_region)], o.vendor_offer_id))
    for _ in range(sandbox.capacity[(offer.vendor_data["instance_type"], offer.vendor_region)]):
        await adapter.create(request_for(offer))
    request = request_for(offer)
    with pytest.raises(CapacityGone) as caught:
        await adapter.create(request)
    assert caught.value.vendor_message == sim.ERR_CAPACITY[1]
    assert creates_for(sandbox, request.marker) == []
    assert offer.vendor_offer_id not in {o.vendor_offer_id for o in await adapter.list_offers()}


async def test_quota_exceeded_is_capacity_gone(served, adapter) -> None:
    sandbox, _ = served
    sandbox.instance_quota = 1
    offers = await adapter.list_offers()
    await adapter.create(request_for(roomiest(sandbox, offers)))
    with pytest.raises(CapacityGone, match="quota"):
        await adapter.create(request_for(roomiest(sandbox, offers)))
    assert len(account_creates(sandbox)) == 1


async def test_an_instance_type_no_longer_sold_is_capacity_gone(served, adapter) -> None:
    sandbox, _ = served
    offer = roomiest(sandbox, await adapter.list_offers())
    gone = dataclasses.replace(offer, vendor_offer_id=f"gpu_1x_retired@{offer.vendor_region}")
    with pytest.raises(CapacityGone):
        await adapter.create(request_for(gone))
    assert account_creates(sandbox) == []


async def test_a_bad_region_or_key_is_refused_before_any_create(served, adapter) -> None:
    sandbox, _ = served
    offer = roomiest(sandbox, await adapter.list_offers())
    with pytest.raises(InvalidRequest):
        await adapter.create(request_for(dataclasses.replace(offer, vendor_offer_id="gpu_1x_a10@mars-1")))
    with pytest.raises(InvalidRequest):
        await adapter.create(request_for(offer, ssh_public_key="not-a-key"))
    assert account_creates(sandbox) == []


async def test_delete_of_a_gone_or_unknown_instance_returns(served, adapter) -> None:
    sandbox, _ = served
    created = await adapter.create(request_for(roomiest(sandbox, await adapter.list_offers())))
    await adapter.delete(created.vendor_instance_id)
    await adapter.delete(created.vendor_instance_id)
    await adapter.delete("0" * 32)
    with pytest.raises(NotFoundOnVendor):
        await adapter.reboot("0" * 32)


async def test_other_accounts_are_invisible(served, adapter) -> None:
    sandbox, url = served
    created = await adapter.create(request_for(roomiest(sandbox, await adapter.list_offers())))
    stranger = make_adapter(url, api_key="someone_else")
    assert await stranger.list_instances() == []
    with pytest.raises(NotFoundOnVendor):
        await stranger.get(created.vendor_instance_id)
    await stranger.delete(created.vendor_instance_id)  # not theirs: 404, so "gone" for them
    await stranger.aclose()
    assert [i.vendor_instance_id for i in await adapter.list_instances()] == [created.vendor_instance_id]


@pytest.mark.parametrize("api_key", ["", "   "])
async def test_a_missing_key_is_auth_failed(served, api_key) -> None:
    adapter = make_adapter(served[1], api_key=api_key)
    with pytest.raises(AuthFailed) as caught:
        await adapter.list_offers()
    assert caught.value.status == 401 and caught.value.vendor_message.startswith(sim.ERR_UNAUTHORIZED[1])
    await adapter.aclose()


async def test_errors_never_carry_the_api_key(served, adapter) -> None:
    sandbox, _ = served
    offer = roomiest(sandbox, await adapter.list_offers())
    errors: list[Exception] = []
    for call in (adapter.get("nope"), adapter.reboot("nope"), adapter.create(request_for(offer, ssh_public_key="x"))):
        try:
            await call
        except Exception as exc:  # noqa: BLE001 - any error type: we only check its text
            errors.append(exc)
    assert len(errors) == 3
    for exc in errors:
        assert API_KEY not in str(exc) and API_KEY not in getattr(exc, "vendor_message", "")


# ----- faults --------------------------------------------------------------------------------------


async def test_429_storm_calls_still_succeed(served, adapter) -> None:
    sandbox, _ = served
    await adapter.create(request_for(roomiest(sandbox, await adapter.list_offers())))
    sandbox.faults.faults = {"429": 0.5}
    for _ in range(4):
        assert len(await adapter.list_instances()) == 1
    assert sandbox.faults.injected["429"] >= 2  # each answered with Retry-After: 1, and waited out


async def test_pacing_keeps_launches_and_reads_under_the_documented_limits() -> None:
    """The sandbox at 10x the documented rates, the adapter paced at 5x: 3 launches (1 per 12 s ->
    1 per 2.4 s against the sandbox's 1.2 s) and 15 reads at once all go through. A launch is sent
    once, so a 429 fails it: at 10x on both sides, a process starved at load 25 sent two launches
    inside the sandbox's 1.2 s. Half the sandbox's rate leaves a stall of a slot's length room."""
    with running_sandbox(rate_limits=True, rate_scale=10.0) as (sandbox, url):
        adapter = make_adapter(url, rate_scale=5.0)
        offers = await adapter.list_offers()
        requests = [request_for(roomiest(sandbox, offers)) for _ in range(3)]
        reads = [adapter.list_instances() for _ in range(15)]
        results = await asyncio.gather(*(adapter.create(r) for r in requests), *reads)
        await adapter.aclose()
        assert all(r is not None for r in results[:3])
        assert len(account_creates(sandbox)) == 3
        # Not counted here: whether the sandbox said 429 depends on the machine's load (a starved
        # process handles paced requests together). That the pacing stays inside the limits is
        # checked as arithmetic, load-free, in test_registry.py for every vendor and route.


async def test_the_rate_scale_setting_paces_the_adapter_and_its_sandbox_alike() -> None:
    """GPUSUPPLY_VENDOR_RATE_SCALE through the registry: the in-process sandbox's limits and the
    adapter's pacing are both 10x, so 3 launches at once go through and the sandbox never says 429."""
    from gpusupply.sandbox.mode import build_vendors
    from gpusupply.settings import Settings

    settings = Settings(enabled_vendors="lambda", lambda_api_key=None, sandbox_ready_after=0.2, sandbox_offers=60,
                        vendor_rate_scale=10.0)
    vendors = await build_vendors(settings)
    try:
        sandbox, adapter = vendors.sandboxes["lambda"], vendors.adapters["lambda"]
        assert sandbox.config.rate_scale == 10.0 and sandbox.config.rate_limits
        assert adapter._http._rates["launch"] == pacing(LIMITS.routes["launch"], 10.0)
        offers = await adapter.list_offers()
        created = await asyncio.gather(*(adapter.create(request_for(roomiest(sandbox, offers))) for _ in range(3)))
        assert len({c.vendor_instance_id for c in created}) == 3
        # Not counted here: whether the sandbox said 429 depends on the machine's load (a starved
        # process handles paced requests together). That the pacing stays inside the limits is
        # checked as arithmetic, load-free, in test_registry.py for every vendor and route.
    finally:
        await vendors.aclose()


async def test_rate_scale_setting_is_bounded() -> None:
    from pydantic import ValidationError

    from gpusupply.settings import Settings

    for bad in (0, -1, 1001):
        with pytest.raises(ValidationError, match="vendor_rate_scale"):
            Settings(vendor_rate_scale=bad)


async def test_without_pacing_the_limit_bites_and_reads_still_succeed() -> None:
    with running_sandbox(rate_limits=True, rate_scale=10.0) as (sandbox, url):
        adapter = make_adapter(url, rate_scale=1000.0, retry=RetryPolicy(attempts=40, base_delay=0.01, max_delay=0.1))
        results = await asyncio.gather(*(adapter.list_instances() for _ in range(20)))
        await adapter.aclose()
        assert all(r == [] for r in results)
        assert sandbox.rate_limited > 0  # Retry-After was honoured, every call succeeded


async def test_a_rate_limited_launch_is_rate_limited_and_creates_nothing() -> None:
    with running_sandbox(rate_limits=True, rate_scale=10.0) as (sandbox, url):
        sandbox.rate_limits = {"api": (1000.0, 100.0), "launch": sim.DEFAULT_RATE_LIMITS["launch"]}  # only launch's own limit
        adapter = make_adapter(url, rate_scale=1000.0)
        offers = await adapter.list_offers()
        outcomes = []
        for _ in range(4):
            request = request_for(roomiest(sandbox, offers))
            try:
                outcomes.append(await adapter.create(request) is not None)
            except RateLimited as exc:
                assert exc.retry_after and exc.retry_after > 0 and creates_for(sandbox, request.marker) == []
                outcomes.append(False)
        await adapter.aclose()
        assert outcomes.count(True) == len(account_creates(sandbox)) >= 1 and False in outcomes


async def test_5xx_on_reads_is_retried(served, adapter) -> None:
    sandbox, _ = served
    await adapter.create(request_for(roomiest(sandbox, await adapter.list_offers())))
    sandbox.faults.faults = {"500": 0.3, "503": 0.3}
    for _ in range(4):
        assert len(await adapter.list_instances()) == 1
    injected = sandbox.faults.injected
    assert injected["500"] + injected["503"] >= 1


async def test_persistent_5xx_is_vendor_unavailable_and_a_launch_is_sent_once(served) -> None:
    sandbox, url = served
    adapter = make_adapter(url, retry=RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02))
    offer = roomiest(sandbox, await adapter.list_offers())
    await adapter.create(request_for(offer))  # registers the key
    sandbox.faults.faults = {"503": 1.0}
    with pytest.raises(VendorUnavailable) as caught:
        await adapter.list_instances()
    assert caught.value.status == 503 and "provider/internal-unavailable" in caught.value.message
    before = sandbox.requests
    request = request_for(offer)
    with pytest.raises(VendorUnavailable):
        await adapter.create(request)
    assert sandbox.requests - before == 1  # a launch is never retried blindly
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
async def test_a_lost_launch_is_recovered_exactly_once(client_timeout, hang_seconds) -> None:
    with running_sandbox(hang_seconds=hang_seconds) as (sandbox, url):
        adapter = make_adapter(url, timeout=client_timeout)
        offers = await adapter.list_offers()
        await adapter.create(request_for(roomiest(sandbox, offers)))  # the key is registered before the fault
        sandbox.faults.faults = {"lost": 1.0}
        request = request_for(roomiest(sandbox, offers))
        with pytest.raises(VendorUnavailable):
            await adapter.create(request)
        sandbox.faults.faults = {}
        first = await adapter.recover(request)
        again = await adapter.recover(request)
        assert first is not None and first.marker == request.marker and first.resource_id == request.resource_id
        assert again is not None and again.vendor_instance_id == first.vendor_instance_id
        assert len(creates_for(sandbox, request.marker)) == 1 and live_markers(sandbox).count(request.marker) == 1
        await adapter.aclose()


async def test_a_lost_key_registration_is_found_on_the_next_try() -> None:
    with running_sandbox(hang_seconds=0.1) as (sandbox, url):
        adapter = make_adapter(url)
        request = request_for(roomiest(sandbox, await adapter.list_offers()))
        sandbox.faults.faults = {"lost": 1.0}
        with pytest.raises(VendorUnavailable):
            await adapter.create(request)  # the key POST is committed, its answer lost
        sandbox.faults.faults = {}
        assert await adapter.recover(request) is None
        assert await adapter.create(request) is not None
        assert len(sandbox.ssh_keys[API_KEY]) == 1 and len(creates_for(sandbox, request.marker)) == 1
        await adapter.aclose()


async def test_malformed_lists_raise_and_never_read_as_empty(served, adapter) -> None:
    sandbox, _ = served
    request = request_for(roomiest(sandbox, await adapter.list_offers()))
    await adapter.create(request)
    sandbox.faults.faults = {"malformed": 1.0}
    for _ in range(3):  # truncated JSON, wrong shape of data, an HTML page under 200
        with pytest.raises(VendorUnavailable):
            await adapter.list_instances()
    with pytest.raises(VendorUnavailable):
        await adapter.recover(request)  # never "nothing there", which would invite a second launch
    for _ in range(3):
        with pytest.raises(VendorUnavailable):
            await adapter.list_offers()
    assert sandbox.faults.injected["malformed"] >= 7


async def test_preempted_instances_show_terminated_until_terminated(served, adapter) -> None:
    sandbox, _ = served
    request = request_for(roomiest(sandbox, await adapter.list_offers()))
    created = await adapter.create(request)
    sandbox.faults.faults = {"preempt": 1.0}
    sandbox.clock.advance(READY_AFTER + 61)
    got = await adapter.get(created.vendor_instance_id)
    assert got.state == IS.TERMINATED and got.raw_status == "preempted"
    assert [(i.vendor_instance_id, i.state) for i in await adapter.list_instances()] == [(created.vendor_instance_id, IS.TERMINATED)]
    recovered = await adapter.recover(request)
    assert recovered is not None and recovered.state == IS.TERMINATED
    await adapter.delete(created.vendor_instance_id)
    assert await adapter.list_instances() == []


async def test_no_duplicate_and_no_leak_under_mixed_faults() -> None:
    faults = {"429": 0.03, "500": 0.1, "503": 0.1, "lost": 0.3, "malformed": 0.2}
    with running_sandbox(seed=11, hang_seconds=0.05) as (sandbox, url):
        adapter = make_adapter(url, timeout=2.0)
        offers = await adapter.list_offers()
        sandbox.faults.faults = faults
        requests = [request_for(roomiest(sandbox, offers)) for _ in range(6)]
        instances = [await procure_like_the_engine(adapter, request) for request in requests]
        for request, instance in zip(requests, instances, strict=True):
            assert instance.marker == request.marker
            assert len(creates_for(sandbox, request.marker)) == 1  # never launched twice
        for instance in instances:
            await adapter.delete(instance.vendor_instance_id)
        sandbox.faults.faults = {}
        assert await adapter.list_instances() == []
        truth: dict[str, Any] = sandbox.state()
        assert len(truth["creates"]) == 6 and {i["phase"] for i in truth["instances"]} == {"deleted"}
        assert len(sandbox.ssh_keys[API_KEY]) == 1
        injected = truth["injected"]
        assert injected["lost"] >= 2 and injected["malformed"] >= 1 and injected["500"] + injected["503"] >= 1
        await adapter.aclose()


async def test_a_phantom_not_found_is_not_found_while_the_listing_shows_the_instance(served, adapter) -> None:
    """The adapter reports what Lambda answers; the engine decides "gone" only when observations agree."""
    sandbox, _ = served
    created = await adapter.create(request_for(roomiest(sandbox, await adapter.list_offers())))
    sandbox.arm("phantom_404", created.vendor_instance_id)
    with pytest.raises(NotFoundOnVendor):
        await adapter.get(created.vendor_instance_id)
    assert [i.vendor_instance_id for i in await adapter.list_instances()] == [created.vendor_instance_id]
    assert (await adapter.get(created.vendor_instance_id)).vendor_instance_id == created.vendor_instance_id


async def test_an_ignored_terminate_leaves_the_instance_listed_and_a_repeat_terminates(served, adapter) -> None:
    sandbox, _ = served
    created = await adapter.create(request_for(roomiest(sandbox, await adapter.list_offers())))
    sandbox.arm("ignored_delete", created.vendor_instance_id)
    await adapter.delete(created.vendor_instance_id)  # acknowledged...
    assert [i.vendor_instance_id for i in await adapter.list_instances()] == [created.vendor_instance_id]  # ...not done
    await adapter.delete(created.vendor_instance_id)
    assert await adapter.list_instances() == [] and len(sandbox.deletes) == 1


async def test_a_late_launch_is_found_once_it_arrives_and_only_once() -> None:
    # Only the launch gives up early (1 s, the launch arriving 5 s late): the key's registration and
    # the recoveries keep the default timeout (0.2 s for every call timed out the key's registration
    # on a machine at load 25).
    with running_sandbox(late_seconds=5.0) as (sandbox, url):
        adapter, hasty = make_adapter(url), make_adapter(url, timeout=1.0)
        offers = await adapter.list_offers()
        await adapter.create(request_for(roomiest(sandbox, offers)))  # the key is registered before the fault
        request = request_for(roomiest(sandbox, offers))
        sandbox.arm("late_create")
        with pytest.raises(VendorUnavailable):
            await hasty.create(request)
        assert await adapter.recover(request) is None  # not arrived yet
        for _ in range(600):  # up to 30 s
            if creates_for(sandbox, request.marker):
                break
            await asyncio.sleep(0.05)
        found = await adapter.recover(request)
        assert found is not None and found.marker == request.marker and len(creates_for(sandbox, request.marker)) == 1
        await adapter.aclose()
        await hasty.aclose()


async def test_recover_accepts_the_marker_of_this_installation_and_the_legacy_form_only(served, adapter) -> None:
    sandbox, _ = served
    offer = roomiest(sandbox, await adapter.list_offers())
    ours = request_for(offer, installation_id="0123abcd")
    await adapter.create(ours)
    assert (await adapter.recover(ours)).marker == ours.marker and len(ours.marker) <= 64
    other = dataclasses.replace(ours, installation_id="fedc9876")  # same resource id, another installation
    assert await adapter.recover(other) is None
    legacy = request_for(offer)
    await adapter.create(legacy)  # a launch sent before installations were named
    upgraded = dataclasses.replace(legacy, installation_id="0123abcd")
    assert (await adapter.recover(upgraded)).marker == legacy.marker
