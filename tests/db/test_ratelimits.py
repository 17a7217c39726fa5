"""Vendor rate limits shared through the database (db/ratelimits.py), on both backends: the GCRA
booking, what is stored (never the key), and several independent adapters, each with its own
VendorHttp but one database, calling one sandbox at its real rate limit without a single 429."""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

from sqlalchemy import select, text

from gpusupply.core.errors import RateLimited
from gpusupply.core.ratelimit import KEY_ROUTE, Bucket
from gpusupply.db.models import RateBucket
from gpusupply.db.ratelimits import DatabaseBuckets
from gpusupply.db.session import Database
from gpusupply.sandbox.common import SandboxConfig
from gpusupply.vendors.fal import FalAdapter
from gpusupply.vendors.http import RetryPolicy, VendorHttp
from gpusupply.vendors.registry import SANDBOX_KEY

SLOW = Bucket("create", rate=0.01, burst=2.0)  # one slot every 100 s: the test never reaches the next


async def test_bookings_follow_the_gcra_and_share_one_row(database: Database) -> None:
    buckets = DatabaseBuckets(database)
    waits = [await buckets.reserve("vast", "k1", [SLOW]) for _ in range(4)]
    # Burst of two, then one slot every 100 s (less the moment the bookings themselves took).
    assert waits[0] == 0.0 and waits[1] == 0.0
    assert 99.0 < waits[2] <= 100.0 and 199.0 < waits[3] <= 200.0
    # Another key, and another route of the same key, have buckets of their own.
    assert await buckets.reserve("vast", "k2", [SLOW]) == 0.0
    assert await buckets.reserve("vast", "k1", [Bucket("list", 0.01, 1.0)]) == 0.0
    async with database.session() as session:
        rows = (await session.execute(select(RateBucket.key_hash, RateBucket.route))).all()
    assert sorted(rows) == [("k1", "create"), ("k1", "list"), ("k2", "create")]


async def test_a_key_bucket_is_booked_at_the_route_slot(database: Database) -> None:
    buckets = DatabaseBuckets(database)
    route, key = Bucket("create", 0.01, 1.0), Bucket(KEY_ROUTE, 0.005, 1.0)
    assert await buckets.reserve("fal", "k", [route, key]) == 0.0
    # The route's next slot is at +100 s; the key's at +200 s: the later one decides.
    assert 199.0 < await buckets.reserve("fal", "k", [route, key]) <= 200.0


async def test_the_key_never_reaches_the_database(database: Database) -> None:
    secret = "fal-secret-key-0123456789"
    adapter = FalAdapter("http://127.0.0.1:9", secret)
    http: VendorHttp = adapter._http
    assert secret not in http.key_id and len(http.key_id) == 32
    await DatabaseBuckets(database).reserve("fal", http.key_id, http.buckets("list"))
    async with database.session() as session:
        dump = str((await session.execute(text("SELECT * FROM rate_buckets"))).all())
    assert secret not in dump and http.key_id in dump
    await adapter.aclose()


def _fal_adapters(vendor_set: Any, count: int) -> list[FalAdapter]:
    retry = RetryPolicy(attempts=8, base_delay=0.05, max_delay=0.5)
    return [FalAdapter(vendor_set.urls["fal"], SANDBOX_KEY, retry=retry) for _ in range(count)]


async def _hammer(adapters: list[FalAdapter], calls_each: int) -> int:
    async def run(adapter: FalAdapter) -> int:
        done = 0
        for _ in range(calls_each):
            await adapter.list_instances()  # one page: the account has no instances
            done += 1
        return done

    return sum(await asyncio.gather(*(run(adapter) for adapter in adapters)))


_booked_now: contextvars.ContextVar[float] = contextvars.ContextVar("booked_now")


class RecordingBuckets(DatabaseBuckets):
    """The database's buckets, noting when (on the database's clock) each booked call may leave."""

    def __init__(self, db: Database):
        super().__init__(db)
        self.send_times: list[float] = []

    async def _book(self, params: dict[str, object]) -> tuple[float, float]:
        tat, now = await super()._book(params)
        _booked_now.set(now)  # the caller's own task reads it back in reserve
        return tat, now

    async def reserve(self, vendor: str, key_id: str, buckets: Any) -> float:
        wait = await super().reserve(vendor, key_id, buckets)
        self.send_times.append(_booked_now.get() + wait)
        return wait


async def test_independent_adapters_sharing_the_database_get_no_429(database: Database, vendor_set: Any) -> None:
    """Four adapters, each pacing at fal's whole key rate on its own, together four times over
    the limit; through the database's buckets they stay under it. Judged as arithmetic: the 40
    times the database booked, fed to the sandbox's own gate, are all within fal's limit. (The
    sandbox's 429 count would also depend on the machine's load: a starved process handles
    calls that left spaced out together.)"""
    sandbox = vendor_set.sandboxes["fal"]
    adapters = _fal_adapters(vendor_set, 4)
    shared = RecordingBuckets(database)
    for adapter in adapters:
        adapter._http.share_buckets(shared)
    try:
        done = await _hammer(adapters, 10)
    finally:
        for adapter in adapters:
            await adapter.aclose()
    assert done == 40
    booked = sorted(shared.send_times)
    assert len(booked) >= 40  # a call retried after a 429 books again
    judge = type(sandbox)(SandboxConfig(offers=1, rate_limits=True))
    assert [t for t in booked if judge.check_rate("account", "list", now=t) is not None] == []
    # The same check sees a schedule that ignores the limit: all 40 at the first instant.
    unpaced = type(sandbox)(SandboxConfig(offers=1, rate_limits=True))
    assert sum(unpaced.check_rate("account", "list", now=booked[0]) is not None for _ in booked) > 0


async def test_the_same_adapters_pacing_alone_are_rate_limited(vendor_set: Any) -> None:
    """The control: without the shared buckets, independent pacers overrun the key's limit. The
    sandbox's limit is lowered to one call per second (burst 1) so that this holds on any machine:
    twelve calls leave at once (within each pacer's own burst)."""
    sandbox = vendor_set.sandboxes["fal"]
    sandbox.rate_limits = {bucket: (1.0, 1.0) for bucket in sandbox.rate_limits}
    adapters = _fal_adapters(vendor_set, 4)

    async def calls(adapter: FalAdapter) -> tuple[int, int]:
        done = refused = 0
        for _ in range(3):
            try:
                await adapter.list_instances()
                done += 1
            except RateLimited:
                refused += 1  # retries exhausted: still the vendor's 429s
        return done, refused

    try:
        results = await asyncio.gather(*(calls(adapter) for adapter in adapters))
    finally:
        for adapter in adapters:
            await adapter.aclose()
    assert sum(d + r for d, r in results) == 12
    assert sandbox.rate_limited > 0


async def test_no_database_no_vendor_call(vendor_set: Any, tmp_path: Any) -> None:
    """A process that cannot book a slot does not call the vendor: the database's error, no request."""
    sandbox = vendor_set.sandboxes["fal"]
    broken = Database(f"sqlite+aiosqlite:///{tmp_path}/never-migrated.db")  # no rate_buckets table
    (adapter,) = _fal_adapters(vendor_set, 1)
    adapter._http.share_buckets(DatabaseBuckets(broken))
    try:
        try:
            await adapter.list_instances()
        except Exception as exc:
            from gpusupply.db.errors import is_unavailable

            assert is_unavailable(exc), exc
        else:
            raise AssertionError("the call went out without a booked slot")
    finally:
        await adapter.aclose()
        await broken.dispose()
    assert sandbox.requests == 0


async def test_a_cancelled_booking_never_leaves_the_database_locked(tmp_path: Any) -> None:
    """A vendor call cancelled while it books its slot (a catalog read timing out, a shutdown): the
    booking still ends, and the next writer gets the SQLite write lock at once. Cancelled at every
    point of the booking in turn (after 0, 1, 2, ... loop turns)."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'buckets.db'}", busy_timeout=0.5)
    await db.migrate()
    buckets = DatabaseBuckets(db)
    unlimited = [Bucket("r", rate=1e9, burst=1e9), Bucket(KEY_ROUTE, rate=1e9, burst=1e9)]
    try:
        await buckets.reserve("v", "k", unlimited)
        for turns in range(60):
            booking = asyncio.create_task(buckets.reserve("v", "k", unlimited))
            for _ in range(turns):
                await asyncio.sleep(0)
            booking.cancel()
            await asyncio.gather(booking, return_exceptions=True)
            async with db.transaction() as session:  # "database is locked" after 0.5 s if the lock leaked
                await session.execute(text("UPDATE rate_buckets SET tat = tat"))
    finally:
        await db.dispose()
