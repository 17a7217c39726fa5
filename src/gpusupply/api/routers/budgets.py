"""Budget: the tenant's spending limits (docs/cost.md)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from gpusupply.api.deps import ApiRoute, ServiceContext, get_principal, responses, service_context
from gpusupply.contract.cost import BudgetIn, BudgetOut
from gpusupply.core.inputs import Text
from gpusupply.services import budgets
from gpusupply.services.keys import Principal

router = APIRouter(route_class=ApiRoute, tags=["Cost"], responses=responses(401, 503))

_TENANT = Query(None, max_length=100, description="Admin keys: another tenant's budget. Tenant keys: only their own (else 404).")


def budget_out(view: budgets.BudgetView) -> BudgetOut:
    return BudgetOut(
        tenant=view.tenant,
        max_hourly_spend=view.max_hourly_spend,
        monthly_budget=view.monthly_budget,
        delete_on_exhaustion=view.delete_on_exhaustion,
        month=view.month,
        spent_this_month=round(view.spent_this_month, 6),
        live_hourly_spend=round(view.live_hourly_spend, 6),
        monthly_used_percent=round(view.monthly_used_percent, 3) if view.monthly_used_percent is not None else None,
        alerts_sent=view.alerts_sent,
        updated_at=view.updated_at,
    )


@router.get("/budget", response_model=BudgetOut, summary="Your budget and this month's spend", responses=responses(404, 422))
async def get_budget(
    tenant: Text | None = _TENANT, principal: Principal = Depends(get_principal), ctx: ServiceContext = Depends(service_context)
) -> BudgetOut:
    return budget_out(await budgets.get_budget(ctx.db, principal, tenant))


@router.put(
    "/budget",
    response_model=BudgetOut,
    summary="Set your budget (the whole of it: a limit left out is removed)",
    description=(
        "`max_hourly_spend` caps the sum of your live resources' prices per hour; `monthly_budget` the spend of a UTC "
        "calendar month. A procurement that would pass either is refused with 402. Alerts (`budget.alert` events and "
        "webhooks) at 80 % and 100 % of the monthly budget; with `delete_on_exhaustion`, your live resources are "
        "deleted at 100 %."
    ),
    responses=responses(404, 413, 422),
)
async def put_budget(
    body: BudgetIn,
    tenant: Text | None = _TENANT,
    principal: Principal = Depends(get_principal),
    ctx: ServiceContext = Depends(service_context),
) -> BudgetOut:
    view = await budgets.put_budget(
        ctx.db,
        principal,
        max_hourly_spend=body.max_hourly_spend,
        monthly_budget=body.monthly_budget,
        delete_on_exhaustion=body.delete_on_exhaustion,
        tenant=tenant,
    )
    return budget_out(view)
