"""A fal sandbox served on loopback plus real FalAdapters pointed at it, sharing its clock."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from gpusupply.core.offers import Offer
from gpusupply.sandbox.common import SandboxConfig, account_fingerprint
from gpusupply.sandbox.fal import FalSandbox
from gpusupply.sandbox.runner import ServerThread
from gpusupply.vendors.base import CreateRequest
from gpusupply.vendors.fal import FalAdapter
from gpusupply.vendors.http import RetryPolicy

SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB3x test@host"
FAST_RETRY = RetryPolicy(attempts=5, base_delay=0.01, max_delay=0.05)
# Sandbox limits and adapter pacing both scaled up together, so tests do not wait on pacing.
RATE_SCALE = 10.0


def rig_config(**overrides: Any) -> SandboxConfig:
    return SandboxConfig(**{"seed": 5, "offers": 100, "ready_after": 30.0, "hang_seconds": 0.5, "rate_scale": RATE_SCALE, **overrides})


@dataclass
class FalRig:
    sandbox: FalSandbox
    url: str
    admin: httpx.Client
    _adapters: list[FalAdapter] = field(default_factory=list)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.sandbox.clock.now(), UTC)

    def adapter(self, key: str = "k1", **options: Any) -> FalAdapter:
        options.setdefault("retry", FAST_RETRY)
        options.setdefault("rate_scale", RATE_SCALE)
        options.setdefault("clock", self.now)
        # A create is sent once: 10 s timed one out on a machine at load 25 (the sandbox's thread
        # starved); tests of timeouts pass their own.
        options.setdefault("timeout", 30.0)
        adapter = FalAdapter(self.url, key, **options)
        self._adapters.append(adapter)
        return adapter

    def request(self, offer: Offer, *, first_attempt_at: datetime | None = None, **kw: Any) -> CreateRequest:
        return CreateRequest(uuid.uuid4(), offer, SSH_KEY, first_attempt_at=first_attempt_at or self.now(), **kw)

    def advance(self, seconds: float) -> None:
        self.admin.post("/_sandbox/clock/advance", json={"seconds": seconds}).raise_for_status()

    def set_faults(self, faults: dict[str, float]) -> None:
        self.admin.put("/_sandbox/faults", json=faults).raise_for_status()

    def state(self) -> dict[str, Any]:
        return self.admin.get("/_sandbox/state").json()

    def live_ids(self, key: str = "k1") -> set[str]:
        """Instances that exist (and bill) on the sandbox for this key: the truth."""
        account = account_fingerprint(key)
        return {i["id"] for i in self.state()["instances"] if i["account"] == account and i["phase"] not in ("deleted", "preempted")}

    def assert_one_create_per_key(self) -> None:
        """No idempotency key (our resource id) was ever committed twice."""
        counts = Counter(c["marker"] for c in self.state()["creates"])
        assert all(n == 1 for n in counts.values()), counts

    async def aclose(self) -> None:
        for adapter in self._adapters:
            await adapter.aclose()


@asynccontextmanager
async def fal_rig(config: SandboxConfig | None = None, **sandbox_kw: Any) -> AsyncIterator[FalRig]:
    sandbox = FalSandbox(config or rig_config(), **sandbox_kw)
    with ServerThread(sandbox.create_app()) as server, httpx.Client(base_url=server.url, timeout=10.0) as admin:
        rig = FalRig(sandbox, server.url, admin)
        try:
            yield rig
        finally:
            await rig.aclose()
