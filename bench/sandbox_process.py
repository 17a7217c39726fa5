"""`python -m bench.sandbox_process VENDOR --port N --state-dir DIR ...`: one simulated vendor as its
own process, like `gpusupply sandbox`, that starts from a saved state and counts its calls per route.

`gpusupply sandbox` always starts empty; the benchmark needs 10,000 live instances without 10,000
creates. So the state is written beforehand (bench/seed.py) in the format the in-process sandboxes
persist (`sandbox/state.py`), and restored here by the same `SandboxStore.restore` a restarted
`gpusupply serve` uses. Everything else is the vendor's own sandbox app at its real rate limits.

`GET /_bench/routes` answers the vendor API calls so far per route ("GET /api/v0/instances"), each
with how many were answered 429, so a benchmark can count a listing's pages apart from the other
calls that share a rate-limit bucket (fal has one bucket for everything).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

import uvicorn

from gpusupply.sandbox.common import SandboxConfig
from gpusupply.sandbox.mode import sandbox_class
from gpusupply.sandbox.state import SandboxStore
from gpusupply.vendors.registry import VENDORS

ROUTES_PATH = "/_bench/routes"


class RouteCounter:
    """ASGI wrapper: counts each vendor API call by its route template and answer status."""

    def __init__(self, app: Any):
        self.app = app
        self.calls: Counter[str] = Counter()
        self.limited: Counter[str] = Counter()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == ROUTES_PATH:
            await self._answer(send)
            return
        status = 0

        async def watch(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            # The router writes the matched route into the same scope; admin routes are not calls.
            route = scope.get("route")
            if not scope["path"].startswith("/_sandbox"):
                key = f"{scope['method']} {getattr(route, 'path', scope['path'])}"
                self.calls[key] += 1
                if status == 429:
                    self.limited[key] += 1

    async def _answer(self, send: Any) -> None:
        body = json.dumps({"calls": dict(self.calls), "rate_limited": dict(self.limited)}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sandbox_process")
    parser.add_argument("vendor", choices=sorted(VENDORS))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state-dir", type=Path, required=True, help="where bench/seed.py wrote <vendor>.json")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--offers", type=int, default=3000)
    parser.add_argument("--ready-after", type=float, default=3.0)
    parser.add_argument("--stock", type=int, default=None)
    args = parser.parse_args()
    store = SandboxStore.open(args.state_dir)
    config = SandboxConfig(seed=args.seed, offers=args.offers, ready_after=args.ready_after, stock=args.stock,
                           id_base=store.new_id_base(args.vendor))  # new creates never reuse a seeded id
    sandbox = sandbox_class(args.vendor)(config)
    restored = store.restore(sandbox)
    print(f"{args.vendor} sandbox on http://127.0.0.1:{args.port} with {restored} restored instances", flush=True)
    uvicorn.run(RouteCounter(sandbox.create_app()), host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
