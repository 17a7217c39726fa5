"""Benchmark 7: scale-out on PostgreSQL, every part its own process.

A throwaway PostgreSQL, the three sandbox vendors as `gpusupply sandbox` processes at their real
rate limits (shared by every gpusupply process through the database's rate buckets), two API
replicas (`serve --no-engine`) and 1, 2 or 4 `gpusupply worker`s. Fresh sandboxes and a fresh
database for each worker count.

- Shared reservation cost: one booking in `rate_buckets` (db/ratelimits.py) on this PostgreSQL,
  against one sandbox vendor call over loopback (fal's instance listing, the sandbox's rate limit
  off): the cheapest vendor call there is; a real vendor is tens to hundreds of ms away.
- 300 procurements by offer (Vast 60, Nebula 60, fal 180, as benchmark 4; POSTed to the two
  replicas in turn by `POSTERS` concurrent users; Nebula and fal offers written again under new
  ids, as a catalog refresh does) until every one is `running`: wall time against the bound from
  the sandboxes' limits (bench/procurement.py's `vendor_bound`), and the sandboxes' own 429
  counters. The refresh of running rows and the reconciler are left out (only procurement's own
  calls are counted).
- With 4 workers, once more with 64 concurrent clients on the replicas meanwhile (searches, resource
  status polls and listings, each client sending its next request as soon as it has the answer):
  5xx answers, p50 and p99, and the vendor calls the replicas made themselves (their /metrics: a
  read of a resource not synced for 30 s goes to the vendor). This run keeps the production
  refresh (30 s) and reconciler (60 s), so the workers keep the rows fresh as they would.
- 10,000 live resources under 4 workers (bench/fleet.py): reconciler calls per sweep against the
  listing pages, the steady-state refresh's SQL statements per second and memory per worker, and
  the time from a worker's SIGKILL until its leases are taken over.

Why the 64-client run did not complete before (2026-12-04, stopped after 15 minutes with 50 of 300
running): the 300 POSTs were sent one after another, each queued behind 64 closed-loop clients on
two replicas (a quick run measured p50 1.5 s for the clients, about 3.5 s per POST), and with the
refresh off every resource read after 30 s went to the vendor from the replica (the 30 s rule of
services/resources.py), booking the same vendor buckets procurement needed. The POSTs now come from `POSTERS` users at once, and the load
run refreshes as production does.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from tests.conftest import postgres_server
from tests.e2e.helpers import SSH_KEY, VENDOR_KEY, SandboxProcess, ServiceProcess, create_api_key, service_env

from bench import fleet
from bench.procurement import NEEDS, statuses, vendor_bound
from bench.table import Row
from gpusupply.core.ratelimit import Bucket
from gpusupply.db.ratelimits import DatabaseBuckets
from gpusupply.db.session import Database
from gpusupply.sandbox.common import SandboxConfig
from gpusupply.sandbox.mode import sandbox_class
from gpusupply.vendors.fal import FalAdapter

NAME = "7 scale-out (PostgreSQL)"
SPLIT = {"vast": 60, "nebula": 60, "fal": 180}
QUICK_SPLIT = {"vast": 3, "nebula": 3, "fal": 6}
READY_AFTER = 3.0
STOCK = 10_000
CLIENTS = 64
POSTERS = 8  # users POSTing procurements at the same time
# The engine as in production: the test rig's short leases and polls put back to their defaults;
# refresh and reconciler out of the way, so that only procurement's own calls are counted.
PRODUCTION = {
    "GPUSUPPLY_LEASE_SECONDS": "30",
    "GPUSUPPLY_ENGINE_POLL_SECONDS": "1",
    "GPUSUPPLY_PROVISIONING_POLL_SECONDS": "2",
    "GPUSUPPLY_REFRESH_INTERVAL_SECONDS": "3600",
    "GPUSUPPLY_RECONCILE_INTERVAL_SECONDS": "3600",
    "GPUSUPPLY_VENDOR_TIMEOUT": "10",
    "GPUSUPPLY_DB_POOL_SIZE": "5",
    "GPUSUPPLY_DB_MAX_OVERFLOW": "10",
}
# The run under API load: the workers keep running rows fresh as in production.
UNDER_LOAD = {**PRODUCTION, "GPUSUPPLY_REFRESH_INTERVAL_SECONDS": "30", "GPUSUPPLY_RECONCILE_INTERVAL_SECONDS": "60"}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@contextlib.contextmanager
def sandboxes(root: Path, offers: int) -> Iterator[dict[str, SandboxProcess]]:
    started: dict[str, SandboxProcess] = {}
    try:
        for vendor in SPLIT:
            started[vendor] = SandboxProcess(
                vendor, root / f"{vendor}.log", seed=11, offers=offers, ready_after=READY_AFTER, stock_each=STOCK
            ).start()
        yield started
    finally:
        for sandbox in started.values():
            sandbox.stop()


# ----- one shared reservation vs one vendor call ---------------------------------------------------
async def reservation_cost(database_url: str, root: Path, samples: int) -> tuple[list[float], list[float]]:
    db = Database(database_url)
    buckets = DatabaseBuckets(db)
    unlimited = [Bucket("bench", rate=1e9, burst=1e9)]
    booked: list[float] = []
    try:
        await db.migrate()
        await buckets.reserve("bench", "k", unlimited)  # connect first
        for _ in range(samples):
            started = time.perf_counter()
            await buckets.reserve("bench", "k", unlimited)
            booked.append(time.perf_counter() - started)
    finally:
        await db.dispose()
    sandbox = SandboxProcess("fal", root / "fal-call.log", seed=3, offers=100).start()
    adapter = FalAdapter(sandbox.url, VENDOR_KEY, rate_scale=1e6)  # nothing paced: the call alone
    called: list[float] = []
    try:
        sandbox.configure(rate_limits=False)
        await adapter.list_instances()
        for _ in range(samples):
            started = time.perf_counter()
            await adapter.list_instances()
            called.append(time.perf_counter() - started)
    finally:
        await adapter.aclose()
        sandbox.stop()
    return booked, called


# ----- procurements through two replicas and N workers ---------------------------------------------
class MixedLoad:
    """`CLIENTS` users on the replicas: searches, status polls of known resources, resource reads."""

    def __init__(self, urls: list[str], token: str, known: list[str]):
        self.urls, self.token, self.known = urls, token, known
        self.latencies: list[float] = []
        self.server_errors = 0
        self.transport_errors = 0
        self.answers = 0

    async def client(self, n: int, stop: asyncio.Event) -> None:
        rng = random.Random(n)
        headers = {"Authorization": f"Bearer {self.token}"}
        async with httpx.AsyncClient(base_url=self.urls[n % len(self.urls)], headers=headers, timeout=60) as http:
            while not stop.is_set():
                kind = rng.random()
                started = time.perf_counter()
                try:
                    response = await self.one(http, rng, kind)
                except httpx.TransportError:
                    self.transport_errors += 1  # a reused keep-alive connection the server had closed
                    continue
                self.latencies.append(time.perf_counter() - started)
                self.answers += 1
                if response.status_code >= 500:
                    self.server_errors += 1

    async def one(self, http: httpx.AsyncClient, rng: random.Random, kind: float) -> httpx.Response:
        if kind < 0.3:
            body = {"compute": {"gpu_type": rng.choice(["H100", "A100", "RTX4090", "L40S"]), "gpu_count": 1}}
            return await http.post("/get_offers", json=body, params={"limit": 20})
        if kind < 0.7 and self.known:
            return await http.get(f"/resources/{rng.choice(self.known)}")
        return await http.get("/resources", params={"limit": 50})

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.gather(*(self.client(n, stop) for n in range(CLIENTS)))


COPY_OFFER = text(
    """
    INSERT INTO offers (id, snapshot_id, vendor, vendor_offer_id, gpu_type, gpu_family, gpu_count, data, fetched_at,
                        expires_at, status)
    SELECT :new_id, snapshot_id, vendor, vendor_offer_id, gpu_type, gpu_family, gpu_count, data, fetched_at,
           now() + interval '1 hour', 'available'
    FROM offers WHERE id = :source
    """
)


async def gather_offers(url: str, token: str, split: dict[str, int], database_url: str) -> list[str]:
    """Offer ids to procure. Vast: distinct asks from searches (an ask rents once). Nebula and fal:
    the first 1-GPU offers a search returns, written again under new ids, as every catalog refresh
    does (an id is procured once; the sandboxes have the stock)."""
    found: dict[str, list[str]] = {v: [] for v in split}
    families = ("RTX4090", "H100", "A100", "L40S", "RTX3090", "A6000", "H200", "B200", "L4", "RTX5090")
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=120) as http:
        for vendor, n in split.items():
            for family in families:
                body = {"vendor": vendor, "compute": {"gpu_type": family, "gpu_count": 1, "contract_type": "ondemand"}}
                response = await http.post("/get_offers", json=body, params={"limit": 500})
                response.raise_for_status()
                found[vendor] += [o["offer_id"] for o in response.json()["offers"] if o["offer_id"] not in found[vendor]]
                if len(found[vendor]) >= n or (vendor != "vast" and found[vendor]):
                    break
            if not found[vendor]:
                raise RuntimeError(f"no {vendor} offers")
    db = Database(database_url)
    try:
        async with db.transaction() as session:
            for vendor in ("nebula", "fal"):
                sources = list(found[vendor])
                for n in range(split[vendor] - len(sources)):
                    new_id = uuid.uuid4()
                    await session.execute(COPY_OFFER, {"new_id": new_id, "source": uuid.UUID(sources[n % len(sources)])})
                    found[vendor].append(str(new_id))
    finally:
        await db.dispose()
    if len(found["vast"]) < split["vast"]:
        raise RuntimeError(f"only {len(found['vast'])} Vast offers")
    chosen = [offer for vendor, ids in found.items() for offer in ids[: split[vendor]]]
    random.Random(5).shuffle(chosen)  # vendors interleaved, as users would send them
    return chosen


async def procure_all(replicas: list[str], token: str, offers: list[str], known: list[str]) -> None:
    """POST every offer, `POSTERS` at a time, to the replicas in turn."""
    headers = {"Authorization": f"Bearer {token}"}
    queue = list(enumerate(offers))

    async def poster(http: httpx.AsyncClient) -> None:
        while queue:
            n, offer_id = queue.pop(0)
            body = {"offer_id": offer_id, "ssh_public_key": SSH_KEY}
            # A keep-alive connection the server closed as we reused it: send again, safely (the key).
            key = {"Idempotency-Key": str(uuid.uuid4())}
            for attempt in range(5):
                try:
                    response = await http.post(replicas[(n + attempt) % 2] + "/procure_offer", json=body, headers=key)
                    break
                except httpx.TransportError:
                    if attempt == 4:
                        raise
            if response.status_code != 200:
                raise RuntimeError(f"procure {offer_id}: {response.status_code} {response.text}")
            known.extend(response.json()["resource_ids"])

    async with httpx.AsyncClient(headers=headers, timeout=120) as http:
        await asyncio.gather(*(poster(http) for _ in range(POSTERS)))


async def replica_vendor_calls(replicas: list[ServiceProcess]) -> int:
    """Vendor calls the API replicas made themselves so far (their /metrics)."""
    total = 0
    async with httpx.AsyncClient(timeout=30) as http:
        for replica in replicas:
            response = await http.get(replica.url + "/metrics")
            response.raise_for_status()
            for line in response.text.splitlines():
                if line.startswith("gpusupply_vendor_requests_total{"):
                    total += int(float(line.rsplit(" ", 1)[1]))
    return total


async def one_run(server: Any, root: Path, workers: int, split: dict[str, int], with_load: bool) -> dict[str, Any]:
    database_url = server.url(server.create_database())
    run_root = Path(tempfile.mkdtemp(prefix=f"run-{workers}-", dir=root))
    with sandboxes(run_root, offers=3000) as sbx:
        env = service_env(database_url, run_root / "data", sbx, **(UNDER_LOAD if with_load else PRODUCTION))
        token = create_api_key(env)
        processes: list[ServiceProcess] = []
        try:
            replicas = [ServiceProcess.serve(env, run_root / f"api-{n}.log", engine=False).start() for n in (1, 2)]
            processes += replicas
            offers = await gather_offers(replicas[0].url, token, split, database_url)
            processes += [ServiceProcess.worker(env, run_root / f"worker-{n}.log").start() for n in range(workers)]
            before = {v: s.state() for v, s in sbx.items()}
            replica_calls = await replica_vendor_calls(replicas)
            known: list[str] = []
            stop = asyncio.Event()
            load = MixedLoad([r.url for r in replicas], token, known)
            loading = asyncio.create_task(load.run(stop)) if with_load else None
            started = time.perf_counter()
            await procure_all([r.url for r in replicas], token, offers, known)
            db = Database(database_url)
            finished: dict[str, float] = {}
            try:
                while len(finished) < len(split):
                    counts = await statuses(db)
                    now = time.perf_counter()
                    for vendor, n in split.items():
                        if vendor not in finished and counts.get((vendor, "running"), 0) == n:
                            finished[vendor] = now - started
                    failed = {k: v for k, v in counts.items() if k[1] not in ("pending", "provisioning", "running")}
                    if failed or now - started > 900:
                        raise RuntimeError(f"procurements did not all run: {counts}")
                    await asyncio.sleep(0.2)
            finally:
                await db.dispose()
            if loading is not None:
                stop.set()
                await loading
            after = {v: s.state() for v, s in sbx.items()}
            replica_calls = await replica_vendor_calls(replicas) - replica_calls
        finally:
            for process in processes:
                process.stop()
    return {
        "wall": max(finished.values()),
        "finished": finished,
        "rate_limited": {v: after[v]["rate_limited"] - before[v]["rate_limited"] for v in sbx},
        "requests": {v: after[v]["requests"] - before[v]["requests"] for v in sbx},
        "load": load if with_load else None,
        "replica_vendor_calls": replica_calls,
    }


def sandbox_limits() -> dict[str, dict[str, tuple[float, float]]]:
    return {v: dict(sandbox_class(v)(SandboxConfig(offers=10)).rate_limits) for v in SPLIT}


async def measure(quick: bool) -> list[Row]:
    split = QUICK_SPLIT if quick else SPLIT
    plan = [(2, True)] if quick else [(1, False), (2, False), (4, False), (4, True)]
    total = sum(split.values())
    limits = sandbox_limits()
    bounds = {v: vendor_bound(NEEDS[v], n, limits[v], READY_AFTER) for v, n in split.items()}
    bound = max(b for b, _ in bounds.values())
    for vendor, (seconds, why) in bounds.items():
        print(f"bound {vendor}: {split[vendor]} procurements need >= {seconds:.1f} s ({why}; ready after {READY_AFTER:g} s)")
    rows: list[Row] = []
    root = Path(tempfile.mkdtemp(prefix="gpusupply-bench-scale-"))
    with postgres_server() as server:
        booked, called = await reservation_cost(server.url(server.create_database()), root, 50 if quick else 500)
        # The table wants the ratio of a vendor call to a reservation: ours is the reservation.
        book_ms, call_ms = statistics.median(booked) * 1000, statistics.median(called) * 1000
        print(f"reservation p50 {book_ms:.3f} ms vs vendor call p50 {call_ms:.3f} ms", flush=True)
        rows.append(Row(NAME, "p50 ms, one shared rate-limit reservation", book_ms, call_ms,
                        "one sandbox vendor call (loopback, fal list)", "small next to a vendor call",
                        book_ms < call_ms, note=f"p99 {percentile(booked, 0.99) * 1000:.2f} ms vs {percentile(called, 0.99) * 1000:.2f} ms"))
        for workers, with_load in plan:
            label = f"{workers} worker{'s' if workers > 1 else ''}" + (f" + {CLIENTS} API clients" if with_load else "")
            print(f"running {total} procurements with 2 API replicas and {label}")
            result = await one_run(server, root, workers, split, with_load)
            mixed_seen: MixedLoad | None = result["load"]
            print(f"  wall {result['wall']:.1f} s (bound {bound:.1f} s), all running: {result['finished']}, "
                  f"429s {result['rate_limited']}, vendor requests {result['requests']}"
                  + (f", mixed load: {mixed_seen.answers} answers, {mixed_seen.server_errors} 5xx, p99 "
                     f"{percentile(mixed_seen.latencies, 0.99) * 1000:.0f} ms" if mixed_seen and mixed_seen.latencies else ""),
                  flush=True)
            limited = sum(result["rate_limited"].values())
            per_vendor = ", ".join(f"{v} {result['finished'][v]:.0f} s" for v in split)
            rows.append(Row(NAME, f"wall s, {total} procurements, {label}", result["wall"], bound,
                            "bound from the sandboxes' rate limits", "<= 1.15 x bound",
                            result["wall"] <= 1.15 * bound, note=f"all running: {per_vendor}"))
            rows.append(Row(NAME, f"rate-limited answers (429), {label}", limited, goal="0", met=limited == 0,
                            note="the sandboxes' own counters: " + ", ".join(f"{v} {n}" for v, n in result["rate_limited"].items())))
            mixed: MixedLoad | None = result["load"]
            if mixed is not None and mixed.latencies:
                p50 = percentile(mixed.latencies, 0.5) * 1000
                rows.append(Row(NAME, f"p99 ms, {CLIENTS} clients mixed (search, status, reads)", percentile(mixed.latencies, 0.99) * 1000,
                                p50, "p50 of the same requests", note=f"{mixed.answers} answers"))
                rows.append(Row(NAME, f"5xx answers, {CLIENTS} clients mixed", mixed.server_errors, goal="0",
                                met=mixed.server_errors == 0, note=f"of {mixed.answers}; {mixed.transport_errors} closed keep-alive connections "
                                f"retried; the replicas themselves made {result['replica_vendor_calls']} vendor calls meanwhile"))
        rows += await fleet.measure(server, quick)
    return rows


def run(quick: bool = False) -> list[Row]:
    return asyncio.run(measure(quick))
