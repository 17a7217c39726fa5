"""The migrations are the schema's source of truth: they must agree with the models, run on
both backends, run twice without harm, and be safe to run from several processes at once."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from gpusupply.db.models import Base
from gpusupply.db.session import Database
from tests.conftest import BACKENDS


def _diff(sync_connection: Any) -> list[Any]:
    context = MigrationContext.configure(sync_connection, opts={"compare_type": True})
    return compare_metadata(context, Base.metadata)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_migrate_an_empty_database(backend: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "postgres_url")
    db = Database(url)
    try:
        await db.migrate()
        async with db.engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
    finally:
        await db.dispose()


async def test_models_agree_with_migrations(database: Database) -> None:
    async with database.engine.connect() as conn:
        diff = await conn.run_sync(_diff)
    assert diff == []


async def test_every_model_table_exists(database: Database) -> None:
    async with database.engine.connect() as conn:
        tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
    assert set(Base.metadata.tables) <= tables
    assert "alembic_version" in tables


async def test_migrate_twice_is_harmless(database: Database) -> None:
    await database.migrate()
    async with database.session() as session:
        versions = (await session.execute(text("SELECT version_num FROM alembic_version"))).scalars().all()
    assert len(versions) == 1


@pytest.mark.postgres
def test_concurrent_migrations_from_several_processes(postgres_url: str, tmp_path: Path) -> None:
    # Replicas starting together: the advisory lock in Database.migrate serializes them. Alembic
    # keeps global state, so the "replicas" must be real processes.
    env = {**os.environ, "GPUSUPPLY_DATABASE_URL": postgres_url, "GPUSUPPLY_DATA_DIR": str(tmp_path)}
    gpusupply = Path(sys.executable).parent / "gpusupply"
    procs = [
        subprocess.Popen([str(gpusupply), "db", "upgrade"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(3)
    ]
    outcomes = [proc.communicate(timeout=120) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0], outcomes

    async def versions() -> list[str]:
        db = Database(postgres_url)
        try:
            async with db.session() as session:
                return list((await session.execute(text("SELECT version_num FROM alembic_version"))).scalars())
        finally:
            await db.dispose()

    assert len(asyncio.run(versions())) == 1
