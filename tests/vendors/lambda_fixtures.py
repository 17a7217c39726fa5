"""Helpers for the Lambda Cloud adapter tests: a sandbox on loopback, requests, and the sandbox's truth."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from uuid import uuid4

from gpusupply.core.errors import RateLimited, VendorUnavailable
from gpusupply.core.offers import Offer
from gpusupply.sandbox.common import SandboxConfig, account_fingerprint
from gpusupply.sandbox.lambdalabs import LambdaSandbox
from gpusupply.sandbox.runner import ServerThread
from gpusupply.vendors.base import CreateRequest, VendorInstance
from gpusupply.vendors.http import RetryPolicy
from gpusupply.vendors.lambdalabs import LambdaAdapter

API_KEY = "secret_lambda_adapter_test_key"
READY_AFTER = 30.0
SSH_PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGqyW18ZGi2DJz/l+lLuY53kFjwSih6p43MKiuWl49io test@gpusupply"
# Retries without the production backoff, so fault tests stay short (Retry-After is still honoured).
FAST_RETRY = RetryPolicy(attempts=8, base_delay=0.01, max_delay=0.05)
RATE_SCALE = 50.0  # adapter pacing loosened for tests against sandboxes without rate limits


@contextmanager
def running_sandbox(**config: Any) -> Iterator[tuple[LambdaSandbox, str]]:
    settings = {"ready_after": READY_AFTER, "rate_limits": False, "hang_seconds": 0.5, **config}
    sandbox = LambdaSandbox(SandboxConfig(**settings))
    with ServerThread(sandbox.create_app()) as server:
        yield sandbox, server.url


def make_adapter(url: str, *, api_key: str = API_KEY, **kw: Any) -> LambdaAdapter:
    kw.setdefault("retry", FAST_RETRY)
    kw.setdefault("rate_scale", RATE_SCALE)
    return LambdaAdapter(url, api_key, **kw)


def request_for(offer: Offer, **kw: Any) -> CreateRequest:
    return CreateRequest(resource_id=uuid4(), offer=offer, ssh_public_key=kw.pop("ssh_public_key", SSH_PUBLIC_KEY), **kw)


def roomiest(sandbox: LambdaSandbox, offers: list[Offer], **match: Any) -> Offer:
    """The offer with the most capacity left (ties by id), so several creates fit."""
    fits = [o for o in offers if all(getattr(o, k) == v for k, v in match.items())]
    if not fits:
        raise AssertionError(f"no offer matching {match}")

    def left(offer: Offer) -> int:
        return sandbox.capacity[(offer.vendor_data["instance_type"], offer.vendor_data["region_name"])]

    return max(fits, key=lambda o: (left(o), o.vendor_offer_id))


def creates_for(sandbox: LambdaSandbox, marker: str) -> list[dict[str, Any]]:
    return [c for c in sandbox.state()["creates"] if c["marker"] == marker]


def account_creates(sandbox: LambdaSandbox, api_key: str = API_KEY) -> list[dict[str, Any]]:
    fingerprint = account_fingerprint(api_key)
    return [c for c in sandbox.state()["creates"] if c["account"] == fingerprint]


def live_markers(sandbox: LambdaSandbox, api_key: str = API_KEY) -> list[str | None]:
    return [i.marker for i in sandbox.account_instances(api_key)]


async def procure_like_the_engine(adapter: LambdaAdapter, request: CreateRequest, *, rounds: int = 40) -> VendorInstance:
    """Create under faults the way the engine must: after an unknown outcome, recover before any
    new create, and create again only when recover says for sure that nothing exists."""
    for _ in range(rounds):
        try:
            instance = await adapter.create(request)
        except (VendorUnavailable, RateLimited):
            instance = None
        if instance is not None:
            return instance
        for _ in range(rounds):
            try:
                found = await adapter.recover(request)
            except VendorUnavailable:
                continue  # the list failed: we still do not know, so never create now
            if found is not None:
                return found
            break
        else:
            raise AssertionError("recover kept failing: the outcome stays unknown")
    raise AssertionError("could not procure under faults")
