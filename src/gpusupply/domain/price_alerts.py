"""Price alerts and buy-below orders (docs/prices.md), evaluated by the engine's `price_alerts` job.

Each round (one process at a time, under the job's lease) takes the catalog as this process has
it, notes the newest refresh it holds, and evaluates every alert not yet evaluated on that refresh:
the cheapest offer matching the alert's document against its threshold.

- `new` or `above`, and the cheapest is at or under the threshold: fire `price.below` (an alert
  whose condition already holds fires at its first evaluation).
- `below`, and the cheapest is over threshold * (1 + hysteresis), or nothing matches any more:
  fire `price.above`. A price dancing around the line fires nothing.
- `new` and over the threshold: `above`, silently.

A firing is one transaction: the alert's new state (guarded on the state and refresh it was read
at, so a second worker's round changes nothing), the firing row, the event and its webhook outbox
row, and, for `then: procure`, the procurement and its pending resource (written by the
`AlertProcurer` the process passes in, the procurement service's own intent rows, budget checked).
Either all of it commits or none: a crash before the commit leaves the alert to fire at the next
round, a crash after it leaves nothing to redo. So each firing procures exactly once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID, uuid4

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gpusupply.contract.offers import OffersRequest
from gpusupply.core.errors import ServiceError
from gpusupply.core.offers import OfferQuery
from gpusupply.db.models import PriceAlert, PriceAlertFiring
from gpusupply.db.session import Database, rows_matched
from gpusupply.domain.catalog import OfferCatalog, StoredOffer
from gpusupply.domain.events import add_event
from gpusupply.domain.offer_query import query_from_request

log = logging.getLogger(__name__)

NEW, BELOW, ABOVE = "new", "below", "above"
PRICE_BELOW, PRICE_ABOVE = "price.below", "price.above"
# Event kinds (events.kind) of a firing; domain/webhooks.py delivers them as price.below / price.above.
EVENT_KINDS = {PRICE_BELOW: "price_below", PRICE_ABOVE: "price_above"}
ALERTS_PER_ROUND = 500


class AlertProcurer(Protocol):
    """Writes a procurement by spec and its pending resource into `session` (the firing's own
    transaction) for the alert's tenant; returns the resource id. Raises a ServiceError when the
    procurement is refused (the budget). The process binds it to services.procurement."""

    async def __call__(self, session: AsyncSession, alert: PriceAlert, firing_id: UUID) -> UUID: ...


@dataclass(frozen=True, slots=True)
class Decision:
    state: str
    fire: str | None  # PRICE_BELOW / PRICE_ABOVE, or None


def decide(state: str, price: float | None, threshold: float, hysteresis: float) -> Decision:
    """The alert's next state and what it fires (pure; the rules in the module docstring)."""
    if price is not None and price <= threshold:
        return Decision(BELOW, None if state == BELOW else PRICE_BELOW)
    if state == BELOW:
        back_above = price is None or price > threshold * (1.0 + hysteresis)
        return Decision(ABOVE, PRICE_ABOVE) if back_above else Decision(BELOW, None)
    return Decision(ABOVE, None)


def alert_query(spec: dict[str, Any]) -> OfferQuery:
    """What an alert watches: its document, without a price bound (the threshold is the bound)."""
    query = query_from_request(OffersRequest.model_validate(spec), loc=("body", "spec"))
    return replace(query, max_price_per_gpu_hour=None)


@dataclass(slots=True)
class AlertRound:
    evaluated: int = 0
    fired: list[tuple[UUID, str]] = field(default_factory=list)  # (alert id, event type)


async def evaluate_alerts(
    db: Database, catalog: OfferCatalog, procurer: AlertProcurer | None, *, hysteresis: float, now: datetime,
    before_commit: Any = None,
) -> AlertRound:
    """One round (see the module docstring). `before_commit(alert_id)` runs inside a firing's
    transaction just before it commits (the kill tests' crash point)."""
    await catalog.sync()
    through = catalog.newest_refresh()
    result = AlertRound()
    if through is None:
        return result
    async with db.session() as session:
        alerts = (
            await session.execute(
                select(PriceAlert)
                .where(or_(PriceAlert.evaluated_through.is_(None), PriceAlert.evaluated_through < through))
                .order_by(PriceAlert.created_at)
                .limit(ALERTS_PER_ROUND)
            )
        ).scalars().all()
    for alert in alerts:
        try:
            query = alert_query(alert.spec)
        except ServiceError as exc:  # a document valid when stored names a GPU no longer known
            log.warning("price alert cannot be evaluated", extra={"alert": str(alert.id), "error": exc.detail})
            continue
        found = await catalog.search(query, limit=1)
        cheapest = found.offers[0] if found.offers else None
        if cheapest is None and found.partial:
            continue  # nothing matches among the catalogs read, and some cannot be read: no verdict
        price = cheapest.offer.gpu_price_per_hour if cheapest is not None else None
        decision = decide(alert.state, price, alert.threshold, hysteresis)
        fired = await _apply(db, alert, decision, cheapest, through, now, procurer, before_commit)
        result.evaluated += 1
        if fired is not None:
            result.fired.append((alert.id, fired))
    return result


async def _apply(
    db: Database, alert: PriceAlert, decision: Decision, cheapest: StoredOffer | None, through: datetime, now: datetime,
    procurer: AlertProcurer | None, before_commit: Any,
) -> str | None:
    price = cheapest.offer.gpu_price_per_hour if cheapest is not None else None
    async with db.transaction() as session:
        # Guarded on what was read: a second worker that evaluated this refresh meanwhile wins alone.
        updated = await session.execute(
            update(PriceAlert)
            .where(
                PriceAlert.id == alert.id,
                PriceAlert.state == alert.state,
                or_(PriceAlert.evaluated_through.is_(None), PriceAlert.evaluated_through < through),
            )
            .values(state=decision.state, evaluated_through=through, last_price=price)
        )
        if rows_matched(updated) != 1 or decision.fire is None:
            return None
        firing = PriceAlertFiring(
            id=uuid4(), alert_id=alert.id, tenant_id=alert.tenant_id, at=now, event_type=decision.fire, price=price,
            vendor=cheapest.offer.vendor if cheapest is not None else None,
            offer_id=cheapest.offer_id if cheapest is not None else None,
        )
        if decision.fire == PRICE_BELOW and alert.procure is not None:
            await _procure(session, alert, firing, procurer)
        session.add(firing)
        await session.execute(update(PriceAlert).where(PriceAlert.id == alert.id).values(last_fired_at=now))
        event = add_event(
            session, kind=EVENT_KINDS[decision.fire], tenant_id=alert.tenant_id, vendor=firing.vendor, at=now,
            reason=_reason(alert, decision.fire, price),
            data=firing_data(alert, firing),
        )
        # A buy-below order's event names its resource (and shows in that resource's history).
        event.resource_id = firing.resource_id
        if before_commit is not None:
            before_commit(alert.id)
    return decision.fire


async def _procure(session: AsyncSession, alert: PriceAlert, firing: PriceAlertFiring, procurer: AlertProcurer | None) -> None:
    limit = int((alert.procure or {}).get("max_count", 1))
    if alert.procured_count >= limit:
        firing.note = f"not procured: this alert already procured its max_count of {limit}"
        return
    if procurer is None:
        firing.note = "not procured: this process cannot procure"
        return
    try:
        # A refusal (the budget) is raised before the procurer writes anything.
        firing.resource_id = await procurer(session, alert, firing.id)
    except ServiceError as exc:
        firing.note = f"not procured: {exc.detail}"
        return
    await session.execute(
        update(PriceAlert).where(PriceAlert.id == alert.id).values(procured_count=PriceAlert.procured_count + 1)
    )


def _reason(alert: PriceAlert, event_type: str, price: float | None) -> str:
    if price is None:
        return f"no offer matches the alert any more (threshold ${alert.threshold:.3f}/GPU-hour)"
    side = "at or under" if event_type == PRICE_BELOW else "back over"
    return f"cheapest match ${price:.3f}/GPU-hour is {side} the threshold ${alert.threshold:.3f}/GPU-hour"


def firing_data(alert: PriceAlert, firing: PriceAlertFiring) -> dict[str, Any]:
    """The event's details (and so the webhook's `data.details`): the alert, the price, the offer
    and, for a buy-below order, the resource it procured."""
    return {
        "alert_id": str(alert.id),
        "alert_name": alert.name,
        "firing_id": str(firing.id),
        "threshold": alert.threshold,
        "price": firing.price,
        "vendor": firing.vendor,
        "offer_id": str(firing.offer_id) if firing.offer_id else None,
        "spec": alert.spec,
        "resource_id": str(firing.resource_id) if firing.resource_id else None,
        "note": firing.note,
    }
