"""Benchmark 6: `GET /resources/{id}` throughput against `/healthz` of the same server, on SQLite
and on PostgreSQL (a throwaway server from the machine's binaries, as the tests start it).

Resources are seeded directly in the database: running, each with its offer snapshot and status
history (so the answer's cost so far is computed), synced just now. wrk reads a random one per
request. The server runs without the engine, so the figures are the API's read path alone; the
run checks afterwards that no read went to the vendor (the 30 s staleness rule) and that every
answer was a 200.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from uuid import UUID, uuid4

from sqlalchemy import func, select
from tests.conftest import SSH_KEY, find_pg_bindir, postgres_server

from bench.common import serve, wrk
from bench.search import build_offers
from bench.table import Row
from gpusupply.core.states import ResourceStatus
from gpusupply.db.models import Procurement, Resource, utcnow
from gpusupply.db.session import Database
from gpusupply.services.catalog import offer_to_dict
from gpusupply.services.events import change_status
from gpusupply.services.keys import authenticate
from gpusupply.services.procurement import STATUS_IN_PROGRESS


async def seed_resources(database_url: str, token: str, count: int) -> list[UUID]:
    """`count` running resources of the token's tenant, as procurement and the engine leave them."""
    db = Database(database_url)
    try:
        principal = await authenticate(db, f"Bearer {token}")
        offers = build_offers(max(count, 200))[:count]
        now = utcnow()
        started = now - timedelta(hours=2)
        ids = []
        async with db.transaction() as session:
            for number, offer in enumerate(offers):
                procurement = Procurement(
                    id=uuid4(), tenant_id=principal.tenant_id, offer_id=uuid4(), status=STATUS_IN_PROGRESS,
                    created_at=started, procured_at=started,
                )
                resource = Resource(
                    id=uuid4(), tenant_id=principal.tenant_id, procurement_id=procurement.id, offer_id=procurement.offer_id,
                    name=f"bench-{number}", status=ResourceStatus.PENDING.value, vendor=offer.vendor,
                    vendor_region=offer.vendor_region, region=offer.region, gpu_type=offer.gpu_type,
                    gpu_family=offer.gpu_family, gpu_count=offer.gpu_count, price_per_hour=offer.total_price_per_hour,
                    offer_snapshot=offer_to_dict(offer), ssh_public_key=SSH_KEY, vendor_instance_id=str(90_000_000 + number),
                    attempts=[], retry_count=0, delete_alerted=False, created_at=started, updated_at=now,
                    next_attempt_at=now + timedelta(days=1), running_since=started + timedelta(minutes=2), last_synced_at=now,
                )
                session.add_all([procurement, resource])
                change_status(session, resource, ResourceStatus.PROVISIONING, at=started + timedelta(seconds=5))
                change_status(session, resource, ResourceStatus.RUNNING, at=started + timedelta(minutes=2))
                ids.append(resource.id)
        return ids
    finally:
        await db.dispose()


async def synced_since(database_url: str, ids: list[UUID], moment_after_seed: object) -> int:
    """How many seeded resources were re-read from the vendor (their sync time moved)."""
    db = Database(database_url)
    try:
        async with db.session() as session:
            moved = select(func.count()).select_from(Resource).where(
                Resource.id.in_(ids), Resource.last_synced_at > moment_after_seed
            )
            return int((await session.execute(moved)).scalar_one())
    finally:
        await db.dispose()


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


def run(quick: bool = False) -> list[Row]:
    seconds = 1 if quick else 8
    count = 50 if quick else 2_000
    rows = []
    kinds = ["sqlite"] + (["postgres"] if find_pg_bindir() else [])
    for kind in kinds:
        with database(kind) as url, serve(engine=False, database_url=url) as served:
            ids = asyncio.run(seed_resources(url, served.token, count))
            seeded_at = utcnow()
            reads = wrk(served.url, token=served.token, seconds=seconds, paths=[f"/resources/{i}" for i in ids])
            trivial = wrk(served.url + "/healthz", seconds=seconds)
            refreshed = asyncio.run(synced_since(url, ids, seeded_at))
        if reads.errors or trivial.errors or refreshed:
            raise AssertionError(
                f"{kind}: reads answered {reads.errors} errors, healthz {trivial.errors}; {refreshed} reads went to the vendor"
            )
        rows.append(Row(f"6 resource reads ({kind})", "req/s", reads.requests_per_second, trivial.requests_per_second,
                        "/healthz (same server)",
                        note=f"{count:,} seeded resources, random reads; p50 {reads.p50_ms:.1f} ms, p99 {reads.p99_ms:.1f} ms"))
    return rows
