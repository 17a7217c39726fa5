"""Provisioning: poll the vendor until the instance runs with an address.

- running with an address -> `running` (`running_since` = when the vendor first showed it running)
- gone (terminated, or "not found" confirmed as engine/absence.py says) after the visibility grace
  -> `terminated` with the reason
- error state on the vendor, or no success within `provisioning_timeout_seconds` -> `deleting`
  with final status `failed`: the delete pipeline removes it and confirms before `failed`
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from gpusupply.core.errors import RateLimited, VendorError
from gpusupply.core.states import InstanceState, ResourceStatus
from gpusupply.db.models import Resource
from gpusupply.engine import leases
from gpusupply.engine.absence import sight
from gpusupply.engine.batch_reads import read_instance_batched
from gpusupply.engine.context import EngineContext
from gpusupply.engine.crash import crash_point
from gpusupply.engine.pipelines.common import age, backoff_seconds, hand_to_deletion, retry_later
from gpusupply.engine.sync import merge_observation, note_absence, observe_sighting

PROVISIONING = ResourceStatus.PROVISIONING
PIPELINE = "provision"
STATUSES = (PROVISIONING.value,)


async def step(ctx: EngineContext, lease: leases.Lease, row: Resource) -> None:
    settings = ctx.settings
    now = ctx.now()
    started = row.create_attempted_at or row.created_at
    waited = age(now, started)
    timeout = settings.provisioning_timeout_seconds
    adapter = ctx.adapter(row.vendor)
    if adapter is None or not row.vendor_instance_id:
        await retry_later(ctx, lease, 30.0, message=f"vendor {row.vendor} is not enabled here")
        return
    try:
        instance = await read_instance_batched(adapter, row.vendor_instance_id)  # polls of many instances share a listing
        now = ctx.now()  # the observation is dated when the answer is in (a paced read waits)
        if instance is None and waited < settings.create_visibility_seconds:
            # Just created: some vendors show a new instance a moment late. Not gone yet.
            await retry_later(ctx, lease, settings.provisioning_poll_seconds, count=False)
            return
        sighting = await sight(
            adapter, row.vendor_instance_id, instance,
            absent_since=row.absent_since, now=now, confirm_seconds=settings.absence_confirm_seconds,
        )
    except VendorError as exc:
        if waited > timeout:
            await _to_deletion(ctx, lease, f"provisioning timed out after {timeout:.0f} s (vendor unreadable: {exc.message})")
            return
        retry_after = exc.retry_after if isinstance(exc, RateLimited) else None
        await retry_later(ctx, lease, backoff_seconds(row.retry_count or 0, base=settings.provisioning_poll_seconds, cap=30.0, retry_after=retry_after))
        return
    if sighting.unconfirmed:
        await leases.apply(ctx.db, lease, note_absence(sighting, settings.absence_confirm_seconds))
        return
    instance = sighting.instance
    result = observe_sighting(PROVISIONING, sighting, now=now, running_since=row.running_since)
    if instance is not None and instance.state == InstanceState.ERROR:
        await _to_deletion(ctx, lease, f"vendor reports an error while provisioning ({instance.raw_status})")
        return
    if result.status is None and waited > timeout:
        await _to_deletion(ctx, lease, f"provisioning timed out after {timeout:.0f} s (vendor status {result.fields.get('vendor_status')})")
        return
    if result.status == ResourceStatus.RUNNING:
        crash_point("provision.after_running")
    poll = timedelta(seconds=settings.provisioning_poll_seconds)
    refresh = timedelta(seconds=settings.refresh_interval_seconds)

    async def merge(session: AsyncSession, fresh: Resource) -> None:
        merge_observation(session, fresh, result, computed_for=PROVISIONING, now=now)
        if fresh.status == ResourceStatus.RUNNING.value:
            fresh.retry_count = 0
            fresh.next_attempt_at = now + refresh
        elif fresh.status == PROVISIONING.value:
            fresh.next_attempt_at = now + poll
        else:
            fresh.next_attempt_at = now

    await leases.apply(ctx.db, lease, merge)


async def _to_deletion(ctx: EngineContext, lease: leases.Lease, reason: str) -> None:
    now = ctx.now()

    async def merge(session: AsyncSession, fresh: Resource) -> None:
        hand_to_deletion(session, fresh, reason, now=now, final_status=ResourceStatus.FAILED)

    await leases.apply(ctx.db, lease, merge)
