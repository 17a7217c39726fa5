"""Stop, start and reboot: the API sets `pending_action` and `stopping`/`starting`/`rebooting`; the
engine sends the action once (clearing `pending_action` when the vendor accepted it), then reads
the instance until it reaches the target state (`stopped` / `running`).

Before sending, the instance is read: if it already is where the action leads (a crash after the
vendor accepted it, or a change made outside), nothing is sent again.
A refused action (unsupported, invalid in the vendor's current state) or one that does not
complete within `provisioning_timeout_seconds` puts the row back where the vendor says it is.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from gpusupply.core.errors import InvalidRequest, NotFoundOnVendor, RateLimited, Unsupported, VendorError
from gpusupply.core.states import InstanceState, ResourceStatus
from gpusupply.db.models import Resource
from gpusupply.domain.events import change_status
from gpusupply.engine import leases
from gpusupply.engine.absence import Sighting, sight
from gpusupply.engine.context import EngineContext
from gpusupply.engine.pipelines.common import age, backoff_seconds, entered_status_at, retry_later
from gpusupply.engine.sync import SyncResult, merge_observation, note_absence, observe_sighting, read_instance
from gpusupply.vendors.base import VendorInstance

S = ResourceStatus
PIPELINE = "actions"
STATUSES = (S.STOPPING.value, S.STARTING.value, S.REBOOTING.value)
ACTION = {S.STOPPING: "stop", S.STARTING: "start", S.REBOOTING: "reboot"}
# Where a refused or timed-out action leaves the row.
REVERT = {S.STOPPING: S.RUNNING, S.STARTING: S.STOPPED, S.REBOOTING: S.RUNNING}


def already_done(status: ResourceStatus, instance: VendorInstance) -> bool:
    """Whether the instance is already where the action leads (so it must not be sent again)."""
    if status == S.STOPPING:
        return instance.state == InstanceState.STOPPED
    if status == S.STARTING:
        return instance.state == InstanceState.RUNNING and bool(instance.external_ip or instance.ssh_host)
    return False  # a reboot leaves no trace to detect: it is sent (again)


def already_sent(status: ResourceStatus, instance: VendorInstance) -> bool:
    """Whether the vendor is already carrying the action out (sent before a crash, or elsewhere):
    sending it again could be refused as invalid in that state."""
    if status == S.STOPPING:
        return instance.state == InstanceState.STOPPING
    if status == S.REBOOTING:
        return instance.state == InstanceState.REBOOTING
    return False


async def step(ctx: EngineContext, lease: leases.Lease, row: Resource) -> None:
    status = S(row.status)
    now = ctx.now()
    adapter = ctx.adapter(row.vendor)
    if adapter is None or not row.vendor_instance_id:
        await _revert(ctx, lease, status, f"{ACTION[status]} not possible: no vendor instance known")
        return
    try:
        sighting = await _sight(ctx, adapter, row, await read_instance(adapter, row.vendor_instance_id))
    except VendorError as exc:
        await retry_later(ctx, lease, backoff_seconds(row.retry_count or 0, retry_after=getattr(exc, "retry_after", None)), message=f"{ACTION[status]}: {exc.message}")
        return
    if sighting.unconfirmed:
        await leases.apply(ctx.db, lease, note_absence(sighting, ctx.settings.absence_confirm_seconds))
        return
    if sighting.gone:
        await _apply_observation(ctx, lease, status, observe_sighting(status, sighting, now=now, running_since=row.running_since))
        return
    instance = sighting.instance
    assert instance is not None
    if row.pending_action and not already_done(status, instance) and not already_sent(status, instance):
        await _send(ctx, lease, row, status, adapter)
        return
    result = observe_sighting(status, sighting, now=now, running_since=row.running_since)
    if result.status is None:
        since = await entered_status_at(ctx.db, row.id, row.status) or row.updated_at
        timeout = ctx.settings.provisioning_timeout_seconds
        if age(now, since) > timeout:
            await _revert(ctx, lease, status, f"{ACTION[status]} did not complete within {timeout:.0f} s (vendor status {instance.raw_status})", fields=result.fields)
            return
    await _apply_observation(ctx, lease, status, result)


async def _sight(ctx: EngineContext, adapter: object, row: Resource, answer: VendorInstance | None) -> Sighting:
    return await sight(
        adapter, row.vendor_instance_id or "", answer,
        absent_since=row.absent_since, now=ctx.now(), confirm_seconds=ctx.settings.absence_confirm_seconds,
    )


async def _send(ctx: EngineContext, lease: leases.Lease, row: Resource, status: ResourceStatus, adapter: object) -> None:
    action = ACTION[status]
    instance_id = row.vendor_instance_id or ""
    try:
        await getattr(adapter, action)(instance_id)
    except (Unsupported, InvalidRequest) as exc:
        await _revert(ctx, lease, status, f"{action} refused by the vendor: {exc.vendor_message}")
        return
    except NotFoundOnVendor:
        try:
            sighting = await _sight(ctx, adapter, row, None)
        except VendorError as exc:
            await retry_later(ctx, lease, backoff_seconds(row.retry_count or 0, retry_after=getattr(exc, "retry_after", None)), message=f"{action}: {exc.message}")
            return
        if sighting.unconfirmed:
            await leases.apply(ctx.db, lease, note_absence(sighting, ctx.settings.absence_confirm_seconds))
        else:  # gone (confirmed), or shown after all: the next step sends the action again if needed
            await _apply_observation(ctx, lease, status, observe_sighting(status, sighting, now=ctx.now(), running_since=row.running_since))
        return
    except VendorError as exc:
        retry_after = exc.retry_after if isinstance(exc, RateLimited) else None
        await retry_later(ctx, lease, backoff_seconds(row.retry_count or 0, retry_after=retry_after), message=f"{action}: {exc.message}")
        return
    when = ctx.after(ctx.settings.provisioning_poll_seconds)

    async def merge(session: AsyncSession, fresh: Resource) -> None:
        if fresh.status == status.value:
            fresh.pending_action = None
            fresh.retry_count = 0
            fresh.status_message = f"{action} accepted by the vendor"
        fresh.next_attempt_at = when

    await leases.apply(ctx.db, lease, merge)


async def _apply_observation(ctx: EngineContext, lease: leases.Lease, status: ResourceStatus, result: SyncResult) -> None:
    now = ctx.now()
    poll = timedelta(seconds=ctx.settings.provisioning_poll_seconds)
    refresh = timedelta(seconds=ctx.settings.refresh_interval_seconds)

    async def merge(session: AsyncSession, fresh: Resource) -> None:
        moved = merge_observation(session, fresh, result, computed_for=status, now=now)
        if moved:
            fresh.pending_action = None
            fresh.retry_count = 0
        if fresh.status in (S.RUNNING.value, S.STOPPED.value):
            fresh.next_attempt_at = now + refresh
        elif fresh.status == status.value:
            fresh.next_attempt_at = now + poll
        else:
            fresh.next_attempt_at = now

    await leases.apply(ctx.db, lease, merge)


async def _revert(ctx: EngineContext, lease: leases.Lease, status: ResourceStatus, reason: str, *, fields: dict | None = None) -> None:
    now = ctx.now()
    refresh = timedelta(seconds=ctx.settings.refresh_interval_seconds)

    async def merge(session: AsyncSession, fresh: Resource) -> None:
        for key, value in (fields or {}).items():
            if key != "running_since":
                setattr(fresh, key, value)
        if fresh.status == status.value:
            fresh.pending_action = None
            change_status(session, fresh, REVERT[status], reason, at=now)
            fresh.next_attempt_at = now  # the refresh reads where it really is right away
        else:
            fresh.next_attempt_at = now + refresh if fresh.status in (S.RUNNING.value, S.STOPPED.value) else now

    await leases.apply(ctx.db, lease, merge)
