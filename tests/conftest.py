"""Shared test fixtures.

Databases
- `pg_server` (session): a throwaway PostgreSQL 15 server. `initdb` into a temp dir, started with
  `pg_ctl` on a free loopback port (socket dir inside the temp dir, `fsync=off`), run as the
  `postgres` OS user through `runuser` when the tests run as root; stopped at the end of the
  session. Without PostgreSQL binaries the `postgres` tests are skipped, except under CI (`CI`
  set), where that is an error.
- `pg_url_factory` (session): `pg_url_factory()` creates a new empty database on that server and
  returns its `postgresql+asyncpg://` URL; `pg_url_factory(migrated=True)` one already migrated
  (cloned from a template database).
- `sqlite_url` / `postgres_url`: a new, empty database of one backend.
- `db_url`: parametrized over `sqlite` (a temp file) and `postgres` (marked `postgres`): a new
  database per test, already at the newest schema (copied from a migrated template, so tests do
  not pay for migrations; `Database.migrate()` on it is a no-op). `migrated_url(backend, request)`
  does the same for one backend.
- `database`: a `Database` on `db_url` (so a test using it runs on both backends).

Vendors and the whole service
- `test_settings`: `Settings` for tests (temp data dir, small fast sandboxes: `sandbox_offers=200`,
  `sandbox_ready_after=0.3`, no faults, short timeouts, no vendor keys from the environment).
  Override a field for one module with `@pytest.mark.parametrize("settings_overrides", [{...}])` or
  by overriding the `settings_overrides` fixture.
- `vendor_set`: every registered vendor as a sandbox, fresh for each test (configured from `test_settings`),
  served on loopback over real HTTP, with the real adapters pointed at them: what
  `sandbox.mode.build_vendors` makes without keys. The servers (`sandbox_servers`, one thread
  per vendor) live for the whole session; only the sandbox behind each is new per test. Reach a
  sandbox with `vendor_set.sandboxes["vast"]` (e.g. `.faults.faults = {"429": 0.3}` or
  `.clock.advance(60)`).
- `service`: the whole app (`gpusupply.app.create_app`, engine off) on SQLite with `vendor_set`, its
  lifespan running, and authenticated `httpx.AsyncClient`s for two tenants (`service.alice`,
  `service.bob`) plus an unauthenticated one (`service.anonymous`). Use another backend with
  `@pytest.mark.parametrize("service_backend", BACKENDS)`; run the engine with
  `@pytest.mark.parametrize("service_engine", [True])`.
- `start_service(...)`: the factory behind `service` (an async context manager) for tests that
  need their own settings, vendors or engine.

Constants: `BACKENDS` (both backends, postgres marked) and `SSH_KEY` (a valid OpenSSH public key).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from gpusupply.db.session import Database
from gpusupply.settings import VENDORS, Settings

pytest_plugins = ["tests.ci_skips"]

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGdmVWtle0ZvclRlc3RzT25seU5vdEFSZWFsS2V5MTIz test@gpusupply"


# ----- PostgreSQL ---------------------------------------------------------------------------------
def find_pg_bindir() -> Path | None:
    """Where initdb/pg_ctl live: pg_config's answer if it has them, else the newest Debian install."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True).stdout
            candidates.append(Path(out.strip()))
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), reverse=True)
    for path in candidates:
        if (path / "initdb").exists() and (path / "pg_ctl").exists():
            return path
    found = shutil.which("initdb")
    return Path(found).parent if found and shutil.which("pg_ctl") else None


# Ports for test servers: below the kernel's ephemeral range, so that no outgoing connection takes
# a chosen port before its server binds it (or while a restarted server is down); random, so that
# parallel test workers rarely choose alike (the process helpers retry when they do).
LISTEN_PORTS = range(20000, 32000)


def free_port() -> int:
    chooser = random.SystemRandom()
    for _ in range(200):
        port = chooser.choice(LISTEN_PORTS)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {LISTEN_PORTS}")


@dataclass
class PostgresServer:
    host: str
    port: int
    user: str
    root: Path
    # How it was started, so a test can stop it and start it again (database outages).
    control: list[str] = field(default_factory=list)  # the pg_ctl command line up to its action
    options: str = ""

    def stop(self, mode: str = "fast", *, wait: bool = True) -> None:
        """`pg_ctl stop -m MODE`: "fast" (disconnect everyone), "immediate" (crash-like), or "smart"
        (wait for sessions to end; meanwhile new connections hear "the database system is shutting down")."""
        subprocess.run([*self.control, "-m", mode, "-W" if not wait else "-w", "stop"], check=True, capture_output=True)

    def start(self) -> None:
        log = self.root / "server.log"
        subprocess.run([*self.control, "-o", self.options, "-l", str(log), "-w", "-t", "60", "start"], check=True, capture_output=True)

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://{self.user}@{self.host}:{self.port}/{database}"

    async def execute(self, sql: str) -> None:
        import asyncpg

        conn = await asyncpg.connect(host=self.host, port=self.port, user=self.user, database="postgres")
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    def run_sql(self, sql: str) -> None:
        """Run one statement from sync code, even inside a running event loop (own thread)."""
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, self.execute(sql)).result()

    def create_database(self, template: str | None = None) -> str:
        name = f"t_{uuid.uuid4().hex[:16]}"
        self.run_sql(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        return name

    def drop_database(self, name: str) -> None:
        with contextlib.suppress(Exception):
            self.run_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def postgres_server(*, crash_safe: bool = False) -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL from the machine's binaries (run as `postgres` when we are root),
    stopped and removed on exit. Also used outside pytest (the chaos soak).

    Tuned for speed: no fsync (the machine does not crash under a test) and, unless `crash_safe`,
    asynchronous commits. An asynchronous commit is acknowledged before its WAL reaches the kernel,
    so a server crash (`pg_ctl stop -m immediate`) loses the last acknowledged transactions: a
    test that crashes the server asks for `crash_safe`, which a real deployment also is."""
    bindir = find_pg_bindir()
    if bindir is None:
        raise FileNotFoundError("PostgreSQL binaries (initdb, pg_ctl) not found; `make test` installs them on Debian")
    as_root = os.geteuid() == 0
    root = Path(tempfile.mkdtemp(prefix="gpusupply-pg-"))
    data, sockets, log = root / "data", root / "sock", root / "server.log"
    sockets.mkdir()
    prefix: list[str] = []
    if as_root:
        shutil.chown(root, "postgres", "postgres")
        shutil.chown(sockets, "postgres", "postgres")
        root.chmod(0o755)
        prefix = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    subprocess.run(
        [*prefix, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
        check=True,
        capture_output=True,
    )
    options = (
        f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off "
        f"-c synchronous_commit={'on' if crash_safe else 'off'} "
        "-c full_page_writes=off -c max_connections=300 -c shared_buffers=64MB"
    )
    subprocess.run(
        [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w", "-t", "60", "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield PostgresServer("127.0.0.1", port, "postgres", root, [*prefix, str(bindir / "pg_ctl"), "-D", str(data)], options)
    finally:
        subprocess.run(
            [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], capture_output=True
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    if find_pg_bindir() is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL binaries (initdb, pg_ctl) not found; `make test` installs them on Debian")
        pytest.skip("PostgreSQL binaries not found")
    with postgres_server() as server:
        yield server


def _migrate(url: str) -> None:
    """Migrate a database to head from sync code (own thread and event loop), then let go of it."""

    async def run() -> None:
        db = Database(url)
        try:
            await db.migrate()
        finally:
            await db.dispose()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run()).result()


@pytest.fixture(scope="session")
def pg_url_factory(pg_server: PostgresServer) -> Iterator[Callable[..., str]]:
    """`pg_url_factory()` -> URL of a new empty database; `pg_url_factory(migrated=True)` -> a new
    database already at the newest schema (cloned from a template, much faster than migrating)."""
    template: list[str] = []

    def make(migrated: bool = False) -> str:
        if migrated and not template:
            name = pg_server.create_database()
            _migrate(pg_server.url(name))
            template.append(name)
        return pg_server.url(pg_server.create_database(template[0] if migrated else None))

    # Not dropped at the end: they go with the throwaway server, and each DROP DATABASE forces a
    # checkpoint (dropping a worker's hundred databases took 55 s of its session teardown).
    yield make


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file at the newest schema, copied for each test that wants a migrated database."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    _migrate(f"sqlite+aiosqlite:///{path.as_posix()}")
    return path


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A new, empty SQLite database."""
    return f"sqlite+aiosqlite:///{(tmp_path / 'gpusupply.db').as_posix()}"


@pytest.fixture
def postgres_url(pg_url_factory: Callable[..., str]) -> str:
    """A new, empty PostgreSQL database."""
    return pg_url_factory()


def migrated_url(backend: str, request: pytest.FixtureRequest) -> str:
    """A new database of `backend` ("sqlite" or "postgres") already at the newest schema."""
    if backend == "sqlite":
        path = request.getfixturevalue("tmp_path") / f"migrated-{uuid.uuid4().hex[:8]}.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite+aiosqlite:///{path.as_posix()}"
    if backend == "postgres":
        return request.getfixturevalue("pg_url_factory")(migrated=True)
    raise ValueError(f"unknown backend {backend!r}")


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest) -> str:
    """A new database per test, on each backend, already migrated (migrating again is a no-op)."""
    return migrated_url(request.param, request)


@pytest.fixture
async def database(db_url: str) -> AsyncIterator[Database]:
    db = Database(db_url)
    await db.migrate()
    try:
        yield db
    finally:
        await db.dispose()


# ----- settings and vendors -----------------------------------------------------------------------
@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {}


def make_test_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "database_url": f"sqlite+aiosqlite:///{(tmp_path / 'service.db').as_posix()}",
        **{f"{vendor}_api_key": None for vendor in VENDORS},  # no vendor keys from the environment
        # GPUSUPPLY_TEST_VENDORS narrows the sandboxes for a local run (default: all of them).
        "enabled_vendors": os.environ.get("GPUSUPPLY_TEST_VENDORS", ",".join(VENDORS)),
        "sandbox_seed": 7,
        "sandbox_offers": 200,
        "sandbox_ready_after": 0.3,
        "sandbox_faults": "",
        "sandbox_prices_move": False,  # fixed seeded prices; tests of moving prices turn it on
        "vendor_timeout": 5.0,
        # Generous: a healthy sandbox's catalog must be read inside it on a starved machine (5 s made
        # Nebula's time out at load 10, and a search came back without its offers). Tests of a slow or
        # failing vendor set their own.
        "offer_fetch_timeout": 30.0,
        "engine_workers": 4,
        "lease_seconds": 10.0,
        "refresh_interval_seconds": 2.0,
        "reconcile_interval_seconds": 5.0,
        "create_visibility_seconds": 2.0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def test_settings(tmp_path: Path, settings_overrides: dict[str, Any]) -> Settings:
    return make_test_settings(tmp_path, **settings_overrides)


class SwappableApp:
    """An ASGI app whose target changes per test: one loopback server per vendor for the whole
    session, a fresh sandbox (fresh state) behind it for every test."""

    def __init__(self) -> None:
        self.app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if self.app is None:
            await send({"type": "http.response.start", "status": 503, "headers": []})
            await send({"type": "http.response.body", "body": b"no sandbox for this test"})
            return
        await self.app(scope, receive, send)


@pytest.fixture(scope="session")
def sandbox_servers() -> Iterator[dict[str, tuple[Any, SwappableApp]]]:
    """vendor -> (ServerThread on loopback, the app it serves), started once per session."""
    from gpusupply.sandbox.runner import ServerThread

    servers = {}
    for vendor in VENDORS:
        app = SwappableApp()
        servers[vendor] = (ServerThread(app).start(), app)
    yield servers
    for server, _ in servers.values():
        server.stop()


@pytest.fixture
async def vendor_set(test_settings: Settings, sandbox_servers: dict[str, tuple[Any, SwappableApp]]) -> AsyncIterator[Any]:
    """The enabled vendors as fresh sandboxes (configured from `test_settings`) behind loopback
    servers, with the real adapters pointed at them: what `sandbox.mode.build_vendors` makes without keys."""
    from gpusupply.sandbox.common import SandboxConfig, parse_fault_spec
    from gpusupply.sandbox.mode import sandbox_class
    from gpusupply.vendors.registry import SANDBOX_KEY, VENDOR_SPECS, VendorSet, adapter_options

    adapters, modes, urls, sandboxes = {}, {}, {}, {}
    for vendor in test_settings.vendors:
        config = SandboxConfig(
            seed=test_settings.sandbox_seed,
            offers=test_settings.sandbox_offers,
            ready_after=test_settings.sandbox_ready_after,
            faults=parse_fault_spec(test_settings.sandbox_faults),
            prices_move=test_settings.sandbox_prices_move,
        )
        sandbox = sandbox_class(vendor)(config)
        server, app = sandbox_servers[vendor]
        app.app = sandbox.create_app()
        sandboxes[vendor], modes[vendor], urls[vendor] = sandbox, "sandbox", server.url
        options = adapter_options(vendor, test_settings)
        adapters[vendor] = VENDOR_SPECS[vendor].adapter(server.url, SANDBOX_KEY, timeout=test_settings.vendor_timeout, **options)
    vendors = VendorSet(adapters, modes, urls, sandboxes)
    try:
        yield vendors
    finally:
        await vendors.aclose()
        for vendor in sandboxes:
            sandbox_servers[vendor][1].app = None


# ----- the whole service --------------------------------------------------------------------------
@dataclass
class Tenant:
    name: str
    token: str
    tenant_id: uuid.UUID


@dataclass
class Service:
    """A running app with its parts and clients (see the module docstring)."""

    app: Any
    settings: Settings
    db: Database
    vendors: Any
    alice: httpx.AsyncClient
    bob: httpx.AsyncClient
    anonymous: httpx.AsyncClient
    tenants: dict[str, Tenant] = field(default_factory=dict)

    @property
    def ctx(self) -> Any:
        return self.app.state.ctx

    @property
    def catalog(self) -> Any:
        return self.app.state.ctx.catalog

    def client(self, token: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://service", headers=headers)


@contextlib.asynccontextmanager
async def start_service(
    settings: Settings,
    *,
    vendors: Any = None,
    run_engine: bool = False,
    database: Database | None = None,
) -> AsyncIterator[Service]:
    """Run `create_app` (lifespan included) and make two tenants with keys."""
    from gpusupply.app import create_app
    from gpusupply.services.keys import create_key

    app = create_app(settings, run_engine=run_engine, vendors=vendors, database=database)
    async with app.router.lifespan_context(app):
        ctx = app.state.ctx
        tenants = {}
        for name in ("alice", "bob"):
            _, token = await create_key(ctx.db, f"{name}-key", tenant=name)
            tenants[name] = Tenant(name, token, await _tenant_id(ctx.db, name))
        service = Service(app, settings, ctx.db, ctx.vendors, None, None, None, tenants)  # type: ignore[arg-type]
        async with (
            service.client(tenants["alice"].token) as alice,
            service.client(tenants["bob"].token) as bob,
            service.client() as anonymous,
        ):
            service.alice, service.bob, service.anonymous = alice, bob, anonymous
            yield service


async def _tenant_id(db: Database, name: str) -> uuid.UUID:
    from gpusupply.services.tenants import find_tenant

    async with db.session() as session:
        tenant = await find_tenant(session, name)
    assert tenant is not None
    return tenant.id


@pytest.fixture
def service_backend() -> str:
    return "sqlite"


@pytest.fixture
def service_engine() -> bool:
    return False


@pytest.fixture
async def service(
    request: pytest.FixtureRequest,
    test_settings: Settings,
    vendor_set: Any,
    service_backend: str,
    service_engine: bool,
) -> AsyncIterator[Service]:
    settings = test_settings.model_copy(update={"database_url": migrated_url(service_backend, request)})
    async with start_service(settings, vendors=vendor_set, run_engine=service_engine) as svc:
        yield svc
