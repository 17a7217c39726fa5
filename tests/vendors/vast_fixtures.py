"""A Vast sandbox served on loopback plus real VastAdapters pointed at it, sharing its clock."""

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
from gpusupply.sandbox.runner import ServerThread
from gpusupply.sandbox.vast import VastSandbox
from gpusupply.vendors.base import CreateRequest
from gpusupply.vendors.http import RetryPolicy
from gpusupply.vendors.vast import VastAdapter

SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB3xVastAdapterTestKey test@host"
FAST_RETRY = RetryPolicy(attempts=5, base_delay=0.01, max_delay=0.05)
# Sandbox limits and adapter pacing both scaled up together, so tests do not wait on pacing.
RATE_SCALE = 10.0


def rig_config(**overrides: Any) -> SandboxConfig:
    values: dict[str, Any] = {"seed": 5, "offers": 400, "ready_after": 30.0, "hang_seconds": 0.5, "rate_scale": RATE_SCALE}
    values.update(overrides)
    return SandboxConfig(**values)


@dataclass
class VastRig:
    sandbox: VastSandbox
    url: str
    admin: httpx.Client
    _adapters: list[VastAdapter] = field(default_factory=list)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.sandbox.clock.now(), UTC)

    def adapter(self, key: str = "k1", **options: Any) -> VastAdapter:
        options.setdefault("retry", FAST_RETRY)
        options.setdefault("rate_scale", RATE_SCALE)
        options.setdefault("clock", self.now)
        adapter = VastAdapter(self.url, key, **options)
        self._adapters.append(adapter)
        return adapter

    def request(self, offer: Offer, **kw: Any) -> CreateRequest:
        return CreateRequest(uuid.uuid4(), offer, SSH_KEY, first_attempt_at=self.now(), **kw)

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

    def assert_one_create_per_marker(self) -> None:
        """No marker (our resource id) was ever committed twice."""
        counts = Counter(c["marker"] for c in self.state()["creates"])
        assert all(n == 1 for n in counts.values()), counts

    async def aclose(self) -> None:
        for adapter in self._adapters:
            await adapter.aclose()


@asynccontextmanager
async def vast_rig(config: SandboxConfig | None = None, **sandbox_kw: Any) -> AsyncIterator[VastRig]:
    sandbox = VastSandbox(config or rig_config(), **sandbox_kw)
    with ServerThread(sandbox.create_app()) as server, httpx.Client(base_url=server.url, timeout=10.0) as admin:
        rig = VastRig(sandbox, server.url, admin)
        try:
            yield rig
        finally:
            await rig.aclose()


def cheapest(offers: list[Offer], contract: str = "ondemand") -> Offer:
    return min((o for o in offers if o.contract_type == contract), key=lambda o: o.total_price_per_hour)
