"""Fleets: what the services (`/fleets`) and the engine (the fleet job, the procure pipeline's
offer choice) share. The pure rules are in core/fleets.py; the fleet job in engine/fleets.py.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from gpusupply.core.fleets import COUNTING_STATUS_VALUES, Member, PlacementPreference, active_cooldowns
from gpusupply.core.states import ResourceStatus
from gpusupply.db.models import Event, Fleet, Resource
from gpusupply.domain.events import add_event


def fleet_event(
    session: AsyncSession,
    fleet: Fleet,
    kind: str,
    reason: str,
    *,
    at: datetime,
    resource: Resource | None = None,
    data: dict[str, Any] | None = None,
) -> Event:
    """A fleet's event (`GET /fleets/{id}` shows the last ones); the fleet_* kinds of
    domain/webhooks.FLEET_EVENT_KINDS are delivered to webhooks too."""
    details = {"fleet_id": str(fleet.id), "fleet_name": fleet.name, **(data or {})}
    return add_event(session, kind=kind, resource=resource, reason=reason, data=details, at=at, tenant_id=fleet.tenant_id, fleet_id=fleet.id)


def member_of(row: Resource) -> Member:
    return Member(
        id=row.id,
        status=row.status,
        vendor=row.vendor,
        vendor_region=row.vendor_region,
        price_per_hour=row.price_per_hour,
        created_at=row.created_at,
        running_since=row.running_since,
        vendor_instance_id=row.vendor_instance_id,
        final_status=row.final_status,
    )


async def placement_preference(session: AsyncSession, fleet_id: UUID, member_id: UUID, now: datetime) -> PlacementPreference | None:
    """How the procure pipeline orders the offers of a fleet member's spec: away from the
    vendor-regions cooling down after a preemption, and spread over (or packed into) the
    vendor-regions of the other members."""
    fleet = await session.get(Fleet, fleet_id)
    if fleet is None:
        return None
    others = (
        await session.execute(
            select(Resource.vendor, Resource.vendor_region).where(
                Resource.fleet_id == fleet_id,
                Resource.id != member_id,
                Resource.status.in_(COUNTING_STATUS_VALUES),
                Resource.vendor.is_not(None),
            )
        )
    ).all()
    me = await session.get(Resource, member_id)
    older_choosing = 0
    if me is not None:
        older_choosing = (
            await session.execute(
                select(func.count()).select_from(Resource).where(
                    Resource.fleet_id == fleet_id,
                    Resource.status == ResourceStatus.PENDING.value,
                    Resource.offer_id.is_(None),
                    or_(Resource.created_at < me.created_at, and_(Resource.created_at == me.created_at, Resource.id < me.id)),
                )
            )
        ).scalar_one()
    avoid = frozenset((str(c["vendor"]), str(c["vendor_region"])) for c in active_cooldowns(fleet.cooldowns or [], now))
    placed = Counter((str(vendor), str(region or "")) for vendor, region in others)
    return PlacementPreference(fleet.placement, avoid, placed, int(older_choosing))
