"""The guardrail job against sandbox vendors over HTTP, on the test's clock: auto-delete by time
and by spend, budget alerts and exhaustion, all through the normal delete path (deleting, then
deleted once the vendor confirms), and the limit checks it makes on the fresh row."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from gpusupply.db.models import Event, Resource, Tenant
from gpusupply.domain.costs import costs_so_far
from gpusupply.engine.autodelete import delete_for_guardrail, due_trigger, run_guardrails
from gpusupply.services.budgets import put_budget
from tests.engine.helpers import Rig, engine_rig
from tests.services.cost_helpers import T0, at, make_resource, principal_for

# The engine's own guardrail round is pushed far out, so that each test runs the rounds it means to.
QUIET = {"guardrail_interval_seconds": 1e7}


def _row(**kw: Any) -> Resource:
    return Resource(id=uuid.uuid4(), **kw)


@pytest.mark.parametrize(
    ("fields", "cost", "now", "expected"),
    [
        ({}, 100.0, 5, None),
        ({"auto_delete_at": at(5)}, 0.0, 4.9, None),
        ({"auto_delete_at": at(5)}, 0.0, 5, ("delete_at", f"auto-delete: delete_at {at(5).isoformat()} reached")),
        ({"spend_limit": 10.0}, 9.99, 5, None),
        ({"spend_limit": 10.0}, 10.0, 5, ("spend_limit", "auto-delete: spend limit of 10.00 USD reached (cost so far 10.00 USD)")),
        ({"spend_limit": 10.0, "auto_delete_at": at(1)}, 50.0, 5, ("delete_at", f"auto-delete: delete_at {at(1).isoformat()} reached")),
    ],
)
def test_due_trigger(fields: dict[str, Any], cost: float, now: float, expected: tuple[str, str] | None) -> None:
    assert due_trigger(_row(**fields), cost, at(now)) == expected


async def _running(rig: Rig, vendor: str = "nebula") -> tuple[uuid.UUID, float]:
    offer = (await rig.offers(vendor))[0]
    rid = await rig.procure_offer(offer)
    await rig.wait_status(rid, "running")
    return rid, offer.total_price_per_hour


async def _set(rig: Rig, rid: uuid.UUID, **values: Any) -> None:
    async with rig.db.transaction() as session:
        await session.execute(update(Resource).where(Resource.id == rid).values(**values))


async def _check_deleted_by(rig: Rig, rid: uuid.UUID, trigger: str, reason_start: str) -> None:
    row = await rig.wait_status(rid, "deleted")
    assert row.final_status == "deleted" and row.ended_at is not None
    (event,) = await rig.events(rid, kind="auto_delete")
    assert event.data == {"trigger": trigger} and event.reason is not None and event.reason.startswith(reason_start)
    deleting = [e for e in await rig.events(rid, kind="status_change") if e.to_status == "deleting"]
    assert len(deleting) == 1 and deleting[0].reason == event.reason
    live = [i for i in await rig.live_instances(row.vendor or "") if i["marker"] == f"gpusupply-{rid}"]
    assert live == []  # gone on the vendor: the vendor confirmed it


async def test_auto_delete_by_time(tmp_path: Path) -> None:
    async with engine_rig(tmp_path, vendors=["nebula"], **QUIET) as rig:
        engine = await rig.start_engine()
        rid, _ = await _running(rig)
        keep, _ = await _running(rig)
        await _set(rig, rid, auto_delete_at=rig.clock() + timedelta(hours=2))
        assert (await run_guardrails(engine.ctx)).deleted == []
        rig.clock.advance(2 * 3600 + 1)
        assert (await run_guardrails(engine.ctx)).deleted == [(rid, "delete_at")]
        await _check_deleted_by(rig, rid, "delete_at", "auto-delete: delete_at ")
        assert (await rig.resource(keep)).status == "running"


async def test_auto_delete_by_spend(tmp_path: Path) -> None:
    async with engine_rig(tmp_path, vendors=["vast"], **QUIET) as rig:
        engine = await rig.start_engine()
        rid, price = await _running(rig, "vast")
        await _set(rig, rid, spend_limit=round(price * 3, 6))  # three hours of running
        rig.clock.advance(2 * 3600)
        assert (await run_guardrails(engine.ctx)).deleted == []
        rig.clock.advance(3600 + 60)
        assert (await run_guardrails(engine.ctx)).deleted == [(rid, "spend_limit")]
        await _check_deleted_by(rig, rid, "spend_limit", f"auto-delete: spend limit of {price * 3:,.2f} USD reached")
        row = await rig.resource(rid)
        cost = (await costs_so_far(rig.db, [row], now=rig.clock()))[rid]
        assert cost == pytest.approx(price * (3 + 60 / 3600), rel=0.01)  # billing ended when the vendor confirmed


async def test_the_engine_runs_the_guardrail_job_itself(tmp_path: Path) -> None:
    async with engine_rig(tmp_path, vendors=["nebula"], guardrail_interval_seconds=1.0) as rig:
        await rig.start_engine()
        rid, _ = await _running(rig)
        await _set(rig, rid, auto_delete_at=rig.clock() + timedelta(minutes=10))
        rig.clock.advance(601)
        await _check_deleted_by(rig, rid, "delete_at", "auto-delete: delete_at ")


async def test_budget_alerts_and_exhaustion_delete_the_tenants_resources(tmp_path: Path) -> None:
    async with engine_rig(tmp_path, vendors=["nebula"], **QUIET) as rig:
        engine = await rig.start_engine()
        first, price = await _running(rig)
        second, second_price = await _running(rig)
        async with rig.db.session() as session:
            tenant = await session.get(Tenant, rig.tenant_id)
        assert tenant is not None
        budget = (price + second_price) * 10  # ten hours of both
        await put_budget(rig.db, principal_for(tenant), max_hourly_spend=None, monthly_budget=budget, delete_on_exhaustion=True)
        other_tenant_row = await make_resource(rig.db, (await _other_tenant(rig)).id, created=T0,
                                               history=[(0, "provisioning"), (0.1, "running")])

        rig.clock.advance(8.2 * 3600)
        first_round = await run_guardrails(engine.ctx)
        assert first_round.alerts == [(rig.tenant_id, 80)] and first_round.deleted == []
        rig.clock.advance(2 * 3600)
        final_round = await run_guardrails(engine.ctx)
        assert final_round.alerts == [(rig.tenant_id, 100)]
        assert sorted(final_round.deleted) == sorted([(first, "budget_exhausted"), (second, "budget_exhausted")])
        for rid in (first, second):
            await _check_deleted_by(rig, rid, "budget_exhausted", "auto-delete: the monthly budget is used up")
        assert (await run_guardrails(engine.ctx)).deleted == []
        async with rig.db.session() as session:
            alerts = list((await session.execute(select(Event).where(Event.kind == "budget_alert"))).scalars())
        assert [(e.tenant_id, e.data["threshold"]) for e in alerts] == [(rig.tenant_id, 80), (rig.tenant_id, 100)]  # type: ignore[index]
        assert await rig.events(other_tenant_row, kind="auto_delete") == []  # another tenant's budget is not this one


async def _other_tenant(rig: Rig) -> Tenant:
    async with rig.db.transaction() as session:
        tenant = Tenant(name=f"other-{uuid.uuid4().hex[:6]}")
        session.add(tenant)
    return tenant


async def test_an_action_in_flight_does_not_hold_back_an_auto_delete(tmp_path: Path) -> None:
    async with engine_rig(tmp_path, vendors=["nebula"], **QUIET) as rig:
        engine = rig.engine_for_steps()  # not started: the rows below have no vendor instance
        rid = await make_resource(rig.db, rig.tenant_id, auto_delete_at=T0, history=[(0, "provisioning"), (0.1, "running")])
        await _set(rig, rid, status="stopping", pending_action="stop")
        assert (await run_guardrails(engine.ctx)).deleted == [(rid, "delete_at")]
        row = await rig.resource(rid)
        assert (row.status, row.final_status, row.pending_action) == ("deleting", "deleted", None)
        assert row.delete_requested_at is not None


async def test_the_fresh_row_decides(tmp_path: Path) -> None:
    async with engine_rig(tmp_path, vendors=["nebula"], **QUIET) as rig:
        rid = await make_resource(rig.db, rig.tenant_id, history=[(0, "provisioning"), (0.1, "running")])
        now = rig.clock()
        assert not await delete_for_guardrail(rig.db, rid, "delete_at", "moved", now, still_due=lambda _: False)
        assert (await rig.resource(rid)).status == "running"
        await _set(rig, rid, status="deleting")
        assert not await delete_for_guardrail(rig.db, rid, "delete_at", "again", now, still_due=lambda _: True)
        assert await rig.events(rid, kind="auto_delete") == []
