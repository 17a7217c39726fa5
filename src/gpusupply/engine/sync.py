"""Reading a vendor instance onto our resource.

`observe` is pure: given our status and what the vendor shows (an instance, or nothing: gone),
it says what our row should become. The pipelines (provisioning poll, actions, refresh), the
reconciler and `refresh_resource` (the API's `GET /resources/{id}?force_refresh`) all use it, so
the mapping exists once.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from gpusupply.core.errors import VendorError
from gpusupply.core.states import InstanceState, ResourceStatus
from gpusupply.db.models import Resource, utcnow
from gpusupply.db.session import Database
from gpusupply.domain.events import change_status
from gpusupply.engine import leases
from gpusupply.engine.absence import Sighting, sight
from gpusupply.engine.batch_reads import read_instance
from gpusupply.engine.context import Clock
from gpusupply.vendors.base import VendorInstance

log = logging.getLogger(__name__)

S = ResourceStatus
I = InstanceState  # noqa: E741 - short alias keeps the tables below readable

# Our statuses whose row reflects a vendor instance that exists (or existed) and can be read.
OBSERVABLE = frozenset({S.PROVISIONING, S.RUNNING, S.STOPPED, S.STOPPING, S.STARTING, S.REBOOTING})
# Statuses the refresh keeps true on a cadence.
STEADY = frozenset({S.RUNNING, S.STOPPED})


@dataclass(slots=True)
class SyncResult:
    status: ResourceStatus | None = None  # the status to move to; None keeps the current one
    reason: str | None = None
    gone: bool = False  # the vendor no longer has the instance
    fields: dict[str, Any] = field(default_factory=dict)  # columns to write


def _has_address(instance: VendorInstance) -> bool:
    return bool(instance.external_ip or instance.ssh_host)


def _next_status(status: ResourceStatus, instance: VendorInstance) -> tuple[ResourceStatus | None, str | None]:
    state = instance.state
    raw = instance.raw_status or state.value
    if state == I.RUNNING:
        if status == S.PROVISIONING and _has_address(instance):
            return S.RUNNING, "vendor reports the instance running"
        if status == S.STARTING and _has_address(instance):
            return S.RUNNING, "started"
        if status == S.REBOOTING:
            return S.RUNNING, "rebooted"
        if status == S.STOPPED:
            return S.RUNNING, f"vendor reports the instance running ({raw})"
        return None, None
    if state == I.STOPPED:
        if status == S.STOPPING:
            return S.STOPPED, "stopped"
        if status == S.RUNNING:
            return S.STOPPED, f"vendor reports the instance stopped ({raw})"
        return None, None
    if state == I.ERROR and status in STEADY:
        return None, f"vendor reports an error state ({raw})"
    return None, None


def observe(status: ResourceStatus, instance: VendorInstance | None, *, now: datetime, running_since: datetime | None) -> SyncResult:
    """What our row should become, given what the vendor shows. Pure.

    `instance=None` means the vendor answered "not found".
    """
    if instance is None or instance.state == I.TERMINATED:
        reason: str | None = "instance vanished on the vendor (not found)" if instance is None else (
            f"vendor reports the instance terminated ({instance.raw_status or 'terminated'})"
        )
        fields: dict[str, Any] = {"last_synced_at": now, "vendor_status": instance.raw_status if instance else "not found"}
        return SyncResult(S.TERMINATED, reason, gone=True, fields=fields)
    fields = {"last_synced_at": now, "vendor_status": instance.raw_status}
    if instance.state == I.RUNNING and _has_address(instance):
        fields.update(external_ip=instance.external_ip, ssh_host=instance.ssh_host, ssh_port=instance.ssh_port)
        if instance.extra.get("ssh_user"):
            fields["ssh_user"] = str(instance.extra["ssh_user"])
    if instance.vendor_region:
        fields["vendor_region"] = instance.vendor_region
    new_status, reason = _next_status(status, instance)
    if new_status == S.RUNNING and running_since is None:
        fields["running_since"] = now
    return SyncResult(new_status, reason, fields=fields)


def merge_observation(session: AsyncSession, row: Resource, result: SyncResult, *, computed_for: ResourceStatus, now: datetime) -> bool:
    """Write `result` onto the fresh row. The status moves only if the row still has the status the
    result was computed for (the API may have moved it meanwhile: then keep the API's status).
    Returns True when the status changed."""
    for key, value in result.fields.items():
        if key == "running_since" and row.running_since is not None:
            continue
        setattr(row, key, value)
    if result.status is not None and row.status == computed_for.value:
        return change_status(session, row, result.status, result.reason, at=now)
    if result.status is None and result.reason and row.status_message != result.reason:
        row.status_message = result.reason
    return False


REFRESH_PIPELINE = "refresh"


async def refresh_leased(
    db: Database, adapter: Any, lease: leases.Lease, row: Resource, *, clock: Clock, refresh_seconds: float, confirm_seconds: float
) -> SyncResult | None:
    """Re-read a running/stopped resource we hold the lease on, and apply what the vendor shows.

    A "not found" ends the row only once confirmed (engine/absence.py); until then the row keeps
    its status and is read again after `confirm_seconds`. Returns the result, or None when the
    vendor could not be read or the absence is not confirmed yet (the row keeps its status).

    The observation is dated when the vendor's answer is in, not when the step began: a paced
    read can wait seconds, and an end dated before the vendor ended the instance would bill less
    than the vendor does."""
    status = ResourceStatus(row.status)
    instance_id = row.vendor_instance_id or ""
    try:
        instance = await read_instance(adapter, instance_id)
        now = clock()
        sighting = await sight(adapter, instance_id, instance, absent_since=row.absent_since, now=now, confirm_seconds=confirm_seconds)
    except VendorError as exc:
        log.info("refresh: vendor read failed", extra={"resource_id": str(row.id), "error": str(exc)})
        retry_at = clock() + timedelta(seconds=refresh_seconds)

        async def keep(session: AsyncSession, fresh: Resource) -> None:
            fresh.next_attempt_at = retry_at

        await leases.apply(db, lease, keep)
        return None
    if sighting.unconfirmed:
        await leases.apply(db, lease, note_absence(sighting, confirm_seconds))
        return None
    result = observe_sighting(status, sighting, now=now, running_since=row.running_since)
    next_refresh = now + timedelta(seconds=refresh_seconds)

    async def merge(session: AsyncSession, fresh: Resource) -> None:
        merge_observation(session, fresh, result, computed_for=status, now=now)
        fresh.next_attempt_at = now if fresh.status != status.value else next_refresh

    await leases.apply(db, lease, merge)
    return result


def observe_sighting(status: ResourceStatus, sighting: Sighting, *, now: datetime, running_since: datetime | None) -> SyncResult:
    """`observe` for a sighting that is not `unconfirmed`: seen (absence cleared) or confirmed gone."""
    result = observe(status, sighting.instance, now=now, running_since=running_since)
    if sighting.gone and sighting.note and sighting.instance is None:
        result.reason = f"instance vanished on the vendor ({sighting.note})"
    if not sighting.gone:
        result.fields["absent_since"] = None
        if sighting.note and result.reason is None:
            result.reason = sighting.note
    return result


def note_absence(sighting: Sighting, confirm_seconds: float) -> Any:
    """The merge for an unconfirmed "not found": record it and look again after the delay."""
    assert sighting.absent_since is not None
    recheck = sighting.absent_since + timedelta(seconds=confirm_seconds)

    async def merge(session: AsyncSession, fresh: Resource) -> None:
        if fresh.absent_since is None:
            fresh.absent_since = sighting.absent_since
        fresh.status_message = sighting.note
        fresh.next_attempt_at = recheck

    return merge


async def refresh_resource(
    db: Database,
    vendors: Any,
    resource_id: uuid.UUID,
    *,
    settings: Any = None,
    owner: str = "api",
    clock: Clock = utcnow,
) -> None:
    """Re-read one resource from its vendor now (the API's force_refresh and 30 s staleness rule).

    Only steady resources (running, stopped) are read here: the others are being driven by an
    engine pipeline that polls the vendor anyway. If an engine process holds the row's lease at
    this moment, this returns without reading: that process is working on it.
    """
    if settings is None:
        from gpusupply.settings import get_settings

        settings = get_settings()

    now = clock()
    claimed = await leases.claim(
        db,
        pipeline="refresh-api",
        owner=owner,
        statuses=[s.value for s in STEADY],
        limit=1,
        lease=timedelta(seconds=settings.lease_seconds),
        now=now,
        resource_id=resource_id,
        due_only=False,
    )
    if not claimed:
        return
    lease = claimed[0]
    try:
        row = await leases.load(db, lease)
        adapter = vendors.adapters.get(row.vendor) if row is not None and row.vendor else None
        if row is None or adapter is None or not row.vendor_instance_id:
            await leases.release(db, [lease])
            return
        await refresh_leased(
            db, adapter, lease, row, clock=clock, refresh_seconds=settings.refresh_interval_seconds, confirm_seconds=settings.absence_confirm_seconds
        )
    except leases.LeaseLost:
        return
    except BaseException:
        await leases.release(db, [lease])
        raise
