"""The SDK's shared logic, driven without I/O: retries, paging and waiting against scripted answers
and a fake clock (nothing sleeps)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from gpusupply.client import calls
from gpusupply.client.errors import (
    ApiConnectionError,
    AuthenticationError,
    NotFoundError,
    RateLimitError,
    ResourceFailedError,
    ServiceUnavailableError,
    WaitTimeoutError,
)
from gpusupply.client.flows import (
    Call,
    Emit,
    Flow,
    Request,
    RetryPolicy,
    Sleep,
    WaitPolicy,
    paginate,
    send,
    wait_for_status,
)
from gpusupply.contract.schemas import ResourceDetail, ResourceList

RID = uuid.UUID("9c0ea45f-1c4a-4150-9ad1-87a35a4aca89")
NOW = "2026-11-22T21:33:02Z"


def answer(status: int, body: Any = None, **headers: str) -> httpx.Response:
    named = {name.replace("_", "-"): value for name, value in headers.items()}
    return httpx.Response(status, json=body if body is not None else {"detail": f"status {status}"}, headers=named)


def resource(status: str, message: str | None = None) -> dict[str, Any]:
    return {
        "resource_id": str(RID), "resource_type": "vm", "name": None, "status": status, "vendor": "nebula",
        "vendor_region": "CANADA", "region": "US", "gpu_type": "nvidia-rtx-4090-24gb", "gpu_family": "RTX4090",
        "gpu_count": 1, "offer_id": None, "pricing_total_hourly": 0.5, "created_at": NOW,
        "access": {"external_ip": None, "internal_ip": None, "ssh_command": None, "ssh_port": None},
        "status_message": message, "spec": {}, "linked_resources": [], "offer_history": [], "valid_from": None,
        "valid_to": None, "last_synced_at": None, "procurement_id": str(uuid.uuid4()), "vendor_status": None,
        "pending_action": None, "delete_requested_at": None, "events_url": f"/resources/{RID}/events",
    }


class Script:
    """Drives a flow: answers each Request from a list (a Response, or an exception to throw),
    records every step, and moves a fake clock on each Sleep."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[Request] = []
        self.sleeps: list[float] = []
        self.emitted: list[Any] = []
        self.now = 1000.0

    def clock(self) -> float:
        return self.now

    def run(self, flow: Flow[Any]) -> Any:
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                step = flow.throw(error) if error is not None else flow.send(value)
            except StopIteration as stop:
                return stop.value
            value, error = None, None
            if isinstance(step, Sleep):
                self.sleeps.append(step.seconds)
                self.now += step.seconds
            elif isinstance(step, Emit):
                self.emitted.append(step.item)
            else:
                self.requests.append(step)
                self.now += 0.01
                outcome = self.answers.pop(0)
                if isinstance(outcome, Exception):
                    error = outcome
                else:
                    value = outcome


POLICY = RetryPolicy(max_retries=3, backoff=0.5, max_backoff=8.0, max_retry_after=60.0)
GPUS = calls.available_gpus()


# ----- retry policy ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("retry", "retry_after", "expected"),
    [
        (0, 2.0, 2.0),  # Retry-After is honoured exactly
        (2, 0.0, 0.0),
        (0, 60.0, 60.0),  # at the bound
        (0, 61.0, None),  # longer than we wait: give up at once
        (3, 1.0, None),  # out of retries
        (3, None, None),
    ],
)
def test_retry_delay(retry: int, retry_after: float | None, expected: float | None) -> None:
    assert POLICY.delay(retry, retry_after) == expected


@pytest.mark.parametrize(("retry", "ceiling"), [(0, 0.5), (1, 1.0), (2, 2.0), (4, 8.0), (9, 8.0)])
def test_backoff_doubles_with_jitter_up_to_the_cap(retry: int, ceiling: float) -> None:
    policy = RetryPolicy(max_retries=10)
    assert policy.backoff_delay(retry, rng=lambda low, high: low) == ceiling / 2
    assert policy.backoff_delay(retry, rng=lambda low, high: high) == ceiling
    assert ceiling / 2 <= policy.backoff_delay(retry) <= ceiling


# ----- send ------------------------------------------------------------------------------------
def test_503_and_429_are_retried_honouring_retry_after() -> None:
    script = Script(answer(503, Retry_After="2"), answer(429, Retry_After="0"), answer(200, {"H100": ["x"]}))
    assert script.run(send(GPUS, POLICY)) == {"H100": ["x"]}
    assert script.sleeps == [2.0, 0.0]
    assert len(script.requests) == 3 and script.requests[0] is script.requests[2]


def test_retries_are_bounded_and_the_last_error_is_raised() -> None:
    script = Script(*[answer(429, {"detail": "slow down"}, Retry_After="1")] * 4)
    with pytest.raises(RateLimitError) as caught:
        script.run(send(GPUS, POLICY))
    assert len(script.requests) == 4 and script.sleeps == [1.0, 1.0, 1.0]
    assert caught.value.status == 429 and caught.value.message == "slow down" and caught.value.retry_after == 1.0


def test_a_retry_after_beyond_the_bound_is_not_waited_for() -> None:
    script = Script(answer(503, Retry_After="3600"))
    with pytest.raises(ServiceUnavailableError) as caught:
        script.run(send(GPUS, POLICY))
    assert script.sleeps == [] and caught.value.retry_after == 3600.0


def test_503_without_retry_after_backs_off() -> None:
    script = Script(answer(503), answer(503), answer(200, {}))
    script.run(send(GPUS, POLICY))
    assert len(script.sleeps) == 2 and 0.25 <= script.sleeps[0] <= 0.5 and 0.5 <= script.sleeps[1] <= 1.0


@pytest.mark.parametrize("status", [400, 401, 404, 409, 410, 422, 500, 502])
def test_other_errors_are_not_retried(status: int) -> None:
    script = Script(answer(status))
    with pytest.raises(Exception) as caught:
        script.run(send(GPUS, POLICY))
    assert len(script.requests) == 1 and caught.value.status == status  # type: ignore[attr-defined]


def _procure_call(key: str | None) -> Call[Any]:
    body = calls.ProcureRequest(offer_id=RID, ssh_public_key="ssh-ed25519 AAAA x")
    call = calls.procure(body, idempotency_key=key or "k")
    if key is None:  # the same POST without its key
        return Call(Request("POST", call.request.path, json=call.request.json), call.answer)
    return call


@pytest.mark.parametrize(
    ("call", "error", "retried"),
    [
        (GPUS, httpx.ConnectError("refused"), True),  # never left: always safe
        (_procure_call(None), httpx.ConnectError("refused"), True),
        (GPUS, httpx.ReadTimeout("slow"), True),  # a GET may be repeated
        (_procure_call("key-1"), httpx.ReadTimeout("slow"), True),  # the Idempotency-Key makes it safe
        (_procure_call(None), httpx.ReadTimeout("slow"), False),  # may have procured: never repeated
        (_procure_call(None), httpx.RemoteProtocolError("closed"), False),
    ],
)
def test_transport_failures_are_retried_only_when_safe(call: Call[Any], error: Exception, retried: bool) -> None:
    script = Script(error, error, error, error)
    with pytest.raises(ApiConnectionError) as caught:
        script.run(send(call, POLICY))
    assert len(script.requests) == (4 if retried else 1)
    assert call.request.path in str(caught.value)


def test_readiness_not_ready_is_an_answer() -> None:
    body = {"status": "not_ready", "database": "unreachable: OSError", "migration": None, "migration_head": "0001"}
    script = Script(answer(503, body))
    assert script.run(send(calls.readiness(), POLICY)).status == "not_ready"
    assert script.sleeps == []


# ----- paging ----------------------------------------------------------------------------------
def summary(index: int) -> dict[str, Any]:
    body = resource("running")
    body["resource_id"] = str(uuid.UUID(int=index))
    return body


def page(items: list[int], total: int) -> httpx.Response:
    return answer(200, {"resources": [summary(i) for i in items], "total_count": total, "limit": 2, "offset": 0})


def resource_pages() -> Callable[[int, int], Call[ResourceList]]:
    return lambda limit, offset: calls.list_resources(limit=limit, offset=offset)


def test_paging_emits_every_item_once_and_stops_at_the_total() -> None:
    # A new resource arrived while paging: item 2 shifts onto the second page too.
    script = Script(page([1, 2], 4), page([2, 3], 5), page([4, 5], 5))
    script.run(paginate(resource_pages(), lambda a: a.resources, POLICY, page_size=2, key=lambda r: r.resource_id))
    assert [r.resource_id.int for r in script.emitted] == [1, 2, 3, 4, 5]
    assert [r.params["offset"] for r in script.requests] == ["0", "2", "4"]


def test_paging_stops_on_a_short_page() -> None:
    script = Script(page([1, 2], 3), page([3], 3))
    script.run(paginate(resource_pages(), lambda a: a.resources, POLICY, page_size=2))
    assert len(script.emitted) == 3 and len(script.requests) == 2


def test_paging_stops_on_an_empty_first_page() -> None:
    script = Script(page([], 0))
    script.run(paginate(resource_pages(), lambda a: a.resources, POLICY, page_size=2))
    assert script.emitted == [] and len(script.requests) == 1


# ----- waiting ---------------------------------------------------------------------------------
def waiting(script: Script, targets: set[str], fail_on: set[str], **wait: Any) -> Flow[ResourceDetail]:
    seen: list[str] = []
    script.updates = seen  # type: ignore[attr-defined]
    return wait_for_status(
        lambda: calls.get_resource(RID),
        POLICY,
        WaitPolicy(**wait),
        targets=targets,
        fail_on=fail_on,
        clock=script.clock,
        on_update=lambda r: seen.append(r.status),
    )


def test_wait_returns_when_the_status_is_reached_with_growing_intervals() -> None:
    statuses = ["pending", "pending", "provisioning", "provisioning", "provisioning", "running"]
    script = Script(*[answer(200, resource(s)) for s in statuses])
    done = script.run(waiting(script, {"running"}, {"failed"}, timeout=100, interval=1, max_interval=3))
    assert done.status == "running"
    assert script.sleeps == [1, 1.5, 2.25, 3, 3]
    assert script.updates == ["pending", "provisioning", "running"]  # type: ignore[attr-defined]


def test_wait_raises_when_the_resource_fails() -> None:
    script = Script(answer(200, resource("pending")), answer(200, resource("failed", "no capacity anywhere")))
    with pytest.raises(ResourceFailedError, match="is failed: no capacity anywhere") as caught:
        script.run(waiting(script, {"running"}, {"failed", "terminated"}))
    assert caught.value.resource.status == "failed"


def test_wait_times_out_with_the_last_state_seen() -> None:
    script = Script(*[answer(200, resource("provisioning"))] * 20)
    with pytest.raises(WaitTimeoutError, match="after 10 s; it is provisioning") as caught:
        script.run(waiting(script, {"running"}, set(), timeout=10, interval=1, max_interval=4))
    assert caught.value.resource is not None and caught.value.resource.status == "provisioning"
    assert script.now - 1000.0 < 10.5  # the last sleep is cut to the deadline
    assert sum(script.sleeps) <= 10


def test_a_zero_timeout_checks_once() -> None:
    script = Script(answer(200, resource("pending")))
    with pytest.raises(WaitTimeoutError):
        script.run(waiting(script, {"running"}, set(), timeout=0))
    assert len(script.requests) == 1


def test_wait_rides_out_a_server_outage_but_not_a_missing_resource() -> None:
    outage = [answer(503, Retry_After="0")] * 4  # one poll's retries all fail
    script = Script(*outage, answer(200, resource("running")))
    assert script.run(waiting(script, {"running"}, set(), timeout=100)).status == "running"

    script = Script(answer(404, {"detail": "resource not found"}))
    with pytest.raises(NotFoundError):
        script.run(waiting(script, {"running"}, set()))
    script = Script(answer(401, {"detail": "bad key"}))
    with pytest.raises(AuthenticationError):
        script.run(waiting(script, {"running"}, set()))


def test_wait_timeout_names_the_outage() -> None:
    script = Script(*[httpx.ConnectError("refused")] * 40)
    with pytest.raises(WaitTimeoutError, match="could not connect") as caught:
        script.run(waiting(script, {"running"}, set(), timeout=3, interval=1, max_interval=1))
    assert caught.value.resource is None


@pytest.mark.parametrize("bad", [{"timeout": -1}, {"interval": 0}, {"interval": 5, "max_interval": 1}])
def test_wait_policy_refuses_nonsense(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        WaitPolicy(**bad)


def test_timestamps_parse_as_utc() -> None:
    script = Script(answer(200, resource("running")))
    done = script.run(send(calls.get_resource(RID), POLICY))
    assert done.created_at == datetime(2026, 11, 22, 21, 33, 2, tzinfo=UTC)
