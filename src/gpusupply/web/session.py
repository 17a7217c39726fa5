"""The console's session: the API key in an HttpOnly, SameSite=Strict cookie, and a CSRF token
derived from it.

The cookie holds `<nonce>.<api key>`. The nonce is new at every sign-in, so every session has its
own CSRF token, HMAC-SHA256(api key, "csrf:" + nonce): any replica can check it without a session
table, and nobody can compute it without the cookie, which page scripts cannot read. The key is
checked against the database on every request (a revoked key ends the session at once).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from gpusupply.db.session import Database
from gpusupply.services.keys import Principal, authenticate

SESSION_COOKIE = "gs_session"
FLASH_COOKIE = "gs_flash"
SESSION_MAX_AGE = 12 * 3600  # sign in again after 12 hours
COOKIE_PATH = "/console"
_NONCE_SHAPE = re.compile(r"[A-Za-z0-9_-]{16,64}")
_TOKEN_SHAPE = re.compile(r"gsk_[A-Za-z0-9_-]{20,128}")


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    nonce: str
    token: str  # the API key; never rendered into a page

    @property
    def csrf_token(self) -> str:
        return hmac.new(self.token.encode(), f"csrf:{self.nonce}".encode(), hashlib.sha256).hexdigest()

    def csrf_matches(self, submitted: str | None) -> bool:
        return submitted is not None and hmac.compare_digest(self.csrf_token, submitted)


def new_session(token: str) -> ConsoleSession:
    return ConsoleSession(secrets.token_urlsafe(18), token.strip())


def encode_session(session: ConsoleSession) -> str:
    return f"{session.nonce}.{session.token}"


def decode_session(value: str | None) -> ConsoleSession | None:
    """The session in a cookie value, or None when it is missing or not of our shape."""
    if not value:
        return None
    nonce, _, token = value.partition(".")
    if not _NONCE_SHAPE.fullmatch(nonce) or not _TOKEN_SHAPE.fullmatch(token):
        return None
    return ConsoleSession(nonce, token)


async def principal_for(db: Database, session: ConsoleSession) -> Principal:
    """Who the session's key belongs to; raises `Unauthorized` for an unknown or revoked key."""
    return await authenticate(db, f"Bearer {session.token}")


def same_origin(origin: str | None, referer: str | None, host: str | None) -> bool:
    """Whether a state-changing request came from one of our own pages.

    Browsers send `Origin` on every cross-site POST; it must name the host the request was sent
    to. Without `Origin` the `Referer` is checked the same way; with neither (not a browser) the
    request passes, and the CSRF token still guards every signed-in form.
    """
    if not host:
        return False
    source = origin if origin and origin != "null" else referer
    if origin == "null":
        return False
    if not source:
        return True
    return urlsplit(source).netloc.lower() == host.lower()


def safe_return_path(path: str | None, default: str, prefix: str = COOKIE_PATH) -> str:
    """A redirect target from a form field: only a path inside the console, never another site."""
    if not path or (path != prefix and not path.startswith(prefix + "/")):
        return default
    if path.startswith("//") or "\\" in path or any(ch in path for ch in "\r\n\t") or not path.isprintable():
        return default
    parts = urlsplit(path)
    if parts.scheme or parts.netloc:
        return default
    return path
