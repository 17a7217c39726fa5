"""The fal adapter: pure mapping tables, then the real adapter against the fal sandbox over HTTP."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from gpusupply.core.errors import (
    AuthFailed,
    CapacityGone,
    InvalidRequest,
    NotFoundOnVendor,
    RateLimited,
    RecoveryWindowPassed,
    Unsupported,
    VendorError,
    VendorUnavailable,
)
from gpusupply.core.states import InstanceState
from gpusupply.sandbox.mode import build_vendors
from gpusupply.settings import Settings
from gpusupply.vendors import registry
from gpusupply.vendors.base import CreateRequest, VendorAdapter
from gpusupply.vendors.fal import (
    DEFAULT_PRICE_TABLE,
    FalAdapter,
    MalformedInstance,
    classify_failure,
    classify_response,
    map_instance,
    map_offer,
    map_state,
    offers_from_price_table,
    parse_instance_type,
    parse_offer_id,
    parse_page,
    region_group,
    validate_price_table,
)
from gpusupply.vendors.http import RetryPolicy

from .fal_fixtures import fal_rig, rig_config

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

# ----- pure mapping --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("init", InstanceState.PROVISIONING),
        ("pending", InstanceState.PROVISIONING),
        ("provisioning", InstanceState.PROVISIONING),
        ("ready", InstanceState.RUNNING),
        ("READY", InstanceState.RUNNING),
        ("stopped", InstanceState.STOPPED),
        ("unknown", InstanceState.UNKNOWN),
        ("exploded", InstanceState.UNKNOWN),
        ("", InstanceState.UNKNOWN),
        (None, InstanceState.UNKNOWN),
    ],
)
def test_map_state(status: str | None, state: InstanceState) -> None:
    assert map_state(status) == state


@pytest.mark.parametrize(
    ("name", "parsed"),
    [
        ("gpu_1x_h100_sxm5", (1, "h100 sxm5")),
        ("gpu_8x_h100_sxm5", (8, "h100 sxm5")),
        ("gpu_4x_b300_sxm6", (4, "b300 sxm6")),
        ("gpu_0x_h100", None),
        ("h100", None),
        ("cpu_large", None),
    ],
)
def test_parse_instance_type(name: str, parsed: tuple[int, str] | None) -> None:
    assert parse_instance_type(name) == parsed


@pytest.mark.parametrize(
    ("region", "group"),
    [("us-west", "US"), ("us-central", "US"), ("us-east", "US"), ("eu-north", "EU"), ("eu-west", "EU"), ("other", "Other"), (None, "Other")],
)
def test_region_group(region: str | None, group: str) -> None:
    assert region_group(region) == group


@pytest.mark.parametrize(
    ("offer_id", "parsed"),
    [("gpu_1x_h100_sxm5", ("gpu_1x_h100_sxm5", None)), ("gpu_8x_h100_sxm5:sector_2", ("gpu_8x_h100_sxm5", "sector_2"))],
)
def test_parse_offer_id(offer_id: str, parsed: tuple[str, str | None]) -> None:
    assert parse_offer_id(offer_id) == parsed


@pytest.mark.parametrize(
    ("instance_type", "sector", "price", "expected"),
    [
        ("gpu_1x_h100_sxm5", None, 1.89, ("gpu_1x_h100_sxm5", "nvidia-h100-sxm5-80gb", "H100", 1, 80.0, 1.89, True)),
        ("gpu_8x_h100_sxm5", "sector_3", 2.0, ("gpu_8x_h100_sxm5:sector_3", "nvidia-h100-sxm5-80gb", "H100", 8, 80.0, 16.0, True)),
        ("gpu_2x_zz900_sxm9", None, 5.0, ("gpu_2x_zz900_sxm9", "unknown-zz900-sxm9", "ZZ900SXM9", 2, 0.0, 10.0, False)),
    ],
)
def test_map_offer(instance_type: str, sector: str | None, price: float, expected: tuple[Any, ...]) -> None:
    offer = map_offer(instance_type, sector, price, NOW)
    got = (offer.vendor_offer_id, offer.gpu_type, offer.gpu_family, offer.gpu_count, offer.gpu_memory_gb,
           offer.total_price_per_hour, offer.gpu_known)
    assert got == expected
    assert (offer.vendor, offer.contract_type, offer.vendor_region, offer.region, offer.fetched_at) == ("fal", "ondemand", "auto", "Other", NOW)
    assert offer.gpu_price_per_hour == price and offer.available
    assert offer.vendor_data["sector"] == sector


def test_offers_are_instance_types_and_8x_sectors() -> None:
    offers = offers_from_price_table(DEFAULT_PRICE_TABLE, NOW)
    assert [o.vendor_offer_id for o in offers] == [
        "gpu_1x_h100_sxm5", "gpu_8x_h100_sxm5:sector_1", "gpu_8x_h100_sxm5:sector_2", "gpu_8x_h100_sxm5:sector_3",
    ]


READY = {"id": "inst_abc123xyz", "instance_type": "gpu_8x_h100_sxm5", "region": "us-west", "sector": "sector_1",
         "ip": "203.0.113.42", "status": "ready", "creator_user_nickname": "developer"}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (READY, ("inst_abc123xyz", InstanceState.RUNNING, "ready", "203.0.113.42", 22, "us-west", 8, 15.12, "sector_1", "US")),
        ({"id": "inst_b", "instance_type": "gpu_1x_h100_sxm5", "region": "eu-north", "status": "provisioning"},
         ("inst_b", InstanceState.PROVISIONING, "provisioning", None, None, "eu-north", 1, 1.89, None, "EU")),
        ({**READY, "ip": "", "status": "rebooting"},
         ("inst_abc123xyz", InstanceState.UNKNOWN, "rebooting", None, None, "us-west", 8, 15.12, "sector_1", "US")),
        ({"id": "inst_c", "instance_type": "gpu_4x_b300_sxm6", "region": "other", "status": "ready", "ip": "192.0.2.1"},
         ("inst_c", InstanceState.RUNNING, "ready", "192.0.2.1", 22, "other", 4, None, None, "Other")),
    ],
)
def test_map_instance(raw: dict[str, Any], expected: tuple[Any, ...]) -> None:
    inst = map_instance(raw, DEFAULT_PRICE_TABLE)
    got = (inst.vendor_instance_id, inst.state, inst.raw_status, inst.external_ip, inst.ssh_port, inst.vendor_region,
           inst.gpu_count, inst.price_per_hour, inst.extra["sector"], inst.extra["region_group"])
    assert got == expected
    assert inst.marker is None and inst.resource_id is None


def test_map_instance_keeps_unknown_gpus() -> None:
    inst = map_instance({"id": "i", "instance_type": "mystery_box", "status": "ready"})
    assert inst.gpu_name == "unknown-mystery-box" and inst.gpu_count is None and inst.vendor_region is None


@pytest.mark.parametrize(
    "raw",
    [None, [], "inst_a", {"status": "ready", "instance_type": "gpu_1x_h100_sxm5"}, {"id": "", "status": "ready", "instance_type": "x"},
     {"id": "i", "instance_type": "gpu_1x_h100_sxm5"}, {"id": "i", "status": "ready"}, {"id": 5, "status": "ready", "instance_type": "x"}],
)
def test_map_instance_rejects_broken_objects(raw: Any) -> None:
    with pytest.raises(MalformedInstance):
        map_instance(raw)


@pytest.mark.parametrize(
    ("status", "kind", "message", "error", "retryable"),
    [
        (429, "rate_limited", "Rate limit exceeded", RateLimited, True),
        (401, "authorization_error", "Authentication required", AuthFailed, False),
        (403, "authorization_error", "Access denied", AuthFailed, False),
        (404, "not_found", "Resource not found", NotFoundOnVendor, False),
        (400, "validation_error", "ssh_key is required", InvalidRequest, False),
        (400, "validation_error", "Insufficient capacity for gpu_8x_h100_sxm5 in sector_1", CapacityGone, False),
        (500, "server_error", "An unexpected error occurred", VendorUnavailable, True),
        (503, None, "<html>", VendorUnavailable, True),
        (502, None, "Bad Gateway", VendorUnavailable, True),
        (408, None, "timeout", VendorUnavailable, True),
        (409, None, "conflict", VendorUnavailable, True),
        (405, "not_implemented", "Method not allowed", Unsupported, False),
        (501, None, "nope", Unsupported, False),
        (422, None, "odd", InvalidRequest, False),
        (400, "rate_limited", "slow down", RateLimited, True),
    ],
)
def test_classify_failure(status: int, kind: str | None, message: str, error: type[VendorError], retryable: bool) -> None:
    classified = classify_failure(status, kind, message, 2.0)
    assert type(classified) is error
    assert classified.retryable is retryable
    assert classified.vendor_message == message and classified.status == status
    if isinstance(classified, RateLimited):
        assert classified.retry_after == 2.0


def test_classifier_reads_envelope_and_non_json_bodies() -> None:
    envelope = httpx.Response(429, json={"error": {"type": "rate_limited", "message": "Rate limit exceeded"}}, headers={"Retry-After": "3"})
    limited = classify_response("fal", envelope)
    assert isinstance(limited, RateLimited) and limited.retry_after == 3.0 and limited.vendor_message == "Rate limit exceeded"
    html = classify_response("fal", httpx.Response(502, text="<html>Bad Gateway</html>"))
    assert isinstance(html, VendorUnavailable) and "Bad Gateway" in html.vendor_message


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"instances": [], "next_cursor": None, "has_more": False}, ([], None)),
        ({"instances": [READY], "next_cursor": "Mg==", "has_more": True}, ([READY], "Mg==")),
        ({"instances": [], "next_cursor": "Mg==", "has_more": False}, ([], None)),  # has_more decides
    ],
)
def test_parse_page(body: Any, expected: tuple[list[Any], str | None]) -> None:
    assert parse_page(body) == expected


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"data": []},
        {"instances": {}, "next_cursor": None, "has_more": False},
        {"instances": [], "next_cursor": None},
        {"instances": [], "next_cursor": None, "has_more": True},
        {"instances": [], "next_cursor": 2, "has_more": True},
    ],
)
def test_parse_page_rejects_what_fal_never_sends(body: Any) -> None:
    with pytest.raises(ValueError):
        parse_page(body)


@pytest.mark.parametrize(
    "table",
    [{}, {"h100": 1.0}, {"gpu_1x_h100_sxm5": 0}, {"gpu_1x_h100_sxm5": -1}, {"gpu_1x_h100_sxm5": "cheap"}, {"gpu_1x_h100_sxm5": True}],
)
def test_bad_price_tables_are_refused(table: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        validate_price_table(table)


async def test_price_table_from_settings_through_the_registry() -> None:
    settings = Settings(fal_price_table='{"gpu_8x_h100_sxm5": 2.25, "gpu_2x_b300_sxm6": 7}')
    adapter = FalAdapter("http://127.0.0.1:1", "k", **registry.adapter_options("fal", settings))
    try:
        offers = {o.vendor_offer_id: o for o in await adapter.list_offers()}
        assert offers["gpu_8x_h100_sxm5:sector_1"].gpu_price_per_hour == 2.25
        assert offers["gpu_1x_h100_sxm5"].gpu_price_per_hour == DEFAULT_PRICE_TABLE["gpu_1x_h100_sxm5"]
        assert offers["gpu_2x_b300_sxm6"].gpu_known is False and offers["gpu_2x_b300_sxm6"].total_price_per_hour == 14.0
    finally:
        await adapter.aclose()


def test_constructor_refuses_unknown_options() -> None:
    with pytest.raises(TypeError, match="unknown option"):
        FalAdapter("http://127.0.0.1:1", "k", colour="blue")
    with pytest.raises(ValueError):
        FalAdapter("http://127.0.0.1:1", "k", page_limit=0)


def test_capabilities_and_protocol() -> None:
    adapter = FalAdapter("http://127.0.0.1:1", "k")
    assert isinstance(adapter, VendorAdapter)
    caps = adapter.capabilities
    assert (caps.idempotency_key, caps.marker, caps.stop_start, caps.reboot, caps.spot) == (True, False, False, False, False)


# ----- against the sandbox -------------------------------------------------------------------------


async def test_whole_lifecycle() -> None:
    async with fal_rig() as rig:
        fal = rig.adapter()
        offers = await fal.list_offers()
        one_x = next(o for o in offers if o.gpu_count == 1)
        request = rig.request(one_x)
        created = await fal.create(request)
        assert created.state == InstanceState.PROVISIONING and created.external_ip is None
        assert rig.state()["creates"][0]["marker"] == request.idempotency_key  # the key travelled
        rig.advance(31)
        running = await fal.get(created.vendor_instance_id)
        assert running.state == InstanceState.RUNNING and running.external_ip and running.ssh_port == 22
        assert running.vendor_region in ("us-west", "us-central", "us-east", "eu-north", "eu-west", "other")
        assert [i.vendor_instance_id for i in await fal.list_instances()] == [created.vendor_instance_id]
        for operation in (fal.stop, fal.start, fal.reboot):
            with pytest.raises(Unsupported):
                await operation(created.vendor_instance_id)
        await fal.delete(created.vendor_instance_id)
        with pytest.raises(NotFoundOnVendor):
            await fal.get(created.vendor_instance_id)
        await fal.delete(created.vendor_instance_id)  # already gone: returns normally
        assert await fal.list_instances() == []
        truth = rig.state()
        assert len(truth["creates"]) == 1 and len(truth["deletes"]) == 1 and rig.live_ids() == set()


async def test_8x_create_sends_the_offers_sector() -> None:
    async with fal_rig() as rig:
        fal = rig.adapter()
        offer = next(o for o in await fal.list_offers() if o.vendor_offer_id.endswith("sector_2"))
        created = await fal.create(rig.request(offer))
        assert created.extra["sector"] == "sector_2" and created.gpu_count == 8
        assert created.vendor_region == rig.sandbox.sector_regions["sector_2"]


async def test_capacity_gone_is_typed_and_keeps_fals_message() -> None:
    async with fal_rig() as rig:
        fal = rig.adapter()
        offer = next(o for o in await fal.list_offers() if o.vendor_offer_id.endswith("sector_1"))
        for _ in range(rig.sandbox.stock[("gpu_8x_h100_sxm5", "sector_1")]):
            await fal.create(rig.request(offer))
        with pytest.raises(CapacityGone) as caught:
            await fal.create(rig.request(offer))
        assert "Insufficient capacity" in caught.value.vendor_message


async def test_create_refuses_cloud_init_without_calling_fal() -> None:
    async with fal_rig() as rig:
        fal = rig.adapter()
        offer = (await fal.list_offers())[0]
        with pytest.raises(InvalidRequest, match="cloud-init"):
            await fal.create(rig.request(offer, cloud_init="#cloud-config\n"))
        assert rig.state()["requests"] == 0


async def test_auth_failures_are_typed() -> None:
    async with fal_rig() as rig:
        with pytest.raises(AuthFailed) as caught:
            await rig.adapter("nocompute-key").list_instances()
        assert caught.value.status == 403 and caught.value.vendor_message == "Access denied"


async def test_list_walks_every_page() -> None:
    async with fal_rig(rig_config(offers=2000)) as rig:
        fal = rig.adapter(page_limit=2)
        offer = next(o for o in await fal.list_offers() if o.gpu_count == 1)
        made = {(await fal.create(rig.request(offer))).vendor_instance_id for _ in range(5)}
        before = rig.state()["requests"]
        assert {i.vendor_instance_id for i in await fal.list_instances()} == made == rig.live_ids()
        assert rig.state()["requests"] - before == 3  # pages of 2, 2, 1


async def test_accounts_are_separate() -> None:
    async with fal_rig() as rig:
        alice, bob = rig.adapter("alice"), rig.adapter("bob")
        created = await alice.create(rig.request((await alice.list_offers())[0]))
        assert await bob.list_instances() == []
        with pytest.raises(NotFoundOnVendor):
            await bob.get(created.vendor_instance_id)


# ----- faults --------------------------------------------------------------------------------------


async def test_429_storm_calls_still_succeed() -> None:
    async with fal_rig() as rig:
        fal = rig.adapter(retry=RetryPolicy(attempts=10, base_delay=0.01, max_delay=0.05))
        created = await fal.create(rig.request((await fal.list_offers())[0]))
        rig.set_faults({"429": 0.7})
        for _ in range(3):
            assert (await fal.get(created.vendor_instance_id)).vendor_instance_id == created.vendor_instance_id
        assert len(await fal.list_instances()) == 1
        assert rig.state()["injected"]["429"] > 0


async def test_pacing_stays_under_the_sandbox_rate_limit() -> None:
    # Both sides scaled 10x (100 requests/s per key) so the burst takes well under a second.
    async with fal_rig() as rig:
        fal = rig.adapter()
        created = await fal.create(rig.request((await fal.list_offers())[0]))
        for _ in range(30):
            await fal.get(created.vendor_instance_id)
        await fal.list_instances()
        assert rig.state()["rate_limited"] == 0


async def test_5xx_is_retried_for_reads_and_surfaces_when_it_persists() -> None:
    async with fal_rig() as rig:
        fal = rig.adapter(retry=RetryPolicy(attempts=8, base_delay=0.01, max_delay=0.02))
        created = await fal.create(rig.request((await fal.list_offers())[0]))
        rig.set_faults({"500": 0.5, "503": 0.3})
        assert (await fal.get(created.vendor_instance_id)).vendor_instance_id == created.vendor_instance_id
        await fal.delete(created.vendor_instance_id)
        assert rig.live_ids() == set()
        rig.set_faults({"500": 1.0})
        with pytest.raises(VendorUnavailable) as caught:
            await fal.list_instances()
        assert caught.value.vendor_message == "An unexpected error occurred"


async def test_create_is_never_retried_blindly() -> None:
    async with fal_rig() as rig:
        fal = rig.adapter()
        offer = (await fal.list_offers())[0]
        rig.set_faults({"503": 1.0})
        with pytest.raises(VendorUnavailable):
            await fal.create(rig.request(offer))
        assert rig.state()["requests"] == 1 and rig.state()["creates"] == []


async def test_hang_times_out_as_vendor_unavailable() -> None:
    async with fal_rig() as rig:
        fal = rig.adapter(timeout=0.2, retry=RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02))
        rig.set_faults({"hang": 1.0})
        with pytest.raises(VendorUnavailable, match="timed out"):
            await fal.list_instances()


async def test_lost_create_is_recovered_exactly_once() -> None:
    async with fal_rig() as rig:
        fal = rig.adapter(timeout=0.2)
        request = rig.request((await fal.list_offers())[0])
        rig.set_faults({"lost": 1.0})
        with pytest.raises(VendorUnavailable):
            await fal.create(request)
        rig.set_faults({})
        assert len(rig.state()["creates"]) == 1  # it did commit
        rig.advance(120)
        recovered = await fal.recover(request)
        again = await fal.recover(request)
        assert recovered is not None and again is not None
        assert recovered.vendor_instance_id == again.vendor_instance_id
        assert rig.live_ids() == {recovered.vendor_instance_id}
        assert len(rig.state()["creates"]) == 1
        rig.assert_one_create_per_key()


async def test_hung_create_that_never_committed_is_created_once_by_recover() -> None:
    async with fal_rig() as rig:
        fal = rig.adapter(timeout=0.2)
        request = rig.request((await fal.list_offers())[0])
        rig.set_faults({"hang": 1.0})
        with pytest.raises(VendorUnavailable):
            await fal.create(request)
        rig.set_faults({})
        assert rig.state()["creates"] == []
        recovered = await fal.recover(request)
        assert recovered is not None and rig.live_ids() == {recovered.vendor_instance_id}
        assert (await fal.recover(request)).vendor_instance_id == recovered.vendor_instance_id  # type: ignore[union-attr]
        rig.assert_one_create_per_key()


async def test_recover_refuses_after_the_replay_window() -> None:
    async with fal_rig() as rig:
        fal = rig.adapter(timeout=0.2)
        request = rig.request((await fal.list_offers())[0])
        rig.set_faults({"lost": 1.0})
        with pytest.raises(VendorUnavailable):
            await fal.create(request)
        rig.set_faults({})
        rig.advance(9 * 60)  # inside fal's 10 minutes, but past our safety margin
        with pytest.raises(RecoveryWindowPassed):
            await fal.recover(request)
        rig.advance(2 * 60)  # fal has forgotten the key: a replay now would create a second instance
        with pytest.raises(RecoveryWindowPassed) as caught:
            await fal.recover(request)
        assert "cannot be recovered" in str(caught.value)
        assert len(rig.state()["creates"]) == 1 and len(rig.live_ids()) == 1


async def test_recover_without_an_attempt_or_without_capacity_finds_nothing() -> None:
    async with fal_rig() as rig:
        fal = rig.adapter()
        offer = next(o for o in await fal.list_offers() if o.vendor_offer_id.endswith("sector_3"))
        never_sent = replace(rig.request(offer), first_attempt_at=None)
        assert await fal.recover(never_sent) is None
        assert rig.state()["requests"] == 0
        for _ in range(rig.sandbox.stock[("gpu_8x_h100_sxm5", "sector_3")]):
            await fal.create(rig.request(offer))
        assert await fal.recover(rig.request(offer, first_attempt_at=rig.now() - timedelta(seconds=30))) is None


async def test_recover_accepts_naive_utc_times() -> None:
    async with fal_rig() as rig:
        fal = rig.adapter()
        request = rig.request((await fal.list_offers())[0], first_attempt_at=rig.now().replace(tzinfo=None) - timedelta(hours=1))
        with pytest.raises(RecoveryWindowPassed):
            await fal.recover(request)


async def test_malformed_lists_raise_never_empty() -> None:
    async with fal_rig(rig_config(rate_limits=False)) as rig:
        fal = rig.adapter()
        await fal.create(rig.request((await fal.list_offers())[0]))
        rig.set_faults({"malformed": 1.0})
        for _ in range(6):  # the sandbox rotates truncated, wrong-shape and more-without-cursor pages
            with pytest.raises(VendorUnavailable, match="malformed"):
                await fal.list_instances()
        assert rig.state()["injected"]["malformed"] == 6


async def test_preempted_instance_is_gone() -> None:
    async with fal_rig(rig_config(ready_after=10.0, faults={"preempt": 1.0})) as rig:
        fal = rig.adapter()
        created = await fal.create(rig.request((await fal.list_offers())[0]))
        rig.advance(10 + 60)
        with pytest.raises(NotFoundOnVendor):
            await fal.get(created.vendor_instance_id)
        assert await fal.list_instances() == []
        await fal.delete(created.vendor_instance_id)  # 404 on delete means gone
        assert rig.live_ids() == set()


async def test_registry_serves_the_fal_sandbox_to_the_real_adapter() -> None:
    settings = Settings(enabled_vendors="fal", fal_api_key=None, sandbox_ready_after=1.0)
    vendors = await build_vendors(settings)
    try:
        fal = vendors.adapters["fal"]
        assert isinstance(fal, FalAdapter) and vendors.modes["fal"] == "sandbox"
        offer = (await fal.list_offers())[0]
        created = await fal.create(CreateRequest(uuid.uuid4(), offer, "ssh-ed25519 AAAA test"))
        assert [i.vendor_instance_id for i in await fal.list_instances()] == [created.vendor_instance_id]
        await fal.delete(created.vendor_instance_id)
        assert await fal.list_instances() == []
    finally:
        await vendors.aclose()
