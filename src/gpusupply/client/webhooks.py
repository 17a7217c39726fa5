"""Webhooks as client methods: register, list, read, delete, and their deliveries; blocking and
asyncio side by side."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from uuid import UUID

from gpusupply.client import calls
from gpusupply.client.drivers import AsyncDriver, BlockingDriver
from gpusupply.contract.cost import (
    DeliveryList,
    DeliveryOut,
    WebhookCreated,
    WebhookDeleted,
    WebhookIn,
    WebhookList,
    WebhookOut,
)


class BlockingWebhooks(BlockingDriver):
    """Webhooks and their deliveries: the methods of `GpuSupply`."""

    def create_webhook(self, url: str, *, events: list[str] | None = None, description: str | None = None) -> WebhookCreated:
        """Register a URL for your events; the answer's `secret` (shown once) verifies signatures."""
        return self._call(calls.create_webhook(WebhookIn(url=url, events=events, description=description)))

    def list_webhooks(self) -> WebhookList:
        return self._call(calls.list_webhooks())

    def get_webhook(self, webhook_id: UUID | str) -> WebhookOut:
        return self._call(calls.get_webhook(webhook_id))

    def delete_webhook(self, webhook_id: UUID | str) -> WebhookDeleted:
        return self._call(calls.delete_webhook(webhook_id))

    def list_deliveries(
        self, webhook_id: UUID | str, *, status: str | None = None, limit: int = 100, offset: int = 0
    ) -> DeliveryList:
        return self._call(calls.list_deliveries(webhook_id, status=status, limit=limit, offset=offset))

    def iter_deliveries(
        self, webhook_id: UUID | str, *, status: str | None = None, page_size: int = 100
    ) -> Iterator[DeliveryOut]:
        """Every delivery of the webhook, newest first."""
        return self._iterate(self._deliveries_flow(webhook_id, status, page_size))


class AsyncWebhooks(AsyncDriver):
    """Webhooks and their deliveries: the methods of `AsyncGpuSupply` (the same, awaited)."""

    async def create_webhook(
        self, url: str, *, events: list[str] | None = None, description: str | None = None
    ) -> WebhookCreated:
        return await self._call(calls.create_webhook(WebhookIn(url=url, events=events, description=description)))

    async def list_webhooks(self) -> WebhookList:
        return await self._call(calls.list_webhooks())

    async def get_webhook(self, webhook_id: UUID | str) -> WebhookOut:
        return await self._call(calls.get_webhook(webhook_id))

    async def delete_webhook(self, webhook_id: UUID | str) -> WebhookDeleted:
        return await self._call(calls.delete_webhook(webhook_id))

    async def list_deliveries(
        self, webhook_id: UUID | str, *, status: str | None = None, limit: int = 100, offset: int = 0
    ) -> DeliveryList:
        return await self._call(calls.list_deliveries(webhook_id, status=status, limit=limit, offset=offset))

    def iter_deliveries(
        self, webhook_id: UUID | str, *, status: str | None = None, page_size: int = 100
    ) -> AsyncIterator[DeliveryOut]:
        return self._iterate(self._deliveries_flow(webhook_id, status, page_size))
