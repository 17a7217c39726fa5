"""Bad input, table-driven: every case gets a clear 4xx naming the problem, never a 500, and
nothing stored changes (every table, row by row, before and after). docs/security.md lists them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from gpusupply.db.models import Base
from tests.conftest import SSH_KEY

YAML = {"Content-Type": "application/yaml"}
JSON = {"Content-Type": "application/json"}
SOME_ID = "7b0c4a43-8f0e-4c3b-9d51-0a4f1f6f4c11"

BILLION_LAUGHS = "\n".join(
    ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    + [f"{chr(98 + i)}: &{chr(98 + i)} [" + ",".join([f"*{chr(97 + i)}"] * 9) + "]" for i in range(8)]
    + ["compute: {gpu_type: H100}"]
)
ALIASES = "x: &x {gpu_type: H100}\ncompute: *x\n"


def procure(offer_id: str, **overrides: Any) -> dict[str, Any]:
    return {"offer_id": offer_id, "ssh_public_key": SSH_KEY, **overrides}


# (name, method, path, body builder(offer_id) -> (content or json, headers), status, words in the answer)
CASES: list[tuple[str, str, str, Any, int, str]] = [
    ("oversized body", "POST", "/get_offers", lambda o: ("compute: {gpu_type: H100}\n#" + "x" * 70_000, YAML), 413,
     "larger than 65536 bytes"),
    ("YAML bomb (billion laughs)", "POST", "/get_offers", lambda o: (BILLION_LAUGHS, YAML), 422, "alias"),
    ("YAML aliases", "POST", "/get_offers", lambda o: (ALIASES, YAML), 422, "alias"),
    ("malformed YAML", "POST", "/get_offers", lambda o: ("compute: {gpu_type: [H100", YAML), 422, "YAML"),
    ("malformed JSON", "POST", "/get_offers", lambda o: ('{"compute": {"gpu_type": "H100"', JSON), 422, "JSON"),
    ("YAML that is not a mapping", "POST", "/get_offers", lambda o: ("- H100\n- A100\n", YAML), 422, "mapping"),
    ("wrong content type", "POST", "/get_offers", lambda o: ("<html></html>", {"Content-Type": "text/html"}), 415, "unsupported content-type"),
    ("procure with a form body", "POST", "/procure_offer",
     lambda o: (f"offer_id={o}", {"Content-Type": "application/x-www-form-urlencoded"}), 415, "unsupported content-type"),
    ("invalid UUID in the path", "GET", "/resources/not-a-uuid", None, 422, "UUID"),
    ("invalid UUID for offer status", "GET", "/offers/12345/status", None, 422, "UUID"),
    ("invalid offer_id", "POST", "/procure_offer", lambda o: procure("nope"), 422, "offer_id"),
    ("negative gpu_count", "POST", "/get_offers", lambda o: {"compute": {"gpu_type": "H100", "gpu_count": -1}}, 422, "gpu_count"),
    ("huge gpu_count", "POST", "/get_offers", lambda o: {"compute": {"gpu_type": "H100", "gpu_count": 10**30}}, 422, "gpu_count"),
    ("negative price", "POST", "/get_offers",
     lambda o: {"compute": {"gpu_type": "H100", "max_price_per_gpu_hour": -2}}, 422, "max_price_per_gpu_hour"),
    ("infinite price", "POST", "/get_offers",
     lambda o: ('{"compute": {"gpu_type": "H100", "max_price_per_gpu_hour": 1e999}}', JSON), 422, "max_price_per_gpu_hour"),
    ("huge offset", "POST", "/get_offers?offset=99999999999999999999", lambda o: {"compute": {"gpu_type": "H100"}}, 422, "offset"),
    ("unknown GPU name", "POST", "/get_offers", lambda o: {"compute": {"gpu_type": "nvidia-quantum-9000"}}, 422, "gpu_type"),
    ("unknown region", "POST", "/get_offers", lambda o: {"compute": {"gpu_type": "H100"}, "region": "MARS"}, 422, "region"),
    ("unknown field", "POST", "/get_offers", lambda o: {"compute": {"gpu_type": "H100", "gpu_colour": "red"}}, 422, "gpu_colour"),
    ("control characters in a name", "POST", "/procure_offer", lambda o: procure(o, resource_name="bad\x00name\x1b[31m"), 422,
     "resource_name"),
    ("over-long name", "POST", "/procure_offer", lambda o: procure(o, resource_name="n" * 500), 422, "resource_name"),
    ("cloud_init over 64 KB", "POST", "/procure_offer",
     lambda o: procure(o, cloud_init="#!/bin/sh\n" + "echo x\n" * 10_000), 422, "64 KB"),
    ("cloud_init with a wrong first line", "POST", "/procure_offer", lambda o: procure(o, cloud_init="echo hi\n"), 422,
     "#cloud-config"),
    ("SSH key that does not parse", "POST", "/procure_offer",
     lambda o: procure(o, ssh_public_key="ssh-ed25519 AAAAnot-base64!!! me"), 422, "OpenSSH"),
    ("SSH private key", "POST", "/procure_offer",
     lambda o: procure(o, ssh_public_key="-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----"), 422,
     "ssh_public_key"),
    ("two SSH keys in one", "POST", "/procure_offer", lambda o: procure(o, ssh_public_key=SSH_KEY + "\n" + SSH_KEY), 422,
     "ssh_public_key"),
    ("spec and offer_id together", "POST", "/procure_offer",
     lambda o: procure(o, spec={"compute": {"gpu_type": "H100"}}), 422, "spec"),
    ("bad resource status filter", "GET", "/resources?status=sleeping", None, 422, "status"),
    ("bad auto_delete time", "PATCH", f"/resources/{SOME_ID}", lambda o: {"auto_delete": {"delete_at": "yesterday"}}, 422,
     "delete_at"),
    ("negative budget", "PUT", "/budget", lambda o: {"monthly_budget": -5}, 422, "monthly_budget"),
    ("webhook URL that is not http", "POST", "/webhooks", lambda o: {"url": "file:///etc/passwd"}, 422, "url"),
    ("webhook URL to a private address", "POST", "/webhooks", lambda o: {"url": "http://10.0.0.1/hook"}, 422, "private"),
    ("webhook URL to loopback through 6to4", "POST", "/webhooks", lambda o: {"url": "http://[2002:7f00:1::]/"}, 422,
     "embeds 127.0.0.1 (6to4)"),
    ("webhook URL to link-local through 6to4", "POST", "/webhooks", lambda o: {"url": "http://[2002:a9fe:a9fe::]/"}, 422,
     "embeds 169.254.169.254 (6to4)"),
    ("huge gpu_count in YAML", "POST", "/get_offers", lambda o: ("compute:\n  gpu_type: H100\n  gpu_count: " + "9" * 4301, YAML),
     422, "less than or equal to 1024"),
    ("NUL in cloud_init", "POST", "/procure_offer", lambda o: procure(o, cloud_init="#!/bin/sh\necho \x00"), 422,
     "cloud_init contains a NUL character"),
]


# The service's own bookkeeping, which background jobs (catalog refresh, leases) change at any time.
BACKGROUND_TABLES = {"catalog_snapshots", "offers", "job_leases", "vendor_states", "rate_buckets", "installation", "price_points"}


async def snapshot(service: Any) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table that holds users' data."""
    tables: dict[str, list[tuple[Any, ...]]] = {}
    async with service.db.session() as session:
        for table in Base.metadata.sorted_tables:
            if table.name in BACKGROUND_TABLES:
                continue
            rows = (await session.execute(select(table))).all()
            tables[table.name] = sorted(tuple(map(repr, row)) for row in rows)
    return tables


@pytest.fixture
async def offer_id(service: Any) -> str:
    found = await service.alice.post("/get_offers", json={"compute": {"gpu_type": "RTX4090"}, "vendor": "nebula"})
    return found.json()["offers"][0]["offer_id"]


async def send(service: Any, method: str, path: str, build: Any, offer_id: str) -> Any:
    if build is None:
        return await service.alice.request(method, path)
    built = build(offer_id)
    if isinstance(built, tuple):
        content, headers = built
        return await service.alice.request(method, path, content=content.encode(), headers=headers)
    return await service.alice.request(method, path, json=built)


@pytest.mark.parametrize(("name", "method", "path", "build", "status", "words"), CASES, ids=[case[0] for case in CASES])
async def test_bad_input_is_a_clear_4xx_and_changes_nothing(
    service: Any, offer_id: str, name: str, method: str, path: str, build: Any, status: int, words: str
) -> None:
    before = await snapshot(service)
    response = await send(service, method, path, build, offer_id)
    assert response.status_code == status, (name, response.status_code, response.text[:500])
    assert words.lower() in response.text.lower(), (name, response.text[:500])
    assert "Traceback" not in response.text
    after = await snapshot(service)
    assert after == before, (name, [t for t in before if before[t] != after[t]])


async def test_an_idempotency_key_reused_with_another_body_is_refused(service: Any, offer_id: str) -> None:
    headers = {"Idempotency-Key": "same-key-1"}
    first = await service.alice.post("/procure_offer", json=procure(offer_id, resource_name="first"), headers=headers)
    assert first.status_code == 200
    before = await snapshot(service)
    other = await service.alice.post("/procure_offer", json=procure(offer_id, resource_name="second"), headers=headers)
    assert other.status_code == 422 and "Idempotency-Key" in other.text, other.text
    assert await snapshot(service) == before
    again = await service.alice.post("/procure_offer", json=procure(offer_id, resource_name="first"), headers=headers)
    assert again.status_code == 200 and again.json() == first.json()


async def test_unicode_names_are_fine(service: Any, offer_id: str) -> None:
    answer = await service.alice.post("/procure_offer", json=procure(offer_id, resource_name="训练-ñandú-🚀"))
    assert answer.status_code == 200, answer.text
    resource = await service.alice.get(f"/resources/{answer.json()['resource_ids'][0]}")
    assert resource.json()["name"] == "训练-ñandú-🚀"


def test_the_cases_are_documented() -> None:
    from pathlib import Path

    text = (Path(__file__).parents[2] / "docs" / "security.md").read_text()
    missing = [name for name, *_ in CASES if name not in text]
    assert not missing, f"docs/security.md does not list: {missing}"
    assert json.dumps([case[0] for case in CASES])
