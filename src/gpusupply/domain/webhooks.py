"""The webhook rules: tenants register URLs that receive signed JSON deliveries of their events.

The tenant's side (register, list, remove, read deliveries) is services/webhooks.py; what is here
is shared with the engine's delivery job (engine/webhook_delivery.py).

- Events that may interest a webhook get an outbox row in the event's own transaction
  (`domain.events.add_event`); the engine's delivery job (engine/webhook_delivery.py) fans each
  out to the tenant's subscribed webhooks and sends them, so a slow receiver never blocks the engine.
- Each delivery is signed: `X-Gpusupply-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
  "<t>.<body>" with the webhook's secret>`. The secret (`whsec_...`) is shown once, at creation,
  and stored encrypted (Fernet, keyed from `settings.secret_key`, generated into `data_dir` when
  unset).
- URLs must be http(s) and resolve to public addresses (checked at registration and again before
  every delivery) unless `allow_private_webhook_urls` is set. Redirects are not followed.

docs/cost.md shows the payload and how to verify a signature.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import os
import secrets
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gpusupply.core.errors import UnprocessableError
from gpusupply.db.models import Event, Resource, Webhook
from gpusupply.settings import Settings

# Webhook event types, and what each means.
EVENT_TYPES: dict[str, str] = {
    "resource.status_changed": "any status change of a resource",
    "resource.ready": "a resource is running for the first time (provisioning -> running)",
    "resource.deleted": "the vendor confirmed a deleted resource's instance is gone",
    "resource.failed": "provisioning failed (nothing is left on the vendor)",
    "resource.terminated": "the instance vanished outside gpusupply (preempted, deleted elsewhere)",
    "resource.auto_delete": "a guardrail deleted the resource (delete_at, spend_limit or an exhausted budget)",
    "resource.alert": "something needs a person, e.g. a delete the vendor has not confirmed in time",
    "orphan.terminated": "an instance carrying our marker but no live resource was deleted",
    "budget.alert": "80 % or 100 % of the monthly budget was used",
    "price.below": "a price alert's cheapest match is at or under its threshold (a buy-below order names its resource)",
    "price.above": "a price alert's cheapest match went back over its threshold (past the hysteresis), or is gone",
    "fleet.member_lost": "a fleet member was preempted, vanished, failed or was deleted by hand (docs/fleets.md)",
    "fleet.member_replaced": "a fleet requested a replacement for a lost member",
    "fleet.degraded": "a fleet cannot reach its size now; the reason says why (it retries with backoff)",
}
ALL_EVENTS = "*"
# Event kinds (events.kind) that can become a webhook event: they get an outbox row.
# Fleet events (engine/fleets.py) are kinds of the same names as their webhook types.
FLEET_EVENT_KINDS = {"fleet_member_lost": "fleet.member_lost", "fleet_member_replaced": "fleet.member_replaced", "fleet_degraded": "fleet.degraded"}
OUTBOX_KINDS = frozenset(
    {"status_change", "alert", "orphan_terminated", "budget_alert", "auto_delete", "price_below", "price_above", *FLEET_EVENT_KINDS}
)
_FINAL_TYPES = {"deleted": "resource.deleted", "failed": "resource.failed", "terminated": "resource.terminated"}

SECRET_PREFIX = "whsec_"
SIGNATURE_HEADER = "X-Gpusupply-Signature"
EVENT_HEADER = "X-Gpusupply-Event"
DELIVERY_HEADER = "X-Gpusupply-Delivery"
SIGNATURE_TOLERANCE_SECONDS = 300
MAX_URL_LENGTH = 2048
MAX_WEBHOOKS_PER_TENANT = 20
SECRET_KEY_FILE = "secret_key"


# ----- event types (pure) --------------------------------------------------------------------------
def event_types(kind: str, from_status: str | None, to_status: str | None) -> list[str]:
    """The webhook event types an event is delivered as."""
    if kind == "status_change":
        types = ["resource.status_changed"]
        if to_status == "running" and from_status == "provisioning":
            types.append("resource.ready")
        if to_status in _FINAL_TYPES:
            types.append(_FINAL_TYPES[to_status])
        return types
    return {
        "alert": ["resource.alert"],
        "orphan_terminated": ["orphan.terminated"],
        "budget_alert": ["budget.alert"],
        "auto_delete": ["resource.auto_delete"],
        "price_below": ["price.below"],
        "price_above": ["price.above"],
        **{k: [v] for k, v in FLEET_EVENT_KINDS.items()},
    }.get(kind, [])


def check_event_filter(events: Sequence[str] | None) -> list[str]:
    """A webhook's `events` list: known types, or ["*"] (the default) for all."""
    if not events:
        return [ALL_EVENTS]
    unknown = [e for e in events if e != ALL_EVENTS and e not in EVENT_TYPES]
    if unknown:
        raise UnprocessableError(
            f"unknown event type(s) {', '.join(map(repr, unknown))}; known: {', '.join(EVENT_TYPES)} (or '*' for all)",
            loc=("body", "events"),
        )
    return [ALL_EVENTS] if ALL_EVENTS in events else list(dict.fromkeys(events))


def subscribed(filters: Iterable[str], event_type: str) -> bool:
    return any(f == ALL_EVENTS or f == event_type for f in filters)


def plan_deliveries(event: Event, webhooks: Iterable[Webhook]) -> list[tuple[Webhook, str]]:
    """(webhook, event type) pairs to deliver: webhooks that existed when the event happened and
    subscribe to the type."""
    types = event_types(event.kind, event.from_status, event.to_status)
    return [(w, t) for w in webhooks if w.created_at <= event.at for t in types if subscribed(w.events or [], t)]


def delivery_payload(
    delivery_id: UUID, event_type: str, event: Event, tenant_name: str, resource: Resource | None
) -> dict[str, Any]:
    """The JSON body of a delivery (the same on every retry)."""
    data: dict[str, Any] = {
        "event_id": event.id,
        "kind": event.kind,
        "resource_id": str(event.resource_id) if event.resource_id else None,
        "vendor": event.vendor,
        "from_status": event.from_status,
        "to_status": event.to_status,
        "reason": event.reason,
        "details": event.data,
    }
    if event.fleet_id is not None:
        data["fleet_id"] = str(event.fleet_id)
    if resource is not None:
        data["resource"] = {
            "resource_id": str(resource.id),
            "name": resource.name,
            "status": resource.status,
            "vendor": resource.vendor,
            "gpu_type": resource.gpu_type,
            "gpu_count": resource.gpu_count,
            "price_per_hour": resource.price_per_hour,
            # A cluster and its nodes each have their events: "cluster", or a node naming its cluster.
            "resource_type": resource.resource_type,
            "cluster_id": str(resource.cluster_id) if resource.cluster_id else None,
        }
    return {
        "id": str(delivery_id),
        "type": event_type,
        "created_at": event.at.isoformat(),
        "tenant": tenant_name,
        "data": data,
    }


# ----- signatures (pure) ---------------------------------------------------------------------------
def sign(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    return f"t={timestamp},v1={sign(secret, timestamp, body)}"


def verify_signature(
    secret: str, header: str, body: bytes, *, now: int, tolerance: int = SIGNATURE_TOLERANCE_SECONDS
) -> bool:
    """Whether `header` signs `body` with `secret`, made within `tolerance` seconds of `now`."""
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        parts.setdefault(key, []).append(value)
    try:
        timestamp = int(parts["t"][0])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in parts.get("v1", []))


def generate_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


# ----- secrets at rest -----------------------------------------------------------------------------
def secret_key_material(settings: Settings) -> str:
    """`settings.secret_key`, or a key generated once into `<data_dir>/secret_key` (mode 0600)."""
    if settings.secret_key is not None and settings.secret_key.get_secret_value():
        return settings.secret_key.get_secret_value()
    path = Path(settings.data_dir) / SECRET_KEY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_text().strip()
        if not key:
            raise RuntimeError(f"{path} is empty; delete it or set GPUSUPPLY_SECRET_KEY") from None
        return key
    key = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key


class SecretBox:
    """Encrypts stored secrets with a Fernet key derived (HKDF-SHA256) from the service secret."""

    def __init__(self, settings: Settings):
        material = secret_key_material(settings).encode()
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"gpusupply webhook secrets").derive(material)
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))

    def encrypt(self, plain: str) -> str:
        return self._fernet.encrypt(plain.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise RuntimeError("a stored webhook secret cannot be decrypted: was GPUSUPPLY_SECRET_KEY changed?") from None


# ----- URL safety ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class WebhookTarget:
    scheme: str
    host: str
    port: int


def parse_webhook_url(url: str) -> WebhookTarget:
    """An absolute http(s) URL with a host, no credentials. Pure; raises a 422."""
    loc = ("body", "url")
    if len(url) > MAX_URL_LENGTH or not url.isprintable() or any(c.isspace() for c in url):
        raise UnprocessableError(f"url must be at most {MAX_URL_LENGTH} printable characters without spaces", loc=loc)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnprocessableError(f"url is not a valid URL: {exc}", loc=loc) from None
    if parts.scheme not in ("http", "https"):
        raise UnprocessableError("url must start with http:// or https://", loc=loc)
    if not parts.hostname:
        raise UnprocessableError("url has no host", loc=loc)
    if parts.username is not None or parts.password is not None:
        raise UnprocessableError("url must not carry credentials (user:password@); put a token in the path instead", loc=loc)
    return WebhookTarget(parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80))


NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052: the IPv4 address is the last 32 bits
NAT64_LOCAL_USE = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215: a network's own translators
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated ::a.b.c.d


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[tuple[str, ipaddress.IPv4Address]]:
    """The IPv4 addresses an IPv6 address carries, with the form that carries each. Pure."""
    found: list[tuple[str, ipaddress.IPv4Address]] = []
    if ip.ipv4_mapped is not None:
        found.append(("IPv4-mapped", ip.ipv4_mapped))
    if ip.sixtofour is not None:
        found.append(("6to4", ip.sixtofour))
    if ip.teredo is not None:
        server, client = ip.teredo
        found += [("Teredo server", server), ("Teredo client", client)]
    if ip in NAT64_WELL_KNOWN or (ip in IPV4_COMPATIBLE and int(ip) > 1):
        found.append(("NAT64" if ip in NAT64_WELL_KNOWN else "IPv4-compatible", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)))
    return found


def address_refusal(address: str) -> str | None:
    """Why deliveries to this IP address are refused (not a public address), or None. Pure.

    An IPv6 address that embeds an IPv4 address (IPv4-mapped, NAT64, 6to4, Teredo, IPv4-compatible)
    reaches that IPv4 address too, so it is refused when the IPv4 address would be. IPv4-mapped and
    well-known NAT64 addresses are then judged as their IPv4 address (a NAT64 network's DNS64 gives
    public IPv4-only hosts such addresses); the others also as themselves."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in NAT64_LOCAL_USE:
            return f"{ip} is in the local-use NAT64 prefix {NAT64_LOCAL_USE}, not a public address"
        for form, inner in embedded_ipv4(ip):
            refusal = _own_refusal(inner)
            if refusal is not None:
                return f"{ip} embeds {inner} ({form}) and {refusal}"
            if form in ("IPv4-mapped", "NAT64"):
                return None
    return _own_refusal(ip)


def _own_refusal(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    for label, test in (
        ("loopback", ip.is_loopback),
        ("unspecified", ip.is_unspecified),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
    ):
        if test:
            return f"{ip} is a {label} address"
    if not ip.is_global:
        return f"{ip} is not a public address"
    return None


async def resolve(host: str, port: int) -> list[str]:
    try:
        ipaddress.ip_address(host)
        return [host]
    except ValueError:
        pass
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def url_refusal(url: str, *, allow_private: bool) -> str | None:
    """Why this URL may not receive deliveries now, or None. Every address the host resolves to must
    be public (unless private ones are allowed)."""
    target = parse_webhook_url(url)
    if allow_private:
        return None
    try:
        addresses = await resolve(target.host, target.port)
    except (OSError, UnicodeError) as exc:
        return f"host {target.host!r} could not be resolved ({exc.__class__.__name__})"
    for address in addresses:
        refusal = address_refusal(address)
        if refusal is not None:
            return (
                f"host {target.host!r} resolves to {refusal}; webhooks go to public addresses only "
                "(GPUSUPPLY_ALLOW_PRIVATE_WEBHOOK_URLS=true allows private ones)"
            )
    return None
