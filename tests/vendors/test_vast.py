"""The Vast adapter: pure mapping tables, then the real adapter against the Vast sandbox over HTTP."""

from __future__ import annotations

import base64
import subprocess
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from gpusupply.core.errors import (
    AuthFailed,
    CapacityGone,
    InvalidRequest,
    NotFoundOnVendor,
    RateLimited,
    VendorError,
    VendorUnavailable,
)
from gpusupply.core.states import InstanceState
from gpusupply.sandbox.mode import build_vendors
from gpusupply.settings import Settings
from gpusupply.vendors.base import CreateRequest, VendorAdapter
from gpusupply.vendors.http import RetryPolicy
from gpusupply.vendors.vast import (
    DEFAULT_DISK_GB,
    DEFAULT_IMAGE,
    MalformedInstance,
    MalformedOffer,
    VastAdapter,
    build_onstart,
    classify_failure,
    classify_response,
    direct_ssh_port,
    map_instance,
    map_offer,
    map_state,
    offers_from_rows,
    parse_page,
)

from .vast_fixtures import SSH_KEY, cheapest, rig_config, vast_rig

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
S = InstanceState

# ----- pure mapping --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("actual", "intended", "cur", "state"),
    [
        (None, "running", "running", S.PROVISIONING),
        (None, "stopped", "stopped", S.STOPPED),
        ("created", "running", "running", S.PROVISIONING),
        ("scheduling", "running", "running", S.PROVISIONING),
        ("loading", "running", "running", S.PROVISIONING),
        ("running", "running", "running", S.RUNNING),
        ("RUNNING", None, None, S.RUNNING),
        ("running", "stopped", "stopped", S.STOPPING),
        ("stopped", "stopped", "stopped", S.STOPPED),
        ("stopped", "running", "running", S.PROVISIONING),
        ("exited", "stopped", "stopped", S.STOPPED),
        ("exited", "running", "running", S.ERROR),
        ("frozen", "frozen", "running", S.STOPPED),
        ("rebooting", "running", "running", S.REBOOTING),
        ("running", "running", "unloaded", S.TERMINATING),
        ("unknown", "running", "running", S.UNKNOWN),
        ("offline", "running", "running", S.UNKNOWN),
        ("melting", "running", "running", S.UNKNOWN),
    ],
)
def test_map_state(actual: str | None, intended: str | None, cur: str | None, state: InstanceState) -> None:
    assert map_state(actual, intended, cur) == state


@pytest.mark.parametrize(
    ("ports", "port"),
    [({"22/tcp": [{"HostIp": "0.0.0.0", "HostPort": "20000"}]}, 20000), ({"22/tcp": [{"HostPort": 2222}]}, 2222),
     ({}, None), (None, None), ({"22/tcp": []}, None), ({"22/tcp": [{"HostPort": "x"}]}, None)],
)
def test_direct_ssh_port(ports: Any, port: int | None) -> None:
    assert direct_ssh_port(ports) == port


RUNNING_ROW: dict[str, Any] = {
    "id": 8000001, "actual_status": "running", "intended_status": "running", "cur_state": "running",
    "label": "gpusupply-6f0b3c52-7d0e-4a57-9a43-2d6c9a0e1f11", "public_ipaddr": "203.0.113.42",
    "ssh_host": "ssh5.vast.ai", "ssh_port": 12345, "ports": {"22/tcp": [{"HostIp": "0.0.0.0", "HostPort": "20001"}]},
    "gpu_name": "RTX 4090", "gpu_ram": 24564, "num_gpus": 2, "dph_total": 0.81, "geolocation": "Texas, US",
    "machine_id": 88888, "is_bid": False, "start_date": 1761008618.2, "extra_env": [],
}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (RUNNING_ROW, ("8000001", S.RUNNING, "running", "203.0.113.42", "ssh5.vast.ai", 12345, "Texas, US",
                       "nvidia-rtx-4090-24gb", 2, 0.81, "203.0.113.42:20001", "US")),
        ({"id": "42", "actual_status": None, "intended_status": "running", "cur_state": "running"},
         ("42", S.PROVISIONING, None, None, None, None, None, None, None, None, None, "Other")),
        ({**RUNNING_ROW, "gpu_name": "Zeta 9000", "geolocation": "Hesse, DE", "ports": {}, "dph_total": "cheap"},
         ("8000001", S.RUNNING, "running", "203.0.113.42", "ssh5.vast.ai", 12345, "Hesse, DE",
          "unknown-zeta-9000", 2, None, None, "EU")),
        ({**RUNNING_ROW, "ssh_host": None}, ("8000001", S.RUNNING, "running", "203.0.113.42", None, None, "Texas, US",
                                              "nvidia-rtx-4090-24gb", 2, 0.81, "203.0.113.42:20001", "US")),
    ],
)
def test_map_instance(raw: dict[str, Any], expected: tuple[Any, ...]) -> None:
    inst = map_instance(raw)
    got = (inst.vendor_instance_id, inst.state, inst.raw_status, inst.external_ip, inst.ssh_host, inst.ssh_port,
           inst.vendor_region, inst.gpu_name, inst.gpu_count, inst.price_per_hour, inst.extra["direct_ssh"], inst.extra["region_group"])
    assert got == expected


def test_map_instance_reads_our_marker() -> None:
    inst = map_instance(RUNNING_ROW)
    assert inst.marker == RUNNING_ROW["label"] and str(inst.resource_id) == "6f0b3c52-7d0e-4a57-9a43-2d6c9a0e1f11"
    assert map_instance({**RUNNING_ROW, "label": "someone-else"}).resource_id is None


@pytest.mark.parametrize(
    "raw", [None, [], "8000001", {"actual_status": "running"}, {"id": "abc"}, {"id": True}, {"id": 5, "actual_status": 3}]
)
def test_map_instance_rejects_broken_rows(raw: Any) -> None:
    with pytest.raises(MalformedInstance):
        map_instance(raw)


OFFER_ROW: dict[str, Any] = {
    "id": 10000042, "gpu_name": "H100 SXM", "gpu_ram": 81559, "num_gpus": 8, "dph_total": 20.0728, "dph_base": 20.0,
    "storage_total_cost": 0.0728, "min_bid": 9.5, "cpu_cores_effective": 96.0, "cpu_ram": 1048576, "disk_space": 2000.0,
    "geolocation": "Virginia, US", "rentable": True, "rented": False, "machine_id": 777, "reliability": 0.995,
    "verification": "verified", "cuda_max_good": 12.4,
}


@pytest.mark.parametrize(
    ("raw", "contract", "expected"),
    [
        (OFFER_ROW, "ondemand", ("10000042", "nvidia-h100-sxm5-80gb", "H100", 8, 80.0, 2.5091, 20.0728, "Virginia, US", "US", "US", True, True)),
        (OFFER_ROW, "spot", ("10000042", "nvidia-h100-sxm5-80gb", "H100", 8, 80.0, 1.1966, 9.5728, "Virginia, US", "US", "US", True, True)),
        ({**OFFER_ROW, "gpu_name": "A100 PCIE", "gpu_ram": 40960, "num_gpus": 1, "dph_total": 0.9, "geolocation": "Tokyo, JP"},
         "ondemand", ("10000042", "nvidia-a100-pcie-40gb", "A100", 1, 40.0, 0.9, 0.9, "Tokyo, JP", "JP", "APAC", True, True)),
        ({**OFFER_ROW, "gpu_name": "Zeta 9000", "gpu_ram": 12288, "num_gpus": 2, "dph_total": 1.0, "geolocation": None, "rented": True},
         "ondemand", ("10000042", "unknown-zeta-9000", "ZETA9000", 2, 12.0, 0.5, 1.0, "unknown", None, "Other", False, False)),
        ({**OFFER_ROW, "storage_total_cost": None, "num_gpus": 1, "dph_total": 0.6, "dph_base": 0.5, "min_bid": 0.2}, "spot",
         ("10000042", "nvidia-h100-sxm5-80gb", "H100", 1, 80.0, 0.3, 0.3, "Virginia, US", "US", "US", True, True)),
    ],
)
def test_map_offer(raw: dict[str, Any], contract: str, expected: tuple[Any, ...]) -> None:
    offer = map_offer(raw, contract, NOW, 40.0)  # type: ignore[arg-type]
    got = (offer.vendor_offer_id, offer.gpu_type, offer.gpu_family, offer.gpu_count, offer.gpu_memory_gb,
           round(offer.gpu_price_per_hour, 4), round(offer.total_price_per_hour, 4), offer.vendor_region, offer.country,
           offer.region, offer.gpu_known, offer.available)
    assert got == expected
    assert offer.vendor == "vast" and offer.contract_type == contract and offer.fetched_at == NOW
    assert offer.vendor_data["ask_id"] == 10000042 and offer.vendor_data["storage_gb"] == 40.0


def test_map_offer_keeps_the_specs() -> None:
    offer = map_offer(OFFER_ROW, "ondemand", NOW, 40.0)
    assert (offer.vcpu_count, offer.memory_gb, offer.disk_gb) == (96.0, 1024.0, 2000.0)
    assert offer.vendor_data["min_bid"] == 9.5 and offer.vendor_data["machine_id"] == 777


@pytest.mark.parametrize(
    ("raw", "contract"),
    [(None, "ondemand"), ({**OFFER_ROW, "id": None}, "ondemand"), ({**OFFER_ROW, "gpu_name": ""}, "ondemand"),
     ({**OFFER_ROW, "num_gpus": 0}, "ondemand"), ({**OFFER_ROW, "dph_total": "1.0"}, "ondemand"),
     ({**OFFER_ROW, "min_bid": None}, "spot"), ({**OFFER_ROW, "min_bid": 0}, "spot")],
)
def test_map_offer_rejects_rows_it_cannot_price(raw: Any, contract: str) -> None:
    with pytest.raises(MalformedOffer):
        map_offer(raw, contract, NOW, 40.0)  # type: ignore[arg-type]


def test_offers_from_rows_makes_ondemand_and_spot_and_counts_bad_rows() -> None:
    offers, skipped = offers_from_rows([OFFER_ROW, {"id": 1}, {**OFFER_ROW, "id": 10000050, "min_bid": None}], NOW, 40.0)
    assert [(o.vendor_offer_id, o.contract_type) for o in offers] == [("10000042", "ondemand"), ("10000042", "spot"), ("10000050", "ondemand")]
    assert skipped == 1


@pytest.mark.parametrize(
    ("status", "code", "message", "error", "retryable"),
    [
        (429, "rate_limit_exceeded", "API requests too frequent endpoint threshold=3.0", RateLimited, True),
        (429, None, "API requests too frequent endpoint threshold=4.5", RateLimited, True),
        (429, "search_quota_exceeded", "Daily search quota exceeded", RateLimited, False),
        (401, "auth_error", "Invalid user key", AuthFailed, False),
        (404, "auth_error", "Invalid user key", AuthFailed, False),
        (404, None, "Session expired. Please log in again.", AuthFailed, False),
        (403, None, "Forbidden", AuthFailed, False),
        (403, "invalid_args", "error 403/3586: Offer 1 is not your own. Hosts can only rent their own machines.", CapacityGone, False),
        (404, "invalid_args", "error 404/3603: no_such_ask Instance type by id 1 is not available.", CapacityGone, False),
        (410, "no_such_ask", "error 410/3907: no_such_ask Instance type 1 is no longer available.", CapacityGone, False),
        (404, "not_found", "Instance not found", NotFoundOnVendor, False),
        (404, "no_such_instance", "Instance 1 not found.", NotFoundOnVendor, False),
        (400, "invalid_args", "invalid instance_id", InvalidRequest, False),
        (400, "invalid_price", "error 400/3467: Invalid price", InvalidRequest, False),
        (400, "missing_billing", "no credit", InvalidRequest, False),
        (400, "invalid_token", "Invalid after_token", InvalidRequest, False),
        (500, "server_error", "Internal Server Error", VendorUnavailable, True),
        (503, None, "<html>503 Service Temporarily Unavailable</html>", VendorUnavailable, True),
        (504, None, "<html>504 Gateway Time-out</html>", VendorUnavailable, True),
        (408, None, "timeout", VendorUnavailable, True),
    ],
)
def test_classify_failure(status: int, code: str | None, message: str, error: type[VendorError], retryable: bool) -> None:
    classified = classify_failure(status, code, message, 2.0, 3600.0)
    assert type(classified) is error
    assert classified.retryable is retryable
    assert classified.vendor_message == message and classified.status == status
    if isinstance(classified, RateLimited):
        assert classified.retry_after == (3600.0 if code == "search_quota_exceeded" else 2.0)


def test_classifier_reads_every_envelope() -> None:
    create_429 = classify_response("vast", httpx.Response(429, json={"detail": "API requests too frequent endpoint threshold=4.5"}, headers={"Retry-After": "1"}))
    assert isinstance(create_429, RateLimited) and create_429.retry_after == 1.0 and "threshold=4.5" in create_429.vendor_message
    html = classify_response("vast", httpx.Response(503, text="<html><title>503 Service Temporarily Unavailable</title></html>"))
    assert isinstance(html, VendorUnavailable) and "503" in html.vendor_message
    reset = int(time.time()) + 7200
    quota = classify_response("vast", httpx.Response(429, json={"success": False, "error": "search_quota_exceeded", "msg": "quota"},
                                                   headers={"X-RateLimit-Reset": str(reset)}))
    assert isinstance(quota, RateLimited) and not quota.retryable and 7000 < (quota.retry_after or 0) <= 7200
    bundles = classify_response("vast", httpx.Response(404, json={"error": "auth_error", "msg": "Invalid user key"}))
    assert isinstance(bundles, AuthFailed)
    bare = classify_response("vast", httpx.Response(400, json={"error": "invalid_request"}))
    assert isinstance(bare, InvalidRequest) and bare.vendor_message == "invalid_request"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"success": True, "instances_found": 0, "total_instances": 0, "next_token": None, "instances": []}, ([], None, 0)),
        ({"instances": [RUNNING_ROW], "next_token": "eyJ2IjogMX0=", "instances_found": 1}, ([RUNNING_ROW], "eyJ2IjogMX0=", None)),
        ({"instances_found": 0, "instances": []}, ([], None, None)),  # the v0 shape parses too
    ],
)
def test_parse_page(body: Any, expected: tuple[Any, ...]) -> None:
    page = parse_page(body)
    assert (page.instances, page.next_token, page.total) == expected


@pytest.mark.parametrize(
    "body",
    [[], {"results": []}, {"instances": {}}, {"instances": [], "next_token": 5}, {"instances": [], "next_token": ""},
     {"instances": [RUNNING_ROW], "instances_found": 2}, {"instances": [], "total_instances": "many"}],
)
def test_parse_page_rejects_what_vast_never_sends(body: Any) -> None:
    with pytest.raises(ValueError):
        parse_page(body)


def test_onstart_installs_the_key_and_runs_the_script_once(tmp_path: Path) -> None:
    script = "#!/bin/sh\necho ran >> \"$HOME/ran.txt\"\n"
    onstart = build_onstart(SSH_KEY, script)
    assert SSH_KEY in onstart and base64.b64encode(script.encode()).decode() in onstart
    for _ in range(3):  # onstart runs on every container start
        subprocess.run(["bash", "-c", onstart], env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}, check=True, timeout=20)
    deadline = time.monotonic() + 10
    while not (tmp_path / "ran.txt").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (tmp_path / ".ssh" / "authorized_keys").read_text().splitlines() == [SSH_KEY]
    assert (tmp_path / "ran.txt").read_text() == "ran\n"
    assert build_onstart(SSH_KEY, None).count("\n") == 3


def test_onstart_installs_a_key_whose_comment_has_quotes(tmp_path: Path) -> None:
    """The API accepts any valid OpenSSH key line, comment included: the script must carry it."""
    key = SSH_KEY.split()[0] + " " + SSH_KEY.split()[1] + " it's \"my\" laptop; $(touch pwned) `id`"
    onstart = build_onstart(key, None)
    for _ in range(2):
        subprocess.run(["bash", "-c", onstart], env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}, check=True, timeout=20)
    assert (tmp_path / ".ssh" / "authorized_keys").read_text().splitlines() == [key]
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


@pytest.mark.parametrize(
    ("key", "cloud_init", "message"),
    [
        (SSH_KEY, "#cloud-config\npackages: [htop]\n", "#cloud-config is not supported"),
        (SSH_KEY, "echo hi\n", "starting with #!"),
        ("ssh-ed25519 AAAA\nrm -rf /", None, "one line"),
        ("", None, "one line"),
    ],
)
def test_onstart_refuses_what_it_cannot_carry(key: str, cloud_init: str | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_onstart(key, cloud_init)


def test_constructor_options() -> None:
    with pytest.raises(TypeError, match="unknown option"):
        VastAdapter("http://127.0.0.1:1", "k", colour="blue")
    for bad in ({"page_limit": 26}, {"disk_gb": 4}, {"search_limit": 0}, {"rate_scale": 0}):
        with pytest.raises(ValueError):
            VastAdapter("http://127.0.0.1:1", "k", **bad)


def test_capabilities_and_protocol() -> None:
    adapter = VastAdapter("http://127.0.0.1:1", "k")
    assert isinstance(adapter, VendorAdapter)
    caps = adapter.capabilities
    assert (caps.stop_start, caps.reboot, caps.marker, caps.spot, caps.idempotency_key, caps.stopped_bills_gpu) == (True, True, True, True, False, False)


def test_search_and_create_bodies() -> None:
    adapter = VastAdapter("http://127.0.0.1:1", "k", image="pytorch/pytorch", disk_gb=50)
    body = adapter.search_body()
    assert body["rentable"] == {"eq": True} and body["rented"] == {"eq": False} and body["verified"] == {"eq": True}
    assert body["disk_space"] == {"gte": 50.0} and body["allocated_storage"] == 50.0 and body["type"] == "on-demand"
    assert "verified" not in VastAdapter("http://127.0.0.1:1", "k", verified_only=False).search_body()
    ondemand = map_offer(OFFER_ROW, "ondemand", NOW, 50.0)
    request = CreateRequest(uuid.uuid4(), ondemand, SSH_KEY)
    create = adapter.create_body(request)
    assert (create["image"], create["disk"], create["label"], create["runtype"], create["cancel_unavail"]) == (
        "pytorch/pytorch", 50.0, request.marker, "ssh", True)
    assert "price" not in create and SSH_KEY in create["onstart"]
    spot = adapter.create_body(CreateRequest(uuid.uuid4(), map_offer(OFFER_ROW, "spot", NOW, 50.0), SSH_KEY))
    assert spot["price"] == 9.5
    assert VastAdapter("http://127.0.0.1:1", "k").create_body(request)["image"] == DEFAULT_IMAGE


# ----- against the sandbox -------------------------------------------------------------------------


async def test_offers_are_normalized() -> None:
    async with vast_rig() as rig:
        vast = rig.adapter()
        offers = await vast.list_offers()
        ondemand = [o for o in offers if o.contract_type == "ondemand"]
        spot = {o.vendor_offer_id: o for o in offers if o.contract_type == "spot"}
        assert ondemand and len(spot) == len(ondemand)
        for offer in ondemand:
            assert offer.gpu_known and offer.gpu_type.startswith("nvidia-") and offer.available
            assert offer.total_price_per_hour == pytest.approx(offer.gpu_price_per_hour * offer.gpu_count, abs=1e-4)
            assert offer.disk_gb is not None and offer.disk_gb >= DEFAULT_DISK_GB
            assert offer.country and offer.vendor_region.endswith(offer.country) and offer.region in ("US", "EU", "APAC", "Other")
            assert spot[offer.vendor_offer_id].total_price_per_hour < offer.total_price_per_hour
        # the same asks the vendor shows to a search with our query
        rows = rig.admin.post("/api/v0/bundles/", json=vast.search_body()).json()["offers"]
        assert [int(o.vendor_offer_id) for o in ondemand] == [r["id"] for r in rows]
        assert rig.state()["requests"] == 2


async def test_whole_lifecycle() -> None:
    async with vast_rig() as rig:
        vast = rig.adapter()
        offer = cheapest(await vast.list_offers())
        request = rig.request(offer, cloud_init="#!/bin/bash\necho hello\n")
        created = await vast.create(request)
        assert created.state == S.PROVISIONING and created.marker == request.marker and created.external_ip is None
        sim = rig.sandbox.instances[created.vendor_instance_id]
        assert sim.marker == request.marker and [k["key"] for k in sim.data["ssh_keys"]] == [SSH_KEY]
        assert SSH_KEY in sim.data["onstart"] and sim.data["image"] == DEFAULT_IMAGE and sim.data["disk"] == DEFAULT_DISK_GB
        assert (await vast.get(created.vendor_instance_id)).state == S.PROVISIONING
        rig.advance(16)
        assert (await vast.get(created.vendor_instance_id)).raw_status == "loading"
        rig.advance(15)
        running = await vast.get(created.vendor_instance_id)
        assert running.state == S.RUNNING and running.external_ip and running.ssh_host and running.ssh_port
        assert running.vendor_region == offer.vendor_region and running.gpu_name == offer.gpu_type
        assert running.price_per_hour == pytest.approx(offer.total_price_per_hour, abs=1e-5)
        assert [i.vendor_instance_id for i in await vast.list_instances()] == [created.vendor_instance_id]

        await vast.stop(created.vendor_instance_id)
        assert (await vast.get(created.vendor_instance_id)).state == S.STOPPING
        rig.advance(2)
        assert (await vast.get(created.vendor_instance_id)).state == S.STOPPED
        await vast.start(created.vendor_instance_id)
        rig.advance(2)
        assert (await vast.get(created.vendor_instance_id)).state == S.RUNNING
        await vast.reboot(created.vendor_instance_id)
        assert (await vast.get(created.vendor_instance_id)).state == S.REBOOTING
        rig.advance(2)
        assert (await vast.get(created.vendor_instance_id)).state == S.RUNNING

        await vast.delete(created.vendor_instance_id)
        with pytest.raises(NotFoundOnVendor):
            await vast.get(created.vendor_instance_id)
        await vast.delete(created.vendor_instance_id)  # already gone: returns normally
        assert await vast.list_instances() == []
        with pytest.raises(NotFoundOnVendor):
            await vast.stop(created.vendor_instance_id)
        truth = rig.state()
        assert len(truth["creates"]) == 1 and len(truth["deletes"]) == 1 and rig.live_ids() == set()


async def test_spot_create_bids_the_offers_min_bid() -> None:
    async with vast_rig() as rig:
        vast = rig.adapter()
        offer = cheapest(await vast.list_offers(), "spot")
        created = await vast.create(rig.request(offer))
        assert created.extra["is_bid"] is True
        sim = rig.sandbox.instances[created.vendor_instance_id]
        assert sim.data["price"] == offer.vendor_data["min_bid"]
        assert (await vast.get(created.vendor_instance_id)).price_per_hour == pytest.approx(offer.total_price_per_hour, abs=1e-5)


async def test_taken_ask_is_capacity_gone_and_keeps_vasts_message() -> None:
    async with vast_rig() as rig:
        vast = rig.adapter()
        offer = cheapest(await vast.list_offers())
        await vast.create(rig.request(offer))
        with pytest.raises(CapacityGone) as caught:
            await rig.adapter("k2").create(rig.request(offer))
        assert caught.value.status == 410 and "no_such_ask" in caught.value.vendor_message
        rig.assert_one_create_per_marker()


async def test_create_refuses_cloud_config_and_foreign_offers_without_calling_vast() -> None:
    async with vast_rig() as rig:
        vast = rig.adapter()
        offer = cheapest(await vast.list_offers())
        before = rig.state()["requests"]
        with pytest.raises(InvalidRequest, match="cloud-config"):
            await vast.create(rig.request(offer, cloud_init="#cloud-config\nruncmd: [ls]\n"))
        foreign = replace(offer, vendor="fal")
        with pytest.raises(InvalidRequest, match="not vast"):
            await vast.create(rig.request(foreign))
        with pytest.raises(InvalidRequest):
            await vast.get("inst_abc")
        assert rig.state()["requests"] == before


async def test_auth_failures_are_typed() -> None:
    async with vast_rig() as rig:
        with pytest.raises(AuthFailed) as caught:
            await rig.adapter("bad key").list_instances()
        assert caught.value.status == 401 and caught.value.vendor_message == "Invalid user key"
        with pytest.raises(AuthFailed) as on_search:
            await rig.adapter("bad key").list_offers()
        assert on_search.value.status == 404  # search_offers.yaml documents a 404 there


async def test_list_walks_every_page() -> None:
    async with vast_rig() as rig:
        vast = rig.adapter(page_limit=2)
        offers = sorted((o for o in await vast.list_offers() if o.contract_type == "ondemand"), key=lambda o: o.total_price_per_hour)
        made = {(await vast.create(rig.request(offer))).vendor_instance_id for offer in offers[:5]}
        before = rig.state()["requests"]
        assert {i.vendor_instance_id for i in await vast.list_instances()} == made == rig.live_ids()
        assert rig.state()["requests"] - before == 3  # pages of 2, 2, 1


async def test_accounts_are_separate() -> None:
    async with vast_rig() as rig:
        alice, bob = rig.adapter("alice"), rig.adapter("bob")
        created = await alice.create(rig.request(cheapest(await alice.list_offers())))
        assert await bob.list_instances() == []
        with pytest.raises(NotFoundOnVendor):
            await bob.get(created.vendor_instance_id)
        await bob.delete(created.vendor_instance_id)  # 404 for bob: nothing of his to delete
        assert rig.live_ids("alice") == {created.vendor_instance_id}


async def test_recover_finds_nothing_when_nothing_was_made() -> None:
    async with vast_rig() as rig:
        vast = rig.adapter()
        offer = cheapest(await vast.list_offers())
        await vast.create(rig.request(offer))  # someone else's resource on the same account
        assert await vast.recover(rig.request(offer)) is None


# ----- faults --------------------------------------------------------------------------------------


async def test_429_storm_calls_still_succeed() -> None:
    async with vast_rig() as rig:
        vast = rig.adapter(retry=RetryPolicy(attempts=10, base_delay=0.01, max_delay=0.05))
        created = await vast.create(rig.request(cheapest(await vast.list_offers())))
        rig.set_faults({"429": 0.7})
        for _ in range(4):
            assert (await vast.get(created.vendor_instance_id)).vendor_instance_id == created.vendor_instance_id
        assert len(await vast.list_instances()) == 1
        assert rig.state()["injected"]["429"] > 0


async def test_pacing_stays_under_the_sandbox_rate_limits() -> None:
    # Both sides scaled 10x so the run takes a few seconds; the sandbox counts every 429 it sends.
    async with vast_rig() as rig:
        vast = rig.adapter()
        offers = [o for o in await vast.list_offers() if o.contract_type == "ondemand"]
        await vast.list_offers()
        created = [await vast.create(rig.request(offer)) for offer in offers[:6]]
        for _ in range(12):
            await vast.get(created[0].vendor_instance_id)
        for _ in range(3):
            await vast.list_instances()
        for inst in created[:4]:
            await vast.stop(inst.vendor_instance_id)
        for inst in created:
            await vast.delete(inst.vendor_instance_id)
        assert rig.state()["rate_limited"] == 0 and rig.live_ids() == set()


async def test_5xx_is_retried_for_reads_and_surfaces_when_it_persists() -> None:
    async with vast_rig() as rig:
        vast = rig.adapter(retry=RetryPolicy(attempts=8, base_delay=0.01, max_delay=0.02))
        created = await vast.create(rig.request(cheapest(await vast.list_offers())))
        rig.set_faults({"500": 0.4, "503": 0.3})
        assert (await vast.get(created.vendor_instance_id)).vendor_instance_id == created.vendor_instance_id
        await vast.delete(created.vendor_instance_id)
        assert rig.live_ids() == set()
        rig.set_faults({"500": 1.0})
        with pytest.raises(VendorUnavailable) as caught:
            await vast.list_instances()
        assert caught.value.vendor_message == "Internal Server Error"


async def test_create_is_never_retried_blindly() -> None:
    async with vast_rig() as rig:
        vast = rig.adapter()
        offer = cheapest(await vast.list_offers())
        before = rig.state()["requests"]
        rig.set_faults({"503": 1.0})
        with pytest.raises(VendorUnavailable):
            await vast.create(rig.request(offer))
        assert rig.state()["requests"] - before == 1 and rig.state()["creates"] == []


async def test_hang_times_out_as_vendor_unavailable() -> None:
    async with vast_rig() as rig:
        vast = rig.adapter(timeout=0.2, retry=RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02))
        rig.set_faults({"hang": 1.0})
        with pytest.raises(VendorUnavailable, match="timed out"):
            await vast.list_instances()


async def test_lost_create_is_recovered_exactly_once() -> None:
    async with vast_rig() as rig:
        vast = rig.adapter(timeout=0.2)
        offer = cheapest(await vast.list_offers())
        request = rig.request(offer)
        rig.set_faults({"lost": 1.0})
        with pytest.raises(VendorUnavailable):
            await vast.create(request)
        rig.set_faults({})
        assert len(rig.state()["creates"]) == 1  # it did commit
        recovered = await vast.recover(request)
        again = await vast.recover(request)
        assert recovered is not None and again is not None
        assert recovered.vendor_instance_id == again.vendor_instance_id and recovered.resource_id == request.resource_id
        assert rig.live_ids() == {recovered.vendor_instance_id}
        # recover attached the key the lost create never got to attach
        assert [k["key"] for k in rig.sandbox.instances[recovered.vendor_instance_id].data["ssh_keys"]] == [SSH_KEY]
        assert len(rig.state()["creates"]) == 1
        rig.assert_one_create_per_marker()


async def test_hung_create_that_never_committed_recovers_nothing() -> None:
    async with vast_rig() as rig:
        vast = rig.adapter(timeout=0.2)
        request = rig.request(cheapest(await vast.list_offers()))
        rig.set_faults({"hang": 1.0})
        with pytest.raises(VendorUnavailable):
            await vast.create(request)
        rig.set_faults({})
        assert rig.state()["creates"] == []
        assert await vast.recover(request) is None
        created = await vast.create(request)  # the engine may now create again: still only one
        assert (await vast.recover(request)).vendor_instance_id == created.vendor_instance_id  # type: ignore[union-attr]
        rig.assert_one_create_per_marker()


async def test_create_whose_key_attach_fails_is_recovered() -> None:
    async with vast_rig() as rig:
        vast = rig.adapter(retry=RetryPolicy(attempts=1))
        request = rig.request(cheapest(await vast.list_offers()))
        documented = dict(rig.sandbox.rate_limits)
        rig.sandbox.rate_limits = {**documented, "ssh": (0.001, 1.0)}  # one SSH call per ~100 s (scaled)
        rig.admin.request("DELETE", "/api/v0/ssh/1/", json={}, headers={"Authorization": "Bearer k1"})  # uses it up
        with pytest.raises(VendorUnavailable, match="attaching the SSH key failed"):
            await vast.create(request)
        assert len(rig.live_ids()) == 1
        rig.sandbox.rate_limits = documented
        rig.admin.put("/_sandbox/config", json={"rate_limits": True}).raise_for_status()  # fresh buckets
        recovered = await vast.recover(request)
        assert recovered is not None and rig.live_ids() == {recovered.vendor_instance_id}
        assert [k["key"] for k in rig.sandbox.instances[recovered.vendor_instance_id].data["ssh_keys"]] == [SSH_KEY]
        rig.assert_one_create_per_marker()


async def test_malformed_lists_raise_never_empty() -> None:
    async with vast_rig(rig_config(rate_limits=False)) as rig:
        vast = rig.adapter()
        await vast.create(rig.request(cheapest(await vast.list_offers())))
        rig.set_faults({"malformed": 1.0})
        for _ in range(6):  # truncated JSON, wrong shape, and a page that claims more rows than it has
            with pytest.raises(VendorUnavailable, match="malformed"):
                await vast.list_instances()
        for _ in range(3):
            with pytest.raises(VendorUnavailable, match="malformed"):
                await vast.list_offers()
        assert rig.state()["injected"]["malformed"] == 9


async def test_preempted_instance_is_gone() -> None:
    async with vast_rig(rig_config(ready_after=10.0)) as rig:
        vast = rig.adapter()
        offer = cheapest(await vast.list_offers(), "spot")
        created = await vast.create(rig.request(offer))
        rig.set_faults({"preempt": 1.0})
        rig.advance(10 + 60)
        with pytest.raises(NotFoundOnVendor):
            await vast.get(created.vendor_instance_id)
        assert await vast.list_instances() == []
        await vast.delete(created.vendor_instance_id)  # 404 on delete means gone
        assert rig.live_ids() == set() and rig.state()["deletes"] == []


async def test_daily_search_quota_is_not_retried() -> None:
    async with vast_rig(search_quota=1) as rig:
        vast = rig.adapter()
        await vast.list_offers()
        before = rig.state()["requests"]
        with pytest.raises(RateLimited) as caught:
            await vast.list_offers()
        assert caught.value.retryable is False and caught.value.retry_after is not None and caught.value.retry_after > 0
        assert rig.state()["requests"] - before == 1


async def test_registry_serves_the_vast_sandbox_to_the_real_adapter() -> None:
    settings = Settings(enabled_vendors="vast", vast_api_key=None, sandbox_ready_after=1.0, sandbox_offers=300)
    vendors = await build_vendors(settings)
    try:
        vast = vendors.adapters["vast"]
        assert isinstance(vast, VastAdapter) and vendors.modes["vast"] == "sandbox"
        offer = cheapest(await vast.list_offers())
        created = await vast.create(CreateRequest(uuid.uuid4(), offer, SSH_KEY))
        assert [i.vendor_instance_id for i in await vast.list_instances()] == [created.vendor_instance_id]
        await vast.delete(created.vendor_instance_id)
        assert await vast.list_instances() == []
    finally:
        await vendors.aclose()
