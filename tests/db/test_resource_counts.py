"""The kept count of each tenant's resources (migration 0021): `GET /resources`' total reads it
instead of counting rows, so it must equal the count through every way a row comes and goes,
on both databases. Its triggers live with the `resources` table: a later SQLite migration that
rebuilds the table (`batch_alter_table`) would drop them, and these tests would fail at head."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from sqlalchemy import delete, func, select

from gpusupply.db.models import Procurement, Resource, ResourceCount, Tenant, utcnow
from gpusupply.db.session import Database, alembic_config
from gpusupply.domain.intents import new_resource
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
