"""Route dependencies run on the event loop: FastAPI runs a plain `def` dependency in its thread
pool, a round trip per request (it was about a fifth of `POST /get_offers`)."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import pkgutil
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from gpusupply.api import routers


def _calls(dependant: Dependant) -> list[Any]:
    found = []
    for sub in dependant.dependencies:
        found.append(sub.call)
        found.extend(_calls(sub))
    return found


def _runs_on_the_loop(call: Any) -> bool:
    target = call if inspect.isroutine(call) else getattr(call, "__call__", None)  # noqa: B004 (instances like HTTPBearer)
    return asyncio.iscoroutinefunction(target)


def _api_routes() -> list[APIRoute]:
    found = []
    for module_info in pkgutil.iter_modules(routers.__path__):
        router = getattr(importlib.import_module(f"{routers.__name__}.{module_info.name}"), "router", None)
        found.extend(route for route in getattr(router, "routes", []) if isinstance(route, APIRoute))
    return found


def test_every_api_route_dependency_is_async() -> None:
    checked = []
    for route in _api_routes():
        for call in _calls(route.dependant):
            assert _runs_on_the_loop(call), f"{route.path}: dependency {call!r} is not async (runs in the thread pool)"
            checked.append(call)
    assert checked, "no dependencies found: the walk is broken"
