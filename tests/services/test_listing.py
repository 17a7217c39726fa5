"""Listing pages kept by the tenant's listing version (services/listing.py), on both databases:
a kept page is answered with one statement and is the same page; any change a listing shows,
including one committed while a page is being read, is in the next answer."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Select, update

from gpusupply.core.states import ResourceStatus
from gpusupply.db.models import Resource, utcnow
from gpusupply.domain.events import change_status
from gpusupply.services import resources as resource_service
from gpusupply.services.listing import ListedPage, ListingPages
from tests.api.helpers import procured_resource
from tests.conftest import BACKENDS
from tests.services.helpers import principal
from tests.services.test_resources import make_resource


async def kept_read(service: Any, pages: ListingPages, tenant_id: uuid.UUID, *, between: Any = None, **key: Any) -> tuple[ListedPage, int]:
    """The page through `pages` and how many statements it took; `between`: run after the
    version is read, before anything else (a commit of another request)."""
    statements = 0
    read = pages.page(tenant_id, key.get("filters", {}), key.get("limit", 100), key.get("offset", 0))

    async def counting(fetch: Any) -> ListedPage:
        async def counted(statement: Select[Any], params: Mapping[str, Any]) -> list[Any]:
            nonlocal statements
            statements += 1
            rows = await fetch(statement, params)
            if statements == 1 and between is not None:
                await between()
            return rows

        return await read(counted)

    return await service.db.read(counting), statements


async def rename(service: Any, resource_id: uuid.UUID, name: str) -> None:
    async with service.db.transaction() as session:
        await session.execute(update(Resource).where(Resource.id == resource_id).values(name=name))


@pytest.mark.parametrize("service_backend", BACKENDS)
async def test_a_kept_page_is_answered_with_one_statement_until_something_shown_changes(service: Any) -> None:
    alice = await principal(service)
    first, second = await make_resource(service), await make_resource(service)
    pages = ListingPages()
    page, statements = await kept_read(service, pages, alice.tenant_id)
    assert statements >= 2 and page.total == 2
    again, statements = await kept_read(service, pages, alice.tenant_id)
    assert again is page and statements == 1  # the version alone
    # What the engine's refresh writes changes nothing shown: the page stays.
    async with service.db.transaction() as session:
        await session.execute(update(Resource).where(Resource.id == first).values(last_synced_at=utcnow(), vendor_status="up"))
    assert (await kept_read(service, pages, alice.tenant_id))[0] is page
    # A status change (a row update and its event): read again, with the change.
    async with service.db.transaction() as session:
        resource = await session.get(Resource, second)
        assert resource is not None
        change_status(session, resource, ResourceStatus.PROVISIONING)
    changed, statements = await kept_read(service, pages, alice.tenant_id)
    assert changed is not page and statements >= 2
    assert {read.resource.id: read.resource.status for read in changed.reads}[second] == "provisioning"
    # A new resource, then a deleted one.
    third = await make_resource(service)
    listed, _ = await kept_read(service, pages, alice.tenant_id)
    assert listed.total == 3 and listed.reads[0].resource.id == third
    async with service.db.transaction() as session:
        await session.delete(await session.get(Resource, third))
    listed, _ = await kept_read(service, pages, alice.tenant_id)
    assert listed.total == 2 and third not in {read.resource.id for read in listed.reads}


@pytest.mark.parametrize("service_backend", BACKENDS)
async def test_a_change_committed_while_a_page_is_read_is_in_the_next_answer(service: Any) -> None:
    """The version is read before the page: a page read after a commit is kept under the version
    before it, so the next request reads again. (Read the other way round, the page before the
    change would be kept under the version after it, and answered stale until the next change.)"""
    alice = await principal(service)
    resource_id = await make_resource(service)
    pages = ListingPages()
    page, _ = await kept_read(service, pages, alice.tenant_id, between=lambda: rename(service, resource_id, "during"))
    assert page.reads[0].resource.name == "during"  # the page read after the commit
    again, statements = await kept_read(service, pages, alice.tenant_id)
    assert again is not page and statements >= 2 and again.reads[0].resource.name == "during"
    assert (await kept_read(service, pages, alice.tenant_id))[0] is again


@pytest.mark.parametrize("service_backend", BACKENDS)
async def test_pages_are_kept_per_tenant_filters_and_paging_and_bounded(service: Any) -> None:
    alice, bob = await principal(service), await principal(service, "bob")
    await make_resource(service, vendor="fal")
    await make_resource(service, vendor="nebula")
    await make_resource(service, tenant="bob")
    pages = ListingPages(size=2)
    everything, _ = await kept_read(service, pages, alice.tenant_id)
    fal, _ = await kept_read(service, pages, alice.tenant_id, filters={"vendor": "fal"})
    assert (everything.total, fal.total) == (2, 1)
    assert (await kept_read(service, pages, alice.tenant_id))[0] is everything
    bobs, _ = await kept_read(service, pages, bob.tenant_id)  # a third page: the least recent (fal's) goes
    assert bobs.total == 1 and {read.resource.id for read in bobs.reads}.isdisjoint({read.resource.id for read in everything.reads})
    assert (await kept_read(service, pages, alice.tenant_id))[0] is everything
    assert (await kept_read(service, pages, alice.tenant_id, filters={"vendor": "fal"}))[0] is not fal
    # A tenant that never had a resource: nothing to keep.
    empty, statements = await kept_read(service, pages, uuid.uuid4())
    assert (empty.total, empty.reads, statements) == (0, [], 2)


@pytest.mark.parametrize("service_backend", BACKENDS)
async def test_the_api_listing_shows_each_change_and_costs_of_the_moment(service: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    resource_id = await procured_resource(service.alice, "nebula")
    listed = (await service.alice.get("/resources")).json()["resources"]
    assert [(r["status"], r["cost_so_far"]) for r in listed] == [("pending", 0.0)]
    async with service.db.transaction() as session:
        await session.execute(
            update(Resource).where(Resource.id == uuid.UUID(resource_id))
            .values(status="running", running_since=utcnow() - timedelta(hours=1), price_per_hour=2.0, external_ip="198.51.100.9")
        )
    first = (await service.alice.get("/resources")).json()["resources"][0]
    assert first["status"] == "running" and first["access"]["external_ip"] == "198.51.100.9"
    assert 2.0 <= first["cost_so_far"] < 2.1
    half_an_hour_on = utcnow() + timedelta(minutes=30)
    monkeypatch.setattr(resource_service, "utcnow", lambda: half_an_hour_on)
    second = (await service.alice.get("/resources")).json()["resources"][0]  # the kept page, the cost of its moment
    assert second["cost_so_far"] == pytest.approx(first["cost_so_far"] + 1.0, abs=0.05)
