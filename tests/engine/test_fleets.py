"""The fleet job (engine/fleets.py) against the sandbox vendors over HTTP: reaching the size,
replacing a preempted member away from the vendor-region that took it, scaling, a spec that
matches nothing, the spend cap and the budget, deleting, and lease takeover without duplicates."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import update

from gpusupply.core.errors import ConflictError
from gpusupply.db.models import Budget, Fleet, Procurement
from gpusupply.domain.webhooks import event_types
from gpusupply.engine import fleets as fleet_job
from gpusupply.engine.leases import LeaseLost
from gpusupply.services import fleets

from .fleet_helpers import (
    FLEET_SETTINGS,
    SPOT_H100,
    SPOT_VENDORS,
    counting,
    create_fleet,
    fleet_events,
    fleet_row,
    live_on_vendors,
    members,
    principal,
    wait_running,
)
from .helpers import Rig, engine_rig, wait_until


async def started(rig: Rig) -> None:
    await rig.start_engine(catalog=await rig.catalog())


def where(member) -> tuple[str, str]:
    return (member.vendor, member.vendor_region)


async def test_a_fleet_reaches_its_size_spread_over_vendor_regions(tmp_path) -> None:
    async with engine_rig(tmp_path, vendors=SPOT_VENDORS, **FLEET_SETTINGS) as rig:
        fleet_id = await create_fleet(rig, size=3)
        await started(rig)
        running = await wait_running(rig, fleet_id, 3)
        assert len({where(m) for m in running}) == 3  # spread: three vendor-regions
        assert all(m.name and m.name.startswith("fleet-") for m in running)
        row = await fleet_row(rig, fleet_id)
        await wait_until(lambda: _status_is(rig, fleet_id, "active", "3 of 3 members, 3 running"), what="fleet status")
        assert row.lock_token is None or row.status == "active"
        # Members are ordinary procurements by spec: the spec is the fleet's.
        async with rig.db.session() as session:
            specs = [(await session.get(Procurement, m.procurement_id)).spec for m in running]  # type: ignore[union-attr]
        assert all(s["compute"]["contract_type"] == "spot" and s["compute"]["gpu_type"] == "H100" for s in specs)


async def _status_is(rig: Rig, fleet_id: uuid.UUID, status: str, message: str | None = None) -> bool:
    row = await fleet_row(rig, fleet_id)
    return row.status == status and (message is None or row.status_message == message)


async def test_a_preempted_member_is_replaced_outside_its_vendor_region(tmp_path) -> None:
    async with engine_rig(tmp_path, vendors=SPOT_VENDORS, **FLEET_SETTINGS) as rig:
        fleet_id = await create_fleet(rig, size=3)
        await started(rig)
        before = await wait_running(rig, fleet_id, 3)
        victim = before[0]
        rig.sandbox(victim.vendor).preempt(victim.vendor_instance_id)
        await rig.wait_status(victim.id, "terminated", within=30)
        after = await wait_running(rig, fleet_id, 3)
        [replacement] = [m for m in after if m.id not in {b.id for b in before}]
        assert where(replacement) != where(victim)
        [lost] = await fleet_events(rig, fleet_id, "fleet_member_lost")
        assert lost.resource_id == victim.id and lost.data["loss"] == "preempted"
        [replaced] = await fleet_events(rig, fleet_id, "fleet_member_replaced")
        assert replaced.data["replaced_resource_id"] == str(victim.id)
        assert replaced.data["replacement_resource_id"] == str(replacement.id)
        row = await fleet_row(rig, fleet_id)
        assert [(c["vendor"], c["vendor_region"]) for c in row.cooldowns] == [where(victim)]
        assert row.replacing == []
        # Both are webhook events (given an outbox row in the event's transaction, domain/events.py).
        assert event_types(lost.kind, None, None) == ["fleet.member_lost"]
        assert event_types(replaced.kind, None, None) == ["fleet.member_replaced"]


async def test_a_member_deleted_by_hand_is_replaced(tmp_path) -> None:
    async with engine_rig(tmp_path, vendors=SPOT_VENDORS, **FLEET_SETTINGS) as rig:
        fleet_id = await create_fleet(rig, size=2)
        await started(rig)
        before = await wait_running(rig, fleet_id, 2)
        await rig.request_delete(before[0].id)
        after = await wait_running(rig, fleet_id, 2)
        assert before[0].id not in {m.id for m in after}
        assert (await rig.wait_status(before[0].id, "deleted")).status == "deleted"
        [lost] = await fleet_events(rig, fleet_id, "fleet_member_lost")
        assert lost.data["loss"] == "deleted" and "deleted outside the fleet" in (lost.reason or "")
        assert (await fleet_row(rig, fleet_id)).cooldowns == []  # a hand delete is not the vendor's doing


async def test_on_preemption_shrink_lowers_the_size_instead(tmp_path) -> None:
    async with engine_rig(tmp_path, vendors=SPOT_VENDORS, **FLEET_SETTINGS) as rig:
        fleet_id = await create_fleet(rig, size=2, on_preemption="shrink")
        await started(rig)
        before = await wait_running(rig, fleet_id, 2)
        rig.sandbox(before[0].vendor).preempt(before[0].vendor_instance_id)
        await rig.wait_status(before[0].id, "terminated", within=30)
        await wait_until(lambda: _size_is(rig, fleet_id, 1), what="size 1")
        assert [m.id for m in await counting(rig, fleet_id)] == [before[1].id]
        assert await fleet_events(rig, fleet_id, "fleet_member_replaced") == []


async def _size_is(rig: Rig, fleet_id: uuid.UUID, size: int) -> bool:
    return (await fleet_row(rig, fleet_id)).size == size


async def test_scaling_down_deletes_the_extras_and_up_adds_members(tmp_path) -> None:
    async with engine_rig(tmp_path, vendors=SPOT_VENDORS, **FLEET_SETTINGS) as rig:
        fleet_id = await create_fleet(rig, size=3)
        await started(rig)
        await wait_running(rig, fleet_id, 3)
        who = await principal(rig)
        await fleets.patch_fleet(rig.db, who, fleet_id, {"size": 1})
        await wait_running(rig, fleet_id, 1)
        await wait_until(lambda: _deleted_count(rig, fleet_id, 2), what="two members deleted")
        assert len(await live_on_vendors(rig, SPOT_VENDORS)) == 1
        await fleets.patch_fleet(rig.db, who, fleet_id, {"size": 2})
        await wait_running(rig, fleet_id, 2)
        assert await fleet_events(rig, fleet_id, "fleet_member_lost") == []  # its own deletes are no losses


async def _deleted_count(rig: Rig, fleet_id: uuid.UUID, count: int) -> bool:
    return len(await members(rig, fleet_id, "deleted")) == count


async def test_a_spec_matching_nothing_stays_degraded_and_backs_off(tmp_path) -> None:
    async with engine_rig(tmp_path, vendors=SPOT_VENDORS, **FLEET_SETTINGS) as rig:
        spec = {"compute": {"gpu_type": "H100", "gpu_count": 1, "max_price_per_gpu_hour": 0.0001}}
        fleet_id = await create_fleet(rig, spec=spec, size=2)
        engine = rig.engine_for_steps(catalog=await rig.catalog())
        job = engine.fleets
        assert await job.run_once() == 1
        row = await fleet_row(rig, fleet_id)
        assert row.status == "degraded" and row.retry_count == 1
        assert "no offer matches the spec now" in (row.status_message or "") and "max_price_per_gpu_hour" in (row.status_message or "")
        assert row.next_attempt_at >= rig.clock() + timedelta(seconds=4)
        assert await members(rig, fleet_id) == []
        # Not due again until the backoff passes: no spinning.
        assert await job.run_once() == 0
        rig.clock.advance(5)
        assert await job.run_once() == 1
        row = await fleet_row(rig, fleet_id)
        assert row.retry_count == 2 and row.next_attempt_at >= rig.clock() + timedelta(seconds=9)
        assert len(await fleet_events(rig, fleet_id, "fleet_degraded")) == 1  # the same reason is one event


async def test_the_spend_cap_holds_the_fleet_below_its_size(tmp_path) -> None:
    async with engine_rig(tmp_path, vendors=SPOT_VENDORS, **FLEET_SETTINGS) as rig:
        catalog = await rig.catalog()
        from gpusupply.engine.pipelines.offers import spec_to_query

        prices = sorted(s.offer.total_price_per_hour for s in (await catalog.search(spec_to_query(SPOT_H100))).offers)
        cap = prices[0] * 2 + prices[0] * 0.5  # room for two at the cheapest price, not three
        fleet_id = await create_fleet(rig, size=3, max_hourly_spend=cap)
        engine = rig.engine_for_steps(catalog=catalog)
        assert await engine.fleets.run_once() == 1
        row = await fleet_row(rig, fleet_id)
        assert row.status == "degraded" and "spend cap" in (row.status_message or "")
        added = await members(rig, fleet_id)
        assert len(added) == 2
        async with rig.db.session() as session:
            for member in added:
                spec = (await session.get(Procurement, member.procurement_id)).spec  # type: ignore[union-attr]
                assert spec["compute"]["max_price_per_gpu_hour"] == pytest.approx(cap / 2)


async def test_the_tenant_budget_stops_new_members(tmp_path) -> None:
    async with engine_rig(tmp_path, vendors=SPOT_VENDORS, **FLEET_SETTINGS) as rig:
        spec = {"compute": {"gpu_type": "H100", "gpu_count": 1, "contract_type": "spot", "max_price_per_gpu_hour": 50.0}}
        fleet_id = await create_fleet(rig, spec=spec, size=2)
        async with rig.db.transaction() as session:  # set after the fleet: the engine checks each member
            session.add(Budget(tenant_id=rig.tenant_id, max_hourly_spend=60.0))
        engine = rig.engine_for_steps(catalog=await rig.catalog())
        assert await engine.fleets.run_once() == 1
        row = await fleet_row(rig, fleet_id)
        assert row.status == "degraded" and "budget" in (row.status_message or "") and "max_hourly_spend exceeded" in (row.status_message or "")
        assert len(await members(rig, fleet_id)) == 1


async def test_deleting_a_fleet_deletes_every_member_then_ends_deleted(tmp_path) -> None:
    async with engine_rig(tmp_path, vendors=SPOT_VENDORS, **FLEET_SETTINGS) as rig:
        fleet_id = await create_fleet(rig, size=2)
        await started(rig)
        await wait_running(rig, fleet_id, 2)
        who = await principal(rig)
        view = await fleets.delete_fleet(rig.db, who, fleet_id)
        assert view.fleet.status == "deleting"
        with pytest.raises(ConflictError, match="already being deleted"):
            await fleets.delete_fleet(rig.db, who, fleet_id)
        await wait_until(lambda: _status_is(rig, fleet_id, "deleted"), within=60, what="fleet deleted")
        assert {m.status for m in await members(rig, fleet_id)} == {"deleted"}
        assert await live_on_vendors(rig, SPOT_VENDORS) == []
        with pytest.raises(ConflictError, match="already deleted"):
            await fleets.delete_fleet(rig.db, who, fleet_id)


async def test_a_round_whose_worker_died_is_redone_once_without_duplicates(tmp_path) -> None:
    # A check interval no loaded machine outlasts: the last assertion says "not due yet".
    async with engine_rig(tmp_path, vendors=SPOT_VENDORS, **{**FLEET_SETTINGS, "fleet_check_seconds": 3600.0}) as rig:
        fleet_id = await create_fleet(rig, size=3)
        catalog = await rig.catalog()
        dead = rig.engine_for_steps(catalog=catalog, owner="dead")
        alive = rig.engine_for_steps(catalog=catalog, owner="alive")
        [(claimed, token)] = await fleet_job.claim_fleets(dead.ctx)  # then the process dies mid-round
        assert claimed == fleet_id
        assert await fleet_job.claim_fleets(alive.ctx) == []  # held
        rig.clock.advance(rig.settings.lease_seconds + 1)
        assert await alive.fleets.run_once() == 1  # taken over
        assert len(await members(rig, fleet_id)) == 3
        with pytest.raises(LeaseLost):  # the dead round's work, were it to resume, is dropped
            await fleet_job.run_round(dead.ctx, fleet_id, token)
        assert len(await members(rig, fleet_id)) == 3
        assert await alive.fleets.run_once() == 0  # at size: not due again until the check interval


async def test_two_engines_never_add_more_members_than_the_size(tmp_path, db_url: str) -> None:
    async with engine_rig(tmp_path, vendors=SPOT_VENDORS, db_url=db_url, **FLEET_SETTINGS) as rig:
        fleet_id = await create_fleet(rig, size=3)
        catalog = await rig.catalog()
        await rig.start_engine(catalog=catalog, owner="one")
        await rig.start_engine(catalog=catalog, owner="two")
        await wait_running(rig, fleet_id, 3)
        async with rig.db.transaction() as session:  # every engine may look again now
            await session.execute(update(Fleet).where(Fleet.id == fleet_id).values(next_attempt_at=rig.clock()))
        await wait_until(lambda: _status_is(rig, fleet_id, "active", "3 of 3 members, 3 running"), what="a round after the nudge")
        assert len(await members(rig, fleet_id)) == 3


async def test_a_revived_member_makes_the_fleet_delete_one_too_many(tmp_path) -> None:
    """The reconciler revives a `terminated` member whose instance shows up again (docs/engine.md,
    rule 3); its fleet, which replaced it meanwhile, is one over its size and deletes an extra."""
    async with engine_rig(tmp_path, vendors=SPOT_VENDORS, **FLEET_SETTINGS) as rig:
        fleet_id = await create_fleet(rig, size=2)
        # The test plays the reconciler (its instance is still on the vendor, so a real sweep would
        # revive it at once, racing the fleet's replacement): the engine runs without it.
        engine = rig.engine_for_steps(catalog=await rig.catalog())
        engine.jobs = [job for job in engine.jobs if not job.name.startswith("reconcile:")]
        await engine.start()
        rig.engines.append(engine)
        before = await wait_running(rig, fleet_id, 2)
        lost = before[0]
        await _set_status(rig, lost.id, "terminated", "instance vanished on the vendor (not found)")
        await wait_until(lambda: _replaced(rig, fleet_id, lost.id), what="a replacement requested")
        await _set_status(rig, lost.id, "running", "the instance shows up again in the vendor's list")
        await wait_running(rig, fleet_id, 2)
        assert lost.id in {m.id for m in await counting(rig, fleet_id)}  # the revived one is kept (it runs)
        [back] = await fleet_events(rig, fleet_id, "fleet_member_back")
        assert back.resource_id == lost.id
        assert (await rig.resource(lost.id)).fleet_noted_at is None  # a later loss is a loss again


async def _set_status(rig: Rig, resource_id: uuid.UUID, status: str, reason: str) -> None:
    from gpusupply.core.states import ResourceStatus
    from gpusupply.db.models import Resource
    from gpusupply.domain.events import change_status

    async with rig.db.transaction() as session:
        row = await session.get(Resource, resource_id)
        assert row is not None
        change_status(session, row, ResourceStatus(status), reason)


async def _replaced(rig: Rig, fleet_id: uuid.UUID, lost_id: uuid.UUID) -> bool:
    return any(e.data["replaced_resource_id"] == str(lost_id) for e in await fleet_events(rig, fleet_id, "fleet_member_replaced"))


async def test_the_sandboxes_preempt_a_chosen_instance_over_http(tmp_path) -> None:
    """`POST /_sandbox/preempt`: the seeded tests choose which instance a vendor takes back, and when."""
    import httpx

    async with engine_rig(tmp_path, vendors=["vast", "runpod", "nebula"], **FLEET_SETTINGS) as rig:
        await rig.start_engine()
        on_demand = await rig.procure_offer((await rig.offers("runpod"))[0])
        vast = await rig.procure_offer((await rig.offers("vast"))[0])
        nebula = await rig.procure_offer((await rig.offers("nebula"))[0])
        rows = {rid: await rig.wait_status(rid, "running") for rid in (on_demand, vast, nebula)}
        async with httpx.AsyncClient(base_url=rig.vendors.urls["vast"]) as client:
            taken = await client.post("/_sandbox/preempt", json={"instance_id": rows[vast].vendor_instance_id})
            assert taken.status_code == 200 and taken.json()["instance_id"] == rows[vast].vendor_instance_id
            again = await client.post("/_sandbox/preempt", json={"instance_id": rows[vast].vendor_instance_id})
            assert again.status_code == 409 and "not running" in again.json()["detail"]
            assert (await client.post("/_sandbox/preempt", json={"instance_id": "no-such"})).status_code == 409
        assert rows[vast].vendor_instance_id not in {i["id"] for i in await rig.live_instances("vast")}
        async with httpx.AsyncClient(base_url=rig.vendors.urls["runpod"]) as client:  # RunPod takes back spot pods only
            refused = await client.post("/_sandbox/preempt", json={"instance_id": rows[on_demand].vendor_instance_id})
            assert refused.status_code == 409 and "preempts only spot" in refused.json()["detail"]
        rig.sandbox("nebula").preempt(rows[nebula].vendor_instance_id)
        assert (await rig.wait_ended(vast, "terminated")).status == "terminated"
        assert (await rig.wait_ended(nebula, "terminated")).status == "terminated"
