"""Benchmark 2: `POST /get_offers` end to end on loopback under concurrent load, against the same
server's trivial `/healthz`, in the same run. A real `gpusupply serve --no-engine` (sandbox
vendors, warm catalog) and wrk in another process, one core each."""

from __future__ import annotations

import json
import time

from bench.common import serve, wrk
from bench.table import Row

QUERY = {"compute": {"gpu_type": "RTX4090", "gpu_count": 1, "max_price_per_gpu_hour": 2.0}, "region": "US"}


def run(quick: bool = False) -> list[Row]:
    seconds = 1 if quick else 8
    with serve(engine=False) as served:
        with served.client() as client:  # warm: the first search loads every vendor's catalog
            deadline = time.monotonic() + 60
            while not client.post("/get_offers", json=QUERY).json()["offers"] and time.monotonic() < deadline:
                time.sleep(0.2)
            found = client.post("/get_offers", json=QUERY).json()["total_count"]
        trivial = wrk(served.url + "/healthz", seconds=seconds)
        search = wrk(served.url + "/get_offers", token=served.token, method="POST", body=json.dumps(QUERY), seconds=seconds)
    if search.errors or trivial.errors:
        raise AssertionError(f"errors under load: get_offers {search.errors}, healthz {trivial.errors}")
    name = "2 HTTP get_offers"
    ratio = search.requests_per_second / trivial.requests_per_second
    return [
        Row(name, "req/s", search.requests_per_second, trivial.requests_per_second, "/healthz (same server)",
            "ratio >= 0.5", met=ratio >= 0.5, note=f"wrk 1 thread, 16 connections, {seconds} s each; {found} matches"),
        Row(name, "p50 ms", search.p50_ms, trivial.p50_ms, "/healthz (same server)"),
        Row(name, "p99 ms", search.p99_ms, trivial.p99_ms, "/healthz (same server)"),
    ]
