"""Benchmark 3: the offer catalog's fan-out over the three vendors.

- Cold refresh: the sandboxes answer after 100 ms (fal), 300 ms (Nebula) and 800 ms (Vast). A
  cold `OfferCatalog.refresh()` reads all three in parallel, so it should take about as long as
  the slowest vendor alone: the baseline is a cold refresh of Vast alone, in the same run.
  (fal's catalog is its price table, read without HTTP; its latency is set for completeness.)
- One vendor hanging: Vast holds every request; a cold search must answer with the other
  vendors' offers within the fetch timeout, marked partial with Vast as the failed vendor.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from tests.engine.helpers import engine_settings, start_sandboxes

from bench.table import Row
from gpusupply.core.offers import OfferQuery
from gpusupply.db.session import Database
from gpusupply.domain.catalog import OfferCatalog
from gpusupply.sandbox.common import SandboxConfig
from gpusupply.settings import Settings
from gpusupply.vendors.registry import VendorSet

LATENCIES = {"fal": 0.1, "nebula": 0.3, "vast": 0.8}
SLOWEST = max(LATENCIES, key=LATENCIES.__getitem__)
HUNG = "vast"
NAME = "3 offer fan-out"


@asynccontextmanager
async def catalog_over_sandboxes(offers: int, *, fetch_timeout: float, hang: str | None = None) -> AsyncIterator[tuple[OfferCatalog, VendorSet, Settings]]:
    """A fresh database and fresh sandboxes with the benchmark's latencies: every read is cold."""
    root = Path(tempfile.mkdtemp(prefix="gpusupply-bench-fanout-"))
    settings = engine_settings(root, offer_fetch_timeout=fetch_timeout, vendor_timeout=fetch_timeout)
    db = Database(settings.effective_database_url)
    await db.migrate()
    vendors = await start_sandboxes(
        list(LATENCIES), config=SandboxConfig(seed=3, offers=offers, hang_seconds=fetch_timeout * 4), vendor_timeout=fetch_timeout, rate_scale=1.0,
    )
    for vendor, latency in LATENCIES.items():
        vendors.sandboxes[vendor].config.latency = latency
    server_log = logging.getLogger("uvicorn.error")
    level = server_log.level
    if hang is not None:
        vendors.sandboxes[hang].faults.faults = {"hang": 1.0}
        server_log.setLevel(logging.CRITICAL)  # its held requests are cancelled at shutdown, as intended
    catalog = OfferCatalog(db, vendors, settings)
    try:
        yield catalog, vendors, settings
    finally:
        await catalog.aclose()
        await vendors.aclose()
        await db.dispose()
        server_log.setLevel(level)


async def timed_refresh(offers: int, vendor: str | None) -> tuple[float, Counter[str]]:
    async with catalog_over_sandboxes(offers, fetch_timeout=10.0) as (catalog, _, _):
        started = time.perf_counter()
        await catalog.refresh(vendor)
        wall = time.perf_counter() - started
        counts = Counter({status.vendor: status.offers for status in catalog.status()})
        failed = {status.vendor: status.error for status in catalog.status() if status.error}
        if failed:
            raise AssertionError(f"a vendor failed in the cold refresh: {failed}")
        return wall, counts


async def hung_search(offers: int, fetch_timeout: float) -> dict[str, Any]:
    async with catalog_over_sandboxes(offers, fetch_timeout=fetch_timeout, hang=HUNG) as (catalog, _, _):
        started = time.perf_counter()
        result = await catalog.search(OfferQuery(), limit=10_000)
        wall = time.perf_counter() - started
        counts = Counter(stored.offer.vendor for stored in result.offers)
        return {"wall": wall, "partial": result.partial, "failed": result.failed_vendors, "counts": counts, "total": result.total}


async def measure(quick: bool) -> list[Row]:
    offers = 200 if quick else 3000
    # Quick (the smoke test, correctness only): room for the healthy vendors on a loaded machine.
    fetch_timeout = 6.0 if quick else 3.0
    alone, alone_counts = await timed_refresh(offers, SLOWEST)
    together, counts = await timed_refresh(offers, None)
    if counts[SLOWEST] != alone_counts[SLOWEST] or any(counts[v] == 0 for v in LATENCIES):
        raise AssertionError(f"the fan-out read other offers than each vendor alone: {dict(counts)} vs {dict(alone_counts)}")
    hung = await hung_search(offers, fetch_timeout)
    others = {v: counts[v] for v in LATENCIES if v != HUNG}
    complete = {v: hung["counts"][v] for v in others}
    if not hung["partial"] or set(hung["failed"]) != {HUNG} or complete != others:
        raise AssertionError(f"hung vendor: expected a partial answer without {HUNG} and every other offer, got {hung}")
    latencies = ", ".join(f"{v} {LATENCIES[v] * 1000:.0f} ms" for v in LATENCIES)
    return [
        Row(NAME, "cold refresh s (3 vendors)", together, alone, f"{SLOWEST} alone (slowest)", "ours <= 1.1 x baseline", together <= 1.1 * alone,
            note=f"latencies {latencies}; offers {', '.join(f'{v} {n}' for v, n in sorted(counts.items()))}"),
        Row(NAME, f"answer s ({HUNG} hanging)", hung["wall"], fetch_timeout, "offer_fetch_timeout", "ours <= 1.1 x baseline",
            hung["wall"] <= 1.1 * fetch_timeout,
            note=f"partial={hung['partial']}, failed={sorted(hung['failed'])}; offers {', '.join(f'{v} {n}' for v, n in complete.items())} (all)"),
    ]


def run(quick: bool = False) -> list[Row]:
    return asyncio.run(measure(quick))
