"""The reconciler: per vendor, list every instance of our account and compare with our rows.

- Ours: an instance whose marker names this installation (`gpusupply-<resource id>-<installation>`),
  or an older marker without an installation whose resource is in our database, or (any vendor,
  fal included) an instance whose id one of our rows holds. Another installation's instances on a
  shared account are counted (`VendorState.foreign_instances`) and never touched.
- Revived: an instance of a resource that ended on an observation (`terminated`) shows up again:
  the resource is live again, with an event saying so. Nothing the user did not delete is deleted.
- Duplicates: a second instance of a live or terminated resource (a create that arrived late) is
  deleted at once, keeping the instance the resource records.
- Orphans: our instances whose resource was deleted (by the user or a guardrail), failed, or does
  not exist. First seen is kept in `VendorState.orphan_candidates`; once older than
  `orphan_grace_seconds` they are deleted on the vendor, with an `orphan_terminated` event.
- Vanished: live resources whose instance is not in the list. The list may lag, so only rows
  older than the visibility window count; each is read again under the row's lease, and it ends
  `terminated` only when absence is confirmed (engine/absence.py: two reads apart and the list).
- Instances that are not ours are never touched.
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
from gpusupply.db.models import Resource, VendorState
from gpusupply.domain.events import add_event, change_status
from gpusupply.engine import leases
from gpusupply.engine.absence import GONE_STATES, judge_not_found, listing_problem, seen
from gpusupply.engine.context import EngineContext
from gpusupply.engine.pipelines.common import hand_to_deletion
from gpusupply.engine.sync import merge_observation, note_absence, observe_sighting, read_instance
from gpusupply.metrics import FOREIGN_INSTANCES, ORPHANS_FOUND, ORPHANS_TERMINATED, VENDOR_DEGRADED
from gpusupply.vendors.base import VendorInstance, parse_marker

log = logging.getLogger(__name__)

S = ResourceStatus
PIPELINE = "reconcile"
# Rows whose instance must be in the list (pending rows have none yet; deleting rows are the
# delete pipeline's to confirm).
EXPECTED_IN_LIST = frozenset({S.PROVISIONING, S.RUNNING, S.STOPPED, S.STOPPING, S.STARTING, S.REBOOTING})


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
    duplicates: list[VendorInstance] = field(default_factory=list)  # second instances of one resource: delete now
    revive: list[tuple[uuid.UUID, VendorInstance]] = field(default_factory=list)  # terminated rows whose instance is back
    unmatched: int = 0  # instances without a marker that no row of ours holds
    foreign: int = 0  # instances another installation made (their markers say so)


def plan_reconcile(
    listing: Sequence[VendorInstance],
    resources: Sequence[KnownResource],
    named_rows: dict[uuid.UUID, KnownResource],
    candidates: dict[str, str],
    *,
    now: datetime,
    listed_at: datetime,
    grace_seconds: float,
    visibility_seconds: float,
    installation_id: str | None = None,
    id_rows: dict[str, KnownResource] | None = None,
) -> ReconcilePlan:
    """Compare one vendor's full list with our rows. Pure: the caller acts on the plan.

    `resources` are our live rows on this vendor; `named_rows` are the rows (any status) named by
    markers in the list; `id_rows` the rows (any status) holding the id of a listed instance that
    no live row holds.
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
        owner, ours = _owner_of(instance, named_rows, id_rows or {}, installation_id)
        if not ours:
            if instance.marker is not None and parse_marker(instance.marker) is not None:
                plan.foreign += 1
            else:
                plan.unmatched += 1
            continue
        records_other = owner is not None and owner.vendor_instance_id not in (None, instance.vendor_instance_id)
        if owner is not None and owner.status not in FINAL_STATUSES and not records_other:
            # A create in flight or being recovered (its pipeline will claim this instance), or a row
            # that took this instance's id after the live rows were read: it is the row's own.
            continue
        if owner is not None and owner.status == S.TERMINATED and not records_other:
            plan.revive.append((owner.id, instance))
            continue
        if owner is not None and records_other and owner.status not in (S.DELETED, S.FAILED):
            plan.duplicates.append(instance)
            continue
        first_seen = candidates.get(instance.vendor_instance_id)
        if first_seen is None:
            first_seen = now.isoformat()
            plan.newly_found.append(instance)
        plan.candidates[instance.vendor_instance_id] = first_seen
        if (now - datetime.fromisoformat(first_seen)).total_seconds() >= grace_seconds:
            plan.terminate.append(instance)
    plan.vanished = [r.id for r in established if r.vendor_instance_id not in present]
    return plan


def _owner_of(
    instance: VendorInstance, named_rows: dict[uuid.UUID, KnownResource], id_rows: dict[str, KnownResource], installation_id: str | None
) -> tuple[KnownResource | None, bool]:
    """(the row that owns a listed instance, whether the instance is ours at all). Pure.

    A marker naming another installation is never ours. A marker without an installation (made
    before installations were named) is ours only if its resource is in our database: every create
    writes its row first, so another installation's old instances are left alone. Without a marker
    (fal), an instance is ours when one of our rows holds its id."""
    parsed = parse_marker(instance.marker)
    if parsed is not None:
        if parsed.installation_id is not None and parsed.installation_id != installation_id:
            return None, False
        owner = named_rows.get(parsed.resource_id)
        if owner is None and parsed.installation_id is None:
            owner = id_rows.get(instance.vendor_instance_id)
            return owner, owner is not None
        return owner, True
    owner = id_rows.get(instance.vendor_instance_id)
    return owner, owner is not None


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
    revived: list[uuid.UUID] = field(default_factory=list)
    duplicates_deleted: list[str] = field(default_factory=list)
    unmatched: int = 0
    foreign: int = 0
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
            select(*KNOWN_COLUMNS).where(
                Resource.vendor == vendor,
                Resource.status.in_([s.value for s in LIVE_STATUSES]),
                Resource.resource_type == "vm",  # a cluster has no instance: its nodes do
            )
        )]
        # Rows named by markers: the live ones are known already; read only the others.
        known_ids = {r.id for r in live}
        marker_ids = {i.resource_id for i in listing if i.resource_id is not None and i.resource_id not in known_ids}
        others = [_known(r) for r in await session.execute(select(*KNOWN_COLUMNS).where(Resource.id.in_(marker_ids)))] if marker_ids else []
        # Rows (any status) holding the id of a listed instance no live row holds: without a marker
        # (fal) this is how an instance is known to be ours.
        live_ids = {r.vendor_instance_id for r in live}
        loose = {i.vendor_instance_id for i in listing if i.vendor_instance_id not in live_ids}
        held = [_known(r) for r in await session.execute(
            select(*KNOWN_COLUMNS).where(Resource.vendor == vendor, Resource.vendor_instance_id.in_(loose))
        )] if loose else []
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
        installation_id=await ctx.installation(),
        id_rows={r.vendor_instance_id: r for r in held if r.vendor_instance_id},
    )
    for row in held:
        marked.setdefault(row.id, row)
    if plan.problem:
        report.degraded = f"suspicious list: {plan.problem}"
        await mark_degraded(ctx, vendor, report.degraded)
        return report
    report.unmatched = plan.unmatched
    report.foreign = plan.foreign
    FOREIGN_INSTANCES.labels(vendor).set(plan.foreign)
    if plan.unmatched and not adapter.capabilities.marker:
        log.info("instances not matched to a resource (this vendor has no marker; left alone)", extra={"vendor": vendor, "count": plan.unmatched})
    for resource_id, instance in plan.revive:
        if await revive(ctx, resource_id, instance):
            report.revived.append(resource_id)
    for instance in plan.newly_found:
        ORPHANS_FOUND.labels(vendor).inc()
        log.warning("orphan found", extra={"vendor": vendor, "instance": instance.vendor_instance_id, "marker": instance.marker})
    report.duplicates_deleted = await _terminate_orphans(ctx, vendor, plan.duplicates, marked, duplicate=True)
    terminated = await _terminate_orphans(ctx, vendor, plan.terminate, marked)
    report.orphans_terminated = terminated
    report.orphans_pending = len(plan.candidates) - len(terminated)
    for resource_id in plan.vanished:
        if await confirm_vanished(ctx, adapter, resource_id):
            report.vanished.append(resource_id)
    await _save_state(ctx, vendor, plan.candidates, foreign=plan.foreign)
    return report


async def _terminate_orphans(
    ctx: EngineContext, vendor: str, orphans: list[VendorInstance], rows: dict[uuid.UUID, KnownResource], *, duplicate: bool = False
) -> list[str]:
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
        owner = _row_of(instance, rows)
        if duplicate and owner is not None:
            reason = (f"deleted duplicate instance {instance.vendor_instance_id} ({instance.marker}): resource {owner.id} "
                      f"records instance {owner.vendor_instance_id}, which it keeps")
        else:
            reason = (f"deleted orphan instance {instance.vendor_instance_id} ({instance.marker or 'no marker'}): "
                      + (f"its resource is {owner.status}" if owner is not None else "no such resource")
                      + (" and owns another instance" if owner is not None and owner.vendor_instance_id not in (None, instance.vendor_instance_id) else ""))
        async with ctx.db.transaction() as session:
            event = add_event(
                session,
                kind="duplicate_terminated" if duplicate else "orphan_terminated",
                vendor=vendor,
                reason=reason,
                data={"vendor_instance_id": instance.vendor_instance_id, "marker": instance.marker, "raw_status": instance.raw_status},
                at=ctx.now(),
            )
            if owner is not None:
                event.resource_id, event.tenant_id = owner.id, owner.tenant_id
        log.warning("orphan terminated", extra={"vendor": vendor, "instance": instance.vendor_instance_id})
    return done


def _row_of(instance: VendorInstance, rows: dict[uuid.UUID, KnownResource]) -> KnownResource | None:
    if instance.resource_id is not None and instance.resource_id in rows:
        return rows[instance.resource_id]
    return next((r for r in rows.values() if r.vendor_instance_id == instance.vendor_instance_id), None)


async def _not_alone(session: AsyncSession, node: Resource, now: datetime) -> None:
    """A revived node of a cluster that is being deleted or ended is deleted too: a cluster lives
    and ends whole (pipelines/cluster.py), and no node of it bills on its own."""
    if node.cluster_id is None:
        return
    cluster = await session.get(Resource, node.cluster_id)
    if cluster is None or (S(cluster.status) not in FINAL_STATUSES and cluster.status != S.DELETING.value):
        return
    final = S.DELETED if (cluster.final_status or cluster.status) == S.DELETED.value else S.FAILED
    hand_to_deletion(session, node, f"cluster {cluster.name} ({cluster.id}) is {cluster.status}: its node is not kept alone", now=now, final_status=final)


async def revive(ctx: EngineContext, resource_id: uuid.UUID, instance: VendorInstance) -> bool:
    """A resource ended on an observation (`terminated`) whose instance shows up again: live again.

    The earlier "gone" was wrong (or the vendor brought the instance back); the user did not delete
    it, so it is not an orphan. The row takes the instance's state, its address and id, and an
    event says what happened; the refresh reads it again at once."""
    now = ctx.now()
    async with ctx.db.transaction() as session:
        row = await session.get(Resource, resource_id, with_for_update=True)
        if row is None or row.status != S.TERMINATED.value:
            return False
        target = S.STOPPED if instance.state == InstanceState.STOPPED else S.RUNNING
        row.vendor_instance_id = row.vendor_instance_id or instance.vendor_instance_id
        row.vendor_status = instance.raw_status
        if instance.external_ip or instance.ssh_host:
            row.external_ip, row.ssh_host, row.ssh_port = instance.external_ip, instance.ssh_host, instance.ssh_port
        row.ended_at = None
        row.absent_since = None
        row.last_synced_at = now
        row.next_attempt_at = now
        row.retry_count = 0
        change_status(
            session, row, target,
            f"instance {instance.vendor_instance_id} shows up again on the vendor ({instance.raw_status or instance.state.value}): "
            "it had been taken for gone on an observation; the resource is live again",
            at=now,
        )
        await _not_alone(session, row, now)
    log.warning("resource revived: its instance is back on the vendor", extra={"resource_id": str(resource_id), "instance": instance.vendor_instance_id})
    return True


async def confirm_vanished(ctx: EngineContext, adapter: Any, resource_id: uuid.UUID) -> bool:
    """Read the instance again under the row's lease; it ends `terminated` only when its absence is
    confirmed (the list in hand did not show it; engine/absence.py)."""
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
            now = ctx.now()  # dated when the answer is in (sync.refresh_leased says why)
            sighting = seen(instance) if instance is not None else await judge_not_found(
                adapter, row.vendor_instance_id, absent_since=row.absent_since, now=now,
                confirm_seconds=ctx.settings.absence_confirm_seconds, listed_absent=True,
            )
        except VendorError:
            await leases.release(ctx.db, [lease])
            return False
        if sighting.unconfirmed:  # the first "not found": look again after the delay
            await leases.apply(ctx.db, lease, note_absence(sighting, ctx.settings.absence_confirm_seconds))
            return False
        if not sighting.gone:
            await leases.release(ctx.db, [lease])  # the list lagged; it exists
            return False
        status = S(row.status)
        result = observe_sighting(status, sighting, now=now, running_since=row.running_since)
        if instance is not None:
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


async def _save_state(ctx: EngineContext, vendor: str, candidates: dict[str, str], *, foreign: int = 0) -> None:
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
        state.foreign_instances = foreign
        state.last_reconciled_at = now
