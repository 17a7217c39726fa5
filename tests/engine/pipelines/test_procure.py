"""engine/pipelines/procure.py (and provision.py): from an intent row to a running instance,
exactly once, against the sandbox vendors over HTTP, through their faults."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest
from sqlalchemy import update

from gpusupply.db.models import Resource, VendorState, utcnow
from gpusupply.engine.pipelines.offers import spec_to_query
from gpusupply.metrics import PROCUREMENT_FAILOVERS, VENDOR_RATE_LIMIT_WAIT

from ..helpers import Rig, available_vendors, engine_rig, wait_until

VENDORS = available_vendors()
MARKER_VENDORS = [v for v in VENDORS if v != "fal"]


async def assert_exactly_one_create(rig: Rig, vendor: str, rid) -> None:
    creates = await rig.creates_by_marker(vendor)
    keys = [k for k in creates if str(rid) in k]
    assert len(keys) == 1 and creates[keys[0]] == 1, creates


async def first_offer(rig: Rig, vendor: str, *, count: int | None = None):
    offers = await rig.offers(vendor)
    if count is not None:
        offers = [o for o in offers if o.gpu_count == count] or offers
    return offers[0]


@pytest.mark.parametrize("vendor", VENDORS)
async def test_procure_by_offer_reaches_running_with_an_address(tmp_path, vendor: str) -> None:
    async with engine_rig(tmp_path, vendors=[vendor]) as rig:
        rid = await rig.procure_offer(await first_offer(rig, vendor), name="box")
        await rig.start_engine()
        row = await rig.wait_status(rid, "running", "failed")
        assert row.status == "running", row.status_message
        assert row.vendor_instance_id and (row.external_ip or row.ssh_host)
        assert row.running_since is not None and row.last_synced_at is not None
        assert row.create_attempted_at is not None and row.lock_token is None
        assert [a["outcome"] for a in row.attempts] == ["created"]
        assert [(e.from_status, e.to_status) for e in await rig.events(rid, "status_change")] == [
            ("pending", "provisioning"),
            ("provisioning", "running"),
        ]
        await assert_exactly_one_create(rig, vendor, rid)


async def test_procure_on_postgres(db_url: str, tmp_path) -> None:
    vendor = MARKER_VENDORS[0]
    async with engine_rig(tmp_path, vendors=[vendor], db_url=db_url) as rig:
        rids = [await rig.procure_offer(o) for o in (await rig.offers(vendor))[:3]]
        await rig.start_engine()
        for rid in rids:
            assert (await rig.wait_status(rid, "running", "failed")).status == "running"
            await assert_exactly_one_create(rig, vendor, rid)


@pytest.mark.parametrize("vendor", VENDORS)
async def test_rate_limit_storm_is_not_a_failure(tmp_path, vendor: str) -> None:
    async with engine_rig(tmp_path, vendors=[vendor]) as rig:
        rid = await rig.procure_offer(await first_offer(rig, vendor))
        rig.set_faults(vendor, {"429": 0.4})
        await rig.start_engine()
        row = await rig.wait_status(rid, "running", "failed", within=60)
        assert row.status == "running", row.status_message
        assert [a["outcome"] for a in row.attempts] == ["created"]
        assert rig.sandbox(vendor).faults.injected["429"] > 0
        await assert_exactly_one_create(rig, vendor, rid)


@pytest.mark.parametrize("vendor", VENDORS)
async def test_server_errors_are_recovered_without_a_second_create(tmp_path, vendor: str) -> None:
    async with engine_rig(tmp_path, vendors=[vendor]) as rig:
        rids = [await rig.procure_offer(o) for o in (await rig.offers(vendor))[:2]]
        rig.set_faults(vendor, {"500": 0.2, "503": 0.2})
        await rig.start_engine()
        for rid in rids:
            row = await rig.wait_status(rid, "running", "failed", within=60)
            assert row.status == "running", row.status_message
            await assert_exactly_one_create(rig, vendor, rid)
        assert rig.sandbox(vendor).faults.injected["500"] + rig.sandbox(vendor).faults.injected["503"] > 0


async def test_a_vendor_answer_starts_the_create_check_backoff_over(tmp_path) -> None:
    """Failed checks of an earlier create grow the backoff; a check the vendor answers ("nothing
    yet", inside the visibility window) starts it over, so failures far apart never add up to a
    minute's wait (a 40 % error rate once kept a create waiting past a minute)."""
    vendor = MARKER_VENDORS[0]
    async with engine_rig(tmp_path, vendors=[vendor], create_visibility_seconds=3600) as rig:
        rid = await rig.procure_offer(await first_offer(rig, vendor))
        rig.set_faults(vendor, {"500": 1.0})  # the create's answer is an error: its outcome is unknown
        await rig.start_engine()

        async def failed_checks() -> bool:
            row = await rig.resource(rid)
            return (row.retry_count or 0) >= 3 and "checking the earlier create" in (row.status_message or "")

        await wait_until(failed_checks, what="checks of the earlier create to fail")
        rig.set_faults(vendor, {})
        rig.clock.advance(120)  # past the grown backoff

        async def answered() -> bool:
            return (await rig.resource(rid)).retry_count == 0

        await wait_until(answered, what="an answered check to start the backoff over")
        row = await rig.resource(rid)
        assert row.status == "pending" and row.vendor_instance_id is None  # nothing was created: still settling
        assert (await rig.state(vendor))["creates"] == []


async def test_a_create_withdrawn_while_it_waits_for_its_slot_never_leaves(tmp_path) -> None:
    """The pacer can hold a create long (Lambda allows one launch in 12 s). Deleted meanwhile, the
    row's create never leaves (vendors/http.before_unsafe_send), and the row ends without a vendor
    call; before, it was sent late, after the delete had concluded nothing existed."""
    vendor = "vast"  # its create has a bucket of its own: the create is the only call waiting on it
    async with engine_rig(tmp_path, vendors=[vendor]) as rig:
        rid = await rig.procure_offer(await first_offer(rig, vendor))
        http = rig.vendors.adapters[vendor]._http
        while http.reserve("create", time.monotonic()) < 3.0:
            pass  # the next create's slot is 3 s away: the create waits for it
        slot_came = asyncio.Event()

        async def wait_for_the_test(seconds: float) -> None:  # the slot comes when the test says, not by the clock
            await slot_came.wait()

        http._sleep = wait_for_the_test
        waited = VENDOR_RATE_LIMIT_WAIT.labels(vendor)._value.get()
        await rig.start_engine()

        async def waiting_for_its_slot() -> bool:
            return VENDOR_RATE_LIMIT_WAIT.labels(vendor)._value.get() - waited >= 2.5

        await wait_until(waiting_for_its_slot, what="the create to wait for its slot")
        await rig.request_delete(rid)
        slot_came.set()
        row = await rig.wait_status(rid, "deleted", within=30)
        assert row.status_message == "nothing was created on the vendor" and row.create_attempted_at is None
        assert (await rig.state(vendor))["creates"] == []


@pytest.mark.parametrize("vendor", VENDORS)
async def test_lost_create_response_is_recovered_not_repeated(tmp_path, vendor: str) -> None:
    """The vendor commits the create but the answer never arrives (a 502 after a hang)."""
    async with engine_rig(tmp_path, vendors=[vendor]) as rig:
        rid = await rig.procure_offer(await first_offer(rig, vendor))
        rig.set_faults(vendor, {"lost": 1.0})
        await rig.start_engine()

        async def committed() -> bool:
            return any(str(rid) in k for k in await rig.creates_by_marker(vendor))

        await wait_until(committed, what="the lost create to commit on the vendor")
        rig.set_faults(vendor, {})  # the recovery (fal: a replay) gets through
        row = await rig.wait_status(rid, "running", "failed", within=30)
        assert row.status == "running", row.status_message
        assert rig.sandbox(vendor).faults.injected["lost"] >= 1
        assert any("outcome unknown" in (e.reason or "") for e in await rig.events(rid, "attempt"))
        await assert_exactly_one_create(rig, vendor, rid)


@pytest.mark.parametrize("vendor", VENDORS)
async def test_hanging_vendor_times_out_and_nothing_is_created_twice(tmp_path, vendor: str) -> None:
    async with engine_rig(tmp_path, vendors=[vendor], vendor_timeout=0.5) as rig:
        rid = await rig.procure_offer(await first_offer(rig, vendor))
        rig.sandbox(vendor).config.hang_seconds = 2.0  # longer than our timeout: a real hang
        rig.set_faults(vendor, {"hang": 1.0})
        await rig.start_engine()

        async def attempted() -> bool:
            return (await rig.resource(rid)).retry_count > 0

        await wait_until(attempted, what="a create attempt that timed out")
        assert (await rig.resource(rid)).status == "pending"
        rig.set_faults(vendor, {})
        row = await rig.wait_status(rid, "running", "failed", within=30)
        assert row.status == "running", row.status_message
        await assert_exactly_one_create(rig, vendor, rid)


@pytest.mark.parametrize("vendor", VENDORS)
async def test_provisioning_timeout_deletes_on_the_vendor_and_fails(tmp_path, vendor: str) -> None:
    async with engine_rig(tmp_path, vendors=[vendor]) as rig:
        rig.sandbox(vendor).config.ready_after = 10_000.0  # never ready
        rid = await rig.procure_offer(await first_offer(rig, vendor))
        await rig.start_engine()
        await rig.wait_status(rid, "provisioning")
        assert len(await rig.live_instances(vendor)) == 1
        rig.clock.advance(rig.settings.provisioning_timeout_seconds + 1)
        row = await rig.wait_status(rid, "failed", "deleted")
        assert row.status == "failed"
        assert "provisioning timed out" in (row.status_message or "")
        assert "confirmed" in (row.status_message or "")
        assert [(e.from_status, e.to_status) for e in await rig.events(rid, "status_change")][-2:] == [
            ("provisioning", "deleting"),
            ("deleting", "failed"),
        ]
        assert await rig.live_instances(vendor) == []


@pytest.mark.parametrize("vendor", VENDORS)
async def test_delete_during_an_in_flight_create_keeps_deleting_and_cleans_up(tmp_path, vendor: str) -> None:
    async with engine_rig(tmp_path, vendors=[vendor]) as rig:
        rig.sandbox(vendor).config.latency = 0.4  # every vendor call is slow
        rid = await rig.procure_offer(await first_offer(rig, vendor))
        await rig.start_engine()

        async def create_in_flight() -> bool:
            return (await rig.resource(rid)).create_attempted_at is not None

        await wait_until(create_in_flight, what="the create to be sent")
        await rig.request_delete(rid)  # the API, while the vendor call is on its way
        row = await rig.wait_status(rid, "deleted", "failed", within=30)
        assert row.status == "deleted", row.status_message
        statuses = [(e.from_status, e.to_status) for e in await rig.events(rid, "status_change")]
        assert statuses[0] == ("pending", "deleting") and statuses[-1] == ("deleting", "deleted")
        assert await rig.live_instances(vendor) == []
        await assert_exactly_one_create(rig, vendor, rid)


async def test_refused_create_fails_with_the_vendors_reason(tmp_path) -> None:
    vendor = "nebula" if "nebula" in VENDORS else VENDORS[0]
    async with engine_rig(tmp_path, vendors=[vendor]) as rig:
        offer = await first_offer(rig, vendor)
        if vendor == "nebula":
            rig.sandbox(vendor).products[offer.vendor_offer_id].stock = 0
        rid = await rig.procure_offer(offer)
        await rig.start_engine()
        row = await rig.wait_status(rid, "failed", "running")
        assert row.status == "failed"
        assert "CapacityGone" in (row.status_message or "")
        assert row.create_attempted_at is None and row.vendor_instance_id is None
        assert [a["outcome"] for a in row.attempts] == ["failed"]
        assert await rig.live_instances(vendor) == []


async def test_degraded_vendor_gets_no_create_until_healthy(tmp_path) -> None:
    """Fail closed: while the vendor's instance list cannot be trusted, no new create goes there."""
    vendor = MARKER_VENDORS[0]
    async with engine_rig(tmp_path, vendors=[vendor]) as rig:
        rid = await rig.procure_offer(await first_offer(rig, vendor))
        async with rig.db.transaction() as session:  # as the reconciler leaves it after a bad list
            session.add(VendorState(vendor=vendor, degraded=True, degraded_reason="malformed list", orphan_candidates={}))
        rig.set_faults(vendor, {"malformed": 1.0})  # and the lists stay bad
        await rig.start_engine()

        async def waiting() -> bool:
            return "degraded" in ((await rig.resource(rid)).status_message or "")

        await wait_until(waiting, what="the row to wait for the vendor")
        assert (await rig.state(vendor))["creates"] == []
        rig.set_faults(vendor, {})  # the next good list clears the flag; the create follows
        assert (await rig.wait_status(rid, "running", "failed", within=30)).status == "running"
        state = await rig.vendor_state(vendor)
        assert state is not None and not state.degraded
        assert [e.kind for e in await rig.events(kind="vendor_recovered")] == ["vendor_recovered"]


async def test_fal_create_lost_past_the_idempotency_window_fails_with_an_alert(tmp_path) -> None:
    """fal instances carry no marker: once its 10-minute replay window has passed, a create with an
    unknown outcome cannot be found. The engine must not replay it (that could create a second
    instance): it fails the row and raises an alert for a person to check."""
    if "fal" not in VENDORS:
        pytest.skip("fal not in this tree")
    async with engine_rig(tmp_path, vendors=["fal"]) as rig:
        rid = await rig.procure_offer(await first_offer(rig, "fal"))
        async with rig.db.transaction() as session:  # a process died right after sending, 11 min ago
            await session.execute(update(Resource).where(Resource.id == rid).values(create_attempted_at=utcnow() - timedelta(minutes=11)))
        await rig.start_engine()
        row = await rig.wait_status(rid, "failed", "running")
        assert row.status == "failed"
        assert "cannot be recovered" in (row.status_message or "")
        alerts = await rig.events(rid, "alert")
        assert len(alerts) == 1 and "check its console" in (alerts[0].reason or "")
        assert (await rig.state("fal"))["creates"] == []  # never replayed


# ----- procurement by spec -------------------------------------------------------------------------


def spec_for(offer, vendor: str | None = None) -> dict:
    spec: dict = {"compute": {"gpu_type": offer.gpu_type, "gpu_count": offer.gpu_count}}
    if vendor:
        spec["vendor"] = vendor
    return spec


async def test_spec_procurement_takes_the_cheapest_offer(tmp_path) -> None:
    vendor = "nebula" if "nebula" in VENDORS else VENDORS[0]
    async with engine_rig(tmp_path, vendors=[vendor]) as rig:
        catalog = await rig.catalog()
        offer = await first_offer(rig, vendor)
        result = await catalog.search(spec_to_query(spec_for(offer, vendor)))
        cheapest = result.offers[0]
        rid = await rig.procure_spec(spec_for(offer, vendor))
        await rig.start_engine(catalog=catalog)
        row = await rig.wait_status(rid, "running", "failed")
        assert row.status == "running", row.status_message
        assert row.offer_id == cheapest.offer_id and row.vendor == vendor
        assert row.price_per_hour == cheapest.offer.total_price_per_hour
        assert row.offer_snapshot and row.offer_snapshot["vendor_offer_id"] == cheapest.offer.vendor_offer_id
        assert [a["outcome"] for a in row.attempts] == ["created"]
        assert (await catalog.get(cheapest.offer_id)).status == "procured"


async def test_spec_procurement_fails_over_on_capacity_and_records_every_attempt(tmp_path) -> None:
    if "nebula" not in VENDORS:
        pytest.skip("needs the nebula sandbox's stock")
    async with engine_rig(tmp_path, vendors=["nebula"]) as rig:
        catalog = await rig.catalog()
        offers = await rig.offers("nebula")
        # a spec with at least three matching offers
        spec = next(
            spec_for(o, "nebula") for o in offers if sum(1 for p in offers if p.gpu_type == o.gpu_type and p.gpu_count == o.gpu_count) >= 3
        )
        ranked = (await catalog.search(spec_to_query(spec))).offers
        for stored in ranked[:2]:  # the two cheapest sell out after the catalog was read
            rig.sandbox("nebula").products[stored.offer.vendor_offer_id].stock = 0
        before = PROCUREMENT_FAILOVERS.labels("nebula")._value.get()
        rid = await rig.procure_spec(spec)
        await rig.start_engine(catalog=catalog)
        row = await rig.wait_status(rid, "running", "failed", within=30)
        assert row.status == "running", row.status_message
        assert [a["outcome"] for a in row.attempts] == ["failed", "failed", "created"]
        assert [a["offer_id"] for a in row.attempts] == [str(s.offer_id) for s in ranked[:3]]
        assert all("CapacityGone" in a["reason"] for a in row.attempts[:2])
        assert row.offer_id == ranked[2].offer_id
        assert PROCUREMENT_FAILOVERS.labels("nebula")._value.get() == before + 2
        attempt_events = await rig.events(rid, "attempt")
        assert len(attempt_events) >= 5  # trying x3, failed x2
        assert (await catalog.get(ranked[0].offer_id)).status == "failed"
        await assert_exactly_one_create(rig, "nebula", rid)


async def test_spec_procurement_gives_up_after_max_attempts_listing_them(tmp_path) -> None:
    if "nebula" not in VENDORS:
        pytest.skip("needs the nebula sandbox's stock")
    async with engine_rig(tmp_path, vendors=["nebula"], max_failover_attempts=2) as rig:
        catalog = await rig.catalog()
        offer = await first_offer(rig, "nebula")
        assert (await catalog.search(spec_to_query(spec_for(offer, "nebula")))).total >= 2  # read while in stock
        for product in rig.sandbox("nebula").products.values():  # then everything sells out
            product.stock = 0
        rid = await rig.procure_spec(spec_for(offer, "nebula"))
        await rig.start_engine(catalog=catalog)
        row = await rig.wait_status(rid, "failed", "running", within=30)
        assert row.status == "failed"
        assert (row.status_message or "").startswith("all offers failed (2 tried)")
        assert row.status_message.count("CapacityGone") == 2
        assert [a["outcome"] for a in row.attempts] == ["failed", "failed"]
        assert await rig.live_instances("nebula") == []


async def test_spec_procurement_skips_a_degraded_vendor(tmp_path) -> None:
    if not {"nebula", "fal"} <= set(VENDORS):
        pytest.skip("needs two vendors")
    async with engine_rig(tmp_path, vendors=["fal", "nebula"]) as rig:
        fal = rig.vendors.adapters["fal"]
        fal.price_table = {name: 0.01 for name in fal.price_table}  # fal is the cheapest by far
        catalog = await rig.catalog()
        rig.set_faults("fal", {"malformed": 1.0})  # fal's instance list cannot be trusted
        engine = await rig.start_engine(catalog=catalog)

        async def fal_degraded() -> bool:
            state = await rig.vendor_state("fal")
            return state is not None and state.degraded

        await wait_until(fal_degraded, what="the reconciler to mark fal degraded")
        rid = await rig.procure_spec({"compute": {"gpu_type": "H100", "gpu_count": 1}})
        from gpusupply.domain.hints import hint

        hint()
        row = await rig.wait_status(rid, "running", "failed", within=30)
        assert row.status == "running", row.status_message
        assert row.vendor == "nebula"
        assert [a["outcome"] for a in row.attempts] == ["skipped", "created"]
        assert row.attempts[0]["vendor"] == "fal" and "degraded" in row.attempts[0]["reason"]
        assert (await rig.state("fal"))["creates"] == []
        await engine.stop()


async def test_spec_with_no_match_fails_at_once(tmp_path) -> None:
    async with engine_rig(tmp_path, vendors=VENDORS[:1]) as rig:
        catalog = await rig.catalog()
        rid = await rig.procure_spec({"compute": {"gpu_type": "H100", "gpu_count": 1, "max_price_per_gpu_hour": 0.0001}})
        await rig.start_engine(catalog=catalog)
        row = await rig.wait_status(rid, "failed")
        assert "no offer matches" in (row.status_message or "")


@pytest.mark.parametrize("vendor", [v for v in VENDORS if v in ("vast", "runpod")])
async def test_procure_a_spot_offer_reaches_running(tmp_path, vendor: str) -> None:
    """Interruptible contracts: Vast bids `min_bid`, RunPod rents with `bidPerGpu` at the minimum bid."""
    async with engine_rig(tmp_path, vendors=[vendor]) as rig:
        offers = await rig.vendors.adapters[vendor].list_offers()
        spot = next(o for o in offers if o.available and o.contract_type == "spot")
        rid = await rig.procure_offer(spot)
        await rig.start_engine()
        row = await rig.wait_status(rid, "running", "failed")
        assert row.status == "running", row.status_message
        assert row.price_per_hour == spot.total_price_per_hour and (row.external_ip or row.ssh_host)
        await assert_exactly_one_create(rig, vendor, rid)
        (create,) = [c for c in (await rig.state(vendor))["creates"] if str(rid) in (c["marker"] or "")]
        assert create.get("interruptible", create.get("is_bid")) is True
