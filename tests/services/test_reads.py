"""The API's one-statement reads (services/reads.py through `Database.read`) on both databases:
they answer what the ORM paths answer (the console still uses those), keep tenants apart, and
on SQLite run on the one reader thread and see every committed write at once."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from sqlalchemy import bindparam, func, select, update

from gpusupply.core.errors import NotFoundError, UnprocessableError
from gpusupply.core.offers import offer_from_dict
from gpusupply.core.states import ResourceStatus
from gpusupply.db.models import OfferRow, Resource, utcnow
from gpusupply.domain.costs import costs_so_far
from gpusupply.domain.events import change_status
from gpusupply.services import reads
from gpusupply.services.listing import listed_cost
from gpusupply.services.procurement import offer_status
from gpusupply.services.resources import get_resource_with_cost, list_resources, list_resources_page
from tests.conftest import BACKENDS
from tests.services.helpers import principal, some_offers
from tests.services.test_resources import make_resource

S = ResourceStatus


async def run_for_hours(service: Any, resource_id: uuid.UUID, hours: float, *, stopped_after: float | None = None) -> None:
    """Test setup: the resource ran (and maybe stopped), as the engine records it."""
    started = utcnow() - timedelta(hours=hours)
    async with service.db.transaction() as session:
        resource = await session.get(Resource, resource_id)
        assert resource is not None
        change_status(session, resource, S.PROVISIONING, at=started)
        change_status(session, resource, S.RUNNING, at=started + timedelta(seconds=1))
        if stopped_after is not None:
            change_status(session, resource, S.STOPPING, at=started + timedelta(hours=stopped_after))
            change_status(session, resource, S.STOPPED, at=started + timedelta(hours=stopped_after, seconds=1))
        resource.running_since = started + timedelta(seconds=1)
        resource.vendor_instance_id, resource.last_synced_at = f"i-{resource_id.hex[:8]}", utcnow()


@dataclass
class Listed:
    rows: list[tuple[Any, float]]  # (the listed row, its cost so far)
    total: int


async def listed(db: Any, principal: Any, **filters: Any) -> Listed:
    page, costs = await list_resources_page(db, principal, **filters)
    return Listed([(read.resource, cost) for read, cost in zip(page.reads, costs, strict=True)], page.total)


def offer_of(resource_id: uuid.UUID) -> Any:
    async def read(fetch: Any) -> uuid.UUID:
        [row] = await fetch(select(Resource.offer_id).where(Resource.id == resource_id), {})
        return row.offer_id

    return read


@pytest.mark.parametrize("service_backend", BACKENDS)
async def test_resource_page_answers_what_the_orm_path_answers(service: Any) -> None:
    alice, bob = await principal(service), await principal(service, "bob")
    ids = [await make_resource(service, vendor=v) for v in ("nebula", "fal", "nebula", "fal", "vast")]
    await run_for_hours(service, ids[0], 3)
    await run_for_hours(service, ids[1], 2, stopped_after=1)
    await run_for_hours(service, ids[4], 2, stopped_after=1)  # stopped, billed its storage price
    # Stopped, started again, then final without `ended_at`: billing ends at its last transition.
    await run_for_hours(service, ids[3], 3, stopped_after=1)
    async with service.db.transaction() as session:
        restarted = await session.get(Resource, ids[3])
        assert restarted is not None and restarted.running_since is not None
        change_status(session, restarted, S.RUNNING, at=restarted.running_since + timedelta(hours=2))
        restarted.status, restarted.ended_at = S.DELETED.value, None
    # Final without `ended_at` after running without a stop: its last transition is its start.
    ids.append(await make_resource(service, vendor="nebula"))
    await run_for_hours(service, ids[5], 3)
    async with service.db.transaction() as session:
        ended = await session.get(Resource, ids[5])
        assert ended is not None
        ended.status, ended.ended_at = S.FAILED.value, None
    await make_resource(service, tenant="bob")
    cases: list[dict[str, Any]] = [
        {}, {"vendor": "fal"}, {"status": "running"}, {"status": "stopped"}, {"limit": 2}, {"limit": 2, "offset": 2},
        {"limit": 3, "offset": 3}, {"offset": 5}, {"offset": 50}, {"vendor": "fal", "status": "pending"},
        {"offer_id": (await service.db.read(offer_of(ids[2])))},
    ]
    for case in cases:
        rows, total = await list_resources(service.db, alice, **case)
        page = await listed(service.db, alice, **case)
        assert page.total == total, case
        assert [r.id for r, _ in page.rows] == [r.id for r in rows], case
        expected = await costs_so_far(service.db, rows)
        for (row, cost), resource in zip(page.rows, rows, strict=True):
            assert cost == pytest.approx(expected[resource.id], rel=1e-3), case
            assert (row.status, row.vendor, row.created_at) == (resource.status, resource.vendor, resource.created_at)
    running = dict((r.id, c) for r, c in (await listed(service.db, alice)).rows)
    assert running[ids[0]] > 0 and running[ids[1]] > 0 and running[ids[2]] == 0.0 and running[ids[4]] > 0
    assert running[ids[3]] > 0 and running[ids[5]] == 0.0
    # The storage price (the stopped rate of vast) is read for the resources that were stopped only.
    page_reads, _ = await service.db.read(reads.resource_page(alice.tenant_id, {}, 100, 0))
    storage = {read.resource.id: read.storage_per_hour for read in page_reads}
    async with service.db.session() as session:
        vast = await session.get(Resource, ids[4])
        assert vast is not None and storage[ids[4]] == vast.offer_snapshot["vendor_data"]["storage_per_hour"] > 0
    assert storage[ids[0]] is None and storage[ids[2]] is None  # never stopped
    bobs = await listed(service.db, bob)
    assert bobs.total == 1 and len(bobs.rows) == 1 and set(ids).isdisjoint({r.id for r, _ in bobs.rows})
    for bad in ({"status": "exploded"}, {"vendor": "aws"}, {"limit": 0}, {"offset": -1}):
        with pytest.raises(UnprocessableError):
            await list_resources_page(service.db, alice, **bad)


@pytest.mark.parametrize("service_backend", BACKENDS)
async def test_a_resource_created_while_a_page_is_read_changes_no_listed_cost(service: Any) -> None:
    """The page and its transitions are two statements: a resource created between them must not
    shift the rows the transitions are read for (they are read by the page's ids)."""
    alice = await principal(service)
    ids = [await make_resource(service, vendor="nebula") for _ in range(3)]
    for rid in ids:
        await run_for_hours(service, rid, 3, stopped_after=1)  # stopped: its cost needs its transitions

    async def read_with_a_creation_between(fetch: Any) -> Any:
        calls = 0

        async def fetching(statement: Any, values: Any) -> Any:
            nonlocal calls
            calls += 1
            rows = await fetch(statement, values)
            if calls == 1:  # after the page, before its transitions
                await make_resource(service, vendor="nebula")
            return rows

        return await reads.resource_page(alice.tenant_id, {}, 2, 0)(fetching)

    page_reads, _ = await service.db.read(read_with_a_creation_between)
    assert [read.resource.id for read in page_reads] == [ids[2], ids[1]]
    rows = [r for r in (await list_resources(service.db, alice, limit=10))[0] if r.id in (ids[1], ids[2])]
    expected = await costs_so_far(service.db, rows)
    now = utcnow()
    for read in page_reads:
        assert len(read.transitions) == 1  # the stop
        assert listed_cost(read, now) == pytest.approx(expected[read.resource.id], rel=1e-3)


@pytest.mark.parametrize("service_backend", BACKENDS)
async def test_resource_read_with_cost_on_both_databases(service: Any) -> None:
    rid = await make_resource(service)
    await run_for_hours(service, rid, 2, stopped_after=1)
    alice = await principal(service)
    resource, cost = await get_resource_with_cost(service.db, service.ctx.refresh_resource, alice, rid)
    assert resource.id == rid and resource.status == "stopped" and resource.last_synced_at is not None
    assert cost == pytest.approx((await costs_so_far(service.db, [resource]))[rid], rel=1e-3) and cost > 0
    with pytest.raises(NotFoundError):
        await get_resource_with_cost(service.db, service.ctx.refresh_resource, await principal(service, "bob"), rid)
    with pytest.raises(NotFoundError):
        await get_resource_with_cost(service.db, service.ctx.refresh_resource, alice, uuid.uuid4())


@pytest.mark.parametrize("service_backend", BACKENDS)
async def test_offer_status_on_both_databases(service: Any) -> None:
    alice, bob = await principal(service), await principal(service, "bob")
    (offer,) = await some_offers(service, vendor="nebula")
    unprocured = await offer_status(service.db, bob, offer.offer_id)
    # created_at is the offer's own fetch time (from its stored data), not the snapshot's.
    assert (unprocured.status, unprocured.created_at, unprocured.procurement_status) == (
        "available", offer.offer.fetched_at, "pending"
    )
    assert unprocured.resources == [] and unprocured.procured_at is None
    async with service.db.transaction() as session:  # past its expiry: expired, still answered
        await session.execute(update(OfferRow).where(OfferRow.id == offer.offer_id).values(expires_at=utcnow()))
    assert (await offer_status(service.db, bob, offer.offer_id)).status == "expired"
    async with service.db.transaction() as session:
        await session.execute(
            update(OfferRow).where(OfferRow.id == offer.offer_id).values(expires_at=utcnow() + timedelta(minutes=5))
        )
    rid = await make_resource(service, vendor="nebula")  # procures the cheapest nebula offer: the same one
    await run_for_hours(service, rid, 1)
    status = await offer_status(service.db, alice, offer.offer_id)
    assert status.status == "procured" and status.procurement_status == "ready"
    assert [r.id for r in status.resources] == [rid] and status.progress == "1/1 instances running"
    assert status.procured_at is not None and status.failure_reason is None
    with pytest.raises(NotFoundError):  # another tenant's procurement: 404
        await offer_status(service.db, bob, offer.offer_id)
    with pytest.raises(NotFoundError):
        await offer_status(service.db, alice, uuid.uuid4())
    async with service.db.transaction() as session:  # the offer row cleaned up: the procurement still answers
        row = await session.get(OfferRow, offer.offer_id)
        assert row is not None and offer_from_dict(row.data).fetched_at == offer.offer.fetched_at
        await session.delete(row)
    gone = await offer_status(service.db, alice, offer.offer_id)
    assert gone.status == "procured" and gone.created_at is not None and [r.id for r in gone.resources] == [rid]


@pytest.mark.parametrize("service_backend", BACKENDS)
async def test_hot_reads_see_every_commit_at_once(service: Any) -> None:
    """The reader's own connection (SQLite: one, in autocommit; PostgreSQL: its pool) holds no
    snapshot between reads: each sees what was committed just before it."""
    statement = select(Resource.status).where(Resource.id == bindparam("resource_id"))

    def status_of(resource_id: uuid.UUID) -> Any:
        async def read(fetch: Any) -> str:
            [row] = await fetch(statement, {"resource_id": resource_id})
            return str(row.status)

        return read

    rid = await make_resource(service)
    for status in ("provisioning", "running", "stopping"):
        async with service.db.transaction() as session:
            await session.execute(update(Resource).where(Resource.id == rid).values(status=status))
        assert await service.db.read(status_of(rid)) == status


def test_every_hot_read_statement_is_compiled_once() -> None:
    """Each statement has a cache key, so SQLAlchemy compiles it once per dialect: a statement
    without one (a custom element lacking `_traverse_internals`) is compiled again on every read,
    which made the offer status about 40 times its SQL."""
    from gpusupply.services import reads

    page_statements = [statement for filters in ((), ("status",), ("offer_id", "vendor")) for statement in reads._page_statements(filters)]
    for statement in [reads._OFFER_STATUS, reads._DETAIL, reads._TRANSITIONS, reads._MEMBERS, *page_statements]:
        assert statement._generate_cache_key() is not None, statement


async def _backend_pid(fetch: Any) -> int:
    [row] = await fetch(select(func.pg_backend_pid().label("pid")), {})
    return int(row.pid)


@pytest.mark.postgres
@pytest.mark.parametrize("service_backend", ["postgres"])
async def test_postgres_reads_reuse_a_connection_and_survive_it_being_cut(service: Any) -> None:
    """The reader keeps its connections (no pre-ping round trip per read); one cut meanwhile (a
    database restart, an administrator) costs no read: it is tried again on a new connection."""
    first = await service.db.read(_backend_pid)
    assert await service.db.read(_backend_pid) == first
    url = service.db.engine.url
    admin = await asyncpg.connect(host=url.host, port=url.port, user=url.username, database=url.database)
    try:
        cut = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            url.database,
        )
        assert cut >= 1
        again = await service.db.read(_backend_pid)
        assert again != first
        alive = await admin.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", again)
        assert alive == 1
    finally:
        await admin.close()
