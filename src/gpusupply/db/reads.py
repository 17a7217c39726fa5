"""One read, one hop: `Reader.run(read)` runs a synchronous SQLAlchemy Core function against a
connection that sees what is committed, and returns its result.

- SQLite: the function runs in one dedicated thread on the stdlib `sqlite3` driver (a
  synchronous engine on the same file, WAL mode). Through aiosqlite every DB-API call (execute,
  fetch, close, rollback) is handed to the connection's thread and back, about ten hops per
  read; here the whole read is one hop (docs/benchmarks.md has the figures).
- PostgreSQL: the function runs through the async engine (`run_sync`) on an AUTOCOMMIT
  connection: no BEGIN and ROLLBACK round trips around a read.

Only for hot reads that need no transaction; everything else uses `Database.session()`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

T = TypeVar("T")
Read = Callable[[Connection], T]


class Reader:
    def __init__(self, engine: AsyncEngine, *, sqlite_pragmas: Callable[[Any, Any], None] | None = None):
        self._async_engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._sync_engine: Engine | None = None
        self._thread: ThreadPoolExecutor | None = None
        url = engine.url
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            # One connection, reused by the one thread that reads (a pool per thread is not needed).
            self._sync_engine = create_engine(make_url(url).set(drivername="sqlite+pysqlite"), pool_size=1, max_overflow=0)
            if sqlite_pragmas is not None:
                event.listen(self._sync_engine, "connect", sqlite_pragmas)
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-reads")

    async def run(self, read: Read[T]) -> T:
        if self._sync_engine is None:
            async with self._async_engine.connect() as connection:
                return await connection.run_sync(read)
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._run_sync, read)

    def _run_sync(self, read: Read[T]) -> T:
        assert self._sync_engine is not None
        with self._sync_engine.connect() as connection:
            return read(connection)

    def close(self) -> None:
        if self._thread is not None:
            assert self._sync_engine is not None  # made with the thread
            self._thread.submit(self._sync_engine.dispose).result()
            self._thread.shutdown(wait=True)
