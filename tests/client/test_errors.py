"""Error answers become exceptions that carry the server's status and message."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from gpusupply.client.errors import (
    ApiError,
    AuthenticationError,
    BadRequestError,
    BudgetExceededError,
    ClientError,
    ConflictError,
    GoneError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    ServiceUnavailableError,
    describe_detail,
    error_class,
    error_from_response,
    parse_retry_after,
)


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequestError), (401, AuthenticationError), (402, BudgetExceededError), (418, ClientError), (403, PermissionDeniedError),
        (404, NotFoundError), (409, ConflictError), (410, GoneError), (413, BadRequestError),
        (415, BadRequestError), (422, BadRequestError), (429, RateLimitError), (500, ServerError),
        (502, ServerError), (503, ServiceUnavailableError), (302, ApiError),
    ],
)
def test_each_status_has_its_exception(status: int, cls: type[ApiError]) -> None:
    assert error_class(status) is cls
    assert issubclass(cls, ApiError)


def test_families() -> None:
    assert issubclass(NotFoundError, ClientError) and issubclass(ServiceUnavailableError, ServerError)
    assert not issubclass(ServerError, ClientError)


@pytest.mark.parametrize(
    ("detail", "text"),
    [
        ("resource x is already deleted", "resource x is already deleted"),
        ([{"loc": ["body", "compute", "gpu_type"], "msg": "unknown GPU", "type": "value_error"}],
         "compute.gpu_type: unknown GPU"),
        ([{"loc": ["query", "limit"], "msg": "too big", "type": "x"}, {"loc": [], "msg": "bad", "type": "y"}],
         "query.limit: too big; bad"),
        ([], "invalid request"),
        ({"odd": 1}, "{'odd': 1}"),
    ],
)
def test_detail_as_one_line(detail: Any, text: str) -> None:
    assert describe_detail(detail) == text


def test_a_422_keeps_its_field_errors_and_the_request_id() -> None:
    detail = [{"loc": ["body", "ssh_public_key"], "msg": "not an OpenSSH public key", "type": "value_error"}]
    error = error_from_response(httpx.Response(422, json={"detail": detail}, headers={"X-Request-ID": "req-7"}))
    assert isinstance(error, BadRequestError)
    assert error.status == 422 and error.errors == detail and error.request_id == "req-7"
    assert str(error) == "ssh_public_key: not an OpenSSH public key (HTTP 422)"


def test_an_answer_that_is_not_json_still_says_something() -> None:
    error = error_from_response(httpx.Response(502, text="upstream connect error"))
    assert isinstance(error, ServerError) and error.message == "upstream connect error"
    error = error_from_response(httpx.Response(502, text="<html>\n<body>Bad gateway</body>\n</html>"))
    assert error.message == "Bad Gateway"


def test_retry_after_is_read_in_both_forms() -> None:
    assert parse_retry_after(None) is None
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-4") == 0.0
    assert parse_retry_after("soon") is None
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 20 <= (parse_retry_after(later) or 0) <= 30
    earlier = format_datetime(datetime.now(UTC) - timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(earlier) == 0.0
    error = error_from_response(httpx.Response(429, json={"detail": "slow down"}, headers={"Retry-After": "7"}))
    assert isinstance(error, RateLimitError) and error.retry_after == 7.0
