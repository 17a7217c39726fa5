"""The offer catalog's refresh as an engine job (engine/runner.py, domain/catalog.py): one
`catalog:<vendor>` job per vendor under the one job lease, due every `offer_cache_seconds`; a
failed read does not count; while an engine runs, searches leave the refresh to it."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import update

from gpusupply.core.offers import OfferQuery
from gpusupply.db.models import JobLease
from gpusupply.db.session import Database
from gpusupply.domain.catalog import OfferCatalog
from gpusupply.engine.runner import Engine
from gpusupply.settings import Settings


@pytest.fixture
async def sqlite_db(sqlite_url: str) -> Any:
    db = Database(sqlite_url)
    await db.migrate()
    yield db
    await db.dispose()


async def _lease(db: Database, name: str) -> JobLease | None:
    async with db.session() as session:
        return await session.get(JobLease, name)


def _requests(vendor_set: Any, vendor: str) -> int:
    return vendor_set.sandboxes[vendor].requests


async def test_each_vendor_catalog_is_an_engine_job(sqlite_db: Database, vendor_set: Any, test_settings: Settings) -> None:
    catalog = OfferCatalog(sqlite_db, vendor_set, test_settings)
    engine = Engine(sqlite_db, vendor_set, test_settings, catalog)
    try:
        jobs = {job.name: job for job in engine.jobs}
        assert {f"catalog:{vendor}" for vendor in vendor_set.adapters} <= set(jobs)
        job = jobs["catalog:nebula"]
        before = _requests(vendor_set, "nebula")
        assert await job.run_once()  # never read: due
        assert _requests(vendor_set, "nebula") > before
        assert catalog._state["nebula"].snapshot_id is not None
        lease = await _lease(sqlite_db, "catalog:nebula")
        assert lease is not None and lease.lock_token is None and lease.last_run_at is not None
        result = await catalog.search(OfferQuery(vendor="nebula"), limit=1)
        assert result.offers and not result.partial
        # Not due again before `offer_cache_seconds`: no second read.
        read = _requests(vendor_set, "nebula")
        assert not await job.run_once()
        assert _requests(vendor_set, "nebula") == read
        # The same lease as a search's own refresh: a refresh by either counts for both.
        async with sqlite_db.transaction() as session:
            await session.execute(update(JobLease).where(JobLease.name == "catalog:nebula").values(last_run_at=None))
        assert await catalog._take_lease("nebula") is not None  # a search's refresh holds it now
        assert not await job.run_once()
        assert _requests(vendor_set, "nebula") == read
    finally:
        await catalog.aclose()


async def test_a_failed_read_does_not_count(sqlite_db: Database, vendor_set: Any, test_settings: Settings) -> None:
    settings = test_settings.model_copy(update={"offer_fetch_timeout": 1.0})
    catalog = OfferCatalog(sqlite_db, vendor_set, settings)
    engine = Engine(sqlite_db, vendor_set, settings, catalog)
    job = next(job for job in engine.jobs if job.name == "catalog:nebula")
    vendor_set.sandboxes["nebula"].faults.faults = {"503": 1.0}
    try:
        assert await job.run_once()
        assert catalog._state["nebula"].error
        lease = await _lease(sqlite_db, "catalog:nebula")
        assert lease is not None and lease.lock_token is None and lease.last_run_at is None  # still due
        # Due, but a failed vendor is not read again before FAILURE_RETRY_SECONDS.
        before = _requests(vendor_set, "nebula")
        assert await job.run_once()
        assert _requests(vendor_set, "nebula") == before
    finally:
        vendor_set.sandboxes["nebula"].faults.faults = {}
        await catalog.aclose()


async def test_searches_leave_the_refresh_to_a_running_engine(
    sqlite_db: Database, vendor_set: Any, test_settings: Settings
) -> None:
    settings = test_settings.model_copy(update={"offer_cache_seconds": 0.0})  # always stale
    catalog = OfferCatalog(sqlite_db, vendor_set, settings)
    try:
        await catalog.refresh()
        catalog.refreshed_by_engine = True
        await catalog.search(OfferQuery(), limit=5)
        assert all(state.task is None or state.task.done() for state in catalog._state.values())
        catalog.refreshed_by_engine = False  # no engine: the search refreshes the stale catalog itself
        await catalog.search(OfferQuery(), limit=5)
        assert any(state.task is not None and not state.task.done() for state in catalog._state.values())
        engine = Engine(sqlite_db, vendor_set, settings, catalog)
        await engine.start()
        try:
            assert catalog.refreshed_by_engine
        finally:
            await engine.stop()
        assert not catalog.refreshed_by_engine
    finally:
        await catalog.aclose()
