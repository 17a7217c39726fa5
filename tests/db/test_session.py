"""Database sessions: SQLite in WAL mode under the data dir, UTC times on both backends,
transactions that roll back, and URLs shown without their password."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import StatementError

from gpusupply.db.models import Tenant
from gpusupply.db.session import Database
from gpusupply.settings import Settings


def test_display_url_hides_the_password() -> None:
    db = Database("postgresql+asyncpg://gpusupply:s3cret@db.internal:5432/gpusupply")
    assert db.display_url == "postgresql+asyncpg://gpusupply:***@db.internal:5432/gpusupply"


async def test_sqlite_file_in_wal_mode_under_the_data_dir(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path / "nested" / "data")  # type: ignore[call-arg]
    db = Database(settings.effective_database_url)
    try:
        await db.migrate()
        async with db.session() as session:
            assert (await session.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
            assert (await session.execute(text("PRAGMA foreign_keys"))).scalar() == 1
        assert (tmp_path / "nested" / "data" / "gpusupply.db").exists()
    finally:
        await db.dispose()


async def test_times_come_back_in_utc(database: Database) -> None:
    at = datetime(2026, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    async with database.transaction() as session:
        session.add(Tenant(id=uuid.uuid4(), name="tz", created_at=at))
    async with database.session() as session:
        stored = (await session.execute(select(Tenant.created_at).where(Tenant.name == "tz"))).scalar_one()
    assert stored == at and stored.tzinfo == UTC and stored.hour == 12


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        ("2026-05-01 12:00:00.250000", datetime(2026, 5, 1, 12, 0, 0, 250000, tzinfo=UTC)),  # as SQLAlchemy writes
        ("2026-05-01 12:00:00", datetime(2026, 5, 1, 12, tzinfo=UTC)),  # SQLite's own CURRENT_TIMESTAMP
        ("2026-05-01", datetime(2026, 5, 1, tzinfo=UTC)),  # a date alone: SQLAlchemy's parser, as before
        ("2026-05-01 14:00:00+02:00", datetime(2026, 5, 1, 12, tzinfo=UTC)),  # with an offset: likewise
    ],
)
async def test_sqlite_time_text_reads_as_utc(tmp_path: Path, stored: str, expected: datetime) -> None:
    """SQLite keeps times as text; each form reads back as the UTC time it names, on the ORM
    path and on the hot-read path alike (one parse per value, db/models.UtcDateTime)."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'times.db'}")
    try:
        await db.migrate()
        async with db.transaction() as session:
            await session.execute(text("INSERT INTO tenants (id, name, created_at) VALUES (:id, 't', :at)"), {"id": uuid.uuid4().hex, "at": stored})
        async with db.session() as session:
            assert (await session.execute(select(Tenant.created_at))).scalar_one() == expected

        async def read(fetch: object) -> object:
            return (await fetch(select(Tenant.created_at), {}))[0].created_at  # type: ignore[operator]

        found = await db.read(read)
        assert found == expected and found.tzinfo is UTC
    finally:
        await db.dispose()


def test_sqlite_time_text_that_is_no_time_fails_as_before() -> None:
    from sqlalchemy.dialects import sqlite

    from gpusupply.db.models import UtcDateTime

    with pytest.raises(ValueError, match="not a time"):
        UtcDateTime()._cached_result_processor(sqlite.dialect(), None)("not a time")


async def test_naive_times_are_refused(database: Database) -> None:
    with pytest.raises(StatementError, match="naive datetime"):
        async with database.transaction() as session:
            session.add(Tenant(id=uuid.uuid4(), name="naive", created_at=datetime(2026, 1, 1)))


async def test_a_failed_transaction_writes_nothing(database: Database) -> None:
    with pytest.raises(RuntimeError):
        async with database.transaction() as session:
            session.add(Tenant(id=uuid.uuid4(), name="ghost"))
            await session.flush()
            raise RuntimeError("boom")
    async with database.session() as session:
        assert (await session.execute(select(Tenant).where(Tenant.name == "ghost"))).first() is None


async def test_read_session_sees_commits_and_holds_no_transaction_on_postgres(database: Database) -> None:
    """`read_session` reads what is committed; on PostgreSQL each statement is its own
    transaction (no BEGIN/ROLLBACK round trips), where `session` keeps one open."""
    import asyncio

    async with database.transaction() as session:
        session.add(Tenant(name="reader"))
    async with database.read_session() as session:
        assert (await session.execute(select(Tenant.name).where(Tenant.name == "reader"))).scalar_one() == "reader"
    if database.is_sqlite:
        return
    started = text("SELECT xact_start FROM pg_stat_activity WHERE pid = pg_backend_pid()")
    for opener, one_transaction in ((database.read_session, False), (database.session, True)):
        async with opener() as session:
            first = (await session.execute(started)).scalar_one()
            await asyncio.sleep(0.02)  # so that a new transaction has a later start
            second = (await session.execute(started)).scalar_one()
        assert (first == second) is one_transaction
