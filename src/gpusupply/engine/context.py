"""What every engine step needs: the database, the vendors, the settings, the catalog and a clock.

The clock is injectable so tests can move engine time (provisioning timeouts, delete alerts,
orphan grace) without sleeping; in production it is the wall clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from gpusupply.db.models import utcnow
from gpusupply.db.session import Database
from gpusupply.domain.job_leases import process_owner
from gpusupply.settings import Settings
from gpusupply.vendors.base import VendorAdapter

if TYPE_CHECKING:
    from gpusupply.domain.catalog import OfferCatalog
    from gpusupply.vendors.registry import VendorSet

Clock = Callable[[], datetime]


@dataclass
class EngineContext:
    db: Database
    vendors: VendorSet
    settings: Settings
    catalog: OfferCatalog | None = None  # spec procurement searches it; the engine's catalog jobs refresh it
    owner: str = field(default_factory=process_owner)
    clock: Clock = utcnow

    def now(self) -> datetime:
        return self.clock()

    async def installation(self) -> str:
        """This installation's id (db/installation.py): our markers carry it."""
        from gpusupply.db.installation import installation_id

        return await installation_id(self.db)

    def adapter(self, vendor: str | None) -> VendorAdapter | None:
        if vendor is None:
            return None
        return self.vendors.adapters.get(vendor)

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.settings.lease_seconds)

    def after(self, seconds: float) -> datetime:
        return self.now() + timedelta(seconds=seconds)
