"""Resources as client methods (list, read, delete, start/stop/reboot, history, auto-delete)
and the helpers that wait for a status; blocking and asyncio side by side."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Iterator
from uuid import UUID

from gpusupply.client import calls
from gpusupply.client.base import FINAL, NOT_BECOMING_READY, UpdateHook
from gpusupply.client.drivers import AsyncDriver, BlockingDriver
from gpusupply.contract.cost import AutoDeleteIn
from gpusupply.contract.schemas import (
    ActionResponse,
    DeleteResourceResponse,
    EventList,
    EventOut,
    ResourceDetail,
    ResourceList,
    ResourceSummary,
)
from gpusupply.core.states import ResourceStatus


class BlockingResources(BlockingDriver):
    """Resources and waiting for their status: the methods of `GpuSupply`."""

    # ----- resources -----------------------------------------------------------------------------
    def list_resources(
        self,
        *,
        status: str | None = None,
        vendor: str | None = None,
        offer_id: UUID | str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> ResourceList:
        """One page of your resources, newest first."""
        return self._call(calls.list_resources(status=status, vendor=vendor, offer_id=offer_id, limit=limit, offset=offset))

    def iter_resources(
        self,
        *,
        status: str | None = None,
        vendor: str | None = None,
        offer_id: UUID | str | None = None,
        page_size: int = 100,
    ) -> Iterator[ResourceSummary]:
        """All your resources (matching the filters), page after page, newest first."""
        return self._iterate(self._resources_flow(status, vendor, offer_id, page_size))

    def get_resource(self, resource_id: UUID | str, *, force_refresh: bool = False) -> ResourceDetail:
        return self._call(calls.get_resource(resource_id, force_refresh=force_refresh))

    def delete_resource(self, resource_id: UUID | str, *, force: bool = False) -> DeleteResourceResponse:
        """Start deleting (the answer says `deleting`); `wait_deleted` waits for the vendor's confirmation."""
        return self._call(calls.delete_resource(resource_id, force=force))

    def stop_resource(self, resource_id: UUID | str) -> ActionResponse:
        return self._call(calls.resource_action(resource_id, "stop"))

    def start_resource(self, resource_id: UUID | str) -> ActionResponse:
        return self._call(calls.resource_action(resource_id, "start"))

    def reboot_resource(self, resource_id: UUID | str) -> ActionResponse:
        return self._call(calls.resource_action(resource_id, "reboot"))

    def list_events(self, resource_id: UUID | str, *, limit: int = 500, offset: int = 0) -> EventList:
        return self._call(calls.list_events(resource_id, limit=limit, offset=offset))

    def iter_events(self, resource_id: UUID | str, *, page_size: int = 500) -> Iterator[EventOut]:
        """The resource's whole history, oldest first."""
        return self._iterate(self._events_flow(resource_id, page_size))

    def set_auto_delete(self, resource_id: UUID | str, auto_delete: AutoDeleteIn | None) -> ResourceDetail:
        """Set (merged with the current ones) or, with None, remove the resource's auto-delete limits.
        Only the fields set on `auto_delete` change; a field set to None removes that limit."""
        return self._call(calls.update_resource(resource_id, self._auto_delete_patch(auto_delete)))

    # ----- waiting -------------------------------------------------------------------------------
    def wait_for_status(
        self,
        resource_id: UUID | str,
        statuses: Collection[str],
        *,
        fail_on: Collection[str] | None = None,
        timeout: float | None = None,
        on_update: UpdateHook | None = None,
    ) -> ResourceDetail:
        """Poll until the status is one of `statuses`. Raises ResourceFailedError on a status in
        `fail_on` (default: the final statuses not wanted), WaitTimeoutError after `timeout` s."""
        return self._run(self._wait_flow(resource_id, statuses, fail_on, timeout, on_update))

    def wait_ready(
        self, resource_id: UUID | str, *, timeout: float | None = None, on_update: UpdateHook | None = None
    ) -> ResourceDetail:
        """Until `running` (with its SSH command); ResourceFailedError if it fails, ends or is deleted."""
        return self.wait_for_status(
            resource_id, {ResourceStatus.RUNNING}, fail_on=NOT_BECOMING_READY, timeout=timeout, on_update=on_update
        )

    def wait_deleted(
        self, resource_id: UUID | str, *, timeout: float | None = None, on_update: UpdateHook | None = None
    ) -> ResourceDetail:
        """Until the resource has ended (`deleted`, or `failed`/`terminated`: nothing is left on the vendor)."""
        return self.wait_for_status(resource_id, FINAL, fail_on=(), timeout=timeout, on_update=on_update)


class AsyncResources(AsyncDriver):
    """Resources and waiting for their status: the methods of `AsyncGpuSupply` (the same, awaited)."""

    # ----- resources -----------------------------------------------------------------------------
    async def list_resources(
        self,
        *,
        status: str | None = None,
        vendor: str | None = None,
        offer_id: UUID | str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> ResourceList:
        return await self._call(
            calls.list_resources(status=status, vendor=vendor, offer_id=offer_id, limit=limit, offset=offset)
        )

    def iter_resources(
        self,
        *,
        status: str | None = None,
        vendor: str | None = None,
        offer_id: UUID | str | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[ResourceSummary]:
        return self._iterate(self._resources_flow(status, vendor, offer_id, page_size))

    async def get_resource(self, resource_id: UUID | str, *, force_refresh: bool = False) -> ResourceDetail:
        return await self._call(calls.get_resource(resource_id, force_refresh=force_refresh))

    async def delete_resource(self, resource_id: UUID | str, *, force: bool = False) -> DeleteResourceResponse:
        return await self._call(calls.delete_resource(resource_id, force=force))

    async def stop_resource(self, resource_id: UUID | str) -> ActionResponse:
        return await self._call(calls.resource_action(resource_id, "stop"))

    async def start_resource(self, resource_id: UUID | str) -> ActionResponse:
        return await self._call(calls.resource_action(resource_id, "start"))

    async def reboot_resource(self, resource_id: UUID | str) -> ActionResponse:
        return await self._call(calls.resource_action(resource_id, "reboot"))

    async def list_events(self, resource_id: UUID | str, *, limit: int = 500, offset: int = 0) -> EventList:
        return await self._call(calls.list_events(resource_id, limit=limit, offset=offset))

    def iter_events(self, resource_id: UUID | str, *, page_size: int = 500) -> AsyncIterator[EventOut]:
        return self._iterate(self._events_flow(resource_id, page_size))

    async def set_auto_delete(self, resource_id: UUID | str, auto_delete: AutoDeleteIn | None) -> ResourceDetail:
        return await self._call(calls.update_resource(resource_id, self._auto_delete_patch(auto_delete)))

    # ----- waiting -------------------------------------------------------------------------------
    async def wait_for_status(
        self,
        resource_id: UUID | str,
        statuses: Collection[str],
        *,
        fail_on: Collection[str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (a poll deadline: WaitTimeoutError with the last state)
        on_update: UpdateHook | None = None,
    ) -> ResourceDetail:
        return await self._run(self._wait_flow(resource_id, statuses, fail_on, timeout, on_update))

    async def wait_ready(
        self, resource_id: UUID | str, *, timeout: float | None = None, on_update: UpdateHook | None = None  # noqa: ASYNC109
    ) -> ResourceDetail:
        return await self.wait_for_status(
            resource_id, {ResourceStatus.RUNNING}, fail_on=NOT_BECOMING_READY, timeout=timeout, on_update=on_update
        )

    async def wait_deleted(
        self, resource_id: UUID | str, *, timeout: float | None = None, on_update: UpdateHook | None = None  # noqa: ASYNC109
    ) -> ResourceDetail:
        return await self.wait_for_status(resource_id, FINAL, fail_on=(), timeout=timeout, on_update=on_update)
