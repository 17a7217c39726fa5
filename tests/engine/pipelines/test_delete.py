"""engine/pipelines/delete.py: a deleting row ends only once the vendor confirms the instance is
gone; storms are retried, an overdue delete alerts once, and a create whose id we never learned
is recovered first."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from gpusupply.db.models import Resource, utcnow
from gpusupply.metrics import DELETION_RETRIES
from gpusupply.vendors.base import CreateRequest

from ..helpers import Rig, available_vendors, engine_rig, wait_until

VENDORS = available_vendors()


async def running_resource(rig: Rig, vendor: str, index: int = 0):
    rid = await rig.procure_offer((await rig.offers(vendor))[index])
    row = await rig.wait_status(rid, "running", "failed")
    assert row.status == "running", row.status_message
    return rid


@pytest.mark.parametrize("vendor", VENDORS)
async def test_delete_confirms_with_the_vendor(tmp_path, vendor: str) -> None:
    async with engine_rig(tmp_path, vendors=[vendor]) as rig:
        await rig.start_engine()
        rid = await running_resource(rig, vendor)
        await rig.request_delete(rid)
        row = await rig.wait_status(rid, "deleted", "failed")
        assert row.status == "deleted" and row.status_message == "vendor confirmed the instance is gone"
        assert row.ended_at is not None and row.lock_token is None
        assert await rig.live_instances(vendor) == []
        deletes = (await rig.state(vendor))["deletes"]
        assert [d["instance_id"] for d in deletes] == [row.vendor_instance_id]


async def test_delete_on_postgres(db_url: str, tmp_path) -> None:
    vendor = VENDORS[0]
    async with engine_rig(tmp_path, vendors=[vendor], db_url=db_url) as rig:
        await rig.start_engine()
        rids = [await running_resource(rig, vendor, i) for i in range(2)]
        for rid in rids:
            await rig.request_delete(rid)
        for rid in rids:
            assert (await rig.wait_status(rid, "deleted", "failed")).status == "deleted"
        assert await rig.live_instances(vendor) == []


@pytest.mark.parametrize("vendor", VENDORS)
async def test_delete_through_a_storm_of_429_and_5xx(tmp_path, vendor: str) -> None:
    async with engine_rig(tmp_path, vendors=[vendor]) as rig:
        await rig.start_engine()
        rid = await running_resource(rig, vendor)
        rig.set_faults(vendor, {"429": 0.15, "500": 0.15, "503": 0.15})
        await rig.request_delete(rid)
        row = await rig.wait_status(rid, "deleted", "failed", within=60)
        assert row.status == "deleted"
        injected = rig.sandbox(vendor).faults.injected
        assert injected["429"] + injected["500"] + injected["503"] > 0
        rig.set_faults(vendor, {})
        assert await rig.live_instances(vendor) == []


@pytest.mark.parametrize("vendor", VENDORS)
async def test_vendor_down_keeps_deleting_alerts_once_then_finishes(tmp_path, vendor: str) -> None:
    """Never marked deleted without the vendor's word: while it is down the row stays `deleting`;
    past delete_alert_after_seconds one alert is raised; when it is back the delete completes."""
    async with engine_rig(tmp_path, vendors=[vendor]) as rig:
        await rig.start_engine()
        rid = await running_resource(rig, vendor)
        before = DELETION_RETRIES.labels(vendor)._value.get()
        rig.set_faults(vendor, {"500": 1.0})
        await rig.request_delete(rid)

        async def retried(times: int) -> bool:
            return (await rig.resource(rid)).retry_count >= times

        await wait_until(lambda: retried(2), what="delete retries")
        assert (await rig.resource(rid)).status == "deleting"
        assert "deleting: vendor delete failed" in ((await rig.resource(rid)).status_message or "")
        assert DELETION_RETRIES.labels(vendor)._value.get() >= before + 2
        rig.clock.advance(rig.settings.delete_alert_after_seconds + 1)
        # make it due now (the backoff has it waiting) and let two more rounds fail
        async with rig.db.transaction() as session:
            await session.execute(update(Resource).where(Resource.id == rid).values(next_attempt_at=utcnow() - timedelta(seconds=1)))

        async def alerted() -> bool:
            return (await rig.resource(rid)).delete_alerted

        await wait_until(alerted, what="the overdue alert")
        row = await rig.resource(rid)
        assert row.status == "deleting"
        assert row.next_attempt_at - rig.clock() > timedelta(seconds=30)  # retries slowed down
        async with rig.db.transaction() as session:  # another round, still failing: no second alert
            await session.execute(update(Resource).where(Resource.id == rid).values(next_attempt_at=utcnow() - timedelta(seconds=1)))
        count = row.retry_count
        await wait_until(lambda: retried(count + 1), what="one more retry")
        alerts = await rig.events(rid, "alert")
        assert len(alerts) == 1 and "may still bill" in (alerts[0].reason or "")
        assert len(await rig.live_instances(vendor)) == 1
        rig.set_faults(vendor, {})
        async with rig.db.transaction() as session:
            await session.execute(update(Resource).where(Resource.id == rid).values(next_attempt_at=utcnow()))
        assert (await rig.wait_status(rid, "deleted", "failed")).status == "deleted"
        assert await rig.live_instances(vendor) == []


@pytest.mark.parametrize("vendor", VENDORS)
async def test_delete_recovers_an_instance_whose_id_was_never_stored(tmp_path, vendor: str) -> None:
    """A process sent the create and died before storing the answer; then the user deleted the
    resource. The engine finds the instance (marker / idempotency key) and deletes it."""
    async with engine_rig(tmp_path, vendors=[vendor]) as rig:
        offer = (await rig.offers(vendor))[0]
        rid = await rig.procure_offer(offer)
        sent_at = rig.clock()
        async with rig.db.transaction() as session:
            await session.execute(update(Resource).where(Resource.id == rid).values(create_attempted_at=sent_at))
        request = CreateRequest(rid, offer, (await rig.resource(rid)).ssh_public_key, first_attempt_at=sent_at)
        await rig.vendors.adapters[vendor].create(request)  # the create the dead process sent
        assert len(await rig.live_instances(vendor)) == 1
        await rig.request_delete(rid)
        await rig.start_engine()
        row = await rig.wait_status(rid, "deleted", "failed")
        assert row.status == "deleted" and row.vendor_instance_id
        assert await rig.live_instances(vendor) == []
        creates = await rig.creates_by_marker(vendor)
        assert sum(creates.values()) == 1  # the recovery did not create a second one


@pytest.mark.parametrize("vendor", VENDORS)
async def test_delete_of_a_create_that_never_committed_waits_then_finishes(tmp_path, vendor: str) -> None:
    async with engine_rig(tmp_path, vendors=[vendor]) as rig:
        rid = await rig.procure_offer((await rig.offers(vendor))[0])
        async with rig.db.transaction() as session:  # sent, but it never reached the vendor
            await session.execute(update(Resource).where(Resource.id == rid).values(create_attempted_at=rig.clock()))
        await rig.request_delete(rid)
        await rig.start_engine()
        row = await rig.wait_status(rid, "deleted", "failed")
        assert row.status == "deleted"
        assert await rig.live_instances(vendor) == []
        if vendor == "fal":
            # fal's only way to know is replaying the key, which creates it; it is then deleted
            assert sum((await rig.creates_by_marker(vendor)).values()) <= 1
        else:
            assert "no instance found" in (row.status_message or "")
            assert (await rig.state(vendor))["creates"] == []


async def test_delete_of_a_row_never_sent_to_a_vendor_needs_no_vendor(tmp_path) -> None:
    vendor = VENDORS[0]
    async with engine_rig(tmp_path, vendors=[vendor]) as rig:
        rid = await rig.procure_offer((await rig.offers(vendor))[0])
        await rig.request_delete(rid)
        requests_before = (await rig.state(vendor))["requests"]
        await rig.start_engine()
        row = await rig.wait_status(rid, "deleted")
        assert row.status_message == "nothing was created on the vendor"
        state = await rig.state(vendor)
        assert state["creates"] == [] and state["deletes"] == []
        assert state["requests"] >= requests_before  # (only the reconciler's lists)
