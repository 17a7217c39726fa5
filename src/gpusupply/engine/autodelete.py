"""The guardrail job (docs/cost.md): every `guardrail_interval_seconds`, under the `guardrails`
job lease (one process at a time),

- deletes resources whose `auto_delete_at` has passed or whose cost so far reached `spend_limit`;
- raises budget alerts (80 % and 100 % of the monthly budget, once each per month) and, for
  tenants with `delete_on_exhaustion`, deletes their live resources once the budget is used up.

Deleting takes the normal path: the row moves to `deleting` (final status `deleted`), with an
`auto_delete` event saying why; the delete pipeline then removes the instance and only the
vendor's confirmation ends it. A start/stop/reboot in flight does not hold it back (like
`force=true`). Limits are checked once per round, so a resource may bill up to one interval past
its limit.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from sqlalchemy import select, update

from gpusupply.core.states import ResourceStatus
from gpusupply.db.models import Resource, utcnow
from gpusupply.db.session import Database, rows_matched
from gpusupply.domain.costs import costs_so_far
from gpusupply.domain.events import add_event
from gpusupply.domain.guardrails import (
    LIVE_STATUS_VALUES,
    evaluate_budgets,
    exhausted_resources,
    limited_resources,
    usd,
)
from gpusupply.domain.hints import hint
from gpusupply.engine.context import EngineContext
from gpusupply.engine.pipelines.common import hand_to_deletion

log = logging.getLogger(__name__)

JOB_NAME = "guardrails"
BUDGET_EXHAUSTED = "budget_exhausted"


@dataclass(slots=True)
class GuardrailRound:
    deleted: list[tuple[UUID, str]] = field(default_factory=list)  # (resource, trigger)
    alerts: list[tuple[UUID, int]] = field(default_factory=list)  # (tenant, threshold)


def due_trigger(resource: Resource, cost_so_far: float, now: datetime) -> tuple[str, str] | None:
    """(trigger, reason) when a resource's own limit is reached, else None. Pure."""
    if resource.auto_delete_at is not None and resource.auto_delete_at <= now:
        return "delete_at", f"auto-delete: delete_at {resource.auto_delete_at.isoformat()} reached"
    if resource.spend_limit is not None and cost_so_far >= resource.spend_limit:
        return "spend_limit", f"auto-delete: spend limit of {usd(resource.spend_limit)} reached (cost so far {usd(cost_so_far)})"
    return None


async def delete_for_guardrail(
    db: Database, resource_id: UUID, trigger: str, reason: str, now: datetime, *, still_due: Callable[[Resource], bool]
) -> bool:
    """Move the resource to `deleting` if it is live, not already deleting and `still_due` on its
    fresh row (a PATCH may have moved the limit meanwhile). Returns whether it did."""
    deletable = [s for s in LIVE_STATUS_VALUES if s != ResourceStatus.DELETING.value]
    async with db.transaction() as session:
        # Lock the row first (as the API does), so the decision is made on what is there now.
        locked = await session.execute(
            update(Resource).where(Resource.id == resource_id, Resource.status.in_(deletable)).values(updated_at=utcnow())
        )
        if rows_matched(locked) != 1:
            return False
        row = (
            await session.execute(select(Resource).where(Resource.id == resource_id).execution_options(populate_existing=True))
        ).scalar_one()
        if not still_due(row):
            return False
        hand_to_deletion(session, row, reason, now=now, final_status=ResourceStatus.DELETED)
        row.pending_action = None
        add_event(session, kind="auto_delete", resource=row, reason=reason, data={"trigger": trigger}, at=now)
    log.info("auto-delete", extra={"resource_id": str(resource_id), "trigger": trigger})
    return True


async def run_guardrails(ctx: EngineContext) -> GuardrailRound:
    """One round: per-resource limits, then tenant budgets."""
    now = ctx.now()
    outcome = GuardrailRound()
    candidates = await limited_resources(ctx.db)
    spent = await costs_so_far(ctx.db, [r for r in candidates if r.spend_limit is not None], now=now)
    for resource in candidates:
        due = due_trigger(resource, spent.get(resource.id, 0.0), now)
        if due is None:
            continue
        trigger, reason = due
        cost = spent.get(resource.id, 0.0)

        def still_due(fresh: Resource, trigger: str = trigger, cost: float = cost) -> bool:
            found = due_trigger(fresh, cost, now)
            return found is not None and found[0] == trigger

        if await delete_for_guardrail(ctx.db, resource.id, trigger, reason, now, still_due=still_due):
            outcome.deleted.append((resource.id, trigger))
    budgets = await evaluate_budgets(ctx.db, now)
    outcome.alerts = budgets.alerts
    reason = "auto-delete: the monthly budget is used up and delete_on_exhaustion is set"
    for resource_id in await exhausted_resources(ctx.db, budgets.exhausted):
        if await delete_for_guardrail(ctx.db, resource_id, BUDGET_EXHAUSTED, reason, now, still_due=lambda _: True):
            outcome.deleted.append((resource_id, BUDGET_EXHAUSTED))
    if outcome.deleted:
        hint()  # wake this process's delete pipeline
    return outcome


def guardrail_job(ctx: EngineContext) -> Callable[[], Awaitable[bool]]:
    """The periodic job's body (engine/jobs.PeriodicJob)."""

    async def run() -> bool:
        await run_guardrails(ctx)
        return True

    return run
