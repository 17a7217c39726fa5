"""The SDK's logic, written once for the sync and the async client ("sans-IO").

A *flow* is a generator that yields *steps* and gets their outcomes sent back:

- `Request`: make one HTTP exchange; the driver sends back the `httpx.Response`, or throws the
  `httpx.TransportError` into the flow;
- `Sleep`: wait this many seconds;
- `Emit`: hand one item to the caller (iterators).

Retries, pagination and waiting are flows here; `GpuSupply` and `AsyncGpuSupply` only drive them
with blocking or async I/O (`drive_sync` / `drive_async`). Tests drive them with a fake clock.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import httpx
from pydantic import TypeAdapter
from pydantic import ValidationError as PydanticValidationError

from gpusupply.client.errors import (
    ApiConnectionError,
    GpuSupplyError,
    ResourceFailedError,
    ServerError,
    UnexpectedResponseError,
    WaitTimeoutError,
    error_from_response,
    parse_retry_after,
)
from gpusupply.contract.schemas import ResourceDetail

T = TypeVar("T")

RETRY_STATUSES = frozenset({429, 503})
# Methods whose request may be sent again when an earlier try may have reached the server.
REPEATABLE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT"})
IDEMPOTENCY_HEADER = "Idempotency-Key"


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP exchange, relative to the client's base URL."""

    method: str
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def repeatable(self) -> bool:
        """Safe to send again when the first try may have reached the server."""
        return self.method in REPEATABLE_METHODS or IDEMPOTENCY_HEADER in self.headers


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


@dataclass(frozen=True, slots=True)
class Emit:
    item: Any


Step = Request | Sleep | Emit
Flow = Generator[Step, Any, T]


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """A request and how to read its answer: `answer` is the type of a success body (parsed with
    pydantic; `str` for a text body such as CSV), `ok` the statuses that count as success."""

    request: Request
    answer: Any
    ok: frozenset[int] = frozenset({200, 201, 202})

    def parse(self, response: httpx.Response) -> T:
        if self.answer is str:
            return response.text  # type: ignore[return-value]  # T is str when the call answers text
        try:
            body = response.json()
        except ValueError as exc:
            raise UnexpectedResponseError(
                f"{self.request.method} {self.request.path}: the answer is not JSON (HTTP {response.status_code})"
            ) from exc
        try:
            return _adapter(self.answer).validate_python(body)
        except PydanticValidationError as exc:
            raise UnexpectedResponseError(
                f"{self.request.method} {self.request.path}: unexpected answer ({exc.error_count()} field errors: "
                f"{exc.errors()[0]['msg']})"
            ) from exc


_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}


def _adapter(answer: Any) -> TypeAdapter[Any]:
    if answer not in _ADAPTERS:
        _ADAPTERS[answer] = TypeAdapter(answer)
    return _ADAPTERS[answer]


# ----- retries -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When and how long to wait before sending a request again.

    Retried: 429 and 503 answers (honouring Retry-After), connection failures (the request never
    left), and other transport failures when the request is repeatable (GET, or carrying an
    Idempotency-Key). At most `max_retries` more tries. A Retry-After longer than
    `max_retry_after` is not waited for: the error is raised at once (it carries `retry_after`).
    """

    max_retries: int = 3
    backoff: float = 0.5  # first delay; doubles with each retry
    max_backoff: float = 8.0
    max_retry_after: float = 60.0

    def backoff_delay(self, retry: int, rng: Callable[[float, float], float] = random.uniform) -> float:
        """Exponential backoff with jitter: between half and all of backoff * 2**retry (capped)."""
        ceiling = min(self.max_backoff, self.backoff * (2**retry))
        return rng(ceiling / 2, ceiling)

    def delay(self, retry: int, retry_after: float | None) -> float | None:
        """Seconds to wait before retry number `retry` (0-based), or None: do not retry."""
        if retry >= self.max_retries:
            return None
        if retry_after is not None:
            return retry_after if retry_after <= self.max_retry_after else None
        return self.backoff_delay(retry)


NO_RETRIES = RetryPolicy(max_retries=0)


def send(call: Call[T], policy: RetryPolicy) -> Flow[T]:
    """Send `call` (retrying as `policy` allows) and return its parsed answer, or raise ApiError /
    ApiConnectionError."""
    retry = 0
    while True:
        try:
            response = yield call.request
        except httpx.TransportError as exc:
            never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
            delay = policy.delay(retry, None) if never_sent or call.request.repeatable else None
            if delay is None:
                raise ApiConnectionError(_transport_message(call.request, exc)) from exc
            yield Sleep(delay)
            retry += 1
            continue
        if response.status_code in call.ok:
            return call.parse(response)
        if response.status_code in RETRY_STATUSES:
            delay = policy.delay(retry, parse_retry_after(response.headers.get("Retry-After")))
            if delay is not None:
                yield Sleep(delay)
                retry += 1
                continue
        raise error_from_response(response)


def _transport_message(request: Request, exc: httpx.TransportError) -> str:
    what = {
        httpx.ConnectError: "could not connect",
        httpx.ConnectTimeout: "timed out connecting",
        httpx.ReadTimeout: "timed out waiting for the answer",
        httpx.WriteTimeout: "timed out sending the request",
        httpx.PoolTimeout: "timed out waiting for a free connection",
    }.get(type(exc), f"connection failed ({type(exc).__name__})")
    return f"{request.method} {request.path}: {what}"


# ----- pagination --------------------------------------------------------------------------------
def paginate(
    page: Callable[[int, int], Call[Any]],
    items_of: Callable[[Any], list[Any]],
    policy: RetryPolicy,
    *,
    page_size: int,
    key: Callable[[Any], Any] | None = None,
) -> Flow[None]:
    """Emit every item of every page (`page(limit, offset)`), until a short page or `total_count`.

    Offset paging can repeat an item when rows are added while paging (a newest-first list
    shifts), so items already emitted (by `key`) are skipped.
    """
    seen: set[Any] = set()
    offset = 0
    while True:
        answer = yield from send(page(page_size, offset), policy)
        items = items_of(answer)
        for item in items:
            identity = key(item) if key is not None else None
            if identity is not None:
                if identity in seen:
                    continue
                seen.add(identity)
            yield Emit(item)
        offset += len(items)
        if len(items) < page_size or offset >= answer.total_count:
            return


# ----- waiting -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class WaitPolicy:
    """How a wait helper polls: first after `interval`, then 1.5x longer each time up to
    `max_interval`, until `timeout` seconds have passed."""

    timeout: float = 900.0
    interval: float = 1.0
    max_interval: float = 15.0
    growth: float = 1.5

    def __post_init__(self) -> None:
        if self.timeout < 0 or self.interval <= 0 or self.max_interval < self.interval:
            raise ValueError("wait: timeout >= 0 and 0 < interval <= max_interval")

    def intervals(self) -> Iterator[float]:
        interval = self.interval
        while True:
            yield interval
            interval = min(self.max_interval, interval * self.growth)


def _changed(last: ResourceDetail, now: ResourceDetail) -> bool:
    if now.status != last.status:
        return True
    return now.resource_type == "cluster" and now.status_message != last.status_message


def wait_for_status(
    get: Callable[[], Call[ResourceDetail]],
    policy: RetryPolicy,
    wait: WaitPolicy,
    *,
    targets: Collection[str],
    fail_on: Collection[str] = (),
    clock: Callable[[], float],
    on_update: Callable[[ResourceDetail], None] | None = None,
) -> Flow[ResourceDetail]:
    """Poll `get()` until the resource's status is in `targets` and return it.

    Raises ResourceFailedError when the status is in `fail_on`, WaitTimeoutError when `wait.timeout`
    passes first. A server that is briefly unreachable or failing (after the request's own retries)
    does not end the wait; a 4xx does (the resource is not there, or the key is wrong).
    `on_update` is called with each state read whose status differs from the previous one (for a
    cluster also its progress, "1/2 nodes running").
    """
    deadline = clock() + wait.timeout
    last: ResourceDetail | None = None
    trouble: GpuSupplyError | None = None
    for interval in wait.intervals():
        try:
            resource = yield from send(get(), policy)
        except (ApiConnectionError, ServerError) as exc:
            trouble = exc
        else:
            trouble = None
            if on_update is not None and (last is None or _changed(last, resource)):
                on_update(resource)
            last = resource
            if resource.status in targets:
                return resource
            if resource.status in fail_on:
                reason = f": {resource.status_message}" if resource.status_message else ""
                raise ResourceFailedError(f"resource {resource.resource_id} is {resource.status}{reason}", resource)
        left = deadline - clock()
        if left <= 0:
            break
        yield Sleep(min(interval, left))
    wanted = " or ".join(sorted(targets))
    seen = f"; it is {last.status}" if last is not None else ""
    problem = f"; last error: {trouble}" if trouble is not None else ""
    raise WaitTimeoutError(f"gave up waiting for {wanted} after {wait.timeout:g} s{seen}{problem}", last)


# ----- drivers -----------------------------------------------------------------------------------
class Outcome:
    """What to send back into a flow after a step: a value, or an exception to throw into it."""

    __slots__ = ("error", "value")

    def __init__(self, value: Any = None, error: BaseException | None = None) -> None:
        self.value = value
        self.error = error

    def resume(self, flow: Flow[Any]) -> Step:
        """The flow's next step (raises StopIteration with the flow's result when it is done)."""
        if self.error is not None:
            return flow.throw(self.error)
        return flow.send(self.value)


__all__ = [
    "NO_RETRIES",
    "Call",
    "Emit",
    "Flow",
    "Outcome",
    "Request",
    "RetryPolicy",
    "Sleep",
    "WaitPolicy",
    "paginate",
    "send",
    "wait_for_status",
]
