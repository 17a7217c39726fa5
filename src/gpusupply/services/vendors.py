"""The vendors as `GET /available_vendors` describes them: mode, health (what the engine's
reconciler last recorded), capabilities and the state of each one's offer catalog."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from gpusupply.db.models import VendorState
from gpusupply.db.session import Database
from gpusupply.domain.catalog import OfferCatalog, VendorCatalogStatus
from gpusupply.vendors.registry import VendorSet


@dataclass(slots=True)
class VendorDescription:
    """A vendor as `GET /available_vendors` shows it: mode, health, capabilities, catalog."""

    vendor: str
    mode: str  # live | sandbox
    degraded: bool
    degraded_reason: str | None
    degraded_since: datetime | None
    capabilities: dict[str, bool]
    catalog: VendorCatalogStatus
    foreign_instances: int = 0  # another installation's instances on this account (left alone)


async def describe_vendors(db: Database, vendors: VendorSet, catalog: OfferCatalog) -> list[VendorDescription]:
    """Every enabled vendor with the health the engine's reconciler last recorded."""
    async with db.session() as session:
        states = {s.vendor: s for s in (await session.execute(select(VendorState))).scalars()}
    catalogs = {status.vendor: status for status in catalog.status()}
    described = []
    for vendor, adapter in vendors.adapters.items():
        state = states.get(vendor)
        described.append(
            VendorDescription(
                vendor=vendor,
                mode=vendors.modes.get(vendor, "live"),
                degraded=bool(state and state.degraded),
                degraded_reason=state.degraded_reason if state else None,
                degraded_since=state.degraded_since if state else None,
                capabilities=dataclasses.asdict(adapter.capabilities),
                catalog=catalogs.get(vendor) or VendorCatalogStatus(vendor, None, 0, None),
                foreign_instances=state.foreign_instances if state else 0,
            )
        )
    return described
