"""engine/leases.py on SQLite and PostgreSQL: exclusive claims, takeover of expired leases,
heartbeats, token-guarded apply that merges with what the API wrote meanwhile; and the job leases
of domain/job_leases.py."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from gpusupply.core.states import ResourceStatus
from gpusupply.db.models import Resource, utcnow
from gpusupply.db.session import Database
from gpusupply.domain import job_leases
from gpusupply.domain.events import change_status
from gpusupply.engine import leases
from gpusupply.metrics import LEASE_TAKEOVERS

from .helpers import insert_resources

LEASE = timedelta(seconds=30)


async def claim(db: Database, owner: str, *, limit: int = 100, now=None, lease: timedelta = LEASE, statuses=("pending",)) -> list[leases.Lease]:
    return await leases.claim(db, pipeline="test", owner=owner, statuses=statuses, limit=limit, lease=lease, now=now or utcnow())


async def test_two_processes_never_claim_the_same_row(db_url: str) -> None:
    # Two Database objects = two processes' connection pools (and, on SQLite, two claim locks).
    first, second = Database(db_url), Database(db_url)
    await first.migrate()
    try:
        ids = await insert_resources(first, 40)
        claimed: list[leases.Lease] = []

        async def worker(db: Database, owner: str) -> None:
            for _ in range(10):
                claimed.extend(await claim(db, owner, limit=3))
                await asyncio.sleep(0)

        await asyncio.gather(worker(first, "a"), worker(second, "b"), worker(first, "c"), worker(second, "d"))
        got = [lease.resource_id for lease in claimed]
        assert len(got) == len(set(got)) == 40
        assert set(got) == set(ids)
        assert not any(lease.taken_over for lease in claimed)
        # everything is leased: nothing more to claim
        assert await claim(first, "e") == []
    finally:
        await first.dispose()
        await second.dispose()


async def test_only_due_rows_in_the_statuses_are_claimed(database: Database) -> None:
    now = utcnow()
    due = await insert_resources(database, 1)
    later = await insert_resources(database, 1, next_attempt_at=now + timedelta(minutes=5))
    await insert_resources(database, 1, status="running")
    got = await claim(database, "a", now=utcnow())
    assert [lease.resource_id for lease in got] == due
    async with database.transaction() as session:  # the first row is done for now
        row = await session.get(Resource, due[0])
        assert row is not None
        row.status = "running"
    await leases.release(database, got)
    assert [lease.resource_id for lease in await claim(database, "a", now=now + timedelta(minutes=6))] == later


async def test_expired_lease_is_taken_over_and_the_old_holder_loses(database: Database) -> None:
    [rid] = await insert_resources(database, 1)
    now = utcnow()
    [old] = await claim(database, "dead-process", now=now, lease=timedelta(seconds=5))
    assert await claim(database, "b", now=now + timedelta(seconds=4)) == []  # still held
    before = LEASE_TAKEOVERS.labels("test")._value.get()
    [new] = await claim(database, "b", now=now + timedelta(seconds=6))
    assert new.resource_id == rid and new.taken_over
    assert LEASE_TAKEOVERS.labels("test")._value.get() == before + 1

    async def set_message(session: AsyncSession, row: Resource) -> None:
        row.status_message = "from the dead process"

    with pytest.raises(leases.LeaseLost):
        await leases.apply(database, old, set_message)
    assert await leases.load(database, old) is None
    assert (await leases.load(database, new)) is not None


async def test_apply_writes_changes_and_releases(database: Database) -> None:
    [rid] = await insert_resources(database, 1)
    [lease] = await claim(database, "a")

    async def provision(session: AsyncSession, row: Resource) -> str:
        change_status(session, row, ResourceStatus.PROVISIONING, "created")
        row.vendor_instance_id = "i-1"
        return "done"

    assert await leases.apply(database, lease, provision) == "done"
    async with database.session() as session:
        row = await session.get(Resource, rid)
    assert row is not None and row.status == "provisioning" and row.vendor_instance_id == "i-1"
    assert row.lock_token is None and row.lock_owner is None and row.lock_expires_at is None


async def test_apply_keeps_the_lease_when_asked(database: Database) -> None:
    await insert_resources(database, 1)
    [lease] = await claim(database, "a")

    async def mark(session: AsyncSession, row: Resource) -> None:
        row.create_attempted_at = utcnow()

    await leases.apply(database, lease, mark, release_lease=False)
    row = await leases.load(database, lease)
    assert row is not None and row.create_attempted_at is not None and row.lock_token == lease.token


async def test_apply_merges_with_a_status_the_api_set(database: Database) -> None:
    """The API deletes while a create is in flight: keep `deleting`, store the instance id."""
    [rid] = await insert_resources(database, 1)
    [lease] = await claim(database, "a")
    async with database.transaction() as session:  # the API, which never touches lock columns
        row = await session.get(Resource, rid)
        assert row is not None
        change_status(session, row, ResourceStatus.DELETING, "deleted by the user")
        row.final_status = "deleted"

    async def created(session: AsyncSession, fresh: Resource) -> None:
        fresh.vendor_instance_id = "i-9"
        if fresh.status == "pending":
            change_status(session, fresh, ResourceStatus.PROVISIONING, "created")

    await leases.apply(database, lease, created)
    async with database.session() as session:
        row = await session.get(Resource, rid)
    assert row is not None and row.status == "deleting" and row.vendor_instance_id == "i-9" and row.final_status == "deleted"


async def test_apply_merges_again_when_the_status_moves_between_read_and_write(sqlite_url: str) -> None:
    """SQLite reads outside a write transaction, so the API can commit between our read and our
    write; the guarded UPDATE notices and the merge runs on the new row. (On PostgreSQL the row
    is read FOR UPDATE, so the API waits instead.)"""
    database = Database(sqlite_url)
    await database.migrate()
    try:
        [rid] = await insert_resources(database, 1)
        [lease] = await claim(database, "a")
        seen: list[str] = []

        async def merge(session: AsyncSession, fresh: Resource) -> None:
            seen.append(fresh.status)
            if len(seen) == 1:
                async with database.transaction() as api:
                    row = await api.get(Resource, rid)
                    assert row is not None
                    change_status(api, row, ResourceStatus.DELETING, "deleted by the user")
            fresh.vendor_instance_id = "i-3"
            if fresh.status == "pending":
                change_status(session, fresh, ResourceStatus.PROVISIONING, "created")

        await leases.apply(database, lease, merge)
        assert seen == ["pending", "deleting"]
        async with database.session() as session:
            row = await session.get(Resource, rid)
        assert row is not None and row.status == "deleting" and row.vendor_instance_id == "i-3"
        # the event of the discarded first merge was rolled back with it
        from sqlalchemy import select

        from gpusupply.db.models import Event

        async with database.session() as session:
            events = (await session.execute(select(Event.to_status).where(Event.resource_id == rid).order_by(Event.id))).scalars().all()
        assert events == ["deleting"]
    finally:
        await database.dispose()


async def test_heartbeat_extends_and_detects_lost_leases(database: Database) -> None:
    await insert_resources(database, 2)
    now = utcnow()
    held = await claim(database, "a", now=now, lease=timedelta(seconds=5))
    await leases.heartbeat(database, held, lease=timedelta(seconds=60), now=now)
    assert await claim(database, "b", now=now + timedelta(seconds=30)) == []
    # someone takes one over after expiry; our next heartbeat learns it is lost
    [taken] = await claim(database, "b", now=now + timedelta(seconds=61), limit=1)
    await leases.heartbeat(database, held, lease=timedelta(seconds=60), now=now + timedelta(seconds=61))
    lost = [lease for lease in held if lease.lost]
    assert [lease.resource_id for lease in lost] == [taken.resource_id]


async def test_release_frees_the_row(database: Database) -> None:
    await insert_resources(database, 1)
    held = await claim(database, "a")
    await leases.release(database, held)
    again = await claim(database, "b")
    assert len(again) == 1 and not again[0].taken_over


async def test_job_lease_runs_once_per_interval_and_is_taken_over(database: Database) -> None:
    now = utcnow()
    interval, lease = timedelta(seconds=60), timedelta(seconds=10)
    token = await job_leases.claim_job(database, "reconcile:x", owner="a", lease=lease, interval=interval, now=now)
    assert token is not None
    assert await job_leases.claim_job(database, "reconcile:x", owner="b", lease=lease, interval=interval, now=now) is None
    assert await job_leases.heartbeat_job(database, "reconcile:x", token, lease=lease, now=now)
    await job_leases.finish_job(database, "reconcile:x", token, now=now)
    # done: not due again before the interval
    assert await job_leases.claim_job(database, "reconcile:x", owner="b", lease=lease, interval=interval, now=now + timedelta(seconds=30)) is None
    later = now + timedelta(seconds=61)
    dead = await job_leases.claim_job(database, "reconcile:x", owner="dead", lease=lease, interval=interval, now=later)
    assert dead is not None
    before = LEASE_TAKEOVERS.labels("reconcile")._value.get()
    taken = await job_leases.claim_job(database, "reconcile:x", owner="b", lease=lease, interval=interval, now=later + timedelta(seconds=11))
    assert taken is not None and LEASE_TAKEOVERS.labels("reconcile")._value.get() == before + 1
    assert not await job_leases.heartbeat_job(database, "reconcile:x", dead, lease=lease, now=later)
