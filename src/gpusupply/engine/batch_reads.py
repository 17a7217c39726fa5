"""Coalesced instance reads: engine steps asking one vendor about their instances at the same time
share vendor calls, so polling many provisioning instances costs listing pages, not one get each.

A step calls `read_instance_batched(adapter, instance_id)`. While a read for that vendor is in
flight, new asks wait for the next one, which serves all of them: with one listing when that costs
clearly fewer calls than a get each (`list_instances` returns every instance of the account or
raises), else with concurrent gets. An instance the listing does not show is confirmed with a get
(a listing may skip a row while the list shifts, or not show a new instance yet), so "gone" still
means the vendor said not found. A step is only answered by a read that started after it asked:
the answer is as fresh as its own get would have been.
"""

from __future__ import annotations

import asyncio
import math
import weakref
from collections import Counter
from typing import Any

from gpusupply.core.errors import NotFoundOnVendor, VendorError
from gpusupply.vendors.base import VendorInstance

# List only when the gets it replaces are at least this many times its pages (a page is often a
# slower bucket than a get: Vast lists at 1/s and gets at 2/s).
LIST_COST_FACTOR = 2

Answer = VendorInstance | None | BaseException


async def read_instance(adapter: Any, vendor_instance_id: str) -> VendorInstance | None:
    """The instance, or None when the vendor answers "not found" (one answer: see engine/absence.py
    before ending anything on it). Other vendor errors propagate."""
    try:
        return await adapter.get(vendor_instance_id)
    except NotFoundOnVendor:
        return None


def page_size_of(adapter: Any) -> int | None:
    """Instances per listing page, as the adapter pages (None: it does not say, so never list)."""
    for name in ("page_limit", "page_size"):
        value = getattr(adapter, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def should_list(wanted: int, listed_before: int, page_size: int | None) -> bool:
    """Whether one listing is cheaper than `wanted` gets, estimating its pages from the last one."""
    if page_size is None or wanted < 2:
        return False
    pages = max(1, math.ceil(listed_before / page_size))
    return wanted >= LIST_COST_FACTOR * pages


class InstanceReader:
    """One vendor's coalesced reads (one per adapter: see `reader_for`)."""

    def __init__(self, adapter: Any):
        self.adapter = adapter
        self.page_size = page_size_of(adapter)
        self.listed = 0  # instances in the last listing: estimates the next one's pages
        self.calls: Counter[str] = Counter()  # "list" / "get": how asks were served
        self._queue: list[tuple[str, asyncio.Future[VendorInstance | None]]] = []
        self._worker: asyncio.Task[None] | None = None
        self._list_waiters: list[asyncio.Future[list[VendorInstance]]] = []
        self._lister: asyncio.Task[None] | None = None

    async def listing(self) -> list[VendorInstance]:
        """A complete listing that started after this ask; asks made while one is in flight share
        the next one. Vendor errors propagate."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[VendorInstance]] = loop.create_future()
        if self._lister is not None and self._lister.get_loop() is not loop:
            self._lister, self._list_waiters = None, []
        self._list_waiters.append(future)
        if self._lister is None or self._lister.done():
            self._lister = loop.create_task(self._serve_listings(), name=f"instance-lists:{getattr(self.adapter, 'vendor', '?')}")
        return await future

    async def _serve_listings(self) -> None:
        await asyncio.sleep(0)  # asks made in this same moment join this listing
        while self._list_waiters:
            batch, self._list_waiters = self._list_waiters, []
            self.calls["list"] += 1
            try:
                instances: list[VendorInstance] | BaseException = await self.adapter.list_instances()
            except Exception as exc:  # never leave a step waiting forever
                instances = exc
            for future in batch:
                if future.done():
                    continue
                if isinstance(instances, BaseException):
                    future.set_exception(instances)
                else:
                    future.set_result(instances)

    async def read(self, instance_id: str) -> VendorInstance | None:
        """The instance, or None when the vendor says it is gone; vendor errors propagate."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[VendorInstance | None] = loop.create_future()
        if self._worker is not None and self._worker.get_loop() is not loop:
            self._worker, self._queue = None, []  # an earlier event loop's reads (tests run many loops)
        self._queue.append((instance_id, future))
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._serve(), name=f"instance-reads:{getattr(self.adapter, 'vendor', '?')}")
        return await future

    async def _serve(self) -> None:
        await asyncio.sleep(0)  # steps starting in this same moment join this read
        while self._queue:
            batch, self._queue = self._queue, []
            wanted = list(dict.fromkeys(instance_id for instance_id, future in batch if not future.done()))
            if not wanted:
                continue
            try:
                answers = await self._read(wanted)
            except Exception as exc:  # never leave a step waiting forever
                answers = dict.fromkeys(wanted, exc)
            for instance_id, future in batch:
                if future.done():
                    continue  # its step was cancelled
                answer = answers[instance_id]
                if isinstance(answer, BaseException):
                    future.set_exception(answer)
                else:
                    future.set_result(answer)

    async def _read(self, wanted: list[str]) -> dict[str, Answer]:
        answers: dict[str, Answer] = {}
        if should_list(len(wanted), self.listed, self.page_size):
            self.calls["list"] += 1
            try:
                instances = await self.adapter.list_instances()
            except VendorError as exc:
                return dict.fromkeys(wanted, exc)
            self.listed = len(instances)
            shown = {instance.vendor_instance_id: instance for instance in instances}
            answers = {instance_id: shown[instance_id] for instance_id in wanted if instance_id in shown}
        unseen = [instance_id for instance_id in wanted if instance_id not in answers]
        self.calls["get"] += len(unseen)
        results = await asyncio.gather(*(read_instance(self.adapter, instance_id) for instance_id in unseen), return_exceptions=True)
        answers.update(zip(unseen, results, strict=True))
        return answers


_readers: weakref.WeakKeyDictionary[Any, InstanceReader] = weakref.WeakKeyDictionary()


def reader_for(adapter: Any) -> InstanceReader:
    reader = _readers.get(adapter)
    if reader is None:
        reader = _readers[adapter] = InstanceReader(adapter)
    return reader


async def shared_listing(adapter: Any) -> list[VendorInstance]:
    """`adapter.list_instances()`, shared with the other steps that need a fresh listing now."""
    return await reader_for(adapter).listing()


async def read_instance_batched(adapter: Any, instance_id: str) -> VendorInstance | None:
    """Like `sync.read_instance`, sharing vendor calls with the other steps reading this vendor now."""
    return await reader_for(adapter).read(instance_id)
