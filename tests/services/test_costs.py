"""Cost accounting: billed intervals from the status history (pure tables), stopped rates per
vendor, and cost so far of stored resources across stop/start and deletion (both backends)."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from gpusupply.core.states import ResourceStatus
from gpusupply.db.models import Resource
from gpusupply.db.session import Database
from gpusupply.domain.costs import (
    BilledInterval,
    Rates,
    Transition,
    billed_intervals,
    clip,
    cost,
    cost_clock,
    costs_so_far,
    resource_intervals,
    split_by_day,
    stopped_rate,
    vendor_capabilities,
)
from gpusupply.domain.events import change_status
from gpusupply.vendors.registry import VENDOR_SPECS
from tests.engine.helpers import Rig, engine_rig
from tests.services.cost_helpers import (
    LIFE,
    LIFE_RUNNING_HOURS,
    LIFE_STOPPED_HOURS,
    at,
    make_resource,
    make_tenant,
    move,
)
from tests.services.cost_helpers import load as load_resource


def tr(*steps: tuple[float, str]) -> list[Transition]:
    return [Transition(at(h), s) for h, s in steps]


def iv(start: float, end: float, stopped: bool = False) -> BilledInterval:
    return BilledInterval(at(start), at(end), stopped)


@pytest.mark.parametrize(
    ("transitions", "running_since", "ended_at", "now", "expected"),
    [
        pytest.param(tr((0, "provisioning")), None, None, 5, [], id="never ran: nothing billed"),
        pytest.param(tr((1, "running")), 1, None, 3, [iv(1, 3)], id="running until now"),
        pytest.param(tr((1, "running"), (2, "deleting"), (2.5, "deleted")), 1, 2.5, 9, [iv(1, 2.5)],
                     id="billed until the vendor confirmed the delete, not the request"),
        pytest.param(tr((1, "running"), (2, "stopping"), (2.1, "stopped"), (3, "starting"), (3.2, "running")), 1, None, 4,
                     [iv(1, 2.1), iv(2.1, 3.2, True), iv(3.2, 4)], id="stop and start switch at the vendor's word"),
        pytest.param(tr((1, "running"), (2, "stopping")), 1, None, 3, [iv(1, 3)], id="a stop not yet confirmed still bills"),
        pytest.param(tr((1, "running"), (2, "rebooting"), (2.1, "running")), 1, None, 3, [iv(1, 3)], id="reboot changes nothing"),
        pytest.param(tr((1, "running"), (2, "stopped"), (3, "deleting"), (4, "deleted")), 1, 4, 9, [iv(1, 2), iv(2, 4, True)],
                     id="deleted while stopped: stopped rate until the end"),
        pytest.param(tr((1, "running"), (2, "stopped"), (2, "running")), 1, None, 3, [iv(1, 3)],
                     id="zero-length stop leaves no empty interval"),
        pytest.param(tr((1, "running"), (5, "stopped")), 1, 3, 9, [iv(1, 3)], id="changes after the end are ignored"),
        pytest.param(tr((1, "running")), 1, 1, 9, [], id="ended the moment it started"),
        pytest.param(tr((1, "running"), (3, "stopped")), 1, None, 3, [iv(1, 3)], id="a change exactly at now"),
        pytest.param(tr((1, "running"), (1.5, "terminated")), 1, 1.5, 2, [iv(1, 1.5)], id="terminated ends billing"),
    ],
)
def test_billed_intervals(
    transitions: list[Transition], running_since: float | None, ended_at: float | None, now: float, expected: list[BilledInterval]
) -> None:
    got = billed_intervals(
        transitions,
        running_since=at(running_since) if running_since is not None else None,
        ended_at=at(ended_at) if ended_at is not None else None,
        now=at(now),
    )
    assert got == expected


def test_billed_intervals_order_does_not_matter() -> None:
    steps = tr((1, "running"), (2, "stopped"), (3, "running"))
    assert billed_intervals(reversed(steps), running_since=at(1), ended_at=None, now=at(4)) == [iv(1, 2), iv(2, 3, True), iv(3, 4)]


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (None, None, [iv(1, 2), iv(2, 4, True)]),
        (1.5, None, [iv(1.5, 2), iv(2, 4, True)]),
        (None, 3, [iv(1, 2), iv(2, 3, True)]),
        (2, 3, [iv(2, 3, True)]),
        (5, 6, []),
        (0, 1, []),
    ],
)
def test_clip(start: float | None, end: float | None, expected: list[BilledInterval]) -> None:
    intervals = [iv(1, 2), iv(2, 4, True)]
    assert clip(intervals, at(start) if start is not None else None, at(end) if end is not None else None) == expected


def test_split_by_day() -> None:
    day = datetime(2026, 11, 10, tzinfo=UTC)
    interval = BilledInterval(datetime(2026, 11, 9, 22, tzinfo=UTC), datetime(2026, 11, 12, 1, tzinfo=UTC), False)
    pieces = split_by_day([interval])
    assert [(p.start.day, p.hours) for p in pieces] == [(9, 2.0), (10, 24.0), (11, 24.0), (12, 1.0)]
    assert pieces[1].start == day
    assert split_by_day([BilledInterval(day, datetime(2026, 11, 11, tzinfo=UTC), True)]) == [
        BilledInterval(day, datetime(2026, 11, 11, tzinfo=UTC), True)
    ]


def test_cost_uses_the_rate_of_each_interval() -> None:
    assert cost([iv(0, 2), iv(2, 3, True), iv(3, 3.5)], Rates(running=2.0, stopped=0.1)) == pytest.approx(2.5 * 2.0 + 0.1)
    assert cost([], Rates(1, 1)) == 0


@pytest.mark.parametrize(
    ("vendor", "price", "snapshot", "expected"),
    [
        pytest.param("vast", 2.0, {"vendor_data": {"storage_per_hour": 0.05}}, 0.05, id="vast: storage only"),
        pytest.param("vast", 2.0, {"vendor_data": {}}, 0.0, id="vast: storage price unknown"),
        pytest.param("vast", 2.0, None, 0.0, id="vast: no snapshot"),
        pytest.param("vast", 0.01, {"vendor_data": {"storage_per_hour": 0.05}}, 0.01, id="never above the price"),
        pytest.param("vast", 2.0, {"vendor_data": {"storage_per_hour": True}}, 0.0, id="not a number"),
        pytest.param("nebula", 2.0, {"vendor_data": {"storage_per_hour": 0.05}}, 2.0, id="nebula: GPU billed when stopped"),
        pytest.param("fal", 2.0, None, 0.0, id="fal: no stop; storage unknown"),
        pytest.param("acme", 2.0, None, 2.0, id="unknown vendor: full price"),
        pytest.param(None, 2.0, None, 2.0, id="no vendor yet: full price"),
    ],
)
def test_stopped_rate(vendor: str | None, price: float, snapshot: dict | None, expected: float) -> None:
    assert stopped_rate(vendor, price, snapshot) == pytest.approx(expected)


@pytest.mark.parametrize("vendor", sorted(VENDOR_SPECS))
def test_vendor_capabilities_are_the_adapters(vendor: str) -> None:
    assert vendor_capabilities(vendor) == VENDOR_SPECS[vendor].adapter.capabilities
    assert vendor_capabilities("acme") is None


async def test_cost_so_far_across_stop_start_and_deletion(database: Database) -> None:
    tenant = await make_tenant(database)
    nebula = await make_resource(database, tenant.id, vendor="nebula", price=2.0, history=LIFE)
    vast = await make_resource(database, tenant.id, vendor="vast", price=1.5, storage_per_hour=0.1, history=LIFE)
    never = await make_resource(database, tenant.id, history=[(0.1, "provisioning"), (0.5, "deleting"), (0.6, "deleted")])
    rows = [await load_resource(database, r) for r in (nebula, vast, never)]
    assert rows[0].ended_at == at(6.2)
    got = await costs_so_far(database, rows, now=at(100))
    assert got[nebula] == pytest.approx((LIFE_RUNNING_HOURS + LIFE_STOPPED_HOURS) * 2.0)  # Nebula bills stopped GPUs
    assert got[vast] == pytest.approx(LIFE_RUNNING_HOURS * 1.5 + LIFE_STOPPED_HOURS * 0.1)  # Vast: storage when stopped
    assert got[never] == 0.0


async def test_cost_so_far_of_a_live_resource_grows_with_time(database: Database) -> None:
    tenant = await make_tenant(database)
    rid = await make_resource(database, tenant.id, vendor="vast", price=3.0, storage_per_hour=0.2,
                              history=[(0, "provisioning"), (1, "running")])
    row = await load_resource(database, rid)
    assert (await costs_so_far(database, [row], now=at(1)))[rid] == 0.0
    assert (await costs_so_far(database, [row], now=at(2)))[rid] == pytest.approx(3.0)
    await move(database, rid, [(2, "stopping"), (2.5, "stopped")])
    row = await load_resource(database, rid)
    assert (await costs_so_far(database, [row], now=at(4.5)))[rid] == pytest.approx(1.5 * 3.0 + 2 * 0.2)
    assert await costs_so_far(database, []) == {}


async def test_cost_of_a_real_instance_across_stop_start_and_delete(tmp_path: Path) -> None:
    """Through the engine and the Vast sandbox over HTTP, on the test's clock: an hour running, an
    hour stopped (Vast bills only storage), an hour running, then deleted: billing ends when the
    vendor confirmed, and a later read costs the same."""
    async with engine_rig(tmp_path, vendors=["vast"], guardrail_interval_seconds=1e7) as rig:
        await rig.start_engine()
        offer = (await rig.offers("vast"))[0]
        rid = await rig.procure_offer(offer)
        await rig.wait_status(rid, "running")
        rig.clock.advance(3600)
        await _request(rig, rid, "stopping", "stop")
        await rig.wait_status(rid, "stopped")
        rig.clock.advance(3600)
        await _request(rig, rid, "starting", "start")
        await rig.wait_status(rid, "running")
        rig.clock.advance(3600)
        await _request(rig, rid, "deleting")
        row = await rig.wait_status(rid, "deleted")
        storage = offer.vendor_data["storage_per_hour"]
        assert 0 < storage < offer.total_price_per_hour
        expected = 2 * offer.total_price_per_hour + 1 * storage
        cost = (await costs_so_far(rig.db, [row], now=rig.clock()))[rid]
        assert cost == pytest.approx(expected, rel=0.01)
        rig.clock.advance(10 * 3600)
        assert (await costs_so_far(rig.db, [row], now=rig.clock()))[rid] == pytest.approx(cost)


async def _request(rig: Rig, rid: uuid.UUID, status: str, action: str | None = None) -> None:
    """What the API writes for a stop/start/delete, at the engine's (moved) time."""
    now = rig.clock()
    async with rig.db.transaction() as session:
        row = await session.get(Resource, rid)
        assert row is not None
        change_status(session, row, ResourceStatus(status), f"{action or 'delete'} requested", at=now)
        row.pending_action = action
        row.next_attempt_at = now
        if status == "deleting":
            row.final_status, row.delete_requested_at = "deleted", now


def _random_history(rng: random.Random) -> tuple[SimpleNamespace, list[Transition]]:
    """A resource as a listing reads it (running_since, ended_at, status, updated_at) and its
    billing transitions, any of them missing, some out of order or before billing started."""
    base = datetime(2026, 3, 1, tzinfo=UTC)
    moment = lambda: base + timedelta(seconds=rng.randrange(0, 400_000), microseconds=rng.randrange(1_000_000))  # noqa: E731
    running_since = moment() if rng.random() < 0.9 else None
    transitions = [Transition(moment(), rng.choice(["running", "stopped"])) for _ in range(rng.choice([0, 0, 1, 2, 5]))]
    final = rng.random() < 0.3
    ended_at = moment() if final and rng.random() < 0.7 else None
    resource = SimpleNamespace(running_since=running_since, ended_at=ended_at, status="deleted" if final else "running",
                               updated_at=moment())
    return resource, transitions


def test_the_cost_clock_answers_the_very_float_of_the_intervals_at_every_moment_after_the_last_change() -> None:
    rng = random.Random(20261205)
    later = 0
    for _ in range(3000):
        resource, transitions = _random_history(rng)
        rates = Rates(running=rng.choice([0.0, 0.37, 2.5, 17.123]), stopped=rng.choice([0.0, 0.05, 2.5]))
        clock = cost_clock(resource, transitions, rates)  # type: ignore[arg-type]
        changes = [t.at for t in transitions] + ([resource.running_since] if resource.running_since else [])
        last_change = max(changes, default=datetime(2026, 3, 1, tzinfo=UTC))
        for offset in (-3600.0, -1e-6, 0.0, 1e-6, 1.0, 3600.0, 86_400.0 * 40):
            now = last_change + timedelta(seconds=offset)
            expected = cost(resource_intervals(resource, transitions, now), rates)  # type: ignore[arg-type]
            found = clock.at(now)
            if found is None:  # only before or at the last change of a resource still billing
                assert clock.since is not None and now <= last_change
            else:
                later += 1
                assert found == expected, (resource, transitions, now)  # exactly: the same additions
    assert later > 10_000  # most moments are answered by the clock itself
