"""The fleet job: keep every fleet at its size (docs/fleets.md).

A fleet is due when its `next_attempt_at` has come, or at once when one of its members stopped
counting and the fleet has not taken note yet (preempted, vanished, failed, deleted by hand): the
status change that ended the member hints this process after its commit (domain/hints.py), and
every other process finds it on its next poll (`engine_poll_seconds`).

A round, under the fleet row's lease (claimed like the resources' leases, engine/leases.py):

1. Read the fleet and its members; outside any transaction, ask the offer catalog (in memory)
   what a new member would cost and, when nothing matches, why.
2. Apply in one transaction, guarded by the lease token, on the rows as they are now: note each
   lost member once (an event and webhook `fleet.member_lost`; a vendor-region that preempted
   cools down; `shrink` lowers the size), delete the members beyond the size, and write the
   missing members as ordinary procurements by spec (domain/intents.py: the tenant's budget is
   checked as for any procurement; the fleet's spend cap is shared out as each member's price
   cap). The procure pipeline then creates them exactly once, cheapest first with failover,
   placed by the fleet's preferences (domain/fleets.placement_preference).

Everything a round does is in that one transaction: a worker that dies before it commits did
nothing, and the next holder of the lease starts the round again from what the database says, so
a member is never written twice. The counting members never exceed the size: members are only
added up to the gap, and the ones being deleted do not count.

A fleet that cannot reach its size (no offer matches, a member's procurement failed, the spend
cap or the budget) is `degraded` with why (`fleet.degraded`), and waits 5 s, doubling up to
`fleet_retry_max_seconds`, before it tries again: it never spins.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gpusupply.core import fleets as rules
from gpusupply.core.errors import ServiceError
from gpusupply.core.fleets import COUNTING_STATUS_VALUES, FleetStatus, Loss
from gpusupply.core.states import LIVE_STATUSES, ResourceStatus
from gpusupply.db.models import Fleet, Resource
from gpusupply.db.session import rows_matched
from gpusupply.domain.fleets import fleet_event, member_of
from gpusupply.domain.guardrails import spec_price_bound
from gpusupply.domain.hints import hint, wait_for_hint
from gpusupply.domain.intents import (
    check_capacity,
    fill_from_query,
    new_resource,
    spec_procurement,
    write_intent,
)
from gpusupply.engine.context import EngineContext
from gpusupply.engine.leases import LeaseLost
from gpusupply.engine.pipelines.common import hand_to_deletion
from gpusupply.engine.pipelines.offers import BadSpec, spec_to_query
from gpusupply.metrics import LEASE_TAKEOVERS

log = logging.getLogger(__name__)

JOB_NAME = "fleets"
CLAIM_LIMIT = 8
LIVE_STATUS_VALUES = tuple(sorted(s.value for s in LIVE_STATUSES))
DELETABLE = tuple(s for s in LIVE_STATUS_VALUES if s != ResourceStatus.DELETING.value)


# ----- claiming -------------------------------------------------------------------------------------
def _unnoted_change() -> Any:
    """A member stopped counting and its fleet has not taken note yet, or one it noted counts
    again (a `terminated` member the reconciler revived: the fleet may now have one too many)."""
    return or_(
        exists().where(Resource.fleet_id == Fleet.id, Resource.fleet_noted_at.is_(None), Resource.status.notin_(COUNTING_STATUS_VALUES)),
        exists().where(Resource.fleet_id == Fleet.id, Resource.fleet_noted_at.is_not(None), Resource.status.in_(COUNTING_STATUS_VALUES)),
    )


async def claim_fleets(ctx: EngineContext, *, limit: int = CLAIM_LIMIT) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """Lease up to `limit` due fleets: (fleet id, token) each. The same guarded claim as the
    resources' (engine/leases.py), so two processes never hold one fleet."""
    now = ctx.now()
    conditions = [
        Fleet.status.in_(rules.LIVE_FLEET_STATUSES),
        or_(Fleet.lock_expires_at.is_(None), Fleet.lock_expires_at < now),
        or_(Fleet.next_attempt_at <= now, _unnoted_change()),
    ]

    async def take() -> list[tuple[uuid.UUID, uuid.UUID]]:
        query = select(Fleet.id, Fleet.lock_token).where(*conditions).order_by(Fleet.next_attempt_at).limit(limit)
        if not ctx.db.is_sqlite:
            query = query.with_for_update(skip_locked=True, key_share=True)
        claimed = []
        async with ctx.db.transaction() as session:
            for fleet_id, old_token in (await session.execute(query)).all():
                token = uuid.uuid4()
                result = await session.execute(
                    update(Fleet)
                    .where(Fleet.id == fleet_id, *conditions)
                    .values(lock_token=token, lock_owner=f"{ctx.owner}/{JOB_NAME}"[:100], lock_expires_at=now + ctx.lease)
                    .execution_options(synchronize_session=False)
                )
                if rows_matched(result) == 1:
                    claimed.append((fleet_id, token))
                    if old_token is not None:
                        LEASE_TAKEOVERS.labels(JOB_NAME).inc()
        return claimed

    if ctx.db.is_sqlite:
        async with ctx.db.claim_lock:
            return await take()
    return await take()


async def release(ctx: EngineContext, fleet_id: uuid.UUID, token: uuid.UUID) -> None:
    async with ctx.db.transaction() as session:
        await session.execute(
            update(Fleet).where(Fleet.id == fleet_id, Fleet.lock_token == token).values(lock_token=None, lock_owner=None, lock_expires_at=None)
        )


# ----- a round ----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Market:
    """What the catalog says of a new member: the cheapest matching price, or why there is none."""

    cheapest: float | None
    refusal: str | None = None


@dataclass(slots=True)
class RoundOutcome:
    created: list[uuid.UUID] = field(default_factory=list)
    deleted: list[uuid.UUID] = field(default_factory=list)
    lost: list[uuid.UUID] = field(default_factory=list)
    status: str = ""
    message: str = ""


async def run_round(ctx: EngineContext, fleet_id: uuid.UUID, token: uuid.UUID) -> RoundOutcome:
    """One round for a fleet we hold the lease of. Raises LeaseLost when the lease was lost."""
    async with ctx.db.session() as session:
        fleet = (await session.execute(select(Fleet).where(Fleet.id == fleet_id, Fleet.lock_token == token))).scalar_one_or_none()
        if fleet is None:
            raise LeaseLost(f"fleet {fleet_id}: lease lost")
        counting = (
            await session.execute(
                select(func.count()).select_from(Resource).where(Resource.fleet_id == fleet_id, Resource.status.in_(COUNTING_STATUS_VALUES))
            )
        ).scalar_one()
        spec, size, status = dict(fleet.spec), fleet.size, fleet.status
    market = None
    if status != FleetStatus.DELETING.value and size > counting:
        market = await _market(ctx, spec)
    outcome = await _apply(ctx, fleet_id, token, market)
    if outcome.created or outcome.deleted:
        hint()  # this process's procure and delete pipelines
    if outcome.created or outcome.deleted or outcome.lost:
        log.info(
            "fleet round",
            extra={"fleet_id": str(fleet_id), "created": len(outcome.created), "deleted": len(outcome.deleted), "lost": len(outcome.lost), "status": outcome.status},
        )
    return outcome


async def _market(ctx: EngineContext, spec: dict[str, Any]) -> Market:
    """The cheapest matching offer's price per hour, from the in-memory catalog (no vendor call in
    a process whose engine refreshes the catalog), or why nothing matches."""
    try:
        query = spec_to_query(spec)
    except BadSpec as exc:
        return Market(None, f"invalid spec: {exc}")
    if ctx.catalog is None:
        return Market(None, "this engine runs without the offer catalog, so it cannot add members")
    try:
        await check_capacity(ctx.catalog, query)
    except ServiceError as exc:
        return Market(None, exc.detail.split("; change the spec")[0].split("; retry later")[0])
    found = await ctx.catalog.search(query, limit=1)
    if not found.offers:
        return Market(None, "no offer matches the spec now")
    return Market(found.offers[0].offer.total_price_per_hour)


async def _lock_fleet(session: AsyncSession, fleet_id: uuid.UUID, token: uuid.UUID, now: datetime) -> Fleet:
    locked = await session.execute(update(Fleet).where(Fleet.id == fleet_id, Fleet.lock_token == token).values(updated_at=now))
    if rows_matched(locked) != 1:
        raise LeaseLost(f"fleet {fleet_id}: lease lost")
    return (await session.execute(select(Fleet).where(Fleet.id == fleet_id).execution_options(populate_existing=True))).scalar_one()


async def _members(session: AsyncSession, fleet_id: uuid.UUID) -> list[Resource]:
    """Members that are live, or ended without the fleet's note yet."""
    rows = await session.execute(
        select(Resource)
        .where(Resource.fleet_id == fleet_id, or_(Resource.status.in_(LIVE_STATUS_VALUES), Resource.fleet_noted_at.is_(None)))
        .order_by(Resource.created_at, Resource.id)
        .execution_options(populate_existing=True)
    )
    return list(rows.scalars())


async def _apply(ctx: EngineContext, fleet_id: uuid.UUID, token: uuid.UUID, market: Market | None) -> RoundOutcome:
    now = ctx.now()
    outcome = RoundOutcome()
    async with ctx.db.transaction() as session:
        fleet = await _lock_fleet(session, fleet_id, token, now)
        members = await _members(session, fleet_id)
        if fleet.status == FleetStatus.DELETING.value:
            await _wind_down(ctx, session, fleet, members, now, outcome)
        else:
            await _close_gap(ctx, session, fleet, members, market, now, outcome)
        fleet.lock_token = fleet.lock_owner = fleet.lock_expires_at = None
        outcome.status = fleet.status
        outcome.message = fleet.status_message or ""
    return outcome


# ----- noting losses -----------------------------------------------------------------------------------
def _note_losses(ctx: EngineContext, session: AsyncSession, fleet: Fleet, members: list[Resource], now: datetime, outcome: RoundOutcome) -> list[str]:
    """Take note of every member that stopped counting since the last round; returns the failures
    of members that never ran (their procurement found nothing to create)."""
    never_ran: list[str] = []
    cooldown = ctx.settings.fleet_preemption_cooldown_seconds
    for member in members:
        if rules.counts(member.status) or member.fleet_noted_at is not None:
            continue
        member.fleet_noted_at = now
        kind = rules.loss_kind(member_of(member))
        why = member.status_message or member.status
        if kind == Loss.NEVER_RAN:
            never_ran.append(f"member {member.name or member.id} failed: {why}")
            fleet_event(session, fleet, "fleet_member_failed", f"member {member.id} failed before it ran: {why}", at=now, resource=member)
            continue
        outcome.lost.append(member.id)
        where = {"vendor": member.vendor, "vendor_region": member.vendor_region}
        detected = member.ended_at if kind == Loss.PREEMPTED and member.ended_at is not None else now
        if kind == Loss.PREEMPTED and member.vendor:
            fleet.cooldowns = rules.add_cooldown(fleet.cooldowns or [], member.vendor, member.vendor_region, now, cooldown)
        if kind == Loss.PREEMPTED and fleet.on_preemption == "shrink":
            fleet.size = max(0, fleet.size - 1)
            next_step = f"shrinking the fleet to {fleet.size} (on_preemption: shrink)"
        else:
            fleet.replacing = [*(fleet.replacing or []), {"resource_id": str(member.id), **where, "at": detected.isoformat()}]
            next_step = "replacing it"
        lost_how = "deleted outside the fleet" if kind == Loss.DELETED else f"lost on {member.vendor} {member.vendor_region or ''}".rstrip()
        fleet_event(
            session, fleet, "fleet_member_lost", f"member {member.id} {lost_how} ({why}); {next_step}", at=now, resource=member,
            data={"loss": kind.value, **where, "detected_at": detected.isoformat()},
        )
    return never_ran


# ----- closing the gap ---------------------------------------------------------------------------------
async def _close_gap(
    ctx: EngineContext, session: AsyncSession, fleet: Fleet, members: list[Resource], market: Market | None, now: datetime, outcome: RoundOutcome
) -> None:
    fleet.cooldowns = rules.active_cooldowns(fleet.cooldowns or [], now)
    never_ran = _note_losses(ctx, session, fleet, members, now, outcome)
    counting = [m for m in members if rules.counts(m.status)]
    for revived in counting:
        if revived.fleet_noted_at is not None:  # counts again: a later loss is a loss again
            revived.fleet_noted_at = None
            fleet_event(session, fleet, "fleet_member_back", f"member {revived.id} is {revived.status} again on its vendor", at=now, resource=revived)
    for extra in rules.extras_to_delete([member_of(m) for m in counting], fleet.size):
        row = next(m for m in counting if m.id == extra.id)
        if await _delete_member(session, row, f"fleet {fleet.name} scaled down to {fleet.size}", now):
            outcome.deleted.append(row.id)
    counting = [m for m in counting if m.id not in outcome.deleted]
    gap = fleet.size - len(counting)
    if gap <= 0:
        fleet.replacing = []  # at its size (scaled down meanwhile): nothing is waiting for a replacement
    trouble: str | None = None
    if gap > 0:
        if never_ran:
            trouble = "; ".join(never_ran)
        elif market is not None and market.refusal is not None:
            trouble = market.refusal
        elif market is not None:
            trouble = await _add_members(ctx, session, fleet, counting, gap, market, now, outcome)
    members_now = len(counting) + len(outcome.created)
    if trouble is not None:
        _degrade(ctx, session, fleet, trouble, members_now, now)
        return
    running = sum(1 for m in counting if m.status == ResourceStatus.RUNNING.value)
    if fleet.status == FleetStatus.DEGRADED.value:
        fleet_event(session, fleet, "fleet_recovered", f"back on track: {members_now} of {fleet.size} members", at=now)
    fleet.status = FleetStatus.ACTIVE.value
    fleet.status_message = f"{members_now} of {fleet.size} members, {running} running"
    if running == fleet.size:
        fleet.retry_count = 0
    if gap > 0 and market is None:  # a member was lost after this round read the fleet: again at once
        fleet.next_attempt_at = now
    elif len(counting) > fleet.size:  # an extra could not be handed to deletion (it moved meanwhile)
        fleet.next_attempt_at = now + timedelta(seconds=ctx.settings.engine_poll_seconds)
    else:
        fleet.next_attempt_at = now + timedelta(seconds=ctx.settings.fleet_check_seconds)


def _degrade(ctx: EngineContext, session: AsyncSession, fleet: Fleet, why: str, members: int, now: datetime) -> None:
    fleet.retry_count = (fleet.retry_count or 0) + 1
    wait = rules.retry_seconds(fleet.retry_count, ctx.settings.fleet_retry_max_seconds)
    message = f"{members} of {fleet.size} members: {why}; retrying in {wait:.0f} s"
    if fleet.status != FleetStatus.DEGRADED.value or (fleet.status_message or "").split("; retrying in")[0] != message.split("; retrying in")[0]:
        fleet_event(session, fleet, "fleet_degraded", message, at=now, data={"members": members, "size": fleet.size, "retry_in_seconds": wait})
    fleet.status = FleetStatus.DEGRADED.value
    fleet.status_message = message
    fleet.next_attempt_at = now + timedelta(seconds=wait)


async def _add_members(
    ctx: EngineContext, session: AsyncSession, fleet: Fleet, counting: list[Resource], gap: int, market: Market, now: datetime, outcome: RoundOutcome
) -> str | None:
    """Write up to `gap` members as procurements by spec; returns why not all, or None."""
    assert market.cheapest is not None
    bound = spec_price_bound(fleet.spec)
    committed = sum(m.price_per_hour if m.price_per_hour is not None else (bound or 0.0) for m in counting)
    affordable = rules.affordable_count(fleet.max_hourly_spend, committed, gap, market.cheapest)
    if affordable == 0:
        return (
            f"the fleet's spend cap of {fleet.max_hourly_spend:.2f} USD/h leaves {max(0.0, (fleet.max_hourly_spend or 0) - committed):.2f} USD/h, "
            f"and the cheapest matching offer costs {market.cheapest:.2f} USD/h"
        )
    ceiling = rules.member_price_ceiling(fleet.max_hourly_spend, committed, affordable)
    document = rules.member_spec(fleet.spec, ceiling)
    query = spec_to_query(document)
    number = (await session.execute(select(func.count()).select_from(Resource).where(Resource.fleet_id == fleet.id))).scalar_one()
    for _ in range(affordable):
        number += 1
        procurement = spec_procurement(fleet.tenant_id, document, now)
        resource = new_resource(fleet.tenant_id, procurement.id, fleet.ssh_public_key, fleet.cloud_init, f"{fleet.name}-{number}", now, fleet_id=fleet.id)
        fill_from_query(resource, query)
        try:
            await write_intent(session, procurement, resource, f"member of fleet {fleet.name}: the engine picks the cheapest matching offer")
        except ServiceError as exc:  # the tenant's budget (402) or a spec without a price bound under a budget (422)
            return f"the tenant's budget stops the fleet here: {exc.detail}"
        await session.flush()  # the next member's budget check counts this one (the sessions do not autoflush)
        outcome.created.append(resource.id)
        _replacement_event(session, fleet, resource, now)
    if affordable < gap:
        return f"the fleet's spend cap of {fleet.max_hourly_spend:.2f} USD/h holds {len(counting) + affordable} members at the cheapest matching price ({market.cheapest:.2f} USD/h)"
    return None


def _replacement_event(session: AsyncSession, fleet: Fleet, resource: Resource, now: datetime) -> None:
    queue = list(fleet.replacing or [])
    if not queue:
        return
    lost = queue.pop(0)
    fleet.replacing = queue
    lost_at = datetime.fromisoformat(str(lost["at"]))
    seconds = max(0.0, (now - lost_at).total_seconds())
    fleet_event(
        session, fleet, "fleet_member_replaced",
        f"requested {resource.id} to replace {lost['resource_id']} ({lost.get('vendor')} {lost.get('vendor_region') or ''}), "
        f"{seconds:.1f} s after the loss was detected",
        at=now, resource=resource,
        data={"replaced_resource_id": lost["resource_id"], "replacement_resource_id": str(resource.id), "lost_at": lost["at"],
              "requested_at": now.isoformat(), "seconds_to_request": round(seconds, 3),
              "avoiding": {"vendor": lost.get("vendor"), "vendor_region": lost.get("vendor_region")}},
    )


async def _delete_member(session: AsyncSession, row: Resource, reason: str, now: datetime) -> bool:
    """Hand a member to the delete pipeline, as the API's delete does: lock the row first and
    decide on what is there now. The fleet takes note at once (it never replaces what it deleted)."""
    locked = await session.execute(
        update(Resource).where(Resource.id == row.id, Resource.status.in_(DELETABLE)).values(updated_at=now).execution_options(synchronize_session=False)
    )
    if rows_matched(locked) != 1:
        return False
    fresh = (await session.execute(select(Resource).where(Resource.id == row.id).execution_options(populate_existing=True))).scalar_one()
    hand_to_deletion(session, fresh, reason, now=now, final_status=ResourceStatus.DELETED)
    fresh.pending_action = None
    fresh.fleet_noted_at = now
    return True


# ----- deleting a fleet --------------------------------------------------------------------------------
async def _wind_down(ctx: EngineContext, session: AsyncSession, fleet: Fleet, members: list[Resource], now: datetime, outcome: RoundOutcome) -> None:
    for member in members:
        if member.status in DELETABLE:
            if await _delete_member(session, member, f"fleet {fleet.name} deleted", now):
                outcome.deleted.append(member.id)
        elif member.fleet_noted_at is None:
            member.fleet_noted_at = now
    left = (
        await session.execute(
            select(func.count()).select_from(Resource).where(Resource.fleet_id == fleet.id, Resource.status.in_(LIVE_STATUS_VALUES))
        )
    ).scalar_one()
    if left:
        fleet.status_message = f"deleting: {left} member(s) not confirmed gone by their vendor yet"
        fleet.next_attempt_at = now + timedelta(seconds=ctx.settings.provisioning_poll_seconds)
        return
    fleet.status = FleetStatus.DELETED.value
    fleet.status_message = "every member's vendor confirmed its instance is gone"
    fleet.deleted_at = now
    fleet.replacing = []
    fleet_event(session, fleet, "fleet_deleted", "deleted: every member's vendor confirmed its instance is gone", at=now)


# ----- the loop ----------------------------------------------------------------------------------------
class FleetJob:
    """The engine's fleet loop (a BackgroundJob): claim due fleets, run their rounds, wait for a
    hint or `engine_poll_seconds`."""

    name = JOB_NAME

    def __init__(self, ctx: EngineContext):
        self.ctx = ctx
        self.rounds = 0

    async def run_once(self) -> int:
        """Claim and run every due fleet once; returns how many rounds ran."""
        claimed = await claim_fleets(self.ctx)
        for fleet_id, token in claimed:
            try:
                await run_round(self.ctx, fleet_id, token)
                self.rounds += 1
            except LeaseLost:
                log.info("fleet lease lost; the new holder redoes the round", extra={"fleet_id": str(fleet_id)})
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await asyncio.shield(release(self.ctx, fleet_id, token))
                raise
            except Exception:
                log.exception("fleet round failed", extra={"fleet_id": str(fleet_id)})
                await self._back_off(fleet_id, token)
        return len(claimed)

    async def _back_off(self, fleet_id: uuid.UUID, token: uuid.UUID) -> None:
        """An unexpected error: try the fleet again later, not at once."""
        with contextlib.suppress(Exception):
            async with self.ctx.db.transaction() as session:
                await session.execute(
                    update(Fleet)
                    .where(Fleet.id == fleet_id, Fleet.lock_token == token)
                    .values(lock_token=None, lock_owner=None, lock_expires_at=None, next_attempt_at=self.ctx.after(self.ctx.settings.fleet_retry_max_seconds / 10))
                )

    async def loop(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                ran = await self.run_once()
            except Exception:
                log.exception("fleet claim failed")
                ran = 0
            if not ran and not stopping.is_set():
                await wait_for_hint(self.ctx.settings.engine_poll_seconds)
