"""A pipeline: a fetch loop that leases due rows in some statuses and runs one step per row.

Each step follows load -> vendor I/O (outside any transaction) -> guarded apply (engine/leases.py).
The engine runs one heartbeat for every lease its pipelines hold, so a lease can be short while a
vendor call is slow, and a lease left by a dead process expires and is taken over.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import Counter
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession

from gpusupply.db.models import Resource
from gpusupply.domain.hints import wait_for_hint
from gpusupply.engine import leases
from gpusupply.engine.context import EngineContext
from gpusupply.engine.pipelines.common import backoff_seconds

log = logging.getLogger(__name__)

Step = Callable[[EngineContext, leases.Lease, Resource], Awaitable[None]]


class Pipeline:
    def __init__(
        self, ctx: EngineContext, name: str, statuses: tuple[str, ...], step: Step, *, workers: int, resource_type: str = "vm"
    ):
        self.ctx = ctx
        self.resource_type = resource_type
        self.name = name
        self.statuses = statuses
        self.step = step
        self.workers = max(1, workers)
        # Each vendor gets at most its share of the workers: steps wait on a vendor's pacer (or a
        # hanging vendor's timeout) while holding a worker, and one busy vendor must not starve
        # the others' steps.
        self.vendor_share = max(1, math.ceil(self.workers / max(1, len(ctx.vendors.adapters))))
        self.active: dict[asyncio.Task[None], leases.Lease] = {}
        self.steps_done = 0
        self._held_back: set[str] = set()  # vendors at their share at the last claim
        self._share_freed = asyncio.Event()  # a step of a held-back vendor finished

    def vendor_room(self) -> dict[str, int]:
        """How many more rows of each vendor this pipeline may take now."""
        busy = Counter(lease.vendor for lease in self.active.values() if lease.vendor is not None)
        room = {vendor: self.vendor_share - busy[vendor] for vendor in self.ctx.vendors.adapters}
        self._held_back = {vendor for vendor, n in room.items() if n <= 0}
        return room

    async def _idle(self, seconds: float) -> None:
        """Wait for a hint (new work), or for a held-back vendor's step to finish, or `seconds`."""
        if not self._held_back:
            await wait_for_hint(seconds)
            return
        freed = asyncio.ensure_future(self._share_freed.wait())
        hinted = asyncio.ensure_future(wait_for_hint(seconds))
        try:
            await asyncio.wait({freed, hinted}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            freed.cancel()
            hinted.cancel()
            self._share_freed.clear()

    @property
    def held(self) -> list[leases.Lease]:
        return list(self.active.values())

    async def run(self, stopping: asyncio.Event) -> None:
        idle = self.ctx.settings.engine_poll_seconds
        while not stopping.is_set():
            free = self.workers - len(self.active)
            claimed: list[leases.Lease] = []
            if free > 0:
                try:
                    claimed = await leases.claim(
                        self.ctx.db,
                        pipeline=self.name,
                        owner=self.ctx.owner,
                        statuses=self.statuses,
                        limit=free,
                        lease=self.ctx.lease,
                        now=self.ctx.now(),
                        vendor_room=self.vendor_room(),
                        resource_type=self.resource_type,
                    )
                except Exception:
                    log.exception("claim failed", extra={"pipeline": self.name})
                    await asyncio.sleep(idle)
                    continue
            for lease in claimed:
                task = asyncio.create_task(self._work(lease), name=f"{self.name}:{lease.resource_id}")
                self.active[task] = lease
                task.add_done_callback(self._done)
            if claimed and len(claimed) < free:
                continue  # maybe more became due meanwhile; the next claim answers quickly if not
            if len(self.active) >= self.workers:
                await asyncio.wait(list(self.active), timeout=idle, return_when=asyncio.FIRST_COMPLETED)
                continue
            if not claimed:
                await self._idle(idle)

    def _done(self, task: asyncio.Task[None]) -> None:
        lease = self.active.pop(task, None)
        self.steps_done += 1
        if lease is not None and lease.vendor in self._held_back:
            self._share_freed.set()  # its rows waiting for a worker can be claimed now

    async def _work(self, lease: leases.Lease) -> None:
        try:
            row = await leases.load(self.ctx.db, lease)
            if row is None:
                log.info("lease lost before the step", extra={"pipeline": self.name, "resource_id": str(lease.resource_id)})
                return
            if row.status not in self.statuses:
                await leases.release(self.ctx.db, [lease])  # moved on meanwhile: another pipeline's work now
                return
            await self.step(self.ctx, lease, row)
        except leases.LeaseLost:
            log.info("lease lost; dropping the step's result", extra={"pipeline": self.name, "resource_id": str(lease.resource_id)})
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("step failed", extra={"pipeline": self.name, "resource_id": str(lease.resource_id)})
            await self._back_off(lease)

    async def _back_off(self, lease: leases.Lease) -> None:
        """An unexpected error: keep the row, count it, try again later."""
        async def merge(session: AsyncSession, row: Resource) -> None:
            row.retry_count = (row.retry_count or 0) + 1
            row.next_attempt_at = self.ctx.after(backoff_seconds(row.retry_count, base=2.0))

        try:
            await leases.apply(self.ctx.db, lease, merge)
        except Exception:
            log.exception("could not record the failed step", extra={"pipeline": self.name})
