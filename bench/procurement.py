"""Benchmark 4: procurement throughput against the vendors' rate limits.

360 procurements by offer go through the real service (`POST /procure_offer` on the app, with the
engine running in it) to the four sandbox vendors over HTTP on loopback, with the sandboxes' rate
limits on at their configured (documented or assumed) rates. The wall time runs from the first
POST until every resource is `running`.

The bound is what the sandboxes' limits allow at best, computed per vendor from the calls each
procurement cannot do without, on the sandbox's own buckets (rate, burst):
- Vast: the create (`create`), attaching the SSH key (`ssh`), and seeing it run: one listing page
  covers 25 instances (`show_instances`).
- Nebula: the create (`create`); its answer has no id, so the instance is found, and later seen
  running, in a listing of 100 per page (`list`).
- fal: the create, and one listing page per 100 instances, all on fal's one `compute` bucket.
- RunPod: the create (`create`: its answer carries the pod) and one read of the pod to see it
  running (`read`).
A bucket with `calls` calls needs at least (calls - burst) / rate seconds; the last create also
needs the sandbox's ready time before it can be seen running. Each vendor's bound is the largest
of these, the overall bound the largest over vendors (they are served in parallel).
"""

from __future__ import annotations

import asyncio
import math
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select
from tests.engine.helpers import SSH_KEY, start_sandboxes

from bench.table import Row
from gpusupply.core.offers import OfferQuery
from gpusupply.db.models import Resource
from gpusupply.metrics import VENDOR_REQUESTS
from gpusupply.sandbox.common import SandboxConfig
from gpusupply.settings import Settings
from gpusupply.vendors.registry import VendorSet

NAME = "4 procurement throughput"
# Lambda launches 1 per 12 s (burst 2): 5 of them fit in the same minute Nebula and Vast need.
SPLIT = {"vast": 60, "nebula": 60, "fal": 180, "lambda": 5, "runpod": 60}
QUICK_SPLIT = {"vast": 4, "nebula": 4, "fal": 8, "lambda": 2, "runpod": 4}
READY_AFTER = 3.0  # seconds from create to running in every sandbox
PLENTY = 10_000  # stock given to each Nebula product, fal type, Lambda type+region and RunPod machine, so capacity never runs out


@dataclass(frozen=True)
class VendorNeeds:
    """The calls one procurement needs on a vendor's rate-limit buckets: whole calls, and calls
    shared by many procurements (a listing page covers `per_page` instances)."""

    create_bucket: str
    each: dict[str, int]
    listed: tuple[str, int] | None  # (bucket, instances per page)


NEEDS = {
    "vast": VendorNeeds("create", {"create": 1, "ssh": 1}, ("list", 25)),
    "nebula": VendorNeeds("create", {"create": 1}, ("list", 100)),
    "fal": VendorNeeds("compute", {"compute": 1}, ("compute", 100)),
    # Lambda: every call also takes the key's 1/s ("api"); a launch, then a read of the new
    # instance; one listing holds every instance.
    "lambda": VendorNeeds("launch", {"launch": 1, "api": 2}, ("api", 10_000)),
    "runpod": VendorNeeds("create", {"create": 1, "read": 1}, None),
}


def vendor_bound(needs: VendorNeeds, count: int, limits: dict[str, tuple[float, float]], ready_after: float) -> tuple[float, str]:
    """The least wall time `count` procurements can take under `limits`, and the bucket that sets it."""
    calls: Counter[str] = Counter({bucket: n * count for bucket, n in needs.each.items()})
    if needs.listed is not None:
        bucket, per_page = needs.listed
        calls[bucket] += math.ceil(count / per_page)
    best, why = 0.0, ""
    for bucket, n in calls.items():
        rate, burst = limits[bucket]
        seconds = max(n - burst, 0) / rate
        if bucket == needs.create_bucket:
            create_rate, create_burst = limits[bucket]
            seconds = max(seconds, max(count * needs.each[bucket] - create_burst, 0) / create_rate + ready_after)
        if seconds > best:
            best, why = seconds, f"{bucket} {rate:g}/s burst {burst:g}: {n} calls"
    return best, why


def bench_settings(root: Path) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        data_dir=root,
        database_url=f"sqlite+aiosqlite:///{root / 'bench.db'}",
        vast_api_key=None,
        fal_api_key=None,
        nebula_api_key=None,
        lambda_api_key=None,
        runpod_api_key=None,
        enabled_vendors=",".join(SPLIT),
        vendor_timeout=10.0,
        # Running rows are re-read every 30 s and vendors reconciled every minute in production;
        # both are left out here so that only procurement's own calls are counted.
        refresh_interval_seconds=3600.0,
        reconcile_interval_seconds=3600.0,
    )


def vendor_calls() -> Counter[tuple[str, str]]:
    """Vendor calls so far by (vendor, endpoint), from the process's metrics."""
    counts: Counter[tuple[str, str]] = Counter()
    for metric in VENDOR_REQUESTS.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                counts[(sample.labels["vendor"], sample.labels["endpoint"])] += int(sample.value)
    return counts


async def choose_offers(catalog: Any, vendor: str, count: int, taken: set[str]) -> list[str]:
    """Offer ids of `vendor` nobody procured yet, one per vendor offer (a Vast ask is listed twice:
    on demand and as a bid); reads the catalog again (new offer ids) when a snapshot runs out."""
    chosen: list[str] = []
    while len(chosen) < count:
        result = await catalog.search(OfferQuery(vendor=vendor, contract_type="ondemand"), limit=10_000)
        seen: set[str] = set()
        fresh = []
        for stored in result.offers:
            key = str(stored.offer_id)
            if stored.status == "available" and key not in taken and stored.offer.vendor_offer_id not in seen:
                seen.add(stored.offer.vendor_offer_id)
                fresh.append(key)
        if not fresh:
            await catalog.refresh(vendor)
            continue
        for key in fresh[: count - len(chosen)]:
            taken.add(key)
            chosen.append(key)
        if len(chosen) < count:
            await catalog.refresh(vendor)
    return chosen


async def statuses(db: Any) -> dict[tuple[str, str], int]:
    async with db.session() as session:
        rows = (await session.execute(select(Resource.vendor, Resource.status, func.count()).group_by(Resource.vendor, Resource.status))).all()
    return {(vendor, status): int(n) for vendor, status, n in rows}


async def measure(split: dict[str, int], ready_after: float) -> dict[str, Any]:
    from gpusupply.app import create_app
    from gpusupply.services.keys import create_key

    root = Path(tempfile.mkdtemp(prefix="gpusupply-bench-procure-"))
    settings = bench_settings(root)
    config = SandboxConfig(seed=11, offers=max(600, 6 * split["vast"]), ready_after=ready_after, rate_scale=1.0)
    vendors: VendorSet = await start_sandboxes(list(split), config=config, vendor_timeout=settings.vendor_timeout, rate_scale=1.0)
    for product in vendors.sandboxes["nebula"].products.values():
        product.stock = PLENTY
    fal = vendors.sandboxes["fal"]
    fal.stock = dict.fromkeys(fal.stock, PLENTY)
    lam = vendors.sandboxes["lambda"]
    lam.capacity = dict.fromkeys(lam.capacity, PLENTY)
    for machine in vendors.sandboxes["runpod"].machines.values():
        machine.size, machine.reserved = PLENTY, 0
    app = create_app(settings, run_engine=True, vendors=vendors)
    try:
        async with app.router.lifespan_context(app):
            ctx = app.state.ctx
            _, token = await create_key(ctx.db, "bench-key", tenant="bench")
            taken: set[str] = set()
            offers = {vendor: await choose_offers(ctx.catalog, vendor, n, taken) for vendor, n in split.items()}
            sandbox_before = {v: (s.requests, s.rate_limited) for v, s in vendors.sandboxes.items()}
            calls_before = vendor_calls()
            # One POST per offer, vendors interleaved as users would send them.
            order = [(vendor, offer) for i in range(max(split.values())) for vendor in split for offer in offers[vendor][i:i + 1]]
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://service", headers={"Authorization": f"Bearer {token}"}) as client:
                started = time.perf_counter()
                for vendor, offer_id in order:
                    response = await client.post("/procure_offer", json={"offer_id": offer_id, "ssh_public_key": SSH_KEY})
                    if response.status_code != 200:
                        raise AssertionError(f"procure {vendor} offer {offer_id}: {response.status_code} {response.text}")
                posted = time.perf_counter() - started
            finished: dict[str, float] = {}
            deadline = started + 600
            while len(finished) < len(split):
                counts = await statuses(ctx.db)
                now = time.perf_counter()
                for vendor, n in split.items():
                    if vendor not in finished and counts.get((vendor, "running"), 0) == n:
                        finished[vendor] = now - started
                stuck = {k: v for k, v in counts.items() if k[1] not in ("pending", "provisioning", "running")}
                if stuck or now > deadline:
                    raise AssertionError(f"procurements did not all run: {counts}")
                await asyncio.sleep(0.1)
            wall = max(finished.values())
            calls = vendor_calls() - calls_before
            sandbox = {v: (s.requests - sandbox_before[v][0], s.rate_limited - sandbox_before[v][1]) for v, s in vendors.sandboxes.items()}
            limits = {v: dict(s.rate_limits) for v, s in vendors.sandboxes.items()}
    finally:
        await vendors.aclose()
    return {"wall": wall, "finished": finished, "posted": posted, "calls": calls, "sandbox": sandbox, "limits": limits}


def run(quick: bool = False) -> list[Row]:
    split = QUICK_SPLIT if quick else SPLIT
    ready_after = 0.5 if quick else READY_AFTER
    result = asyncio.run(measure(split, ready_after))
    bounds = {v: vendor_bound(NEEDS[v], n, result["limits"][v], ready_after) for v, n in split.items()}
    bound = max(b for b, _ in bounds.values())
    total = sum(split.values())
    rate_limited = sum(limited for _, limited in result["sandbox"].values())
    for vendor, (seconds, why) in bounds.items():
        print(f"bound {vendor}: {split[vendor]} procurements need >= {seconds:.1f} s ({why}; ready after {ready_after:g} s)")
    print(f"bound overall: {bound:.1f} s; POSTs took {result['posted']:.1f} s")
    rows = [
        Row(NAME, f"wall s ({total} procurements)", result["wall"], bound, "bound from the sandboxes' rate limits",
            "ours <= 1.15 x bound, 0 rate-limited", result["wall"] <= 1.15 * bound and rate_limited == 0,
            note=f"split {', '.join(f'{v} {n}' for v, n in split.items())}; ready after {ready_after:g} s"),
        Row(NAME, "rate-limited answers (429)", rate_limited, goal="0", met=rate_limited == 0, note="the sandboxes' own counters"),
    ]
    for vendor, n in split.items():
        seconds, why = bounds[vendor]
        requests, _ = result["sandbox"][vendor]
        by_endpoint = ", ".join(f"{endpoint} {count / n:.2f}" for (v, endpoint), count in sorted(result["calls"].items()) if v == vendor and count)
        rows.append(Row(NAME, f"{vendor}: s to all running", result["finished"][vendor], seconds, f"{vendor} bound ({why})",
                        note=f"{requests} vendor calls, {requests / n:.2f}/procurement: {by_endpoint}"))
    return rows
