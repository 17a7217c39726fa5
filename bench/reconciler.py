"""Benchmark 5: one reconciler sweep over many resources: wall time, vendor calls and peak memory,
at two sizes, to show that calls grow with listing pages, not with resources.

The instances are put straight into the sandboxes' state through their own commit methods (the
ones their create routes end in), the matching `running` rows straight into the database: no
vendor create and no procurement is needed to seed 10,000. The sweep is
`engine.reconciler.reconcile_vendor` for each vendor over HTTP on loopback, its calls counted by
the sandboxes themselves. The sandboxes' rate limits and our pacing are scaled up together, so the
sweep's own cost is what is timed; the time the vendors' real limits would add is computed from
the pages and printed beside it.

Baselines from the same run: the pages the listing needs (Vast 25 per page, fal 100, Nebula 100),
and each vendor's `list_instances` alone (time and peak memory): what the reconciler adds to the
listing it cannot do without.
"""

from __future__ import annotations

import asyncio
import math
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from tests.engine.helpers import SANDBOX_KEY, SSH_KEY, engine_settings, start_sandboxes

from bench.table import Row
from gpusupply.core.offers import Offer
from gpusupply.db.models import Procurement, Resource, Tenant, utcnow
from gpusupply.db.session import Database
from gpusupply.engine.context import EngineContext
from gpusupply.engine.reconciler import reconcile_vendor
from gpusupply.sandbox.common import SandboxConfig
from gpusupply.sandbox.vast import parse_create_body
from gpusupply.vendors.base import CreateRequest, marker_for, parse_marker
from gpusupply.vendors.registry import VendorSet

NAME = "5 reconciler sweep"
SHARE = {"vast": 0.4, "nebula": 0.3, "fal": 0.3}
RATE_SCALE = 1000.0  # sandbox limits and our pacing together: the sweep's own cost is timed
T = TypeVar("T")


def split(size: int) -> dict[str, int]:
    counts = {vendor: int(size * share) for vendor, share in SHARE.items()}
    counts["vast"] += size - sum(counts.values())
    return counts


def per_page(vendors: VendorSet, vendor: str) -> int:
    adapter = vendors.adapters[vendor]
    return int(getattr(adapter, "page_limit", None) or adapter.page_size)


def pages_needed(vendors: VendorSet, vendor: str, count: int) -> int:
    return max(1, math.ceil(count / per_page(vendors, vendor)))


# ----- seeding the sandboxes' state directly ------------------------------------------------------


def seed_vast(sandbox: Any, adapter: Any, markers: list[str], account: str = SANDBOX_KEY) -> list[str]:
    table = sandbox.offers
    rentable = sandbox.rentable_mask()
    asks = np.nonzero(rentable & table.columns["base_rentable"])[0][: len(markers)]
    if len(asks) < len(markers):
        raise RuntimeError(f"the Vast sandbox has {len(asks)} rentable asks for {len(markers)} instances")
    offers = table.render(asks, table.priced("on-demand", adapter.disk_gb), rentable, "on-demand", sandbox.now())
    ids = []
    for offer, marker in zip(offers, markers, strict=True):
        # The body our adapter sends, parsed as the sandbox's create route parses it.
        request = CreateRequest(_resource_id(marker), _placeholder_offer(), SSH_KEY, installation_id=parse_marker(marker).installation_id)  # type: ignore[union-attr]
        spec = parse_create_body(adapter.create_body(request))
        assert not isinstance(spec, tuple), spec
        ids.append(sandbox._commit(account, int(offer["id"]), offer, spec).id)
    return ids


def seed_nebula(sandbox: Any, adapter: Any, markers: list[str], account: str = SANDBOX_KEY) -> list[str]:
    pairs = [
        (product, image)
        for product in sandbox.products.values()
        for image in sandbox.images.values()
        if image.dc_id == product.dc.dc_id and image.region == product.dc.region
    ]
    ids = []
    for n, marker in enumerate(markers):
        product, image = pairs[n % len(pairs)]
        instance = sandbox.new_instance(account, marker, product, image)
        sandbox.record_create(instance, product_id=product.id, image_id=image.id, ssh_key_id=0)
        ids.append(instance.id)
    return ids


def seed_fal(sandbox: Any, adapter: Any, markers: list[str], account: str = SANDBOX_KEY) -> list[str]:
    # fal has no marker: the create's idempotency key, the resource id, is what its ledger shows.
    return [sandbox._commit(account, "gpu_1x_h100_sxm5", None, str(_resource_id(marker))).id for marker in markers]


def _resource_id(marker: str) -> uuid.UUID:
    parsed = parse_marker(marker)
    assert parsed is not None, marker
    return parsed.resource_id


# Each puts live instances with these markers into a sandbox (the adapter gives Vast's create body).
SEEDERS: dict[str, Callable[[Any, Any, list[str], str], list[str]]] = {"vast": seed_vast, "nebula": seed_nebula, "fal": seed_fal}


def _placeholder_offer() -> Offer:
    """Vast's create body reads only the contract type and bid from the offer."""
    return Offer(
        vendor="vast", vendor_offer_id="0", gpu_type="H100", gpu_family="H100", gpu_count=1, gpu_memory_gb=80.0,
        gpu_price_per_hour=1.0, total_price_per_hour=1.0, region="us", vendor_region="US", contract_type="ondemand",
        available=True, fetched_at=utcnow(), vendor_data={},
    )


async def insert_running(db: Database, vendor: str, instances: dict[uuid.UUID, str]) -> None:
    """Our `running` rows for the seeded instances, in one transaction."""
    async with db.transaction() as session:
        tenant = Tenant(name=f"bench-{uuid.uuid4().hex[:8]}")
        session.add(tenant)
        await session.flush()
        procurement = Procurement(tenant_id=tenant.id, status="provisioning_in_progress")
        session.add(procurement)
        await session.flush()
        now = utcnow()
        session.add_all(
            Resource(id=resource_id, tenant_id=tenant.id, procurement_id=procurement.id, status="running", vendor=vendor,
                     vendor_instance_id=instance_id, ssh_public_key=SSH_KEY, next_attempt_at=now, created_at=now)
            for resource_id, instance_id in instances.items()
        )


# ----- measuring ----------------------------------------------------------------------------------


async def measured(action: Callable[[], Awaitable[T]]) -> tuple[T, float, float]:
    """The action's result, wall seconds and peak traced MB."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        result = await action()
        wall = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, wall, peak / 2**20


async def sweep(size: int) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="gpusupply-bench-reconcile-"))
    settings = engine_settings(root, orphan_grace_seconds=3600.0, create_visibility_seconds=0.0)
    db = Database(settings.effective_database_url)
    await db.migrate()
    counts = split(size)
    config = SandboxConfig(seed=5, offers=max(2000, counts["vast"] * 2), ready_after=0.0, rate_scale=RATE_SCALE)
    vendors = await start_sandboxes(list(SHARE), config=config, vendor_timeout=30.0, rate_scale=RATE_SCALE)
    ctx = EngineContext(db, vendors, settings)
    try:
        for vendor, count in counts.items():
            resource_ids = [uuid.uuid4() for _ in range(count)]
            instance_ids = SEEDERS[vendor](vendors.sandboxes[vendor], vendors.adapters[vendor], [marker_for(r) for r in resource_ids], SANDBOX_KEY)
            await insert_running(db, vendor, dict(zip(resource_ids, instance_ids, strict=True)))
        requests = {v: s.requests for v, s in vendors.sandboxes.items()}
        listing: dict[str, tuple[float, float]] = {}
        for vendor in SHARE:  # the baseline: each vendor's listing alone
            listed, wall, peak = await measured(vendors.adapters[vendor].list_instances)
            if len(listed) != counts[vendor]:
                raise AssertionError(f"{vendor} lists {len(listed)} instances, {counts[vendor]} were seeded")
            listing[vendor] = (wall, peak)
        listing_calls = {v: s.requests - requests[v] for v, s in vendors.sandboxes.items()}

        async def reconcile_all() -> list[Any]:
            return [await reconcile_vendor(ctx, vendor) for vendor in SHARE]

        before = {v: s.requests for v, s in vendors.sandboxes.items()}
        reports, wall, peak = await measured(reconcile_all)
        calls = {v: s.requests - before[v] for v, s in vendors.sandboxes.items()}
        for report in reports:
            if report.degraded or report.vanished or report.orphans_pending or report.listed != counts[report.vendor]:
                raise AssertionError(f"the sweep should find every seeded instance and nothing else: {report}")
        pages = {v: pages_needed(vendors, v, n) for v, n in counts.items()}
        # What the vendors' unscaled limits would add: one page per interval of the list bucket.
        real_list_rate = {v: vendors.sandboxes[v].rate_limits[_list_bucket(v)][0] for v in SHARE}
        floor = max(pages[v] / real_list_rate[v] for v in SHARE)
        return {
            "size": size, "counts": counts, "wall": wall, "peak_mb": peak, "calls": calls, "pages": pages,
            "listing_wall": sum(w for w, _ in listing.values()), "listing_peak_mb": max(p for _, p in listing.values()),
            "listing_calls": listing_calls, "real_rate_floor": floor,
        }
    finally:
        await vendors.aclose()
        await db.dispose()


def _list_bucket(vendor: str) -> str:
    return {"vast": "list", "nebula": "list", "fal": "compute"}[vendor]


def run(quick: bool = False) -> list[Row]:
    small_size, large_size = (150, 600) if quick else (2_000, 10_000)
    small = asyncio.run(sweep(small_size))
    large = asyncio.run(sweep(large_size))
    big, little = large["size"], small["size"]
    calls, pages = sum(large["calls"].values()), sum(large["pages"].values())
    small_calls, small_pages = sum(small["calls"].values()), sum(small["pages"].values())
    per_vendor = ", ".join(f"{v} {large['counts'][v]}: {large['calls'][v]} calls / {large['pages'][v]} pages" for v in SHARE)
    return [
        Row(NAME, f"vendor calls ({big:,} resources)", calls, pages, "listing pages needed", "calls = pages", calls == pages, note=per_vendor),
        Row(NAME, f"vendor calls ({little:,} resources)", small_calls, small_pages, "listing pages needed", "calls = pages",
            small_calls == small_pages, note=f"x{big / little:.0f} resources -> x{calls / small_calls:.1f} calls, x{pages / small_pages:.1f} pages"),
        Row(NAME, f"sweep s ({big:,} resources)", large["wall"], large["listing_wall"], "the three listings alone",
            note=f"{little:,} resources: {small['wall']:.2f} s vs {small['listing_wall']:.2f} s; at the vendors' real list rates the "
                 f"pages alone need >= {large['real_rate_floor']:.0f} s ({little:,}: {small['real_rate_floor']:.0f} s)"),
        Row(NAME, f"peak MB ({big:,} resources)", large["peak_mb"], large["listing_peak_mb"], "largest listing alone (tracemalloc)",
            note=f"{little:,} resources: {small['peak_mb']:.1f} MB vs {small['listing_peak_mb']:.1f} MB"),
    ]
