"""Benchmark 2: `POST /get_offers` end to end on loopback under concurrent load, against the same
server's trivial `/healthz`, in the same run. A real `gpusupply serve --no-engine` (sandbox
vendors, warm catalog) and wrk in another process, one core each."""

from __future__ import annotations

import json
import time

from bench.common import serve, wrk
from bench.table import Row

QUERY = {"compute": {"gpu_type": "RTX4090", "gpu_count": 1, "max_price_per_gpu_hour": 2.0}, "region": "US"}
SMALL_PAGE = 10
GOAL = 0.6  # throughput against /healthz (issue 19)
P99_GOAL = 4.0  # p99 at most this many times /healthz's


def run(quick: bool = False) -> list[Row]:
    seconds = 1 if quick else 8
    with serve(engine=False) as served:
        with served.client() as client:  # warm: the first search loads every vendor's catalog
            deadline = time.monotonic() + 60
            while not client.post("/get_offers", json=QUERY).json()["offers"] and time.monotonic() < deadline:
                time.sleep(0.2)
            answer = client.post("/get_offers", json=QUERY)
            found, size = answer.json()["total_count"], len(answer.content)
        if not quick:  # the server's first seconds under load have a slow tail: not what is compared
            wrk(served.url + "/healthz", seconds=2)
            wrk(served.url + "/get_offers", token=served.token, method="POST", body=json.dumps(QUERY), seconds=2)
        trivial = wrk(served.url + "/healthz", seconds=seconds)
        search = wrk(served.url + "/get_offers", token=served.token, method="POST", body=json.dumps(QUERY), seconds=seconds)
        # The same search with a 10-offer page: how much of the cost is the 100-offer answer.
        small = wrk(served.url + f"/get_offers?limit={SMALL_PAGE}", token=served.token, method="POST",
                    body=json.dumps(QUERY), seconds=seconds)
    if search.errors or trivial.errors or small.errors:
        raise AssertionError(f"errors under load: get_offers {search.errors} and {small.errors}, healthz {trivial.errors}")
    name = "2 HTTP get_offers"
    ratio = search.requests_per_second / trivial.requests_per_second
    return [
        Row(name, "req/s", search.requests_per_second, trivial.requests_per_second, "/healthz (same server)",
            f"ratio >= {GOAL}", met=ratio >= GOAL, note=f"wrk 1 thread, 16 connections, {seconds} s each; {found} matches, first page of 100 ({size / 1000:.0f} KB)"),
        Row(name, "p50 ms", search.p50_ms, trivial.p50_ms, "/healthz (same server)"),
        Row(name, "p99 ms", search.p99_ms, trivial.p99_ms, "/healthz (same server)",
            f"<= {P99_GOAL:g}x healthz p99", met=search.p99_ms <= P99_GOAL * trivial.p99_ms),
        Row(name, "req/s", small.requests_per_second, trivial.requests_per_second, "/healthz (same server)",
            note=f"limit={SMALL_PAGE} (default page is 100); p50 {small.p50_ms:.1f} ms, p99 {small.p99_ms:.1f} ms"),
    ]
