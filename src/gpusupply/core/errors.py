"""Typed vendor errors. Adapters raise these; the engine decides by type, never by message.

Every error keeps the vendor's own message (`vendor_message`), with secrets already removed by the
HTTP layer (it never puts headers or query strings into messages).
"""

from __future__ import annotations

from typing import Any


class VendorError(Exception):
    """Base class. `retryable` says whether the same call may be repeated as it is."""

    retryable = False

    def __init__(self, vendor: str, message: str, *, status: int | None = None, vendor_message: str | None = None):
        super().__init__(f"{vendor}: {message}")
        self.vendor = vendor
        self.message = message
        self.status = status
        self.vendor_message = vendor_message if vendor_message is not None else message


class RateLimited(VendorError):
    retryable = True

    def __init__(self, vendor: str, message: str, *, retry_after: float | None = None, **kw):
        super().__init__(vendor, message, **kw)
        self.retry_after = retry_after


class NotFoundOnVendor(VendorError):
    """The instance (or other object) does not exist. On delete this means: gone."""


class CapacityGone(VendorError):
    """The offer can no longer be had (Vast no_such_ask, Nebula out of stock). Fail over."""


class InvalidRequest(VendorError):
    """The vendor refused the request as malformed. Repeating it will not help."""


class AuthFailed(VendorError):
    """The API key was refused (401/403)."""


class VendorUnavailable(VendorError):
    """5xx, timeout, connection failure or a malformed body. For a create, the outcome is unknown."""

    retryable = True


class Unsupported(VendorError):
    """The vendor has no such operation (for example stop on fal)."""


class RecoveryWindowPassed(VendorError):
    """A create's outcome is unknown and the vendor's idempotency window has closed (fal: 10 min):
    replaying the key could create a second instance, so recovery by key is no longer possible."""


# ----- Service errors: a request the service refuses. Not vendor errors: these carry the HTTP
# status the API answers with, so services stay free of FastAPI and the CLI/console reuse them.


class ServiceError(Exception):
    status_code = 400

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.detail = detail
        self.headers = headers


class NotFoundError(ServiceError):
    status_code = 404


class ConflictError(ServiceError):
    status_code = 409


class GoneError(ServiceError):
    status_code = 410


class PayloadTooLarge(ServiceError):
    status_code = 413


class UnsupportedMediaType(ServiceError):
    status_code = 415


class ServiceUnavailable(ServiceError):
    """A dependency (a vendor's catalog) cannot answer now; retry after `retry_after` seconds."""

    status_code = 503

    def __init__(self, detail: str, *, retry_after: int = 30):
        super().__init__(detail, headers={"Retry-After": str(retry_after)})


class UnprocessableError(ServiceError):
    """Well-formed but invalid input. `loc` says where, as in FastAPI's 422 answers."""

    status_code = 422

    def __init__(
        self,
        detail: str,
        *,
        loc: tuple[str | int, ...] = ("body",),
        kind: str = "value_error",
        errors: list[dict[str, Any]] | None = None,
    ):
        super().__init__(detail)
        # FastAPI's shape: [{"loc": [...], "msg": "...", "type": "..."}]
        self.errors = errors if errors is not None else [{"loc": list(loc), "msg": detail, "type": kind}]


class Unauthorized(ServiceError):
    status_code = 401

    def __init__(self, detail: str = "Not authenticated"):
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"})
