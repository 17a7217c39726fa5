"""Webhooks: URLs that receive your events, signed (docs/cost.md)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query

from gpusupply.api.deps import ApiRoute, ServiceContext, get_principal, responses, service_context
from gpusupply.contract.cost import (
    DeliveryAttempt,
    DeliveryList,
    DeliveryOut,
    WebhookCreated,
    WebhookDeleted,
    WebhookIn,
    WebhookList,
    WebhookOut,
)
from gpusupply.core.inputs import BoundedInt, Text
from gpusupply.db.models import Webhook, WebhookDelivery
from gpusupply.domain.webhooks import EVENT_TYPES
from gpusupply.services import webhooks
from gpusupply.services.keys import Principal
from gpusupply.services.offers import MAX_OFFSET

router = APIRouter(route_class=ApiRoute, tags=["Webhooks"], responses=responses(401, 503))


def webhook_out(webhook: Webhook) -> WebhookOut:
    return WebhookOut(
        webhook_id=webhook.id,
        url=webhook.url,
        events=list(webhook.events or []),
        description=webhook.description,
        created_at=webhook.created_at,
        deliveries_url=f"/webhooks/{webhook.id}/deliveries",
    )


def delivery_out(delivery: WebhookDelivery) -> DeliveryOut:
    return DeliveryOut(
        delivery_id=delivery.id,
        event_type=delivery.event_type,
        event_id=delivery.event_id,
        status=delivery.status,
        attempts=delivery.attempts,
        created_at=delivery.created_at,
        next_attempt_at=delivery.next_attempt_at if delivery.status == "pending" else None,
        delivered_at=delivery.delivered_at,
        last_status_code=delivery.last_status_code,
        last_error=delivery.last_error,
        attempt_log=[DeliveryAttempt.model_validate(entry) for entry in delivery.attempt_log or []],
        payload=delivery.payload,
    )


@router.post(
    "/webhooks",
    status_code=201,
    response_model=WebhookCreated,
    summary="Register a URL for your events (the signing secret is in this answer only)",
    description=(
        "`url`: http(s) on a public address (checked by resolving the host). `events`: event types to receive "
        "(default all); `GET /webhooks` lists them. Deliveries are signed: `X-Gpusupply-Signature: t=<unix "
        "seconds>,v1=<hex HMAC-SHA256 of \"<t>.<body>\" with the secret>`. At most 20 webhooks per tenant (409)."
    ),
    responses=responses(409, 413, 422),
)
async def create_webhook(
    body: WebhookIn, principal: Principal = Depends(get_principal), ctx: ServiceContext = Depends(service_context)
) -> WebhookCreated:
    webhook, secret = await webhooks.create_webhook(
        ctx.db, ctx.settings, principal, url=body.url, events=body.events, description=body.description
    )
    return WebhookCreated(**webhook_out(webhook).model_dump(), secret=secret)


@router.get("/webhooks", response_model=WebhookList, summary="Your webhooks, and every event type")
async def list_webhooks(principal: Principal = Depends(get_principal), ctx: ServiceContext = Depends(service_context)) -> WebhookList:
    found = await webhooks.list_webhooks(ctx.db, principal)
    return WebhookList(webhooks=[webhook_out(w) for w in found], event_types=EVENT_TYPES)


@router.get("/webhooks/{webhook_id}", response_model=WebhookOut, summary="One webhook", responses=responses(404, 422))
async def get_webhook(
    webhook_id: UUID, principal: Principal = Depends(get_principal), ctx: ServiceContext = Depends(service_context)
) -> WebhookOut:
    return webhook_out(await webhooks.get_webhook(ctx.db, principal, webhook_id))


@router.delete(
    "/webhooks/{webhook_id}",
    response_model=WebhookDeleted,
    summary="Remove a webhook (and its delivery log; pending deliveries are dropped)",
    responses=responses(404, 422),
)
async def delete_webhook(
    webhook_id: UUID, principal: Principal = Depends(get_principal), ctx: ServiceContext = Depends(service_context)
) -> WebhookDeleted:
    await webhooks.delete_webhook(ctx.db, principal, webhook_id)
    return WebhookDeleted(webhook_id=webhook_id, message="Webhook removed with its delivery log; pending deliveries were dropped.")


@router.get(
    "/webhooks/{webhook_id}/deliveries",
    response_model=DeliveryList,
    summary="The webhook's deliveries, newest first, with their attempts",
    responses=responses(404, 422),
)
async def list_deliveries(
    webhook_id: UUID,
    status: Text | None = Query(None, description="pending, delivered or failed"),
    limit: Annotated[BoundedInt, Query(ge=1, le=1000)] = 100,
    offset: Annotated[BoundedInt, Query(ge=0, le=MAX_OFFSET)] = 0,
    principal: Principal = Depends(get_principal),
    ctx: ServiceContext = Depends(service_context),
) -> DeliveryList:
    found, total = await webhooks.list_deliveries(ctx.db, principal, webhook_id, status=status, limit=limit, offset=offset)
    return DeliveryList(
        webhook_id=webhook_id, deliveries=[delivery_out(d) for d in found], total_count=total, limit=limit, offset=offset
    )
