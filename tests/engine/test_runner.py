"""engine/runner.py: several engines share the work through leases; the work of a dead engine is
taken over once its leases expire; a stopping engine gives its leases back."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import func, select

from gpusupply.db.models import Resource
from gpusupply.db.session import Database
from gpusupply.engine import leases
from gpusupply.engine.runner import Engine
from gpusupply.metrics import LEASE_TAKEOVERS

from .helpers import available_vendors, engine_rig, wait_until

VENDOR = "nebula" if "nebula" in available_vendors() else available_vendors()[0]


async def all_running(rig, rids) -> None:
    for rid in rids:
        row = await rig.wait_status(rid, "running", "failed", within=60)
        assert row.status == "running", row.status_message


async def assert_one_create_each(rig, rids) -> None:
    creates = await rig.creates_by_marker(VENDOR)
    assert sum(creates.values()) == len(rids)
    for rid in rids:
        assert sum(n for marker, n in creates.items() if str(rid) in marker) == 1


async def test_two_engines_share_the_work_without_duplicates(db_url: str, tmp_path) -> None:
    async with engine_rig(tmp_path, vendors=[VENDOR], db_url=db_url, engine_workers=3) as rig:
        offers = await rig.offers(VENDOR)
        rids = [await rig.procure_offer(offers[i % len(offers)], with_offer_row=False) for i in range(12)]
        other_db = Database(db_url)  # the second engine has its own pool, as another process would
        first = await rig.start_engine(owner="first")
        second = Engine(other_db, rig.vendors, rig.settings, None, owner="second", clock=rig.clock)
        await second.start()
        try:
            await all_running(rig, rids)
        finally:
            await second.stop()
            await other_db.dispose()
        await assert_one_create_each(rig, rids)
        done = {p.name: p.steps_done for p in first.pipelines}, {p.name: p.steps_done for p in second.pipelines}
        assert done[0]["procure"] > 0 and done[1]["procure"] > 0, done


async def test_work_of_a_dead_engine_is_taken_over(db_url: str, tmp_path) -> None:
    async with engine_rig(tmp_path, vendors=[VENDOR], db_url=db_url) as rig:
        offers = await rig.offers(VENDOR)
        rids = [await rig.procure_offer(offers[i]) for i in range(3)]
        # a process claimed them and died: its leases stay until they expire
        dead = await leases.claim(
            rig.db, pipeline="procure", owner="dead", statuses=["pending"], limit=10, lease=timedelta(seconds=rig.settings.lease_seconds), now=rig.clock()
        )
        assert {lease.resource_id for lease in dead} == set(rids)
        before = LEASE_TAKEOVERS.labels("procure")._value.get()
        await rig.start_engine()
        await asyncio.sleep(0.3)
        assert [(await rig.resource(rid)).status for rid in rids] == ["pending"] * 3  # still held by the dead one
        rig.clock.advance(rig.settings.lease_seconds + 1)
        await all_running(rig, rids)
        assert LEASE_TAKEOVERS.labels("procure")._value.get() >= before + 3
        await assert_one_create_each(rig, rids)


async def test_stop_releases_leases_and_another_engine_finishes(tmp_path) -> None:
    async with engine_rig(tmp_path, vendors=[VENDOR]) as rig:
        rig.sandbox(VENDOR).config.latency = 0.5  # every vendor call is slow: steps are in flight
        offers = await rig.offers(VENDOR)
        rids = [await rig.procure_offer(offers[i]) for i in range(4)]
        engine = await rig.start_engine()

        async def busy() -> bool:
            return len(engine.held_leases()) > 0

        await wait_until(busy, what="steps in flight")
        await engine.stop(grace_seconds=0.01)
        async with rig.db.session() as session:
            held = (await session.execute(select(func.count()).select_from(Resource).where(Resource.lock_token.is_not(None)))).scalar_one()
        assert held == 0
        rig.engines.clear()
        rig.sandbox(VENDOR).config.latency = 0.0
        await rig.start_engine()
        await all_running(rig, rids)
        await assert_one_create_each(rig, rids)


async def test_resource_gauge_counts_every_status(tmp_path) -> None:
    from gpusupply.engine.jobs import count_resources
    from gpusupply.metrics import RESOURCES_BY_STATUS

    from .helpers import insert_resources

    async with engine_rig(tmp_path, vendors=[VENDOR]) as rig:
        await insert_resources(rig.db, 2, status="running")
        await insert_resources(rig.db, 1, status="deleted")
        counts = await count_resources(rig.engine_for_steps().ctx)
        assert counts["running"] == 2 and counts["deleted"] == 1 and counts["pending"] == 0
        assert RESOURCES_BY_STATUS.labels("running")._value.get() == 2
