"""Procure: a `pending` row becomes a vendor instance, exactly once.

1. Spec procurement without an offer yet: pick the cheapest untried matching offer (failover).
2. Commit `create_attempted_at` (own transaction), then call the vendor create with our marker /
   idempotency key. From that commit on, a create may exist on the vendor.
3. The answer: an instance -> `provisioning`; a definite refusal -> next offer or `failed`; a rate
   limit -> the same offer later (not a failure); no answer (5xx, timeout, crash) -> recover.
4. Recover before any new create: find the instance by marker (waiting up to
   `create_visibility_seconds` for it to show) or replay the create with the same idempotency key.
   Only when the vendor has shown that nothing exists is a new create allowed.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from gpusupply.core.errors import (
    AuthFailed,
    CapacityGone,
    InvalidRequest,
    NotFoundOnVendor,
    RateLimited,
    VendorError,
    VendorUnavailable,
)
from gpusupply.core.fleets import rank_offers
from gpusupply.core.states import ResourceStatus
from gpusupply.db.models import OfferRow, Resource
from gpusupply.domain.events import change_status
from gpusupply.domain.fleets import placement_preference
from gpusupply.domain.intents import claim_offer, fill_from_offer
from gpusupply.engine import leases
from gpusupply.engine.context import EngineContext
from gpusupply.engine.crash import crash_point
from gpusupply.engine.pipelines import offers as attempts_
from gpusupply.engine.pipelines import provision
from gpusupply.engine.pipelines.common import (
    age,
    backoff_seconds,
    create_request,
    create_settles_in,
    degraded_vendors,
    hand_to_deletion,
    note_event,
    procurement_spec,
    retry_later,
    take_first_free_offer,
)
from gpusupply.metrics import PROCUREMENT_ATTEMPTS, PROCUREMENT_FAILOVERS
from gpusupply.vendors.base import CreateRequest, VendorAdapter, VendorInstance
from gpusupply.vendors.http import before_unsafe_send

log = logging.getLogger(__name__)

PIPELINE = "procure"
# Provisioning rows have their own pipeline (provision.py), so that a backlog of creates waiting on
# a vendor's rate limit never holds back the polls that bring created instances to `running`.
# `step` still takes either status.
STATUSES = (ResourceStatus.PENDING.value,)
# By spec: creates whose outcome stayed unknown, then showed nothing, before the offer counts as failed.
MAX_UNKNOWN_OUTCOMES = 3
DEGRADED_RECHECK_SECONDS = 15.0
RATE_LIMIT_BACKOFF_CAP = 10.0  # a busy vendor is asked again soon; its Retry-After wins when longer
PENDING = ResourceStatus.PENDING.value
FLEET_SIBLING_WAIT_SECONDS = 0.1  # a fleet member chooses after its older siblings (core/fleets.py)


async def step(ctx: EngineContext, lease: leases.Lease, row: Resource) -> None:
    if row.status == ResourceStatus.PROVISIONING.value:
        await provision.step(ctx, lease, row)
    else:
        await step_pending(ctx, lease, row)


async def step_pending(ctx: EngineContext, lease: leases.Lease, row: Resource) -> None:
    # A cluster's node is created from the node offer it was written with and never fails over on
    # its own: the cluster rolls back as a whole (pipelines/cluster.py).
    spec = None if row.cluster_id is not None else await procurement_spec(ctx.db, row.procurement_id)
    if row.offer_snapshot is None:
        await choose_offer(ctx, lease, row, spec)
        return
    adapter = ctx.adapter(row.vendor)
    if adapter is None:
        if row.create_attempted_at is None:
            await fail_attempt(ctx, lease, row, f"vendor {row.vendor} is not enabled", error=None, is_spec=spec is not None)
        else:
            await retry_later(ctx, lease, 30.0, message=f"vendor {row.vendor} is not enabled here; the earlier create cannot be checked yet")
        return
    if row.create_attempted_at is not None:
        await recover(ctx, lease, row, adapter, is_spec=spec is not None)
        return
    degraded = await degraded_vendors(ctx.db)
    if row.vendor in degraded:
        await wait_for_healthy_vendor(ctx, lease, row, degraded[row.vendor or ""], is_spec=spec is not None)
        return
    await create(ctx, lease, row, adapter, is_spec=spec is not None)


# ----- choosing an offer (procurement by spec) ----------------------------------------------------


async def choose_offer(ctx: EngineContext, lease: leases.Lease, row: Resource, spec: dict[str, Any] | None) -> None:
    if spec is None:
        await fail(ctx, lease, f"resource {row.id} has neither an offer nor a spec")
        return
    try:
        query = attempts_.spec_to_query(spec)
    except attempts_.BadSpec as exc:
        await fail(ctx, lease, f"invalid spec: {exc}")
        return
    if ctx.catalog is None:
        await fail(ctx, lease, "procurement by spec needs the offer catalog, which this engine was started without")
        return
    attempts = list(row.attempts or [])
    if attempts_.failed_count(attempts) >= ctx.settings.max_failover_attempts:
        await fail(ctx, lease, attempts_.failure_summary(attempts, searched=-1))
        return
    result = await ctx.catalog.search(query, limit=ctx.settings.max_failover_attempts + len(attempts) + 25)
    # A single resource takes single-machine offers only (a cluster spec makes a cluster resource).
    offers = [(str(s.offer_id), s.offer) for s in result.offers if s.status == "available" and s.offer.node_count == 1]
    if row.fleet_id is not None:  # a fleet member: away from preempting vendor-regions, spread or packed
        async with ctx.db.session() as session:
            preference = await placement_preference(session, row.fleet_id, row.id, ctx.now())
        if preference is not None and preference.older_choosing:
            await retry_later(ctx, lease, FLEET_SIBLING_WAIT_SECONDS, count=False, message="waiting for older fleet members to choose their offers")
            return
        if preference is not None:
            offers = rank_offers(offers, preference)
    degraded = await degraded_vendors(ctx.db)
    candidate, chosen, skipped = await take_first_free_offer(
        ctx, lease, offers, attempts, degraded, lambda c, passed: _merge_choose(ctx, c, _skipped_records(passed, ctx))
    )
    if candidate is None:
        if result.partial and (row.retry_count or 0) < 3:
            await retry_later(ctx, lease, backoff_seconds(row.retry_count or 0, base=2.0), message=f"offer catalog partial: {result.failed_vendors}")
            return
        await fail(ctx, lease, attempts_.failure_summary(attempts + _skipped_records(skipped, ctx), searched=len(offers)), extra_attempts=_skipped_records(skipped, ctx))
        return
    if chosen == "moved":
        await leases.release(ctx.db, [lease])
        return
    discard = getattr(ctx.catalog, "discard", None)
    if discard is not None:  # out of this process's search results at once
        discard(uuid.UUID(candidate.offer_id))
    # Go on with the create at once, under the same lease.
    fresh = await leases.load(ctx.db, lease)
    if fresh is None:
        return
    await step_pending(ctx, lease, fresh)


def _skipped_records(skipped: list[tuple[str, Any, str]], ctx: EngineContext) -> list[dict[str, Any]]:
    now = ctx.now()
    return [attempts_.attempt_record(offer_id, offer, at=now, outcome=attempts_.SKIPPED, reason=reason) for offer_id, offer, reason in skipped]


def _merge_choose(ctx: EngineContext, candidate: attempts_.Candidate, skipped: list[dict[str, Any]]) -> leases.Merge[str]:
    now = ctx.now()
    offer = candidate.offer

    async def merge(session: AsyncSession, fresh: Resource) -> str:
        if fresh.status != PENDING or fresh.offer_snapshot is not None:
            return "moved"
        if not await claim_offer(session, uuid.UUID(candidate.offer_id), fresh.tenant_id, now):
            return "taken"  # another procurement got it first
        for record in skipped:
            note_event(session, fresh, "attempt", record["reason"], now=now, data=record)
        record = attempts_.attempt_record(candidate.offer_id, offer, at=now)
        fresh.attempts = [*(fresh.attempts or []), *skipped, record]
        fill_from_offer(fresh, uuid.UUID(candidate.offer_id), offer)
        fresh.retry_count = 0
        fresh.next_attempt_at = now
        note_event(
            session, fresh, "attempt",
            f"trying {offer.vendor} offer {offer.vendor_offer_id} at ${offer.gpu_price_per_hour:.2f}/GPU-h",
            now=now, data=record,
        )
        return "chosen"

    return merge


# ----- create -------------------------------------------------------------------------------------


class CreateWithdrawn(Exception):
    """The row no longer wants the create (deleted, or another choice) when its turn to leave came."""


async def create(ctx: EngineContext, lease: leases.Lease, row: Resource, adapter: VendorAdapter, *, is_spec: bool) -> None:
    first_attempt_at = ctx.now()
    request = create_request(row, await ctx.installation())
    offer_id = str(row.offer_id) if row.offer_id else None
    marked: list[datetime] = []  # when this step recorded a create leaving

    async def mark_sent() -> None:
        """The attempt is on record before the vendor hears of it, dated when it leaves (after the
        pacer's wait): from here on, recover before creating (vendors/http.before_unsafe_send)."""
        sent_at = ctx.now()

        async def mark(session: AsyncSession, fresh: Resource) -> bool:
            if fresh.status != PENDING or fresh.offer_snapshot != row.offer_snapshot:
                return False
            if fresh.create_attempted_at is not None and fresh.create_attempted_at not in marked:
                return False  # another step's create is on record
            fresh.create_attempted_at = sent_at
            attempts = list(fresh.attempts or [])
            if not any(a.get("offer_id") == offer_id and a.get("outcome") == attempts_.TRYING for a in attempts):
                attempts.append(attempts_.attempt_record(offer_id or "", request.offer, at=sent_at))
                fresh.attempts = attempts
            return True

        if not await leases.apply(ctx.db, lease, mark, release_lease=False):
            raise CreateWithdrawn(f"resource {row.id}")
        marked.append(sent_at)
        crash_point("procure.before_create")

    vendor = adapter.vendor
    try:
        with before_unsafe_send(mark_sent):
            instance = await adapter.create(_with_first_attempt(request, first_attempt_at))
    except CreateWithdrawn:
        await leases.release(ctx.db, [lease])
        return
    except RateLimited as exc:
        PROCUREMENT_ATTEMPTS.labels(vendor, "rate_limited").inc()
        await _refused_for_now(ctx, lease, backoff_seconds(row.retry_count or 0, base=0.5, cap=RATE_LIMIT_BACKOFF_CAP, retry_after=exc.retry_after))
        return
    except VendorUnavailable as exc:
        if not marked:  # failed before the create left (e.g. a read it needed): nothing to recover
            PROCUREMENT_ATTEMPTS.labels(vendor, "unsent").inc()
            await _refused_for_now(ctx, lease, backoff_seconds(row.retry_count or 0, base=0.5, cap=RATE_LIMIT_BACKOFF_CAP))
            return
        PROCUREMENT_ATTEMPTS.labels(vendor, "unknown").inc()
        await _outcome_unknown(ctx, lease, f"create outcome unknown ({exc.message}); recovering before any new create")
        return
    except VendorError as exc:
        PROCUREMENT_ATTEMPTS.labels(vendor, "failed").inc()
        await fail_attempt(ctx, lease, row, f"{type(exc).__name__}: {exc.vendor_message}", error=exc, is_spec=is_spec)
        return
    crash_point("procure.after_create")
    if instance is None:  # accepted without an id (Nebula): find it by marker
        PROCUREMENT_ATTEMPTS.labels(vendor, "accepted").inc()
        await _outcome_unknown(ctx, lease, "vendor accepted the create without an id; finding the instance by marker", count=False)
        return
    PROCUREMENT_ATTEMPTS.labels(vendor, "created").inc()
    await record_created(ctx, lease, instance)


def _with_first_attempt(request: CreateRequest, at: datetime) -> CreateRequest:
    return replace(request, first_attempt_at=at)


async def _refused_for_now(ctx: EngineContext, lease: leases.Lease, delay: float) -> None:
    """Rate limited: the vendor did not act on it. Not a failure; the same offer is tried again."""
    when = ctx.after(delay)

    async def merge(session: AsyncSession, fresh: Resource) -> None:
        fresh.create_attempted_at = None
        fresh.create_unknown_at = None
        fresh.next_attempt_at = when
        fresh.retry_count = (fresh.retry_count or 0) + 1

    await leases.apply(ctx.db, lease, merge)


async def _outcome_unknown(ctx: EngineContext, lease: leases.Lease, reason: str, *, count: bool = True) -> None:
    now = ctx.now()

    async def merge(session: AsyncSession, fresh: Resource) -> None:
        fresh.next_attempt_at = now
        fresh.create_unknown_at = now
        if count:
            fresh.retry_count = (fresh.retry_count or 0) + 1
            note_event(session, fresh, "attempt", reason, now=now, data={"offer_id": str(fresh.offer_id), "vendor": fresh.vendor})

    await leases.apply(ctx.db, lease, merge)


async def record_created(ctx: EngineContext, lease: leases.Lease, instance: VendorInstance) -> None:
    now = ctx.now()
    poll = ctx.settings.provisioning_poll_seconds

    async def merge(session: AsyncSession, fresh: Resource) -> None:
        fresh.vendor_instance_id = instance.vendor_instance_id
        fresh.vendor_status = instance.raw_status
        fresh.last_synced_at = now
        if instance.vendor_region:
            fresh.vendor_region = instance.vendor_region
        fresh.attempts = attempts_.close_attempt(fresh.attempts or [], str(fresh.offer_id), attempts_.CREATED, f"instance {instance.vendor_instance_id}")
        fresh.retry_count = 0
        if fresh.status == PENDING:
            change_status(session, fresh, ResourceStatus.PROVISIONING, f"vendor accepted the create (instance {instance.vendor_instance_id})", at=now)
            fresh.next_attempt_at = now + _seconds(poll)
        else:  # deleted meanwhile: keep the API's status; the delete pipeline now knows what to delete
            fresh.next_attempt_at = now

    await leases.apply(ctx.db, lease, merge)


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=value)


# ----- recovery of a create whose outcome is unknown ----------------------------------------------


async def recover(ctx: EngineContext, lease: leases.Lease, row: Resource, adapter: VendorAdapter, *, is_spec: bool) -> None:
    now = ctx.now()
    settings = ctx.settings
    try:
        instance = await adapter.recover(create_request(row, await ctx.installation()))
    except NotFoundOnVendor:
        instance = None
    except (RateLimited, VendorUnavailable, AuthFailed) as exc:
        if age(now, row.create_attempted_at) > settings.provisioning_timeout_seconds:
            await _give_up_to_deletion(ctx, lease, f"could not check whether the create committed for {settings.provisioning_timeout_seconds:.0f} s ({exc.message})")
        else:
            retry_after = exc.retry_after if isinstance(exc, RateLimited) else None
            await retry_later(ctx, lease, backoff_seconds(row.retry_count or 0, retry_after=retry_after), message=f"checking the earlier create: {exc.message}")
        return
    except (CapacityGone, InvalidRequest) as exc:  # a replayed create was refused: nothing exists
        await fail_attempt(ctx, lease, row, f"{type(exc).__name__}: {exc.vendor_message}", error=exc, is_spec=is_spec)
        return
    except VendorError as exc:  # the outcome cannot be established (e.g. past the idempotency window)
        await unrecoverable(ctx, lease, f"the create's outcome cannot be recovered: {exc.message}")
        return
    if instance is not None:
        await record_created(ctx, lease, instance)
        return
    remaining = create_settles_in(row, settings, now)
    if remaining > 0:
        await retry_later(ctx, lease, min(settings.provisioning_poll_seconds, remaining), answered=True)
        return
    await _nothing_created(ctx, lease, row, age(now, row.create_attempted_at), is_spec=is_spec)


async def _nothing_created(ctx: EngineContext, lease: leases.Lease, row: Resource, waited: float, *, is_spec: bool) -> None:
    """The vendor shows no instance for our marker/key after the visibility window: the earlier create
    did not commit. Create again, unless that keeps happening."""
    unknown = _unknown_outcomes(row) + 1
    now = ctx.now()
    # By spec, a vendor that keeps failing is left for the next offer; by offer, keep trying (no
    # duplicate is possible: each round first showed that nothing exists) until the timeout.
    if (is_spec and unknown >= MAX_UNKNOWN_OUTCOMES) or age(now, row.created_at) > ctx.settings.provisioning_timeout_seconds:
        await fail_attempt(ctx, lease, row, f"create outcome unknown {unknown} times, and no instance appeared", error=None, is_spec=is_spec)
        return
    offer_id = str(row.offer_id)

    async def merge(session: AsyncSession, fresh: Resource) -> None:
        fresh.create_attempted_at = None
        fresh.create_unknown_at = None
        attempts = [dict(a) for a in (fresh.attempts or [])]
        for attempt in reversed(attempts):
            if attempt.get("offer_id") == offer_id and attempt.get("outcome") == attempts_.TRYING:
                attempt["unknown_outcomes"] = unknown
                break
        fresh.attempts = attempts
        fresh.next_attempt_at = now
        note_event(session, fresh, "attempt", f"no instance found {waited:.0f} s after the create: it did not commit; creating again", now=now)

    await leases.apply(ctx.db, lease, merge)


def _unknown_outcomes(row: Resource) -> int:
    for attempt in reversed(row.attempts or []):
        if attempt.get("offer_id") == str(row.offer_id) and attempt.get("outcome") == attempts_.TRYING:
            return int(attempt.get("unknown_outcomes") or 0)
    return 0


# ----- endings ------------------------------------------------------------------------------------


async def wait_for_healthy_vendor(ctx: EngineContext, lease: leases.Lease, row: Resource, reason: str, *, is_spec: bool) -> None:
    """A degraded vendor gets no new creates (fail closed). By spec: skip to another vendor."""
    if is_spec:
        offer = create_request(row, None).offer
        skip = attempts_.attempt_record(str(row.offer_id), offer, at=ctx.now(), outcome=attempts_.SKIPPED, reason=f"vendor degraded: {reason}")
        await _release_offer(ctx, lease, row, skip, failover=False)
        return
    if age(ctx.now(), row.created_at) > ctx.settings.provisioning_timeout_seconds:
        await fail_attempt(ctx, lease, row, f"vendor {row.vendor} stayed degraded: {reason}", error=None, is_spec=False)
        return
    # The next good list clears the flag; look again well before that.
    wait = max(ctx.settings.engine_poll_seconds, min(DEGRADED_RECHECK_SECONDS, ctx.settings.reconcile_interval_seconds / 2))
    await retry_later(ctx, lease, wait, message=f"waiting: vendor {row.vendor} degraded ({reason})", count=False)


async def fail_attempt(ctx: EngineContext, lease: leases.Lease, row: Resource, reason: str, *, error: VendorError | None, is_spec: bool) -> None:
    """This offer definitely failed and nothing was created: next offer (by spec) or `failed`."""
    offer_id = str(row.offer_id) if row.offer_id else None
    error_name = type(error).__name__ if error is not None else None
    now = ctx.now()
    vendor = row.vendor or "unknown"
    if is_spec and attempts_.failed_count(row.attempts or []) + 1 < ctx.settings.max_failover_attempts:
        offer = create_request(row, None).offer
        record = attempts_.attempt_record(offer_id or "", offer, at=now, outcome=attempts_.FAILED, reason=reason)
        record["error"] = error_name
        if await _release_offer(ctx, lease, row, record, failover=True):
            PROCUREMENT_FAILOVERS.labels(vendor).inc()
        return

    async def merge(session: AsyncSession, fresh: Resource) -> None:
        fresh.create_attempted_at = None
        fresh.attempts = attempts_.close_attempt(fresh.attempts or [], offer_id, attempts_.FAILED, reason, error_name)
        note_event(session, fresh, "attempt", f"{fresh.vendor} offer failed: {reason}", now=now, data={"offer_id": offer_id, "error": error_name})
        await _mark_offer(session, offer_id, "failed")
        if fresh.status == PENDING:
            summary = attempts_.failure_summary(fresh.attempts, searched=-1) if is_spec else reason
            change_status(session, fresh, ResourceStatus.FAILED, summary, at=now)
        else:
            fresh.next_attempt_at = now  # deleting: nothing was created; the delete pipeline finishes it

    await leases.apply(ctx.db, lease, merge)


async def _release_offer(ctx: EngineContext, lease: leases.Lease, row: Resource, record: dict[str, Any], *, failover: bool) -> bool:
    """Close the attempt on the current offer and clear it, so the next step picks another."""
    now = ctx.now()
    offer_id = str(row.offer_id)

    async def merge(session: AsyncSession, fresh: Resource) -> bool:
        fresh.create_attempted_at = None
        attempts = [a for a in (fresh.attempts or []) if not (a.get("offer_id") == offer_id and a.get("outcome") == attempts_.TRYING)]
        fresh.attempts = [*attempts, record]
        note_event(session, fresh, "attempt", f"{record['vendor']} offer {record['vendor_offer_id']}: {record['reason']}", now=now, data=record)
        await _mark_offer(session, offer_id, "failed" if failover else "available")
        if fresh.status != PENDING:
            fresh.next_attempt_at = now
            return False
        fresh.offer_id = None
        fresh.offer_snapshot = None
        fresh.vendor = None
        fresh.vendor_region = None
        fresh.region = None
        fresh.price_per_hour = None
        fresh.retry_count = 0
        fresh.next_attempt_at = now
        return True

    return await leases.apply(ctx.db, lease, merge)


async def _mark_offer(session: AsyncSession, offer_id: str | None, status: str) -> None:
    if not offer_id:
        return
    await session.execute(update(OfferRow).where(OfferRow.id == uuid.UUID(offer_id), OfferRow.status == "procured").values(status=status))


async def fail(ctx: EngineContext, lease: leases.Lease, reason: str, *, extra_attempts: list[dict[str, Any]] | None = None) -> None:
    """Nothing was ever created for this row (no create attempted): straight to `failed`."""
    now = ctx.now()

    async def merge(session: AsyncSession, fresh: Resource) -> None:
        if extra_attempts:
            fresh.attempts = [*(fresh.attempts or []), *extra_attempts]
        if fresh.status == PENDING:
            change_status(session, fresh, ResourceStatus.FAILED, reason, at=now)
        else:
            fresh.next_attempt_at = now

    await leases.apply(ctx.db, lease, merge)


async def unrecoverable(ctx: EngineContext, lease: leases.Lease, reason: str) -> None:
    """A create may have committed but the vendor offers no way to find it (fal past its idempotency
    window: fal instances carry no marker). Raise an alert and fail; the reconciler's unmatched
    instance report is the remaining way to spot it."""
    now = ctx.now()

    async def merge(session: AsyncSession, fresh: Resource) -> None:
        note_event(session, fresh, "alert", f"{reason}: an instance may exist on {fresh.vendor}; check its console", now=now)
        fresh.create_attempted_at = None
        if fresh.status == PENDING:
            change_status(session, fresh, ResourceStatus.FAILED, reason, at=now)
        else:
            fresh.next_attempt_at = now

    log.warning("create outcome unrecoverable", extra={"resource_id": str(lease.resource_id), "reason": reason})
    await leases.apply(ctx.db, lease, merge)


async def _give_up_to_deletion(ctx: EngineContext, lease: leases.Lease, reason: str) -> None:
    now = ctx.now()

    async def merge(session: AsyncSession, fresh: Resource) -> None:
        hand_to_deletion(session, fresh, reason, now=now, final_status=ResourceStatus.FAILED)

    await leases.apply(ctx.db, lease, merge)
