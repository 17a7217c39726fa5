"""Vendor rate limits shared through the database: every process calling a vendor with the same key
books its slots in the same `rate_buckets` row, so N workers together stay under the vendor's limit.

One reservation is one statement, atomic on its own (no transaction around it on PostgreSQL): an
upsert that advances the bucket's GCRA theoretical arrival time (TAT) and returns it. The
arithmetic is `core.ratelimit.Gcra.reserve`'s:

    at      = max(now, not_before)
    new_tat = max(tat, at) + interval
    send_at = max(at, new_tat - interval - tolerance)      (tolerance = (burst - 1) * interval)

Bookings use the database's clock, so workers on several machines need not agree on the time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from sqlalchemy import text

from gpusupply.core.ratelimit import Bucket
from gpusupply.db.session import Database

log = logging.getLogger(__name__)

# The clock is read where the row is locked (SET and RETURNING run after the row lock is taken;
# `clock_timestamp()`, not `now()`, which is the statement's start and would book a bucket that
# waited for the lock in the past). RETURNING reads the clock once more, a few microseconds later:
# the wait computed from it is that much longer, never shorter.
_PG_NOW = "EXTRACT(EPOCH FROM clock_timestamp())::float8"
_BOOK_POSTGRES = text(
    f"""
    INSERT INTO rate_buckets AS b (vendor, key_hash, route, tat)
    VALUES (:vendor, :key_hash, :route, GREATEST({_PG_NOW}, :not_before) + :interval)
    ON CONFLICT (vendor, key_hash, route) DO UPDATE
    SET tat = GREATEST(b.tat, GREATEST({_PG_NOW}, :not_before)) + :interval
    RETURNING tat, {_PG_NOW} AS now
    """
)
# SQLite's 'now' is read once per statement, after its write lock is taken (millisecond precision).
_SQLITE_NOW = "((julianday('now') - 2440587.5) * 86400.0)"
_BOOK_SQLITE = text(
    f"""
    INSERT INTO rate_buckets AS b (vendor, key_hash, route, tat)
    VALUES (:vendor, :key_hash, :route, max({_SQLITE_NOW}, :not_before) + :interval)
    ON CONFLICT (vendor, key_hash, route) DO UPDATE
    SET tat = max(b.tat, max({_SQLITE_NOW}, :not_before)) + :interval
    RETURNING tat, {_SQLITE_NOW} AS now
    """
)


class DatabaseBuckets:
    """`vendors.http.SharedBuckets` in the process's database."""

    def __init__(self, db: Database):
        self.db = db

    async def reserve(self, vendor: str, key_id: str, buckets: Sequence[Bucket]) -> float:
        now: float | None = None
        send_at = 0.0
        for bucket in buckets:
            interval = 1.0 / bucket.rate
            params = {
                "vendor": vendor,
                "key_hash": key_id,
                "route": bucket.route,
                "interval": interval,
                "not_before": send_at,  # a later bucket is booked at the earlier one's slot
            }
            tat, now = await self._book(params)
            tolerance = max(bucket.burst - 1.0, 0.0) * interval
            send_at = max(now, send_at, tat - interval - tolerance)
        # Relative to the clock at the last booking: the time the bookings took is already spent.
        return 0.0 if now is None else max(0.0, send_at - now)

    async def _book(self, params: dict[str, object]) -> tuple[float, float]:
        """One booking, finished even when the caller is cancelled (a vendor call that timed out or
        was abandoned): interrupted inside its statement or commit, a SQLite booking kept the write
        lock, and every other writer failed with "database is locked" until the connection closed.
        The slot it books is then simply unused."""
        booking = asyncio.ensure_future(self._book_now(params))
        try:
            return await asyncio.shield(booking)
        except asyncio.CancelledError:
            booking.add_done_callback(_outcome_unneeded)
            raise

    async def _book_now(self, params: dict[str, object]) -> tuple[float, float]:
        if self.db.is_sqlite:
            # Its own short transaction: the write lock is held for one statement.
            async with self.db.transaction() as session:
                tat, now = (await session.execute(_BOOK_SQLITE, params)).one()
            return tat, now
        # PostgreSQL: one autocommit statement, no BEGIN/COMMIT round trips.
        async with self.db.read_session() as session:
            tat, now = (await session.execute(_BOOK_POSTGRES, params)).one()
        return tat, now


def _outcome_unneeded(booking: asyncio.Future[tuple[float, float]]) -> None:
    if not booking.cancelled() and booking.exception() is not None:
        log.debug("an abandoned rate-limit booking failed", exc_info=booking.exception())
