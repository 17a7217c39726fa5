"""Usage: what your resources cost over a period, grouped, as JSON or CSV (docs/cost.md)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query, Request, Response

from gpusupply.api.deps import ApiRoute, ServiceContext, get_principal, responses, service_context
from gpusupply.contract.cost import UsageReportOut, UsageRowOut
from gpusupply.core.inputs import Text
from gpusupply.db.models import utcnow
from gpusupply.services.keys import Principal
from gpusupply.services.usage import parse_group_by, parse_period, to_csv, usage_report

router = APIRouter(route_class=ApiRoute, tags=["Cost"], responses=responses(401, 503))

CSV_MEDIA_TYPE = "text/csv"


def wants_csv(request: Request, format: str | None) -> bool:
    if format is not None:
        return format == "csv"
    accept = request.headers.get("accept", "")
    return any(part.split(";", 1)[0].strip().lower() == CSV_MEDIA_TYPE for part in accept.split(","))


@router.get(
    "/usage",
    response_model=UsageReportOut,
    summary="Cost and hours over a period, grouped by tenant, vendor, GPU family and/or day",
    description=(
        "`from`/`to`: ISO 8601 dates or instants (UTC when no zone; default: this month until now; at most 366 days). "
        "`group_by`: one or more of `tenant`, `vendor`, `gpu_family`, `day` (UTC), comma-separated; default `vendor`. "
        "A tenant key sees its own tenant; an admin key every tenant, or one with `tenant=NAME`. "
        "CSV with `Accept: text/csv` or `format=csv`."
    ),
    responses={**responses(404, 422), 200: {"content": {CSV_MEDIA_TYPE: {"schema": {"type": "string"}}}}},
)
async def get_usage(
    request: Request,
    from_: Text | None = Query(None, alias="from", max_length=40, description="Start (inclusive), e.g. 2026-11-01."),
    to: Text | None = Query(None, max_length=40, description="End (exclusive); default now."),
    group_by: Text | None = Query(None, max_length=100, examples=["day,vendor"]),
    tenant: Text | None = Query(None, max_length=100, description="Admin keys: one tenant's usage."),
    format: Literal["json", "csv"] | None = Query(None, description="Overrides the Accept header."),
    principal: Principal = Depends(get_principal),
    ctx: ServiceContext = Depends(service_context),
) -> Response | UsageReportOut:
    now = utcnow()
    start, end = parse_period(from_, to, now)
    keys = parse_group_by(group_by)
    report = await usage_report(ctx.db, principal, start=start, end=end, group_by=keys, tenant=tenant, now=now)
    if wants_csv(request, format):
        name = f"gpusupply-usage-{start:%Y%m%d}-{end:%Y%m%d}.csv"
        return Response(
            to_csv(report), media_type=f"{CSV_MEDIA_TYPE}; charset=utf-8", headers={"Content-Disposition": f'attachment; filename="{name}"'}
        )
    return UsageReportOut(
        from_=report.start,
        to=report.end,
        group_by=list(report.group_by),
        tenants=report.tenants,
        total_cost=round(report.total_cost, 6),
        rows=[
            UsageRowOut(
                group=row.group,
                cost=round(row.cost, 6),
                running_hours=round(row.running_hours, 6),
                stopped_hours=round(row.stopped_hours, 6),
                gpu_hours=round(row.gpu_hours, 6),
                resources=row.resources,
            )
            for row in report.rows
        ],
    )
