"""The offer catalog: vendor offers, read in parallel, stored per snapshot, searched in memory.

How it stays fresh and shared (docs/api.md, "Offer catalog"):
- Each vendor's catalog is read on its own (in parallel, each bounded by `offer_fetch_timeout`),
  so one slow or failing vendor gives a partial answer, never a failed one.
- A read is stored as a `CatalogSnapshot` plus one `offers` row per offer (bulk insert), each
  expiring `offer_validity_seconds` after the read. `GET /offers/{id}` reads those rows, so any
  replica answers for any offer any replica returned.
- Stale-while-revalidate: a search never waits for a vendor that already has a catalog; once
  that catalog is older than `offer_cache_seconds` a refresh replaces it in the background. In a
  process that runs the engine, that refresh is the engine's periodic job `catalog:<vendor>`
  (engine/runner.py, one `refresh_as_job` round); in a process without one (an API replica
  next to separate workers, a test app), the search starts it. Only a vendor with no usable
  catalog at all is waited for, and read at once if need be (bounded by the fetch timeout).
- One process refreshes a vendor at a time: it holds the job lease `catalog:<vendor>`
  (domain/job_leases.py, the lease of every background job). Others reload the newest snapshot
  from the database instead of calling the vendor.
- Every replica keeps an `OfferIndex` and checks the database every `sync_interval` seconds for
  a newer snapshot (written by another replica) and for offers procured elsewhere.
- Expired offer rows are kept for one more validity period (so a late procure answers 410 and
  `GET /offers/{id}` says "expired"), then deleted, unless they were procured; past that period
  `get` answers as if deleted even before the cleanup (which runs after a vendor read) came by.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast
from uuid import UUID, uuid4, uuid5

from sqlalchemy import Table, delete, select, update

from gpusupply.core.errors import VendorError
from gpusupply.core.offers import Offer, OfferQuery, offer_from_dict, offer_to_dict
from gpusupply.core.prices import points_from_offers
from gpusupply.db.models import CatalogSnapshot, OfferRow, utcnow
from gpusupply.db.session import Database
from gpusupply.domain.job_leases import claim_job, finish_job, process_owner
from gpusupply.domain.offer_index import OfferIndex
from gpusupply.domain.price_history import add_points
from gpusupply.settings import Settings
from gpusupply.vendors.registry import VendorSet

log = logging.getLogger(__name__)

__all__ = [
    "OfferCatalog",
    "SearchResult",
    "StoredOffer",
    "VendorCatalogStatus",
]

# After a failed read, how long before the next try (a failing vendor is not hammered).
FAILURE_RETRY_SECONDS = 10.0
# How long a refresh may hold the vendor's lease beyond the fetch timeout (storing the rows).
LEASE_MARGIN_SECONDS = 30.0
# How many stored cluster offer ids a process remembers (they change with every snapshot).
STORED_CLUSTERS_KEPT = 10_000
# Poll interval while another process refreshes a vendor we have no catalog for.
FOREIGN_REFRESH_POLL_SECONDS = 0.2
# How many distinct searches (query, page) a process keeps answers of (`search(shared=True)`).
SHARED_ANSWERS_KEPT = 256


@dataclass(slots=True)
class StoredOffer:
    offer_id: UUID
    offer: Offer
    expires_at: datetime
    status: str  # available|procured|failed|expired
    procured_at: datetime | None = None
    # The offer as the API's JSON, rendered once on first use (api/views.offer_json): the offer
    # never changes while it lives in a snapshot, and rendering dominated search time.
    rendered: bytes | None = field(default=None, repr=False, compare=False)


@dataclass(slots=True)
class SearchResult:
    offers: list[StoredOffer]  # the requested page, sorted by core.offers.price_key
    total: int  # all matches
    partial: bool  # some vendor's catalog could not be read
    failed_vendors: dict[str, str]
    # The API's answer for this result, rendered once (api/routers/offers.py): a shared result
    # (`search(shared=True)`) answers every identical search until something changes.
    rendered: bytes | None = field(default=None, repr=False, compare=False)


@dataclass(slots=True)
class _SharedAnswer:
    version: tuple[Any, ...]  # OfferCatalog._answer_version() when it was computed
    valid_until: datetime | None  # the earliest expiry after it was computed (None: none)
    result: SearchResult


@dataclass(slots=True)
class VendorCatalogStatus:
    vendor: str
    fetched_at: datetime | None
    offers: int
    error: str | None


def effective_status(status: str, expires_at: datetime, now: datetime) -> str:
    """An available offer past its expiry is expired; other statuses stay as stored."""
    return "expired" if status == "available" and expires_at <= now else status


def past_retention(status: str, expires_at: datetime, now: datetime, retention: timedelta) -> bool:
    """An offer nobody procured is kept one retention period (one validity period) after it
    expired, then it is gone: its row may still wait for `_cleanup`, but it is answered as gone."""
    return status == "available" and expires_at < now - retention


@dataclass
class _VendorState:
    snapshot_id: UUID | None = None
    fetched_at: datetime | None = None
    expires_at: datetime | None = None
    error: str | None = None
    failed_at: float | None = None  # monotonic time of the last failed read
    task: asyncio.Task[None] | None = None  # the refresh (vendor read, then database writes)
    read: asyncio.Future[Any] | None = None  # the vendor read inside it: safe to cancel at any time

    def usable(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at > now


class OfferCatalog:
    def __init__(
        self,
        db: Database,
        vendors: VendorSet,
        settings: Settings,
        *,
        sync_interval: float = 2.0,
        owner: str | None = None,
        clock: Callable[[], datetime] = utcnow,
    ):
        self.db = db
        self.clock = clock  # what `get` and `_cleanup` take as now (tests move it)
        self.vendors = vendors
        self.settings = settings
        self.sync_interval = sync_interval
        self.owner = owner or process_owner()
        self._index = OfferIndex()
        self._state: dict[str, _VendorState] = {vendor: _VendorState() for vendor in vendors.adapters}
        self._last_sync = 0.0  # monotonic
        self._procured_seen_since: datetime | None = None
        self._sync_lock = asyncio.Lock()
        self._closed = False
        # Set while an engine in this process runs the periodic refresh (`refresh_as_job`):
        # searches then start no background refresh of their own.
        self.refreshed_by_engine = False
        self._job_refreshes: set[asyncio.Task[None]] = set()  # `refresh_as_job` rounds in flight
        self._stored_clusters: set[UUID] = set()  # cluster offers known to be in the offers table
        self._shared_answers: OrderedDict[tuple[OfferQuery, int, int], _SharedAnswer] = OrderedDict()

    # ----- public interface --------------------------------------------------------------------
    async def start(self) -> None:
        """Load the newest stored snapshots and start reading vendors whose catalog is stale."""
        await self._sync_from_db(force=True)
        self._revalidate(utcnow())

    async def search(self, query: OfferQuery, *, limit: int = 50, offset: int = 0, shared: bool = False) -> SearchResult:
        """The page of offers matching `query`. `shared`: the answer may be the very result an
        identical search got, as long as nothing it depends on changed since (the index, any
        vendor's catalog state) and no catalog expired: to be read, never changed (the API
        renders it once into `rendered`). Repeated searches (pollers, dashboards) then cost a
        lookup instead of a search and a rendering."""
        await self._sync_from_db()
        now = utcnow()
        wanted = [query.vendor] if query.vendor is not None else list(self._state)
        await self._wait_for_missing([v for v in wanted if v in self._state], now)
        now = utcnow()
        self._revalidate(now)
        key, version = (query, limit, offset), self._answer_version() if shared else ()
        if shared:
            kept = self._shared_answers.get(key)
            if kept is not None and kept.version == version and (kept.valid_until is None or now < kept.valid_until):
                self._shared_answers.move_to_end(key)
                await self._store_clusters(kept.result.offers)
                return kept.result
        page, total = self._index.search(query, now=now, limit=limit, offset=offset)
        failed = {}
        for vendor in wanted:
            state = self._state.get(vendor)
            if state is not None and not state.usable(now):
                failed[vendor] = state.error or "catalog not read yet"
        result = SearchResult(page, total, bool(failed), failed)
        if shared:  # (the version was taken with the search: a change while clusters are stored misses)
            self._shared_answers[key] = _SharedAnswer(version, self._next_expiry(now), result)
            self._shared_answers.move_to_end(key)
            while len(self._shared_answers) > SHARED_ANSWERS_KEPT:
                self._shared_answers.popitem(last=False)
        await self._store_clusters(page)
        return result

    def _answer_version(self) -> tuple[Any, ...]:
        """What a search answer depends on besides the clock: the index's version and each
        vendor's catalog state (its snapshot, expiry and error make `partial` and `failed_vendors`)."""
        return (self._index.version, *((s.snapshot_id, s.expires_at, s.error) for s in self._state.values()))

    def _next_expiry(self, now: datetime) -> datetime | None:
        """The first moment after `now` at which a catalog expires: answers change then."""
        expiries = [state.expires_at for state in self._state.values() if state.expires_at is not None]
        return min((at for at in [*expiries, *self._index.expiries()] if at > now), default=None)

    def wants_clusters(self, query: OfferQuery) -> bool:
        """Whether a procurement by this spec is a cluster (core.offers.wants_clusters)."""
        return self._index.wants_clusters(query)

    async def get(self, offer_id: UUID) -> StoredOffer | None:
        """Any offer any replica returned, from the database, until its row is cleaned up."""
        async with self.db.session() as session:
            row = await session.get(OfferRow, offer_id)
        now = self.clock()
        # Cleanup runs only after a vendor read, so a quiet installation keeps old rows: answer by time.
        if row is None or past_retention(row.status, row.expires_at, now, self._retention):
            return None
        status = effective_status(row.status, row.expires_at, now)
        return StoredOffer(row.id, offer_from_dict(row.data), row.expires_at, status, row.procured_at)

    async def refresh(self, vendor: str | None = None) -> None:
        """Read vendor catalogs now (all, or one), waiting until they are stored."""
        vendors = [vendor] if vendor is not None else list(self._state)
        tasks = [self._start_refresh(v, force=True) for v in vendors if v in self._state]
        if tasks:
            await asyncio.gather(*(asyncio.shield(t) for t in tasks), return_exceptions=True)

    async def sync(self) -> None:
        """Install every snapshot other processes stored since the last look, now."""
        await self._sync_from_db(force=True)

    def newest_refresh(self) -> datetime | None:
        """When the newest catalog this process holds was read (any vendor): it changes on every
        refresh, so it names the catalog a price alert was evaluated on."""
        times = [state.fetched_at for state in self._state.values() if state.fetched_at is not None]
        return max(times) if times else None

    def discard(self, offer_id: UUID) -> None:
        """Take an offer procured in this process out of search at once."""
        self._index.discard(offer_id)

    def status(self) -> list[VendorCatalogStatus]:
        return [
            VendorCatalogStatus(vendor, state.fetched_at, self._index.count(vendor), state.error)
            for vendor, state in self._state.items()
        ]

    async def aclose(self) -> None:
        """Stop refreshing. Vendor reads in flight are abandoned; database writes in flight are
        let finish (cancelling one mid-transaction could leave a SQLite write lock behind)."""
        self._closed = True
        for state in self._state.values():
            if state.read is not None and not state.read.done():
                state.read.cancel()
        tasks = [s.task for s in self._state.values() if s.task is not None and not s.task.done()]
        tasks += [task for task in self._job_refreshes if task not in tasks and not task.done()]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=self._refresh_budget())
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def refresh_as_job(self, vendor: str) -> bool:
        """One round of the engine's periodic job `catalog:<vendor>`, run while that job holds the
        vendor's job lease: read the vendor, unless another process stored a fresh snapshot.

        Returns whether the round counts. False (the job runs again at its next check): a read
        failed, or failed too recently to be tried again (`FAILURE_RETRY_SECONDS`).
        """
        state = self._state.get(vendor)
        if state is None or self._closed:
            return True
        if not self._may_retry(state):
            return False
        refresh = asyncio.create_task(
            self._refresh_vendor(vendor, force=False, lease_held=True), name=f"catalog-job:{vendor}"
        )
        # Searches waiting for this vendor wait for this read. A refresh of this process already
        # under way found the lease held (by this job) and waits for the snapshot this one stores.
        if state.task is None or state.task.done():
            state.task = refresh
        self._job_refreshes.add(refresh)
        refresh.add_done_callback(self._job_refreshes.discard)
        # Shielded: when the engine stops, the job is cancelled but the refresh's database writes
        # are let finish (`aclose` waits for them, as for every refresh).
        await asyncio.shield(refresh)
        return state.error is None

    # ----- freshness ---------------------------------------------------------------------------
    def _start_refresh(self, vendor: str, *, force: bool) -> asyncio.Task[None]:
        state = self._state[vendor]
        if state.task is None or state.task.done():
            state.task = asyncio.create_task(self._refresh_vendor(vendor, force=force), name=f"catalog:{vendor}")
        return state.task

    def _may_retry(self, state: _VendorState) -> bool:
        return state.failed_at is None or time.monotonic() - state.failed_at >= FAILURE_RETRY_SECONDS

    def _revalidate(self, now: datetime) -> None:
        """Start a background read for every vendor whose catalog is older than the cache age,
        unless this process's engine runs the refresh."""
        if self._closed or self.refreshed_by_engine:
            return
        max_age = timedelta(seconds=self.settings.offer_cache_seconds)
        for vendor, state in self._state.items():
            running = state.task is not None and not state.task.done()
            stale = state.fetched_at is None or now - state.fetched_at >= max_age
            if stale and not running and self._may_retry(state):
                self._start_refresh(vendor, force=False)
        # (the catalog-age gauge is computed when /metrics is scraped: not on every search)

    async def _wait_for_missing(self, vendors: list[str], now: datetime) -> None:
        """Wait (bounded) for vendors that have no usable catalog and may be read now."""
        tasks = []
        for vendor in vendors:
            state = self._state[vendor]
            if state.usable(now) or self._closed:
                continue
            if state.task is not None and not state.task.done():
                tasks.append(state.task)
            elif self._may_retry(state):
                tasks.append(self._start_refresh(vendor, force=False))
        if tasks:
            # The refresh applies the fetch timeout itself; the margin covers storing the rows.
            await asyncio.wait([asyncio.shield(t) for t in tasks], timeout=self._refresh_budget())

    def _refresh_budget(self) -> float:
        """How long one refresh may take: the vendor read plus time to store the rows."""
        timeout = self.settings.offer_fetch_timeout
        return timeout + min(5.0, timeout)

    async def _refresh_vendor(self, vendor: str, *, force: bool, lease_held: bool = False) -> None:
        """Read the vendor under its job lease: held by the caller (the engine's job, which
        releases it), else taken and released here."""
        state = self._state[vendor]
        # Once closed, a refresh in flight starts no further step (each is a database write that
        # closing would wait for); it only releases the lease it holds, for the other replicas.
        try:
            if self._closed:
                return
            token = None if lease_held else await self._take_lease(vendor)
            if token is None and not lease_held:
                await self._await_foreign_refresh(vendor)
                return
            try:
                if self._closed or (not force and await self._load_newer_snapshot(vendor, fresh_only=True)):
                    return
                await self._read_vendor(vendor)
            finally:
                if token is not None:
                    await self._release_lease(vendor, token)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a database error must not kill the catalog; report and retry later
            log.exception("catalog refresh failed", extra={"vendor": vendor})
            state.error, state.failed_at = f"catalog refresh failed: {type(exc).__name__}", time.monotonic()

    async def _read_vendor(self, vendor: str) -> None:
        if self._closed:
            return  # a read started now would never be cancelled
        state = self._state[vendor]
        adapter = self.vendors.adapters[vendor]
        fetched_at = utcnow()
        timeout = self.settings.offer_fetch_timeout

        async def read() -> list[Offer]:
            # The vendor call is made inside the read: a read cancelled before it starts (aclose)
            # leaves no `list_offers()` coroutine never awaited.
            async with asyncio.timeout(timeout):
                return await adapter.list_offers()

        state.read = asyncio.ensure_future(read())
        try:
            offers = await state.read
        except asyncio.CancelledError:
            if self._closed:
                return  # abandoned by aclose
            raise
        except TimeoutError:
            state.error, state.failed_at = f"no answer within {timeout:g} s", time.monotonic()
            log.warning("vendor catalog timed out", extra={"vendor": vendor, "timeout": timeout})
            return
        except VendorError as exc:
            state.error, state.failed_at = f"{type(exc).__name__}: {exc.message}", time.monotonic()
            log.warning("vendor catalog read failed", extra={"vendor": vendor, "error": state.error})
            return
        if self._closed:
            return
        expires_at = fetched_at + timedelta(seconds=self.settings.offer_validity_seconds)
        stored = [StoredOffer(uuid4(), offer, expires_at, "available") for offer in offers]
        snapshot_id = await self._store_snapshot(vendor, stored, fetched_at)
        self._install(vendor, snapshot_id, fetched_at, expires_at, stored)
        if not self._closed:
            await self._cleanup()
        log.info("vendor catalog refreshed", extra={"vendor": vendor, "offers": len(stored)})

    def _install(
        self, vendor: str, snapshot_id: UUID, fetched_at: datetime, expires_at: datetime, stored: list[StoredOffer]
    ) -> None:
        self._index.replace_vendor(vendor, stored)
        state = self._state[vendor]
        state.snapshot_id, state.fetched_at, state.expires_at = snapshot_id, fetched_at, expires_at
        state.error, state.failed_at = None, None

    async def _await_foreign_refresh(self, vendor: str) -> None:
        """Another process holds the vendor's lease: take its snapshot once it is stored."""
        state = self._state[vendor]
        deadline = time.monotonic() + self._refresh_budget()
        while time.monotonic() < deadline and not self._closed:
            if await self._load_newer_snapshot(vendor, fresh_only=False):
                return
            if state.usable(utcnow()):
                return  # ours is still valid; the other process's snapshot arrives with the next sync
            await asyncio.sleep(FOREIGN_REFRESH_POLL_SECONDS)
        if not state.usable(utcnow()):
            state.error, state.failed_at = "catalog is being read by another process", time.monotonic()

    # ----- database ----------------------------------------------------------------------------
    async def _store_clusters(self, page: list[StoredOffer]) -> None:
        """Store the cluster offers of a search answer that are not stored yet, so that any
        replica answers `GET /offers/{id}` for them and a procurement can take one. Their ids are
        the same in every replica (offer_index.cluster_offer_id): a row another replica stored
        first is left as it is. They sit in a snapshot of their own, which no replica loads as
        a catalog (each derives them from its node offers)."""
        new = [s for s in page if s.offer.node_count > 1 and s.offer_id not in self._stored_clusters]
        if not new:
            return
        async with self.db.transaction() as session:
            known = set(
                (await session.execute(select(OfferRow.id).where(OfferRow.id.in_([s.offer_id for s in new])))).scalars()
            )
            rows = [
                self._offer_row(s, cluster_snapshot_id(self._state[s.offer.vendor].snapshot_id), s.offer.fetched_at)
                for s in new
                if s.offer_id not in known
            ]
            if rows:
                await session.execute(cast(Table, OfferRow.__table__).insert(), rows)
        if len(self._stored_clusters) > STORED_CLUSTERS_KEPT:
            self._stored_clusters.clear()  # old snapshots' ids: a forgotten one costs one existence check
        self._stored_clusters.update(s.offer_id for s in new)

    @staticmethod
    def _offer_row(stored: StoredOffer, snapshot_id: UUID, fetched_at: datetime) -> dict[str, Any]:
        offer = stored.offer
        return {
            "id": stored.offer_id,
            "snapshot_id": snapshot_id,
            "vendor": offer.vendor,
            "vendor_offer_id": offer.vendor_offer_id[:200],
            "gpu_type": offer.gpu_type[:100],
            "gpu_family": offer.gpu_family[:50],
            "gpu_count": offer.gpu_count,
            "data": offer_to_dict(offer),
            "fetched_at": fetched_at,
            "expires_at": stored.expires_at,
            "status": "available",
        }

    async def _store_snapshot(self, vendor: str, stored: list[StoredOffer], fetched_at: datetime) -> UUID:
        snapshot_id = uuid4()
        rows = [self._offer_row(s, snapshot_id, fetched_at) for s in stored]
        async with self.db.transaction() as session:
            await session.execute(
                update(CatalogSnapshot)
                .where(CatalogSnapshot.vendor == vendor, CatalogSnapshot.current.is_(True))
                .values(current=False)
            )
            session.add(
                CatalogSnapshot(id=snapshot_id, vendor=vendor, fetched_at=fetched_at, offer_count=len(rows), current=True)
            )
            await session.flush()
            if rows:
                await session.execute(cast(Table, OfferRow.__table__).insert(), rows)  # Core: one executemany
            # The price history: one point per market of this refresh, in the snapshot's transaction
            # (exactly one set of points per stored refresh; docs/prices.md).
            await add_points(session, points_from_offers((s.offer for s in stored), fetched_at))
        return snapshot_id

    async def _load_newer_snapshot(self, vendor: str, *, fresh_only: bool) -> bool:
        """Install the vendor's current stored snapshot if it is newer than ours. True if done."""
        state = self._state[vendor]
        async with self.db.session() as session:
            snapshot = (
                await session.execute(
                    select(CatalogSnapshot).where(CatalogSnapshot.vendor == vendor, CatalogSnapshot.current.is_(True))
                )
            ).scalar_one_or_none()
        if snapshot is None or snapshot.id == state.snapshot_id:
            return False
        if state.fetched_at is not None and snapshot.fetched_at <= state.fetched_at:
            return False
        now = utcnow()
        if fresh_only and now - snapshot.fetched_at >= timedelta(seconds=self.settings.offer_cache_seconds):
            return False
        await self._load_snapshot(vendor, snapshot)
        return True

    async def _load_snapshot(self, vendor: str, snapshot: CatalogSnapshot) -> None:
        async with self.db.session() as session:
            rows = (
                await session.execute(
                    select(OfferRow.id, OfferRow.data, OfferRow.expires_at).where(
                        OfferRow.snapshot_id == snapshot.id, OfferRow.status == "available"
                    )
                )
            ).all()
        stored = [StoredOffer(row.id, offer_from_dict(row.data), row.expires_at, "available") for row in rows]
        expires_at = snapshot.fetched_at + timedelta(seconds=self.settings.offer_validity_seconds)
        self._install(vendor, snapshot.id, snapshot.fetched_at, expires_at, stored)

    async def _sync_from_db(self, *, force: bool = False) -> None:
        """Pick up other replicas' snapshots and procurements, at most every `sync_interval`."""
        if self._closed or self._sync_lock.locked():
            return
        if not force and time.monotonic() - self._last_sync < self.sync_interval:
            return
        async with self._sync_lock:
            self._last_sync = time.monotonic()
            started = utcnow()
            async with self.db.session() as session:
                current = (
                    await session.execute(select(CatalogSnapshot).where(CatalogSnapshot.current.is_(True)))
                ).scalars().all()
                procured: list[UUID] = []
                if self._procured_seen_since is not None:
                    procured = list(
                        (
                            await session.execute(
                                select(OfferRow.id).where(
                                    OfferRow.status != "available",
                                    OfferRow.procured_at >= self._procured_seen_since,
                                )
                            )
                        ).scalars()
                    )
            for snapshot in current:
                state = self._state.get(snapshot.vendor)
                if state is None or snapshot.id == state.snapshot_id:
                    continue
                if state.fetched_at is None or snapshot.fetched_at > state.fetched_at:
                    await self._load_snapshot(snapshot.vendor, snapshot)
            for offer_id in procured:
                self._index.discard(offer_id)
            # Overlap the windows a little: a procurement committed just before `started` counts.
            self._procured_seen_since = started - timedelta(seconds=5)

    @property
    def _retention(self) -> timedelta:
        return timedelta(seconds=self.settings.offer_validity_seconds)

    async def _cleanup(self) -> None:
        retention = self._retention
        cutoff = self.clock() - retention
        async with self.db.transaction() as session:
            await session.execute(delete(OfferRow).where(OfferRow.status == "available", OfferRow.expires_at < cutoff))
            await session.execute(
                delete(CatalogSnapshot).where(
                    CatalogSnapshot.current.is_(False), CatalogSnapshot.fetched_at < cutoff - retention
                )
            )

    async def _take_lease(self, vendor: str) -> UUID | None:
        """The vendor's job lease for one on-demand refresh, if no other process holds it. It is
        taken whenever free (the catalog judges freshness itself) and long enough for the read
        and storing its rows."""
        lease = timedelta(seconds=self.settings.offer_fetch_timeout + LEASE_MARGIN_SECONDS)
        return await claim_job(
            self.db, catalog_job_name(vendor), owner=self.owner, lease=lease, interval=timedelta(0), now=utcnow()
        )

    async def _release_lease(self, vendor: str, token: UUID) -> None:
        await finish_job(self.db, catalog_job_name(vendor), token, now=utcnow())


def cluster_snapshot_id(snapshot_id: UUID | None) -> UUID:
    """Where the cluster offers derived from a catalog snapshot are stored (never loaded as one)."""
    return uuid5(snapshot_id or UUID(int=0), "clusters")


def catalog_job_name(vendor: str) -> str:
    """The job lease of a vendor's catalog refresh (the engine's job of the same name holds it too)."""
    return f"catalog:{vendor}"
