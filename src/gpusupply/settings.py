"""Configuration from the environment (`GPUSUPPLY_*`), documented in docs/configuration.md."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, create_model
from pydantic_settings import BaseSettings, SettingsConfigDict

from gpusupply.vendors.registry import VENDOR_SPECS, VENDORS

__all__ = ["VENDORS", "Settings", "default_data_dir", "get_settings"]


def default_data_dir() -> Path:
    """Per user, so every command finds the same database from any directory:
    $XDG_DATA_HOME/gpusupply, else ~/.local/share/gpusupply."""
    base = os.environ.get("XDG_DATA_HOME", "")
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".local" / "share"
    return root / "gpusupply"


def _vendor_fields() -> dict[str, Any]:
    """Every vendor's settings, from its VendorSpec: a key makes the vendor live; without one it
    runs as an in-process sandbox. `GPUSUPPLY_<VENDOR>_API_KEY`, `_URL` and `_<OPTION>`."""
    fields: dict[str, Any] = {}
    for vendor, spec in VENDOR_SPECS.items():
        fields[f"{vendor}_api_key"] = (SecretStr | None, Field(None, description=f"{spec.name} API key (makes it live)."))
        fields[f"{vendor}_url"] = (str, Field(spec.default_url, description=f"{spec.name} base URL."))
        for option in spec.options:
            fields[f"{vendor}_{option.name}"] = (str, Field(option.default, description=option.description))
    return fields


# The vendors' fields come from the registry, so the class holding them is built at import time.
VendorSettings: type[BaseSettings] = create_model("VendorSettings", __base__=BaseSettings, **_vendor_fields())


class Settings(VendorSettings):  # VendorSettings: built from the vendor registry at import
    model_config = SettingsConfigDict(env_prefix="GPUSUPPLY_", extra="ignore")

    # Where the embedded database, generated secrets and the sandboxes' state live.
    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: str | None = None  # default: sqlite+aiosqlite:///<data_dir>/gpusupply.db
    db_pool_size: int = 10
    db_max_overflow: int = 20
    # SQLite: how long a write waits for another connection's lock before failing (503, retried).
    sqlite_busy_timeout_seconds: float = Field(default=5.0, gt=0, le=600)

    host: str = "127.0.0.1"
    port: int = 8080
    log_format: str = "text"  # text | json
    log_level: str = "info"

    # Vendors: each vendor's key, URL and options are fields of VendorSettings (the registry's).
    vendor_timeout: float = 10.0
    # Multiplies every vendor's documented rate limits in our pacing, and the in-process sandboxes'
    # limits alike: for sandboxes run faster than the real vendor (`gpusupply sandbox --rate-scale`,
    # the tests). Against a real vendor keep 1: above it, the vendor answers 429s.
    vendor_rate_scale: float = Field(default=1.0, gt=0, le=1000)
    enabled_vendors: str = ",".join(VENDORS)

    # Sandbox vendors (used for vendors without a key).
    sandbox_seed: int = 0
    sandbox_offers: int = 3000
    sandbox_ready_after: float = 3.0
    sandbox_faults: str = ""
    # In-process sandboxes' prices walk and their offers come and go (sandbox/market.py), so price
    # history and alerts have something to watch. Off keeps the seeded prices fixed.
    sandbox_prices_move: bool = True
    # Where in-process sandboxes keep their state across restarts (and lock it to one process);
    # `gpusupply serve` and `worker` set <data_dir>/sandboxes; None keeps it in memory (tests).
    sandbox_state_dir: Path | None = None

    # Offers.
    offer_cache_seconds: float = 180.0  # a vendor's catalog is refreshed when older than this
    offer_validity_seconds: float = 1800.0  # an offer can be procured for 30 minutes after it was read
    offer_fetch_timeout: float = 15.0  # per vendor, for one catalog refresh

    # Engine.
    engine_workers: int = 16
    lease_seconds: float = 30.0
    provisioning_timeout_seconds: float = 600.0
    delete_alert_after_seconds: float = 900.0
    refresh_interval_seconds: float = 30.0
    reconcile_interval_seconds: float = 60.0
    orphan_grace_seconds: float = 300.0
    create_visibility_seconds: float = 20.0  # how long a create with an unknown outcome may take to show
    # A "not found" read ends a resource only if a second read this much later and a listing agree.
    absence_confirm_seconds: float = 15.0
    max_failover_attempts: int = 10
    engine_poll_seconds: float = 1.0  # how long an idle pipeline waits before looking for work again
    provisioning_poll_seconds: float = 2.0  # how often a provisioning / stopping / starting instance is re-read

    # Fleets (docs/fleets.md).
    # A vendor-region that took a fleet member back (preempted, terminated) gets none of its
    # replacements for this long, when another offer exists.
    fleet_preemption_cooldown_seconds: float = Field(default=900.0, ge=0)
    fleet_check_seconds: float = Field(default=30.0, gt=0)  # a fleet at its size is checked again this often
    fleet_retry_max_seconds: float = Field(default=300.0, gt=0)  # the longest wait of a fleet that cannot reach its size

    # Security.
    secret_key: SecretStr | None = None  # encrypts stored secrets; generated into data_dir when unset
    allow_private_webhook_urls: bool = False

    # Cost guardrails and webhooks (docs/cost.md).
    guardrail_interval_seconds: float = 30.0  # auto-delete limits and budgets are checked this often
    webhook_timeout_seconds: float = 5.0  # per delivery attempt
    webhook_poll_seconds: float = 1.0  # how often an idle delivery job looks for new events

    # Prices over time (docs/prices.md).
    price_alert_interval_seconds: float = Field(default=5.0, gt=0)  # how often alerts look for a new catalog refresh
    # A price.below alert goes back above (price.above) only once the price is this share over the threshold.
    price_alert_hysteresis: float = Field(default=0.03, ge=0, le=1)
    price_downsample_interval_seconds: float = Field(default=600.0, gt=0)  # old points are merged this often

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'gpusupply.db').as_posix()}"

    @property
    def is_sqlite(self) -> bool:
        return self.effective_database_url.startswith("sqlite")

    def vendor_key(self, vendor: str) -> SecretStr | None:
        key: SecretStr | None = getattr(self, f"{vendor}_api_key")
        return key

    def vendor_url(self, vendor: str) -> str:
        url: str = getattr(self, f"{vendor}_url")
        return url.rstrip("/")

    def vendor_option(self, vendor: str, name: str) -> str:
        """GPUSUPPLY_<VENDOR>_<NAME> of one of the vendor's declared options."""
        value: str = getattr(self, f"{vendor}_{name}")
        return value

    @property
    def vendors(self) -> list[str]:
        names = [v.strip() for v in self.enabled_vendors.split(",") if v.strip()]
        unknown = [v for v in names if v not in VENDORS]
        if unknown:
            raise ValueError(f"GPUSUPPLY_ENABLED_VENDORS: unknown vendor(s) {unknown}; known: {list(VENDORS)}")
        return names

    lease_heartbeat_fraction: float = Field(default=0.5, description="heartbeat when this much of a lease is left")


@lru_cache
def get_settings() -> Settings:
    return Settings()
