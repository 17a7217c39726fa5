"""The console's request plumbing, shared by every page in routes.py: the Jinja environment, the
responses (whole pages with the flash message, live fragments that answer 204 when unchanged,
redirects, error pages, all with the security headers), and the session checks (`signed_in`,
`checked_form`) with the two exception handlers that turn their failures into a sign-in redirect
or a 403 page."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.datastructures import FormData

from gpusupply.api.deps import get_ctx
from gpusupply.core.errors import Unauthorized
from gpusupply.services.keys import Principal
from gpusupply.web.forms import search_link
from gpusupply.web.session import (
    COOKIE_PATH,
    FLASH_COOKIE,
    SESSION_COOKIE,
    ConsoleSession,
    decode_session,
    principal_for,
    same_origin,
)
from gpusupply.web.views import (
    ACTION_TEXT,
    format_duration,
    iso,
    location_text,
    money,
    status_display,
    utc_text,
)

PREFIX = COOKIE_PATH
TEMPLATES = Path(__file__).parent / "templates"
POLL_SECONDS = 3  # how often the live fragments are re-read
SECURITY_HEADERS = {
    # Scripts and styles only from our own static files: no inline code, no eval (htmx's allowEval is off).
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",  # pages show tenant data: not kept for the back button after sign-out
}

environment = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
environment.globals.update(
    base=PREFIX,
    poll_seconds=POLL_SECONDS,
    money=money,
    utc_text=utc_text,
    iso=iso,
    status_display=status_display,
    location_text=location_text,
    format_duration=format_duration,
    action_text=ACTION_TEXT,
    search_link=search_link,
)


class SignInRequired(Exception):
    """No usable session: send the browser to the sign-in page (and back afterwards)."""

    def __init__(self, next_path: str | None, reason: str | None = None):
        super().__init__(reason or "sign in")
        self.next_path = next_path
        self.reason = reason


class FormRejected(Exception):
    """A POST that did not come from our own page (cross-site, or without the session's CSRF token)."""


@dataclass(frozen=True, slots=True)
class Visitor:
    session: ConsoleSession
    principal: Principal


# ----- responses ---------------------------------------------------------------------------------
def secured(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def render_text(template: str, **context: Any) -> str:
    return environment.get_template(template).render(**context)


# The flash after a procurement: the layout gives it its own id so the resource page can drop it.
PROCUREMENT_STARTED = "Procurement started: the instance is being created on the vendor. This page updates by itself."


def page(
    request: Request, template: str, visitor: Visitor | None, *, status_code: int = 200, stale_flash: str | None = None,
    **context: Any,
) -> HTMLResponse:
    """A whole page: the layout with the visitor, their CSRF token and the flash message, if any
    (but not `stale_flash`, a message that no longer holds)."""
    flash = read_flash(request)
    shown_flash = None if flash is not None and flash["message"] == stale_flash else flash
    context.setdefault("nav", None)
    html = render_text(
        template,
        visitor=visitor,
        csrf_token=visitor.session.csrf_token if visitor else "",
        flash=shown_flash,
        flash_started=PROCUREMENT_STARTED,
        here=request.url.path + (f"?{request.url.query}" if request.url.query else ""),
        **context,
    )
    response = HTMLResponse(html, status_code=status_code)
    if flash is not None:
        response.delete_cookie(FLASH_COOKIE, path=PREFIX)
    secured(response)
    return response


def fragment(request: Request, html: str, *, extra: str = "") -> Response:
    """A live fragment: 204 (htmx keeps what it shows) when it has not changed since the version
    the page holds, so unchanged content is not swapped, focus is kept and nothing is re-announced.
    `extra` (out-of-band swaps) goes along when it did change."""
    html, version = versioned(html)
    if request.query_params.get("v") == version:
        return secured(Response(status_code=204))
    return secured(HTMLResponse(html + extra))


def versioned(html: str) -> tuple[str, str]:
    """The fragment with its own version (a hash of its content) filled into its refresh URL."""
    version = hashlib.sha256(html.encode()).hexdigest()[:16]
    return html.replace("__VERSION__", version), version


def redirect(url: str, *, flash: tuple[str, str] | None = None) -> Response:
    response = RedirectResponse(url, status_code=303)
    if flash is not None:
        set_flash(response, *flash)
    return secured(response)


def set_flash(response: Response, tone: str, message: str) -> None:
    """A one-time message for the next page (after a redirect); the text is escaped when shown."""
    response.set_cookie(
        FLASH_COOKIE, quote(f"{tone}|{message}"[:1000]), max_age=60, path=PREFIX, httponly=True, samesite="strict"
    )


def read_flash(request: Request) -> dict[str, str] | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    tone, _, message = unquote(raw).partition("|")
    if tone not in ("ok", "error") or not message:
        return None
    return {"tone": tone, "message": message}


def error_page(request: Request, visitor: Visitor | None, status_code: int, message: str) -> HTMLResponse:
    return page(request, "error.html", visitor, status_code=status_code, status_code_text=status_code, message=message)


def bare_error_page(request: Request, status_code: int, message: str) -> Response:
    """An error page without the visitor (who may not be known: the database may be down)."""
    return secured(error_page(request, None, status_code, message))


# ----- the session -------------------------------------------------------------------------------
def is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true"


async def signed_in(request: Request) -> Visitor:
    """The visitor behind the session cookie; `SignInRequired` without a usable one."""
    session = decode_session(request.cookies.get(SESSION_COOKIE))
    next_path: str | None = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.method != "GET" or is_htmx(request):
        next_path = None
    if session is None:
        raise SignInRequired(next_path)
    try:
        principal = await principal_for(get_ctx(request).db, session)
    except Unauthorized as exc:
        raise SignInRequired(next_path, f"Your session ended: {exc.detail}.") from None
    return Visitor(session, principal)


async def checked_form(request: Request, visitor: Visitor | None) -> FormData:
    """The posted form, after checking it came from our own page (Origin) with the CSRF token."""
    if not same_origin(request.headers.get("origin"), request.headers.get("referer"), request.headers.get("host")):
        raise FormRejected("cross-site form")
    form = await request.form()
    if visitor is not None:
        submitted = form.get("csrf_token")
        if not visitor.session.csrf_matches(submitted if isinstance(submitted, str) else None):
            raise FormRejected("missing or wrong CSRF token")
    return form


def form_text(form: FormData) -> dict[str, str]:
    """Only the text fields of a form (a file upload is never expected)."""
    return {name: value for name, value in form.items() if isinstance(value, str)}


async def sign_in_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SignInRequired)
    target = f"{PREFIX}/sign-in"
    if exc.next_path:
        target += "?" + urlencode({"next": exc.next_path})
    if is_htmx(request):
        response: Response = Response(status_code=204, headers={"HX-Redirect": target})
    else:
        response = RedirectResponse(target, status_code=303)
    response.delete_cookie(SESSION_COOKIE, path=PREFIX)
    if exc.reason:
        set_flash(response, "error", exc.reason)
    return secured(response)


async def form_rejected(request: Request, exc: Exception) -> Response:
    return error_page(
        request,
        None,
        403,
        "This form could not be accepted: it did not come from a page of this console, or it is from an "
        "earlier session. Reload the page and try again.",
    )
