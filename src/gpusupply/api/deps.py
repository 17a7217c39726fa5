"""What routers depend on: the process's services (`ServiceContext`), the caller (`Principal`)
and the per-route error documentation."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer

from gpusupply.contract.schemas import ErrorResponse, ValidationErrorResponse
from gpusupply.core.inputs import loads_json
from gpusupply.db.session import Database
from gpusupply.domain.catalog import OfferCatalog
from gpusupply.services.keys import Principal, authenticate
from gpusupply.services.listing import ListingPages
from gpusupply.services.resources import ResourceRefresher
from gpusupply.settings import Settings
from gpusupply.vendors.registry import VendorSet


@dataclass
class ServiceContext:
    settings: Settings
    db: Database
    vendors: VendorSet
    catalog: OfferCatalog
    # The engine's re-read of one resource (`GET /resources/{id}` when stale), wired by the app.
    refresh_resource: ResourceRefresher
    engine: Any | None  # engine.runner.Engine when this process runs it
    migration_head: str
    # GET /resources' pages kept by tenant listing version (services/listing.py).
    listing_pages: ListingPages = field(default_factory=ListingPages)


def get_ctx(request: Request) -> ServiceContext:
    """The process's services, for code that holds a request. Routes depend on `service_context`."""
    return request.app.state.ctx


async def service_context(request: Request) -> ServiceContext:
    """`get_ctx` as a route dependency. Async on purpose: FastAPI runs a plain `def` dependency in
    its thread pool, a round trip per request (7% of `POST /get_offers` samples under py-spy)."""
    return request.app.state.ctx


class _ApiKeyBearer(HTTPBearer):
    """The caller, from `Authorization: Bearer gsk_...`; documented in OpenAPI as `HTTPBearer`.
    One dependency rather than a function depending on HTTPBearer: FastAPI solves each level of
    dependencies on every request."""

    # The override answers the Principal where HTTPBearer answers the credentials (mypy: override).
    async def __call__(self, request: Request) -> Principal:  # type: ignore[override]
        return await authenticate(get_ctx(request).db, request.headers.get("Authorization"))


# auto_error=False: our own check answers 401 (not FastAPI's 403) with WWW-Authenticate.
get_principal = _ApiKeyBearer(
    auto_error=False, scheme_name="HTTPBearer", description="An API key: `Authorization: Bearer gsk_...`"
)


class _BoundedJsonRequest(Request):
    """A request whose JSON body reads long integer literals as out of range (core/inputs.py)
    instead of failing in Python's int() (a 400 that named no field)."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = loads_json(await self.body())
        return self._json


class ApiRoute(APIRoute):
    """The route class of every API router: JSON bodies are read with `loads_json`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def bounded(request: Request) -> Response:
            return await handler(_BoundedJsonRequest(request.scope, request.receive))

        return bounded


_DESCRIPTIONS = {
    401: "Missing, malformed, unknown or revoked API key",
    402: "Refused by your budget (the limit and the numbers are in the detail)",
    404: "Not found (or not yours)",
    409: "Conflicts with the current state",
    410: "The offer has expired",
    413: "Request body too large",
    415: "Unsupported Content-Type",
    422: "Invalid input",
    503: "Not ready / database unavailable",
}


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for the error statuses a route can answer."""
    documented: dict[int | str, dict[str, Any]] = {}
    if 413 in codes:  # a route that takes a body can be sent one in another format (api/errors.py)
        codes = tuple(sorted({*codes, 415}))
    for code in codes:
        model = ValidationErrorResponse if code == 422 else ErrorResponse
        documented[code] = {"description": _DESCRIPTIONS[code], "model": model}
    return documented
