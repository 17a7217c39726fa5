"""`GET /resources`' pages kept by version: a page read once is answered again, without reading
its rows, while its tenant's listing version is the one read before the page.

The version (`resource_counts.version`) is kept by database triggers (migration 0022): it moves
in the very transaction that inserts or deletes one of the tenant's resources, changes a column
a listing shows or computes a cost from, or records a status change. The engine's 30 s
refreshes change none of those, so a tenant's pages stay valid between real changes; every
replica sees the same version.

Why it is correct: the version is read before the page, each read seeing what is committed. A
change committed between the two leaves a page newer than the version kept with it, so the
next request sees another version and reads the page again; a page is never kept under a
version newer than itself. Only what does not move the version is kept: the cost so far, which
moves with the clock, is computed from the kept rows at every request (services/resources.py).
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import bindparam, select

from gpusupply.db.models import ResourceCount
from gpusupply.db.reads import Fetch, Read
from gpusupply.domain.costs import Rates, cost, cost_clock, resource_intervals, stopped_rate_from_storage
from gpusupply.services.reads import ResourceRead, resource_page

_counts = ResourceCount.__table__
_VERSION = select(_counts.c.version).where(_counts.c.tenant_id == bindparam("tenant_id"))


def listed_rates(read: ResourceRead) -> Rates:
    """The rates of a listed resource (reads.SUMMARY_COLUMNS, and the storage price once stopped)."""
    row = read.resource
    price = float(row.price_per_hour or 0.0)
    return Rates(running=price, stopped=stopped_rate_from_storage(row.vendor, price, read.storage_per_hour))


def listed_cost(read: ResourceRead, now: datetime) -> float:
    """The cost so far of a listed resource at `now`."""
    return cost(resource_intervals(read.resource, read.transitions, now), listed_rates(read))


class ListedPage:
    """A page of the listing: its reads, how many match in all, and each one's cost at any moment."""

    def __init__(self, reads: list[ResourceRead], total: int):
        self.reads, self.total = reads, total
        self._clocks = [cost_clock(read.resource, read.transitions, listed_rates(read)) for read in reads]
        self.rendered: Any = None  # what the view makes of the rows once, for every answer (api/views.py)

    def costs(self, now: datetime) -> list[float]:
        costs = []
        for read, clock in zip(self.reads, self._clocks, strict=True):
            value = clock.at(now)
            # None: `now` is before the resource's last change (another process's clock)
            costs.append(value if value is not None else listed_cost(read, now))
        return costs


class ListingPages:
    """The pages of one process, the least recently answered dropped beyond `size`."""

    def __init__(self, size: int = 64):
        self.size = size
        self._pages: OrderedDict[tuple[Any, ...], tuple[int, ListedPage]] = OrderedDict()

    def page(self, tenant_id: UUID, filters: dict[str, Any], limit: int, offset: int) -> Read[ListedPage]:
        """A read (db/reads.py): the page, kept or read now."""
        key = (tenant_id, tuple(sorted(filters.items())), limit, offset)

        async def read(fetch: Fetch) -> ListedPage:
            found = await fetch(_VERSION, {"tenant_id": tenant_id})
            version = found[0].version if found else None  # None: the tenant never had a resource
            kept = self._pages.get(key)
            if kept is not None and kept[0] == version:
                self._pages.move_to_end(key)
                return kept[1]
            page = await read_page(tenant_id, filters, limit, offset)(fetch)
            if version is not None:
                self._pages[key] = (version, page)
                self._pages.move_to_end(key)
                while len(self._pages) > self.size:
                    self._pages.popitem(last=False)
            return page

        return read


def read_page(tenant_id: UUID, filters: dict[str, Any], limit: int, offset: int) -> Read[ListedPage]:
    """A read: the page as `services.reads.resource_page` reads it, not kept."""

    async def read(fetch: Fetch) -> ListedPage:
        return ListedPage(*await resource_page(tenant_id, filters, limit, offset)(fetch))

    return read
