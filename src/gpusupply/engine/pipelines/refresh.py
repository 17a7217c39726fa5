"""Refresh: running and stopped resources are re-read every `refresh_interval_seconds`, so status,
address and `last_synced_at` stay true. A vanished instance (terminated on the vendor: preempted,
deleted elsewhere; or "not found" confirmed as engine/absence.py says) moves the row to
`terminated` with the reason."""

from __future__ import annotations

from gpusupply.core.states import ResourceStatus
from gpusupply.db.models import Resource
from gpusupply.engine import leases
from gpusupply.engine.context import EngineContext
from gpusupply.engine.pipelines.common import retry_later
from gpusupply.engine.sync import refresh_leased

PIPELINE = "refresh"
STATUSES = (ResourceStatus.RUNNING.value, ResourceStatus.STOPPED.value)


async def step(ctx: EngineContext, lease: leases.Lease, row: Resource) -> None:
    adapter = ctx.adapter(row.vendor)
    if adapter is None or not row.vendor_instance_id:
        await retry_later(ctx, lease, ctx.settings.refresh_interval_seconds, message=f"vendor {row.vendor} is not enabled here", count=False)
        return
    settings = ctx.settings
    await refresh_leased(
        ctx.db, adapter, lease, row, clock=ctx.now, refresh_seconds=settings.refresh_interval_seconds, confirm_seconds=settings.absence_confirm_seconds
    )
