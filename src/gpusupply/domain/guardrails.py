"""The budget guardrails both sides apply: the month's spend of a tenant, the alert thresholds,
and the guardrail round the engine runs (engine/autodelete.py): budget alerts at 80 % and 100 % of
the monthly budget, and which resources a reached limit deletes (docs/cost.md).

The tenant's side (`GET/PUT /budget`, the procurement check, `auto_delete` values) is
services/budgets.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gpusupply.core.errors import ServiceError, UnprocessableError
from gpusupply.core.states import LIVE_STATUSES, ResourceStatus
from gpusupply.db.models import Budget, Procurement, Resource
from gpusupply.db.session import Database, rows_matched
from gpusupply.domain import costs
from gpusupply.domain.events import add_event

ALERT_THRESHOLDS = (80, 100)  # percent of the monthly budget
# How far ahead of spending the monthly check looks: the next hour of every live resource and of
# the new one must still fit in the budget (vendors bill by the hour).
HEADROOM_HOURS = 1.0



# The statuses whose resource bills or may bill: what the budgets count and the guardrails delete.
LIVE_STATUS_VALUES = tuple(s.value for s in LIVE_STATUSES)



def month_start(now: datetime) -> datetime:
    now = now.astimezone(UTC)
    return datetime(now.year, now.month, 1, tzinfo=UTC)



def month_key(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m")



def usd(amount: float) -> str:
    return f"{amount:,.2f} USD"



def alerts_due(spent: float, monthly_budget: float, already_sent: int) -> list[int]:
    """Thresholds (percent) newly crossed: each is alerted once per month. Pure."""
    if monthly_budget <= 0:
        return []
    percent = spent / monthly_budget * 100
    return [t for t in ALERT_THRESHOLDS if t > already_sent and percent >= t - 1e-9]



async def spend_between(session: AsyncSession, tenant_id: UUID, start: datetime, end: datetime) -> float:
    """USD the tenant's resources billed in [start, end)."""
    resources = list(
        (
            await session.execute(
                select(Resource).where(
                    Resource.tenant_id == tenant_id,
                    Resource.running_since.is_not(None),
                    Resource.running_since < end,
                    or_(Resource.ended_at.is_(None), Resource.ended_at > start),
                )
            )
        ).scalars()
    )
    transitions = await costs.load_transitions(session, [r.id for r in resources])
    return sum(
        costs.cost(costs.clip(costs.resource_intervals(r, transitions[r.id], end), start, end), costs.rates_for(r))
        for r in resources
    )



async def month_spend(session: AsyncSession, tenant_id: UUID, now: datetime) -> float:
    return await spend_between(session, tenant_id, month_start(now), now)



@dataclass(slots=True)
class BudgetRound:
    alerts: list[tuple[UUID, int]]  # (tenant, threshold) alerted this round
    exhausted: list[UUID]  # tenants at 100 % with delete_on_exhaustion



async def evaluate_budgets(db: Database, now: datetime) -> BudgetRound:
    """Alert each monthly budget's newly crossed thresholds (a `budget_alert` event, once per month
    each) and name the tenants whose budget is exhausted and who asked for deletion."""
    outcome = BudgetRound([], [])
    async with db.session() as session:
        tenant_ids = list((await session.execute(select(Budget.tenant_id).where(Budget.monthly_budget.is_not(None)))).scalars())
    month = month_key(now)
    for tenant_id in tenant_ids:
        async with db.transaction() as session:
            locked = await session.execute(
                update(Budget).where(Budget.tenant_id == tenant_id).values(alert_level=Budget.alert_level)
            )
            if rows_matched(locked) != 1:
                continue
            budget = await session.get(Budget, tenant_id, populate_existing=True)
            if budget is None or budget.monthly_budget is None:
                continue
            spent = await month_spend(session, tenant_id, now)
            already = budget.alert_level if budget.alert_month == month else 0
            for threshold in alerts_due(spent, budget.monthly_budget, already):
                add_event(
                    session,
                    kind="budget_alert",
                    tenant_id=tenant_id,
                    reason=f"{threshold}% of the monthly budget used: {usd(spent)} of {usd(budget.monthly_budget)} in {month}",
                    data={"threshold": threshold, "spent": round(spent, 6), "monthly_budget": budget.monthly_budget, "month": month},
                    at=now,
                )
                outcome.alerts.append((tenant_id, threshold))
                budget.alert_month, budget.alert_level = month, threshold
            if budget.delete_on_exhaustion and spent >= budget.monthly_budget - 1e-9:
                outcome.exhausted.append(tenant_id)
    return outcome



async def exhausted_resources(db: Database, tenant_ids: list[UUID]) -> list[UUID]:
    """Live resources of these tenants that are not being deleted yet."""
    if not tenant_ids:
        return []
    async with db.session() as session:
        rows = await session.execute(
            select(Resource.id).where(
                Resource.tenant_id.in_(tenant_ids),
                Resource.status.in_(LIVE_STATUS_VALUES),
                Resource.status != ResourceStatus.DELETING.value,
                Resource.cluster_id.is_(None),  # a cluster's nodes go with their cluster (in this list)
            )
        )
        return list(rows.scalars())



async def limited_resources(db: Database) -> list[Resource]:
    """Live, not yet deleting resources with an auto-delete time or a spend limit."""
    async with db.session() as session:
        rows = await session.execute(
            select(Resource).where(
                Resource.status.in_(LIVE_STATUS_VALUES),
                Resource.status != ResourceStatus.DELETING.value,
                or_(Resource.auto_delete_at.is_not(None), and_(Resource.spend_limit.is_not(None), Resource.running_since.is_not(None))),
            )
        )
        return list(rows.scalars())


# ----- the procurement check (a procurement, and every member a fleet adds) ------------------------
class BudgetExceeded(ServiceError):
    """A procurement refused by a tenant budget: 402, with the limit and the numbers."""

    status_code = 402



def spec_price_bound(spec: dict[str, Any] | None) -> float | None:
    """The most a procure-by-spec can cost per hour: max price per GPU-hour x GPU count."""
    compute = (spec or {}).get("compute") or {}
    price = compute.get("max_price_per_gpu_hour")
    if price is None:
        return None
    return float(price) * int(compute.get("gpu_count") or 1)


def procurement_refusal(
    *,
    max_hourly_spend: float | None,
    monthly_budget: float | None,
    new_hourly: float,
    live_hourly: float,
    month_spent: float,
) -> str | None:
    """Why a procurement costing `new_hourly` USD/h must be refused, or None. Pure."""
    if max_hourly_spend is not None and live_hourly + new_hourly > max_hourly_spend + 1e-9:
        return (
            f"max_hourly_spend exceeded: your live resources cost {usd(live_hourly)}/h and this procurement adds "
            f"{usd(new_hourly)}/h, {usd(live_hourly + new_hourly)}/h in all, over the cap of {usd(max_hourly_spend)}/h"
        )
    if monthly_budget is not None:
        projected = month_spent + (live_hourly + new_hourly) * HEADROOM_HOURS
        if projected > monthly_budget + 1e-9:
            return (
                f"monthly_budget exceeded: {usd(month_spent)} spent this month, plus one more hour of your live "
                f"resources ({usd(live_hourly)}/h) and of this procurement ({usd(new_hourly)}/h) makes "
                f"{usd(projected)}, over the monthly budget of {usd(monthly_budget)}"
            )
    return None


async def live_hourly_spend(session: AsyncSession, tenant_id: UUID) -> float:
    """USD per hour of the tenant's live resources: their fixed price, or for a procure-by-spec
    that has no offer yet, its bound (max price x count; 0 when the spec has none)."""
    rows = await session.execute(
        select(Resource.price_per_hour, Procurement.spec)
        .join(Procurement, Procurement.id == Resource.procurement_id)
        .where(Resource.tenant_id == tenant_id, Resource.status.in_(LIVE_STATUS_VALUES))
    )
    total = 0.0
    for price, spec in rows:
        total += float(price) if price is not None else (spec_price_bound(spec) or 0.0)
    return total


async def check_procurement(
    session: AsyncSession,
    tenant_id: UUID,
    new_hourly: float | None,
    now: datetime,
    *,
    bound_loc: tuple[str | int, ...] = ("body", "spec", "compute", "max_price_per_gpu_hour"),
) -> None:
    """Refuse (402) a procurement that would pass the tenant's budget. Runs inside the procurement's
    transaction and locks the budget row first, so concurrent procurements are checked one by one."""
    locked = await session.execute(
        update(Budget).where(Budget.tenant_id == tenant_id).values(alert_level=Budget.alert_level)
    )
    if rows_matched(locked) != 1:
        return  # no budget
    budget = (
        await session.execute(select(Budget).where(Budget.tenant_id == tenant_id).execution_options(populate_existing=True))
    ).scalar_one()
    if budget.max_hourly_spend is None and budget.monthly_budget is None:
        return
    if new_hourly is None:
        raise UnprocessableError(
            "your tenant has a budget: give compute.max_price_per_gpu_hour in the spec, so the procurement can be "
            "checked against it (the bound is max price x gpu_count)",
            loc=bound_loc,
        )
    live = await live_hourly_spend(session, tenant_id)
    spent = await month_spend(session, tenant_id, now) if budget.monthly_budget is not None else 0.0
    refusal = procurement_refusal(
        max_hourly_spend=budget.max_hourly_spend,
        monthly_budget=budget.monthly_budget,
        new_hourly=new_hourly,
        live_hourly=live,
        month_spent=spent,
    )
    if refusal is not None:
        raise BudgetExceeded(f"procurement refused: {refusal}")
