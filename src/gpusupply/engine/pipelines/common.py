"""Small pieces the pipelines share: backoff, the create request of a row, vendor health, and the
moves every pipeline makes (retry later, fail, hand over to deletion)."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gpusupply.core.offers import Offer
from gpusupply.core.states import ResourceStatus
from gpusupply.db.models import Event, Procurement, Resource, VendorState
from gpusupply.db.session import Database
from gpusupply.domain.events import add_event, change_status
from gpusupply.engine import leases
from gpusupply.engine.context import EngineContext
from gpusupply.engine.pipelines import offers as attempts_
from gpusupply.vendors.base import CreateRequest


def backoff_seconds(retries: int, *, base: float = 1.0, cap: float = 60.0, retry_after: float | None = None) -> float:
    """Exponential backoff with jitter (50-100 % of the step), never below a vendor's Retry-After."""
    step = min(cap, base * (2 ** min(retries, 16)))
    delay = step * random.uniform(0.5, 1.0)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


def create_request(row: Resource, installation_id: str | None) -> CreateRequest:
    """The vendor create for a row; the same on every retry and in every process of an installation."""
    from gpusupply.core.offers import offer_from_dict

    if row.offer_snapshot is None:
        raise ValueError(f"resource {row.id} has no offer to create from")
    return CreateRequest(
        resource_id=row.id,
        offer=offer_from_dict(row.offer_snapshot),
        ssh_public_key=row.ssh_public_key,
        cloud_init=row.cloud_init,
        name=row.name,
        first_attempt_at=row.create_attempted_at,
        installation_id=installation_id,
    )


async def degraded_vendors(db: Database) -> dict[str, str]:
    async with db.session() as session:
        rows = (await session.execute(select(VendorState.vendor, VendorState.degraded_reason).where(VendorState.degraded.is_(True)))).all()
    return {vendor: reason or "degraded" for vendor, reason in rows}


async def procurement_spec(db: Database, procurement_id: Any) -> dict[str, Any] | None:
    async with db.session() as session:
        return (await session.execute(select(Procurement.spec).where(Procurement.id == procurement_id))).scalar_one_or_none()


async def entered_status_at(db: Database, resource_id: Any, status: str) -> datetime | None:
    """When the row last moved into `status` (from its event history)."""
    async with db.session() as session:
        return (
            await session.execute(
                select(Event.at)
                .where(Event.resource_id == resource_id, Event.kind == "status_change", Event.to_status == status)
                .order_by(Event.at.desc())
                .limit(1)
            )
        ).scalar_one_or_none()


def age(now: datetime, since: datetime | None) -> float:
    return (now - since).total_seconds() if since is not None else 0.0


def create_settles_in(row: Resource, settings: Any, now: datetime) -> float:
    """Seconds until an earlier create of `row`, if it committed, must show on the vendor (<= 0: now).

    A create may still be in transit after we sent it: our request stays open up to `vendor_timeout`,
    and a request whose answer was lost (`create_unknown_at`) may reach the vendor late. The
    vendor's visibility window (`create_visibility_seconds`) is counted from the latest of these, not
    from when the create was sent, so a slow network does not make us conclude "nothing exists" and
    create a second instance. A create delayed longer still is a duplicate that the reconciler
    deletes at its next round (docs/engine.md)."""
    if row.create_attempted_at is None:
        return 0.0
    in_transit_until = row.create_attempted_at + timedelta(seconds=settings.vendor_timeout)
    if row.create_unknown_at is not None and row.create_unknown_at > in_transit_until:
        in_transit_until = row.create_unknown_at
    settles_at = in_transit_until + timedelta(seconds=settings.create_visibility_seconds)
    return (settles_at - now).total_seconds()


def hand_to_deletion(session: AsyncSession, row: Resource, reason: str, *, now: datetime, final_status: ResourceStatus) -> None:
    """Move a live row to `deleting`: the delete pipeline removes the instance on the vendor and only
    then moves the row to `final_status`."""
    if row.status == ResourceStatus.DELETING.value:
        return
    change_status(session, row, ResourceStatus.DELETING, reason, at=now)
    row.final_status = final_status.value
    row.delete_requested_at = row.delete_requested_at or now
    row.next_attempt_at = now


async def retry_later(
    ctx: EngineContext, lease: leases.Lease, seconds: float, *, message: str | None = None, count: bool = True, answered: bool = False
) -> None:
    """Keep the row as it is and look at it again in `seconds`. `count`: this wait follows a failed
    vendor call (the backoff grows); `answered`: the vendor answered, so the backoff starts over
    (failures far apart must not add up to a minute's wait)."""
    when = ctx.after(seconds)

    async def merge(session: AsyncSession, row: Resource) -> None:
        row.next_attempt_at = when
        if answered:
            row.retry_count = 0
        elif count:
            row.retry_count = (row.retry_count or 0) + 1
        if message is not None:
            row.status_message = message

    await leases.apply(ctx.db, lease, merge)


def note_event(session: AsyncSession, row: Resource, kind: str, reason: str, *, now: datetime, data: dict[str, Any] | None = None) -> None:
    add_event(session, kind=kind, resource=row, reason=reason, data=data or None, at=now)


# ----- choosing an offer (the procure and cluster pipelines) -------------------------------------
Skipped = list[tuple[str, Offer, str]]  # offers passed over, with why (attempts_.pick_offer)


async def take_first_free_offer(
    ctx: EngineContext,
    lease: leases.Lease,
    offers: Sequence[tuple[str, Offer]],
    attempts: Sequence[dict[str, Any]],
    degraded: dict[str, str],
    merge_for: Callable[[attempts_.Candidate, Skipped], leases.Merge[str]],
) -> tuple[attempts_.Candidate | None, str | None, Skipped]:
    """Apply `merge_for(best offer, offers skipped)` under the lease, passing over offers another
    procurement took first (the merge answers "taken"). Returns the candidate and the merge's
    answer, or (None, None, skipped) once no offer is left."""
    taken: set[str] = set()
    while True:
        candidate, skipped = attempts_.pick_offer(
            [o for o in offers if o[0] not in taken], attempts=attempts, degraded=degraded, enabled=ctx.vendors.adapters
        )
        if candidate is None:
            return None, None, skipped
        outcome = await leases.apply(ctx.db, lease, merge_for(candidate, skipped), release_lease=False)
        if outcome != "taken":
            return candidate, outcome, skipped
        taken.add(candidate.offer_id)
