"""Every route but the health checks needs a valid Bearer key; failures are 401 with
WWW-Authenticate, and tenants never see each other's procurements or resources."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from gpusupply.services.keys import revoke_key

SOME_ID = str(uuid.uuid4())
PROTECTED = [
    ("GET", "/available_gpus"),
    ("GET", "/available_vendors"),
    ("GET", "/available_regions"),
    ("GET", "/available_contracts"),
    ("POST", "/get_offers"),
    ("GET", f"/offers/{SOME_ID}"),
    ("GET", f"/offers/{SOME_ID}/status"),
    ("POST", "/procure_offer"),
    ("GET", "/resources"),
    ("GET", f"/resources/{SOME_ID}"),
    ("DELETE", f"/resources/{SOME_ID}"),
    ("POST", f"/resources/{SOME_ID}/stop"),
    ("POST", f"/resources/{SOME_ID}/start"),
    ("POST", f"/resources/{SOME_ID}/reboot"),
    ("GET", f"/resources/{SOME_ID}/events"),
]


@pytest.mark.parametrize(
    ("authorization", "detail"),
    [
        (None, "Not authenticated"),
        ("Bearer", "Invalid authentication credentials"),
        ("Basic YTpi", "Invalid authentication credentials"),
        ("Bearer gsk_" + "x" * 43, "Invalid authentication credentials"),
        ("Bearer sk-live-abc", "Invalid authentication credentials"),
    ],
)
async def test_every_protected_route_refuses_bad_keys(service: Any, authorization: str | None, detail: str) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    for method, path in PROTECTED:
        response = await service.anonymous.request(method, path, headers=headers)
        assert response.status_code == 401, (method, path, response.text)
        assert response.json() == {"detail": detail}
        assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_revoked_key_is_refused_at_once(service: Any) -> None:
    assert (await service.alice.get("/available_gpus")).status_code == 200
    prefix = service.tenants["alice"].token[:12]
    await revoke_key(service.db, prefix)
    response = await service.alice.get("/available_gpus")
    assert response.status_code == 401 and response.json() == {"detail": "API key has been revoked"}


async def test_health_needs_no_key(service: Any) -> None:
    assert (await service.anonymous.get("/healthz")).status_code == 200
    assert (await service.anonymous.get("/readyz")).status_code == 200
    assert (await service.anonymous.get("/openapi.json")).status_code == 200
