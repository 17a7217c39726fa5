"""Helpers for the RunPod adapter tests: a sandbox on loopback, requests, and the sandbox's truth."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from uuid import uuid4

from gpusupply.core.errors import RateLimited, VendorUnavailable
from gpusupply.core.offers import Offer
from gpusupply.sandbox.common import SandboxConfig
from gpusupply.sandbox.runner import ServerThread
from gpusupply.sandbox.runpod import RunPodSandbox
from gpusupply.vendors.base import CreateRequest, VendorInstance
from gpusupply.vendors.http import RetryPolicy
from gpusupply.vendors.runpod import RunPodAdapter

API_KEY = "rp_adapter_test_key"
READY_AFTER = 30.0
SSH_PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGqyW18ZGi2DJz/l+lLuY53kFjwSih6p43MKiuWl49io test@gpusupply"
# Retries without the production backoff, so fault tests stay short (Retry-After is still honoured).
FAST_RETRY = RetryPolicy(attempts=8, base_delay=0.01, max_delay=0.05)


@contextmanager
def running_sandbox(**config: Any) -> Iterator[tuple[RunPodSandbox, str]]:
    settings = {"ready_after": READY_AFTER, "rate_limits": False, "hang_seconds": 0.5, **config}
    sandbox = RunPodSandbox(SandboxConfig(**settings))
    with ServerThread(sandbox.create_app()) as server:
        yield sandbox, server.url


def make_adapter(url: str, *, api_key: str = API_KEY, **kw: Any) -> RunPodAdapter:
    """An adapter with fast retries and loose pacing (the pacing tests pass their own `rate_scale`)."""
    kw.setdefault("retry", FAST_RETRY)
    kw.setdefault("rate_scale", 20.0)
    return RunPodAdapter(url, api_key, **kw)


def request_for(offer: Offer, **kw: Any) -> CreateRequest:
    return CreateRequest(resource_id=uuid4(), offer=offer, ssh_public_key=kw.pop("ssh_public_key", SSH_PUBLIC_KEY), **kw)


def available(offers: list[Offer], contract_type: str = "ondemand", **match: Any) -> Offer:
    """The available offer of this contract with the most stock behind it (ties by id)."""
    rank = {"High": 3, "Medium": 2, "Low": 1}
    fits = [
        o for o in offers
        if o.available and o.contract_type == contract_type
        and all(o.vendor_data.get(k, getattr(o, k, None)) == v for k, v in match.items())
    ]
    if not fits:
        raise AssertionError(f"no available {contract_type} offer matching {match}")
    return max(fits, key=lambda o: (rank.get(o.vendor_data["stock_status"], 0), -o.gpu_count, o.vendor_offer_id))


def creates_for(sandbox: RunPodSandbox, marker: str) -> list[dict[str, Any]]:
    return [c for c in sandbox.state()["creates"] if c["marker"] == marker]


def live_markers(sandbox: RunPodSandbox, api_key: str = API_KEY) -> list[str | None]:
    return [i.marker for i in sandbox.account_instances(api_key)]


async def procure_like_the_engine(adapter: RunPodAdapter, request: CreateRequest, *, rounds: int = 40) -> VendorInstance:
    """Create under faults the way the engine must: after an unknown outcome, recover before any
    new create, and create again only when recover says for sure that nothing exists."""
    for _ in range(rounds):
        try:
            return await adapter.create(request)
        except (VendorUnavailable, RateLimited):
            pass
        for _ in range(rounds):
            try:
                found = await adapter.recover(request)
            except (VendorUnavailable, RateLimited):
                continue  # the list failed: we still do not know, so never create now
            if found is not None:
                return found
            break
        else:
            raise AssertionError("recover kept failing: the outcome stays unknown")
    raise AssertionError("could not procure under faults")
