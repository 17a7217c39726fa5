"""The Nebula adapter: pure mapping functions table-driven, then the real adapter against the
Nebula sandbox over HTTP on loopback: lifecycle, recovery, paging, and every fault mode, checked
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
    VendorUnavailable,
)
from gpusupply.core.states import InstanceState
from gpusupply.sandbox import nebula as sim
from gpusupply.vendors.base import VendorAdapter
from gpusupply.vendors.http import RetryPolicy, pacing
from gpusupply.vendors.nebula import (
    LIMITS,
    MalformedBody,
    NebulaAdapter,
    check_envelope,
    choose_image,
    classify_failure,
    flatten_products,
    map_instance,
    map_offer,
    map_state,
    memory_hint,
    parse_detail,
    parse_images,
    parse_instance_page,
    parse_ssh_keys,
    region_location,
    ssh_key_identity,
    ssh_port_from_exposed_ports,
)

from .nebula_fixtures import (
    API_KEY,
    READY_AFTER,
    SSH_PUBLIC_KEY,
    account_creates,
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

# ===== pure functions ===============================================================================


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("Creating", IS.PROVISIONING), ("Pending", IS.PROVISIONING), ("Starting", IS.PROVISIONING),
        ("Running", IS.RUNNING), ("running", IS.RUNNING), (" RUNNING ", IS.RUNNING),
        ("Stopping", IS.STOPPING), ("Stopped", IS.STOPPED), ("Rebooting", IS.REBOOTING),
        ("Deleting", IS.TERMINATING), ("Deleted", IS.TERMINATED), ("Error", IS.ERROR), ("Failed", IS.ERROR),
        ("Hibernating", IS.UNKNOWN), ("", IS.UNKNOWN), (None, IS.UNKNOWN),
    ],
)
def test_map_state(status, state) -> None:
    assert map_state(status) == state


def test_every_sandbox_status_word_maps_to_a_known_state() -> None:
    for word in set(sim.STATUS_BY_PHASE.values()):
        assert map_state(word) != IS.UNKNOWN, word


@pytest.mark.parametrize(
    ("region", "country", "group"),
    [
        ("CANADA", "CA", "US"), ("NORWAY", "NO", "EU"), ("US-EAST", "US", "US"), ("US-WEST-2", "US", "US"),
        ("EU-NORTH", None, "EU"), ("APAC-SINGAPORE", "SG", "APAC"), ("APAC", None, "APAC"),
        ("Singapore", "SG", "APAC"), ("BRAZIL", "BR", "Other"), ("MOON-BASE", None, "Other"), ("", None, "Other"), (None, None, "Other"),
    ],
)
def test_region_location(region, country, group) -> None:
    assert region_location(region) == (country, group)


@pytest.mark.parametrize(
    ("name", "memory"),
    [("A100-40G-PCIe", 40.0), ("H100-80G-SXM", 80.0), ("RTX-4090-24G", 24.0), ("H200-141G-SXM", 141.0), ("RTX-A6000", None), ("L40S", None)],
)
def test_memory_hint(name, memory) -> None:
    assert memory_hint(name) == memory


DOC_PRODUCT = {  # the documented example, reference/vendor-apis.md section 3
    "id": "fcp66d566c43a9501001256", "dc_id": 1, "product_type": "Container", "region": "CANADA", "price_per_hour": 1.0,
    "cpu": 24, "ram": 200, "gpu": "H100-80G-SXM", "gpu_type": "H100", "gpu_count": 1, "disk_size": 200,
    "ephemeral": 1500, "stock": 99, "cycle": "hourly", "is_available": True,
}


@pytest.mark.parametrize(
    ("change", "expect"),
    [
        ({}, {"gpu_type": "nvidia-h100-sxm5-80gb", "gpu_family": "H100", "gpu_count": 1, "gpu_memory_gb": 80.0,
              "gpu_price_per_hour": 1.0, "total_price_per_hour": 1.0, "region": "US", "country": "CA",
              "vcpu_count": 24.0, "memory_gb": 200.0, "disk_gb": 200.0, "available": True, "gpu_known": True,
              "contract_type": "ondemand", "vendor_offer_id": "fcp66d566c43a9501001256", "vendor_region": "CANADA"}),
        ({"gpu": "A100-40G-PCIe", "gpu_type": "A100", "gpu_count": 4, "price_per_hour": 4.8},
         {"gpu_type": "nvidia-a100-pcie-40gb", "gpu_memory_gb": 40.0, "gpu_price_per_hour": 1.2, "total_price_per_hour": 4.8}),
        ({"gpu": "RTX-A6000", "gpu_type": "RTX", "region": "EU-NORTH"}, {"gpu_type": "nvidia-rtx-a6000-48gb", "gpu_family": "A6000", "region": "EU"}),
        ({"gpu": "H100-80G-PCIe", "region": "APAC-SINGAPORE", "price_per_hour": "2.627"},
         {"gpu_type": "nvidia-h100-pcie-80gb", "region": "APAC", "total_price_per_hour": 2.627}),
        ({"gpu": "MI300X-192G", "gpu_type": "AMD"}, {"gpu_known": False, "gpu_memory_gb": 192.0, "gpu_type": "unknown-mi300x-192g"}),
        ({"stock": 0, "is_available": False}, {"available": False}),
        ({"stock": 0}, {"available": False}),
        ({"is_available": False}, {"available": False}),
        ({"id": ""}, None),
        ({"gpu_count": 0}, None),
        ({"price_per_hour": None}, None),
        ({"price_per_hour": "free"}, None),
        ({"gpu": None, "gpu_type": None}, None),
    ],
    ids=["doc-example", "4x-per-gpu-price", "rtx-family", "string-price", "unknown-gpu", "sold-out", "stock-0", "unavailable",
         "no-id", "no-gpus", "no-price", "bad-price", "no-gpu-name"],
)
def test_map_offer(change, expect) -> None:
    offer = map_offer({**DOC_PRODUCT, **change}, NOW)
    if expect is None:
        assert offer is None
        return
    assert offer is not None and offer.vendor == "nebula" and offer.fetched_at == NOW
    for name, value in expect.items():
        assert getattr(offer, name) == pytest.approx(value) if isinstance(value, float) else getattr(offer, name) == value, name
    assert offer.vendor_data["dc_id"] == DOC_PRODUCT["dc_id"]


DOC_ROW = {  # List User Instances, documented example
    "id": "102cade84ea-e703-4400-b77d-8ed545d198ee", "region": "CANADA", "product_type": "GPU", "host_name": "demo",
    "cpu_cores": 28, "ram": 58, "gpu_type": "RTX-A6000", "gpu_count": 1, "disk_size": 100, "ephemeral": 1500,
    "public_ipv4": "38.80.81.128", "price_per_hour": 0.679, "os": "Ubuntu Server 20.04 LTS (Focal Fossa)", "status": "Running",
}
DOC_DETAIL = {  # User Instance Detail, documented example
    "id": 41, "region": "CANADA", "instance_type": "GPU", "host_name": "mike-1001", "cpu_cores": "28", "ram": "58",
    "gpu_type": "RTX-A6000", "gpu_count": 1, "disk_size": 100, "public_ipv4": "62.169.158.214", "login_method": "",
    "os": "Ubuntu Server 20.04 LTS (Focal Fossa)", "exposed_ports": "", "status": "Running",
    "start_time": "EST 2024-11-04 10:11:50", "running_time": "0.0000 hours", "total_cost": "$0.0000",
}
MARKER = "gpusupply-6b1e0f0e-3f0a-4c1e-9a57-1c2b3d4e5f60"


@pytest.mark.parametrize(
    ("row", "expect"),
    [
        (DOC_ROW, {"vendor_instance_id": "102cade84ea-e703-4400-b77d-8ed545d198ee", "state": IS.RUNNING, "raw_status": "Running",
                   "marker": "demo", "external_ip": "38.80.81.128", "ssh_port": None, "vendor_region": "CANADA",
                   "gpu_name": "RTX-A6000", "gpu_count": 1, "price_per_hour": 0.679, "resource_id": None}),
        (DOC_DETAIL, {"vendor_instance_id": "41", "state": IS.RUNNING, "external_ip": "62.169.158.214", "ssh_port": 22,
                      "price_per_hour": None}),
        ({**DOC_DETAIL, "host_name": MARKER, "exposed_ports": "31022:22,8888:8888", "user_name": "root"},
         {"ssh_port": 31022, "marker": MARKER, "resource_id": UUID(MARKER.removeprefix("gpusupply-"))}),
        ({**DOC_ROW, "status": "Creating", "public_ipv4": ""}, {"state": IS.PROVISIONING, "external_ip": None, "ssh_port": None}),
        ({**DOC_ROW, "status": "Deleted", "public_ipv4": None, "host_name": ""}, {"state": IS.TERMINATED, "external_ip": None, "marker": None}),
        ({**DOC_ROW, "price_per_hour": "0.679", "gpu": "RTX-A6000-48G"}, {"price_per_hour": 0.679, "gpu_name": "RTX-A6000-48G"}),
    ],
    ids=["doc-list-row", "doc-detail", "container-port", "creating", "deleted", "string-price"],
)
def test_map_instance(row, expect) -> None:
    instance = map_instance(row)
    for name, value in expect.items():
        assert getattr(instance, name) == value, name


def test_map_instance_keeps_detail_extras() -> None:
    instance = map_instance({**DOC_DETAIL, "user_name": "ubuntu", "lan_ipv4": "10.0.0.5"})
    assert instance.extra["ssh_user"] == "ubuntu" and instance.extra["total_cost"] == "$0.0000"
    assert instance.extra["lan_ipv4"] == "10.0.0.5" and "login_method" not in instance.extra


@pytest.mark.parametrize(
    ("value", "port"),
    [(None, None), ("", 22), ("31022:22", 31022), ("8888:8888, 40022:22", 40022), ("22", 22), ("abc:22", 22), ("8888:8888", 22)],
)
def test_ssh_port_from_exposed_ports(value, port) -> None:
    assert ssh_port_from_exposed_ports(value) == port


@pytest.mark.parametrize(
    ("status", "message", "kind"),
    [
        (429, "Too many requests, please slow down", RateLimited),
        (200, "Rate limit exceeded", RateLimited),
        (401, "Unauthorized: missing or invalid API key", AuthFailed),
        (403, "Forbidden", AuthFailed),
        (200, "Invalid token", AuthFailed),
        (404, "Instance not found", NotFoundOnVendor),
        (200, "Instance not found", NotFoundOnVendor),
        (400, "Product is out of stock", CapacityGone),
        (400, "Insufficient resources in region", CapacityGone),
        (400, "image_id and product_id must be from the same data center (dc_id) and region", InvalidRequest),
        (400, "Instance is not running", InvalidRequest),
        (400, "SSH key not found", InvalidRequest),  # about the request, not the object addressed
        (400, "Image not found", InvalidRequest),
        (500, "Internal server error", VendorUnavailable),
        (503, "Product is out of stock", VendorUnavailable),
        (502, "<html>Bad Gateway</html>", VendorUnavailable),
    ],
)
def test_classify_failure(status, message, kind) -> None:
    error = classify_failure(status, message, retry_after=2.5)
    assert type(error) is kind and error.vendor == "nebula" and error.vendor_message == message
    if kind is RateLimited:
        assert error.retry_after == 2.5


def test_check_envelope() -> None:
    assert check_envelope(200, {"status": "success", "message": "ok"}) == {"status": "success", "message": "ok"}
    with pytest.raises(NotFoundOnVendor):
        check_envelope(200, {"status": "failed", "message": "Instance not found", "data": None})
    for body in ({"data": []}, [], "ok", {"status": "maybe"}):
        with pytest.raises(MalformedBody):
            check_envelope(200, body)


@pytest.mark.parametrize(
    ("parse", "body"),
    [
        (flatten_products, {"data": []}),
        (flatten_products, {"data": {"CANADA": []}}),
        (flatten_products, {"data": {"CANADA": {"H100": {"id": "x"}}}}),
        (flatten_products, {"data": {"CANADA": {"H100": ["x"]}}}),
        (parse_images, {"data": [{"id": "x"}]}),
        (parse_images, {"data": {"CANADA": [{"os_name": "no id"}]}}),
        (parse_instance_page, {"data": {"items": []}, "total_instance": 0}),
        (parse_instance_page, {"data": [], "total_instance": None}),
        (parse_instance_page, {"data": [], "total_instance": "3"}),
        (parse_instance_page, {"data": [{"host_name": "no id"}], "total_instance": 1}),
        (parse_instance_page, {"data": [], "total_instance": True}),
        (parse_detail, {"data": "x"}),
        (parse_ssh_keys, {"data": {"ssh_keys": []}}),
        (parse_ssh_keys, {"data": {"total_ssh_keys": 1, "ssh_keys": "x"}}),
        (parse_ssh_keys, {"data": None}),
    ],
)
def test_parsers_refuse_wrong_shapes(parse, body) -> None:
    with pytest.raises(MalformedBody):
        parse(body)


def test_parsers_read_documented_shapes() -> None:
    products = flatten_products({"data": {"CANADA": {"H100": [DOC_PRODUCT], "A100": []}, "NORWAY": {}}})
    assert [p["id"] for p in products] == [DOC_PRODUCT["id"]]
    assert parse_images({"data": {"CANADA": [{"id": "i1", "dc_id": 1}]}}) == [{"region": "CANADA", "id": "i1", "dc_id": 1}]
    assert parse_instance_page({"data": [DOC_ROW], "total_instance": 1}) == ([DOC_ROW], 1)
    assert parse_detail({"data": [DOC_DETAIL]}) == DOC_DETAIL and parse_detail({"data": []}) is None
    current = {"data": {"total_ssh_keys": 1, "ssh_keys": [{"id": 75, "key_data": "ssh-rsa AAAA"}]}}
    older = {"data": [{"id": 76, "key_data": "ssh-rsa AAAA"}]}
    assert parse_ssh_keys(current) == ([{"id": 75, "key_data": "ssh-rsa AAAA"}], 1)
    assert parse_ssh_keys(older) == ([{"id": 76, "key_data": "ssh-rsa AAAA"}], None)


IMAGES = [
    {"id": "a", "dc_id": 2, "region": "CANADA", "os_type": "Ubuntu", "os_name": "Ubuntu Server 20.04 LTS"},
    {"id": "b", "dc_id": 2, "region": "CANADA", "os_type": "Ubuntu", "os_name": "Ubuntu Server 22.04 LTS"},
    {"id": "c", "dc_id": 2, "region": "CANADA", "os_type": "Ubuntu", "os_name": "Ubuntu Server 22.04 LTS R535 CUDA 12.2"},
    {"id": "d", "dc_id": 1, "region": "CANADA", "os_type": "Ubuntu", "os_name": "Ubuntu Server 22.04 LTS"},
    {"id": "e", "dc_id": 2, "region": "NORWAY", "os_type": "Ubuntu", "os_name": "Ubuntu Server 20.04 LTS"},
    {"id": "f", "dc_id": 2, "region": "NORWAY", "os_type": "Debian", "os_name": "Debian 12"},
]


@pytest.mark.parametrize(
    ("region", "dc_id", "image"),
    [("CANADA", 2, "c"), ("CANADA", "2", "c"), ("CANADA", 1, "d"), ("NORWAY", 2, "e"), ("NORWAY", 1, None), ("US-EAST", 2, None)],
)
def test_choose_image(region, dc_id, image) -> None:
    assert choose_image(IMAGES, region, dc_id) == image


def test_ssh_key_identity() -> None:
    comparable, name = ssh_key_identity(SSH_PUBLIC_KEY)
    assert comparable == " ".join(SSH_PUBLIC_KEY.split()[:2])
    assert name.startswith("gpusupply-") and len(name) == len("gpusupply-") + 16
    assert ssh_key_identity("  " + comparable + " another comment\n") == (comparable, name)  # the comment does not matter
    for bad in ("", "ssh-ed25519", "ssh-ed25519 !!!not-base64"):
        with pytest.raises(InvalidRequest):
            ssh_key_identity(bad)


def test_pacing_stays_under_every_assumed_limit_and_scales() -> None:
    for limit in LIMITS.routes.values():
        rate, burst = pacing(limit)
        limit_rate, limit_burst = limit
        assert rate < limit_rate and 1 <= burst < limit_burst
    assert pacing(LIMITS.routes["list"], 2.0)[0] == pytest.approx(2 * pacing(LIMITS.routes["list"])[0])


def test_the_sandbox_enforces_the_limits_the_adapter_assumes() -> None:
    assert sim.DEFAULT_RATE_LIMITS == LIMITS.routes


@pytest.mark.parametrize("base_url", ["http://127.0.0.1:9", "http://127.0.0.1:9/", "http://127.0.0.1:9/api/v1"])
async def test_the_adapter_appends_the_api_path_once(base_url) -> None:
    adapter = NebulaAdapter(base_url, "ak_x")
    assert str(adapter._http._client.base_url) == "http://127.0.0.1:9/api/v1/"
    assert isinstance(adapter, VendorAdapter) and adapter.vendor == "nebula"
    assert adapter.capabilities.stop_start and adapter.capabilities.reboot and adapter.capabilities.marker
    assert not adapter.capabilities.idempotency_key and not adapter.capabilities.spot
    await adapter.aclose()


def test_unknown_adapter_options_are_refused() -> None:
    with pytest.raises(TypeError, match="price_table"):
        NebulaAdapter("http://127.0.0.1:9", "ak_x", price_table={})


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


async def test_offers_are_every_product_normalized(served, adapter) -> None:
    sandbox, _ = served
    offers = await adapter.list_offers()
    assert {o.vendor_offer_id for o in offers} == set(sandbox.products)
    for offer in offers:
        product = sandbox.products[offer.vendor_offer_id]
        assert offer.gpu_known and offer.gpu_count == product.gpu_count
        assert offer.total_price_per_hour == product.price_per_hour
        assert offer.gpu_price_per_hour == pytest.approx(product.price_per_hour / product.gpu_count)
        assert offer.available == (product.stock > 0)
        assert offer.vendor_region == product.dc.region and offer.vendor_data["dc_id"] == product.dc.dc_id
        assert offer.fetched_at.tzinfo is not None
    groups = {o.vendor_region: o.region for o in offers}
    assert groups == {"CANADA": "US", "US-EAST": "US", "EU-NORTH": "EU", "APAC-SINGAPORE": "APAC"}


async def test_full_lifecycle(served, adapter) -> None:
    sandbox, _ = served
    offer = available(await adapter.list_offers(), product_type="Virtual Machine")
    request = request_for(offer)

    created = await adapter.create(request)
    assert created is not None and created.state == IS.PROVISIONING and created.marker == request.marker
    assert created.resource_id == request.resource_id and created.external_ip is None
    instance_id = created.vendor_instance_id
    assert (await adapter.get(instance_id)).state == IS.PROVISIONING

    sandbox.clock.advance(READY_AFTER + 1)
    running = await adapter.get(instance_id)
    assert running.state == IS.RUNNING and running.external_ip and running.ssh_port == 22
    assert running.extra["ssh_user"] == "ubuntu"
    assert [i.vendor_instance_id for i in await adapter.list_instances()] == [instance_id]

    await adapter.stop(instance_id)
    assert (await adapter.get(instance_id)).state == IS.STOPPING
    sandbox.clock.advance(2)
    assert (await adapter.get(instance_id)).state == IS.STOPPED
    await adapter.start(instance_id)
    assert (await adapter.get(instance_id)).state == IS.PROVISIONING  # "Starting"
    sandbox.clock.advance(2)
    assert (await adapter.get(instance_id)).state == IS.RUNNING
    await adapter.reboot(instance_id)
    assert (await adapter.get(instance_id)).state == IS.REBOOTING
    sandbox.clock.advance(2)
    assert (await adapter.get(instance_id)).state == IS.RUNNING

    await adapter.delete(instance_id)
    with pytest.raises(NotFoundOnVendor):
        await adapter.get(instance_id)
    assert await adapter.list_instances() == []
    recovered = await adapter.recover(request)
    assert recovered is not None and recovered.state == IS.TERMINATED and recovered.vendor_instance_id == instance_id

    truth = sandbox.state()
    assert [c["marker"] for c in truth["creates"]] == [request.marker]
    assert [d["instance_id"] for d in truth["deletes"]] == [instance_id]
    image = sandbox.images[truth["creates"][0]["image_id"]]
    assert "22.04" in image.os_name and "CUDA" in image.os_name  # our documented default image
    assert (image.region, image.dc_id) == (offer.vendor_region, offer.vendor_data["dc_id"])


async def test_container_instances_report_their_mapped_ssh_port(served, adapter) -> None:
    sandbox, _ = served
    created = await adapter.create(request_for(available(await adapter.list_offers(), product_type="Container")))
    sandbox.clock.advance(READY_AFTER + 1)
    running = await adapter.get(created.vendor_instance_id)
    assert running.ssh_port not in (None, 22) and running.extra["ssh_user"] == "root"


async def test_the_ssh_key_is_registered_once_and_reused(served, adapter) -> None:
    sandbox, _ = served
    offers = await adapter.list_offers()
    for _ in range(2):
        await adapter.create(request_for(available(offers)))
    keys = sandbox.ssh_keys[API_KEY]
    assert len(keys) == 1 and keys[0].key_name == ssh_key_identity(SSH_PUBLIC_KEY)[1]
    # A fresh adapter (another process) finds the key by its data instead of registering it again.
    other = make_adapter(served[1])
    await other.create(request_for(available(offers), ssh_public_key=SSH_PUBLIC_KEY.rsplit(" ", 1)[0] + " renamed@laptop"))
    await other.aclose()
    assert len(sandbox.ssh_keys[API_KEY]) == 1
    assert {c["ssh_key_id"] for c in account_creates(sandbox)} == {keys[0].id}


async def test_a_key_deleted_on_nebula_is_registered_again(served, adapter) -> None:
    sandbox, url = served
    offers = await adapter.list_offers()
    await adapter.create(request_for(available(offers)))
    old = sandbox.ssh_keys[API_KEY][0].id
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {API_KEY}"}) as client:
        assert (await client.delete(f"/api/v1/ssh-keys/{old}")).status_code == 200
    request = request_for(available(offers))
    assert await adapter.create(request) is not None
    assert [k.id for k in sandbox.ssh_keys[API_KEY]] != [old] and len(sandbox.ssh_keys[API_KEY]) == 1
    assert len(creates_for(sandbox, request.marker)) == 1


async def test_list_instances_reads_every_page(served) -> None:
    sandbox, url = served
    adapter = make_adapter(url, page_size=2)
    offers = await adapter.list_offers()
    requests = [request_for(available(offers)) for _ in range(5)]
    for request in requests:
        await adapter.create(request)
    listed = await adapter.list_instances()
    assert sorted(i.marker for i in listed) == sorted(r.marker for r in requests)
    assert len({i.vendor_instance_id for i in listed}) == 5
    assert (await adapter.recover(requests[-1])).marker == requests[-1].marker
    await adapter.aclose()


async def test_out_of_stock_is_capacity_gone(served, adapter) -> None:
    sandbox, _ = served
    offers = await adapter.list_offers()
    offer = min((o for o in offers if o.available), key=lambda o: o.vendor_data["stock"])
    for _ in range(offer.vendor_data["stock"]):
        await adapter.create(request_for(offer))
    request = request_for(offer)
    with pytest.raises(CapacityGone) as caught:
        await adapter.create(request)
    assert caught.value.vendor_message == sim.MSG_OUT_OF_STOCK
    assert creates_for(sandbox, request.marker) == []
    assert not next(o for o in await adapter.list_offers() if o.vendor_offer_id == offer.vendor_offer_id).available


async def test_a_product_gone_from_the_catalog_is_capacity_gone(served, adapter) -> None:
    offer = available(await adapter.list_offers())
    gone = dataclasses.replace(offer, vendor_offer_id="expd-no-longer-sold")
    with pytest.raises(CapacityGone):
        await adapter.create(request_for(gone))
    without_location = dataclasses.replace(gone, vendor_data={})
    with pytest.raises(CapacityGone):
        await adapter.create(request_for(without_location))


async def test_an_offer_without_vendor_data_is_located_from_the_catalog(served, adapter) -> None:
    sandbox, _ = served
    offer = dataclasses.replace(available(await adapter.list_offers()), vendor_data={})
    request = request_for(offer)
    assert await adapter.create(request) is not None
    assert creates_for(sandbox, request.marker)[0]["product_id"] == offer.vendor_offer_id


async def test_cloud_init_is_refused_and_creates_nothing(served, adapter) -> None:
    sandbox, _ = served
    request = request_for(available(await adapter.list_offers()), cloud_init="#cloud-config\n")
    with pytest.raises(InvalidRequest, match="cloud-init"):
        await adapter.create(request)
    assert account_creates(sandbox) == []


async def test_a_bad_public_key_is_refused_before_any_create(served, adapter) -> None:
    sandbox, _ = served
    with pytest.raises(InvalidRequest):
        await adapter.create(request_for(available(await adapter.list_offers()), ssh_public_key="not-a-key"))
    assert account_creates(sandbox) == []


async def test_delete_of_a_gone_or_unknown_instance_returns(served, adapter) -> None:
    created = await adapter.create(request_for(available(await adapter.list_offers())))
    await adapter.delete(created.vendor_instance_id)
    await adapter.delete(created.vendor_instance_id)
    await adapter.delete("20nope")
    with pytest.raises(NotFoundOnVendor):
        await adapter.get("20nope")


async def test_start_stop_are_idempotent_and_refusals_are_typed(served, adapter) -> None:
    sandbox, _ = served
    created = await adapter.create(request_for(available(await adapter.list_offers())))
    instance_id = created.vendor_instance_id
    with pytest.raises(InvalidRequest) as caught:
        await adapter.stop(instance_id)  # still creating
    assert caught.value.vendor_message == sim.MSG_NOT_RUNNING
    sandbox.clock.advance(READY_AFTER + 1)
    await adapter.start(instance_id)  # already running: done
    await adapter.stop(instance_id)
    await adapter.stop(instance_id)  # a repeat while stopping: done
    sandbox.clock.advance(2)
    await adapter.stop(instance_id)  # stopped: done
    with pytest.raises(InvalidRequest):
        await adapter.reboot(instance_id)
    with pytest.raises(NotFoundOnVendor):
        await adapter.start("20nope")


async def test_other_accounts_are_invisible(served, adapter) -> None:
    _, url = served
    created = await adapter.create(request_for(available(await adapter.list_offers())))
    stranger = make_adapter(url, api_key="ak_someone_else")
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
    assert caught.value.status == 401 and caught.value.vendor_message == sim.MSG_UNAUTHORIZED
    await adapter.aclose()


async def test_errors_never_carry_the_api_key(served, adapter) -> None:
    errors: list[Exception] = []
    for call in (adapter.get("20nope"), adapter.start("20nope"), adapter.create(request_for(available(await adapter.list_offers()), ssh_public_key="x"))):
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
    await adapter.create(request_for(available(await adapter.list_offers())))
    sandbox.faults.faults = {"429": 0.5}
    for _ in range(4):
        assert len(await adapter.list_instances()) == 1
    assert sandbox.faults.injected["429"] >= 2  # each one answered with Retry-After: 1, and waited out


async def test_pacing_keeps_a_burst_under_the_rate_limit() -> None:
    with running_sandbox(rate_limits=True, rate_scale=4.0) as (sandbox, url):
        adapter = make_adapter(url, rate_scale=4.0)
        results = await asyncio.gather(*(adapter.list_instances() for _ in range(24)))
        await adapter.aclose()
        assert all(r == [] for r in results)
        # Not counted here: whether the sandbox said 429 depends on the machine's load (a starved
        # process handles paced requests together). That the pacing stays inside the limits is
        # checked as arithmetic, load-free, in test_registry.py for every vendor and route.


async def test_without_pacing_the_limit_bites_and_retries_still_succeed() -> None:
    with running_sandbox(rate_limits=True, rate_scale=4.0) as (sandbox, url):
        # 24 callers retry together after each Retry-After, and one gets through per slot.
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
    injected = sandbox.faults.injected
    assert injected["500"] + injected["503"] >= 1


async def test_persistent_5xx_is_vendor_unavailable(served) -> None:
    sandbox, url = served
    adapter = make_adapter(url, retry=RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02))
    offer = available(await adapter.list_offers())
    await adapter.create(request_for(offer))  # registers the key and warms the image cache
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
        offers = await adapter.list_offers()
        await adapter.create(request_for(available(offers)))  # the key is registered before the fault
        sandbox.faults.faults = {"lost": 1.0}
        request = request_for(available(offers))
        with pytest.raises(VendorUnavailable):
            await adapter.create(request)
        sandbox.faults.faults = {}
        first = await adapter.recover(request)
        again = await adapter.recover(request)
        assert first is not None and first.marker == request.marker and first.resource_id == request.resource_id
        assert again is not None and again.vendor_instance_id == first.vendor_instance_id
        assert len(creates_for(sandbox, request.marker)) == 1
        assert live_markers(sandbox).count(request.marker) == 1
        await adapter.aclose()


async def test_a_lost_key_registration_is_found_on_the_next_try() -> None:
    with running_sandbox(hang_seconds=0.1) as (sandbox, url):
        adapter = make_adapter(url)
        offer = available(await adapter.list_offers())
        request = request_for(offer)
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
    request = request_for(available(await adapter.list_offers()))
    await adapter.create(request)
    sandbox.faults.faults = {"malformed": 1.0}
    for _ in range(3):  # truncated JSON, wrong shape, fewer rows than total_instance
        with pytest.raises(VendorUnavailable):
            await adapter.list_instances()
    with pytest.raises(VendorUnavailable):
        await adapter.recover(request)  # never "nothing there", which would invite a second create
    for _ in range(3):
        with pytest.raises(VendorUnavailable):
            await adapter.list_offers()
    assert sandbox.faults.injected["malformed"] >= 7


async def test_preempted_instances_are_gone(served, adapter) -> None:
    sandbox, _ = served
    request = request_for(available(await adapter.list_offers()))
    created = await adapter.create(request)
    sandbox.faults.faults = {"preempt": 1.0}
    sandbox.clock.advance(READY_AFTER + 61)
    with pytest.raises(NotFoundOnVendor):
        await adapter.get(created.vendor_instance_id)
    assert await adapter.list_instances() == []
    recovered = await adapter.recover(request)
    assert recovered is not None and recovered.state == IS.TERMINATED
    await adapter.delete(created.vendor_instance_id)


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
        assert len(sandbox.ssh_keys[API_KEY]) == 1
        injected = truth["injected"]
        assert injected["lost"] >= 2 and injected["malformed"] >= 1 and injected["500"] + injected["503"] >= 1
        await adapter.aclose()
