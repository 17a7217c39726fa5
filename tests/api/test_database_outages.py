"""Database outages: the API answers 503 with Retry-After (never 500) while the database is down,
shutting down, dropping connections or locked, and everything works again afterwards without a
restart of the app; the engine finishes its work by itself once the database is back.

PostgreSQL: a server of this module's own (it is stopped and started), not the session's.
SQLite: another connection holds `BEGIN EXCLUSIVE` on the file.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError
from starlette.requests import Request

from gpusupply.api.errors import database_error
from gpusupply.db.errors import is_bad_data, is_unavailable
from tests.api.helpers import first_offer, procure, search, wait_for
from tests.conftest import PostgresServer, Service, _migrate, find_pg_bindir, postgres_server, start_service
from tests.web.helpers import console_client, sign_in

RESOURCE_READS = ("/resources", "/usage")


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, (response.status_code, response.text[:300])
    assert int(response.headers["Retry-After"]) >= 1


# ----- the classification, on errors the drivers really raise ------------------------------------
def _request(path: str = "/resources") -> Request:
    return Request({"type": "http", "method": "GET", "path": path, "headers": [], "query_string": b""})


async def test_a_value_the_database_refuses_is_a_422_not_an_outage() -> None:
    exc = DataError("INSERT ...", {}, Exception("value out of range"))
    assert is_bad_data(exc) and not is_unavailable(exc)
    response = await database_error(_request(), exc)
    assert response.status_code == 422 and "Retry-After" not in response.headers


async def test_integrity_and_unknown_driver_errors_are_not_outages() -> None:
    assert not is_unavailable(IntegrityError("INSERT ...", {}, Exception("duplicate key")))
    generic = DBAPIError("SELECT ...", {}, Exception("something odd"))
    assert not is_unavailable(generic)
    response = await database_error(_request(), generic)
    assert response.status_code == 500


async def test_sqlite_locked_is_an_outage() -> None:
    assert is_unavailable(OperationalError("INSERT ...", {}, sqlite3.OperationalError("database is locked")))


# ----- PostgreSQL ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def outage_pg() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this module only: its tests stop and start it."""
    if find_pg_bindir() is None:
        pytest.skip("PostgreSQL binaries not found")
    with postgres_server(crash_safe=True) as server:
        yield server


@pytest.fixture
async def pg_service(outage_pg: PostgresServer, test_settings: Any, vendor_set: Any) -> AsyncIterator[Service]:
    name = outage_pg.create_database()
    url = outage_pg.url(name)
    await asyncio.to_thread(_migrate, url)
    settings = test_settings.model_copy(update={"database_url": url, "engine_poll_seconds": 0.1, "provisioning_poll_seconds": 0.2})
    try:
        async with start_service(settings, vendors=vendor_set, run_engine=True) as service:
            yield service
    finally:
        outage_pg.start() if not await _accepting(outage_pg) else None
        outage_pg.drop_database(name)


async def _accepting(server: PostgresServer) -> bool:
    try:
        conn = await asyncpg.connect(host=server.host, port=server.port, user=server.user, database="postgres", timeout=5)
    except (OSError, asyncpg.PostgresError):
        return False
    await conn.close()
    return True


async def _admin(server: PostgresServer) -> asyncpg.Connection:
    return await asyncpg.connect(host=server.host, port=server.port, user=server.user, database="postgres")


async def _terminate_app_connections(admin: asyncpg.Connection) -> None:
    await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'")


async def _ready(service: Service, resource_id: str) -> bool:
    response = await service.alice.get(f"/resources/{resource_id}")
    return response.status_code == 200 and response.json()["status"] == "running"


@pytest.mark.postgres
async def test_postgres_stopped_answers_503_then_recovers_without_restart(pg_service: Service, outage_pg: PostgresServer) -> None:
    service = pg_service
    offer = await first_offer(service.alice, "nebula")
    before = await procure(service.alice, offer["offer_id"])
    assert before.status_code == 200, before.text
    console = console_client(service)
    await sign_in(console, service.tenants["alice"].token)

    outage_pg.stop("fast")
    for path in RESOURCE_READS:
        assert_unavailable(await service.alice.get(path))
    assert_unavailable(await procure(service.alice, offer["offer_id"]))
    page = await console.get("/console/resources")
    assert_unavailable(page)
    assert "text/html" in page.headers["content-type"] and "Temporarily unavailable" in page.text
    readiness = await service.anonymous.get("/readyz")
    assert readiness.status_code == 503

    outage_pg.start()
    async def reads_again() -> bool:
        return (await service.alice.get("/resources")).status_code == 200
    await wait_for(reads_again, within=30)
    # The engine carries on by itself: the procurement taken before the outage becomes running.
    resource_id = before.json()["resource_ids"][0]
    await wait_for(lambda: _ready(service, resource_id), within=60)
    after = await procure(service.alice, (await first_offer(service.alice, "fal"))["offer_id"])
    assert after.status_code == 200, after.text
    await wait_for(lambda: _ready(service, after.json()["resource_ids"][0]), within=60)
    await console.aclose()


@pytest.mark.postgres
async def test_postgres_shutting_down_answers_503(pg_service: Service, outage_pg: PostgresServer) -> None:
    """`pg_ctl stop -m smart` waits for sessions to end; meanwhile every new connection is refused
    with "the database system is shutting down" (SQLSTATE 57P03, a bare DBAPIError from asyncpg)."""
    service = pg_service
    holder = await _admin(outage_pg)  # keeps the server in its shutdown wait
    await asyncio.to_thread(outage_pg.stop, "smart", wait=False)

    async def refusing() -> bool:
        try:
            conn = await _admin(outage_pg)
        except asyncpg.CannotConnectNowError:
            return True
        await conn.close()
        return False

    await wait_for(refusing, within=30)
    # The app's pooled sessions would go on working through a smart shutdown: cut them, so that
    # it has to connect again (the sessions are gone once the stop completes anyway).
    await _terminate_app_connections(holder)
    for path in RESOURCE_READS:
        assert_unavailable(await service.alice.get(path))
    await holder.close()  # the last session ends: the server stops
    await wait_for(lambda: _stopped(outage_pg), within=30)
    assert_unavailable(await service.alice.get("/resources"))
    outage_pg.start()

    async def reads_again() -> bool:
        return (await service.alice.get("/resources")).status_code == 200

    await wait_for(reads_again, within=30)


async def _stopped(server: PostgresServer) -> bool:
    return not (server.root / "data" / "postmaster.pid").exists()


@pytest.mark.postgres
async def test_postgres_connection_lost_mid_query_answers_503(pg_service: Service, outage_pg: PostgresServer) -> None:
    """A request whose query is running when its connection is cut (here: it waits on a lock we
    hold, and we terminate its backend) gets 503; the next request works."""
    service = pg_service
    database = service.db.engine.url.database
    locker = await asyncpg.connect(host=outage_pg.host, port=outage_pg.port, user=outage_pg.user, database=database)
    admin = await _admin(outage_pg)
    transaction = locker.transaction()
    await transaction.start()
    await locker.execute("LOCK TABLE resources IN ACCESS EXCLUSIVE MODE")
    request = asyncio.create_task(service.alice.get("/resources"))

    async def cut_waiting_backends() -> bool:
        """Terminate every backend waiting on our lock (the request's, and the engine's claims),
        until the request has its answer."""
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock' AND pid <> $2",
            database,
            locker.get_server_pid(),
        )
        return request.done()

    await wait_for(cut_waiting_backends, within=30, interval=0.2)
    assert_unavailable(await request)
    await transaction.rollback()
    await locker.close()
    await admin.close()
    response = await service.alice.get("/resources")
    assert response.status_code == 200, response.text


# ----- SQLite -------------------------------------------------------------------------------------
@pytest.mark.parametrize("settings_overrides", [{"sqlite_busy_timeout_seconds": 1.0}])
async def test_sqlite_locked_by_another_process_answers_503_and_loses_nothing(service: Service, tmp_path: Path) -> None:
    offers = (await search(service.alice, "vendor: vast\ncompute:\n  gpu_type: RTX4090\n", limit=3))["offers"]
    assert len(offers) == 3
    first = await procure(service.alice, offers[0]["offer_id"])
    assert first.status_code == 200, first.text
    path = service.db.engine.url.database
    assert path is not None
    # Waits for a moment's writer (the catalog refresh books rate-limit slots), then holds the lock.
    # The wait runs in a thread: on this event loop it would stop the very writer it waits for (the
    # service runs here too), until SQLite's timeout says "database is locked".
    locker = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    await asyncio.to_thread(locker.execute, "BEGIN EXCLUSIVE")
    try:
        assert_unavailable(await procure(service.alice, offers[1]["offer_id"]))
        # Reads go on in WAL mode (a writer does not block readers); the submitted work is there.
        listed = await service.alice.get("/resources")
        assert listed.status_code == 200 and first.json()["resource_ids"][0] in listed.text
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    second = await procure(service.alice, offers[1]["offer_id"])
    assert second.status_code == 200, second.text
    listed = (await service.alice.get("/resources")).json()
    ids = {item["resource_id"] if "resource_id" in item else item["id"] for item in _items(listed)}
    assert {first.json()["resource_ids"][0], second.json()["resource_ids"][0]} <= ids


def _items(listed: Any) -> list[dict[str, Any]]:
    return listed["resources"] if isinstance(listed, dict) else listed
