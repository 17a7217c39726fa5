"""The polled routes answered without FastAPI's routing and dependency solving.

`POST /get_offers`, `GET /resources`, `GET /resources/{id}` and `GET /offers/{id}/status` are
what clients poll. For a repeated search FastAPI's part (matching the path through its included
routers, solving the key and the query parameters, handling the answer) cost about 115 of the
route's 175 us of CPU, twice what the search itself costs (docs/benchmarks.md, issue 19).

`HotRoutes` wraps the application's router, inside FastAPI's exception middleware, so an error
raised here (a bad key, a bad document, the database down) is answered by the same handlers as
from a route. It answers a request only when it is one of these routes with parameters it reads
unambiguously: the method and path exactly, ids in their canonical form, only the routes' paging
parameters and each at most once as plain digits. Anything else (another parameter, a filter, a
value with a sign or a space, a repeated parameter, an id in another form) goes to FastAPI,
which answers as it always has, its validation messages included. The routes stay declared in
FastAPI (the OpenAPI document is theirs) and both ways call the same answer functions (the
routers' `*_answer`), so the answers are the same bytes (tests/api/test_hot.py). At startup it
checks that each route still depends on the API key alone and reads the query parameters it
knows: a dependency or parameter added to a hot route must be added here too.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl
from uuid import UUID

from fastapi import FastAPI, Request, Response
from fastapi.routing import APIRoute, APIRouter
from starlette.types import ASGIApp, Receive, Scope, Send

from gpusupply.api.deps import ServiceContext, get_ctx, get_principal
from gpusupply.api.routers import offers, procurement, resources
from gpusupply.services.keys import Principal, authenticate

_CANONICAL_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_DIGITS = re.compile(r"[0-9]{1,9}")

_PAGED = ("limit", "offset")  # the query parameters read here; the rest go to FastAPI
# (the services, the request, the caller, the paging parameters, the path's id) -> the answer
Answer = Callable[[ServiceContext, Request, Principal, dict[str, int], UUID | None], Awaitable[Response]]


@dataclass(frozen=True)
class _HotRoute:
    route: APIRoute  # FastAPI's declaration: the metrics' route label, the fallback
    paging: dict[str, tuple[int, int, int]]  # (ge, le, default) of each paging parameter, as declared
    answer: Answer


def paging(query_string: bytes, declared: dict[str, tuple[int, int, int]]) -> dict[str, int] | None:
    """The paging parameters as the route would read them, or None when FastAPI must read them:
    a parameter the route does not page with, one given twice, or a value that is not plain
    digits within its bounds (FastAPI answers those with its validation messages)."""
    values = {name: default for name, (_, _, default) in declared.items()}
    if not query_string:
        return values
    seen = set()
    for name, text in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):  # as Starlette reads it
        if name not in declared or name in seen or not _DIGITS.fullmatch(text):
            return None
        seen.add(name)
        low, high, _ = declared[name]
        value = int(text)
        if not low <= value <= high:
            return None
        values[name] = value
    return values


async def _offers(ctx: ServiceContext, request: Request, _: Principal, page: dict[str, int], __: UUID | None) -> Response:
    return await offers.offers_answer(ctx, await request.body(), request.headers.get("content-type"), page["limit"], page["offset"])


async def _resource_list(ctx: ServiceContext, _: Request, principal: Principal, page: dict[str, int], __: UUID | None) -> Response:
    return await resources.resource_list_answer(ctx, principal, limit=page["limit"], offset=page["offset"])


async def _resource(ctx: ServiceContext, _: Request, principal: Principal, __: dict[str, int], resource_id: UUID | None) -> Response:
    assert resource_id is not None
    return await resources.resource_answer(ctx, principal, resource_id)


async def _offer_status(ctx: ServiceContext, _: Request, principal: Principal, __: dict[str, int], offer_id: UUID | None) -> Response:
    assert offer_id is not None
    return await procurement.offer_status_answer(ctx, principal, offer_id)


def _declared(router: APIRouter, method: str, path: str, query: set[str]) -> APIRoute:
    """FastAPI's route, checked to read what this module expects: the API key as its only
    dependency and `query` as its query parameters. A route that gains a dependency (a rate
    limit, say) or a parameter fails here, at startup, rather than be skipped on the hot path."""
    found = [r for r in router.routes if isinstance(r, APIRoute) and r.path == path and method in (r.methods or ())]
    if len(found) != 1:
        raise RuntimeError(f"api/hot.py: {method} {path} is declared {len(found)} times")
    dependant = found[0].dependant
    calls = [sub.call for sub in dependant.dependencies]
    if calls != [get_principal] or dependant.dependencies[0].dependencies:
        raise RuntimeError(f"api/hot.py: {method} {path} depends on {calls}, not on the API key alone")
    declared = {param.name for param in dependant.query_params}
    if declared != query or dependant.header_params or dependant.body_params:
        raise RuntimeError(f"api/hot.py: {method} {path} reads {sorted(declared)}; expected {sorted(query)}")
    return found[0]


def _hot(route: APIRoute, answer: Answer) -> _HotRoute:
    """The hot route of `route`, its paging bounds and defaults read from its declaration."""
    paging = {}
    for param in route.dependant.query_params:
        if param.name in _PAGED:
            bounds = {name: getattr(rule, name) for rule in param.field_info.metadata for name in ("ge", "le") if hasattr(rule, name)}
            default = param.field_info.default
            if set(bounds) != {"ge", "le"} or not isinstance(default, int):
                raise RuntimeError(f"api/hot.py: {route.path}'s {param.name} is not an int with bounds")
            paging[param.name] = (bounds["ge"], bounds["le"], default)
    return _HotRoute(route, paging, answer)


class HotRoutes:
    """The wrapper of the application's router (see the module's docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # Each route's query parameters: its paging ones are read here, any other sends the request to FastAPI.
        search = _declared(offers.router, "POST", "/get_offers", {"limit", "offset"})
        listing = _declared(resources.router, "GET", "/resources", {"offer_id", "status", "vendor", "limit", "offset"})
        self._fixed = {("POST", "/get_offers"): _hot(search, _offers), ("GET", "/resources"): _hot(listing, _resource_list)}
        self._resource = _hot(_declared(resources.router, "GET", "/resources/{resource_id}", {"force_refresh"}), _resource)
        self._status = _hot(_declared(procurement.router, "GET", "/offers/{offer_id}/status", set()), _offer_status)
        self.answered = 0  # requests answered here (tests check the way a request took)

    def _match(self, method: str, path: str) -> tuple[_HotRoute, UUID | None] | None:
        fixed = self._fixed.get((method, path))
        if fixed is not None:
            return fixed, None
        if method != "GET":
            return None
        if path.startswith("/resources/") and _CANONICAL_ID.fullmatch(path, 11):
            return self._resource, UUID(path[11:])
        if path.startswith("/offers/") and path.endswith("/status") and _CANONICAL_ID.fullmatch(path, 8, len(path) - 7):
            return self._status, UUID(path[8:-7])
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        matched = self._match(scope["method"], scope["path"]) if scope["type"] == "http" and not scope.get("root_path") else None
        page = paging(scope["query_string"], matched[0].paging) if matched is not None else None
        if matched is None or page is None:
            await self.app(scope, receive, send)
            return
        hot, path_id = matched
        scope["route"] = hot.route  # the metrics' and access log's route label, as FastAPI sets it
        self.answered += 1
        request = Request(scope, receive)
        ctx = get_ctx(request)
        # Every hot route depends on the API key alone (checked by `_declared`): solved here, once.
        principal = await authenticate(ctx.db, request.headers.get("Authorization"))
        response = await hot.answer(ctx, request, principal, page, path_id)
        await response(scope, receive, send)


def install(app: FastAPI) -> None:
    """Answer the hot routes ahead of FastAPI's router, inside its exception handling."""
    app.router.middleware_stack = HotRoutes(app.router.middleware_stack)
