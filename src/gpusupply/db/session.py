"""Database engine, sessions and migrations, for SQLite (embedded) and PostgreSQL (scaled)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

from sqlalchemy import CursorResult, Result, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from gpusupply.db.reads import Read, Reader

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Any constant works; every process that migrates takes the same PostgreSQL advisory lock.
MIGRATION_LOCK_ID = 0x6770757375707031
T = TypeVar("T")


def rows_matched(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE matched (the guard of every compare-and-set write).
    `AsyncSession.execute` is typed as returning a `Result`; for a DML statement it is a
    `CursorResult`, which carries the count."""
    return cast(CursorResult[Any], result).rowcount


def _sqlite_pragmas(busy_timeout_ms: int) -> Any:
    def apply(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        # A write waits this long for another connection's lock, then fails "database is locked"
        # (the API answers 503 with Retry-After, the engine retries) instead of hanging the request.
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        cursor.close()

    return apply


class Database:
    """Owns the engine and the session factory for one process."""

    def __init__(
        self, url: str, *, pool_size: int = 10, max_overflow: int = 20, busy_timeout: float = 5.0, echo: bool = False
    ):
        self.url = url
        parsed = make_url(url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        kwargs: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        else:
            kwargs.update(pool_size=pool_size, max_overflow=max_overflow, pool_pre_ping=True)
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        pragmas = _sqlite_pragmas(round(busy_timeout * 1000)) if self.is_sqlite else None
        if pragmas is not None:
            event.listen(self.engine.sync_engine, "connect", pragmas)
        # expire_on_commit=False: rows stay readable after commit; autoflush=False: no surprise writes.
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False, autoflush=False)
        # Reads that need no transaction (PostgreSQL): no BEGIN and ROLLBACK round trips around them.
        readers = self.engine if self.is_sqlite else self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self.read_sessions = async_sessionmaker(readers, expire_on_commit=False, autoflush=False)
        self._reader = Reader(self.engine, sqlite_pragmas=pragmas, pool_size=pool_size)
        # SQLite has one writer: the engine serializes its claims through this lock (see engine/leases.py).
        self.claim_lock = asyncio.Lock()
        # This installation's id once read (db/installation.py).
        self.installation_id: str | None = None

    @classmethod
    def from_settings(cls, settings: Any) -> Database:
        return cls(
            settings.effective_database_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            busy_timeout=settings.sqlite_busy_timeout_seconds,
        )

    @property
    def display_url(self) -> str:
        """The URL without its password, for logs and the start banner."""
        return make_url(self.url).render_as_string(hide_password=True)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as session:
            yield session

    @asynccontextmanager
    async def read_session(self) -> AsyncIterator[AsyncSession]:
        """A session for reads only: each statement sees what is committed, without a transaction
        around them (on PostgreSQL two round trips fewer; on SQLite the same as `session`)."""
        async with self.read_sessions() as session:
            yield session

    async def read(self, read: Read[T]) -> T:
        """`await read(fetch)` on the driver's own connection (db/reads.py): the API's hot reads."""
        return await self._reader.run(read)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as session, session.begin():
            yield session

    async def dispose(self) -> None:
        await self._reader.close()
        await self.engine.dispose()

    async def migrate(self) -> None:
        """Bring the schema to head. On PostgreSQL an advisory lock serializes replicas starting together."""
        async with self.engine.connect() as conn:
            if not self.is_sqlite:
                await conn.execute(text("SELECT pg_advisory_lock(:id)"), {"id": MIGRATION_LOCK_ID})
            try:
                await conn.run_sync(_upgrade_to_head)
                await conn.commit()
            finally:
                if not self.is_sqlite:
                    await conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": MIGRATION_LOCK_ID})
                    await conn.commit()


def alembic_config(connection: Any = None) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _upgrade_to_head(sync_connection: Any) -> None:
    from alembic import command

    command.upgrade(alembic_config(sync_connection), "head")
