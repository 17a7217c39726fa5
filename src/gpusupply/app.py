"""The application: `create_app()` wires one process together, above every layer
(docs/architecture.md): the API's routers and the console over the services, and the engine.

Lifespan: migrate the database, build the vendors (live, or sandbox served in-process), start
the offer catalog, give the services the engine's resource refresh, start the engine when asked
(it refreshes the catalog from then on), log the banner data; and stop them in reverse.
Tests (and embedders) may pass their own `vendors` and `database`; those are not closed here.
"""

from __future__ import annotations

import functools
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from gpusupply import __version__, web
from gpusupply.api import docs, errors, hot, observability
from gpusupply.api.deps import ServiceContext
from gpusupply.api.routers import (
    budgets,
    discovery,
    fleets,
    health,
    offers,
    prices,
    procurement,
    resources,
    usage,
    webhooks,
)
from gpusupply.db.ratelimits import DatabaseBuckets
from gpusupply.db.session import Database, alembic_config
from gpusupply.domain.catalog import OfferCatalog
from gpusupply.engine.runner import Engine
from gpusupply.engine.sync import refresh_resource
from gpusupply.sandbox.mode import build_vendors
from gpusupply.services.procurement import procure_for_alert
from gpusupply.settings import Settings, get_settings
from gpusupply.vendors.registry import VendorSet

log = logging.getLogger(__name__)


def migration_head() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


async def start_engine(ctx: ServiceContext) -> Engine:
    """The engine of this process, started; it also refreshes the offer catalog from now on."""
    # Buy-below orders write their procurement through the procurement service (docs/prices.md).
    engine = Engine(ctx.db, ctx.vendors, ctx.settings, ctx.catalog, alert_procurer=procure_for_alert)
    await engine.start()
    return engine


def banner(ctx: ServiceContext) -> dict[str, Any]:
    """What a starting process reports: database (no password), vendors and their modes, engine."""
    return {
        "database": ctx.db.display_url,
        "vendors": dict(ctx.vendors.modes),
        "engine": ctx.engine is not None,
        "version": __version__,
    }


# Objects allocated before a young collection runs. Python's default (700) is far less than one
# busy second of requests makes, so objects of requests still in flight reach the oldest
# generation and bring its full collections about.
YOUNG_GENERATION_SIZE = 10_000


def settle_heap() -> None:
    """Garbage collection for a long-running process, once it has started (`serve`, `worker`;
    not for tests, which build many apps in one process).

    Measured (docs/benchmarks.md, benchmark 6 on PostgreSQL): under load Python's full
    collections came every second or so and walked the whole heap, about 220,000 objects, in 90
    to 145 ms each; that was the p99 of every route. Two changes: what the process holds once
    started (modules, classes, the catalog, the sandboxes) is frozen, left out of every later
    collection (still freed when its last reference goes; only a reference cycle among frozen
    objects would be kept), and the young generation is larger, so fewer objects of requests in
    flight are promoted."""
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION_SIZE, middle, oldest)


def create_app(
    settings: Settings | None = None,
    *,
    run_engine: bool = True,
    vendors: VendorSet | None = None,
    database: Database | None = None,
    settle_heap_when_started: bool = False,
) -> FastAPI:
    """`settle_heap_when_started`: call `settle_heap()` once started (`gpusupply serve`)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = database or Database.from_settings(settings)
        vendor_set: VendorSet | None = None
        catalog: OfferCatalog | None = None
        ctx: ServiceContext | None = None
        try:
            await db.migrate()
            vendor_set = vendors or await build_vendors(settings)
            vendor_set.share_buckets(DatabaseBuckets(db))  # one rate limit per vendor key, all processes
            catalog = OfferCatalog(db, vendor_set, settings)
            await catalog.start()
            # The services reach the engine's one upward call through this (services/resources.py).
            refresher = functools.partial(refresh_resource, db, vendor_set, settings=settings)
            ctx = ServiceContext(settings, db, vendor_set, catalog, refresher, None, migration_head())
            if run_engine:
                ctx.engine = await start_engine(ctx)
            app.state.ctx = ctx
            app.state.banner = banner(ctx)
            log.info("gpusupply ready", extra=app.state.banner)
            if settle_heap_when_started:
                settle_heap()
            yield
        finally:
            if ctx is not None and ctx.engine is not None:
                await ctx.engine.stop()
            if catalog is not None:
                await catalog.aclose()
            if vendor_set is not None and vendors is None:
                await vendor_set.aclose()
            elif vendor_set is not None:
                vendor_set.share_buckets(None)  # the caller's adapters outlive our database
            if database is None:
                await db.dispose()

    app = FastAPI(
        title="gpusupply",
        summary="GPU Supply Service: search, procure, track and delete GPUs across clouds",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,  # served offline by api/docs.py
        redoc_url=None,
    )
    errors.install(app)
    docs.install(app)
    for router in (health.router, discovery.router, offers.router, procurement.router, resources.router,
                   usage.router, budgets.router, webhooks.router, prices.router, fleets.router):
        app.include_router(router)
    web.install(app)  # the console at / (docs/console.md)
    hot.install(app)  # the polled routes ahead of FastAPI's routing
    observability.install(app)  # last: the outermost middleware sees every answer
    return app
