"""Which database errors mean "the database is unavailable, retry shortly" and which are our bug or
the caller's bad data. The API answers the first with 503 + Retry-After, the engine retries them.

The drivers do not agree on types: SQLAlchemy's asyncpg dialect turns most server errors into a
plain `DBAPIError` (e.g. "the database system is shutting down", SQLSTATE 57P03), a dropped socket
into `InterfaceError`, a refused connection into `OSError`; SQLite's "database is locked" after
the busy timeout is an `OperationalError`. So: the SQLSTATE class when the server sent one, else
the type.
"""

from __future__ import annotations

from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    ProgrammingError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout

# SQLSTATE classes of a database that cannot serve now: connection exception, transaction
# rollback (serialization failure, deadlock: retry), insufficient resources (too many
# connections, disk full), operator intervention (shutting down, cannot connect now, query
# cancelled), system error.
UNAVAILABLE_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "57", "58"})
UNAVAILABLE_SQLSTATES = frozenset({"55P03", "55006"})  # lock not available, object in use
DATA_SQLSTATE_CLASS = "22"  # data exception: a value out of range, a bad encoding...


def sqlstate(exc: BaseException) -> str | None:
    """The server's SQLSTATE for a wrapped driver error, when it sent one."""
    seen: set[int] = set()
    current: BaseException | None = exc.orig if isinstance(exc, DBAPIError) else exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        code = getattr(current, "sqlstate", None) or getattr(current, "pgcode", None)
        if isinstance(code, str) and len(code) == 5:
            return code
        current = current.__cause__
    return None


def is_unavailable(exc: BaseException) -> bool:
    """True when the error says the database cannot answer now (down, restarting, locked, out of
    connections), not that the statement or its data is wrong."""
    if isinstance(exc, (PoolTimeout, OSError)):  # no free connection; cannot connect at all
        return True
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    code = sqlstate(exc)
    if code is not None:
        return code[:2] in UNAVAILABLE_SQLSTATE_CLASSES or code in UNAVAILABLE_SQLSTATES
    if isinstance(exc, (IntegrityError, DataError, ProgrammingError)):
        return False
    if isinstance(exc, (OperationalError, InterfaceError)):
        return True  # SQLite busy/locked/unable to open, a closed asyncpg connection
    return isinstance(exc.orig, OSError) or isinstance(getattr(exc.orig, "__cause__", None), OSError)


def is_bad_data(exc: BaseException) -> bool:
    """True when the database refused a value we passed through (the caller's input)."""
    if isinstance(exc, DataError):
        return True
    code = sqlstate(exc)
    return code is not None and code[:2] == DATA_SQLSTATE_CLASS
