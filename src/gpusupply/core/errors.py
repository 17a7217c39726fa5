"""Typed vendor errors. Adapters raise these; the engine decides by type, never by message.

Every error keeps the vendor's own message (`vendor_message`), with secrets already removed by the
HTTP layer (it never puts headers or query strings into messages).
"""

from __future__ import annotations


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


class NotFound(VendorError):
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
