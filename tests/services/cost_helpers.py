"""Helpers for cost, budget, usage and webhook tests: tenants, keys and resources with a status
history written through `domain.events.change_status` at chosen instants, as the engine writes it."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from gpusupply.core.states import ResourceStatus
from gpusupply.db.models import Procurement, Resource, Tenant
from gpusupply.db.session import Database
from gpusupply.domain.events import add_event, change_status
from gpusupply.services.keys import Principal
from tests.conftest import SSH_KEY

T0 = datetime(2026, 11, 10, 8, 0, tzinfo=UTC)


def at(hours: float) -> datetime:
    """T0 plus `hours`."""
    return T0 + timedelta(hours=hours)


async def make_tenant(db: Database, name: str | None = None) -> Tenant:
    async with db.transaction() as session:
        tenant = Tenant(name=name or f"t-{uuid.uuid4().hex[:8]}")
        session.add(tenant)
    return tenant


def principal_for(tenant: Tenant, *, admin: bool = False) -> Principal:
    return Principal(tenant.id, tenant.name, uuid.uuid4(), "test-key", admin)


async def make_resource(
    db: Database,
    tenant_id: uuid.UUID,
    *,
    vendor: str | None = "nebula",
    price: float | None = 2.0,
    gpu_family: str = "H100",
    gpu_count: int = 1,
    storage_per_hour: float | None = None,
    spec: dict[str, Any] | None = None,
    created: datetime = T0,
    history: Sequence[tuple[float, str]] = (),
    **fields: Any,
) -> uuid.UUID:
    """A resource created at `created` (pending), then moved through `history`: (hours after T0,
    status) pairs, with `running_since` set at the first running, as the engine does."""
    snapshot = {"vendor_data": {"storage_per_hour": storage_per_hour}} if storage_per_hour is not None else None
    async with db.transaction() as session:
        procurement = Procurement(tenant_id=tenant_id, spec=spec, status="provisioning_in_progress", created_at=created)
        session.add(procurement)
        await session.flush()
        resource = Resource(
            tenant_id=tenant_id, procurement_id=procurement.id, status="pending", vendor=vendor, price_per_hour=price,
            gpu_type=None, gpu_family=gpu_family, gpu_count=gpu_count, offer_snapshot=snapshot, ssh_public_key=SSH_KEY,
            created_at=created, next_attempt_at=created, **fields,
        )
        session.add(resource)
        event = add_event(session, kind="status_change", resource=resource, reason="procured", at=created)
        event.to_status = "pending"
        await session.flush()
        resource_id = resource.id
    await move(db, resource_id, history)
    return resource_id


async def move(db: Database, resource_id: uuid.UUID, history: Sequence[tuple[float, str]]) -> None:
    for hours, status in history:
        when = at(hours)
        async with db.transaction() as session:
            resource = await session.get(Resource, resource_id)
            assert resource is not None
            if status == "running" and resource.running_since is None:
                resource.running_since = when
            if status == "deleting":
                resource.final_status = "deleted"
            change_status(session, resource, ResourceStatus(status), f"test: {status}", at=when)


async def load(db: Database, resource_id: uuid.UUID) -> Resource:
    async with db.session() as session:
        resource = await session.get(Resource, resource_id)
    assert resource is not None
    return resource


# A typical life: provisioning at 0.1 h, running 0.2-2.2 h, stopped 2.5-4.2 h, running again until
# the delete is confirmed at 6.2 h.
LIFE: list[tuple[float, str]] = [
    (0.1, "provisioning"),
    (0.2, "running"),
    (2.2, "stopping"),
    (2.5, "stopped"),
    (4.0, "starting"),
    (4.2, "running"),
    (6.0, "deleting"),
    (6.2, "deleted"),
]
LIFE_RUNNING_HOURS = (2.5 - 0.2) + (6.2 - 4.2)  # 4.3: billed until the vendor confirmed
LIFE_STOPPED_HOURS = 4.2 - 2.5  # 1.7
