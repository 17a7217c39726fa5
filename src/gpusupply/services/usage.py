"""Usage reports: what resources cost over a period, grouped by tenant, vendor, GPU family and/or
day (UTC), as JSON or CSV (`GET /usage`). Costs come from domain/costs.py; the grouping is pure.

A tenant key sees its own tenant; an admin key sees every tenant (or one, with `tenant=`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from uuid import UUID

from sqlalchemy import or_, select

from gpusupply.core.errors import UnprocessableError
from gpusupply.db.models import Resource, Tenant, utcnow
from gpusupply.db.session import Database
from gpusupply.domain import costs
from gpusupply.domain.guardrails import month_start
from gpusupply.services.budgets import resolve_tenant
from gpusupply.services.keys import Principal

GROUP_KEYS = ("tenant", "vendor", "gpu_family", "day")
DEFAULT_GROUP_BY = ("vendor",)
MAX_PERIOD = timedelta(days=366)
UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class ResourceUsage:
    """One resource's billed intervals and what it is grouped by."""

    resource_id: UUID
    tenant: str
    vendor: str | None
    gpu_family: str | None
    gpu_count: int
    rates: costs.Rates
    intervals: tuple[costs.BilledInterval, ...]


@dataclass(slots=True)
class UsageRow:
    group: dict[str, str]
    cost: float = 0.0
    running_hours: float = 0.0
    stopped_hours: float = 0.0
    gpu_hours: float = 0.0  # running hours x GPUs
    resource_ids: set[UUID] = field(default_factory=set)

    @property
    def resources(self) -> int:
        return len(self.resource_ids)


@dataclass(slots=True)
class UsageReport:
    start: datetime
    end: datetime
    group_by: tuple[str, ...]
    rows: list[UsageRow]
    tenants: list[str]

    @property
    def total_cost(self) -> float:
        return sum(r.cost for r in self.rows)


# ----- input (pure) --------------------------------------------------------------------------------
def parse_instant(text: str, name: str) -> datetime:
    """ISO 8601: a date (`2026-11-01`, midnight UTC) or an instant; without a zone it is UTC."""
    loc = ("query", name)
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except (ValueError, OverflowError):
        raise UnprocessableError(
            f"{name} must be an ISO 8601 date or time, e.g. 2026-11-01 or 2026-11-01T12:00:00Z", loc=loc
        ) from None


def parse_period(start_text: str | None, end_text: str | None, now: datetime) -> tuple[datetime, datetime]:
    """[from, to): by default from the start of this month (UTC) until now."""
    end = parse_instant(end_text, "to") if end_text else now
    start = parse_instant(start_text, "from") if start_text else month_start(min(end, now))
    if start >= end:
        raise UnprocessableError(f"from ({start.isoformat()}) must be before to ({end.isoformat()})", loc=("query", "from"))
    if end - start > MAX_PERIOD:
        raise UnprocessableError("the period can be at most 366 days", loc=("query", "to"))
    return start, end


def parse_group_by(text: str | None) -> tuple[str, ...]:
    """`vendor`, or several comma-separated: `day,vendor`."""
    if text is None or not text.strip():
        return DEFAULT_GROUP_BY
    keys = tuple(dict.fromkeys(k.strip() for k in text.split(",") if k.strip()))
    unknown = [k for k in keys if k not in GROUP_KEYS]
    if unknown or not keys:
        raise UnprocessableError(
            f"group_by: unknown key(s) {', '.join(map(repr, unknown))}; one or more of {', '.join(GROUP_KEYS)}",
            loc=("query", "group_by"),
        )
    return keys


# ----- grouping (pure) -----------------------------------------------------------------------------
def _group(item: ResourceUsage, day: str, keys: Sequence[str]) -> dict[str, str]:
    values = {"tenant": item.tenant, "vendor": item.vendor or UNKNOWN, "gpu_family": item.gpu_family or UNKNOWN, "day": day}
    return {k: values[k] for k in keys}


def aggregate(items: Iterable[ResourceUsage], group_by: Sequence[str], start: datetime, end: datetime) -> list[UsageRow]:
    """Cost and hours inside [start, end) per group, sorted by the group values."""
    rows: dict[tuple[str, ...], UsageRow] = {}
    for item in items:
        for piece in costs.split_by_day(costs.clip(item.intervals, start, end)):
            group = _group(item, piece.start.date().isoformat(), group_by)
            row = rows.setdefault(tuple(group.values()), UsageRow(group))
            row.cost += piece.hours * item.rates.for_interval(piece)
            if piece.stopped:
                row.stopped_hours += piece.hours
            else:
                row.running_hours += piece.hours
                row.gpu_hours += piece.hours * item.gpu_count
            row.resource_ids.add(item.resource_id)
    return [rows[key] for key in sorted(rows)]


CSV_VALUE_COLUMNS = ("cost_usd", "running_hours", "stopped_hours", "gpu_hours", "resources")


def to_csv(report: UsageReport) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*report.group_by, *CSV_VALUE_COLUMNS])
    for row in report.rows:
        writer.writerow(
            [
                *(row.group[k] for k in report.group_by),
                f"{row.cost:.6f}",
                f"{row.running_hours:.6f}",
                f"{row.stopped_hours:.6f}",
                f"{row.gpu_hours:.6f}",
                row.resources,
            ]
        )
    return out.getvalue()


# ----- the report ----------------------------------------------------------------------------------
async def usage_report(
    db: Database,
    principal: Principal,
    *,
    start: datetime,
    end: datetime,
    group_by: Sequence[str] = DEFAULT_GROUP_BY,
    tenant: str | None = None,
    now: datetime | None = None,
) -> UsageReport:
    """Usage of the caller's tenant, or for an admin key of every tenant unless `tenant` names one."""
    now = now or utcnow()
    async with db.session() as session:
        conditions = [
            Resource.running_since.is_not(None),
            Resource.running_since < end,
            or_(Resource.ended_at.is_(None), Resource.ended_at > start),
            Resource.resource_type != "cluster",  # a cluster's GPU-hours and cost are its nodes' (listed here)
        ]
        if principal.is_admin and tenant is None:
            tenant_names = dict((await session.execute(select(Tenant.id, Tenant.name))).tuples().all())
        else:
            tenant_id, tenant_name = await resolve_tenant(session, principal, tenant)
            tenant_names = {tenant_id: tenant_name}
            conditions.append(Resource.tenant_id == tenant_id)
        resources = list((await session.execute(select(Resource).where(*conditions))).scalars())
        transitions = await costs.load_transitions(session, [r.id for r in resources])
    items = [
        ResourceUsage(
            resource_id=r.id,
            tenant=tenant_names.get(r.tenant_id, str(r.tenant_id)),
            vendor=r.vendor,
            gpu_family=r.gpu_family,
            gpu_count=r.gpu_count or 0,
            rates=costs.rates_for(r),
            intervals=tuple(costs.resource_intervals(r, transitions[r.id], now)),
        )
        for r in resources
    ]
    return UsageReport(start, end, tuple(group_by), aggregate(items, group_by, start, min(end, now)), sorted(tenant_names.values()))
