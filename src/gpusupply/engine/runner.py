"""The engine: the pipelines and periodic jobs of one process.

`gpusupply serve` runs it next to the API (unless `--no-engine`); `gpusupply worker` runs it alone.
Any number of processes may run it against one PostgreSQL database: they share the work through
row leases, with no leader. On SQLite one process is enough; a second is safe (every claim is
a guarded update that SQLite serializes across processes), only slower.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from gpusupply.db.models import utcnow
from gpusupply.db.session import Database
from gpusupply.domain.catalog import OfferCatalog, catalog_job_name
from gpusupply.domain.hints import hint
from gpusupply.domain.job_leases import process_owner
from gpusupply.domain.price_alerts import AlertProcurer
from gpusupply.engine import leases, prices
from gpusupply.engine.autodelete import JOB_NAME as GUARDRAILS
from gpusupply.engine.autodelete import guardrail_job
from gpusupply.engine.context import Clock, EngineContext
from gpusupply.engine.fleets import FleetJob
from gpusupply.engine.jobs import BackgroundJob, PeriodicJob, count_resources
from gpusupply.engine.pipelines import actions, cluster, delete, procure, provision, refresh
from gpusupply.engine.pipelines.base import Pipeline
from gpusupply.engine.reconciler import reconcile_vendor
from gpusupply.engine.webhook_delivery import WebhookDeliverer
from gpusupply.settings import Settings

log = logging.getLogger(__name__)

METRICS_SECONDS = 15.0
# The catalog jobs check this often at most, even with a cache age of 0 (always stale).
MIN_CATALOG_INTERVAL_SECONDS = 1.0


class Engine:
    def __init__(
        self,
        db: Database,
        vendors: Any,
        settings: Settings,
        catalog: OfferCatalog | None = None,
        *,
        owner: str | None = None,
        clock: Clock | None = None,
        alert_procurer: AlertProcurer | None = None,
    ):
        """`alert_procurer`: how a buy-below order writes its procurement (the process binds it to
        services.procurement; without it such alerts fire without procuring)."""
        self.ctx = EngineContext(db, vendors, settings, catalog, owner or process_owner(), clock or utcnow)
        workers = settings.engine_workers
        self.pipelines = [
            Pipeline(self.ctx, procure.PIPELINE, procure.STATUSES, procure.step, workers=workers),
            Pipeline(self.ctx, provision.PIPELINE, provision.STATUSES, provision.step, workers=workers),
            Pipeline(self.ctx, delete.PIPELINE, delete.STATUSES, delete.step, workers=workers),
            Pipeline(self.ctx, actions.PIPELINE, actions.STATUSES, actions.step, workers=max(1, workers // 4)),
            Pipeline(self.ctx, refresh.PIPELINE, refresh.STATUSES, refresh.step, workers=max(1, workers // 2)),
            # Clusters make no vendor call (their nodes are the rows above): a few workers do.
            Pipeline(self.ctx, cluster.PIPELINE, cluster.STATUSES, cluster.step, workers=max(1, workers // 4), resource_type=cluster.RESOURCE_TYPE),
        ]
        self.jobs: list[BackgroundJob] = [
            PeriodicJob(self.ctx, f"reconcile:{vendor}", settings.reconcile_interval_seconds, self._reconciler(vendor))
            for vendor in vendors.adapters
        ]
        # Cost guardrails and webhook deliveries (docs/cost.md).
        self.jobs.append(PeriodicJob(self.ctx, GUARDRAILS, settings.guardrail_interval_seconds, guardrail_job(self.ctx)))
        self.webhooks = WebhookDeliverer(self.ctx)
        self.jobs.append(self.webhooks)
        # Fleets: keep each at its size (engine/fleets.py).
        self.fleets = FleetJob(self.ctx)
        self.jobs.append(self.fleets)
        # The offer catalog's refresh, per vendor, when this process keeps a catalog (domain/catalog.py).
        if catalog is not None:
            interval = max(settings.offer_cache_seconds, MIN_CATALOG_INTERVAL_SECONDS)
            self.jobs.extend(
                # Judged by the wall clock, like the catalog's freshness: tests that move the
                # engine's clock must not make every catalog due.
                PeriodicJob(self.ctx, catalog_job_name(vendor), interval, self._catalog_refresh(catalog, vendor), clock=utcnow)
                for vendor in vendors.adapters
            )
            # Price alerts, evaluated on the catalog this process holds (docs/prices.md).
            self.jobs.append(
                PeriodicJob(self.ctx, prices.ALERTS_JOB, settings.price_alert_interval_seconds,
                            prices.alerts_job(self.ctx, catalog, alert_procurer), clock=utcnow)
            )
        self.jobs.append(PeriodicJob(self.ctx, prices.DOWNSAMPLE_JOB, settings.price_downsample_interval_seconds, prices.downsample_job(self.ctx)))
        self._stopping: asyncio.Event | None = None
        self._loops: list[asyncio.Task[None]] = []

    @property
    def owner(self) -> str:
        return self.ctx.owner

    @staticmethod
    def _catalog_refresh(catalog: OfferCatalog, vendor: str) -> Callable[[], Awaitable[bool]]:
        async def run() -> bool:
            return await catalog.refresh_as_job(vendor)

        return run

    def _reconciler(self, vendor: str) -> Any:
        async def run() -> bool:
            report = await reconcile_vendor(self.ctx, vendor)
            log.debug("reconciled", extra={"vendor": vendor, "listed": report.listed, "degraded": report.degraded})
            return not report.retry_soon

        return run

    @property
    def running(self) -> bool:
        return bool(self._loops)

    def held_leases(self) -> list[leases.Lease]:
        return [lease for pipeline in self.pipelines for lease in pipeline.held]

    async def start(self) -> None:
        if self._loops:
            return
        self._stopping = asyncio.Event()
        stopping = self._stopping
        if self.ctx.catalog is not None:
            self.ctx.catalog.refreshed_by_engine = True  # our catalog jobs refresh it: searches need not
        for pipeline in self.pipelines:
            self._loops.append(asyncio.create_task(pipeline.run(stopping), name=f"pipeline:{pipeline.name}"))
        for job in self.jobs:
            self._loops.append(asyncio.create_task(job.loop(stopping), name=f"job:{job.name}"))
        self._loops.append(asyncio.create_task(self._heartbeat(stopping), name="engine:heartbeat"))
        self._loops.append(asyncio.create_task(self._metrics(stopping), name="engine:metrics"))
        log.info("engine started", extra={"owner": self.owner, "vendors": list(self.ctx.vendors.adapters)})

    async def stop(self, grace_seconds: float = 10.0) -> None:
        """Stop taking work, let in-flight steps finish (bounded), then release what is still held."""
        if self._stopping is None or not self._loops:
            return
        self._stopping.set()
        if self.ctx.catalog is not None:
            self.ctx.catalog.refreshed_by_engine = False  # searches refresh it on demand again
        hint()
        fetchers = [t for t in self._loops if t.get_name().startswith("pipeline:")]
        if fetchers:
            await asyncio.wait(fetchers, timeout=max(grace_seconds, self.ctx.settings.engine_poll_seconds + 1))
        in_flight = [task for pipeline in self.pipelines for task in pipeline.active]
        if in_flight:
            await asyncio.wait(in_flight, timeout=grace_seconds)
        unfinished = [(task, lease) for pipeline in self.pipelines for task, lease in pipeline.active.items()]
        for task, _ in unfinished:
            task.cancel()
        for task, _ in unfinished:
            with contextlib.suppress(BaseException):
                await task
        for task in self._loops:
            task.cancel()
        for task in self._loops:
            with contextlib.suppress(BaseException):
                await task
        self._loops.clear()
        try:
            await leases.release(self.ctx.db, [lease for _, lease in unfinished])
        except Exception:
            log.exception("could not release leases on stop (they expire on their own)")
        log.info("engine stopped", extra={"owner": self.owner, "released": len(unfinished)})

    async def _heartbeat(self, stopping: asyncio.Event) -> None:
        settings = self.ctx.settings
        period = max(0.05, settings.lease_seconds * settings.lease_heartbeat_fraction / 2)
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), period)
            try:
                await leases.heartbeat(self.ctx.db, self.held_leases(), lease=self.ctx.lease, now=self.ctx.now())
            except Exception:
                log.exception("heartbeat failed")

    async def _metrics(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                await count_resources(self.ctx)
            except Exception:
                log.exception("resource metrics failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), METRICS_SECONDS)

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
