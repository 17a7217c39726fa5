"""Tenant isolation, route by route. The routes come from our own OpenAPI document, so a new route
cannot be forgotten: each must be listed below with what another tenant gets. Every route, called
with no key, a malformed key, a revoked key, or (for routes that take a tenant's object) another
tenant's key, answers exactly the documented 401 or 404, and no answer carries the other tenant's
ids, names or secrets. The console (cookie sessions) is checked the same way."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote

import pytest
from fastapi.routing import _IncludedRouter  # how FastAPI 0.16x keeps an included router
from starlette.routing import Mount

from gpusupply.services.keys import create_key, revoke_key
from gpusupply.web.session import FLASH_COOKIE, SESSION_COOKIE, decode_session
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
    ("GET", "/prices/history"): "own",  # market data, like the catalog
    ("GET", "/prices/now"): "own",
    ("GET", "/price_alerts"): "own",
    ("POST", "/price_alerts"): "own",
    ("GET", "/price_alerts/{alert_id}"): 404,
    ("DELETE", "/price_alerts/{alert_id}"): 404,
    ("GET", "/price_alerts/{alert_id}/firings"): 404,
    ("POST", "/fleets"): "own",
    ("GET", "/fleets"): "own",
    ("GET", "/fleets/{fleet_id}"): 404,
    ("PATCH", "/fleets/{fleet_id}"): 404,
    ("DELETE", "/fleets/{fleet_id}"): 404,
    ("GET", "/fleets/{fleet_id}/events"): 404,
}
PUBLIC = {("GET", "/healthz"), ("GET", "/readyz")}
# Routes outside the OpenAPI document that need no key: the probes' neighbours, the documentation,
# the console's entry, sign-in and static files. Anything else outside the document is a console page.
PUBLIC_UNDOCUMENTED = {
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("MOUNT", "/docs/assets"),  # Swagger UI's files, served from the package
    ("GET", "/"),  # a redirect to the console
    ("MOUNT", "/console/static"),
    ("GET", "/console/sign-in"),
    ("POST", "/console/sign-in"),
}
# What bob, signed in to the console, gets for alice's objects, per console route: a status, "own"
# (his own data only), or "refused" (a redirect whose flash says the resource was not found).
CONSOLE: dict[tuple[str, str], int | str] = {
    ("GET", "/console"): "own",
    ("GET", "/console/"): "own",
    ("POST", "/console/sign-out"): "own",
    ("GET", "/console/offers"): "own",
    # (before the refused post below, whose flash repeats the id bob sent on the next page)
    ("GET", "/console/prices"): "own",
    ("GET", "/console/usage"): "own",
    ("GET", "/console/fleets"): "own",
    ("GET", "/console/fleets/{fleet_id}"): 404,
    ("GET", "/console/fleets/{fleet_id}/live"): 404,
    ("GET", "/console/offers/{offer_id}"): "own",  # the shared catalog (alice's offer shows as taken)
    ("POST", "/console/offers/{offer_id}/procure"): 409,
    ("GET", "/console/resources"): "own",
    ("GET", "/console/resources/rows"): "own",
    ("GET", "/console/resources/{resource_id}"): 404,
    ("GET", "/console/resources/{resource_id}/live"): 404,
    ("GET", "/console/resources/{resource_id}/confirm/{action}"): 404,
    ("POST", "/console/resources/{resource_id}/{action}"): "refused",
}
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
    if path == "/fleets" and method == "POST":
        return {"name": "bob-fleet", "size": 0, "ssh_public_key": SSH_KEY, "spec": {"compute": {"gpu_type": "H100"}}}
    if method == "PATCH" and path.startswith("/fleets/"):
        return {"size": 0}
    if method == "PATCH":
        return {"auto_delete": {"ttl_seconds": 3600}}
    if path == "/budget" and method == "PUT":
        return {"monthly_budget": 100}
    if path == "/webhooks" and method == "POST":
        return {"url": "http://127.0.0.1:9/bob"}
    if path == "/price_alerts" and method == "POST":
        return {"spec": {"compute": {"gpu_type": "H100"}}, "threshold": 1.0, "name": "bob-alert"}
    return None


def concrete(path: str, ids: dict[str, str]) -> str:
    for name, value in ids.items():
        path = path.replace("{" + name + "}", value)
    assert "{" not in path, f"no test value for a parameter of {path}: add it to the isolation test"
    if path.startswith("/prices/"):
        path += "?gpu_type=H100"  # a required query parameter: what is refused is the caller, never the input
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
    alert = await service.alice.post(
        "/price_alerts", json={"spec": {"compute": {"gpu_type": "H100"}}, "threshold": 3133.77, "name": "alice-secret-alert"}
    )
    assert alert.status_code == 201, alert.text
    fleet = await service.alice.post("/fleets", json={
        "name": "alice-secret-fleet", "size": 0, "ssh_public_key": SSH_KEY, "spec": {"compute": {"gpu_type": "H100"}}})
    assert fleet.status_code == 201, fleet.text
    return {
        "fleet_id": fleet.json()["fleet_id"],
        "alert_id": alert.json()["alert_id"],
        "offer_id": offer_id,
        "resource_id": procured.json()["resource_ids"][0],
        "webhook_id": hook.json()["webhook_id"],
        "webhook_secret": hook.json()["secret"],
        "procurement_id": str(procured.json().get("procurement_id", "")),
    }


def alice_markers(world: dict[str, str]) -> list[str]:
    return [world["resource_id"], world["webhook_id"], world["webhook_secret"], "alice-secret-name", "alice-hook", "31337.77",
            world["alert_id"], "alice-secret-alert", world["fleet_id"], "alice-secret-fleet"]


def app_routes(routes: Iterable[Any]) -> set[tuple[str, str]]:
    """Every (method, path) the app serves, included routers flattened; mounts as ("MOUNT", path)."""
    found: set[tuple[str, str]] = set()
    for route in routes:
        if isinstance(route, _IncludedRouter):
            found |= app_routes(route.effective_candidates())
        elif isinstance(route, Mount):
            found.add(("MOUNT", route.path))
        else:
            found |= {(method, route.path) for method in route.methods or () if method != "HEAD"}
    return found


def routes(service: Any) -> list[tuple[str, str]]:
    spec = service.app.openapi()
    return [(method.upper(), path) for path, operations in spec["paths"].items() for method in operations]


async def test_every_route_is_in_the_matrix(service: Any) -> None:
    listed = set(OTHER_TENANT) | PUBLIC
    assert set(routes(service)) == listed, "a route was added or removed: update OTHER_TENANT"


async def test_every_route_outside_the_api_document_is_classified(service: Any) -> None:
    served = app_routes(service.app.routes)
    assert len(served) > len(OTHER_TENANT) + len(CONSOLE), "the route walk found too little"
    unlisted = served - set(OTHER_TENANT) - PUBLIC - PUBLIC_UNDOCUMENTED - set(CONSOLE)
    assert not unlisted, f"routes nobody said who may call: {sorted(unlisted)}; add them to CONSOLE or PUBLIC_UNDOCUMENTED"
    gone = (set(CONSOLE) | PUBLIC_UNDOCUMENTED) - served
    assert not gone, f"listed routes the app no longer serves: {sorted(gone)}"


async def test_public_routes_carry_no_tenant_data(service: Any, alice_world: dict[str, str]) -> None:
    for method, path in sorted(PUBLIC | PUBLIC_UNDOCUMENTED):
        if method != "GET":
            continue
        response = await service.anonymous.get(path, follow_redirects=False)
        assert response.status_code in (200, 303, 307), (path, response.status_code)
        leaked = [marker for marker in alice_markers(alice_world) if marker in response.text]
        assert not leaked, (path, leaked)


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
    assert (await service.alice.get(f"/price_alerts/{alice_world['alert_id']}")).status_code == 200


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


def console_form(method: str, template: str, csrf_token: str) -> dict[str, str] | None:
    """A valid form for a console post, so that what is refused is the visitor, never the input."""
    if method != "POST":
        return None
    form = {"csrf_token": csrf_token}
    if template.endswith("/procure"):
        form |= {"ssh_public_key": SSH_KEY, "resource_name": "bob-try", "form_id": "bob-form-1"}
    return form


async def test_signed_out_console_routes_redirect_to_sign_in(service: Any, alice_world: dict[str, str]) -> None:
    ids = {**alice_world, "action": "delete"}
    for method, template in CONSOLE:
        path = concrete(template, ids)
        response = await service.anonymous.request(
            method, path, data=console_form(method, template, "x"), headers={"Origin": "http://service"},
            follow_redirects=False,
        )
        where = (method, path, response.status_code)
        assert response.status_code == 303, where
        assert response.headers["location"].startswith("/console/sign-in"), where
        assert not any(marker in response.text for marker in alice_markers(alice_world)), where


async def test_another_tenants_console_gets_404_or_only_its_own_data(service: Any, alice_world: dict[str, str]) -> None:
    signed_in = await service.anonymous.post(
        "/console/sign-in", data={"api_key": service.tenants["bob"].token}, headers={"Origin": "http://service"},
        follow_redirects=False,
    )
    assert signed_in.status_code == 303, signed_in.text
    cookies = signed_in.cookies
    session = decode_session(cookies[SESSION_COOKIE])
    assert session is not None
    ids = {**alice_world, "action": "delete"}
    for (method, template), expected in sorted(CONSOLE.items(), key=lambda item: item[0][1] == "/console/sign-out"):
        path = concrete(template, ids)
        response = await service.anonymous.request(
            method, path, cookies=cookies, data=console_form(method, template, session.csrf_token),
            headers={"Origin": "http://service"}, follow_redirects=False,
        )
        where = (method, path, response.status_code, response.text[:300])
        if expected == "own":
            assert response.status_code in (200, 303), where
        elif expected == "refused":  # back where it came from, saying the resource was not found
            assert response.status_code == 303 and not response.headers["location"].startswith("/console/sign-in"), where
            assert "not found" in unquote(response.cookies.get(FLASH_COOKIE, "")), where
        else:
            assert response.status_code == expected, where
        leaked = [marker for marker in alice_markers(alice_world) if marker in response.text and marker not in path]
        assert not leaked, (where, leaked)
    # Alice's resource is untouched by bob's attempts (the console's delete included).
    resource = await service.alice.get(f"/resources/{alice_world['resource_id']}")
    assert resource.status_code == 200 and resource.json()["status"] not in ("deleting", "deleted")


def test_matrix_is_json_serializable() -> None:
    # The matrix is documented in docs/security.md from this table.
    assert json.dumps({f"{m} {p}": v for (m, p), v in OTHER_TENANT.items()})
