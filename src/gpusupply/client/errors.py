"""Exceptions the SDK raises. Every one is a `GpuSupplyError`.

    GpuSupplyError
    ├── ApiError                 the server answered with an error status (status, message, detail)
    │   ├── ClientError          4xx
    │   │   ├── BadRequestError          400, 413, 415, 422 (`errors` lists a 422's fields)
    │   │   ├── AuthenticationError      401
    │   │   ├── BudgetExceededError      402 (a procurement your budget does not allow)
    │   │   ├── PermissionDeniedError    403
    │   │   ├── NotFoundError            404
    │   │   ├── ConflictError            409
    │   │   ├── GoneError                410 (an expired offer: search again)
    │   │   └── RateLimitError           429
    │   └── ServerError          5xx
    │       └── ServiceUnavailableError  503
    ├── ApiConnectionError       no answer at all (connection refused, timeout)
    ├── UnexpectedResponseError  an answer that is not what the API documents
    ├── WaitTimeoutError         a wait helper ran out of time (`resource`: the last state seen)
    └── ResourceFailedError      a wait helper saw the resource fail (`resource`)

Messages never contain the API key: the SDK only ever puts the server's `detail` in them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from gpusupply.contract.schemas import ResourceDetail


class GpuSupplyError(Exception):
    """Base class of every error the SDK raises."""


class ApiError(GpuSupplyError):
    """The server answered with an error status.

    `status`: the HTTP status; `message`: the server's explanation, as one line; `detail`: the
    `detail` field of the answer as sent (a string, or for 422 a list of field errors);
    `request_id`: the server's id of the request (quote it when reporting a problem);
    `retry_after`: seconds the server asked to wait, when it did.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        detail: Any = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{message} (HTTP {status})")
        self.status = status
        self.message = message
        self.detail = detail if detail is not None else message
        self.request_id = request_id
        self.retry_after = retry_after


class ClientError(ApiError):
    """4xx: the request was refused; repeating it as it is will not help."""


class BadRequestError(ClientError):
    """400, 413, 415 or 422: the request itself is wrong. `errors` holds a 422's field errors."""

    @property
    def errors(self) -> list[dict[str, Any]]:
        return self.detail if isinstance(self.detail, list) else []


class AuthenticationError(ClientError):
    """401: the API key is missing, malformed, unknown or revoked."""


class BudgetExceededError(ClientError):
    """402: the procurement would pass the tenant's hourly or monthly budget (the message names it)."""


class PermissionDeniedError(ClientError):
    """403: the key may not do this."""


class NotFoundError(ClientError):
    """404: no such object, or it belongs to another tenant."""


class ConflictError(ClientError):
    """409: the request conflicts with the current state (e.g. deleting twice)."""


class GoneError(ClientError):
    """410: the offer has expired; search again."""


class RateLimitError(ClientError):
    """429: too many requests (after the SDK's own retries)."""


class ServerError(ApiError):
    """5xx: the server failed."""


class ServiceUnavailableError(ServerError):
    """503: the service is not ready or its database is busy (after the SDK's own retries)."""


class ApiConnectionError(GpuSupplyError):
    """The server could not be reached or did not answer in time."""


class UnexpectedResponseError(GpuSupplyError):
    """The server answered something the API does not document (wrong shape, not JSON)."""


class WaitTimeoutError(GpuSupplyError):
    """A wait helper ran out of time. `resource` is the last state seen (None if never read)."""

    def __init__(self, message: str, resource: ResourceDetail | None = None) -> None:
        super().__init__(message)
        self.resource = resource


class ResourceFailedError(GpuSupplyError):
    """A wait helper saw the resource reach a status it cannot come back from (`resource`)."""

    def __init__(self, message: str, resource: ResourceDetail) -> None:
        super().__init__(message)
        self.resource = resource


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: BudgetExceededError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    410: GoneError,
    413: BadRequestError,
    415: BadRequestError,
    422: BadRequestError,
    429: RateLimitError,
    503: ServiceUnavailableError,
}


def error_class(status: int) -> type[ApiError]:
    """The exception class for an error status (pure)."""
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if 400 <= status < 500:
        return ClientError
    if status >= 500:
        return ServerError
    return ApiError


def describe_detail(detail: Any) -> str:
    """A FastAPI `detail` as one line: a string as it is; 422 field errors as `where: what; ...`."""
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                where = ".".join(str(part) for part in item.get("loc", ()) if part != "body")
                message = str(item.get("msg", "invalid"))
                parts.append(f"{where}: {message}" if where else message)
            else:
                parts.append(str(item))
        return "; ".join(parts) or "invalid request"
    return str(detail)


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (a number of seconds or an HTTP date), None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def error_from_response(response: httpx.Response) -> ApiError:
    """The exception for an error answer, carrying the server's status and message."""
    detail: Any = None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "detail" in body:
        detail = body["detail"]
    message = describe_detail(detail) if detail is not None else (response.reason_phrase or "error")
    text = response.text.strip() if detail is None else ""
    if text and len(text) <= 200 and "\n" not in text:
        message = text
    return error_class(response.status_code)(
        response.status_code,
        message,
        detail=detail,
        request_id=response.headers.get("X-Request-ID"),
        retry_after=parse_retry_after(response.headers.get("Retry-After")),
    )
