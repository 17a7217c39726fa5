"""Webhooks: event types and filters, payloads, signatures, URL safety (tables), secrets at rest,
registration and tenancy, and the outbox written in the event's own transaction."""

from __future__ import annotations

import stat
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from gpusupply.core.errors import ConflictError, NotFoundError, UnprocessableError
from gpusupply.db.models import Event, Webhook, WebhookDelivery, WebhookOutbox, utcnow
from gpusupply.db.session import Database
from gpusupply.domain.events import add_event, change_status
from gpusupply.domain.webhooks import (
    EVENT_TYPES,
    MAX_WEBHOOKS_PER_TENANT,
    SecretBox,
    address_refusal,
    check_event_filter,
    delivery_payload,
    event_types,
    parse_webhook_url,
    plan_deliveries,
    sign,
    signature_header,
    url_refusal,
    verify_signature,
)
from gpusupply.services.webhooks import (
    create_webhook,
    delete_webhook,
    get_webhook,
    list_deliveries,
    list_webhooks,
)
from gpusupply.settings import Settings
from tests.conftest import make_test_settings
from tests.services.cost_helpers import T0, at, load, make_resource, make_tenant, principal_for

PUBLIC_URL = "https://93.184.216.34/hooks/gpusupply"


@pytest.mark.parametrize(
    ("kind", "from_status", "to_status", "types"),
    [
        ("status_change", None, "pending", ["resource.status_changed"]),
        ("status_change", "provisioning", "running", ["resource.status_changed", "resource.ready"]),
        ("status_change", "starting", "running", ["resource.status_changed"]),
        ("status_change", "deleting", "deleted", ["resource.status_changed", "resource.deleted"]),
        ("status_change", "deleting", "failed", ["resource.status_changed", "resource.failed"]),
        ("status_change", "running", "terminated", ["resource.status_changed", "resource.terminated"]),
        ("orphan_terminated", None, None, ["orphan.terminated"]),
        ("budget_alert", None, None, ["budget.alert"]),
        ("auto_delete", None, None, ["resource.auto_delete"]),
        ("alert", None, None, ["resource.alert"]),
        ("attempt", None, None, []),
        ("vendor_degraded", None, None, []),
        ("fleet_member_lost", None, None, ["fleet.member_lost"]),
        ("fleet_member_replaced", None, None, ["fleet.member_replaced"]),
        ("fleet_degraded", None, None, ["fleet.degraded"]),
        ("fleet_changed", None, None, []),
    ],
)
def test_event_types(kind: str, from_status: str | None, to_status: str | None, types: list[str]) -> None:
    assert event_types(kind, from_status, to_status) == types
    assert all(t in EVENT_TYPES for t in types)


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        (None, ["*"]),
        ([], ["*"]),
        (["resource.ready", "budget.alert", "resource.ready"], ["resource.ready", "budget.alert"]),
        (["resource.ready", "*"], ["*"]),
    ],
)
def test_check_event_filter(events: list[str] | None, expected: list[str]) -> None:
    assert check_event_filter(events) == expected


def test_check_event_filter_refuses_unknown_types() -> None:
    with pytest.raises(UnprocessableError, match="unknown event type\\(s\\) 'resource.exploded'"):
        check_event_filter(["resource.ready", "resource.exploded"])


def _event(**kw: Any) -> Event:
    values: dict[str, Any] = {"id": 7, "kind": "status_change", "at": T0, "resource_id": uuid.uuid4(), "tenant_id": uuid.uuid4()}
    values.update(kw)
    return Event(**values)


def _hook(events: list[str], created: float = -1) -> Webhook:
    return Webhook(id=uuid.uuid4(), events=events, created_at=at(created), url=PUBLIC_URL, secret_encrypted="x")


def test_plan_deliveries() -> None:
    ready = _event(from_status="provisioning", to_status="running")
    everything, only_ready, only_budget, too_new = _hook(["*"]), _hook(["resource.ready"]), _hook(["budget.alert"]), _hook(["*"], created=1)
    plan = plan_deliveries(ready, [everything, only_ready, only_budget, too_new])
    assert [(w.id, t) for w, t in plan] == [
        (everything.id, "resource.status_changed"),
        (everything.id, "resource.ready"),
        (only_ready.id, "resource.ready"),
    ]


def test_delivery_payload() -> None:
    event = _event(from_status="provisioning", to_status="running", reason="vendor reports the instance running", vendor="vast", data={"a": 1})
    delivery_id = uuid.uuid4()
    payload = delivery_payload(delivery_id, "resource.ready", event, "alice", None)
    assert payload == {
        "id": str(delivery_id),
        "type": "resource.ready",
        "created_at": T0.isoformat(),
        "tenant": "alice",
        "data": {
            "event_id": 7, "kind": "status_change", "resource_id": str(event.resource_id), "vendor": "vast",
            "from_status": "provisioning", "to_status": "running", "reason": "vendor reports the instance running",
            "details": {"a": 1},
        },
    }


def test_a_fleet_events_payload_names_its_fleet() -> None:
    event = _event(kind="fleet_member_lost", reason="member lost", vendor="vast", data={"loss": "preempted"})
    event.fleet_id = uuid.uuid4()
    payload = delivery_payload(uuid.uuid4(), "fleet.member_lost", event, "alice", None)
    assert payload["type"] == "fleet.member_lost" and payload["data"]["fleet_id"] == str(event.fleet_id)
    assert payload["data"]["details"] == {"loss": "preempted"}


SECRET = "whsec_test"
BODY = b'{"type":"resource.ready"}'


@pytest.mark.parametrize(
    ("header", "body", "secret", "now", "valid"),
    [
        (signature_header(SECRET, 1000, BODY), BODY, SECRET, 1000, True),
        (signature_header(SECRET, 1000, BODY), BODY, SECRET, 1300, True),
        (signature_header(SECRET, 1000, BODY), BODY, SECRET, 1301, False),
        (signature_header(SECRET, 1000, BODY), BODY + b" ", SECRET, 1000, False),
        (signature_header(SECRET, 1000, BODY), BODY, "whsec_other", 1000, False),
        (f"t=1000,v1=deadbeef,v1={sign(SECRET, 1000, BODY)}", BODY, SECRET, 1000, True),
        (f"t=999,v1={sign(SECRET, 1000, BODY)}", BODY, SECRET, 1000, False),
        ("v1=abc", BODY, SECRET, 1000, False),
        ("t=soon,v1=abc", BODY, SECRET, 1000, False),
        ("", BODY, SECRET, 1000, False),
    ],
)
def test_verify_signature(header: str, body: bytes, secret: str, now: int, valid: bool) -> None:
    assert verify_signature(secret, header, body, now=now) is valid


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    import hashlib
    import hmac

    assert sign(SECRET, 1234, BODY) == hmac.new(SECRET.encode(), b"1234." + BODY, hashlib.sha256).hexdigest()
    assert signature_header(SECRET, 1234, BODY) == f"t=1234,v1={sign(SECRET, 1234, BODY)}"


@pytest.mark.parametrize(
    ("url", "host", "port"),
    [
        ("https://hooks.example.com/x?y=1", "hooks.example.com", 443),
        ("http://hooks.example.com:8080/x", "hooks.example.com", 8080),
        ("http://[2001:db8::1]/x", "2001:db8::1", 80),
    ],
)
def test_parse_webhook_url(url: str, host: str, port: int) -> None:
    target = parse_webhook_url(url)
    assert (target.host, target.port) == (host, port)


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("ftp://example.com/x", "must start with http:// or https://"),
        ("example.com/hook", "must start with http:// or https://"),
        ("https:///path", "url has no host"),
        ("https://user:pw@example.com/", "must not carry credentials"),
        ("https://example.com:99999/", "not a valid URL"),
        ("https://example.com/a b", "without spaces"),
        ("https://example.com/" + "a" * 2100, "at most 2048"),
    ],
)
def test_parse_webhook_url_refusals(url: str, error: str) -> None:
    with pytest.raises(UnprocessableError, match=error):
        parse_webhook_url(url)


@pytest.mark.parametrize(
    ("address", "refusal"),
    [
        ("93.184.216.34", None),
        ("2606:4700:4700::1111", None),
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("10.1.2.3", "private"),
        ("192.168.0.10", "private"),
        ("172.16.5.4", "private"),
        ("fd00::1", "private"),
        ("::ffff:127.0.0.1", "loopback"),
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("100.64.0.1", "not a public address"),
        # IPv6 forms that carry an IPv4 address are refused when that address would be.
        ("::ffff:8.8.8.8", None),
        ("::ffff:10.0.0.1", "embeds 10.0.0.1 (IPv4-mapped) and 10.0.0.1 is a private"),
        ("2002:7f00:1::", "embeds 127.0.0.1 (6to4) and 127.0.0.1 is a loopback"),
        ("2002:a9fe:a9fe::", "embeds 169.254.169.254 (6to4) and 169.254.169.254 is a link-local"),
        ("2002:c0a8:1::1", "embeds 192.168.0.1 (6to4) and 192.168.0.1 is a private"),
        ("2002:808:808::1", None),  # 6to4 of a public address
        ("2001:0:7f00:1::1", "embeds 127.0.0.1 (Teredo server) and 127.0.0.1 is a loopback"),
        # Teredo client bits are stored inverted: 0x80ff:fffe is 127.0.0.1.
        ("2001:0:808:808:0:0:80ff:fffe", "embeds 127.0.0.1 (Teredo client) and 127.0.0.1 is a loopback"),
        ("2001:0:808:808:0:0:5601:56fe", "embeds 169.254.169.1 (Teredo client)"),
        ("64:ff9b::7f00:1", "embeds 127.0.0.1 (NAT64) and 127.0.0.1 is a loopback"),
        ("64:ff9b::a9fe:a9fe", "embeds 169.254.169.254 (NAT64)"),
        ("64:ff9b::808:808", None),  # DNS64 answer for a public IPv4-only host
        ("64:ff9b:1::808:808", "local-use NAT64 prefix"),
        ("::7f00:1", "embeds 127.0.0.1 (IPv4-compatible) and 127.0.0.1 is a loopback"),
        ("::a00:1", "embeds 10.0.0.1 (IPv4-compatible)"),
        ("::808:808", "reserved"),  # deprecated form, refused even for a public address
    ],
)
def test_address_refusal(address: str, refusal: str | None) -> None:
    got = address_refusal(address)
    if refusal is None:
        assert got is None
    else:
        assert got is not None and refusal in got


async def test_url_refusal_resolves_the_host() -> None:
    refusal = await url_refusal("http://localhost:8000/hook", allow_private=False)
    assert refusal is not None and "resolves to" in refusal and "loopback" in refusal
    assert "GPUSUPPLY_ALLOW_PRIVATE_WEBHOOK_URLS" in refusal
    assert await url_refusal("http://127.0.0.1:8000/hook", allow_private=True) is None
    assert await url_refusal(PUBLIC_URL, allow_private=False) is None
    with pytest.raises(UnprocessableError):
        await url_refusal("gopher://localhost/", allow_private=True)  # the scheme is checked either way


# ----- secrets at rest -----------------------------------------------------------------------------
def test_secret_box_generates_a_private_key_file_once(tmp_path: Path) -> None:
    settings = make_test_settings(tmp_path)
    box = SecretBox(settings)
    token = box.encrypt("whsec_abc")
    assert "whsec_abc" not in token
    key_file = settings.data_dir / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert SecretBox(settings).decrypt(token) == "whsec_abc"  # the same key, read back
    other = make_test_settings(tmp_path / "other")
    with pytest.raises(RuntimeError, match="cannot be decrypted"):
        SecretBox(other).decrypt(token)


def test_secret_box_uses_the_configured_secret_key(tmp_path: Path) -> None:
    settings = make_test_settings(tmp_path, secret_key="configured-secret-key-of-some-length")
    token = SecretBox(settings).encrypt("whsec_abc")
    assert not (settings.data_dir / "secret_key").exists()
    assert SecretBox(make_test_settings(tmp_path / "b", secret_key="configured-secret-key-of-some-length")).decrypt(token) == "whsec_abc"


# ----- registration --------------------------------------------------------------------------------
@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_test_settings(tmp_path)


async def test_create_list_delete_and_tenancy(database: Database, settings: Settings) -> None:
    alice, bob = principal_for(await make_tenant(database)), principal_for(await make_tenant(database))
    webhook, secret = await create_webhook(database, settings, alice, url=PUBLIC_URL, events=["resource.ready"], description="ops")
    assert secret.startswith("whsec_") and len(secret) > 40
    async with database.session() as session:
        stored = await session.get(Webhook, webhook.id)
    assert stored is not None and secret not in stored.secret_encrypted
    assert SecretBox(settings).decrypt(stored.secret_encrypted) == secret
    assert [w.id for w in await list_webhooks(database, alice)] == [webhook.id]
    assert await list_webhooks(database, bob) == []
    with pytest.raises(NotFoundError):
        await get_webhook(database, bob, webhook.id)
    with pytest.raises(NotFoundError):
        await delete_webhook(database, bob, webhook.id)
    with pytest.raises(NotFoundError):
        await list_deliveries(database, bob, webhook.id)
    async with database.transaction() as session:
        session.add(WebhookDelivery(webhook_id=webhook.id, event_type="resource.ready", payload={}, attempts=0, attempt_log=[]))
    deliveries, total = await list_deliveries(database, alice, webhook.id)
    assert total == 1 and deliveries[0].status == "pending"
    assert (await list_deliveries(database, alice, webhook.id, status="delivered"))[1] == 0
    with pytest.raises(UnprocessableError, match="unknown status"):
        await list_deliveries(database, alice, webhook.id, status="lost")
    await delete_webhook(database, alice, webhook.id)  # its deliveries go with it
    assert await list_webhooks(database, alice) == []
    async with database.session() as session:
        assert (await session.execute(select(func.count()).select_from(WebhookDelivery))).scalar_one() == 0


async def test_create_refuses_private_urls_and_too_many(database: Database, settings: Settings) -> None:
    alice = principal_for(await make_tenant(database))
    with pytest.raises(UnprocessableError, match="loopback") as caught:
        await create_webhook(database, settings, alice, url="http://127.0.0.1:9000/hook")
    assert caught.value.errors[0]["loc"] == ["body", "url"]
    with pytest.raises(UnprocessableError, match="link-local"):
        await create_webhook(database, settings, alice, url="http://169.254.169.254/latest/meta-data")
    with pytest.raises(UnprocessableError, match="description"):
        await create_webhook(database, settings, alice, url=PUBLIC_URL, description="x" * 201)
    allowed = settings.model_copy(update={"allow_private_webhook_urls": True})
    await create_webhook(database, allowed, alice, url="http://127.0.0.1:9000/hook")
    for _ in range(MAX_WEBHOOKS_PER_TENANT - 1):
        await create_webhook(database, settings, alice, url=PUBLIC_URL)
    with pytest.raises(ConflictError, match=f"at most {MAX_WEBHOOKS_PER_TENANT} webhooks"):
        await create_webhook(database, settings, alice, url=PUBLIC_URL)


# ----- the outbox ----------------------------------------------------------------------------------
async def _outbox(db: Database) -> list[tuple[int, str]]:
    async with db.session() as session:
        rows = await session.execute(select(WebhookOutbox.event_id, Event.kind).join(Event, Event.id == WebhookOutbox.event_id).order_by(WebhookOutbox.id))
        return [(event_id, kind) for event_id, kind in rows]


async def test_events_that_concern_webhooks_get_an_outbox_row_in_their_transaction(database: Database) -> None:
    from gpusupply.core.states import ResourceStatus

    tenant = await make_tenant(database)
    rid = await make_resource(database, tenant.id)  # its "pending" event
    assert [kind for _, kind in await _outbox(database)] == ["status_change"]
    async with database.transaction() as session:
        resource = await load(database, rid)
        resource = await session.merge(resource)
        change_status(session, resource, ResourceStatus.PROVISIONING, "created")
        add_event(session, kind="attempt", resource=resource, reason="tried an offer")  # not for webhooks
        add_event(session, kind="budget_alert", tenant_id=tenant.id, reason="80%")
    assert [kind for _, kind in await _outbox(database)] == ["status_change", "status_change", "budget_alert"]
    with pytest.raises(RuntimeError):
        async with database.transaction() as session:
            add_event(session, kind="alert", tenant_id=tenant.id, reason="rolled back")
            raise RuntimeError("rollback")
    outbox = await _outbox(database)
    assert len(outbox) == 3  # the event and its outbox row went together
    async with database.session() as session:
        events = {e.id: e for e in (await session.execute(select(Event))).scalars()}
    assert all(events[event_id].kind == kind for event_id, kind in outbox)
    assert events[outbox[-1][0]].tenant_id == tenant.id and events[outbox[-1][0]].resource_id is None
    assert utcnow() - timedelta(minutes=5) < max(e.at for e in events.values() if e.kind == "budget_alert")


def test_the_documented_verification_snippet_works() -> None:
    """docs/cost.md shows receivers how to verify a signature with the standard library: run it."""
    import time

    doc = (Path(__file__).parents[2] / "docs" / "cost.md").read_text()
    snippet = doc.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(compile(snippet, "docs/cost.md", "exec"), namespace)
    verify = namespace["verify"]
    now = int(time.time())
    header = signature_header(SECRET, now, BODY)
    assert verify(SECRET, header, BODY)
    assert not verify(SECRET, header, BODY + b"x")
    assert not verify("whsec_other", header, BODY)
    assert not verify(SECRET, signature_header(SECRET, now - 301, BODY), BODY)
    assert not verify(SECRET, "v1=abc", BODY)
    assert verify(SECRET, f"t={now},v1=00,v1={sign(SECRET, now, BODY)}", BODY)
