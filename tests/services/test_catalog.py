"""The offer catalog against the sandbox vendors over HTTP: snapshots in the database, partial
answers when a vendor fails, stale-while-revalidate, one refresher per vendor (JobLease), and
replicas that share snapshots and procurements through the database."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any
from uuid import uuid4

import pytest
from sqlalchemy import func, select, update

from gpusupply.core.offers import OfferQuery, matches, offer_from_dict, offer_to_dict, price_key
from gpusupply.db.models import CatalogSnapshot, JobLease, OfferRow, utcnow
from gpusupply.db.session import Database
from gpusupply.domain.catalog import OfferCatalog, past_retention
from gpusupply.settings import Settings
from tests.conftest import BACKENDS


async def _settle(catalog: OfferCatalog) -> None:
    """Wait for background refreshes started by a search (test helper)."""
    tasks = [state.task for state in catalog._state.values() if state.task is not None]
    await asyncio.gather(*tasks, return_exceptions=True)


@pytest.fixture
async def sqlite_db(sqlite_url: str) -> Any:
    db = Database(sqlite_url)
    await db.migrate()
    yield db
    await db.dispose()


async def test_offer_round_trips_through_dict(vendor_set: Any) -> None:
    for adapter in vendor_set.adapters.values():
        offers = await adapter.list_offers()
        assert offers
        for offer in offers[:20]:
            assert offer_from_dict(offer_to_dict(offer)) == offer
    assert offer_from_dict({**offer_to_dict(offers[0]), "added_later": 1}) == offers[0]


async def test_refresh_stores_a_snapshot_per_vendor(sqlite_db: Database, vendor_set: Any, test_settings: Settings) -> None:
    catalog = OfferCatalog(sqlite_db, vendor_set, test_settings)
    try:
        await catalog.refresh()
        async with sqlite_db.session() as session:
            snapshots = (await session.execute(select(CatalogSnapshot))).scalars().all()
            counts = dict((await session.execute(select(OfferRow.vendor, func.count()).group_by(OfferRow.vendor))).all())
        assert {s.vendor for s in snapshots} == set(vendor_set.adapters)
        assert all(s.current for s in snapshots)
        assert counts == {s.vendor: s.offer_count for s in snapshots}
        result = await catalog.search(OfferQuery(), limit=10_000)
        assert result.total == sum(counts.values()) - sum(
            1 for s in await _all_stored(sqlite_db) if not s["available"]
        )
        assert not result.partial and result.failed_vendors == {}
        assert [price_key(s.offer) for s in result.offers] == sorted(price_key(s.offer) for s in result.offers)
        stored = await catalog.get(result.offers[0].offer_id)
        assert stored is not None and stored.status == "available" and stored.offer == result.offers[0].offer
        assert stored.expires_at == result.offers[0].expires_at
        assert stored.expires_at - stored.offer.fetched_at <= timedelta(seconds=test_settings.offer_validity_seconds + 1)
        assert await catalog.get(uuid4()) is None
        # A second refresh makes a new current snapshot and keeps the old rows (still valid).
        await catalog.refresh("nebula")
        async with sqlite_db.session() as session:
            nebula = (await session.execute(select(CatalogSnapshot).where(CatalogSnapshot.vendor == "nebula"))).scalars().all()
        assert sorted(s.current for s in nebula) == [False, True]
        assert await catalog.get(stored.offer_id) is not None
    finally:
        await catalog.aclose()


async def _all_stored(db: Database) -> list[dict[str, Any]]:
    async with db.session() as session:
        return [row.data for row in (await session.execute(select(OfferRow))).scalars()]


async def test_search_matches_the_predicate(sqlite_db: Database, vendor_set: Any, test_settings: Settings) -> None:
    catalog = OfferCatalog(sqlite_db, vendor_set, test_settings)
    try:
        everything = (await catalog.search(OfferQuery(), limit=10_000)).offers
        for query in (
            OfferQuery(gpu_family="H100", gpu_count=1),
            OfferQuery(gpu_family="RTX4090", region="US", max_price_per_gpu_hour=0.5),
            OfferQuery(vendor="nebula", contract_type="ondemand"),
            OfferQuery(gpu_canonical="nvidia-h100-sxm5-80gb", gpu_count=8),
        ):
            result = await catalog.search(query, limit=10_000)
            assert [s.offer_id for s in result.offers] == [s.offer_id for s in everything if matches(s.offer, query)]
            assert result.total == len(result.offers)
    finally:
        await catalog.aclose()


async def test_a_failing_vendor_gives_a_partial_answer(
    sqlite_db: Database, vendor_set: Any, test_settings: Settings
) -> None:
    vendor_set.sandboxes["nebula"].faults.faults = {"503": 1.0}
    # Generous: the healthy vendors must answer inside it even on a starved machine (1 s made Lambda
    # time out under load); the failing vendor fails fast anyway, once its retries run out.
    settings = test_settings.model_copy(update={"offer_fetch_timeout": 30.0})
    catalog = OfferCatalog(sqlite_db, vendor_set, settings)
    try:
        result = await catalog.search(OfferQuery(), limit=10_000)
        assert result.partial is True
        assert list(result.failed_vendors) == ["nebula"]
        assert result.failed_vendors["nebula"]
        assert {s.offer.vendor for s in result.offers} == set(vendor_set.adapters) - {"nebula"}
        # A query for the other vendors only is complete.
        only_fal = await catalog.search(OfferQuery(vendor="fal"), limit=10)
        assert not only_fal.partial
        status = {s.vendor: s for s in catalog.status()}
        assert status["nebula"].error and status["fal"].error is None
        # The vendor recovers: an explicit refresh clears the failure.
        vendor_set.sandboxes["nebula"].faults.faults = {}
        await catalog.refresh("nebula")
        assert not (await catalog.search(OfferQuery(), limit=1)).partial
    finally:
        await catalog.aclose()


async def test_stale_catalog_is_served_while_it_revalidates(
    sqlite_db: Database, vendor_set: Any, test_settings: Settings
) -> None:
    catalog = OfferCatalog(sqlite_db, vendor_set, test_settings.model_copy(update={"offer_cache_seconds": 0.0}))
    try:
        await catalog.refresh()
        first = {v: s.snapshot_id for v, s in catalog._state.items()}
        result = await catalog.search(OfferQuery(vendor="nebula"), limit=5)
        # Answered from the snapshot it had, at once; a refresh runs in the background.
        async with sqlite_db.session() as session:
            snapshots = set(
                (
                    await session.execute(
                        select(OfferRow.snapshot_id).where(OfferRow.id.in_([s.offer_id for s in result.offers]))
                    )
                ).scalars()
            )
        assert result.offers and snapshots == {first["nebula"]}
        await _settle(catalog)
        assert all(catalog._state[v].snapshot_id != first[v] for v in first)
    finally:
        await catalog.aclose()


@pytest.mark.parametrize("db_url", BACKENDS, indirect=True)
async def test_replicas_share_snapshots_and_procurements(database: Database, vendor_set: Any, test_settings: Settings) -> None:
    first = OfferCatalog(database, vendor_set, test_settings, sync_interval=0.0)
    second = OfferCatalog(database, vendor_set, test_settings, sync_interval=0.0)
    try:
        await first.refresh()
        requests_before = {v: s.requests for v, s in vendor_set.sandboxes.items()}
        await second.start()
        # The second replica loaded the stored snapshots instead of reading the vendors again.
        assert {v: s.requests for v, s in vendor_set.sandboxes.items()} == requests_before
        a = await first.search(OfferQuery(), limit=10_000)
        b = await second.search(OfferQuery(), limit=10_000)
        assert [s.offer_id for s in a.offers] == [s.offer_id for s in b.offers]
        # An offer procured through one replica disappears from the other's search.
        taken = b.offers[0].offer_id
        async with database.transaction() as session:
            await session.execute(
                update(OfferRow).where(OfferRow.id == taken).values(status="procured", procured_at=utcnow())
            )
        after = await second.search(OfferQuery(), limit=10_000)
        assert taken not in {s.offer_id for s in after.offers} and after.total == b.total - 1
        stored = await first.get(taken)
        assert stored is not None and stored.status == "procured"
        # A newer snapshot written by the first replica is picked up by the second.
        await first.refresh("nebula")
        await second.search(OfferQuery(), limit=1)
        assert second._state["nebula"].snapshot_id == first._state["nebula"].snapshot_id
    finally:
        await first.aclose()
        await second.aclose()


@pytest.mark.parametrize("db_url", BACKENDS, indirect=True)
async def test_one_refresher_per_vendor(database: Database, vendor_set: Any, test_settings: Settings) -> None:
    holder = OfferCatalog(database, vendor_set, test_settings, owner="holder")
    waiter = OfferCatalog(database, vendor_set, test_settings.model_copy(update={"offer_fetch_timeout": 0.5}), owner="waiter")
    try:
        token = await holder._take_lease("nebula")
        assert token is not None
        assert await waiter._take_lease("nebula") is None  # held
        requests = vendor_set.sandboxes["nebula"].requests
        await waiter.refresh("nebula")
        # The waiter did not read the vendor itself; it found no snapshot and reports that.
        assert vendor_set.sandboxes["nebula"].requests == requests
        assert "another process" in (waiter._state["nebula"].error or "")
        await holder._release_lease("nebula", token)
        async with database.session() as session:
            lease = await session.get(JobLease, "catalog:nebula")
        assert lease is not None and lease.lock_token is None and lease.last_run_at is not None
        await waiter.refresh("nebula")
        assert waiter._state["nebula"].snapshot_id is not None
        # An expired lease is taken over.
        async with database.transaction() as session:
            await session.execute(
                update(JobLease).where(JobLease.name == "catalog:fal").values(
                    lock_token=uuid4(), lock_owner="dead", lock_expires_at=utcnow() - timedelta(seconds=1)
                )
            )
        assert await holder._take_lease("fal") is not None
    finally:
        await holder.aclose()
        await waiter.aclose()


async def test_cleanup_keeps_procured_and_recent_rows(sqlite_db: Database, vendor_set: Any, test_settings: Settings) -> None:
    catalog = OfferCatalog(sqlite_db, vendor_set, test_settings)
    try:
        await catalog.refresh("fal")
        await catalog.refresh("fal")  # two snapshots
        async with sqlite_db.transaction() as session:
            ids = list((await session.execute(select(OfferRow.id))).scalars())
            long_ago = utcnow() - timedelta(seconds=3 * test_settings.offer_validity_seconds)
            await session.execute(update(OfferRow).values(expires_at=long_ago, fetched_at=long_ago))
            await session.execute(update(CatalogSnapshot).values(fetched_at=long_ago))
            await session.execute(update(OfferRow).where(OfferRow.id == ids[0]).values(status="procured", procured_at=long_ago))
        await catalog._cleanup()
        async with sqlite_db.session() as session:
            left = list((await session.execute(select(OfferRow.id))).scalars())
            snapshots = (await session.execute(select(CatalogSnapshot))).scalars().all()
        assert left == [ids[0]]
        assert [s.current for s in snapshots] == [True]  # the current snapshot is never removed
        expired = await catalog.get(ids[0])
        assert expired is not None and expired.status == "procured"
    finally:
        await catalog.aclose()


async def test_expired_offers_say_so(sqlite_db: Database, vendor_set: Any, test_settings: Settings) -> None:
    catalog = OfferCatalog(sqlite_db, vendor_set, test_settings)
    try:
        await catalog.refresh("fal")
        offer_id = (await catalog.search(OfferQuery(vendor="fal"), limit=1)).offers[0].offer_id
        async with sqlite_db.transaction() as session:
            await session.execute(update(OfferRow).values(expires_at=utcnow() - timedelta(seconds=1)))
        stored = await catalog.get(offer_id)
        assert stored is not None and stored.status == "expired"
    finally:
        await catalog.aclose()


async def test_closing_while_a_refresh_takes_its_lease_starts_no_read(
    sqlite_db: Database, vendor_set: Any, test_settings: Settings
) -> None:
    """A refresh that was taking its lease when the catalog closed must not start a vendor read
    afterwards: nothing would cancel it, and closing would wait for it (10 s under load)."""
    catalog = OfferCatalog(sqlite_db, vendor_set, test_settings)
    taking, proceed = asyncio.Event(), asyncio.Event()
    take_lease = catalog._take_lease

    async def held_take(vendor: str) -> Any:
        taking.set()
        await proceed.wait()
        return await take_lease(vendor)

    catalog._take_lease = held_take  # type: ignore[method-assign]
    refresh = catalog._start_refresh("vast", force=True)
    await taking.wait()
    closing = asyncio.create_task(catalog.aclose())
    await asyncio.sleep(0)  # aclose runs to its first wait: closed, waiting for the refresh
    assert catalog._closed
    proceed.set()
    await closing
    assert refresh.done() and refresh.exception() is None
    assert catalog._state["vast"].read is None and catalog._state["vast"].snapshot_id is None


class _Clock:
    """The catalog's `now`, moved by the test."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> Any:
        return self.now


async def test_an_offer_is_expired_for_one_validity_period_then_gone(
    sqlite_db: Database, vendor_set: Any, test_settings: Settings
) -> None:
    clock = _Clock()
    catalog = OfferCatalog(sqlite_db, vendor_set, test_settings, clock=clock)
    try:
        await catalog.refresh("fal")
        found = (await catalog.search(OfferQuery(vendor="fal"), limit=1)).offers[0]
        validity = timedelta(seconds=test_settings.offer_validity_seconds)
        assert (await catalog.get(found.offer_id)).status == "available"  # type: ignore[union-attr]
        clock.now = found.expires_at + validity / 2
        assert (await catalog.get(found.offer_id)).status == "expired"  # type: ignore[union-attr]
        clock.now = found.expires_at + validity  # the last moment of the retention period
        assert (await catalog.get(found.offer_id)).status == "expired"  # type: ignore[union-attr]
        clock.now = found.expires_at + 2 * validity  # well past it; no cleanup has run since
        assert await catalog.get(found.offer_id) is None
        async with sqlite_db.session() as session:
            assert await session.get(OfferRow, found.offer_id) is not None  # the row waits for the cleanup
    finally:
        await catalog.aclose()


@pytest.mark.parametrize(
    ("status", "after_expiry", "gone"),
    [("available", 0.5, False), ("available", 1.0, False), ("available", 1.01, True), ("procured", 10.0, False)],
)
def test_past_retention(status: str, after_expiry: float, gone: bool) -> None:
    expires = utcnow()
    retention = timedelta(minutes=30)
    assert past_retention(status, expires, expires + after_expiry * retention, retention) is gone


async def test_a_read_abandoned_before_it_starts_leaves_no_coroutine_behind(
    sqlite_db: Database, vendor_set: Any, test_settings: Settings
) -> None:
    """Closing the catalog while a vendor read is scheduled but not started (a server stopping
    as a refresh begins) cancels it without an orphaned `list_offers()` coroutine ("was never
    awaited" at shutdown): the vendor call is made inside the read, not before it."""
    import gc
    import warnings

    catalog = OfferCatalog(sqlite_db, vendor_set, test_settings)
    refresh = asyncio.create_task(catalog.refresh("nebula"))
    deadline = time.monotonic() + 60
    # Step the loop until the read is scheduled: it runs after this coroutine's next step.
    while catalog._state["nebula"].read is None:  # noqa: ASYNC110 - an Event would let the read start
        assert time.monotonic() < deadline, "the refresh never started its vendor read"
        await asyncio.sleep(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        await catalog.aclose()
        await asyncio.gather(refresh, return_exceptions=True)
        gc.collect()
    assert catalog._state["nebula"].read.cancelled()
    assert not [w for w in caught if "never awaited" in str(w.message)], [str(w.message) for w in caught]


async def test_shared_answers_hold_until_the_catalog_changes(
    sqlite_db: Database, vendor_set: Any, test_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`search(shared=True)` answers an identical search with the same result while nothing it
    depends on changed, and never past a change: an offer taken, a vendor's new snapshot or
    failure, or the clock reaching a catalog's expiry."""
    from gpusupply.domain import catalog as catalog_module

    moment = [utcnow()]
    monkeypatch.setattr(catalog_module, "utcnow", lambda: moment[0])
    monkeypatch.setattr(catalog_module, "FAILURE_RETRY_SECONDS", 3600.0)  # a failed vendor stays failed
    settings = test_settings.model_copy(update={"offer_fetch_timeout": 30.0, "offer_cache_seconds": 3600.0})
    catalog = OfferCatalog(sqlite_db, vendor_set, settings)
    query = OfferQuery(gpu_family="RTX4090")
    try:
        first = await catalog.search(query, limit=5, shared=True)
        assert first.offers and await catalog.search(query, limit=5, shared=True) is first
        assert await catalog.search(query, limit=5) is not first  # unshared: a result of its own
        assert await catalog.search(query, limit=6, shared=True) is not first  # another page
        # An offer of the page is taken: the next answer is a new search without it.
        taken = first.offers[0].offer_id
        catalog.discard(taken)
        second = await catalog.search(query, limit=5, shared=True)
        assert second is not first and taken not in [s.offer_id for s in second.offers]
        # A vendor's new snapshot.
        vendor = second.offers[0].offer.vendor
        await catalog.refresh(vendor)
        third = await catalog.search(query, limit=5, shared=True)
        assert third is not second and third.offers[0].offer_id != second.offers[0].offer_id
        # A vendor failing: the state changes (its error) and the answer says so once it expires.
        vendor_set.sandboxes["nebula"].faults.faults = {"503": 1.0}
        await catalog.refresh("nebula")
        assert await catalog.search(query, limit=5, shared=True) is not third
        # The clock reaches a catalog's expiry, with nothing else changed (the failed vendor is
        # not read again): not answered from before it.
        nebula = OfferQuery(vendor="nebula")
        before = await catalog.search(nebula, limit=5, shared=True)
        assert before.offers and not before.partial and await catalog.search(nebula, limit=5, shared=True) is before
        expires_at = catalog._state["nebula"].expires_at
        assert expires_at is not None
        moment[0] = expires_at
        after = await catalog.search(nebula, limit=5, shared=True)
        assert after is not before and after.partial and not after.offers
    finally:
        await catalog.aclose()
