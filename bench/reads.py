"""Benchmark 6: `GET /resources/{id}` throughput against `/healthz` of the same server, on SQLite
and on PostgreSQL (a throwaway server from the machine's binaries)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from tests.conftest import SSH_KEY, find_pg_bindir, postgres_server

from bench.common import Served, serve, wrk
from bench.table import Row


def running_resource(served: Served) -> str:
    with served.client() as client:
        offers: list = []
        deadline = time.monotonic() + 60
        while not offers and time.monotonic() < deadline:
            offers = client.post("/get_offers", json={"compute": {"gpu_type": "RTX4090"}, "vendor": "nebula"}).json()["offers"]
            time.sleep(0.2)
        answer = client.post("/procure_offer", json={"offer_id": offers[0]["offer_id"], "ssh_public_key": SSH_KEY}).json()
        resource_id = answer["resource_ids"][0]
        while client.get(f"/resources/{resource_id}").json()["status"] != "running":
            if time.monotonic() > deadline:
                raise RuntimeError("the benchmark's resource did not become running")
            time.sleep(0.2)
        return resource_id


@contextlib.contextmanager
def database(kind: str) -> Iterator[str | None]:
    if kind == "sqlite":
        yield None
        return
    with postgres_server() as server:
        yield server.url(server.create_database())


def run(quick: bool = False) -> list[Row]:
    seconds = 1 if quick else 8
    rows = []
    kinds = ["sqlite"] + (["postgres"] if find_pg_bindir() else [])
    for kind in kinds:
        with database(kind) as url, serve(engine=True, database_url=url, GPUSUPPLY_SANDBOX_READY_AFTER="0.5") as served:
            resource_id = running_resource(served)
            trivial = wrk(served.url + "/healthz", seconds=seconds)
            reads = wrk(f"{served.url}/resources/{resource_id}", token=served.token, seconds=seconds)
        if reads.errors or trivial.errors:
            raise AssertionError(f"errors under load on {kind}: reads {reads.errors}, healthz {trivial.errors}")
        rows.append(Row(f"6 resource reads ({kind})", "req/s", reads.requests_per_second, trivial.requests_per_second,
                        "/healthz (same server)", note=f"p50 {reads.p50_ms:.1f} ms, p99 {reads.p99_ms:.1f} ms"))
    return rows
