"""The HTTP policy every adapter shares: pacing, timeouts, retries, error typing, secret hygiene.

- Pacing: one GCRA bucket per (vendor, endpoint) keeps us under the vendor's documented rate, so
  a 429 is rare rather than routine. Every adapter declares its vendor's limits once, as
  `RateLimits` (documented, or assumed where the vendor publishes none), and paces by one rule,
  `pacing`: 95% of each rate, one request less of burst. Its sandbox enforces the same `RateLimits`. A vendor that limits the whole key (one bucket for every
  route) gets one key bucket instead, so any route may use the whole rate when the others idle.
  A vendor's limit belongs to the API key, not to a process: with a database, the buckets live
  there and every process using the key books its slots in the same rows (`share_buckets`,
  db/ratelimits.py). In-process buckets remain for an adapter used without a database (tests,
  scripts): one process alone with its key.
- Retries: only calls marked `safe` (reads, and deletes/starts/stops, which are idempotent) are
  retried, on 429, 5xx, timeouts and connection errors, with exponential backoff and full jitter,
  honouring Retry-After. A create is never retried here: the engine recovers it.
- Errors: every failure leaves as a `gpusupply.core.errors` type that keeps the vendor's message.
  Each adapter module has the same two classifiers: `classify_failure(status, <its envelope's
  fields>, message, retry_after)`, pure and table-tested, and `classify_response(vendor, response)`,
  the `ErrorClassifier` that reads its envelope and calls the first. What neither a code nor a word
  decides falls to `classify_status`, by HTTP status alone. Messages never include request headers
  or query strings, where keys travel.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from gpusupply.core.errors import (
    AuthFailed,
    InvalidRequest,
    NotFoundOnVendor,
    RateLimited,
    VendorError,
    VendorUnavailable,
)
from gpusupply.core.ratelimit import KEY_ROUTE, Bucket, Gcra
from gpusupply.metrics import (
    VENDOR_LATENCY,
    VENDOR_PACING_REBOOKED,
    VENDOR_RATE_LIMIT_WAIT,
    VENDOR_RATE_LIMITED,
    VENDOR_REQUESTS,
)

log = logging.getLogger(__name__)

MAX_RETRY_AFTER = 60.0

Limit = tuple[float, float]  # (requests per second, burst)

# The caller's guard on its creates (calls sent with `creates=True`): run after the call's pacing
# wait, right before it is sent; an exception from it stops the call unsent. The engine records a create there, under
# the row's lease (engine/pipelines/procure.py), so a create leaves only while its row still wants
# it and its step still holds the lease, and the moment on record is when it left, however long the
# pacer held it (a vendor allowing one launch in 12 s can hold it a minute).
BeforeSend = Callable[[], Awaitable[None]]
_BEFORE_UNSAFE_SEND: ContextVar[BeforeSend | None] = ContextVar("before_unsafe_send", default=None)


@contextlib.contextmanager
def before_unsafe_send(guard: BeforeSend) -> Iterator[None]:
    """Run `guard` before each create sent inside this block (this task and what it awaits)."""
    token = _BEFORE_UNSAFE_SEND.set(guard)
    try:
        yield
    finally:
        _BEFORE_UNSAFE_SEND.reset(token)


@dataclass(frozen=True, slots=True)
class RateLimits:
    """A vendor's rate limits per API key: what its adapter paces under and its sandbox enforces."""

    routes: Mapping[str, Limit] = field(default_factory=dict)  # route group -> its own limit
    key: Limit | None = None  # one limit over every route of the key, when the vendor has one
    documented: bool = True  # False: the vendor publishes none and these are our assumption


# Pace at 95% of a limit with one request less of burst: the vendor's spare burst request absorbs
# jitter on the wire, the 5% absorbs drift; a lower share would only cost throughput.
PACING_SHARE = 0.95
# A shared slot's caller that wakes later than this share of its tightest bucket's interval gives
# the slot up and books another (at most MAX_LATE_REBOOKINGS times): sent late, it would reach the
# vendor together with the on-time holders of the next slots, a burst other processes cannot see.
LATE_SHARE = 0.5
MAX_LATE_REBOOKINGS = 3


def pacing(limit: Limit, rate_scale: float = 1.0) -> Limit:
    """Our pace under one vendor limit (`rate_scale` multiplies it, for sandboxes run faster)."""
    rate, burst = limit
    return rate * PACING_SHARE * rate_scale, max(burst - 1.0, 1.0)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 5  # total tries for a safe call
    base_delay: float = 0.2
    max_delay: float = 8.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        backoff = random.uniform(0, min(self.max_delay, self.base_delay * (2**attempt)))
        if retry_after is not None:
            return min(max(retry_after, backoff), MAX_RETRY_AFTER)
        return backoff


class SharedBuckets(Protocol):
    """Buckets shared by every process calling one vendor with one key (db/ratelimits.py)."""

    async def reserve(self, vendor: str, key_id: str, buckets: Sequence[Bucket]) -> float:
        """Book the next slot in each bucket, in order (each at the slot of the one before); return
        the seconds to wait before sending. Raises the database's error when it cannot book."""
        ...


def key_id(vendor: str, base_url: str, auth_headers: dict[str, str]) -> str:
    """Which account at which host a client acts for, without the key: a hash of the vendor, the
    host and the auth headers (the only form in which a key reaches the database)."""
    material = "\0".join([vendor, base_url, *(f"{k.lower()}={v}" for k, v in sorted(auth_headers.items()))])
    return hashlib.sha256(material.encode()).hexdigest()[:32]


# Classifies a non-2xx answer into a typed error. Adapters pass their own to read their envelopes.
ErrorClassifier = Callable[[str, httpx.Response], VendorError]


def parse_retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        return None


def default_classifier(vendor: str, response: httpx.Response) -> VendorError:
    return classify_status(vendor, response.status_code, vendor_message(response), parse_retry_after(response))


def classify_status(vendor: str, status: int, message: str, retry_after: float | None = None) -> VendorError:
    """A typed error from the HTTP status alone: where a vendor's codes and words say nothing."""
    if status == 429:
        return RateLimited(vendor, "rate limited", retry_after=retry_after, status=status, vendor_message=message)
    if status in (401, 403):
        return AuthFailed(vendor, "authentication failed", status=status, vendor_message=message)
    if status == 404:
        return NotFoundOnVendor(vendor, "not found", status=status, vendor_message=message)
    if status >= 500:
        return VendorUnavailable(vendor, f"vendor error {status}", status=status, vendor_message=message)
    return InvalidRequest(vendor, f"request refused ({status})", status=status, vendor_message=message)


def vendor_message(response: httpx.Response) -> str:
    """The vendor's own message from any of the envelopes in use, else a short body excerpt."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return response.text[:300]
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and "message" in err:
            return str(err["message"])
        for key in ("msg", "message", "detail", "error"):
            if body.get(key):
                return str(body[key])
    return str(body)[:300]


def as_dict(value: object) -> dict[str, Any]:
    """`value` if the vendor sent an object there, else an empty one: vendors' answers are read
    defensively, a missing or malformed member reads as absent."""
    return value if isinstance(value, dict) else {}


def parse_json(vendor: str, response: httpx.Response) -> Any:
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise VendorUnavailable(vendor, "malformed JSON body", status=response.status_code) from exc


class VendorHttp:
    """An httpx client with the shared policy. One per adapter instance."""

    def __init__(
        self,
        vendor: str,
        base_url: str,
        *,
        auth_headers: dict[str, str],
        limits: RateLimits | None = None,
        rate_scale: float = 1.0,
        rates: dict[str, tuple[float, float]] | None = None,
        default_rate: tuple[float, float] = (5.0, 2.0),
        shared_rate: tuple[float, float] | None = None,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        classifier: ErrorClassifier = default_classifier,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ):
        """`limits`: the vendor's limits, paced by `pacing` (scaled by `rate_scale`). `rates` and
        `shared_rate` give the pace directly instead (tests of the policy itself); so do `clock`
        and `sleep`, the pacer's time."""
        if rate_scale <= 0:
            raise ValueError("rate_scale must be positive")
        if limits is not None:
            rates = {route: pacing(limit, rate_scale) for route, limit in limits.routes.items()}
            shared_rate = pacing(limits.key, rate_scale) if limits.key is not None else None
        self.vendor = vendor
        self.key_id = key_id(vendor, base_url, auth_headers)
        self._shared: SharedBuckets | None = None  # set by share_buckets: the database's buckets
        self._rates = rates or {}
        self._default_rate = default_rate
        self._pacers: dict[str, Gcra] = {}
        self._pacing_turns: dict[str, asyncio.Lock] = {}  # one waiter per route books at a time
        # Every call also books a slot here: the vendor's limit for the key as a whole.
        self._shared_rate = shared_rate
        self._shared_pacer = Gcra(*shared_rate) if shared_rate is not None else None
        self._retry = retry or RetryPolicy()
        self._classifier = classifier
        self._clock = clock
        self._sleep = sleep
        self._client = httpx.AsyncClient(
            base_url=base_url,
            headers=auth_headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            transport=transport,
            limits=httpx.Limits(max_connections=50, max_keepalive_connections=20),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    def _endpoint_pacer(self, endpoint: str) -> Gcra | None:
        pacer = self._pacers.get(endpoint)
        if pacer is None:
            if endpoint not in self._rates and self._shared_pacer is not None:
                return None  # only the key's limit applies to this route
            rate, burst = self._rates.get(endpoint, self._default_rate)
            pacer = self._pacers[endpoint] = Gcra(rate, burst)
        return pacer

    def reserve(self, endpoint: str, now: float) -> float:
        """Book the next slot for one call to `endpoint`; returns the seconds to wait for it."""
        pacer = self._endpoint_pacer(endpoint)
        send_at = now + (pacer.reserve(now) if pacer is not None else 0.0)
        if self._shared_pacer is not None:
            # Booked at the route's slot, not now: a slot the call could not use yet is not wasted.
            send_at += self._shared_pacer.reserve(send_at)
        return send_at - now

    def share_buckets(self, shared: SharedBuckets | None) -> None:
        """Pace through buckets shared with every other process using this key (None: in-process)."""
        self._shared = shared

    def buckets(self, endpoint: str) -> list[Bucket]:
        """The limits a call to `endpoint` books, in order: the route's own, then the key's."""
        found: list[Bucket] = []
        if endpoint in self._rates or self._shared_rate is None:
            found.append(Bucket(endpoint, *self._rates.get(endpoint, self._default_rate)))
        if self._shared_rate is not None:
            found.append(Bucket(KEY_ROUTE, *self._shared_rate))
        return found

    async def _pace(self, endpoint: str, guard: BeforeSend | None = None) -> None:
        """Wait for the call's slot, then run `guard` (the caller's last check before it leaves)."""
        if self._shared is not None:
            await self._pace_shared(endpoint, guard)
            return
        # A route's callers book one at a time, each once the one before it has left: if the event
        # loop stalls, the slots after a late caller move later with it, instead of every sleeper
        # waking at once and reaching the vendor together (a burst it answers with 429s).
        turn = self._pacing_turns.setdefault(endpoint, asyncio.Lock())
        async with turn:
            await self._wait(self.reserve(endpoint, self._clock()))
        if guard is not None:
            await guard()

    async def _pace_shared(self, endpoint: str, guard: BeforeSend | None) -> None:
        """Wait for a slot booked in the buckets every process shares. No fallback to the
        in-process buckets when the database cannot book: this process does not know what the
        others sent, so it does not call the vendor at all (the booking's error propagates)."""
        buckets = self.buckets(endpoint)
        late_limit = LATE_SHARE * min(1.0 / bucket.rate for bucket in buckets)
        for booking in range(MAX_LATE_REBOOKINGS + 1):
            wait = await self._shared_reserve(buckets)
            due = self._clock() + wait
            await self._wait(wait)
            if guard is not None:  # inside the slot: a slow guard (a database write) makes the call late too
                await guard()
            # Still late after every rebooking: send on the last slot rather than never.
            if self._clock() - due <= late_limit or booking == MAX_LATE_REBOOKINGS:
                return
            # Too late (a stalled event loop, a slow guard): the slot's moment has passed; take a new one.
            VENDOR_PACING_REBOOKED.labels(self.vendor).inc()

    async def _shared_reserve(self, buckets: list[Bucket]) -> float:
        assert self._shared is not None
        return await self._shared.reserve(self.vendor, self.key_id, buckets)

    async def _wait(self, wait: float) -> None:
        if wait > 0:
            VENDOR_RATE_LIMIT_WAIT.labels(self.vendor).inc(wait)
            await self._sleep(wait)

    async def request(
        self,
        method: str,
        path: str,
        *,
        endpoint: str,
        safe: bool,
        creates: bool = False,
        ok: tuple[int, ...] = (200, 201, 202, 204),
        **kwargs: Any,
    ) -> httpx.Response:
        """Send one call under the policy; returns the response for a status in `ok`, else raises.

        `endpoint` names the rate-limit bucket (e.g. "create", "list"). `safe` allows retries.
        `creates`: this call makes an instance (never safe); the caller's guard runs before it leaves.
        """
        attempts = self._retry.attempts if safe else 1
        last: VendorError | None = None
        guard = _BEFORE_UNSAFE_SEND.get() if creates else None
        for attempt in range(attempts):
            await self._pace(endpoint, guard)
            started = time.monotonic()
            try:
                response = await self._client.request(method, path, **kwargs)
            except httpx.TimeoutException:
                last = VendorUnavailable(self.vendor, f"{endpoint}: timed out")
                VENDOR_REQUESTS.labels(self.vendor, endpoint, "timeout").inc()
            except httpx.TransportError as exc:
                last = VendorUnavailable(self.vendor, f"{endpoint}: connection failed ({type(exc).__name__})")
                VENDOR_REQUESTS.labels(self.vendor, endpoint, "connection_error").inc()
            else:
                VENDOR_LATENCY.labels(self.vendor, endpoint).observe(time.monotonic() - started)
                if response.status_code in ok:
                    VENDOR_REQUESTS.labels(self.vendor, endpoint, "ok").inc()
                    return response
                last = self._classifier(self.vendor, response)
                VENDOR_REQUESTS.labels(self.vendor, endpoint, type(last).__name__).inc()
                if isinstance(last, RateLimited):
                    VENDOR_RATE_LIMITED.labels(self.vendor).inc()
                if not last.retryable:
                    raise last
            if attempt + 1 < attempts:
                retry_after = last.retry_after if isinstance(last, RateLimited) else None
                delay = self._retry.delay(attempt, retry_after)
                if isinstance(last, RateLimited):  # backing off a 429 is waiting for the rate limit too
                    VENDOR_RATE_LIMIT_WAIT.labels(self.vendor).inc(delay)
                log.info("vendor call retry", extra={"vendor": self.vendor, "endpoint": endpoint, "error": type(last).__name__, "delay": round(delay, 3)})
                await asyncio.sleep(delay)
        assert last is not None
        raise last
