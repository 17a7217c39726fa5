"""Delete: call the vendor until it confirms the instance is gone, then the row's `final_status`.

- No vendor id but a create may have committed (`create_attempted_at`): recover the instance first
  (marker / idempotency key), then delete it. Only when the vendor shows nothing after the
  visibility window is the row finished without a vendor call.
- Gone means: a read after the delete answers the instance terminated, or answers "not found" and
  the vendor's instance list does not show it either (a delete the vendor acknowledged but did not
  carry out is not taken for done). Anything else (terminating, still running, errors) is "not
  yet": the delete is sent again, with backoff.
- Past `delete_alert_after_seconds`, one `alert` event, and retries continue every minute.
  The row is never finished without the vendor's confirmation.
"""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession

from gpusupply.core.errors import (
    AuthFailed,
    CapacityGone,
    InvalidRequest,
    NotFoundOnVendor,
    RateLimited,
    VendorError,
    VendorUnavailable,
)
from gpusupply.core.states import ResourceStatus
from gpusupply.db.models import Resource
from gpusupply.domain.events import change_status
from gpusupply.engine import leases
from gpusupply.engine.absence import confirm_deleted
from gpusupply.engine.context import EngineContext
from gpusupply.engine.crash import crash_point
from gpusupply.engine.pipelines.common import (
    age,
    backoff_seconds,
    create_request,
    create_settles_in,
    note_event,
)
from gpusupply.engine.sync import read_instance
from gpusupply.metrics import DELETION_RETRIES
from gpusupply.vendors.base import VendorAdapter

log = logging.getLogger(__name__)

PIPELINE = "delete"
STATUSES = (ResourceStatus.DELETING.value,)
SLOW_RETRY_SECONDS = 60.0  # after the alert
FAST_RETRY_CAP = 15.0


async def step(ctx: EngineContext, lease: leases.Lease, row: Resource) -> None:
    if row.vendor_instance_id:
        await delete_instance(ctx, lease, row)
        return
    if row.create_attempted_at is None or row.offer_snapshot is None:
        await finish(ctx, lease, "nothing was created on the vendor")
        return
    adapter = ctx.adapter(row.vendor)
    if adapter is None:
        await not_yet(ctx, lease, row, f"vendor {row.vendor} is not enabled here; cannot check the earlier create")
        return
    await recover_then_delete(ctx, lease, row, adapter)


async def recover_then_delete(ctx: EngineContext, lease: leases.Lease, row: Resource, adapter: VendorAdapter) -> None:
    """A create may have committed without us learning the id: find it before concluding."""
    now = ctx.now()
    try:
        instance = await adapter.recover(create_request(row, await ctx.installation()))
    except NotFoundOnVendor:
        instance = None
    except (RateLimited, VendorUnavailable, AuthFailed) as exc:
        await not_yet(ctx, lease, row, f"checking the earlier create: {exc.message}", retry_after=getattr(exc, "retry_after", None))
        return
    except (CapacityGone, InvalidRequest):  # a replayed create was refused: nothing exists
        await finish(ctx, lease, "the create never committed (the vendor refused its replay)")
        return
    except VendorError as exc:
        await unverifiable(ctx, lease, f"the earlier create's outcome cannot be recovered: {exc.message}")
        return
    if instance is not None:

        async def merge(session: AsyncSession, fresh: Resource) -> None:
            fresh.vendor_instance_id = instance.vendor_instance_id
            fresh.vendor_status = instance.raw_status
            fresh.next_attempt_at = now

        await leases.apply(ctx.db, lease, merge)
        return
    remaining = create_settles_in(row, ctx.settings, now)
    if remaining > 0:
        await not_yet(ctx, lease, row, None, delay=min(ctx.settings.provisioning_poll_seconds, remaining), count=False)
        return
    await finish(ctx, lease, f"no instance found for the create after {age(now, row.create_attempted_at):.0f} s: nothing to delete")


async def delete_instance(ctx: EngineContext, lease: leases.Lease, row: Resource) -> None:
    adapter = ctx.adapter(row.vendor)
    instance_id = row.vendor_instance_id or ""
    if adapter is None:
        await not_yet(ctx, lease, row, f"vendor {row.vendor} is not enabled here")
        return
    crash_point("delete.before_vendor")
    try:
        await adapter.delete(instance_id)
    except NotFoundOnVendor:
        pass  # gone already
    except VendorError as exc:
        DELETION_RETRIES.labels(adapter.vendor).inc()
        await not_yet(ctx, lease, row, f"vendor delete failed: {type(exc).__name__}: {exc.message}", retry_after=getattr(exc, "retry_after", None))
        return
    crash_point("delete.after_vendor")
    try:
        instance = await read_instance(adapter, instance_id)
        gone, vendor_status = await confirm_deleted(adapter, instance_id, instance)
    except VendorError as exc:
        DELETION_RETRIES.labels(adapter.vendor).inc()
        await not_yet(ctx, lease, row, f"could not confirm the delete: {exc.message}", retry_after=getattr(exc, "retry_after", None))
        return
    if gone:
        await finish(ctx, lease, "vendor confirmed the instance is gone", vendor_status=vendor_status)
        return
    DELETION_RETRIES.labels(adapter.vendor).inc()
    await not_yet(ctx, lease, row, f"vendor still shows the instance ({vendor_status})", delay=ctx.settings.provisioning_poll_seconds)


NOT_FOUND = "not found"


async def finish(ctx: EngineContext, lease: leases.Lease, reason: str, *, vendor_status: str | None = None) -> None:
    now = ctx.now()

    async def merge(session: AsyncSession, fresh: Resource) -> None:
        final = ResourceStatus(fresh.final_status or ResourceStatus.DELETED.value)
        if vendor_status is not None:
            fresh.vendor_status = vendor_status
        elif fresh.vendor_instance_id:
            fresh.vendor_status = NOT_FOUND  # what the vendor last said: the instance is not there
        fresh.last_synced_at = now
        fresh.ended_at = fresh.ended_at or now
        change_status(session, fresh, final, _final_reason(fresh, reason), at=now)

    await leases.apply(ctx.db, lease, merge)


def _final_reason(row: Resource, confirmation: str) -> str:
    if row.final_status == ResourceStatus.FAILED.value and row.status_message:
        return f"{row.status_message}; {confirmation}"
    return confirmation


async def not_yet(
    ctx: EngineContext,
    lease: leases.Lease,
    row: Resource,
    message: str | None,
    *,
    retry_after: float | None = None,
    delay: float | None = None,
    count: bool = True,
) -> None:
    """Not confirmed yet: retry with backoff; past the alert threshold, alert once and slow down."""
    now = ctx.now()
    settings = ctx.settings
    overdue = age(now, row.delete_requested_at or row.updated_at) > settings.delete_alert_after_seconds
    if delay is None:
        delay = backoff_seconds(row.retry_count or 0, cap=FAST_RETRY_CAP, retry_after=retry_after)
    if overdue:
        delay = max(delay, SLOW_RETRY_SECONDS)
    when = ctx.after(delay)

    async def merge(session: AsyncSession, fresh: Resource) -> None:
        fresh.next_attempt_at = when
        if count:
            fresh.retry_count = (fresh.retry_count or 0) + 1
        if message:
            fresh.status_message = f"deleting: {message}"
        if overdue and not fresh.delete_alerted:
            fresh.delete_alerted = True
            note_event(
                session, fresh, "alert",
                f"delete not confirmed after {settings.delete_alert_after_seconds:.0f} s (last: {message}); still retrying. "
                "The instance may still bill: check the vendor console.",
                now=now, data={"vendor_instance_id": fresh.vendor_instance_id},
            )

    if overdue and not row.delete_alerted:
        log.warning("delete overdue", extra={"resource_id": str(row.id), "vendor": row.vendor, "reason": message})
    await leases.apply(ctx.db, lease, merge)


async def unverifiable(ctx: EngineContext, lease: leases.Lease, reason: str) -> None:
    """The vendor gives no way to find the instance (fal past its idempotency window). End as `failed`
    (never `deleted`: nothing confirmed it) with an alert, so a person checks the vendor."""
    now = ctx.now()

    async def merge(session: AsyncSession, fresh: Resource) -> None:
        note_event(session, fresh, "alert", f"{reason}: an instance may exist on {fresh.vendor}; check its console", now=now)
        change_status(session, fresh, ResourceStatus.FAILED, f"delete could not be verified: {reason}", at=now)

    log.warning("delete unverifiable", extra={"resource_id": str(lease.resource_id), "reason": reason})
    await leases.apply(ctx.db, lease, merge)
