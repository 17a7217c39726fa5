"""Engine test rig: a migrated database, sandbox vendors served on loopback with the real adapters
pointed at them (over HTTP), rows written exactly as the API writes them (the API/engine
contract), and an engine with short intervals and a clock tests can move.

Nothing here mocks a vendor: every vendor call is real HTTP to a sandbox.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import select

from gpusupply.core.offers import Offer, offer_to_dict
from gpusupply.core.states import ResourceStatus
from gpusupply.db.models import Event, OfferRow, Procurement, Resource, Tenant, VendorState, utcnow
from gpusupply.db.session import Database
from gpusupply.domain.events import change_status
from gpusupply.engine.runner import Engine
from gpusupply.sandbox.common import SandboxConfig, account_fingerprint
from gpusupply.sandbox.mode import sandbox_class
from gpusupply.sandbox.runner import ServerTask
from gpusupply.settings import Settings
from gpusupply.vendors.http import RetryPolicy
from gpusupply.vendors.registry import VENDOR_SPECS, VENDORS, VendorSet

SANDBOX_KEY = "engine-test-key"
RATE_SCALE = 20.0  # sandbox limits and adapter pacing scaled together: tests do not wait on pacing
FAST_RETRY = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05)


def ssh_public_key() -> str:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode() + " test@gpusupply"


SSH_KEY = ssh_public_key()


def available_vendors() -> list[str]:
    """Every registered vendor (each has its sandbox: tests/vendors/test_registry.py)."""
    return list(VENDORS)


def engine_settings(tmp_path: Path, db_url: str | None = None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "database_url": db_url or f"sqlite+aiosqlite:///{tmp_path / 'engine.db'}",
        "engine_workers": 8,
        "lease_seconds": 5.0,
        "engine_poll_seconds": 0.05,
        "provisioning_poll_seconds": 0.05,
        "refresh_interval_seconds": 3600.0,
        "reconcile_interval_seconds": 1.0,
        "create_visibility_seconds": 0.3,
        "provisioning_timeout_seconds": 600.0,
        "delete_alert_after_seconds": 900.0,
        "orphan_grace_seconds": 300.0,
        "vendor_timeout": 2.0,
        "vast_api_key": None,
        "fal_api_key": None,
        "nebula_api_key": None,
        "lambda_api_key": None,
        "runpod_api_key": None,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


class MovableClock:
    """Engine time that tests move forward (timeouts, alerts, grace windows) instead of sleeping."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return utcnow() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


@dataclass
class Rig:
    db: Database
    vendors: VendorSet
    settings: Settings
    clock: MovableClock
    tenant_id: uuid.UUID
    engines: list[Engine] = field(default_factory=list)
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    # ----- the engine ---------------------------------------------------------------------------
    async def start_engine(self, **kw: Any) -> Engine:
        engine = Engine(self.db, self.vendors, self.settings, kw.pop("catalog", None), clock=self.clock, **kw)
        await engine.start()
        self.engines.append(engine)
        return engine

    async def stop_engines(self) -> None:
        for engine in self.engines:
            await engine.stop(grace_seconds=5.0)
        self.engines.clear()

    def engine_for_steps(self, **kw: Any) -> Engine:
        """An engine that is not started: tests call its pieces (e.g. the reconciler) directly."""
        return Engine(self.db, self.vendors, self.settings, kw.pop("catalog", None), clock=self.clock, **kw)

    # ----- sandboxes ----------------------------------------------------------------------------
    def sandbox(self, vendor: str) -> Any:
        return self.vendors.sandboxes[vendor]

    def set_faults(self, vendor: str, faults: dict[str, float]) -> None:
        self.sandbox(vendor).faults.faults = dict(faults)

    async def state(self, vendor: str) -> dict[str, Any]:
        """The sandbox's own truth, over its admin HTTP route."""
        async with httpx.AsyncClient(base_url=self.vendors.urls[vendor]) as client:
            response = await client.get("/_sandbox/state")
            response.raise_for_status()
            return response.json()

    async def live_instances(self, vendor: str) -> list[dict[str, Any]]:
        account = account_fingerprint(SANDBOX_KEY)
        state = await self.state(vendor)
        return [i for i in state["instances"] if i["account"] == account and i["phase"] not in ("deleted", "preempted")]

    async def creates_by_marker(self, vendor: str) -> Counter[str]:
        return Counter(c["marker"] for c in (await self.state(vendor))["creates"])

    async def catalog(self) -> Any:
        """The API's offer catalog over these vendors (procurement by spec searches it)."""
        from gpusupply.domain.catalog import OfferCatalog

        catalog = OfferCatalog(self.db, self.vendors, self.settings)
        await catalog.start()
        self.closers.append(catalog.aclose)
        return catalog

    async def offers(self, vendor: str) -> list[Offer]:
        """Available on-demand offers, one per vendor offer id (Vast lists an ask twice: on-demand
        and as a bid, and one create consumes the ask)."""
        seen: set[str] = set()
        offers = []
        for offer in await self.vendors.adapters[vendor].list_offers():
            if offer.available and offer.contract_type == "ondemand" and offer.vendor_offer_id not in seen:
                seen.add(offer.vendor_offer_id)
                offers.append(offer)
        return offers

    # ----- rows, written as the API writes them -------------------------------------------------
    async def procure_offer(self, offer: Offer, *, name: str | None = None, cloud_init: str | None = None, with_offer_row: bool = True) -> uuid.UUID:
        now = utcnow()
        async with self.db.transaction() as session:
            offer_id = uuid.uuid4()
            if with_offer_row:
                session.add(
                    OfferRow(
                        id=offer_id, snapshot_id=uuid.uuid4(), vendor=offer.vendor, vendor_offer_id=offer.vendor_offer_id,
                        gpu_type=offer.gpu_type, gpu_family=offer.gpu_family, gpu_count=offer.gpu_count,
                        data=offer_to_dict(offer), fetched_at=now, expires_at=now + timedelta(minutes=30),
                        status="procured", procured_at=now, procured_by=self.tenant_id,
                    )
                )
            procurement = Procurement(tenant_id=self.tenant_id, offer_id=offer_id, status="provisioning_in_progress")
            session.add(procurement)
            await session.flush()
            resource = Resource(
                tenant_id=self.tenant_id, procurement_id=procurement.id, offer_id=offer_id, name=name, status="pending",
                vendor=offer.vendor, vendor_region=offer.vendor_region, region=offer.region, gpu_type=offer.gpu_type,
                gpu_family=offer.gpu_family, gpu_count=offer.gpu_count, price_per_hour=offer.total_price_per_hour,
                offer_snapshot=offer_to_dict(offer), ssh_public_key=SSH_KEY, cloud_init=cloud_init, next_attempt_at=now,
            )
            session.add(resource)
            await session.flush()
            return resource.id

    async def procure_spec(self, spec: dict[str, Any]) -> uuid.UUID:
        now = utcnow()
        async with self.db.transaction() as session:
            procurement = Procurement(tenant_id=self.tenant_id, spec=spec, status="provisioning_in_progress")
            session.add(procurement)
            await session.flush()
            resource = Resource(
                tenant_id=self.tenant_id, procurement_id=procurement.id, status="pending", ssh_public_key=SSH_KEY, next_attempt_at=now,
            )
            session.add(resource)
            await session.flush()
            return resource.id

    async def request_delete(self, resource_id: uuid.UUID) -> None:
        now = utcnow()
        async with self.db.transaction() as session:
            row = await session.get(Resource, resource_id)
            assert row is not None
            change_status(session, row, ResourceStatus.DELETING, "deleted by the user")
            row.final_status = "deleted"
            row.delete_requested_at = now
            row.next_attempt_at = now

    async def request_action(self, resource_id: uuid.UUID, action: str) -> None:
        status = {"stop": ResourceStatus.STOPPING, "start": ResourceStatus.STARTING, "reboot": ResourceStatus.REBOOTING}[action]
        async with self.db.transaction() as session:
            row = await session.get(Resource, resource_id)
            assert row is not None
            change_status(session, row, status, f"{action} requested")
            row.pending_action = action
            row.next_attempt_at = utcnow()

    # ----- reading ------------------------------------------------------------------------------
    async def resource(self, resource_id: uuid.UUID) -> Resource:
        async with self.db.session() as session:
            row = await session.get(Resource, resource_id)
            assert row is not None
            return row

    async def events(self, resource_id: uuid.UUID | None = None, kind: str | None = None) -> list[Event]:
        query = select(Event).order_by(Event.id)
        if resource_id is not None:
            query = query.where(Event.resource_id == resource_id)
        if kind is not None:
            query = query.where(Event.kind == kind)
        async with self.db.session() as session:
            return list((await session.execute(query)).scalars().all())

    async def vendor_state(self, vendor: str) -> VendorState | None:
        async with self.db.session() as session:
            return await session.get(VendorState, vendor)

    async def wait_status(self, resource_id: uuid.UUID, *statuses: str, within: float = 30.0) -> Resource:
        """Wait (bounded) until the row reaches one of `statuses`; fail with its last state."""
        row = await self.resource(resource_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while row.status not in statuses:
            if loop.time() > deadline:
                raise AssertionError(f"resource {resource_id} is {row.status} ({row.status_message}), expected {statuses}")
            await asyncio.sleep(0.02)
            row = await self.resource(resource_id)
        return row

    async def wait_ended(self, resource_id: uuid.UUID, status: str, within: float = 30.0) -> Resource:
        """`wait_status` for an instance that vanished: each time the engine notes it absent, engine
        time moves past the absence confirmation window instead of the test sleeping through it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        advanced_for = None
        row = await self.resource(resource_id)
        while row.status != status:
            if loop.time() > deadline:
                raise AssertionError(f"resource {resource_id} is {row.status} ({row.status_message}), expected {status}")
            if row.absent_since is not None and row.absent_since != advanced_for:
                advanced_for = row.absent_since
                self.clock.advance(self.settings.absence_confirm_seconds)
            await asyncio.sleep(0.02)
            row = await self.resource(resource_id)
        return row


async def insert_resources(db: Database, count: int, *, status: str = "pending", **fields: Any) -> list[uuid.UUID]:
    """Bare rows for lease tests (no vendor behind them)."""
    now = utcnow()
    async with db.transaction() as session:
        tenant = Tenant(name=f"t-{uuid.uuid4().hex[:8]}")
        session.add(tenant)
        await session.flush()
        procurement = Procurement(tenant_id=tenant.id, status="provisioning_in_progress")
        session.add(procurement)
        await session.flush()
        values = {"next_attempt_at": now, **fields}
        rows = [
            Resource(tenant_id=tenant.id, procurement_id=procurement.id, status=status, ssh_public_key=SSH_KEY, **values)
            for _ in range(count)
        ]
        session.add_all(rows)
        await session.flush()
        return [r.id for r in rows]


async def wait_until(predicate: Callable[[], Awaitable[bool]], *, within: float = 30.0, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def start_sandboxes(
    vendors: list[str], *, config: SandboxConfig | None = None, vendor_timeout: float = 2.0, rate_scale: float = RATE_SCALE
) -> VendorSet:
    """Each vendor's sandbox on a loopback port in this loop, and its real adapter pointed at it."""
    adapters: dict[str, Any] = {}
    sandboxes: dict[str, Any] = {}
    servers: list[ServerTask] = []
    urls: dict[str, str] = {}
    for vendor in vendors:
        cfg = config or SandboxConfig(seed=3, offers=60, ready_after=0.2, hang_seconds=0.5, rate_scale=RATE_SCALE)
        sandbox = sandbox_class(vendor)(SandboxConfig(**vars(cfg)))
        server = await ServerTask(sandbox.create_app()).start()
        servers.append(server)
        sandboxes[vendor] = sandbox
        urls[vendor] = server.url
        adapters[vendor] = VENDOR_SPECS[vendor].adapter(server.url, SANDBOX_KEY, timeout=vendor_timeout, rate_scale=rate_scale, retry=FAST_RETRY)
    return VendorSet(adapters, {v: "sandbox" for v in vendors}, urls, sandboxes, [server.stop for server in servers])


@asynccontextmanager
async def engine_rig(tmp_path: Path, *, vendors: list[str] | None = None, db_url: str | None = None, **settings: Any) -> AsyncIterator[Rig]:
    settings_obj = engine_settings(tmp_path, db_url, **settings)
    db = Database(settings_obj.effective_database_url)
    await db.migrate()
    vendor_set = await start_sandboxes(vendors or available_vendors(), vendor_timeout=settings_obj.vendor_timeout)
    async with db.transaction() as session:
        tenant = Tenant(name=f"tenant-{uuid.uuid4().hex[:8]}")
        session.add(tenant)
        await session.flush()
        tenant_id = tenant.id
    rig = Rig(db, vendor_set, settings_obj, MovableClock(), tenant_id)
    try:
        yield rig
    finally:
        await rig.stop_engines()
        for close in rig.closers:
            await close()
        await vendor_set.aclose()
        await db.dispose()
