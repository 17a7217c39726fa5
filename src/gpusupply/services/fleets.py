"""Fleets (docs/fleets.md): the tenant's side. Create, list, read, change and delete a fleet.

Like the other services, this only records intent: the engine's fleet job (engine/fleets.py)
adds and deletes the members, as ordinary procurements by spec. A delete sets `deleting`; the
fleet ends `deleted` once every member's vendor confirmed its instance is gone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gpusupply.contract.offers import OffersRequest
from gpusupply.core.errors import ConflictError, NotFoundError, UnprocessableError
from gpusupply.core.fleets import (
    COUNTING_STATUS_VALUES,
    MAX_FLEET_SIZE,
    ON_PREEMPTION,
    PLACEMENTS,
    FleetStatus,
    active_cooldowns,
)
from gpusupply.core.inputs import require_text
from gpusupply.core.states import LIVE_STATUSES, ResourceStatus
from gpusupply.db.models import Event, Fleet, Resource, utcnow
from gpusupply.db.session import Database, rows_matched
from gpusupply.domain.fleets import fleet_event
from gpusupply.domain.guardrails import check_procurement, spec_price_bound
from gpusupply.domain.hints import hint
from gpusupply.services.budgets import check_amount
from gpusupply.services.keys import Principal
from gpusupply.services.offers import check_page, normalized_document, query_from_request
from gpusupply.services.procurement import check_cloud_init, check_cloud_init_for_vendor, check_ssh_public_key

EVENTS_SHOWN = 20
LIVE_STATUS_VALUES = tuple(sorted(s.value for s in LIVE_STATUSES))


@dataclass(slots=True)
class FleetView:
    fleet: Fleet
    members: list[Resource]  # live members (deleting included), oldest first
    events: list[Event]  # the latest, oldest first (empty in listings)

    @property
    def counting(self) -> int:
        return sum(1 for m in self.members if m.status in COUNTING_STATUS_VALUES)

    @property
    def running(self) -> int:
        return sum(1 for m in self.members if m.status == ResourceStatus.RUNNING.value)

    @property
    def spend_per_hour(self) -> float:
        return sum(m.price_per_hour or 0.0 for m in self.members if m.status in COUNTING_STATUS_VALUES)

    def cooldowns(self, now: datetime) -> list[dict[str, Any]]:
        return active_cooldowns(self.fleet.cooldowns or [], now)


def check_fleet_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= 200 or not name.isprintable():
        raise UnprocessableError("name must be 1-200 printable characters", loc=("body", "name"))
    return name


def check_size(size: int, loc: tuple[str | int, ...] = ("body", "size")) -> int:
    if isinstance(size, bool) or not 0 <= size <= MAX_FLEET_SIZE:
        raise UnprocessableError(f"size must be 0-{MAX_FLEET_SIZE}", loc=loc)
    return size


def check_choice(value: str, choices: tuple[str, ...], name: str) -> str:
    if value not in choices:
        raise UnprocessableError(f"{name} must be one of {', '.join(choices)}", loc=("body", name))
    return value


async def create_fleet(
    db: Database,
    principal: Principal,
    *,
    name: str,
    spec: OffersRequest,
    size: int,
    ssh_public_key: str,
    cloud_init: str | None = None,
    on_preemption: str = "replace",
    placement: str = "spread",
    max_hourly_spend: float | None = None,
) -> FleetView:
    """Record the fleet; the engine adds its members. A spec that matches nothing now is accepted:
    the fleet stays `degraded`, saying why, and retries with backoff."""
    require_text({"name": name, "ssh_public_key": ssh_public_key, "cloud_init": cloud_init}, loc=("body",))
    name = check_fleet_name(name)
    query = query_from_request(spec, loc=("body", "spec"))
    document = normalized_document(spec, query)
    size = check_size(size)
    key = check_ssh_public_key(ssh_public_key)
    init = check_cloud_init(cloud_init)
    if query.vendor is not None:
        check_cloud_init_for_vendor(query.vendor, init)
    on_preemption = check_choice(on_preemption, ON_PREEMPTION, "on_preemption")
    placement = check_choice(placement, PLACEMENTS, "placement")
    cap = check_amount(max_hourly_spend, "max_hourly_spend", ("body", "max_hourly_spend"))
    now = utcnow()
    async with db.transaction() as session:
        await _check_name_free(session, principal.tenant_id, name)
        await _check_budget(session, principal.tenant_id, document, size, now)
        fleet = Fleet(
            tenant_id=principal.tenant_id, name=name, spec=document, size=size, ssh_public_key=key, cloud_init=init,
            on_preemption=on_preemption, placement=placement, max_hourly_spend=cap, status=FleetStatus.ACTIVE.value,
            status_message=f"0 of {size} members; the engine is adding them", cooldowns=[], replacing=[], retry_count=0,
            created_at=now, updated_at=now, next_attempt_at=now,
        )
        session.add(fleet)
        await session.flush()
        fleet_event(session, fleet, "fleet_created", f"fleet created: {size} x {document['compute']['gpu_type']}", at=now, data={"size": size})
    hint()
    return FleetView(fleet, [], [])


async def _check_name_free(session: AsyncSession, tenant_id: UUID, name: str, *, other_than: UUID | None = None) -> None:
    query = select(Fleet.id).where(Fleet.tenant_id == tenant_id, Fleet.name == name, Fleet.status != FleetStatus.DELETED.value)
    if other_than is not None:
        query = query.where(Fleet.id != other_than)
    if (await session.execute(query.limit(1))).first() is not None:
        raise ConflictError(f"you already have a fleet named {name!r}; delete it or choose another name")


async def _check_budget(session: AsyncSession, tenant_id: UUID, document: dict[str, Any], size: int, now: datetime) -> None:
    """The tenant's budget must allow the whole fleet at its bound (402), as it must a procurement;
    with a budget the spec needs its max price (422). The engine checks each member again."""
    if size == 0:
        return
    bound = spec_price_bound(document)
    await check_procurement(session, tenant_id, bound * size if bound is not None else None, now)


# ----- reading ----------------------------------------------------------------------------------
async def _owned(session: AsyncSession, principal: Principal, fleet_id: UUID) -> Fleet:
    fleet = (
        await session.execute(
            select(Fleet).where(Fleet.id == fleet_id, Fleet.tenant_id == principal.tenant_id).execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()
    if fleet is None:
        raise NotFoundError(f"fleet {fleet_id} not found")
    return fleet


async def _members(session: AsyncSession, fleet_ids: list[UUID]) -> dict[UUID, list[Resource]]:
    found: dict[UUID, list[Resource]] = {fid: [] for fid in fleet_ids}
    if not fleet_ids:
        return found
    rows = await session.execute(
        select(Resource)
        .where(Resource.fleet_id.in_(fleet_ids), Resource.status.in_(LIVE_STATUS_VALUES))
        .order_by(Resource.created_at, Resource.id)
    )
    for row in rows.scalars():
        assert row.fleet_id is not None
        found[row.fleet_id].append(row)
    return found


async def get_fleet(db: Database, principal: Principal, fleet_id: UUID) -> FleetView:
    async with db.session() as session:
        fleet = await _owned(session, principal, fleet_id)
        members = (await _members(session, [fleet.id]))[fleet.id]
        latest = (
            await session.execute(select(Event).where(Event.fleet_id == fleet.id).order_by(Event.id.desc()).limit(EVENTS_SHOWN))
        ).scalars()
        return FleetView(fleet, members, list(reversed(list(latest))))


async def list_fleets(db: Database, principal: Principal, *, limit: int = 100, offset: int = 0, include_deleted: bool = False) -> tuple[list[FleetView], int]:
    """The caller's fleets, newest first, and how many there are."""
    check_page(limit, offset)
    conditions = [Fleet.tenant_id == principal.tenant_id]
    if not include_deleted:
        conditions.append(Fleet.status != FleetStatus.DELETED.value)
    async with db.session() as session:
        total = (await session.execute(select(func.count()).select_from(Fleet).where(*conditions))).scalar_one()
        fleets = list(
            (
                await session.execute(select(Fleet).where(*conditions).order_by(Fleet.created_at.desc(), Fleet.id).limit(limit).offset(offset))
            ).scalars()
        )
        members = await _members(session, [f.id for f in fleets])
        return [FleetView(f, members[f.id], []) for f in fleets], int(total)


async def list_events(db: Database, principal: Principal, fleet_id: UUID, *, limit: int = 500, offset: int = 0) -> tuple[list[Event], int]:
    """The fleet's own events, oldest first."""
    check_page(limit, offset)
    async with db.session() as session:
        await _owned(session, principal, fleet_id)
        condition = Event.fleet_id == fleet_id
        total = (await session.execute(select(func.count()).select_from(Event).where(condition))).scalar_one()
        rows = (await session.execute(select(Event).where(condition).order_by(Event.at, Event.id).limit(limit).offset(offset))).scalars()
        return list(rows), int(total)


# ----- writing ----------------------------------------------------------------------------------
async def _lock(session: AsyncSession, principal: Principal, fleet_id: UUID) -> Fleet:
    """Lock the caller's fleet row for this transaction and read it fresh (404 if not theirs)."""
    locked = await session.execute(
        update(Fleet).where(Fleet.id == fleet_id, Fleet.tenant_id == principal.tenant_id).values(updated_at=utcnow())
    )
    if rows_matched(locked) != 1:
        raise NotFoundError(f"fleet {fleet_id} not found")
    return await _owned(session, principal, fleet_id)


def _refuse_ending(fleet: Fleet) -> None:
    if fleet.status == FleetStatus.DELETING.value:
        raise ConflictError(f"fleet {fleet.id} is already being deleted")
    if fleet.status == FleetStatus.DELETED.value:
        raise ConflictError(f"fleet {fleet.id} is already deleted")


async def patch_fleet(db: Database, principal: Principal, fleet_id: UUID, fields: dict[str, Any]) -> FleetView:
    """Change the size (scale) or the policies. Only the keys given change."""
    if not fields:
        raise UnprocessableError("give at least one of size, on_preemption, placement, max_hourly_spend", loc=("body",))
    now = utcnow()
    async with db.transaction() as session:
        fleet = await _lock(session, principal, fleet_id)
        _refuse_ending(fleet)
        changes: dict[str, Any] = {}
        if fields.get("size") is not None:
            size = check_size(int(fields["size"]))
            if size > fleet.size:  # the members still to add must fit (the current ones count as live spend)
                counting = (
                    await session.execute(
                        select(func.count()).select_from(Resource).where(Resource.fleet_id == fleet.id, Resource.status.in_(COUNTING_STATUS_VALUES))
                    )
                ).scalar_one()
                await _check_budget(session, principal.tenant_id, fleet.spec, size - int(counting), now)
            changes["size"] = size
        for name, choices in (("on_preemption", ON_PREEMPTION), ("placement", PLACEMENTS)):
            if fields.get(name) is not None:
                changes[name] = check_choice(str(fields[name]), choices, name)
        if "max_hourly_spend" in fields:
            changes["max_hourly_spend"] = check_amount(fields["max_hourly_spend"], "max_hourly_spend", ("body", "max_hourly_spend"))
        described = {k: v for k, v in changes.items() if getattr(fleet, k) != v}
        for name, value in changes.items():
            setattr(fleet, name, value)
        fleet.next_attempt_at = now  # the engine closes the gap at once
        fleet.retry_count = 0
        if described:
            summary = ", ".join(f"{k} {v}" for k, v in described.items())
            fleet_event(session, fleet, "fleet_changed", f"changed: {summary}", at=now, data={"changes": described})
    hint()
    return await get_fleet(db, principal, fleet_id)


async def delete_fleet(db: Database, principal: Principal, fleet_id: UUID) -> FleetView:
    """Record the delete: the engine deletes every member, and the fleet ends `deleted` once every
    vendor confirmed. A second delete is a 409."""
    now = utcnow()
    async with db.transaction() as session:
        fleet = await _lock(session, principal, fleet_id)
        _refuse_ending(fleet)
        fleet.status = FleetStatus.DELETING.value
        fleet.status_message = "deleting every member; deleted once each vendor confirms its instance is gone"
        fleet.delete_requested_at = now
        fleet.next_attempt_at = now
        fleet_event(session, fleet, "fleet_deleting", "delete requested", at=now)
    hint()
    return await get_fleet(db, principal, fleet_id)
