"""The engine's refreshes of a steady resource move no listing version (migration 0022): a
tenant's kept listing pages (services/listing.py) stay valid between real changes. A read that
changes what a listing shows moves it."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from gpusupply.db.models import ResourceCount
from gpusupply.engine.sync import refresh_resource

from .helpers import Rig, available_vendors, engine_rig

VENDORS = available_vendors()


async def listing_version(rig: Rig, resource_id: uuid.UUID) -> int:
    tenant_id = (await rig.resource(resource_id)).tenant_id
    async with rig.db.session() as session:
        return int((await session.execute(select(ResourceCount.version).where(ResourceCount.tenant_id == tenant_id))).scalar_one())


@pytest.mark.parametrize("vendor", VENDORS)
async def test_refreshing_a_running_resource_moves_no_listing_version(tmp_path, vendor: str) -> None:
    async with engine_rig(tmp_path, vendors=[vendor]) as rig:
        engine = await rig.start_engine()
        rid = await rig.procure_offer((await rig.offers(vendor))[0])
        row = await rig.wait_status(rid, "running", "failed")
        assert row.status == "running", row.status_message
        await engine.stop()  # the refreshes below are the only writes
        version, synced = await listing_version(rig, rid), row.last_synced_at
        for _ in range(3):
            rig.clock.advance(31)
            await refresh_resource(rig.db, rig.vendors, rid, settings=rig.settings, clock=rig.clock)
        row = await rig.resource(rid)
        assert row.status == "running" and row.last_synced_at != synced  # read three times, stored
        assert await listing_version(rig, rid) == version
        # Deleted at the vendor (its console, say): the reads that see it (two, to confirm an absence) move it.
        assert row.vendor_instance_id is not None
        await rig.vendors.adapters[vendor].delete(row.vendor_instance_id)
        for _ in range(2):
            rig.clock.advance(rig.settings.absence_confirm_seconds + 1)
            await refresh_resource(rig.db, rig.vendors, rid, settings=rig.settings, clock=rig.clock)
        assert (await rig.resource(rid)).status != "running"
        assert await listing_version(rig, rid) > version
