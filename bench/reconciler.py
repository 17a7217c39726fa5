"""Benchmark 5: one reconciler sweep over many resources: wall time, vendor calls and peak memory,
at two sizes, to show that calls grow with listing pages, not with resources.

Instances are made through each vendor's real create API (sandboxes in this process, their rate
limits and our pacing scaled up so that seeding is quick), and the matching `running` rows are
written straight into the database. The sweep is `engine.reconciler.reconcile_vendor` for each
vendor, with the vendors' requests counted by the sandboxes themselves.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path

from sqlalchemy import update
from tests.engine.helpers import SSH_KEY, engine_settings, insert_resources, start_sandboxes

from bench.table import Row
from gpusupply.core.errors import CapacityGone  # noqa: I001
from gpusupply.db.models import Resource
from gpusupply.engine.context import EngineContext
from gpusupply.engine.reconciler import reconcile_vendor
from gpusupply.sandbox.common import SandboxConfig
from gpusupply.vendors.base import CreateRequest

SHARE = {"vast": 0.5, "fal": 0.25, "nebula": 0.25}
CREATE_CONCURRENCY = 64


async def seed(ctx: EngineContext, vendor: str, count: int) -> int:
    """`count` running instances of `vendor`, each with its resource row; returns how many were made."""
    adapter = ctx.vendors.adapters[vendor]
    offers = [o for o in await adapter.list_offers() if o.available and o.gpu_count == 1]
    ids = await insert_resources(ctx.db, count, status="running", vendor=vendor)
    made: dict[uuid.UUID, str] = {}
    position = 0
    lock = asyncio.Lock()

    async def create(resource_id: uuid.UUID) -> None:
        nonlocal position
        while True:
            async with lock:
                if position >= len(offers):
                    return
                offer = offers[position]
                if vendor != "fal":
                    position += 1  # Vast asks and Nebula stock are used up; fal types are not
            try:
                instance = await adapter.create(CreateRequest(resource_id, offer, SSH_KEY))
            except CapacityGone:
                if vendor == "fal":
                    async with lock:
                        position += 1
                continue
            if instance is None:
                instance = await adapter.recover(CreateRequest(resource_id, offer, SSH_KEY))
            if instance is not None:
                made[resource_id] = instance.vendor_instance_id
            return

    for start in range(0, len(ids), CREATE_CONCURRENCY):
        await asyncio.gather(*(create(rid) for rid in ids[start:start + CREATE_CONCURRENCY]))
    async with ctx.db.transaction() as session:
        for resource_id, instance_id in made.items():
            await session.execute(update(Resource).where(Resource.id == resource_id).values(vendor_instance_id=instance_id))
        unmade = [rid for rid in ids if rid not in made]
        if unmade:
            await session.execute(update(Resource).where(Resource.id.in_(unmade)).values(status="deleted"))
    return len(made)


async def sweep(size: int) -> dict[str, float]:
    root = Path(tempfile.mkdtemp(prefix="gpusupply-bench-reconcile-"))
    settings = engine_settings(root, orphan_grace_seconds=3600.0)
    from gpusupply.db.session import Database

    db = Database(settings.effective_database_url)
    await db.migrate()
    config = SandboxConfig(seed=5, offers=max(2000, size * 2), ready_after=0.0, rate_scale=1000.0)
    # Sandbox limits and our pacing scaled up together, so that seeding is quick.
    vendors = await start_sandboxes(list(SHARE), config=config, vendor_timeout=30.0, rate_scale=1000.0)
    ctx = EngineContext(db, vendors, settings)
    try:
        resources: dict[str, int] = {}
        for vendor in ("nebula", "fal"):  # their stock is limited: Vast takes up what they could not
            resources[vendor] = await seed(ctx, vendor, int(size * SHARE[vendor]))
        resources["vast"] = await seed(ctx, "vast", size - sum(resources.values()))
        before = {v: s.requests for v, s in vendors.sandboxes.items()}
        tracemalloc.start()
        started = time.perf_counter()
        reports = [await reconcile_vendor(ctx, vendor) for vendor in SHARE]
        wall = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        calls = sum(s.requests - before[v] for v, s in vendors.sandboxes.items())
        for report in reports:
            if getattr(report, "degraded", False):
                raise AssertionError(f"the sweep found a vendor degraded: {report}")
        return {"resources": sum(resources.values()), "wall": wall, "calls": calls, "peak_mb": peak / 2**20,
                "split": ", ".join(f"{v} {n}" for v, n in resources.items())}
    finally:
        await vendors.aclose()
        await db.dispose()


def run(quick: bool = False) -> list[Row]:
    small_size, large_size = (100, 400) if quick else (2_000, 10_000)
    small = asyncio.run(sweep(small_size))
    large = asyncio.run(sweep(large_size))
    name = "5 reconciler sweep"
    growth = large["calls"] / small["calls"] if small["calls"] else float("nan")
    scale = large["resources"] / small["resources"]
    return [
        Row(name, f"sweep s ({large['resources']:.0f} resources)", large["wall"],
            note=f"{large['split']}; {small['resources']:.0f} resources: {small['wall']:.2f} s"),
        Row(name, f"vendor calls ({large['resources']:.0f} resources)", large["calls"],
            note=f"{small['resources']:.0f} resources: {small['calls']:.0f} calls; x{scale:.1f} resources -> x{growth:.1f} calls"),
        Row(name, "resources per vendor call", large["resources"] / max(large["calls"], 1),
            note="list pages: Vast 25, fal 100, Nebula one list per sweep"),
        Row(name, f"peak MB ({large['resources']:.0f} resources)", large["peak_mb"],
            note=f"{small['resources']:.0f} resources: {small['peak_mb']:.1f} MB (tracemalloc)"),
    ]
