"""Webhooks as a tenant manages them: register, list, read and remove a URL, and read its
delivery log (`/webhooks`, docs/cost.md).

The rules every webhook follows (event types, outbox, payload, signature, secret storage, URL
checks) are in domain/webhooks.py: the engine's delivery job applies them too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from sqlalchemy import delete as sql_delete
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from gpusupply.core.errors import ConflictError, NotFoundError, UnprocessableError
from gpusupply.db.models import Webhook, WebhookDelivery, utcnow
from gpusupply.db.session import Database
from gpusupply.domain.webhooks import (
    MAX_WEBHOOKS_PER_TENANT,
    SecretBox,
    check_event_filter,
    generate_secret,
    url_refusal,
)
from gpusupply.services.keys import Principal
from gpusupply.services.offers import check_page
from gpusupply.settings import Settings


async def create_webhook(
    db: Database,
    settings: Settings,
    principal: Principal,
    *,
    url: str,
    events: Sequence[str] | None = None,
    description: str | None = None,
) -> tuple[Webhook, str]:
    """Register a URL. Returns the webhook and its signing secret, shown this once."""
    url = url.strip()
    refusal = await url_refusal(url, allow_private=settings.allow_private_webhook_urls)
    if refusal is not None:
        raise UnprocessableError(refusal, loc=("body", "url"))
    filters = check_event_filter(events)
    if description is not None and (len(description) > 200 or not description.isprintable()):
        raise UnprocessableError("description must be at most 200 printable characters", loc=("body", "description"))
    secret = generate_secret()
    webhook = Webhook(
        tenant_id=principal.tenant_id,
        url=url,
        events=filters,
        description=description,
        secret_encrypted=SecretBox(settings).encrypt(secret),
        created_at=utcnow(),
    )
    async with db.transaction() as session:
        count = (await session.execute(select(func.count()).select_from(Webhook).where(Webhook.tenant_id == principal.tenant_id))).scalar_one()
        if count >= MAX_WEBHOOKS_PER_TENANT:
            raise ConflictError(f"a tenant can register at most {MAX_WEBHOOKS_PER_TENANT} webhooks; delete one first")
        session.add(webhook)
    return webhook, secret


async def list_webhooks(db: Database, principal: Principal) -> list[Webhook]:
    async with db.session() as session:
        rows = await session.execute(
            select(Webhook).where(Webhook.tenant_id == principal.tenant_id).order_by(Webhook.created_at, Webhook.id)
        )
        return list(rows.scalars())


async def _owned(session: AsyncSession, principal: Principal, webhook_id: UUID) -> Webhook:
    webhook = (
        await session.execute(select(Webhook).where(Webhook.id == webhook_id, Webhook.tenant_id == principal.tenant_id))
    ).scalar_one_or_none()
    if webhook is None:
        raise NotFoundError(f"webhook {webhook_id} not found")
    return webhook


async def get_webhook(db: Database, principal: Principal, webhook_id: UUID) -> Webhook:
    async with db.session() as session:
        return await _owned(session, principal, webhook_id)


async def delete_webhook(db: Database, principal: Principal, webhook_id: UUID) -> None:
    """Remove the webhook and its delivery log; deliveries not yet sent are dropped."""
    async with db.transaction() as session:
        webhook = await _owned(session, principal, webhook_id)
        await session.execute(sql_delete(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook.id))
        await session.delete(webhook)


DELIVERY_STATUSES = ("pending", "delivered", "failed")


async def list_deliveries(
    db: Database,
    principal: Principal,
    webhook_id: UUID,
    *,
    status: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[WebhookDelivery], int]:
    """The webhook's deliveries, newest first, and how many match in all."""
    check_page(limit, offset)
    if status is not None and status not in DELIVERY_STATUSES:
        raise UnprocessableError(f"unknown status {status!r}; one of {', '.join(DELIVERY_STATUSES)}", loc=("query", "status"))
    async with db.session() as session:
        await _owned(session, principal, webhook_id)
        conditions: list[Any] = [WebhookDelivery.webhook_id == webhook_id]
        if status is not None:
            conditions.append(WebhookDelivery.status == status)
        total = (await session.execute(select(func.count()).select_from(WebhookDelivery).where(*conditions))).scalar_one()
        rows = await session.execute(
            select(WebhookDelivery)
            .where(*conditions)
            .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id)
            .limit(limit)
            .offset(offset)
        )
        return list(rows.scalars()), int(total)
