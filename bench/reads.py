"""Benchmark 6: the API's polled read paths against `/healthz` of the same server, on SQLite and
on PostgreSQL (a throwaway server from the machine's binaries, as the tests start it):

- `GET /resources/{id}` of a running resource (a random one per request);
- `GET /offers/{offer_id}/status` of a procured offer (a random one per request);
- `GET /resources`, the first page of 100 with every seeded resource in the caller's tenant.

Resources are seeded directly in the database for the server's first tenant: the offer row
(procured), the procurement, the resource (running, with its offer snapshot and status history,
so the answer's cost so far is computed), synced just now; on PostgreSQL then VACUUM ANALYZE,
as autovacuum does after a bulk insert (SQLite keeps no statistics unless told to, so it gets
none). The server runs without the engine, so the figures are the API's read paths alone. Every resource is marked synced just before each
timed run (as the engine's 30 s refresh keeps running ones); the run checks the answers first,
that no read went to the vendor (the 30 s staleness rule) and that every answer was a 200.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

from sqlalchemy import func, select, text, update
from tests.conftest import SSH_KEY, find_pg_bindir, postgres_server

from bench.common import Load, serve, wrk
from bench.search import build_offers
from bench.table import Row
from gpusupply.core.offers import offer_to_dict
from gpusupply.core.states import ResourceStatus
from gpusupply.db.models import OfferRow, Procurement, Resource, utcnow
from gpusupply.db.session import Database
from gpusupply.domain.events import change_status
from gpusupply.services.keys import authenticate
from gpusupply.services.procurement import STATUS_IN_PROGRESS

# The goals (ratios of throughput against /healthz, same server, same run).
READ_GOAL = {"sqlite": 0.3, "postgres": 0.35}
LIST_GOAL = 0.2
P99_GOAL = 4.0  # a route's p99 at most this many times /healthz's
PAGE = 100
_BATCH = 1_000  # resources per seeding transaction


@dataclass
class Seeded:
    resource_ids: list[UUID]
    offer_ids: list[UUID]


async def seed_resources(database_url: str, token: str, count: int) -> Seeded:
    """`count` running resources of the token's tenant, as procurement and the engine leave them."""
    db = Database(database_url)
    try:
        principal = await authenticate(db, f"Bearer {token}")
        offers = build_offers(max(count, 200))[:count]
        now = utcnow()
        started = now - timedelta(hours=2)
        seeded = Seeded([], [])
        for first in range(0, count, _BATCH):
            async with db.transaction() as session:
                for number, offer in enumerate(offers[first : first + _BATCH], start=first):
                    offer_row = OfferRow(
                        id=uuid4(), snapshot_id=uuid4(), vendor=offer.vendor, vendor_offer_id=offer.vendor_offer_id,
                        gpu_type=offer.gpu_type, gpu_family=offer.gpu_family, gpu_count=offer.gpu_count,
                        data=offer_to_dict(offer), fetched_at=started, expires_at=started + timedelta(minutes=10),
                        status="procured", procured_at=started, procured_by=principal.tenant_id,
                    )
                    procurement = Procurement(
                        id=uuid4(), tenant_id=principal.tenant_id, offer_id=offer_row.id, status=STATUS_IN_PROGRESS,
                        created_at=started, procured_at=started,
                    )
                    resource = Resource(
                        id=uuid4(), tenant_id=principal.tenant_id, procurement_id=procurement.id, offer_id=offer_row.id,
                        name=f"bench-{number}", status=ResourceStatus.PENDING.value, vendor=offer.vendor,
                        vendor_region=offer.vendor_region, region=offer.region, gpu_type=offer.gpu_type,
                        gpu_family=offer.gpu_family, gpu_count=offer.gpu_count, price_per_hour=offer.total_price_per_hour,
                        offer_snapshot=offer_to_dict(offer), ssh_public_key=SSH_KEY,
                        vendor_instance_id=str(90_000_000 + number), external_ip="203.0.113.7", ssh_port=22000 + number % 1000,
                        attempts=[], retry_count=0, delete_alerted=False,
                        created_at=started + timedelta(seconds=number % 3600), updated_at=now,
                        next_attempt_at=now + timedelta(days=1), running_since=started + timedelta(minutes=2), last_synced_at=now,
                    )
                    session.add_all([offer_row, procurement, resource])
                    change_status(session, resource, ResourceStatus.PROVISIONING, at=started + timedelta(seconds=5))
                    change_status(session, resource, ResourceStatus.RUNNING, at=started + timedelta(minutes=2))
                    seeded.resource_ids.append(resource.id)
                    seeded.offer_ids.append(offer_row.id)
        if not db.is_sqlite:  # what autovacuum does after a bulk insert: statistics, visibility map
            async with db.engine.connect() as connection:
                await connection.execution_options(isolation_level="AUTOCOMMIT")
                await connection.execute(text("VACUUM ANALYZE"))
        return seeded
    finally:
        await db.dispose()


async def mark_synced(database_url: str) -> datetime:
    """Every resource synced just now, as the engine's 30 s refresh keeps running ones (seeding
    10,000 and the runs after it take longer than 30 s). Returns a moment after the mark."""
    db = Database(database_url)
    try:
        async with db.transaction() as session:
            await session.execute(update(Resource).values(last_synced_at=utcnow()))
        return utcnow()
    finally:
        await db.dispose()


async def synced_since(database_url: str, moment: datetime) -> int:
    """How many resources were re-read from the vendor since `moment` (their sync time moved)."""
    db = Database(database_url)
    try:
        async with db.session() as session:
            moved = select(func.count()).select_from(Resource).where(Resource.last_synced_at > moment)
            return int((await session.execute(moved)).scalar_one())
    finally:
        await db.dispose()


def timed(url: str, database_url: str, **load: object) -> Load:
    """wrk on the server (`load` as `wrk` takes it) right after marking every resource synced;
    fails if any read of the run went to the vendor (the 30 s rule says none should)."""
    marked = asyncio.run(mark_synced(database_url))
    measured = wrk(url, **load)  # type: ignore[arg-type]
    refreshed = asyncio.run(synced_since(database_url, marked))
    if refreshed:
        raise AssertionError(f"{refreshed} reads went to the vendor within 30 s of a sync")
    return measured


@contextlib.contextmanager
def database(kind: str) -> Iterator[str]:
    if kind == "sqlite":
        directory = Path(tempfile.mkdtemp(prefix="gpusupply-bench-db-"))
        try:
            yield f"sqlite+aiosqlite:///{directory / 'bench.db'}"
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        return
    with postgres_server() as server:
        yield server.url(server.create_database())


def check_answers(served: object, seeded: Seeded, count: int) -> None:
    """The routes answer what the seed says, before anything is timed."""
    with served.client() as client:  # type: ignore[attr-defined]
        detail = client.get(f"/resources/{seeded.resource_ids[0]}").json()
        assert detail["status"] == "running" and detail["cost_so_far"] > 0, detail
        status = client.get(f"/offers/{seeded.offer_ids[0]}/status").json()
        assert status["procurement_status"] == "ready" and len(status["instances"]) == 1, status
        listing = client.get("/resources").json()
        assert listing["total_count"] == count and len(listing["resources"]) == min(PAGE, count), listing["total_count"]


def _route_rows(kind: str, label: str, load: Load, trivial: Load, goal: float, note: str) -> list[Row]:
    name = f"6 {label} ({kind})"
    ratio = load.requests_per_second / trivial.requests_per_second
    return [
        Row(name, "req/s", load.requests_per_second, trivial.requests_per_second, "/healthz (same server)",
            f"ratio >= {goal}", met=ratio >= goal, note=f"{note}; p50 {load.p50_ms:.1f} ms vs {trivial.p50_ms:.1f} ms"),
        Row(name, "p99 ms", load.p99_ms, trivial.p99_ms, "/healthz (same server)",
            f"<= {P99_GOAL:g}x healthz p99", met=load.p99_ms <= P99_GOAL * trivial.p99_ms),
    ]


def run(quick: bool = False) -> list[Row]:
    seconds = 1 if quick else 8
    count = 50 if quick else 10_000
    rows = []
    kinds = ["sqlite"] + (["postgres"] if find_pg_bindir() else [])
    for kind in kinds:
        with database(kind) as url, serve(engine=False, database_url=url) as served:
            seeded = asyncio.run(seed_resources(url, served.token, count))
            asyncio.run(mark_synced(url))
            check_answers(served, seeded, count)
            reads = [f"/resources/{i}" for i in seeded.resource_ids]
            statuses = [f"/offers/{i}/status" for i in seeded.offer_ids]
            if not quick:  # the server's first seconds under load have a slow tail: not what is compared
                wrk(served.url + "/healthz", seconds=2)
                timed(served.url, url, token=served.token, seconds=2, paths=reads)
            trivial = wrk(served.url + "/healthz", seconds=seconds)
            read = timed(served.url, url, token=served.token, seconds=seconds, paths=reads)
            status = timed(served.url, url, token=served.token, seconds=seconds, paths=statuses)
            # A slow listing is measured, not failed: wrk's 2 s timeout would count it as an error.
            listing = timed(served.url + "/resources", url, token=served.token, seconds=seconds, timeout=30)
        errors = {"reads": read.errors, "statuses": status.errors, "listing": listing.errors, "healthz": trivial.errors}
        if any(errors.values()):
            raise AssertionError(f"{kind}: errors under load {errors}")
        rows += _route_rows(kind, "GET /resources/{id}", read, trivial, READ_GOAL[kind],
                            f"{count:,} running resources, a random one per request")
        rows += _route_rows(kind, "GET /offers/{id}/status", status, trivial, READ_GOAL[kind],
                            f"{count:,} procured offers, a random one per request")
        rows += _route_rows(kind, "GET /resources", listing, trivial, LIST_GOAL,
                            f"first page of {PAGE} of {count:,} in the tenant")
    return rows
