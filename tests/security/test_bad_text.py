"""NUL, lone surrogates and over-long integers, in every field that takes them, on both databases:
a 422 naming the field (never a 500, never stored). docs/security.md describes the rule."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gpusupply.core.inputs import (
    MAX_INT_DIGITS,
    TOO_LARGE,
    bounded_int,
    find_bad_text,
    loads_json,
    text_refusal,
)
from tests.conftest import BACKENDS, SSH_KEY
from tests.security.test_bad_input import snapshot
from tests.web.helpers import ORIGIN, console_client, field_error, hidden, sign_in

YAML = {"Content-Type": "application/yaml"}
JSON = {"Content-Type": "application/json"}
SOME_ID = "7b0c4a43-8f0e-4c3b-9d51-0a4f1f6f4c11"
NUL, SURROGATE = "a\x00b", "a\ud800b"
HUGE = "9" * 4301  # one digit past what Python's int() parses


def huge(template: str) -> str:
    return template.replace("<HUGE>", HUGE)


def as_json(body: Any) -> tuple[bytes, dict[str, str]]:
    """JSON as a client may send it: a lone surrogate travels as the escape "\\ud800"."""
    return json.dumps(body, ensure_ascii=True).encode(), JSON


def procure(**fields: Any) -> dict[str, Any]:
    return {"offer_id": "{offer}", "ssh_public_key": SSH_KEY, **fields}


def spec(**document: Any) -> dict[str, Any]:
    return {"spec": {"compute": {"gpu_type": "RTX4090"}, **document}, "ssh_public_key": SSH_KEY}


# (field as the 422 names it, method, path, body (JSON-able, or (text, headers)), loc)
TEXT_FIELDS: list[tuple[str, str, str, Any, list[Any]]] = [
    ("ssh_public_key", "POST", "/procure_offer", lambda bad: procure(ssh_public_key=SSH_KEY + bad), ["body", "ssh_public_key"]),
    ("cloud_init", "POST", "/procure_offer", lambda bad: procure(cloud_init="#!/bin/sh\necho " + bad), ["body", "cloud_init"]),
    ("resource_name", "POST", "/procure_offer", lambda bad: procure(resource_name=bad), ["body", "resource_name"]),
    ("cluster_name", "POST", "/procure_offer", lambda bad: procure(cluster_name=bad), ["body", "cluster_name"]),
    ("spec gpu_type", "POST", "/procure_offer", lambda bad: {**spec(), "spec": {"compute": {"gpu_type": bad}}},
     ["body", "spec", "compute", "gpu_type"]),
    ("spec region", "POST", "/procure_offer", lambda bad: spec(region=bad), ["body", "spec", "region"]),
    ("spec network value", "POST", "/procure_offer", lambda bad: spec(network={"vpc": bad}), ["body", "spec", "network"]),
    ("spec network key", "POST", "/procure_offer", lambda bad: spec(network={bad: 1}), ["body", "spec", "network"]),
    ("get_offers JSON gpu_type", "POST", "/get_offers", lambda bad: {"compute": {"gpu_type": bad}}, ["body", "compute", "gpu_type"]),
    ("get_offers JSON region", "POST", "/get_offers", lambda bad: {"compute": {"gpu_type": "H100"}, "region": bad},
     ["body", "region"]),
    ("get_offers YAML gpu_type", "POST", "/get_offers", lambda bad: (f'compute:\n  gpu_type: "{yaml_escape(bad)}"\n', YAML),
     ["body", "compute", "gpu_type"]),
    ("get_offers YAML network", "POST", "/get_offers",
     lambda bad: (f'compute: {{gpu_type: H100}}\nnetwork: {{vpc: "{yaml_escape(bad)}"}}\n', YAML), ["body", "network"]),
    ("webhook url", "POST", "/webhooks", lambda bad: {"url": "https://example.com/" + bad}, ["body", "url"]),
    ("webhook events", "POST", "/webhooks", lambda bad: {"url": "https://example.com/", "events": [bad]}, ["body", "events"]),
    ("webhook description", "POST", "/webhooks", lambda bad: {"url": "https://example.com/", "description": bad},
     ["body", "description"]),
    ("budget tenant", "GET", "/budget?tenant={bad}", None, ["query", "tenant"]),
    ("put budget tenant", "PUT", "/budget?tenant={bad}", lambda bad: {"monthly_budget": 10}, ["query", "tenant"]),
    ("usage tenant", "GET", "/usage?tenant={bad}", None, ["query", "tenant"]),
    ("usage from", "GET", "/usage?from={bad}", None, ["query", "from"]),
    ("usage group_by", "GET", "/usage?group_by={bad}", None, ["query", "group_by"]),
    ("resources vendor", "GET", "/resources?vendor={bad}", None, ["query", "vendor"]),
    ("resources status", "GET", "/resources?status={bad}", None, ["query", "status"]),
    ("deliveries status", "GET", f"/webhooks/{SOME_ID}/deliveries?status={{bad}}", None, ["query", "status"]),
    ("price alert name", "POST", "/price_alerts", lambda bad: {"spec": {"compute": {"gpu_type": "H100"}}, "threshold": 2, "name": bad},
     ["body", "name"]),
    ("price alert spec gpu_type", "POST", "/price_alerts", lambda bad: {"spec": {"compute": {"gpu_type": bad}}, "threshold": 2},
     ["body", "spec", "compute", "gpu_type"]),
    ("price alert ssh key", "POST", "/price_alerts", lambda bad: {"spec": {"compute": {"gpu_type": "H100"}}, "threshold": 2,
     "then": "procure", "procure": {"ssh_public_key": SSH_KEY + bad}}, ["body", "procure", "ssh_public_key"]),
    ("price history gpu_type", "GET", "/prices/history?gpu_type={bad}", None, ["query", "gpu_type"]),
    ("price history since", "GET", "/prices/history?gpu_type=H100&since={bad}", None, ["query", "since"]),
    ("prices now region", "GET", "/prices/now?gpu_type=H100&region={bad}", None, ["query", "region"]),
]


def yaml_escape(text: str) -> str:
    """A YAML double-quoted scalar's escapes for NUL and surrogates (YAML bodies can carry both)."""
    return "".join(f"\\u{ord(c):04x}" if c == "\x00" or "\ud800" <= c <= "\udfff" else c for c in text)


def query_escape(text: str) -> str | None:
    """A query string can carry NUL (%00) but no lone surrogate (it is percent-encoded UTF-8)."""
    return text.replace("\x00", "%00") if "\x00" in text else None


def test_text_refusal_is_pure_and_names_the_character() -> None:
    assert text_refusal("ssh-ed25519 AAAA me@host 训练-🚀") is None
    assert "NUL" in (text_refusal("a\x00") or "")
    assert "\\ud800" in (text_refusal("\ud800") or "") and "\\udfff" in (text_refusal("x\udfff") or "")
    assert list(find_bad_text({"a": ["ok", {"b": "x\x00"}], "\ud801": 1}, "net")) == [
        ("net.a[1].b", "contains a NUL character (\\x00), which is not accepted"),
        ("a key of net", "contains a lone surrogate (\\ud801), which is not valid Unicode; send UTF-8 text"),
    ]


def test_long_integer_literals_read_as_too_large() -> None:
    assert bounded_int("1024") == 1024 and bounded_int("-5") == -5 and bounded_int("0" * 100 + "7") == 7
    assert bounded_int("9" * (MAX_INT_DIGITS + 1)) == TOO_LARGE and bounded_int("-" + HUGE) == -TOO_LARGE
    assert loads_json(huge('{"n": <HUGE>, "m": [-<HUGE>, 3]}')) == {"n": TOO_LARGE, "m": [-TOO_LARGE, 3]}


@pytest.fixture
async def offer(service: Any) -> str:
    found = await service.alice.post("/get_offers", json={"compute": {"gpu_type": "RTX4090"}, "vendor": "nebula"})
    return found.json()["offers"][0]["offer_id"]


async def send(service: Any, method: str, path: str, build: Any, bad: str, offer: str) -> Any:
    query_bad = query_escape(bad)
    if "{bad}" in path:
        if query_bad is None:
            return None  # no lone surrogate in a query string
        path = path.replace("{bad}", query_bad)
    if build is None:
        return await service.alice.request(method, path)
    built = build(bad)
    if isinstance(built, tuple):
        content, headers = built[0].encode(), built[1]
    else:
        content, headers = as_json(built)
        content = content.replace(b"{offer}", offer.encode())
    return await service.alice.request(method, path, content=content, headers=headers)


@pytest.mark.parametrize("service_backend", BACKENDS)
async def test_nul_and_lone_surrogates_are_a_422_naming_the_field(service: Any, offer: str) -> None:
    before = await snapshot(service)
    wrong = []
    for name, method, path, build, loc in TEXT_FIELDS:
        for bad in (NUL, SURROGATE):
            response = await send(service, method, path, build, bad, offer)
            if response is None:
                continue
            detail = response.json().get("detail") if response.status_code == 422 else None
            errors = detail if isinstance(detail, list) else []
            named = [e for e in errors if e["loc"][: len(loc)] == loc]
            why = "NUL" if bad == NUL else "lone surrogate"
            if response.status_code != 422 or not named or why not in named[0]["msg"]:
                wrong.append((name, repr(bad), response.status_code, response.text[:300]))
    assert not wrong, wrong
    assert await snapshot(service) == before
    # The offer was not taken by any of the refused procurements.
    assert (await service.alice.get(f"/offers/{offer}")).json()["status"] == "available"


# (name, method, path, body, loc, words): integer literals longer than int() parses.
HUGE_INTEGERS: list[tuple[str, str, str, Any, list[Any], str]] = [
    ("get_offers JSON gpu_count", "POST", "/get_offers", (huge('{"compute": {"gpu_type": "H100", "gpu_count": <HUGE>}}'), JSON),
     ["body", "compute", "gpu_count"], "less than or equal to 1024"),
    ("get_offers JSON negative gpu_count", "POST", "/get_offers",
     (huge('{"compute": {"gpu_type": "H100", "gpu_count": -<HUGE>}}'), JSON), ["body", "compute", "gpu_count"],
     "greater than or equal to 1"),
    ("get_offers YAML gpu_count", "POST", "/get_offers", (f"compute:\n  gpu_type: H100\n  gpu_count: {HUGE}\n", YAML),
     ["body", "compute", "gpu_count"], "less than or equal to 1024"),
    ("get_offers YAML base-60 gpu_count", "POST", "/get_offers",
     ("compute:\n  gpu_type: H100\n  gpu_count: 1" + ":59" * 2000 + "\n", YAML), ["body", "compute", "gpu_count"],
     "less than or equal to 1024"),
    ("get_offers YAML hex gpu_count", "POST", "/get_offers", ("compute:\n  gpu_type: H100\n  gpu_count: 0x" + "f" * 5000 + "\n", YAML),
     ["body", "compute", "gpu_count"], "less than or equal to 1024"),
    ("get_offers YAML network number", "POST", "/get_offers", (f"compute: {{gpu_type: H100, gpu_count: 0}}\nnetwork: {{mtu: {HUGE}}}\n", YAML),
     ["body", "compute", "gpu_count"], "greater than or equal to 1"),
    ("procure spec gpu_count", "POST", "/procure_offer",
     (huge('{"spec": {"compute": {"gpu_type": "H100", "gpu_count": <HUGE>}}, "ssh_public_key": "%s"}').replace("%s", SSH_KEY), JSON),
     ["body", "spec", "compute", "gpu_count"], "less than or equal to 1024"),
    ("budget", "PUT", "/budget", (huge('{"monthly_budget": <HUGE>}'), JSON), ["body", "monthly_budget"], "at most 10,000,000"),
    ("get_offers limit", "POST", f"/get_offers?limit={HUGE}", ('{"compute": {"gpu_type": "H100"}}', JSON), ["query", "limit"],
     "less than or equal to 1000"),
    ("get_offers offset", "POST", f"/get_offers?offset=-{HUGE}", ('{"compute": {"gpu_type": "H100"}}', JSON), ["query", "offset"],
     "greater than or equal to 0"),
    ("resources limit", "GET", f"/resources?limit={HUGE}", None, ["query", "limit"], "less than or equal to 1000"),
    ("events offset", "GET", f"/resources/{SOME_ID}/events?offset={HUGE}", None, ["query", "offset"], "less than or equal to 1000000"),
    ("deliveries limit", "GET", f"/webhooks/{SOME_ID}/deliveries?limit={HUGE}", None, ["query", "limit"], "less than or equal to 1000"),
]


@pytest.mark.parametrize(("name", "method", "path", "body", "loc", "words"), HUGE_INTEGERS, ids=[c[0] for c in HUGE_INTEGERS])
async def test_over_long_integers_are_out_of_range(
    service: Any, name: str, method: str, path: str, body: Any, loc: list[Any], words: str
) -> None:
    kwargs = {} if body is None else {"content": body[0].encode(), "headers": body[1]}
    response = await service.alice.request(method, path, **kwargs)
    assert response.status_code == 422, (name, response.status_code, response.text[:300])
    named = [e for e in response.json()["detail"] if e["loc"] == loc]
    assert named and words in named[0]["msg"], (name, response.text[:300])


async def test_auto_delete_ttl_over_long_is_out_of_range(service: Any, offer: str) -> None:
    created = await service.alice.post("/procure_offer", json={"offer_id": offer, "ssh_public_key": SSH_KEY})
    rid = created.json()["resource_ids"][0]
    response = await service.alice.patch(
        f"/resources/{rid}", content=b'{"auto_delete": {"ttl_seconds": %s}}' % HUGE.encode(), headers=JSON
    )
    assert response.status_code == 422 and "ttl_seconds must be 1-" in response.text, response.text[:300]


@pytest.mark.parametrize("service_backend", BACKENDS)
async def test_the_console_procure_form_refuses_nul_at_its_field(service: Any, offer: str) -> None:
    before = await snapshot(service)
    async with console_client(service) as client:
        await sign_in(client, service.tenants["alice"].token)
        form = await client.get(f"/console/offers/{offer}")
        fields = {"csrf_token": hidden(form.text, "csrf_token"), "form_id": hidden(form.text, "form_id")}
        for name, value in (("ssh_public_key", SSH_KEY + "\x00"), ("resource_name", "a\x00b")):
            page = await client.post(
                f"/console/offers/{offer}/procure",
                data={**fields, "ssh_public_key": SSH_KEY, "resource_name": "ok", name: value},
                headers={"Origin": ORIGIN},
            )
            assert page.status_code == 422, (name, page.status_code, page.text[:300])
            assert "NUL character" in (field_error(page.text, name) or ""), (name, page.text[:2000])
    assert await snapshot(service) == before


def test_every_api_route_reads_bodies_and_queries_with_the_checks() -> None:
    """A route added later gets the same rules: its class reads JSON with bounded integers, its
    body model is a CheckedModel, its string and integer query parameters are Text / BoundedInt."""
    from fastapi.routing import APIRoute

    from gpusupply.api.deps import ApiRoute
    from gpusupply.app import create_app
    from gpusupply.core.inputs import CheckedModel

    unchecked = []
    routes = list(_all_routes(create_app().routes))
    assert len(routes) > 30
    for route in routes:
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        if not isinstance(route, ApiRoute):
            unchecked.append((route.path, "route class"))
        if route.body_field is not None and not issubclass(route.body_field.field_info.annotation, CheckedModel):
            unchecked.append((route.path, "body model"))
        for param in route.dependant.query_params:
            annotation = repr(param.field_info.annotation)
            if ("str" in annotation or "int" in annotation) and not any(
                "_checked_text" in repr(m) or "_bounded_int_text" in repr(m) for m in _metadata(param)
            ):
                unchecked.append((route.path, param.name))
    assert not unchecked, unchecked


def _all_routes(routes: list[Any]) -> Any:
    """Every route, inside included routers too (FastAPI keeps them nested)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _all_routes(inner.routes)
        else:
            yield route


def _metadata(param: Any) -> list[Any]:
    import typing

    found = list(param.field_info.metadata)
    for arg in typing.get_args(param.field_info.annotation):
        found += list(getattr(arg, "__metadata__", ()))
    return found
