"""What operators see of the API: Prometheus `/metrics`, a request id per request, access logs.

- `GET /metrics` (no authentication, not in the OpenAPI document; see docs/metrics.md) exposes
  every metric `gpusupply.metrics` declares. Two are computed when scraped: resources by status
  (one GROUP BY over the resources table, the same query the engine runs periodically) and the
  age of each vendor's offer catalog. `gpusupply worker --metrics-port` serves the same route
  alone (`metrics_only_app`).
- Every HTTP request gets an id: the caller's `X-Request-ID` when it is sane (1-128 characters of
  letters, digits and `._:-`), else a new one. It is returned in the `X-Request-ID` answer
  header and stamped on every log record written while the request is served.
- Every request is counted and timed by route template (`/resources/{resource_id}`, never the
  raw path, so the label set stays bounded) and logged as one `request` line.
- An unexpected exception becomes the API's bare 500 here, inside this middleware, so the answer
  still carries the request id and the error log names it.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from datetime import datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gpusupply.api import errors
from gpusupply.logging import request_id_var
from gpusupply.metrics import HTTP_LATENCY, HTTP_REQUESTS, OFFER_CACHE_AGE

log = logging.getLogger(__name__)
access_log = logging.getLogger("gpusupply.http")

REQUEST_ID_HEADER = "X-Request-ID"
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED_ROUTE = "<unmatched>"
# Probes and scrapes arrive every few seconds; their access lines are debug-level noise.
QUIET_PATHS = frozenset({"/metrics", "/healthz", "/readyz"})
SCRAPE_QUERY_TIMEOUT = 2.0  # a slow database must not hang the scrape


def accepted_request_id(value: str | None) -> str | None:
    """The caller's request id if it is safe to echo and log, else None."""
    if value is None:
        return None
    value = value.strip()
    return value if _SANE_REQUEST_ID.fullmatch(value) else None


def new_request_id() -> str:
    return uuid.uuid4().hex


def route_label(scope: Scope) -> str:
    """The route template the request matched (`/resources/{resource_id}`), for metric labels."""
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return template if isinstance(template, str) and template else UNMATCHED_ROUTE


def method_label(method: str) -> str:
    return method if method in _METHODS else "OTHER"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return value.decode("latin-1")
    return None


class ObservabilityMiddleware:
    """Request id, metrics and one access line per HTTP request (pure ASGI: no body buffering)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = accepted_request_id(_header(scope, b"x-request-id")) or new_request_id()
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        answer: dict[str, Any] = {"status": 500, "started": False}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer["status"], answer["started"] = message["status"], True
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            if answer["started"]:
                log.exception("unhandled error after the answer started", extra={"path": scope.get("path")})
                raise
            response = await errors.unexpected_error(Request(scope), exc)
            await response(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            self._record(scope, answer["status"], elapsed)
            request_id_var.reset(token)

    @staticmethod
    def _record(scope: Scope, status: int, elapsed: float) -> None:
        method, route = method_label(scope["method"]), route_label(scope)
        HTTP_REQUESTS.labels(method, route, str(status)).inc()
        HTTP_LATENCY.labels(method, route).observe(elapsed)
        path = scope.get("path", "")
        client = scope.get("client")
        access_log.log(
            logging.DEBUG if path in QUIET_PATHS else logging.INFO,
            "request",
            extra={
                "method": scope["method"],
                "path": path,  # never the query string
                "route": route,
                "status": status,
                "duration_ms": round(elapsed * 1000, 2),
                "client": client[0] if client else None,
            },
        )


async def update_resource_gauge(ctx: Any) -> dict[str, int] | None:
    """Resources by status into the gauge, with the engine's own query (None when the database
    could not answer in time: the gauge keeps its last values)."""
    from gpusupply.engine.context import EngineContext
    from gpusupply.engine.jobs import count_resources

    try:
        return await asyncio.wait_for(
            count_resources(EngineContext(ctx.db, ctx.vendors, ctx.settings)), SCRAPE_QUERY_TIMEOUT
        )
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        log.warning("resource metrics unavailable", extra={"error": type(exc).__name__})
        return None


def update_offer_cache_age(ctx: Any, now: datetime) -> None:
    for status in ctx.catalog.status():
        if status.fetched_at is not None:
            OFFER_CACHE_AGE.labels(status.vendor).set(max(0.0, (now - status.fetched_at).total_seconds()))


async def update_scrape_gauges(ctx: Any) -> None:
    from gpusupply.db.models import utcnow

    await update_resource_gauge(ctx)
    update_offer_cache_age(ctx, utcnow())


async def metrics(request: Request) -> Response:
    """Prometheus text exposition of every gpusupply metric (and the process collectors)."""
    ctx = getattr(request.app.state, "ctx", None)
    home: asyncio.AbstractEventLoop | None = getattr(request.app.state, "ctx_loop", None)
    if ctx is not None:
        if home is None or home is asyncio.get_running_loop():
            await update_scrape_gauges(ctx)
        else:  # the database's connections belong to the process's own loop: query there
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(update_scrape_gauges(ctx), home))
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


def metrics_only_app(ctx: Any, ctx_loop: asyncio.AbstractEventLoop) -> Starlette:
    """`/metrics` alone, for a process without the API (`gpusupply worker --metrics-port`). It is
    served from its own thread, so a busy engine loop never delays a scrape's counters; the
    scrape-time gauges are still computed on `ctx_loop`, where `ctx.db` lives. `ctx` needs `db`,
    `vendors`, `settings` and `catalog`."""
    app = Starlette(routes=[Route("/metrics", metrics, methods=["GET"])])
    app.state.ctx, app.state.ctx_loop = ctx, ctx_loop
    return app


def install(app: FastAPI) -> None:
    """Add `/metrics` and the request middleware. Call it after the other middleware, so this one
    is the outermost and sees every answer (413s, 500s) with its time."""
    app.add_api_route("/metrics", metrics, methods=["GET"], include_in_schema=False)
    app.add_middleware(ObservabilityMiddleware)
