"""engine/pipelines/refresh.py: running and stopped rows are re-read on a cadence, so they stay
true: preempted or deleted elsewhere -> terminated; stopped elsewhere -> stopped."""

from __future__ import annotations

import pytest

from ..helpers import available_vendors, engine_rig, wait_until

VENDORS = available_vendors()


@pytest.mark.parametrize("vendor", VENDORS)
async def test_preempted_instance_becomes_terminated_with_the_reason(tmp_path, vendor: str) -> None:
    async with engine_rig(tmp_path, vendors=[vendor], refresh_interval_seconds=0.1, reconcile_interval_seconds=3600) as rig:
        await rig.start_engine()
        offer = (await rig.offers(vendor))[0]
        if rig.sandbox(vendor).preempts_only_spot:  # RunPod takes back only interruptible pods
            offer = next(o for o in await rig.vendors.adapters[vendor].list_offers() if o.available and o.contract_type == "spot")
        rid = await rig.procure_offer(offer)
        row = await rig.wait_status(rid, "running", "failed")
        assert row.status == "running"
        rig.set_faults(vendor, {"preempt": 1.0})
        rig.sandbox(vendor).clock.advance(120)  # within this minute of sandbox time, it is preempted
        row = await rig.wait_ended(rid, "terminated")
        assert "vanished" in (row.status_message or "") or "terminated" in (row.status_message or "")
        assert row.ended_at is not None
        assert await rig.live_instances(vendor) == []


@pytest.mark.parametrize("vendor", VENDORS)
async def test_refresh_keeps_rows_true(tmp_path, vendor: str) -> None:
    async with engine_rig(tmp_path, vendors=[vendor], refresh_interval_seconds=0.1, reconcile_interval_seconds=3600) as rig:
        await rig.start_engine()
        rid = await rig.procure_offer((await rig.offers(vendor))[0])
        first = (await rig.wait_status(rid, "running")).last_synced_at
        assert first is not None

        async def synced_again() -> bool:
            synced = (await rig.resource(rid)).last_synced_at
            return synced is not None and synced > first

        await wait_until(synced_again, what="a refresh")
        adapter = rig.vendors.adapters[vendor]
        if adapter.capabilities.stop_start:
            await adapter.stop((await rig.resource(rid)).vendor_instance_id or "")  # stopped outside gpusupply
            row = await rig.wait_status(rid, "stopped", within=30)
            assert "stopped" in (row.status_message or "")
        await adapter.delete((await rig.resource(rid)).vendor_instance_id or "")  # deleted outside gpusupply
        row = await rig.wait_ended(rid, "terminated")
        assert row.status_message


async def test_refresh_does_not_change_a_row_when_the_vendor_is_unreadable(tmp_path) -> None:
    vendor = VENDORS[0]
    async with engine_rig(tmp_path, vendors=[vendor], refresh_interval_seconds=0.1, reconcile_interval_seconds=3600) as rig:
        await rig.start_engine()
        rid = await rig.procure_offer((await rig.offers(vendor))[0])
        await rig.wait_status(rid, "running")
        requests = (await rig.state(vendor))["requests"]
        rig.set_faults(vendor, {"500": 1.0})

        async def tried() -> bool:
            return (await rig.state(vendor))["requests"] > requests + 8

        await wait_until(tried, what="refreshes against a failing vendor")
        assert (await rig.resource(rid)).status == "running"
