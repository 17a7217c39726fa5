"""A live fleet without procuring it: N running instances in the sandbox vendors' saved state, and the
`running` rows the engine would have left for them in the database.

- The sandboxes: each vendor's sandbox is built in this process with the configuration its process
  will get, the instances are committed through the methods its create routes end in (the seeders
  of benchmark 5, bench/reconciler.py), each carrying the marker our adapters send
  (`gpusupply-<resource id>-<installation>`), and the state is saved with `SandboxStore.save`, the
  format a restarted sandbox reads back. bench/sandbox_process.py then serves it as its own process.
- The database: per instance an offer row (procured; the vendor's own offer from its offline
  catalog, bench/search.py `build_offers`, round robin), its procurement, and the resource
  (running, the vendor's instance id, address, offer snapshot, price) with its status history,
  inserted a thousand per transaction; then `VACUUM ANALYZE`, which autovacuum does after a bulk
  insert. `next_attempt_at` is a day away: nothing is due until the benchmark says so.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text
from tests.e2e.helpers import VENDOR_KEY

from bench.reconciler import SEEDERS
from bench.search import build_offers
from gpusupply.core.markers import marker_for
from gpusupply.core.offers import Offer, offer_to_dict
from gpusupply.core.states import ResourceStatus
from gpusupply.db.installation import installation_id
from gpusupply.db.models import OfferRow, Procurement, Resource, Tenant, utcnow
from gpusupply.db.session import Database
from gpusupply.domain.events import change_status
from gpusupply.sandbox.common import SandboxConfig
from gpusupply.sandbox.mode import sandbox_class
from gpusupply.sandbox.state import SandboxStore
from gpusupply.services.procurement import STATUS_IN_PROGRESS
from gpusupply.vendors.registry import VENDOR_SPECS

SHARE = {"vast": 0.4, "nebula": 0.3, "fal": 0.3}  # as benchmark 5
BATCH = 1_000  # resources per seeding transaction
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBenchFleetKeyForSeededResourcesOnly bench@fleet"


def fleet_split(size: int) -> dict[str, int]:
    counts = {vendor: int(size * share) for vendor, share in SHARE.items()}
    counts["vast"] += size - sum(counts.values())
    return counts


@dataclass
class Fleet:
    """What was seeded: per vendor, resource id -> the vendor's instance id."""

    installation: str
    instances: dict[str, dict[uuid.UUID, str]] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return sum(len(ids) for ids in self.instances.values())


def sandbox_config(vendor: str, count: int, seed: int) -> SandboxConfig:
    """The configuration the vendor's process gets too: Vast needs two asks per instance on offer."""
    return SandboxConfig(seed=seed, offers=max(3000, 2 * count) if vendor == "vast" else 3000, ready_after=0.0, stock=10_000)


def write_sandbox_state(vendor: str, directory: Path, config: SandboxConfig, markers: list[str]) -> list[str]:
    """Commit one live instance per marker in the vendor's sandbox and save its state in `directory`;
    returns the instance ids, in the markers' order."""
    sandbox = sandbox_class(vendor)(config)
    # Only Vast's seeder uses the adapter (the create body it sends); nothing is sent.
    adapter = VENDOR_SPECS[vendor].adapter("http://127.0.0.1:9", VENDOR_KEY) if vendor == "vast" else None
    instance_ids = SEEDERS[vendor](sandbox, adapter, markers, VENDOR_KEY)
    store = SandboxStore.open(directory)
    try:
        store.save(sandbox)
    finally:
        store.close()  # the sandbox's own process takes the directory's lock
    return instance_ids


async def seed_fleet(database_url: str, state_dir: Path, counts: dict[str, int], seed: int) -> Fleet:
    """The sandboxes' state in `state_dir/<vendor>/` and the matching rows in the (migrated) database."""
    db = Database(database_url)
    try:
        await db.migrate()
        fleet = Fleet(await installation_id(db))
        for vendor, count in counts.items():
            resource_ids = [uuid.uuid4() for _ in range(count)]
            markers = [marker_for(resource_id, fleet.installation) for resource_id in resource_ids]
            # A directory per vendor: each is locked by the one process that serves it.
            instance_ids = write_sandbox_state(vendor, state_dir / vendor, sandbox_config(vendor, count, seed), markers)
            fleet.instances[vendor] = dict(zip(resource_ids, instance_ids, strict=True))
        await insert_rows(db, fleet, seed)
        return fleet
    finally:
        await db.dispose()


async def insert_rows(db: Database, fleet: Fleet, seed: int) -> None:
    catalog = build_offers(2_000, seed)
    pools = {vendor: itertools.cycle([o for o in catalog if o.vendor == vendor]) for vendor in fleet.instances}
    now = utcnow()
    started = now - timedelta(hours=2)
    tenant_id = uuid.uuid4()
    async with db.transaction() as session:
        session.add(Tenant(id=tenant_id, name=f"bench-fleet-{tenant_id.hex[:8]}"))
    rows = [(vendor, resource_id, instance_id) for vendor, ids in fleet.instances.items() for resource_id, instance_id in ids.items()]
    for first in range(0, len(rows), BATCH):
        async with db.transaction() as session:
            for number, (vendor, resource_id, instance_id) in enumerate(rows[first : first + BATCH], start=first):
                resource = add_resource(session, tenant_id, resource_id, vendor, instance_id, next(pools[vendor]), number, started, now)
                # The history the engine writes on the way (event rows).
                change_status(session, resource, ResourceStatus.PROVISIONING, at=started + timedelta(seconds=5))
                change_status(session, resource, ResourceStatus.RUNNING, at=started + timedelta(minutes=2))
    async with db.engine.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        await connection.execute(text("VACUUM ANALYZE"))


def add_resource(session: Any, tenant_id: uuid.UUID, resource_id: uuid.UUID, vendor: str, instance_id: str, offer: Offer,
                 number: int, started: Any, now: Any) -> Resource:
    """The offer, procurement and (still pending) resource rows of one instance, as procurement leaves them."""
    offer_row = OfferRow(
        id=uuid.uuid4(), snapshot_id=uuid.uuid4(), vendor=vendor, vendor_offer_id=offer.vendor_offer_id, gpu_type=offer.gpu_type,
        gpu_family=offer.gpu_family, gpu_count=offer.gpu_count, data=offer_to_dict(offer), fetched_at=started,
        expires_at=started + timedelta(minutes=10), status="procured", procured_at=started, procured_by=tenant_id,
    )
    procurement = Procurement(id=uuid.uuid4(), tenant_id=tenant_id, offer_id=offer_row.id, status=STATUS_IN_PROGRESS,
                              created_at=started, procured_at=started)
    resource = Resource(
        id=resource_id, tenant_id=tenant_id, procurement_id=procurement.id, offer_id=offer_row.id, name=f"fleet-{number}",
        status=ResourceStatus.PENDING.value, vendor=vendor, vendor_region=offer.vendor_region, region=offer.region,
        gpu_type=offer.gpu_type, gpu_family=offer.gpu_family, gpu_count=offer.gpu_count, price_per_hour=offer.total_price_per_hour,
        offer_snapshot=offer_to_dict(offer), ssh_public_key=SSH_KEY, vendor_instance_id=instance_id,
        external_ip="203.0.113.7", ssh_port=22000 + number % 1000, attempts=[], retry_count=0, delete_alerted=False,
        create_attempted_at=started, created_at=started, updated_at=now, next_attempt_at=now + timedelta(days=1),
        running_since=started + timedelta(minutes=2), last_synced_at=now,
    )
    session.add_all([offer_row, procurement, resource])
    return resource
