"""The reconciler: per vendor, list every instance of our account and compare with our rows.

- Orphans: instances carrying our marker (`gpusupply-<resource id>`) that no live resource owns
  (the resource is final or unknown, or it owns another instance: a duplicate). First seen is kept
  in `VendorState.orphan_candidates`; once older than `orphan_grace_seconds` they are deleted on
  the vendor, with an `orphan_terminated` event and metrics.
- Vanished: live resources whose instance is not in the list. The list may lag, so only rows
  older than the visibility window count, and each is read once more (`get`) before it becomes
  `terminated`. The row's lease is taken first; a row a pipeline is working on is left to it.
- Instances without our marker, and not matched by a stored id, are never touched.
  fal instances carry no marker: there the reconciler matches by stored id only, so it finds
  vanished resources but cannot recognise an orphan (it logs how many unmatched instances exist).
- Fail closed: a failed, malformed or suspicious list (empty while we have established instances
  there) changes nothing and marks the vendor degraded; a good list clears it. A rate-limited
  list is not a failure: nothing changes and the round is repeated soon.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gpusupply.core.errors import RateLimited, VendorError
from gpusupply.core.states import FINAL_STATUSES, LIVE_STATUSES, InstanceState, ResourceStatus
from gpusupply.db.models import Event, Resource, VendorState
from gpusupply.engine import leases
from gpusupply.engine.context import EngineContext
from gpusupply.engine.sync import merge_observation, observe, read_instance
from gpusupply.metrics import ORPHANS_FOUND, ORPHANS_TERMINATED, VENDOR_DEGRADED
from gpusupply.services.events import add_event
from gpusupply.vendors.base import VendorInstance

log = logging.getLogger(__name__)

S = ResourceStatus
PIPELINE = "reconcile"
# Rows whose instance must be in the list (pending rows have none yet; deleting rows are the
# delete pipeline's to confirm).
EXPECTED_IN_LIST = frozenset({S.PROVISIONING, S.RUNNING, S.STOPPED, S.STOPPING, S.STARTING, S.REBOOTING})
GONE_STATES = frozenset({InstanceState.TERMINATED})


@dataclass(frozen=True, slots=True)
class KnownResource:
    """What the plan needs of one of our rows."""

    id: uuid.UUID
    tenant_id: uuid.UUID | None
    status: ResourceStatus
    vendor: str | None
    vendor_instance_id: str | None
    since: datetime  # create_attempted_at, else created_at: when an instance could first exist


@dataclass(slots=True)
class ReconcilePlan:
    problem: str | None = None  # set: the list is not trustworthy; change nothing
    terminate: list[VendorInstance] = field(default_factory=list)  # orphans past their grace
    newly_found: list[VendorInstance] = field(default_factory=list)  # orphans first seen now
    candidates: dict[str, str] = field(default_factory=dict)  # orphan instance id -> first seen (ISO)
    vanished: list[uuid.UUID] = field(default_factory=list)  # live rows whose instance is not listed
    unmatched: int = 0  # instances that are not ours (or not recognisable as ours)


def listing_problem(listing: Any) -> str | None:
    """Why a list cannot be trusted as the complete truth, or None. Pure."""
    if not isinstance(listing, list):
        return f"list is a {type(listing).__name__}, not a list"
    seen: set[str] = set()
    for item in listing:
        if not isinstance(item, VendorInstance) or not item.vendor_instance_id:
            return "list has an entry without an instance id"
        if item.vendor_instance_id in seen:
            return f"list repeats instance {item.vendor_instance_id}"
        seen.add(item.vendor_instance_id)
    return None


def plan_reconcile(
    listing: Sequence[VendorInstance],
    resources: Sequence[KnownResource],
    marker_rows: dict[uuid.UUID, KnownResource],
    candidates: dict[str, str],
    *,
    now: datetime,
    listed_at: datetime,
    grace_seconds: float,
    visibility_seconds: float,
) -> ReconcilePlan:
    """Compare one vendor's full list with our rows. Pure: the caller acts on the plan.

    `resources` are our live rows on this vendor; `marker_rows` are the rows (any status) named by
    markers in the list.
    """
    problem = listing_problem(list(listing))
    if problem:
        return ReconcilePlan(problem=problem)
    settled_before = listed_at - timedelta(seconds=visibility_seconds)
    by_instance = {r.vendor_instance_id: r for r in resources if r.vendor_instance_id and r.status in LIVE_STATUSES}
    present = {i.vendor_instance_id for i in listing if i.state not in GONE_STATES}
    established = [r for r in resources if r.status in EXPECTED_IN_LIST and r.vendor_instance_id and r.since < settled_before]
    if not present and established:
        return ReconcilePlan(problem=f"empty list while {len(established)} of our instances should be there")
    plan = ReconcilePlan()
    for instance in listing:
        if instance.state in GONE_STATES or instance.vendor_instance_id in by_instance:
            continue
        rid = instance.resource_id
        if rid is None:
            plan.unmatched += 1
            continue
        owner = marker_rows.get(rid)
        if owner is not None and owner.status not in FINAL_STATUSES and owner.vendor_instance_id is None:
            continue  # a create in flight or being recovered: its pipeline will claim this instance
        first_seen = candidates.get(instance.vendor_instance_id)
        if first_seen is None:
            first_seen = now.isoformat()
            plan.newly_found.append(instance)
        plan.candidates[instance.vendor_instance_id] = first_seen
        if (now - datetime.fromisoformat(first_seen)).total_seconds() >= grace_seconds:
            plan.terminate.append(instance)
    plan.vanished = [r.id for r in established if r.vendor_instance_id not in present]
    return plan


# The columns a plan needs: a sweep reads these for every live row of a vendor, never whole rows
# (offer snapshots, attempts and keys would cost memory and time for thousands of rows).
KNOWN_COLUMNS = (
    Resource.id, Resource.tenant_id, Resource.status, Resource.vendor, Resource.vendor_instance_id,
    Resource.create_attempted_at, Resource.created_at,
)


def _known(row: Any) -> KnownResource:
    """From a `Resource` or a row of `KNOWN_COLUMNS`."""
    return KnownResource(row.id, row.tenant_id, S(row.status), row.vendor, row.vendor_instance_id, row.create_attempted_at or row.created_at)


@dataclass(slots=True)
class ReconcileReport:
    vendor: str
    degraded: str | None = None
    listed: int = 0
    orphans_terminated: list[str] = field(default_factory=list)
    orphans_pending: int = 0
    vanished: list[uuid.UUID] = field(default_factory=list)
    unmatched: int = 0
    retry_soon: bool = False  # the round did not happen (rate limited): run again before the interval


async def reconcile_vendor(ctx: EngineContext, vendor: str) -> ReconcileReport:
    report = ReconcileReport(vendor)
    adapter = ctx.adapter(vendor)
    if adapter is None:
        return report
    listed_at = ctx.now()
    try:
        listing = await adapter.list_instances()
    except RateLimited as exc:
        # The vendor is up but busy: not a health problem. Nothing changes; try again soon.
        report.retry_soon = True
        log.info("reconcile: list rate limited; retrying soon", extra={"vendor": vendor, "retry_after": exc.retry_after})
        return report
    except VendorError as exc:
        report.degraded = f"list failed: {type(exc).__name__}: {exc.message}"
        await mark_degraded(ctx, vendor, report.degraded)
        return report
    problem = listing_problem(listing)
    if problem:
        report.degraded = f"malformed list: {problem}"
        await mark_degraded(ctx, vendor, report.degraded)
        return report
    report.listed = len(listing)
    async with ctx.db.session() as session:
        live = [_known(r) for r in await session.execute(
            select(*KNOWN_COLUMNS).where(Resource.vendor == vendor, Resource.status.in_([s.value for s in LIVE_STATUSES]))
        )]
        # Rows named by markers: the live ones are known already; read only the others.
        known_ids = {r.id for r in live}
        marker_ids = {i.resource_id for i in listing if i.resource_id is not None and i.resource_id not in known_ids}
        others = [_known(r) for r in await session.execute(select(*KNOWN_COLUMNS).where(Resource.id.in_(marker_ids)))] if marker_ids else []
        state = await session.get(VendorState, vendor)
    candidates = dict(state.orphan_candidates or {}) if state is not None else {}
    marked = {r.id: r for r in [*live, *others]}
    now = ctx.now()
    plan = plan_reconcile(
        listing,
        live,
        marked,
        candidates,
        now=now,
        listed_at=listed_at,
        grace_seconds=ctx.settings.orphan_grace_seconds,
        visibility_seconds=ctx.settings.create_visibility_seconds,
    )
    if plan.problem:
        report.degraded = f"suspicious list: {plan.problem}"
        await mark_degraded(ctx, vendor, report.degraded)
        return report
    report.unmatched = plan.unmatched
    if plan.unmatched and not adapter.capabilities.marker:
        log.info("instances not matched to a resource (this vendor has no marker; left alone)", extra={"vendor": vendor, "count": plan.unmatched})
    for instance in plan.newly_found:
        ORPHANS_FOUND.labels(vendor).inc()
        log.warning("orphan found", extra={"vendor": vendor, "instance": instance.vendor_instance_id, "marker": instance.marker})
    terminated = await _terminate_orphans(ctx, vendor, plan.terminate, marked)
    report.orphans_terminated = terminated
    report.orphans_pending = len(plan.candidates) - len(terminated)
    for resource_id in plan.vanished:
        if await confirm_vanished(ctx, adapter, resource_id):
            report.vanished.append(resource_id)
    await _save_state(ctx, vendor, plan.candidates)
    return report


async def _terminate_orphans(ctx: EngineContext, vendor: str, orphans: list[VendorInstance], rows: dict[uuid.UUID, KnownResource]) -> list[str]:
    adapter = ctx.adapter(vendor)
    assert adapter is not None
    done: list[str] = []
    for instance in orphans:
        try:
            await adapter.delete(instance.vendor_instance_id)
        except VendorError as exc:
            log.warning("orphan delete failed; retrying next round", extra={"vendor": vendor, "instance": instance.vendor_instance_id, "error": str(exc)})
            continue
        ORPHANS_TERMINATED.labels(vendor).inc()
        done.append(instance.vendor_instance_id)
        owner = rows.get(instance.resource_id) if instance.resource_id else None
        async with ctx.db.transaction() as session:
            event = add_event(
                session,
                kind="orphan_terminated",
                vendor=vendor,
                reason=f"deleted orphan instance {instance.vendor_instance_id} ({instance.marker}): "
                + (f"its resource is {owner.status}" if owner is not None else "no such resource")
                + (" and owns another instance" if owner is not None and owner.vendor_instance_id not in (None, instance.vendor_instance_id) else ""),
                data={"vendor_instance_id": instance.vendor_instance_id, "marker": instance.marker, "raw_status": instance.raw_status},
                at=ctx.now(),
            )
            if owner is not None:
                event.resource_id, event.tenant_id = owner.id, owner.tenant_id
        log.warning("orphan terminated", extra={"vendor": vendor, "instance": instance.vendor_instance_id})
    return done


async def confirm_vanished(ctx: EngineContext, adapter: Any, resource_id: uuid.UUID) -> bool:
    """Read the instance once more under the row's lease; mark it terminated only if really gone."""
    claimed = await leases.claim(
        ctx.db,
        pipeline=PIPELINE,
        owner=ctx.owner,
        statuses=[s.value for s in EXPECTED_IN_LIST],
        limit=1,
        lease=ctx.lease,
        now=ctx.now(),
        resource_id=resource_id,
        due_only=False,
    )
    if not claimed:
        return False  # a pipeline is on it, or it moved on
    lease = claimed[0]
    try:
        row = await leases.load(ctx.db, lease)
        if row is None or not row.vendor_instance_id:
            await leases.release(ctx.db, [lease])
            return False
        try:
            instance = await read_instance(adapter, row.vendor_instance_id)
        except VendorError:
            await leases.release(ctx.db, [lease])
            return False
        if instance is not None and instance.state not in GONE_STATES:
            await leases.release(ctx.db, [lease])  # the list lagged; it exists
            return False
        status = S(row.status)
        now = ctx.now()
        result = observe(status, instance, now=now, running_since=row.running_since)
        result.reason = f"{result.reason}; absent from the vendor's instance list"

        async def merge(session: AsyncSession, fresh: Resource) -> bool:
            moved = merge_observation(session, fresh, result, computed_for=status, now=now)
            fresh.next_attempt_at = now
            return moved

        return await leases.apply(ctx.db, lease, merge)
    except leases.LeaseLost:
        return False
    except BaseException:
        await leases.release(ctx.db, [lease])
        raise


async def mark_degraded(ctx: EngineContext, vendor: str, reason: str) -> None:
    """Change nothing but the vendor's health: a list we cannot trust is never 'zero instances'."""
    now = ctx.now()
    VENDOR_DEGRADED.labels(vendor).set(1)
    log.warning("vendor degraded", extra={"vendor": vendor, "reason": reason})
    async with ctx.db.transaction() as session:
        state = await session.get(VendorState, vendor)
        if state is None:
            state = VendorState(vendor=vendor, orphan_candidates={})
            session.add(state)
        if not state.degraded:
            state.degraded_since = now
            add_event(session, kind="vendor_degraded", vendor=vendor, reason=reason, at=now)
        state.degraded = True
        state.degraded_reason = reason


async def _save_state(ctx: EngineContext, vendor: str, candidates: dict[str, str]) -> None:
    now = ctx.now()
    VENDOR_DEGRADED.labels(vendor).set(0)
    async with ctx.db.transaction() as session:
        state = await session.get(VendorState, vendor)
        if state is None:
            state = VendorState(vendor=vendor)
            session.add(state)
        if state.degraded:
            add_event(session, kind="vendor_recovered", vendor=vendor, reason="a complete instance list was read", at=now)
            log.info("vendor healthy again", extra={"vendor": vendor})
        state.degraded = False
        state.degraded_reason = None
        state.degraded_since = None
        state.orphan_candidates = dict(candidates)
        state.last_reconciled_at = now


async def orphan_events(session: AsyncSession, vendor: str) -> list[Event]:
    """The orphan_terminated events of a vendor, oldest first (for tests and the console)."""
    return list((await session.execute(select(Event).where(Event.kind == "orphan_terminated", Event.vendor == vendor).order_by(Event.id))).scalars().all())
