"""Tenant isolation, route by route. The routes come from our own OpenAPI document, so a new route
cannot be forgotten: each must be listed below with what another tenant gets. Every route, called
with no key, a malformed key, a revoked key, or (for routes that take a tenant's object) another
tenant's key, answers exactly the documented 401 or 404, and no answer carries the other tenant's
ids, names or secrets. The console (cookie sessions) is checked the same way."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gpusupply.services.keys import create_key, revoke_key
from tests.conftest import SSH_KEY

# What bob (another tenant) gets for alice's objects, per route. "own" means the route answers
# about the caller's own data (lists, reports, catalog), never alice's: it must succeed for bob and
# carry none of alice's data. Anything else is the status he must get.
OTHER_TENANT: dict[tuple[str, str], int | str] = {
    ("GET", "/available_gpus"): "own",
    ("GET", "/available_vendors"): "own",
    ("GET", "/available_regions"): "own",
    ("GET", "/available_contracts"): "own",
    ("POST", "/get_offers"): "own",
    ("GET", "/offers/{offer_id}"): "own",  # offers are the shared catalog; who procured one is not shown
    ("POST", "/procure_offer"): 409,  # alice's offer is taken; bob learns nothing else about it
    ("GET", "/offers/{offer_id}/status"): 404,
    ("GET", "/resources"): "own",
    ("GET", "/resources/{resource_id}"): 404,
    ("PATCH", "/resources/{resource_id}"): 404,
    ("DELETE", "/resources/{resource_id}"): 404,
    ("POST", "/resources/{resource_id}/stop"): 404,
    ("POST", "/resources/{resource_id}/start"): 404,
    ("POST", "/resources/{resource_id}/reboot"): 404,
    ("GET", "/resources/{resource_id}/events"): 404,
    ("GET", "/usage"): "own",
    ("GET", "/budget"): "own",
    ("PUT", "/budget"): "own",
    ("GET", "/webhooks"): "own",
    ("POST", "/webhooks"): "own",
    ("GET", "/webhooks/{webhook_id}"): 404,
    ("DELETE", "/webhooks/{webhook_id}"): 404,
    ("GET", "/webhooks/{webhook_id}/deliveries"): 404,
}
PUBLIC = {("GET", "/healthz"), ("GET", "/readyz")}
# Admin-only parameters: a tenant key naming another tenant gets 404 (the tenant is not revealed).
ADMIN_ONLY = [("GET", "/usage?tenant=alice"), ("GET", "/budget?tenant=alice"), ("PUT", "/budget?tenant=alice")]
BAD_KEYS = {
    "no key": None,
    "malformed key": "Bearer not-a-key",
    "unknown key": "Bearer gsk_" + "x" * 43,
}


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"allow_private_webhook_urls": True}


def body_for(method: str, path: str, offer_id: str) -> dict[str, Any] | None:
    """A valid body, so that what is refused is the caller, never the input."""
    if path == "/procure_offer":
        return {"offer_id": offer_id, "ssh_public_key": SSH_KEY}
    if path == "/get_offers":
        return {"compute": {"gpu_type": "RTX4090"}}
    if method == "PATCH":
        return {"auto_delete": {"ttl_seconds": 3600}}
    if path == "/budget" and method == "PUT":
        return {"monthly_budget": 100}
    if path == "/webhooks" and method == "POST":
        return {"url": "http://127.0.0.1:9/bob"}
    return None


def concrete(path: str, ids: dict[str, str]) -> str:
    for name, value in ids.items():
        path = path.replace("{" + name + "}", value)
    assert "{" not in path, f"no test value for a parameter of {path}: add it to the isolation test"
    return path


@pytest.fixture
async def alice_world(service: Any) -> dict[str, str]:
    """Alice's objects: a procured offer and its resource, a webhook, a budget."""
    found = await service.alice.post("/get_offers", json={"compute": {"gpu_type": "RTX4090"}, "vendor": "nebula"})
    offer_id = found.json()["offers"][0]["offer_id"]
    procured = await service.alice.post(
        "/procure_offer", json={"offer_id": offer_id, "ssh_public_key": SSH_KEY, "resource_name": "alice-secret-name"}
    )
    assert procured.status_code == 200, procured.text
    hook = await service.alice.post("/webhooks", json={"url": "http://127.0.0.1:9/alice-hook", "description": "alice-hook"})
    assert hook.status_code == 201, hook.text
    assert (await service.alice.put("/budget", json={"monthly_budget": 31337.77})).status_code == 200
    return {
        "offer_id": offer_id,
        "resource_id": procured.json()["resource_ids"][0],
        "webhook_id": hook.json()["webhook_id"],
        "webhook_secret": hook.json()["secret"],
        "procurement_id": str(procured.json().get("procurement_id", "")),
    }


def alice_markers(world: dict[str, str]) -> list[str]:
    return [world["resource_id"], world["webhook_id"], world["webhook_secret"], "alice-secret-name", "alice-hook", "31337.77"]


def routes(service: Any) -> list[tuple[str, str]]:
    spec = service.app.openapi()
    return [(method.upper(), path) for path, operations in spec["paths"].items() for method in operations]


async def test_every_route_is_in_the_matrix(service: Any) -> None:
    listed = set(OTHER_TENANT) | PUBLIC
    assert set(routes(service)) == listed, "a route was added or removed: update OTHER_TENANT"


async def test_bad_keys_get_401_everywhere(service: Any, alice_world: dict[str, str]) -> None:
    for label, authorization in BAD_KEYS.items():
        headers = {"Authorization": authorization} if authorization else {}
        for method, template in routes(service):
            if (method, template) in PUBLIC:
                continue
            path = concrete(template, alice_world)
            response = await service.anonymous.request(
                method, path, headers=headers, json=body_for(method, template, alice_world["offer_id"])
            )
            assert response.status_code == 401, (label, method, path, response.text)
            assert response.headers["WWW-Authenticate"] == "Bearer"
            assert not any(marker in response.text for marker in alice_markers(alice_world))


async def test_a_revoked_key_gets_401_everywhere(service: Any, alice_world: dict[str, str]) -> None:
    record, token = await create_key(service.db, "short-lived", tenant="alice")
    await revoke_key(service.db, token[:12])
    async with service.client(token) as revoked:
        for method, template in routes(service):
            if (method, template) in PUBLIC:
                continue
            response = await revoked.request(
                method, concrete(template, alice_world), json=body_for(method, template, alice_world["offer_id"])
            )
            assert response.status_code == 401 and response.json() == {"detail": "API key has been revoked"}, (method, template)


async def test_another_tenant_gets_404_or_only_its_own_data(service: Any, alice_world: dict[str, str]) -> None:
    for method, template in routes(service):
        if (method, template) in PUBLIC:
            continue
        expected = OTHER_TENANT[(method, template)]
        path = concrete(template, alice_world)
        response = await service.bob.request(method, path, json=body_for(method, template, alice_world["offer_id"]))
        where = (method, path, response.status_code, response.text[:300])
        if expected == "own":
            assert response.status_code in (200, 201), where
        else:
            assert response.status_code == expected, where
        # (a 404 may repeat the id the caller sent: that is not alice's data)
        leaked = [marker for marker in alice_markers(alice_world) if marker in response.text and marker not in path]
        assert not leaked, (where, leaked)
    # And alice's objects are untouched by bob's attempts.
    resource = await service.alice.get(f"/resources/{alice_world['resource_id']}")
    assert resource.status_code == 200 and resource.json()["status"] not in ("deleting", "deleted")
    assert resource.json()["auto_delete"] is None or resource.json()["auto_delete"].get("delete_at") is None
    assert (await service.alice.get(f"/webhooks/{alice_world['webhook_id']}")).status_code == 200
    assert (await service.alice.get("/budget")).json()["monthly_budget"] == 31337.77


async def test_tenant_keys_cannot_name_another_tenant(service: Any, alice_world: dict[str, str]) -> None:
    for method, path in ADMIN_ONLY:
        body = {"monthly_budget": 1} if method == "PUT" else None
        response = await service.bob.request(method, path, json=body)
        assert response.status_code == 404, (method, path, response.text)
        assert "31337.77" not in response.text
    assert (await service.alice.get("/budget")).json()["monthly_budget"] == 31337.77
    _, admin = await create_key(service.db, "ops", tenant="ops", admin=True)
    async with service.client(admin) as ops:
        assert (await ops.get("/budget?tenant=alice")).json()["monthly_budget"] == 31337.77


async def test_the_console_is_isolated_too(service: Any, alice_world: dict[str, str]) -> None:
    pages = ["/console/offers", "/console/resources", f"/console/resources/{alice_world['resource_id']}"]
    for page in pages:  # signed out: to the sign-in page, nothing else
        response = await service.anonymous.get(page, follow_redirects=False)
        assert response.status_code == 303 and "/console/sign-in" in response.headers["location"], (page, response.status_code)
    signed_in = await service.anonymous.post(
        "/console/sign-in", data={"api_key": service.tenants["bob"].token}, headers={"Origin": "http://service"},
        follow_redirects=False,
    )
    assert signed_in.status_code == 303, signed_in.text
    cookies = signed_in.cookies
    mine = await service.anonymous.get("/console/resources", cookies=cookies)
    assert mine.status_code == 200 and not any(marker in mine.text for marker in alice_markers(alice_world))
    theirs = await service.anonymous.get(f"/console/resources/{alice_world['resource_id']}", cookies=cookies)
    assert theirs.status_code == 404 and "alice-secret-name" not in theirs.text


def test_matrix_is_json_serializable() -> None:
    # The matrix is documented in docs/security.md from this table.
    assert json.dumps({f"{m} {p}": v for (m, p), v in OTHER_TENANT.items()})
