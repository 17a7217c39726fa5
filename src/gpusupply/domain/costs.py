"""Cost accounting: what a resource has cost, derived from its vendor-confirmed history.

The price is fixed at procurement (`resources.price_per_hour`, the offer's total per hour).
Billing runs from the vendor-confirmed start of running (`running_since`) to the vendor-confirmed
end (`ended_at`; until then: now). In between, the status-change events say how the instance
bills: only statuses the vendor confirmed change the mode, `running` (GPU billed) and `stopped`
(billed as the vendor bills a stopped instance, `Capabilities.stopped_bills_gpu`: the full price,
or only its storage). Requested transitions (`stopping`, `starting`, `rebooting`, `deleting`) keep
the mode of the last confirmed state, because the vendor bills until it has acted.

Everything up to `load_*` is pure and table-tested; docs/cost.md has the rules per vendor.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gpusupply.core.states import FINAL_STATUSES, ResourceStatus
from gpusupply.db.models import Event, Resource, ResourceLike, utcnow
from gpusupply.db.session import Database
from gpusupply.vendors.base import Capabilities

# Statuses whose event is the vendor's word on how the instance bills from then on.
BILLING_STATUSES = (ResourceStatus.RUNNING.value, ResourceStatus.STOPPED.value)
_ID_CHUNK = 500  # ids per IN (...) query: far below every backend's parameter limit
SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True, slots=True)
class Transition:
    at: datetime
    to_status: str


@dataclass(frozen=True, slots=True)
class BilledInterval:
    start: datetime
    end: datetime
    stopped: bool  # False: running (GPU billed); True: stopped (billed at the stopped rate)

    @property
    def hours(self) -> float:
        return (self.end - self.start).total_seconds() / SECONDS_PER_HOUR


@dataclass(frozen=True, slots=True)
class Rates:
    """USD per hour while running and while stopped."""

    running: float
    stopped: float

    def for_interval(self, interval: BilledInterval) -> float:
        return self.stopped if interval.stopped else self.running


# ----- pure ----------------------------------------------------------------------------------------
def billed_intervals(
    transitions: Iterable[Transition], *, running_since: datetime | None, ended_at: datetime | None, now: datetime
) -> list[BilledInterval]:
    """The billed intervals of one resource, in order: from `running_since` to `ended_at` (or
    `now`), split where the vendor confirmed a stop or a start."""
    if running_since is None:
        return []
    end = ended_at or now
    if end <= running_since:
        return []
    if isinstance(transitions, list | tuple) and not transitions:  # never stopped: one running interval
        return [BilledInterval(running_since, end, False)]
    intervals: list[BilledInterval] = []
    stopped = False
    cursor = running_since
    for transition in sorted(transitions, key=lambda t: t.at):
        if transition.at <= running_since:
            continue  # before billing started (the running event itself sits at running_since)
        if transition.at >= end:
            break
        if transition.to_status == ResourceStatus.RUNNING.value:
            now_stopped = False
        elif transition.to_status == ResourceStatus.STOPPED.value:
            now_stopped = True
        else:
            continue  # a request, not the vendor's word: billing goes on as before
        if now_stopped != stopped:
            intervals.append(BilledInterval(cursor, transition.at, stopped))
            cursor, stopped = transition.at, now_stopped
    intervals.append(BilledInterval(cursor, end, stopped))
    merged: list[BilledInterval] = []
    for interval in intervals:
        if interval.end <= interval.start:
            continue
        if merged and merged[-1].stopped == interval.stopped and merged[-1].end == interval.start:
            merged[-1] = BilledInterval(merged[-1].start, interval.end, interval.stopped)
        else:
            merged.append(interval)
    return merged


def clip(intervals: Iterable[BilledInterval], start: datetime | None, end: datetime | None) -> list[BilledInterval]:
    """The parts of `intervals` inside [start, end)."""
    clipped = []
    for interval in intervals:
        lo = max(interval.start, start) if start is not None else interval.start
        hi = min(interval.end, end) if end is not None else interval.end
        if hi > lo:
            clipped.append(BilledInterval(lo, hi, interval.stopped))
    return clipped


def split_by_day(intervals: Iterable[BilledInterval]) -> list[BilledInterval]:
    """Intervals cut at every UTC midnight, so each piece lies within one day."""
    pieces = []
    for interval in intervals:
        start = interval.start
        while start < interval.end:
            midnight = datetime(start.year, start.month, start.day, tzinfo=start.tzinfo) + timedelta(days=1)
            end = min(midnight, interval.end)
            pieces.append(BilledInterval(start, end, interval.stopped))
            start = end
    return pieces


def cost(intervals: Iterable[BilledInterval], rates: Rates) -> float:
    # Added left to right, on every Python (3.12's sum() compensates): CostClock adds the same way.
    total = 0.0
    for interval in intervals:
        total += interval.hours * rates.for_interval(interval)
    return total


@lru_cache
def vendor_capabilities(vendor: str) -> Capabilities | None:
    """A vendor's declared capabilities, from the vendor registry (no adapter instance needed)."""
    from gpusupply.vendors.registry import capabilities

    return capabilities(vendor)


def stopped_rate(vendor: str | None, price_per_hour: float, offer_snapshot: dict[str, Any] | None) -> float:
    """USD per hour of a stopped instance: the full price where the vendor keeps billing the GPUs
    (or we do not know the vendor: never under-count), else the storage part of the offer."""
    if _stopped_bills_gpu(vendor):
        return price_per_hour
    vendor_data = (offer_snapshot or {}).get("vendor_data") or {}
    return stopped_rate_from_storage(vendor, price_per_hour, vendor_data.get("storage_per_hour"))


def _stopped_bills_gpu(vendor: str | None) -> bool:
    capabilities = vendor_capabilities(vendor) if vendor else None
    return capabilities is None or capabilities.stopped_bills_gpu


def stopped_rate_from_storage(vendor: str | None, price_per_hour: float, storage: Any) -> float:
    """`stopped_rate` given the offer's `vendor_data.storage_per_hour` alone (a listing reads
    only that of the snapshot)."""
    if _stopped_bills_gpu(vendor):
        return price_per_hour
    if isinstance(storage, int | float) and not isinstance(storage, bool) and storage > 0:
        return min(float(storage), price_per_hour)
    return 0.0


def rates_for(resource: ResourceLike) -> Rates:
    price = float(resource.price_per_hour or 0.0)
    return Rates(running=price, stopped=stopped_rate(resource.vendor, price, resource.offer_snapshot))


def resource_end(resource: ResourceLike, transitions: Sequence[Transition]) -> datetime | None:
    """When billing ended: `ended_at`, or for a final row without it, its last recorded change."""
    if resource.ended_at is not None:
        return resource.ended_at
    if resource.status in FINAL_STATUSES:  # (StrEnum members: a status string is found as is)
        times = [t.at for t in transitions]
        return max(times) if times else resource.updated_at
    return None


def resource_intervals(resource: ResourceLike, transitions: Sequence[Transition], now: datetime) -> list[BilledInterval]:
    return billed_intervals(
        transitions, running_since=resource.running_since, ended_at=resource_end(resource, transitions), now=now
    )


def resource_cost(resource: ResourceLike, transitions: Sequence[Transition], now: datetime) -> float:
    return cost(resource_intervals(resource, transitions, now), rates_for(resource))


_A_DAY = timedelta(days=1)  # any moment after a history's last change splits it alike (cost_clock)


@dataclass(frozen=True, slots=True)
class CostClock:
    """A resource's cost so far as the clock moves, for a history read once (`cost_clock`): at
    any `now` after `after`, `settled` plus `rate` per hour since `since` (`since` None: nothing
    is open, the cost is `settled`). The very float `cost(resource_intervals(...), rates)` gives
    at that `now`: the same terms added in the same order."""

    after: datetime | None
    settled: float
    since: datetime | None = None
    rate: float = 0.0

    def at(self, now: datetime) -> float | None:
        """The cost at `now`, or None before `after` (a clock behind the history's last change)."""
        if self.since is None:
            return self.settled
        if self.after is not None and now <= self.after:
            return None
        return self.settled + (now - self.since).total_seconds() / SECONDS_PER_HOUR * self.rate


def cost_clock(resource: ResourceLike, transitions: Sequence[Transition], rates: Rates) -> CostClock:
    if resource.running_since is None:
        return CostClock(None, 0.0)
    end = resource_end(resource, transitions)
    if end is not None:  # billing has ended: the clock no longer moves the cost
        return CostClock(None, cost(billed_intervals(transitions, running_since=resource.running_since, ended_at=end, now=end), rates))
    # After the last change every moment splits the history alike, the last interval open.
    after = max([resource.running_since, *(t.at for t in transitions)])
    *closed, last = billed_intervals(transitions, running_since=resource.running_since, ended_at=None, now=after + _A_DAY)
    return CostClock(after, cost(closed, rates), last.start, rates.for_interval(last))


# ----- loading -------------------------------------------------------------------------------------
async def load_transitions(session: AsyncSession, resource_ids: Iterable[UUID]) -> dict[UUID, list[Transition]]:
    """Every billing-relevant status change (to running / stopped) of these resources, oldest first."""
    ids = list(dict.fromkeys(resource_ids))
    found: dict[UUID, list[Transition]] = {rid: [] for rid in ids}
    for i in range(0, len(ids), _ID_CHUNK):
        chunk = ids[i : i + _ID_CHUNK]
        rows = await session.execute(
            select(Event.resource_id, Event.at, Event.to_status)
            .where(
                Event.resource_id.in_(chunk),
                Event.kind == "status_change",
                Event.to_status.in_(BILLING_STATUSES),
            )
            .order_by(Event.at, Event.id)
        )
        for resource_id, at, to_status in rows:
            if resource_id is not None and to_status is not None:  # always, by the WHERE clause
                found[resource_id].append(Transition(at, to_status))
    return found


async def costs_in_session(
    session: AsyncSession, resources: Sequence[Resource], now: datetime
) -> dict[UUID, float]:
    """Each resource's cost; a cluster's is its nodes' together (the cluster row bills nothing)."""
    billed = [r for r in resources if r.running_since is not None]
    transitions = await load_transitions(session, [r.id for r in billed])
    costs = {r.id: 0.0 for r in resources}
    for resource in billed:
        costs[resource.id] = resource_cost(resource, transitions[resource.id], now)
    cluster_ids = [r.id for r in resources if r.resource_type == "cluster"]
    if cluster_ids:
        nodes = list((await session.execute(select(Resource).where(Resource.cluster_id.in_(cluster_ids)))).scalars())
        cluster_of = {n.id: n.cluster_id for n in nodes if n.cluster_id is not None}
        for node_id, node_cost in (await costs_in_session(session, nodes, now)).items():
            costs[cluster_of[node_id]] = costs[cluster_of[node_id]] + node_cost
    return costs


async def costs_so_far(db: Database, resources: Sequence[Resource], *, now: datetime | None = None) -> dict[UUID, float]:
    """USD each resource has cost up to `now` (0 for one that never ran). One query per 500 resources."""
    if not resources:
        return {}
    async with db.session() as session:
        return await costs_in_session(session, resources, now or utcnow())
