"""engine/pipelines/base.py and the claim it makes: each vendor gets at most its share of a
pipeline's workers, so a vendor whose steps wait on its rate limit cannot starve the others."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

from gpusupply.db.models import Resource, utcnow
from gpusupply.db.session import Database
from gpusupply.domain.hints import hint
from gpusupply.engine import leases
from gpusupply.engine.context import EngineContext
from gpusupply.engine.pipelines.base import Pipeline
from gpusupply.vendors.registry import VendorSet

from ..helpers import engine_settings, insert_resources, wait_until


async def claim(db: Database, vendor_room: dict[str, int] | None) -> Counter[str | None]:
    claimed = await leases.claim(
        db, pipeline="test", owner="me", statuses=("pending",), limit=100, lease=timedelta(seconds=30), now=utcnow(), vendor_room=vendor_room,
    )
    return Counter(lease.vendor for lease in claimed)


async def test_claim_takes_at_most_each_vendors_room(database: Database) -> None:
    await insert_resources(database, 5, vendor="vast")
    await insert_resources(database, 3, vendor="fal")
    await insert_resources(database, 2)  # by spec, no vendor chosen yet: never limited
    assert await claim(database, {"vast": 2, "fal": 0, "nebula": 1}) == {"vast": 2, None: 2}


async def test_claim_without_room_takes_every_due_row_and_names_its_vendor(database: Database) -> None:
    await insert_resources(database, 2, vendor="vast")
    await insert_resources(database, 1, vendor="fal")
    assert await claim(database, None) == {"vast": 2, "fal": 1}


class Blocking:
    """A step that holds its worker until released, counting the vendors it holds."""

    def __init__(self) -> None:
        self.holding: Counter[str | None] = Counter()
        self.release = asyncio.Event()

    async def __call__(self, ctx: EngineContext, lease: leases.Lease, row: Resource) -> None:
        self.holding[row.vendor] += 1
        await self.release.wait()


async def test_a_busy_vendor_leaves_workers_for_the_others(tmp_path: Path) -> None:
    settings = engine_settings(tmp_path)
    db = Database(settings.effective_database_url)
    await db.migrate()
    try:
        await insert_resources(db, 8, vendor="vast")  # due first: without shares they take every worker
        await insert_resources(db, 3, vendor="fal")
        adapters: dict[str, Any] = {"vast": object(), "fal": object()}
        ctx = EngineContext(db, VendorSet(adapters, {}, {}), settings)
        step = Blocking()
        pipeline = Pipeline(ctx, "test", ("pending",), step, workers=4)
        assert pipeline.vendor_share == 2
        stopping = asyncio.Event()
        runner = asyncio.create_task(pipeline.run(stopping))

        async def all_busy() -> bool:
            return sum(step.holding.values()) == 4

        await wait_until(all_busy, within=10, what="four steps running")
        assert step.holding == {"vast": 2, "fal": 2}
        stopping.set()
        hint()
        step.release.set()
        await asyncio.wait_for(runner, 10)
        await asyncio.gather(*pipeline.active, return_exceptions=True)
    finally:
        await db.dispose()
