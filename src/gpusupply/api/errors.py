"""Error answers, FastAPI style: `{"detail": "..."}`, or for 422 `{"detail": [{"loc", "msg", "type"}]}`.

Service errors carry their HTTP status; validation errors never echo the input back (it may
be large); a database that is busy or down is a 503 with Retry-After, and anything unexpected a
500 that is logged with its traceback but never shown.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gpusupply.core.errors import ServiceError, UnprocessableError
from gpusupply.db.errors import is_bad_data, is_unavailable

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 256 * 1024  # any route; get_offers has its own 64 KB limit


async def service_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    detail = exc.errors if isinstance(exc, UnprocessableError) else exc.detail
    return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    unsupported = _unsupported_body_type(request, exc)
    if unsupported:
        return JSONResponse({"detail": f"unsupported Content-Type {unsupported!r}; send application/json"}, status_code=415)
    detail = [{"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "")} for err in exc.errors()]
    return JSONResponse({"detail": detail}, status_code=422)


def _unsupported_body_type(request: Request, exc: RequestValidationError) -> str | None:
    """The Content-Type of a JSON API body sent as something else (a form, text...), which pydantic
    would report as a puzzling "valid dictionary" error. The console's own forms are not API bodies."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if request.method not in _BODY_METHODS or not content_type or request.url.path.startswith("/console"):
        return None
    if content_type == "application/json" or content_type.endswith("+json"):
        return None
    if any(tuple(err.get("loc", ()))[:1] == ("body",) for err in exc.errors()):
        return content_type
    return None


async def http_error(request: Request, exc: Exception) -> Response:
    """FastAPI answers a body it cannot decode (not UTF-8) with a bare 400; make it our 422."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
        detail = [{"loc": ["body"], "msg": "the request body could not be read (send UTF-8 JSON)", "type": "body_invalid"}]
        return JSONResponse({"detail": detail}, status_code=422)
    return await http_exception_handler(request, exc)


DATABASE_RETRY_AFTER = "1"  # seconds: clients back off further on a repeat


async def database_error(request: Request, exc: Exception) -> Response:
    """Any database error: unavailable (down, restarting, locked, out of connections) is a 503 with
    Retry-After; a value the database refused is the caller's 422; anything else is our 500."""
    if not is_unavailable(exc):
        if is_bad_data(exc):
            log.warning("database refused a value", extra={"path": request.url.path, "error": type(exc).__name__})
            detail = [{"loc": ["body"], "msg": "a value is out of the range the service can store", "type": "value_error"}]
            return JSONResponse({"detail": detail}, status_code=422)
        return await unexpected_error(request, exc)
    log.warning("database unavailable", extra={"path": request.url.path, "error": type(exc).__name__})
    message = "the database is busy or unavailable; retry shortly"
    headers = {"Retry-After": DATABASE_RETRY_AFTER}
    page = _page_for(request)
    if page is not None:
        response = page(request, 503, "The service cannot reach its database right now. Try again in a few seconds.")
        response.headers.update(headers)
        return response
    return JSONResponse({"detail": message}, status_code=503, headers=headers)


def _page_for(request: Request) -> Callable[[Request, int, str], Response] | None:
    """The console's HTML error page for its own paths (set by the console as `app.state.error_page`)."""
    app = request.scope.get("app")
    render = getattr(getattr(app, "state", None), "error_page", None)
    prefix = getattr(getattr(app, "state", None), "error_page_prefix", None)
    if render is None or prefix is None or not request.url.path.startswith(prefix):
        return None
    return render


async def integrity_error(request: Request, exc: Exception) -> JSONResponse:
    log.warning("integrity error", extra={"path": request.url.path, "error": type(exc).__name__})
    return JSONResponse({"detail": "the request conflicted with a concurrent change; retry it"}, status_code=409)


async def unexpected_error(request: Request, exc: Exception) -> Response:
    if is_unavailable(exc):  # reached here past the handlers (e.g. raised in a middleware)
        return await database_error(request, exc)
    log.exception("unhandled error", extra={"path": request.url.path}, exc_info=exc)
    page = _page_for(request)
    if page is not None:
        return page(request, 500, "Something went wrong on our side; it has been logged.")
    return JSONResponse({"detail": "internal error"}, status_code=500)


def install(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, service_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    # OSError: the database driver could not connect at all (refused, unreachable, DNS).
    for db_error in (DBAPIError, PoolTimeout, OSError):
        app.add_exception_handler(db_error, database_error)
    app.add_exception_handler(IntegrityError, integrity_error)
    app.add_exception_handler(Exception, unexpected_error)
    app.add_middleware(BodySizeLimit, max_bytes=MAX_REQUEST_BYTES)


_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class BodySizeLimit:
    """413 for a POST/PUT/PATCH body over `max_bytes`: by Content-Length, or (chunked) by reading it first."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            if declared.isdigit() and int(declared) > self.max_bytes:
                await self._reject(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        if b"chunked" not in headers.get(b"transfer-encoding", b"").lower():
            await self.app(scope, receive, send)
            return
        # No length given: buffer the body (up to the limit) and hand it on in one piece.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._reject(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONResponse({"detail": f"request body is larger than {self.max_bytes} bytes"}, status_code=413)
        await response(scope, receive, send)
