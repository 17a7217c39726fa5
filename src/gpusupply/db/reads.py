"""The API's hot reads on the driver's own connection: `Reader.run(read)` awaits
`read(fetch)`, where `await fetch(statement, params)` runs a SQLAlchemy Core SELECT and answers
its rows (tuples with the statement's column names as attributes).

Each statement is compiled once per dialect; a read binds its values with SQLAlchemy's own bind
processors, runs the SQL on the driver and converts the columns with SQLAlchemy's own result
processors, so the values are exactly what SQLAlchemy would answer. What is skipped is the
machinery around it, which was most of a read's time (docs/benchmarks.md, issue 19):

- SQLite: the stdlib `sqlite3` on the event loop's thread, one connection in autocommit mode
  (WAL: a read never waits for a writer and sees every commit). Before: a thread hop per read
  (aiosqlite's hop per DB-API call before that), a pool checkout and SQLAlchemy's execution,
  each costing more than the statement.
- PostgreSQL: asyncpg connections of the reader's own (opened when first needed, at most the
  pool size), without the SQLAlchemy pool's pre-ping round trip at each checkout and without
  the greenlet bridge. A connection that fails is dropped and the read tried once more on a new
  one (a read changes nothing), which is what the pre-ping bought: a database restart costs no
  request that can be answered. Driver errors are raised as SQLAlchemy's `DBAPIError`s, so the
  API's 503 handling sees what it sees from the async engine.
- Any other database (SQLite in memory): the async engine.

Only for reads that need no transaction; everything else uses `Database.session()`.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections import namedtuple
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeVar

from sqlalchemy import Engine, Select, create_engine, event
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

T = TypeVar("T")
_MAX_PREPARED = 256
ReadRow = Any  # a named tuple of the statement's columns: by position and by name


class Fetch(Protocol):
    async def __call__(self, statement: Select[Any], params: Mapping[str, Any]) -> list[ReadRow]: ...


Read = Callable[[Fetch], Awaitable[T]]


class _Prepared:
    """A SELECT compiled for one dialect, with the processors of its binds and its columns."""

    def __init__(self, statement: Select[Any], dialect: Dialect):
        self.compiled = compiled = statement.compile(dialect=dialect)
        columns = self.compiled._result_columns  # (name in the result, ..., type), as SQLAlchemy reads them
        names = [column.keyname for column in columns]
        if len(set(names)) != len(names):
            raise ValueError(f"a hot read's columns need distinct names: {names}")
        self.row: Any = namedtuple("Row", names)  # type: ignore[misc]  # names known only here
        self._dialect, self._types = dialect, [column.type for column in columns]
        # Some of PostgreSQL's need the driver's type of each column (`typed`); SQLite's do not.
        self.results: tuple[Any, ...] | None = None if dialect.name == "postgresql" else self.typed([None] * len(columns))
        # Unless an `IN` takes a list of the caller's (`IN :resource_ids`, rendered per call for its
        # length), the SQL and the order of its values are the same at every call: rendered at the
        # first, then bound here (SQLAlchemy's construct_expanded_state took a third of a read).
        self._fixed = not compiled.literal_execute_params and all(
            param.value is not None for param in compiled.post_compile_params  # constant lists (billing statuses)
        )
        self._sql = ""
        self._defaults: Mapping[str, Any] = {}
        self._binds: tuple[tuple[str, Any], ...] | None = None

    def typed(self, driver_types: list[Any]) -> tuple[Any, ...]:
        """The result processors, given the driver's type of each column (as in a cursor's description)."""
        self.results = tuple(
            kind._cached_result_processor(self._dialect, driver_type) for kind, driver_type in zip(self._types, driver_types, strict=True)
        )
        return self.results


    def bind(self, params: Mapping[str, Any]) -> tuple[str, tuple[Any, ...]]:
        """The SQL and its positional values for `params`."""
        if self._fixed and self._binds is not None:
            defaults = self._defaults
            values = []
            for name, process in self._binds:
                value = params[name] if name in params else defaults[name]
                values.append(value if process is None or value is None else process(value))
            return self._sql, tuple(values)
        state = self.compiled.construct_expanded_state(dict(params))
        if self._fixed:  # literal values (LIMIT 1, a JSON path, a constant list) and each value's processor
            self._sql, self._defaults = state.statement, dict(state.parameters)
            every: Mapping[str, Any] = {**self.compiled._bind_processors, **state.processors}
            self._binds = tuple((name, every.get(name)) for name in state.positiontup or ())
            return self.bind(params)
        # The statement's own binds, then those an expanding parameter rendered for this call.
        processors: Mapping[str, Any] = self.compiled._bind_processors
        expanded: Mapping[str, Any] = state.processors
        values = []
        for name, value in zip(state.positiontup or (), state.positional_parameters, strict=True):
            process = expanded.get(name) or processors.get(name)
            values.append(value if process is None or value is None else process(value))
        return state.statement, tuple(values)

    def rows(self, raw: Any) -> list[Any]:
        assert self.results is not None, "typed() first"
        make = self.row._make
        converted = [(index, process) for index, process in enumerate(self.results) if process is not None]
        if not converted:
            return [make(values) for values in raw]
        rows = []
        for values in raw:
            values = list(values)
            for index, process in converted:
                value = values[index]
                if value is not None:
                    values[index] = process(value)
            rows.append(make(values))
        return rows


class _Statements:
    """Prepared statements of one dialect, by statement (they are module constants)."""

    def __init__(self, dialect: Dialect):
        self.dialect = dialect
        self._prepared: dict[int, tuple[Select[Any], _Prepared]] = {}

    def __call__(self, statement: Select[Any]) -> _Prepared:
        found = self._prepared.get(id(statement))
        if found is None or found[0] is not statement:
            if len(self._prepared) >= _MAX_PREPARED:  # statements made per call (tests): do not grow forever
                self._prepared.clear()
            found = (statement, _Prepared(statement, self.dialect))
            self._prepared[id(statement)] = found
        return found[1]


class Reader:
    def __init__(self, engine: AsyncEngine, *, sqlite_pragmas: Callable[[Any, Any], None] | None = None, pool_size: int = 10):
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        url = engine.url
        self._backend: _SqliteReads | _PostgresReads | None = None
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            self._backend = _SqliteReads(url, sqlite_pragmas)
        elif url.get_backend_name() == "postgresql" and url.get_driver_name() == "asyncpg":
            self._backend = _PostgresReads(engine, pool_size)

    async def run(self, read: Read[T]) -> T:
        if self._backend is not None:
            return await self._backend.run(read)
        async with self._engine.connect() as connection:

            async def fetch(statement: Select[Any], params: Mapping[str, Any]) -> list[Any]:
                return list((await connection.execute(statement, dict(params))).all())

            return await read(fetch)

    async def close(self) -> None:
        if self._backend is not None:
            await self._backend.close()


class _SqliteReads:
    def __init__(self, url: Any, pragmas: Callable[[Any, Any], None] | None):
        # A synchronous engine on the same file only to make the connection as SQLAlchemy makes
        # them (its pysqlite setup, our pragmas); the connection is then used directly.
        self._engine: Engine = create_engine(
            make_url(url).set(drivername="sqlite+pysqlite"), pool_size=1, max_overflow=0,
            connect_args={"check_same_thread": False},  # made on the loop, closed from dispose's thread
        )
        if pragmas is not None:
            event.listen(self._engine, "connect", pragmas)
        self._statements = _Statements(self._engine.dialect)
        self._pooled: Any = None
        self._connection: sqlite3.Connection | None = None

    def _driver(self) -> sqlite3.Connection:
        if self._connection is None:
            self._pooled = self._engine.raw_connection()
            connection = self._pooled.driver_connection
            connection.isolation_level = None  # autocommit: no read transaction outlives a statement
            self._connection = connection
        return self._connection

    async def run(self, read: Read[T]) -> T:
        return await read(self._fetch)

    async def _fetch(self, statement: Select[Any], params: Mapping[str, Any]) -> list[Any]:
        prepared = self._statements(statement)
        sql, values = prepared.bind(params)
        try:
            raw = self._driver().execute(sql, values).fetchall()
        except sqlite3.Error as exc:
            raise DBAPIError.instance(sql, values, exc, sqlite3.Error) from exc
        return prepared.rows(raw)

    async def close(self) -> None:
        if self._pooled is not None:
            self._pooled.close()
            self._pooled = self._connection = None
        self._engine.dispose()


class _PostgresReads:
    def __init__(self, engine: AsyncEngine, size: int):
        import asyncpg

        self._asyncpg = asyncpg
        dialect = engine.dialect
        _, options = dialect.create_connect_args(engine.url)
        for own in ("prepared_statement_cache_size", "prepared_statement_name_func", "async_fallback"):
            options.pop(own, None)
        self._options = options
        self._statements = _Statements(dialect)
        self._idle: list[Any] = []
        self._slots = asyncio.Semaphore(max(1, size))
        self._closed = False

    async def _connect(self) -> Any:
        try:
            connection = await self._asyncpg.connect(**self._options)
        except self._asyncpg.PostgresError as exc:  # e.g. "the database system is shutting down"
            raise DBAPIError(None, None, exc) from exc
        except (self._asyncpg.InterfaceError, ConnectionError) as exc:
            raise OperationalError(None, None, exc) from exc
        try:
            # JSON as SQLAlchemy's asyncpg dialect decodes it (its result processors expect it so).
            await connection.set_type_codec("json", encoder=str.encode, decoder=lambda b: json.loads(b.decode()),
                                            schema="pg_catalog", format="binary")
            await connection.set_type_codec("jsonb", encoder=lambda s: b"\x01" + s.encode(),
                                            decoder=lambda b: json.loads(b[1:].decode()), schema="pg_catalog", format="binary")
        except BaseException:
            connection.terminate()
            raise
        return connection

    async def run(self, read: Read[T]) -> T:
        async with self._slots:
            for attempt in (1, 2):
                connection = self._idle.pop() if self._idle else None
                fresh = connection is None
                try:
                    if connection is None:
                        connection = await self._connect()
                    result = await read(self._fetcher(connection))
                except _ConnectionLost as lost:
                    self._drop(connection)
                    if attempt == 2 or fresh:  # a new connection failed too: the database is down
                        raise lost.error from lost.error.orig
                    continue
                except BaseException:
                    self._drop(connection)  # cancelled or failed mid-statement: its state is unknown
                    raise
                if self._closed:
                    self._drop(connection)
                else:
                    self._idle.append(connection)
                return result
        raise AssertionError("unreachable")

    def _fetcher(self, connection: Any) -> Fetch:
        async def fetch(statement: Select[Any], params: Mapping[str, Any]) -> list[Any]:
            prepared = self._statements(statement)
            sql, values = prepared.bind(params)
            try:
                if prepared.results is None:  # the columns' types, once: what asyncpg's description holds
                    described = await connection.prepare(sql)
                    prepared.typed([attribute.type.oid for attribute in described.get_attributes()])
                raw = await connection.fetch(sql, *values)
            except self._asyncpg.PostgresError as exc:
                error = DBAPIError(sql, values, exc)
                if (exc.sqlstate or "")[:2] == "08" or (exc.sqlstate or "").startswith("57P0"):  # cut, or shut down
                    raise _ConnectionLost(error) from exc
                raise error from exc
            except self._asyncpg.DataError as exc:  # a value the driver could not send: the caller's
                raise DataError(sql, values, exc) from exc
            except (self._asyncpg.InterfaceError, self._asyncpg.InternalClientError, OSError, ConnectionError) as exc:
                # closed, or its protocol left mid-operation by a cut ("cannot switch to state ...")
                raise _ConnectionLost(OperationalError(sql, values, exc)) from exc
            return prepared.rows(raw)

        return fetch

    def _drop(self, connection: Any) -> None:
        if connection is not None:
            connection.terminate()

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            try:
                await asyncio.wait_for(connection.close(), 2)
            except Exception:  # closing a dead connection: nothing to keep
                connection.terminate()


class _ConnectionLost(Exception):
    """A read's connection failed (not its statement): the read may be tried on another."""

    def __init__(self, error: DBAPIError):
        super().__init__(str(error))
        self.error = error
