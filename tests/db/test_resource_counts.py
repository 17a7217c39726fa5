"""The kept count of each tenant's resources (migration 0021): `GET /resources`' total reads it
instead of counting rows, so it must equal the count through every way a row comes and goes,
on both databases. Its triggers live with the `resources` table: a later SQLite migration that
rebuilds the table (`batch_alter_table`) would drop them, and these tests would fail at head."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, func, select, update

from gpusupply.db.models import Event, Procurement, Resource, ResourceCount, Tenant, utcnow
from gpusupply.db.session import Database, alembic_config
from gpusupply.domain.intents import new_resource
from gpusupply.services.reads import SUMMARY_COLUMNS
from tests.conftest import BACKENDS, migrated_url

SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKeptCountTestKeyxxxxxxxxxxxxxxxxxxxxxx kept@count"


async def _tenant(db: Database, name: str) -> uuid.UUID:
    tenant = Tenant(id=uuid.uuid4(), name=name)
    async with db.transaction() as session:
        session.add(tenant)
    return tenant.id


async def _add_resources(db: Database, tenant_id: uuid.UUID, count: int, *, fail: bool = False) -> list[uuid.UUID]:
    """`count` resources of the tenant in one transaction, as a procurement intent writes them
    (`fail`: then the transaction fails after writing them)."""
    now = utcnow()
    async with db.transaction() as session:
        procurement = Procurement(id=uuid.uuid4(), tenant_id=tenant_id, status="provisioning_in_progress", created_at=now)
        session.add(procurement)
        await session.flush()
        rows = [new_resource(tenant_id, procurement.id, SSH_KEY, None, f"r{i}", now) for i in range(count)]
        session.add_all(rows)
        await session.flush()
        if fail:
            raise RuntimeError("rolled back")
    return [row.id for row in rows]


async def _kept_and_counted(db: Database) -> tuple[dict[uuid.UUID, int], dict[uuid.UUID, int]]:
    async with db.session() as session:
        kept = dict((await session.execute(select(ResourceCount.tenant_id, ResourceCount.resources))).tuples().all())
        counted = select(Resource.tenant_id, func.count()).group_by(Resource.tenant_id)
        return {t: n for t, n in kept.items() if n}, dict((await session.execute(counted)).tuples().all())


@pytest.mark.parametrize("backend", BACKENDS)
async def test_the_kept_count_follows_inserts_and_deletes(backend: str, request: pytest.FixtureRequest) -> None:
    db = Database(migrated_url(backend, request))
    try:
        alice, bob = await _tenant(db, "alice"), await _tenant(db, "bob")
        first = await _add_resources(db, alice, 3)
        await _add_resources(db, bob, 1)
        await _add_resources(db, alice, 2)
        kept, counted = await _kept_and_counted(db)
        assert kept == counted == {alice: 5, bob: 1}
        async with db.transaction() as session:
            await session.execute(delete(Resource).where(Resource.id.in_(first[:2])))
        kept, counted = await _kept_and_counted(db)
        assert kept == counted == {alice: 3, bob: 1}
        # A transaction that fails writes no count either.
        with pytest.raises(RuntimeError):
            await _add_resources(db, bob, 2, fail=True)
        assert (await _kept_and_counted(db))[0] == {alice: 3, bob: 1}
    finally:
        await db.dispose()


@pytest.mark.postgres
async def test_concurrent_inserts_of_one_tenant_lose_no_count(request: pytest.FixtureRequest) -> None:
    """PostgreSQL: the count row is updated at commit (a deferred trigger); transactions of one
    tenant committing together each add theirs."""
    db = Database(migrated_url("postgres", request))
    try:
        tenant = await _tenant(db, "alice")
        await asyncio.gather(*(_add_resources(db, tenant, 2) for _ in range(8)))
        kept, counted = await _kept_and_counted(db)
        assert kept == counted == {tenant: 16}
    finally:
        await db.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_the_migration_counts_the_rows_already_there(backend: str, request: pytest.FixtureRequest) -> None:
    db = Database(migrated_url(backend, request))
    try:
        alice = await _tenant(db, "alice")
        await _add_resources(db, alice, 1)

        def to(revision: str) -> Any:
            from alembic import command

            def move(sync_connection: Any) -> None:
                (command.downgrade if revision == "0020" else command.upgrade)(alembic_config(sync_connection), revision)

            return move

        async with db.engine.connect() as conn:
            await conn.run_sync(to("0020"))
            await conn.commit()
        await _add_resources(db, alice, 4)  # no triggers at 0020
        async with db.engine.connect() as conn:
            assert "resource_counts" not in await conn.run_sync(lambda c: c.dialect.get_table_names(c))
            await conn.run_sync(to("head"))
            await conn.commit()
        kept, counted = await _kept_and_counted(db)
        assert kept == counted == {alice: 5}
        await _add_resources(db, alice, 1)  # and the triggers are there
        assert (await _kept_and_counted(db))[0] == {alice: 6}
    finally:
        await db.dispose()


# ----- the listing version (migration 0022; services/listing.py keeps pages by it) --------------
async def _version(db: Database, tenant_id: uuid.UUID) -> int:
    async with db.session() as session:
        return int((await session.execute(select(ResourceCount.version).where(ResourceCount.tenant_id == tenant_id))).scalar_one())


def _another(value: Any) -> Any:
    """A value of the same kind as `value` that differs from it."""
    if isinstance(value, datetime):
        return value + timedelta(minutes=1)
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, uuid.UUID):
        return uuid.uuid4()
    if isinstance(value, dict):
        return {**value, "changed": True}
    return f"{value}-changed"


@pytest.mark.parametrize("backend", BACKENDS)
async def test_the_listing_version_moves_with_everything_a_listing_shows_and_nothing_else(
    backend: str, request: pytest.FixtureRequest
) -> None:
    db = Database(migrated_url(backend, request))
    now = utcnow()
    try:
        alice, bob = await _tenant(db, "alice"), await _tenant(db, "bob")
        first, second = await _add_resources(db, alice, 2)
        await _add_resources(db, bob, 1)
        filled = dict(name="n", status="running", vendor="fal", vendor_region="us-east", region="US", external_ip="198.51.100.1",
                      ssh_host="h", ssh_port=22, ssh_user="root", gpu_type="H100", gpu_family="H100", gpu_count=1,
                      offer_id=uuid.uuid4(), price_per_hour=2.0, running_since=now, ended_at=now, resource_type="vm",
                      cluster_id=uuid.uuid4(), created_at=now, offer_snapshot={"vendor_data": {"storage_per_hour": 0.1}})
        async with db.transaction() as session:
            await session.execute(update(Resource).where(Resource.id == first).values(**filled))

        async def moved(**values: Any) -> bool:
            before, bobs = await _version(db, alice), await _version(db, bob)
            async with db.transaction() as session:
                await session.execute(update(Resource).where(Resource.id == first).values(**values))
            assert await _version(db, bob) == bobs  # another tenant's pages stay
            return await _version(db, alice) != before

        listed = [column.name for column in SUMMARY_COLUMNS if column.name not in ("id", "updated_at")]
        assert set(listed) <= set(filled), "a listed column this test does not change"
        changed = {name: _another(filled[name]) for name in listed}
        for name, value in changed.items():
            assert await moved(**{name: value}), name
        for name, value in changed.items():  # the same values again: nothing shown changes
            assert not await moved(**{name: value}), name
        assert await moved(offer_snapshot={"vendor_data": {"storage_per_hour": 0.2}})  # a stopped rate
        # What the engine's refreshes write, and what no listing shows.
        assert not await moved(last_synced_at=now, vendor_status="whatever", updated_at=now + timedelta(seconds=5))
        assert not await moved(status_message="busy", spend_limit=3.0, retry_count=2)
        # A final row without `ended_at` bills until its `updated_at`: then that moves it too.
        assert await moved(status="deleted", ended_at=None)
        assert await moved(updated_at=now + timedelta(seconds=10))
        # A status change event (the cost reads the transitions); another kind of event does not.
        before = await _version(db, alice)
        async with db.transaction() as session:
            session.add(Event(resource_id=second, tenant_id=alice, at=now, kind="attempt"))
        assert await _version(db, alice) == before
        async with db.transaction() as session:
            session.add(Event(resource_id=second, tenant_id=alice, at=now, kind="status_change", from_status="running",
                              to_status="stopped"))
        assert await _version(db, alice) == before + 1
        # Inserts and deletes.
        await _add_resources(db, alice, 1)
        assert await _version(db, alice) == before + 2
        async with db.transaction() as session:
            await session.execute(delete(Resource).where(Resource.id == second))
        assert await _version(db, alice) == before + 3
    finally:
        await db.dispose()
