"""What every simulated vendor shares: configuration, faults, rate limits, lifecycle, truth, admin,
and the request plumbing (key checking, the gate, JSON bodies, SSH-key checks, the error handler).

Each vendor module (vast/, fal.py, nebula.py, lambdalabs.py, runpod.py) subclasses `VendorSandbox`,
adds its real routes and renders errors in its own envelopes: a route opens with
`call = await self.open_call(request, endpoint, faults)` (the vendor's `authenticate`, then
latency, rate limit and fault draw) and answers `call` when it is already a `Response`. Everything random is drawn from generators seeded by
`SandboxConfig.seed`, and instance lifecycles are computed lazily from the (settable) clock, so
the same seed and the same sequence of requests give the same run.

Admin routes (not part of any vendor API; under /_sandbox):
    GET  /_sandbox/state           every instance that exists, every committed create, faults injected
    GET  /_sandbox/faults          PUT /_sandbox/faults {"429": 0.2, ...}   (same names as --faults)
    POST /_sandbox/arm             {"fault": "phantom_404", "instance_id": "12"}   one call takes that fault, once
                                   {"fault": "refuse_create", "after": 1}: the second create is refused
                                   ("stall_create": made, never comes up); "after" lets that many through first
    PUT  /_sandbox/config          {"latency": s, "ready_after": s, "rate_limits": bool, "hang_seconds": s, "late_seconds": s}
    POST /_sandbox/clock/advance   {"seconds": n}   moves the sandbox clock forward
    POST /_sandbox/preempt         {"instance_id": "12"}   the vendor takes that running instance back now (a spot
                                   interruption, chosen by the caller: seeded tests pick which and when)
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import itertools
import json
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from gpusupply.core.ratelimit import Gcra
from gpusupply.sandbox.market import MarketWalk

FAULT_NAMES = (
    "429", "500", "503", "hang", "lost", "malformed", "preempt", "phantom_404", "ignored_delete", "late_create",
    "refuse_create", "stall_create",
)
# Faults drawn for every vendor API call; the others apply only where they make sense:
#   lost            create: committed, but the answer never reaches the client
#   late_create     create: reaches the vendor `late_seconds` late (after the client gave up), then commits
#   refuse_create   create: refused as the vendor refuses a create it has no capacity for (nothing is made)
#   stall_create    create: committed, but the instance never comes up (it stays creating until deleted)
#   malformed       lists: a broken page
#   phantom_404     one-instance read: "not found" although the instance exists (the list still shows it)
#   ignored_delete  delete: acknowledged, but nothing is deleted
#   preempt         running instances disappear
GENERIC_FAULTS = ("429", "500", "503", "hang")
CREATE_FAULTS = ("lost", "late_create", "refuse_create")
STALLED_SECONDS = 10.0**9  # the `ready_after` of a stalled create: never, for any test
READ_FAULTS = ("phantom_404",)
DELETE_FAULTS = ("ignored_delete",)


def parse_fault_spec(spec: str | None) -> dict[str, float]:
    """'429=0.2,500=0.1' -> {'429': 0.2, '500': 0.1}; raises ValueError with a clear message."""
    faults: dict[str, float] = {}
    if not spec:
        return faults
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in FAULT_NAMES:
            raise ValueError(f"unknown fault {part!r}; expected name=probability with name in {', '.join(FAULT_NAMES)}")
        try:
            probability = float(value)
        except ValueError:
            raise ValueError(f"fault {name!r}: {value!r} is not a number") from None
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"fault {name!r}: probability must be between 0 and 1")
        faults[name] = probability
    return faults


# An OpenSSH public key line: type, base64 body, optional comment.
SSH_PUBLIC_KEY = re.compile(r"^(ssh-(rsa|ed25519|dss)|ecdsa-sha2-nistp(256|384|521)|sk-[\w@.-]+) ([A-Za-z0-9+/=]+)(\s.*)?$")


def is_ssh_public_key(text: str, *, decode_body: bool = True) -> bool:
    """Whether `text` is one OpenSSH public key line; `decode_body`: and its body decodes as base64
    (a vendor that checks only the shape passes False)."""
    match = SSH_PUBLIC_KEY.match(text.strip())
    if match is None:
        return False
    if not decode_body:
        return True
    try:
        base64.b64decode(match.group(4), validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def authorization_token(request: Request, schemes: tuple[str, ...] = ("bearer",)) -> str | None:
    """The token of an `Authorization: <scheme> <token>` header in one of `schemes`, else None."""
    scheme, _, token = request.headers.get("authorization", "").strip().partition(" ")
    token = token.strip()
    return token if token and scheme.lower() in schemes else None


class BodyNotJson(ValueError):
    """A request body that is not JSON."""


async def read_json(request: Request, *, empty: Any = None) -> Any:
    """The request body parsed as JSON; `empty` for a body with nothing in it. Raises BodyNotJson."""
    raw = await request.body()
    if not raw.strip():
        return empty
    try:
        return json.loads(raw)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError alike
        raise BodyNotJson("the body is not JSON") from None


def account_fingerprint(key: str) -> str:
    """How the admin routes name an account without echoing its key."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


@dataclass
class SandboxConfig:
    seed: int = 0
    offers: int = 3000  # size of a marketplace inventory (Vast); others scale from it where it makes sense
    ready_after: float = 3.0  # seconds from create to running
    faults: dict[str, float] = field(default_factory=dict)
    rate_limits: bool = True
    rate_scale: float = 1.0  # multiplies every documented rate (tests may loosen them)
    latency: float = 0.0  # seconds added to every vendor API call
    hang_seconds: float = 30.0  # how long a "hang" fault (or a lost response) holds the request
    stock: int | None = None  # units of every product / instance type (None: the seeded inventory)
    id_base: int = 0  # added to instance sequence numbers; a persisted sandbox draws one per process (state.py)
    late_seconds: float = 25.0  # how late a "late_create" reaches the vendor
    prices_move: bool = False  # prices walk and offers come and go (sandbox/market.py); off: fixed prices


class SandboxClock:
    """Wall clock plus an offset that tests can advance, so time-driven behaviour needs no sleeping.
    `pin(at)` stops it at `at` (advancing still moves it): a test of moving prices reads exact times."""

    def __init__(self) -> None:
        self.offset = 0.0
        self.pinned: float | None = None

    def now(self) -> float:
        return (time.time() if self.pinned is None else self.pinned) + self.offset

    def pin(self, at: float) -> None:
        self.pinned, self.offset = at, 0.0

    def advance(self, seconds: float) -> None:
        self.offset += seconds


class FaultInjector:
    def __init__(self, faults: dict[str, float], seed: int):
        self.faults = dict(faults)
        self.seed = seed
        self._rng = random.Random(seed)
        self.injected: dict[str, int] = {name: 0 for name in FAULT_NAMES}

    def draw(self, applicable: tuple[str, ...]) -> str | None:
        """One uniform draw per applicable fault, in a fixed order: the first that hits wins."""
        hit = None
        for name in applicable:
            p = self.faults.get(name, 0.0)
            if p > 0 and self._rng.random() < p and hit is None:
                hit = name
        if hit:
            self.injected[hit] += 1
        return hit

    def preempted_at(self, instance_id: str, running_since: float, now: float) -> float | None:
        """When a running instance is preempted, if it is by `now`: a per-minute Bernoulli draw
        from a hash of (seed, instance, minute), so the answer does not depend on polling."""
        p = self.faults.get("preempt", 0.0)
        if p <= 0 or now <= running_since:
            return None
        minutes = int((now - running_since) // 60) + 1
        for minute in range(minutes):
            u, offset = _hash_uniform(self.seed, instance_id, minute)
            at = running_since + 60 * minute + 60 * offset
            if at > now:
                return None
            if u < p:
                return at
        return None


def _hash_uniform(seed: int, key: str, minute: int) -> tuple[float, float]:
    digest = hashlib.sha256(f"{seed}:{key}:{minute}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64, int.from_bytes(digest[8:16], "big") / 2**64


class Phase:
    CREATING = "creating"
    LOADING = "loading"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    STARTING = "starting"
    REBOOTING = "rebooting"
    DELETED = "deleted"
    PREEMPTED = "preempted"


TRANSIENT_SECONDS = 1.0  # how long stopping / starting / rebooting last


@dataclass
class SimInstance:
    """A simulated instance. Its phase is computed from the clock, never advanced by a ticker."""

    id: str
    account: str  # the API key that owns it
    created_at: float
    ready_after: float
    marker: str | None = None  # label / name / idempotency key the create carried
    data: dict[str, Any] = field(default_factory=dict)  # vendor-specific fields
    running_since: float | None = None  # set lazily when it first runs, and on each start
    stopped_at: float | None = None
    start_requested_at: float | None = None
    reboot_requested_at: float | None = None
    deleted_at: float | None = None
    preempted: float | None = None

    def phase(self, now: float, faults: FaultInjector) -> str:
        if self.deleted_at is not None and now >= self.deleted_at:
            return Phase.DELETED
        if self.preempted is not None:
            return Phase.PREEMPTED
        if self.stopped_at is not None:
            return Phase.STOPPING if now < self.stopped_at + TRANSIENT_SECONDS else Phase.STOPPED
        ready_at = self.created_at + self.ready_after
        if now < ready_at:
            return Phase.CREATING if now < self.created_at + self.ready_after / 2 else Phase.LOADING
        if self.running_since is None:
            self.running_since = ready_at
        at = faults.preempted_at(self.id, self.running_since, now)
        if at is not None:
            self.preempted = at
            return Phase.PREEMPTED
        if self.start_requested_at is not None and now < self.start_requested_at + TRANSIENT_SECONDS:
            return Phase.STARTING
        if self.reboot_requested_at is not None and now < self.reboot_requested_at + TRANSIENT_SECONDS:
            return Phase.REBOOTING
        return Phase.RUNNING

    def is_gone(self, now: float, faults: FaultInjector) -> bool:
        return self.phase(now, faults) in (Phase.DELETED, Phase.PREEMPTED)


@dataclass(frozen=True, slots=True)
class Gate:
    response: Response | None
    fault: str | None = None


@dataclass(frozen=True, slots=True)
class Call:
    """A vendor API call that passed authentication and the gate."""

    account: str  # the API key it acts for
    fault: str | None = None  # the call-specific fault drawn ("lost", "malformed"...), for the route to act on


@dataclass
class LedgerEntry:
    at: float
    account: str
    instance_id: str
    marker: str | None
    detail: dict[str, Any] = field(default_factory=dict)


class VendorSandbox:
    """Base of every simulated vendor: state, faults, rate limits and the admin routes."""

    name = "vendor"
    # endpoint -> (requests per second, burst); vendor modules set their vendor's figures (the
    # adapter module's LIMITS). A call books its endpoint's bucket, and `key_bucket`'s too when the
    # vendor limits the key as a whole.
    rate_limits: Mapping[str, tuple[float, float]] = {}
    key_bucket: str | None = None
    # The "preempt" fault takes back any running instance, or (RunPod) only interruptible ones.
    preempts_only_spot = False

    def __init__(self, config: SandboxConfig | None = None):
        self.config = config or SandboxConfig()
        # Every id base this sandbox's persisted state has used (state.py), so restored and new ids never collide.
        self.id_bases: list[int] = [self.config.id_base]
        self.clock = SandboxClock()
        self.faults = FaultInjector(self.config.faults, self.config.seed)
        self.rng = random.Random(self.config.seed)
        self.instances: dict[str, SimInstance] = {}
        self.creates: list[LedgerEntry] = []
        self.deletes: list[LedgerEntry] = []
        self.requests = 0
        self.rate_limited = 0
        self._limiters: dict[tuple[str, str], Gcra] = {}
        # The rate limits' time (monotonic seconds): a test stops it to see a burst refused whatever the machine's speed.
        self.rate_clock: Callable[[], float] = time.monotonic
        self._ids = itertools.count(1)
        # One-shot faults aimed at one call: (fault, instance id or None for the next such call), and
        # how many such calls to let through first (so "the second create fails" is testable).
        self.armed: list[tuple[str, str | None]] = []
        # Moving prices (sandbox/market.py): applied by `reprice` when the walk's step or window changes.
        self.market = MarketWalk(self.config.seed, self.name) if self.config.prices_move else None
        self._market_state: tuple[int, int] | None = None
        self._armed_after: list[int] = []

    def arm(self, fault: str, instance_id: str | None = None, *, after: int = 0) -> None:
        """Make the next call that can take `fault` (about `instance_id`, when given) take it, once;
        with `after`, the call after that many such calls went through."""
        if fault not in FAULT_NAMES:
            raise ValueError(f"unknown fault {fault!r}; expected one of {', '.join(FAULT_NAMES)}")
        if after < 0:
            raise ValueError("after must be 0 or more calls")
        self.armed.append((fault, instance_id))
        self._armed_after.append(after)

    def preempt(self, instance_id: str) -> SimInstance:
        """Take a running instance back now, as a spot interruption does. Raises ValueError when it
        is not running, or when this vendor preempts only spot instances and it is not one."""
        inst = self.instances.get(instance_id)
        now = self.now()
        if inst is None or inst.phase(now, self.faults) != Phase.RUNNING:
            raise ValueError(f"instance {instance_id!r} is not running")
        if self.preempts_only_spot and not getattr(inst, "interruptible", False):
            raise ValueError(f"instance {instance_id!r} is on demand: {self.name} preempts only spot instances")
        inst.preempted = now
        self.faults.injected["preempt"] = self.faults.injected.get("preempt", 0) + 1
        return inst

    def _take_armed(self, applicable: tuple[str, ...], instance_id: str | None) -> str | None:
        for n, (fault, target) in enumerate(self.armed):
            if fault in applicable and target in (None, instance_id):
                if self._armed_after[n] > 0:
                    self._armed_after[n] -= 1  # this call goes through; a later one takes the fault
                    continue
                del self.armed[n]
                del self._armed_after[n]
                self.faults.injected[fault] = self.faults.injected.get(fault, 0) + 1
                return fault
        return None

    # ----- shared behaviour for vendor routes -------------------------------------------------
    def now(self) -> float:
        return self.clock.now()

    def move_market(self) -> None:
        """Bring prices and listings to the present, when they move and the walk has moved on."""
        if self.market is None:
            return
        now = self.now()
        state = self.market.state_key(now)
        if state != self._market_state:
            self._market_state = state
            self.reprice(self.market, now)

    def reprice(self, market: MarketWalk, now: float) -> None:
        """Set the inventory's prices (base price * `market.factor`) and listings (`market.listed`)
        for `now`. Vendor modules whose API shows prices override; fal shows none."""
        return None

    def next_seq(self) -> int:
        return self.config.id_base + next(self._ids)

    def id_rng(self) -> random.Random:
        """Random instance ids of this process' id space (the same seed in another process or a
        later run draws other ids)."""
        return random.Random(f"{self.name}-ids:{self.config.seed}:{self.config.id_base}")

    # ----- persistence (sandbox/state.py): vendor state beyond instances and ledgers ----------------
    def extra_state(self) -> dict[str, Any]:
        return {}

    def restore_extra(self, state: dict[str, Any]) -> None:
        return None

    def check_rate(self, account: str, endpoint: str, now: float | None = None) -> float | None:
        """None if the call is within the limits, else the seconds until it would be. `now` (a
        monotonic time) is the call's arrival, by default the present."""
        if not self.config.rate_limits:
            return None
        buckets = [self.key_bucket] if self.key_bucket is not None else []
        buckets += [endpoint] if endpoint in self.rate_limits and endpoint != self.key_bucket else []
        waits = []
        for bucket in buckets:
            limiter = self._limiters.get((account, bucket))
            if limiter is None:
                rate, burst = self.rate_limits[bucket]
                limiter = self._limiters[(account, bucket)] = Gcra(rate * self.config.rate_scale, burst)
            ok, wait = limiter.try_acquire(self.rate_clock() if now is None else now)
            if not ok:
                waits.append(wait)
        if not waits:
            return None
        self.rate_limited += 1
        return max(waits)

    def authenticate(self, request: Request) -> str | Response:
        """The account (API key) a call acts for, or the vendor's refusal. Vendor modules override."""
        key = authorization_token(request)
        return key if key is not None else self.error_response(401, "unauthorized")

    async def open_call(
        self, request: Request, endpoint: str, extra_faults: tuple[str, ...] = (), *, instance_id: str | None = None,
        **auth: Any,
    ) -> Call | Response:
        """Authenticate (`auth` goes to the vendor's `authenticate`), then latency, rate limit and
        fault draw: a `Call` to serve, or the `Response` to send instead."""
        account = self.authenticate(request, **auth)
        if isinstance(account, Response):
            return account
        gate = await self.before_call(account, endpoint, extra_faults, instance_id=instance_id)
        return gate.response if gate.response is not None else Call(account, gate.fault)

    def route_error(self, status: int, detail: str) -> Response:
        """An unknown path or method (or another error the framework raised) in the vendor's envelope."""
        return JSONResponse({"detail": detail}, status_code=status)

    async def before_call(self, account: str, endpoint: str, extra_faults: tuple[str, ...] = (), *, instance_id: str | None = None) -> Gate:
        """Latency, rate limit and fault draw for one vendor API call.

        `gate.response`, when set, is sent instead of the real answer. `extra_faults` names the
        call-specific faults ("lost" for creates, "malformed" for lists); when one is drawn it is
        returned in `gate.fault` for the route to act on.
        """
        self.requests += 1
        self.move_market()
        if self.config.latency > 0:
            await asyncio.sleep(self.config.latency)
        wait = self.check_rate(account, endpoint)
        if wait is not None:
            return Gate(self.error_response(429, "rate_limited", retry_after=wait, endpoint=endpoint))
        fault = self._take_armed(extra_faults, instance_id) or self.faults.draw(GENERIC_FAULTS + extra_faults)
        if fault == "late_create":
            # In transit longer than the client waits: the client gives up, then the create arrives.
            await asyncio.sleep(self.config.late_seconds)
        if fault == "429":
            return Gate(self.error_response(429, "rate_limited", retry_after=1.0, endpoint=endpoint))
        if fault in ("500", "503"):
            return Gate(self.error_response(int(fault), "server_error"))
        if fault == "hang":
            await asyncio.sleep(self.config.hang_seconds)
            return Gate(self.error_response(504, "server_error"))
        if fault == "refuse_create":
            return Gate(self.capacity_refusal())
        return Gate(None, fault)

    def capacity_refusal(self) -> Response:
        """This vendor's answer to a create it has no capacity for. Vendor modules override."""
        return self.error_response(400, "capacity", message="no capacity for this create")

    async def lost_response(self) -> Response:
        """The work is committed, but the client never gets the answer: hold it past the client's
        timeout, then fail the way a proxy in front of the vendor would."""
        await asyncio.sleep(self.config.hang_seconds)
        return Response("<html><body><h1>502 Bad Gateway</h1></body></html>", status_code=502, media_type="text/html")

    def error_response(self, status: int, kind: str, *, retry_after: float | None = None, endpoint: str = "", message: str | None = None) -> Response:
        """Render an error in this vendor's envelope. Vendor modules override."""
        headers = {"Retry-After": f"{max(retry_after, 0.001):.3f}"} if retry_after is not None else None
        return JSONResponse({"error": kind, "message": message or kind}, status_code=status, headers=headers)

    def record_create(self, instance: SimInstance, **detail: Any) -> None:
        if self._take_armed(("stall_create",), None) or self.faults.draw(("stall_create",)):
            instance.ready_after = STALLED_SECONDS
        self.instances[instance.id] = instance
        self.creates.append(LedgerEntry(self.now(), instance.account, instance.id, instance.marker, detail))

    def record_delete(self, instance: SimInstance) -> None:
        instance.deleted_at = self.now()
        self.deletes.append(LedgerEntry(self.now(), instance.account, instance.id, instance.marker))

    def account_instances(self, account: str) -> list[SimInstance]:
        now = self.now()
        return [i for i in self.instances.values() if i.account == account and not i.is_gone(now, self.faults)]

    def live_instance(self, account: str, instance_id: str) -> SimInstance | None:
        inst = self.instances.get(instance_id)
        if inst is None or inst.account != account or inst.is_gone(self.now(), self.faults):
            return None
        return inst

    # ----- truth for tests ---------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        now = self.now()
        return {
            "vendor": self.name,
            "seed": self.config.seed,
            "prices_move": self.config.prices_move,
            "clock": now,
            "faults": self.faults.faults,
            "injected": self.faults.injected,
            "requests": self.requests,
            "rate_limited": self.rate_limited,
            "instances": [
                {
                    "id": i.id,
                    "account": account_fingerprint(i.account),
                    "marker": i.marker,
                    "phase": i.phase(now, self.faults),
                    "created_at": i.created_at,
                    # when it stopped existing (deleted or preempted), read after `phase` settles it
                    "ended_at": i.deleted_at if i.deleted_at is not None else i.preempted,
                }
                for i in self.instances.values()
            ],
            "creates": [
                {"at": e.at, "account": account_fingerprint(e.account), "instance_id": e.instance_id, "marker": e.marker, **e.detail}
                for e in self.creates
            ],
            "deletes": [
                {"at": e.at, "account": account_fingerprint(e.account), "instance_id": e.instance_id, "marker": e.marker}
                for e in self.deletes
            ],
        }

    def admin_router(self) -> APIRouter:
        router = APIRouter(prefix="/_sandbox", include_in_schema=False)

        @router.get("/state")
        async def state() -> dict[str, Any]:
            return self.state()

        @router.get("/faults")
        async def get_faults() -> dict[str, float]:
            return self.faults.faults

        @router.put("/faults")
        async def put_faults(request: Request) -> dict[str, float]:
            body = await request.json()
            try:
                faults = parse_fault_spec(",".join(f"{k}={v}" for k, v in dict(body).items()))
            except (ValueError, TypeError) as exc:
                raise HTTPException(400, str(exc)) from None
            self.faults.faults = faults
            return faults

        @router.post("/arm")
        async def arm(request: Request) -> dict[str, Any]:
            body = dict(await request.json())
            try:
                after = body.get("after", 0)
                if not isinstance(after, int) or isinstance(after, bool):
                    raise ValueError("after must be a whole number of calls")
                self.arm(str(body.get("fault")), None if body.get("instance_id") is None else str(body["instance_id"]), after=after)
            except ValueError as exc:
                raise HTTPException(400, str(exc)) from None
            return {"armed": [{"fault": f, "instance_id": i} for f, i in self.armed]}

        @router.post("/preempt")
        async def preempt(request: Request) -> dict[str, Any]:
            body = dict(await request.json())
            try:
                inst = self.preempt(str(body.get("instance_id")))
            except ValueError as exc:
                raise HTTPException(409, str(exc)) from None
            return {"instance_id": inst.id, "preempted_at": inst.preempted}

        @router.put("/config")
        async def put_config(request: Request) -> dict[str, Any]:
            body = dict(await request.json())
            for key in ("latency", "ready_after", "hang_seconds", "late_seconds", "rate_scale"):
                if key in body:
                    setattr(self.config, key, float(body[key]))
            if "rate_limits" in body:
                self.config.rate_limits = bool(body["rate_limits"])
                self._limiters.clear()
            return {k: getattr(self.config, k) for k in ("latency", "ready_after", "hang_seconds", "rate_limits", "rate_scale")}

        @router.post("/clock/advance")
        async def advance(request: Request) -> dict[str, float]:
            body = dict(await request.json())
            self.clock.advance(float(body.get("seconds", 0)))
            return {"clock": self.now()}

        return router

    def create_app(self) -> FastAPI:
        """Vendor modules build their routes on this app."""
        app = FastAPI(title=f"{self.name} sandbox", docs_url=None, redoc_url=None, openapi_url=None)
        app.include_router(self.admin_router())
        app.state.sandbox = self

        @app.exception_handler(StarletteHTTPException)
        async def route_error(request: Request, exc: StarletteHTTPException) -> Response:
            # The admin routes keep FastAPI's answers; the vendor's routes answer in its envelope.
            if request.url.path.startswith("/_sandbox"):
                return await http_exception_handler(request, exc)
            return self.route_error(exc.status_code, str(exc.detail))

        return app
