"""Benchmark 7, the fleet part: 10,000 live resources managed by 4 `gpusupply worker`s on PostgreSQL.

The fleet is seeded, not procured (bench/seed.py): the three sandboxes start from a saved state
holding the instances (40% Vast, 30% Nebula, 30% fal, as benchmark 5), each as its own process at
its real rate limits, counting its calls per route (bench/sandbox_process.py); the database holds
the matching `running` rows. The workers run with the production intervals (lease 30 s, poll 1 s,
refresh every 30 s, reconciler every 60 s). Three measurements, one after the other:

1. The reconciler sweep. Nothing is due for the refresh yet, so the only instance listings are the
   reconciler's. Each vendor's round is watched in `job_leases` (its holder while it runs; the
   round ends when the lease is given back) and the vendor's listing route counted over the round:
   calls must equal the listing pages its instances need (Vast 25 per page, Nebula and fal 100),
   whichever worker ran it. Vast's first round ends the phase (its pages go at 1/s); the quicker
   vendors' later rounds are counted too.
2. The steady-state refresh. Every row is made due once within the next 30 s (as a fleet refreshed
   every 30 s is spread), and after a warm-up a window is measured: the SQL statements the database
   executed (pg_stat_statements `calls` for this database, loaded into the throwaway server for the
   run; BEGIN/COMMIT/ROLLBACK and our own statistics queries not counted), its transactions
   (pg_stat_database `xact_commit + xact_rollback`, everything in the window), the rows whose
   `last_synced_at` moved, each vendor's calls, and every worker's resident memory (psutil RSS,
   sampled each second; the largest sample).
3. A worker killed with SIGKILL (the one running a reconciler round if any, else the one holding
   the most row leases): from the signal until every lease it held (its `lock_token` on
   `resources` rows, and on `job_leases`) carries another token, polled every 0.1 s. A row lease
   must be taken over within the lease TTL plus one engine poll; a periodic job's within the TTL
   plus one job check (5 s).

Afterwards nothing may be lost: every row still `running`, every instance still live, no delete.
"""

from __future__ import annotations

import asyncio
import math
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
from sqlalchemy import text
from tests.e2e.helpers import SandboxProcess, ServiceProcess, service_env, wait_for

from bench.common import ROOT
from bench.seed import fleet_split, sandbox_config, seed_fleet
from bench.table import Row
from gpusupply.db.models import utcnow
from gpusupply.db.session import Database
from gpusupply.engine.jobs import MAX_CHECK_SECONDS
from gpusupply.vendors import fal, nebula, vast

NAME = "7 scale-out (PostgreSQL)"
FLEET, QUICK_FLEET = 10_000, 300
WORKERS = 4
SEED = 5
LEASE_SECONDS, QUICK_LEASE_SECONDS = 30.0, 10.0  # quick: the same takeover, sooner (5 s let job leases lapse under load)
POLL_SECONDS = 1.0
# Steady state: warm-up, then the measured window (seconds).
WARM, WINDOW = 15.0, 60.0
QUICK_WARM, QUICK_WINDOW = 3.0, 8.0
PER_PAGE = {"vast": vast.PAGE_LIMIT, "nebula": nebula.DEFAULT_PAGE_SIZE, "fal": fal.PAGE_LIMIT}
LIST_ROUTES = {"vast": "/api/v1/instances", "nebula": "/api/v1/computing/instances", "fal": "/v1/compute/instances"}


def engine_settings(lease_seconds: float) -> dict[str, str]:
    """The engine as in production (the test rig's short leases and polls put back)."""
    return {
        "GPUSUPPLY_LEASE_SECONDS": f"{lease_seconds:g}",
        "GPUSUPPLY_ENGINE_POLL_SECONDS": f"{POLL_SECONDS:g}",
        "GPUSUPPLY_PROVISIONING_POLL_SECONDS": "2",
        "GPUSUPPLY_REFRESH_INTERVAL_SECONDS": "30",
        "GPUSUPPLY_RECONCILE_INTERVAL_SECONDS": "60",
        "GPUSUPPLY_CREATE_VISIBILITY_SECONDS": "20",
        "GPUSUPPLY_VENDOR_TIMEOUT": "10",
        "GPUSUPPLY_DB_POOL_SIZE": "5",
        "GPUSUPPLY_DB_MAX_OVERFLOW": "10",
    }


def pages(vendor: str, count: int) -> int:
    return max(1, math.ceil(count / PER_PAGE[vendor]))


# ----- the sandboxes, started from their saved state ----------------------------------------------
@dataclass
class SeededSandbox(SandboxProcess):
    """bench/sandbox_process.py instead of `gpusupply sandbox`: restores `state_dir`, counts routes."""

    state_dir: Path | None = None

    def _start_once(self) -> SeededSandbox:
        assert self.state_dir is not None
        cmd = [
            sys.executable, "-m", "bench.sandbox_process", self.vendor, "--port", str(self.port), "--state-dir", str(self.state_dir),
            "--seed", str(self.seed), "--offers", str(self.offers), "--ready-after", str(self.ready_after),
        ]
        if self.stock_each is not None:
            cmd += ["--stock", str(self.stock_each)]
        self.proc = subprocess.Popen(cmd, stdout=self.log.open("wb"), stderr=subprocess.STDOUT, cwd=ROOT)
        wait_for(self._up, within=180, what=f"the seeded {self.vendor} sandbox", every=0.5)  # restoring 4,000 takes a while
        return self

    def routes(self) -> dict[str, dict[str, int]]:
        response = httpx.get(self.url + "/_bench/routes", timeout=30)
        response.raise_for_status()
        return response.json()

    def listing_calls(self) -> int:
        wanted = LIST_ROUTES[self.vendor]
        return sum(n for route, n in self.routes()["calls"].items() if route in (f"GET {wanted}", f"GET {wanted}/"))


def route_delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {route: n - before.get(route, 0) for route, n in sorted(after.items()) if n - before.get(route, 0)}


# ----- 1. the reconciler sweep ---------------------------------------------------------------------
@dataclass
class Round:
    vendor: str
    owner: str  # the worker process that held the job lease ("host:pid:..."), or "" if never seen
    calls: int
    seconds: float
    routes: dict[str, int]  # every route's calls in the round
    limited: dict[str, int]  # of which answered 429
    completed: bool  # False: given back before `last_run_at` moved (rate limited), or its lease lapsed
    ended: str = ""  # "" (let go) or the process that took the lease over while it ran


async def job_leases(db: Database) -> dict[str, tuple[str | None, datetime | None]]:
    async with db.session() as session:
        rows = (await session.execute(text("SELECT name, lock_owner, last_run_at FROM job_leases WHERE name LIKE 'reconcile:%'"))).all()
    return {name.split(":", 1)[1]: (owner, last_run) for name, owner, last_run in rows}


async def watch_sweeps(db: Database, sandboxes: dict[str, SeededSandbox], started: float, limit: float) -> dict[str, list[Round]]:
    """Every reconciler round until each vendor (Vast last: 1 page/s) has completed one, with its
    listing calls. A round ends when its holder lets the lease go (or another process holds it);
    it completed when `last_run_at` moved (a rate-limited listing gives the lease back without)."""
    rounds: dict[str, list[Round]] = {v: [] for v in sandboxes}
    counted = {v: s.listing_calls() for v, s in sandboxes.items()}  # before any worker started
    routes_before = {v: s.routes() for v, s in sandboxes.items()}
    holder: dict[str, str] = {}
    round_started = {v: started for v in sandboxes}
    last_run: dict[str, datetime | None] = {}

    def close(vendor: str, owner: str, completed: bool, ended: str = "") -> None:
        calls, routes = sandboxes[vendor].listing_calls(), sandboxes[vendor].routes()
        rounds[vendor].append(Round(vendor, owner, calls - counted[vendor], time.perf_counter() - round_started[vendor],
                                    route_delta(routes["calls"], routes_before[vendor]["calls"]),
                                    route_delta(routes["rate_limited"], routes_before[vendor]["rate_limited"]), completed, ended))
        counted[vendor], routes_before[vendor] = calls, routes

    while not all(any(r.completed for r in rs) for rs in rounds.values()):
        if time.perf_counter() - started > limit:
            raise RuntimeError(f"the reconciler did not sweep every vendor in {limit:.0f} s: {rounds}")
        for vendor, (owner, ran_at) in (await job_leases(db)).items():
            moved = ran_at != last_run.get(vendor)
            if vendor in holder and owner != holder[vendor]:
                close(vendor, holder.pop(vendor), moved, owner or "")
            elif vendor not in holder and owner is None and moved:
                close(vendor, "", True)  # a whole round between two looks
            if owner and vendor not in holder:
                holder[vendor] = owner
                round_started[vendor] = time.perf_counter()
            last_run[vendor] = ran_at
        await asyncio.sleep(0.2)
    return rounds


# ----- 2. the steady-state refresh -----------------------------------------------------------------
STATEMENTS = text(
    """
    SELECT coalesce(sum(calls), 0) FROM pg_stat_statements
    WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND upper(query) NOT IN ('BEGIN', 'COMMIT', 'ROLLBACK') AND query NOT ILIKE '%pg_stat%'
    """
)
TRANSACTIONS = text("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()")


@dataclass
class Steady:
    seconds: float
    statements: int
    transactions: int
    refreshed: dict[str, int]
    vendor_calls: dict[str, dict[str, int]]
    rss_mb: dict[int, float] = field(default_factory=dict)  # worker pid -> largest RSS sample


async def scalar(db: Database, query: Any) -> int:
    async with db.engine.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        return int((await connection.execute(query)).scalar_one())


async def steady_state(db: Database, sandboxes: dict[str, SeededSandbox], workers: list[ServiceProcess], warm: float, window: float) -> Steady:
    async with db.transaction() as session:  # due once within the next 30 s, as a refreshed fleet is spread
        await session.execute(text("UPDATE resources SET next_attempt_at = now() + random() * interval '30 seconds' WHERE status = 'running'"))
    await asyncio.sleep(warm)
    processes = {w.proc.pid: psutil.Process(w.proc.pid) for w in workers if w.proc is not None}
    rss: dict[int, float] = dict.fromkeys(processes, 0.0)
    await scalar(db, text("SELECT count(*) FROM (SELECT pg_stat_statements_reset()) AS reset"))
    transactions = await scalar(db, TRANSACTIONS)
    routes = {v: s.routes()["calls"] for v, s in sandboxes.items()}
    since = utcnow()
    started = time.perf_counter()
    while time.perf_counter() - started < window:
        for pid, process in processes.items():
            rss[pid] = max(rss[pid], process.memory_info().rss / 2**20)
        await asyncio.sleep(1.0)
    seconds = time.perf_counter() - started
    statements = await scalar(db, STATEMENTS)
    transactions = await scalar(db, TRANSACTIONS) - transactions
    calls = {v: route_delta(s.routes()["calls"], routes[v]) for v, s in sandboxes.items()}
    async with db.session() as session:
        moved = (await session.execute(
            text("SELECT vendor, count(*) FROM resources WHERE last_synced_at >= :since GROUP BY vendor"), {"since": since}
        )).all()
    return Steady(seconds, statements, transactions, {v: int(n) for v, n in moved}, calls, rss)


# ----- 3. SIGKILL and the takeover ----------------------------------------------------------------
@dataclass
class Takeover:
    victim: str
    rows: dict[Any, float]  # resource id -> seconds from the kill until another token held it
    jobs: dict[str, float]
    last_expiry: float  # seconds from the kill until the latest of its leases expired
    untaken: int


def pid_of(owner: str) -> int:
    return int(owner.split(":")[1])


async def choose_victim(db: Database, workers: list[ServiceProcess]) -> ServiceProcess:
    """The worker running a reconciler round, if one is; else the one holding the most row leases."""
    by_pid = {w.proc.pid: w for w in workers if w.proc is not None}
    async with db.session() as session:
        jobs = (await session.execute(text("SELECT lock_owner FROM job_leases WHERE lock_token IS NOT NULL AND name LIKE 'reconcile:%'"))).all()
        rows = (await session.execute(text(
            "SELECT lock_owner, count(*) FROM resources WHERE lock_token IS NOT NULL GROUP BY lock_owner ORDER BY count(*) DESC"
        ))).all()
    for (owner,) in jobs:
        if pid_of(owner) in by_pid:
            return by_pid[pid_of(owner)]
    held: dict[int, int] = {}
    for owner, n in rows:
        held[pid_of(owner)] = held.get(pid_of(owner), 0) + int(n)
    pid = max(by_pid, key=lambda p: held.get(p, 0))
    return by_pid[pid]


async def kill_and_watch(db: Database, victim: ServiceProcess, limit: float) -> Takeover:
    assert victim.proc is not None
    pid = victim.proc.pid
    killed_at, killed_wall = time.perf_counter(), utcnow()
    victim.proc.send_signal(signal.SIGKILL)
    victim.proc.wait(30)
    pattern = {"owner": f"%:{pid}:%"}
    async with db.session() as session:  # frozen now: nobody else writes a dead process's tokens
        rows = {rid: (token, expires) for rid, token, expires in (await session.execute(text(
            "SELECT id, lock_token, lock_expires_at FROM resources WHERE lock_token IS NOT NULL AND lock_owner LIKE :owner"), pattern)).all()}
        jobs = {name: (token, expires) for name, token, expires in (await session.execute(text(
            "SELECT name, lock_token, lock_expires_at FROM job_leases WHERE lock_token IS NOT NULL AND lock_owner LIKE :owner"), pattern)).all()}
    expiries = [expires for _, expires in [*rows.values(), *jobs.values()] if expires is not None]
    last_expiry = max(((e - killed_wall).total_seconds() for e in expiries), default=0.0)
    row_times: dict[Any, float] = {}
    job_times: dict[str, float] = {}
    while len(row_times) < len(rows) or len(job_times) < len(jobs):
        elapsed = time.perf_counter() - killed_at
        if elapsed > limit:
            break
        async with db.session() as session:
            if rows:
                now_tokens = dict((await session.execute(text("SELECT id, lock_token FROM resources WHERE id = ANY(:ids)"),
                                                          {"ids": list(rows)})).all())
                for rid, (token, _) in rows.items():
                    if rid not in row_times and now_tokens.get(rid) != token:
                        row_times[rid] = elapsed
            if jobs:
                job_tokens = dict((await session.execute(text("SELECT name, lock_token FROM job_leases WHERE name = ANY(:names)"),
                                                         {"names": list(jobs)})).all())
                for name, (token, _) in jobs.items():
                    if name not in job_times and job_tokens.get(name) != token:
                        job_times[name] = elapsed
        await asyncio.sleep(0.1)
    return Takeover(f"pid {pid}", row_times, job_times, last_expiry, len(rows) - len(row_times) + len(jobs) - len(job_times))


async def nothing_lost(db: Database, sandboxes: dict[str, SeededSandbox], counts: dict[str, int]) -> None:
    async with db.session() as session:
        statuses = dict((await session.execute(text("SELECT status, count(*) FROM resources GROUP BY status"))).all())
    if statuses != {"running": sum(counts.values())}:
        raise RuntimeError(f"the fleet changed: {statuses}")
    for vendor, sandbox in sandboxes.items():
        state = sandbox.state()
        live = [i for i in state["instances"] if i["phase"] not in ("deleted", "preempted")]
        if len(live) != counts[vendor] or state["deletes"]:
            raise RuntimeError(f"{vendor}: {len(live)} live of {counts[vendor]}, {len(state['deletes'])} deletes")


# ----- the run -------------------------------------------------------------------------------------
async def enable_statement_counts(server: Any) -> None:
    """pg_stat_statements must be preloaded: restart the throwaway server with it once."""
    if "pg_stat_statements" not in server.options:
        server.options += " -c shared_preload_libraries=pg_stat_statements"
        server.stop()
        server.start()


async def measure(server: Any, quick: bool) -> list[Row]:
    size = QUICK_FLEET if quick else FLEET
    lease = QUICK_LEASE_SECONDS if quick else LEASE_SECONDS
    warm, window = (QUICK_WARM, QUICK_WINDOW) if quick else (WARM, WINDOW)
    counts = fleet_split(size)
    root = Path(tempfile.mkdtemp(prefix="gpusupply-bench-fleet-"))
    await enable_statement_counts(server)
    database_url = server.url(server.create_database())
    started = time.perf_counter()
    await seed_fleet(database_url, root / "state", counts, SEED)
    print(f"fleet: {size:,} running resources seeded ({counts}) in {time.perf_counter() - started:.0f} s", flush=True)
    db = Database(database_url)
    sandboxes: dict[str, SeededSandbox] = {}
    workers: list[ServiceProcess] = []
    try:
        async with db.engine.connect() as connection:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            await connection.execute(text("CREATE EXTENSION IF NOT EXISTS pg_stat_statements"))
        for vendor, count in counts.items():
            config = sandbox_config(vendor, count, SEED)
            sandboxes[vendor] = SeededSandbox(vendor, root / f"{vendor}.log", seed=config.seed, offers=config.offers,
                                              ready_after=config.ready_after, stock_each=config.stock, state_dir=root / "state" / vendor).start()
        env = service_env(database_url, root / "data", sandboxes, **engine_settings(lease))  # type: ignore[arg-type]
        # Watched from before the first worker starts: a quick vendor's round may end at once.
        watching = asyncio.create_task(watch_sweeps(db, sandboxes, time.perf_counter(), limit=600))
        await asyncio.sleep(0.5)
        workers = [ServiceProcess.worker(env, root / f"worker-{n}.log") for n in range(WORKERS)]
        await asyncio.gather(*(asyncio.to_thread(worker.start) for worker in workers))  # each waits until it runs
        rounds = await watching
        print("fleet sweep: " + "; ".join(f"{r.vendor} {r.calls} calls / {pages(r.vendor, counts[r.vendor])} pages in {r.seconds:.1f} s "
                                          f"by {r.owner or '(too quick to see)'} (routes {r.routes}, 429 {r.limited})" for rs in rounds.values() for r in rs), flush=True)
        steady = await steady_state(db, sandboxes, workers, warm, window)
        print(f"fleet steady state: {steady}", flush=True)
        victim = await choose_victim(db, workers)
        taken = await kill_and_watch(db, victim, limit=lease + POLL_SECONDS + 90)
        print(f"fleet SIGKILL of {taken.victim}: rows {sorted(taken.rows.values())[-3:]} (of {len(taken.rows)}), jobs {taken.jobs}, "
              f"last expiry {taken.last_expiry:.1f} s, untaken {taken.untaken}", flush=True)
        await nothing_lost(db, sandboxes, counts)
    finally:
        for worker in workers:
            worker.stop()
        for sandbox in sandboxes.values():
            sandbox.stop()
        await db.dispose()
    return rows(size, counts, rounds, steady, taken, lease)


def rows(size: int, counts: dict[str, int], rounds: dict[str, list[Round]], steady: Steady, taken: Takeover, lease: float) -> list[Row]:
    label = f"{size:,} resources, {WORKERS} workers"
    first = [next(r for r in rs if r.completed) for rs in rounds.values()]
    calls, needed = sum(r.calls for r in first), sum(pages(r.vendor, counts[r.vendor]) for r in first)
    every_round = all(r.calls == pages(r.vendor, counts[r.vendor]) for rs in rounds.values() for r in rs if r.completed)
    owners = {r.owner.split(":")[1] if r.owner else "?" for rs in rounds.values() for r in rs}
    sweep_note = "; ".join(
        f"{v} {counts[v]:,}: " + ", ".join(f"{r.calls} calls/{pages(v, counts[v])} pages {r.seconds:.0f} s by pid "
                                           f"{r.owner.split(':')[1] if r.owner else '?'}"
                                           + ("" if r.completed else f" (not completed: {'its lease lapsed, taken over by pid ' + r.ended.split(':')[1] if r.ended else 'rate limited'})")
                                           + (f" ({sum(r.limited.values())} answered 429)" if r.limited else "") for r in rs)
        for v, rs in rounds.items()
    )
    refreshed = sum(steady.refreshed.values())
    per_second = steady.statements / steady.seconds
    rss = list(steady.rss_mb.values())
    row_bound = lease + POLL_SECONDS
    job_bound = lease + MAX_CHECK_SECONDS
    slowest_row = max(taken.rows.values(), default=0.0)
    slowest_job = max(taken.jobs.values(), default=0.0)
    vendor_calls = "; ".join(f"{v}: " + ", ".join(f"{route} {n}" for route, n in c.items()) for v, c in steady.vendor_calls.items())
    return [
        Row(NAME, f"reconciler vendor calls per sweep ({label})", calls, needed, "listing pages needed", "calls = pages, whoever runs it",
            every_round and calls == needed,
            note=f"{sum(len(rs) for rs in rounds.values())} rounds by {len(owners)} worker(s): {sweep_note}"),
        Row(NAME, f"SQL statements/s, steady-state refresh ({label})", per_second, note=(
            f"{steady.seconds:.0f} s window: {steady.transactions / steady.seconds:.0f} transactions/s; {refreshed / steady.seconds:.1f} rows "
            f"refreshed/s ({', '.join(f'{v} {n}' for v, n in sorted(steady.refreshed.items()))}), "
            f"{steady.statements / max(refreshed, 1):.1f} statements per refreshed row; vendor calls {vendor_calls}")),
        Row(NAME, f"RSS MB per worker, steady state ({label})", max(rss, default=0.0), note=(
            f"largest sample of each worker: {', '.join(f'{m:.0f}' for m in rss)} (mean {statistics.mean(rss) if rss else 0:.0f})")),
        Row(NAME, f"s from SIGKILL until its row leases are taken over ({label})", slowest_row, row_bound,
            f"lease TTL {lease:g} s + one poll {POLL_SECONDS:g} s", "<= TTL + one poll", taken.untaken == 0 and slowest_row <= row_bound and slowest_job <= job_bound,
            note=(f"{taken.victim}: {len(taken.rows)} row leases (median {statistics.median(taken.rows.values()) if taken.rows else 0:.1f} s), "
                  f"{len(taken.jobs)} job leases {', '.join(f'{n} {s:.1f} s' for n, s in taken.jobs.items()) or ''} "
                  f"(bound TTL + job check {job_bound:g} s{', met' if slowest_job <= job_bound else ', NOT met'}); its last lease expired "
                  f"{taken.last_expiry:.1f} s after the kill; {taken.untaken} never taken over")),
    ]
