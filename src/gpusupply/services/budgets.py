"""Guardrails: per-tenant budgets and per-resource auto-delete limits (docs/cost.md): the tenant's side.

Per tenant (`GET/PUT /budget`): `max_hourly_spend` caps the sum of the live resources' prices per
hour; `monthly_budget` caps the spend of a UTC calendar month. A procurement that would pass
either is refused with 402 naming the limit and the numbers. The engine's guardrail job
(engine/autodelete.py) raises `budget_alert` events at 80 % and 100 % of the monthly budget (once
each per month) and, with `delete_on_exhaustion`, deletes the tenant's live resources at 100 %;
what it shares with this module (the month's spend, the thresholds) is in domain/guardrails.py.

Per resource: `auto_delete` (`delete_at` or `ttl_seconds`, and `spend_limit`), set at procurement
or with `PATCH /resources/{id}`; the same job deletes the resource when one is reached.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from gpusupply.core.errors import NotFoundError, UnprocessableError
from gpusupply.core.inputs import require_text
from gpusupply.db.models import Budget, Resource, Tenant, utcnow
from gpusupply.db.session import Database
from gpusupply.domain.guardrails import (  # noqa: F401  (the procurement check lives in domain: the fleet job applies it too)
    ALERT_THRESHOLDS,
    HEADROOM_HOURS,
    LIVE_STATUS_VALUES,
    BudgetExceeded,
    check_procurement,
    live_hourly_spend,
    month_key,
    month_spend,
    procurement_refusal,
    spec_price_bound,
    usd,
)
from gpusupply.services.keys import Principal
from gpusupply.services.tenants import find_tenant

MAX_USD = 10_000_000.0  # sanity bound on every amount a user sets
MAX_TTL_SECONDS = 366 * 24 * 3600


def check_amount(value: float | None, name: str, loc: tuple[str | int, ...]) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not 0 < value <= MAX_USD:
        raise UnprocessableError(f"{name} must be a positive amount of USD, at most {MAX_USD:,.0f}", loc=loc)
    return float(value)


@dataclass(frozen=True, slots=True)
class AutoDeleteValues:
    """What to store on the resource. `None` means: leave that column as it is."""

    delete_at: datetime | None
    spend_limit: float | None
    clear_delete_at: bool = False
    clear_spend_limit: bool = False


def auto_delete_values(
    fields: dict[str, Any], now: datetime, *, loc: tuple[str | int, ...] = ("body", "auto_delete")
) -> AutoDeleteValues:
    """Validate an `auto_delete` object: {delete_at | ttl_seconds, spend_limit}. Keys that are present
    with null clear that limit; absent keys leave it (merge-patch). Pure."""
    if "delete_at" in fields and "ttl_seconds" in fields and fields["delete_at"] is not None and fields["ttl_seconds"] is not None:
        raise UnprocessableError("give delete_at or ttl_seconds, not both", loc=loc)
    delete_at: datetime | None = None
    clear_delete_at = False
    if fields.get("delete_at") is not None:
        delete_at = fields["delete_at"]
        assert isinstance(delete_at, datetime)
        if delete_at.tzinfo is None:
            raise UnprocessableError(
                "delete_at needs a timezone (e.g. 2026-11-23T18:00:00Z)", loc=(*loc, "delete_at")
            )
        delete_at = delete_at.astimezone(UTC)
        if delete_at <= now:
            raise UnprocessableError(
                f"delete_at must be in the future (it is {delete_at.isoformat()}, now is {now.isoformat()})",
                loc=(*loc, "delete_at"),
            )
        if delete_at > now + timedelta(seconds=MAX_TTL_SECONDS):
            raise UnprocessableError("delete_at must be within 366 days", loc=(*loc, "delete_at"))
    elif fields.get("ttl_seconds") is not None:
        ttl = fields["ttl_seconds"]
        if isinstance(ttl, bool) or not isinstance(ttl, int) or not 1 <= ttl <= MAX_TTL_SECONDS:
            raise UnprocessableError(f"ttl_seconds must be 1-{MAX_TTL_SECONDS} (366 days)", loc=(*loc, "ttl_seconds"))
        delete_at = now + timedelta(seconds=ttl)
    elif "delete_at" in fields or "ttl_seconds" in fields:
        clear_delete_at = True
    spend_limit = check_amount(fields.get("spend_limit"), "spend_limit", (*loc, "spend_limit"))
    clear_spend_limit = "spend_limit" in fields and fields["spend_limit"] is None
    return AutoDeleteValues(delete_at, spend_limit, clear_delete_at, clear_spend_limit)


def apply_auto_delete(resource: Resource, values: AutoDeleteValues) -> None:
    if values.delete_at is not None:
        resource.auto_delete_at = values.delete_at
    elif values.clear_delete_at:
        resource.auto_delete_at = None
    if values.spend_limit is not None:
        resource.spend_limit = values.spend_limit
    elif values.clear_spend_limit:
        resource.spend_limit = None


# ----- GET / PUT /budget ---------------------------------------------------------------------------
@dataclass(slots=True)
class BudgetView:
    tenant: str
    max_hourly_spend: float | None
    monthly_budget: float | None
    delete_on_exhaustion: bool
    month: str
    spent_this_month: float
    live_hourly_spend: float
    monthly_used_percent: float | None
    alerts_sent: list[int]
    updated_at: datetime | None


async def resolve_tenant(session: AsyncSession, principal: Principal, name: str | None) -> tuple[UUID, str]:
    """The tenant a request is about: the caller's own, or (admin keys only) any tenant by name.
    Another tenant named by a tenant key is 404, like one that does not exist."""
    if name is None or name == principal.tenant_name:
        return principal.tenant_id, principal.tenant_name
    require_text({"tenant": name}, loc=("query",))
    tenant: Tenant | None = await find_tenant(session, name) if principal.is_admin else None
    if tenant is None:
        raise NotFoundError(f"tenant {name!r} not found")
    return tenant.id, tenant.name


async def _view(session: AsyncSession, tenant_id: UUID, tenant_name: str, now: datetime) -> BudgetView:
    budget = await session.get(Budget, tenant_id, populate_existing=True)
    spent = await month_spend(session, tenant_id, now)
    live = await live_hourly_spend(session, tenant_id)
    monthly = budget.monthly_budget if budget else None
    same_month = budget is not None and budget.alert_month == month_key(now)
    return BudgetView(
        tenant=tenant_name,
        max_hourly_spend=budget.max_hourly_spend if budget else None,
        monthly_budget=monthly,
        delete_on_exhaustion=bool(budget and budget.delete_on_exhaustion),
        month=month_key(now),
        spent_this_month=spent,
        live_hourly_spend=live,
        monthly_used_percent=(spent / monthly * 100) if monthly else None,
        alerts_sent=[t for t in ALERT_THRESHOLDS if same_month and budget is not None and t <= budget.alert_level],
        updated_at=budget.updated_at if budget else None,
    )


async def get_budget(db: Database, principal: Principal, tenant: str | None = None, *, now: datetime | None = None) -> BudgetView:
    async with db.session() as session:
        tenant_id, tenant_name = await resolve_tenant(session, principal, tenant)
        return await _view(session, tenant_id, tenant_name, now or utcnow())


async def put_budget(
    db: Database,
    principal: Principal,
    *,
    max_hourly_spend: float | None,
    monthly_budget: float | None,
    delete_on_exhaustion: bool,
    tenant: str | None = None,
    now: datetime | None = None,
) -> BudgetView:
    """Set the tenant's limits (the whole budget: a limit left out is removed). A new monthly
    budget starts its alerts afresh."""
    hourly = check_amount(max_hourly_spend, "max_hourly_spend", ("body", "max_hourly_spend"))
    monthly = check_amount(monthly_budget, "monthly_budget", ("body", "monthly_budget"))
    if delete_on_exhaustion and monthly is None:
        raise UnprocessableError("delete_on_exhaustion needs a monthly_budget", loc=("body", "delete_on_exhaustion"))
    now = now or utcnow()
    async with db.transaction() as session:
        tenant_id, tenant_name = await resolve_tenant(session, principal, tenant)
        budget = await session.get(Budget, tenant_id)
        if budget is None:
            budget = Budget(tenant_id=tenant_id, alert_level=0)
            session.add(budget)
        elif budget.monthly_budget != monthly:
            budget.alert_month, budget.alert_level = None, 0
        budget.max_hourly_spend = hourly
        budget.monthly_budget = monthly
        budget.delete_on_exhaustion = delete_on_exhaustion
        budget.updated_at = now
        await session.flush()
        return await _view(session, tenant_id, tenant_name, now)
