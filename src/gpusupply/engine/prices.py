"""The engine's price jobs (docs/prices.md): `price_alerts` evaluates the tenants' alerts once per
catalog refresh (domain/price_alerts.py), `prices:downsample` merges old history points into
hours and days (domain/price_history.py). Both are periodic jobs under their job lease."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from uuid import UUID

from gpusupply.domain.catalog import OfferCatalog
from gpusupply.domain.hints import hint
from gpusupply.domain.price_alerts import AlertProcurer, evaluate_alerts
from gpusupply.domain.price_history import downsample_round
from gpusupply.engine.context import EngineContext
from gpusupply.engine.crash import crash_point

log = logging.getLogger(__name__)

ALERTS_JOB = "price_alerts"
DOWNSAMPLE_JOB = "prices:downsample"


def _crash_before_commit(alert_id: UUID) -> None:
    crash_point("price_alert.before_commit")


def alerts_job(ctx: EngineContext, catalog: OfferCatalog, procurer: AlertProcurer | None) -> Callable[[], Awaitable[bool]]:
    async def run() -> bool:
        round_ = await evaluate_alerts(
            ctx.db, catalog, procurer, hysteresis=ctx.settings.price_alert_hysteresis, now=ctx.now(),
            before_commit=_crash_before_commit,
        )
        if round_.fired:
            crash_point("price_alert.after_commit")
            hint()  # a buy-below order's resource is pending: the procure pipeline may start at once
            log.info("price alerts fired", extra={"fired": len(round_.fired), "evaluated": round_.evaluated})
        return True

    return run


def downsample_job(ctx: EngineContext) -> Callable[[], Awaitable[bool]]:
    async def run() -> bool:
        merged = await downsample_round(ctx.db, ctx.now())
        if merged:
            log.info("price history downsampled", extra={"points": merged})
        return True

    return run
