"""Periodic jobs under a job lease (domain/job_leases.py): at most one process runs a job at a
time, at most once per interval, and a job left by a dead process is taken over once its lease
expires."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import func, select

from gpusupply.core.states import ResourceStatus
from gpusupply.db.models import Resource
from gpusupply.domain import job_leases
from gpusupply.engine.context import Clock, EngineContext
from gpusupply.metrics import RESOURCES_BY_STATUS

log = logging.getLogger(__name__)

MAX_CHECK_SECONDS = 5.0


class BackgroundJob(Protocol):
    """What the runner starts: a named loop that ends when `stopping` is set."""

    name: str

    async def loop(self, stopping: asyncio.Event) -> None: ...


class PeriodicJob:
    def __init__(
        self,
        ctx: EngineContext,
        name: str,
        interval_seconds: float,
        run: Callable[[], Awaitable[bool]],
        *,
        clock: Clock | None = None,
    ):
        """`run` returns whether the round counts: False (e.g. rate limited) runs it again soon.
        `clock`: the time the lease is judged by, for a job that does not follow the engine's
        (test-movable) clock."""
        self.ctx = ctx
        self.name = name
        self.interval = timedelta(seconds=interval_seconds)
        self._run = run
        self._clock = clock or ctx.now
        self.runs = 0

    def now(self) -> datetime:
        return self._clock()

    async def run_once(self) -> bool:
        """Run the job if this process gets its lease now; True when it ran."""
        ctx = self.ctx
        token = await job_leases.claim_job(ctx.db, self.name, owner=ctx.owner, lease=ctx.lease, interval=self.interval, now=self.now())
        if token is None:
            return False
        beat = asyncio.create_task(self._heartbeat(token))
        ran = False
        counts = True
        try:
            counts = bool(await self._run())
            ran = True
        except Exception:
            log.exception("periodic job failed", extra={"job": self.name})
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
            await job_leases.finish_job(ctx.db, self.name, token, now=self.now(), ran=counts)
        self.runs += int(ran)
        return ran

    async def _heartbeat(self, token: uuid.UUID) -> None:
        period = self.ctx.settings.lease_seconds * self.ctx.settings.lease_heartbeat_fraction
        while True:
            await asyncio.sleep(period)
            await job_leases.heartbeat_job(self.ctx.db, self.name, token, lease=self.ctx.lease, now=self.now())

    async def loop(self, stopping: asyncio.Event) -> None:
        check = min(self.interval.total_seconds(), MAX_CHECK_SECONDS)
        while not stopping.is_set():
            try:
                await self.run_once()
            except Exception:
                log.exception("periodic job could not be scheduled", extra={"job": self.name})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), check)


async def count_resources(ctx: EngineContext) -> dict[str, int]:
    """Resources by status, into the gauge (every process may do it: it only reads)."""
    async with ctx.db.session() as session:
        rows = (await session.execute(select(Resource.status, func.count()).group_by(Resource.status))).all()
    counts = {status.value: 0 for status in ResourceStatus}
    counts.update({status: int(n) for status, n in rows})
    for status, n in counts.items():
        RESOURCES_BY_STATUS.labels(status).set(n)
    return counts
