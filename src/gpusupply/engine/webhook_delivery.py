"""The webhook delivery job (docs/cost.md). Every engine process runs it; rows are shared through
leases (the same claim rules as the pipelines: docs/engine.md), so a delivery is sent by one
process at a time and a dead process's work is taken over when its lease expires.

1. Fan-out: each `webhook_outbox` row (written in its event's transaction) becomes one
   `webhook_deliveries` row per subscribed webhook and event type, with the body fixed; the
   outbox row is deleted in the same transaction.
2. Delivery: due deliveries are POSTed (signed, short timeout, no redirects) outside any
   transaction; the outcome is logged on the row. A non-2xx answer or a network error is retried
   after 10 s, 30 s, 1 min, 5 min, 15 min, 30 min, 1 h, 2 h, 4 h, then every 8 h (or the receiver's
   Retry-After when longer), until a day after the event: then the delivery is `failed`.

Delivery is at least once: a receiver should de-duplicate on `X-Gpusupply-Delivery`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import delete, or_, select, update

from gpusupply import __version__
from gpusupply.core.errors import UnprocessableError
from gpusupply.db.models import Event, Resource, Tenant, Webhook, WebhookDelivery, WebhookOutbox
from gpusupply.db.session import Database, rows_matched
from gpusupply.domain.webhooks import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    SecretBox,
    delivery_payload,
    plan_deliveries,
    signature_header,
    url_refusal,
)
from gpusupply.engine.context import EngineContext

log = logging.getLogger(__name__)

RETRY_DELAYS = (10, 30, 60, 300, 900, 1800, 3600, 7200, 14400, 28800)  # seconds after attempt 1, 2, ...
RETRY_WINDOW = timedelta(days=1)
MAX_RETRY_AFTER = 3600.0
MAX_LOGGED_ATTEMPTS = 20
OUTBOX_BATCH = 50
SEND_BATCH = 10  # deliveries claimed (and sent concurrently) per round
KEEP_FINISHED = timedelta(days=30)  # delivered / failed deliveries are pruned after this
PRUNE_EVERY = timedelta(hours=1)


# ----- retry schedule (pure) -----------------------------------------------------------------------
def retry_delay(attempts: int, retry_after: float | None = None) -> float:
    """Seconds to wait after the `attempts`-th failed attempt (1-based)."""
    delay = float(RETRY_DELAYS[min(max(attempts, 1), len(RETRY_DELAYS)) - 1])
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
    return delay


def after_attempt(
    *, ok: bool, attempts: int, created_at: datetime, now: datetime, retry_after: float | None = None
) -> tuple[str, datetime | None]:
    """(status, next attempt) after an attempt: delivered; pending again; or failed once the next
    try would fall outside the day after the event."""
    if ok:
        return "delivered", None
    when = now + timedelta(seconds=retry_delay(attempts, retry_after))
    if when > created_at + RETRY_WINDOW:
        return "failed", None
    return "pending", when


def parse_retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None  # an HTTP date: ignored, the schedule applies
    return seconds if seconds >= 0 else None


@dataclass(slots=True)
class AttemptResult:
    status_code: int | None
    error: str | None
    retry_after: float | None = None
    duration_ms: int = 0

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


# ----- leases --------------------------------------------------------------------------------------
async def claim(
    db: Database, model: Any, conditions: list[Any], *, owner: str, lease: timedelta, now: datetime, limit: int
) -> list[tuple[Any, uuid.UUID]]:
    """Lease up to `limit` due rows of `model` (a LeaseMixin table): (id, token) pairs."""
    conditions = [*conditions, or_(model.lock_expires_at.is_(None), model.lock_expires_at < now)]
    query = select(model.id).where(*conditions).order_by(model.next_attempt_at, model.id).limit(limit)
    if not db.is_sqlite:
        query = query.with_for_update(skip_locked=True)

    async def take() -> list[tuple[Any, uuid.UUID]]:
        taken = []
        async with db.transaction() as session:
            for row_id in (await session.execute(query)).scalars().all():
                token = uuid.uuid4()
                result = await session.execute(
                    update(model)
                    .where(model.id == row_id, *conditions)
                    .values(lock_token=token, lock_owner=owner[:100], lock_expires_at=now + lease)
                    .execution_options(synchronize_session=False)
                )
                if rows_matched(result) == 1:
                    taken.append((row_id, token))
        return taken

    if db.is_sqlite:
        async with db.claim_lock:
            return await take()
    return await take()


class _LeaseLost(Exception):
    pass


# ----- the job -------------------------------------------------------------------------------------
class WebhookDeliverer:
    name = "webhooks"

    def __init__(self, ctx: EngineContext, *, transport: httpx.AsyncBaseTransport | None = None):
        self.ctx = ctx
        self._transport = transport
        self._box: SecretBox | None = None
        self._pruned_at: datetime | None = None
        self.attempts = 0

    @property
    def owner(self) -> str:
        return f"{self.ctx.owner}/webhooks"

    def _http(self) -> httpx.AsyncBaseTransport:
        # A bare transport, not a client: the client logs every request's URL, and a webhook URL
        # may carry the receiver's token. A transport never follows redirects either (a redirect
        # could point anywhere, private addresses included).
        if self._transport is None:
            self._transport = httpx.AsyncHTTPTransport()
        return self._transport

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        timeout = httpx.Timeout(self.ctx.settings.webhook_timeout_seconds)
        request = httpx.Request(
            "POST", url, content=body, headers={**headers, "User-Agent": f"gpusupply-webhooks/{__version__}"},
            extensions={"timeout": timeout.as_dict()},
        )
        response = await self._http().handle_async_request(request)
        await response.aclose()  # the answer's status is all we keep
        return response

    def _secrets(self) -> SecretBox:
        if self._box is None:
            self._box = SecretBox(self.ctx.settings)
        return self._box

    async def aclose(self) -> None:
        if self._transport is not None:
            await self._transport.aclose()
            self._transport = None

    async def run_once(self) -> int:
        """Fan out new events, then send what is due. Returns how many rows it worked on."""
        worked = await self.fan_out()
        worked += await self.deliver_due()
        await self._prune()
        return worked

    async def loop(self, stopping: asyncio.Event) -> None:
        idle = self.ctx.settings.webhook_poll_seconds
        try:
            while not stopping.is_set():
                worked = 0
                try:
                    worked = await self.run_once()
                except Exception:
                    log.exception("webhook round failed")
                if not worked:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stopping.wait(), idle)
        finally:
            await self.aclose()

    # ----- fan-out ---------------------------------------------------------------------------------
    async def fan_out(self) -> int:
        ctx = self.ctx
        now = ctx.now()
        claimed = await claim(
            ctx.db, WebhookOutbox, [WebhookOutbox.next_attempt_at <= now],
            owner=self.owner, lease=ctx.lease, now=now, limit=OUTBOX_BATCH,
        )
        for outbox_id, token in claimed:
            try:
                await self._fan_out_one(outbox_id, token, now)
            except _LeaseLost:
                log.info("webhook outbox lease lost", extra={"outbox_id": outbox_id})
            except Exception:
                log.exception("webhook fan-out failed", extra={"outbox_id": outbox_id})
        return len(claimed)

    async def _fan_out_one(self, outbox_id: int, token: uuid.UUID, now: datetime) -> None:
        async with self.ctx.db.transaction() as session:
            event = (
                await session.execute(
                    select(Event)
                    .join(WebhookOutbox, WebhookOutbox.event_id == Event.id)
                    .where(WebhookOutbox.id == outbox_id, WebhookOutbox.lock_token == token)
                )
            ).scalar_one_or_none()
            if event is None:
                raise _LeaseLost()
            if event.tenant_id is not None:
                webhooks = (await session.execute(select(Webhook).where(Webhook.tenant_id == event.tenant_id))).scalars().all()
                plan = plan_deliveries(event, webhooks)
                if plan:
                    tenant = await session.get(Tenant, event.tenant_id)
                    resource = await session.get(Resource, event.resource_id) if event.resource_id else None
                    for webhook, event_type in plan:
                        delivery_id = uuid.uuid4()
                        session.add(
                            WebhookDelivery(
                                id=delivery_id, webhook_id=webhook.id, event_id=event.id, event_type=event_type,
                                payload=delivery_payload(delivery_id, event_type, event, tenant.name if tenant else "", resource),
                                status="pending", attempts=0, attempt_log=[], created_at=now, next_attempt_at=now,
                            )
                        )
            gone = await session.execute(
                delete(WebhookOutbox).where(WebhookOutbox.id == outbox_id, WebhookOutbox.lock_token == token)
            )
            if rows_matched(gone) != 1:
                raise _LeaseLost()

    # ----- delivery --------------------------------------------------------------------------------
    async def deliver_due(self) -> int:
        ctx = self.ctx
        now = ctx.now()
        claimed = await claim(
            ctx.db, WebhookDelivery, [WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now],
            owner=self.owner, lease=ctx.lease, now=now, limit=SEND_BATCH,
        )
        results = await asyncio.gather(*(self._deliver(delivery_id, token) for delivery_id, token in claimed), return_exceptions=True)
        for (delivery_id, _), result in zip(claimed, results, strict=True):
            if isinstance(result, Exception) and not isinstance(result, _LeaseLost):
                log.error("webhook delivery failed unexpectedly", extra={"delivery_id": str(delivery_id)}, exc_info=result)
        return len(claimed)

    async def _deliver(self, delivery_id: uuid.UUID, token: uuid.UUID) -> None:
        async with self.ctx.db.session() as session:
            found = (
                await session.execute(
                    select(WebhookDelivery, Webhook)
                    .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
                    .where(WebhookDelivery.id == delivery_id, WebhookDelivery.lock_token == token)
                )
            ).one_or_none()
        if found is None:
            raise _LeaseLost()
        delivery, webhook = found
        body = json.dumps(delivery.payload, separators=(",", ":")).encode()
        sent_at = self.ctx.now()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature_header(self._secrets().decrypt(webhook.secret_encrypted), int(sent_at.timestamp()), body),
            EVENT_HEADER: delivery.event_type,
            DELIVERY_HEADER: str(delivery.id),
        }
        result = await self._send(webhook.url, body, headers)
        self.attempts += 1
        await self._record(delivery, token, result, sent_at)
        log.info(
            "webhook delivery attempt",
            extra={"webhook_id": str(webhook.id), "delivery_id": str(delivery.id), "status_code": result.status_code, "ok": result.ok},
        )

    async def _send(self, url: str, body: bytes, headers: dict[str, str]) -> AttemptResult:
        started = time.monotonic()
        try:
            refusal = await url_refusal(url, allow_private=self.ctx.settings.allow_private_webhook_urls)
        except UnprocessableError as exc:
            refusal = exc.detail
        if refusal is not None:
            return AttemptResult(None, f"not sent: {refusal}")
        try:
            response = await self._post(url, body, headers)
        except httpx.TimeoutException:
            error = f"no answer within {self.ctx.settings.webhook_timeout_seconds:g} s"
            return AttemptResult(None, error, duration_ms=_ms(started))
        except httpx.HTTPError as exc:
            # The class name only: messages may quote the URL, which can carry a token.
            return AttemptResult(None, f"could not connect ({type(exc).__name__})", duration_ms=_ms(started))
        failure = None if 200 <= response.status_code < 300 else f"answered HTTP {response.status_code}"
        return AttemptResult(response.status_code, failure, parse_retry_after(response.headers.get("Retry-After")), _ms(started))

    async def _record(self, delivery: WebhookDelivery, token: uuid.UUID, result: AttemptResult, sent_at: datetime) -> None:
        attempts = delivery.attempts + 1
        status, next_at = after_attempt(
            ok=result.ok, attempts=attempts, created_at=delivery.created_at, now=sent_at, retry_after=result.retry_after
        )
        entry = {"at": sent_at.isoformat(), "status_code": result.status_code, "error": result.error, "duration_ms": result.duration_ms}
        values: dict[str, Any] = {
            "attempts": attempts,
            "attempt_log": [*(delivery.attempt_log or []), entry][-MAX_LOGGED_ATTEMPTS:],
            "last_status_code": result.status_code,
            "last_error": result.error,
            "status": status,
            "lock_token": None,
            "lock_owner": None,
            "lock_expires_at": None,
        }
        if status == "delivered":
            values["delivered_at"] = sent_at
        if next_at is not None:
            values["next_attempt_at"] = next_at
        async with self.ctx.db.transaction() as session:
            written = await session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id == delivery.id, WebhookDelivery.lock_token == token)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
        if rows_matched(written) != 1:
            raise _LeaseLost()  # deleted with its webhook, or taken over: the outcome is dropped

    async def _prune(self) -> None:
        now = self.ctx.now()
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY:
            return
        self._pruned_at = now
        async with self.ctx.db.transaction() as session:
            await session.execute(
                delete(WebhookDelivery).where(WebhookDelivery.status != "pending", WebhookDelivery.created_at < now - KEEP_FINISHED)
            )


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
