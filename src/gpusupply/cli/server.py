"""Server-side commands: serve, worker, db upgrade, keys, and standalone sandbox vendors."""

from __future__ import annotations

import asyncio
import signal
from typing import Any, NoReturn

import typer

from gpusupply.settings import VENDORS, Settings

keys_app = typer.Typer(help="API keys (stored hashed; the token is shown once).", no_args_is_help=True)
db_app = typer.Typer(help="The database.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("worker")(worker)
    app.command("sandbox")(sandbox)
    app.add_typer(db_app, name="db")
    app.add_typer(keys_app, name="keys")


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def load_settings(**overrides: Any) -> Settings:
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValueError as exc:
        fail(f"invalid configuration: {exc}", 2)
        raise  # unreachable; for type checkers


def setup_logging(settings: Settings) -> None:
    """Text or JSON lines on stderr, with request ids and secrets redacted (gpusupply/logging.py)."""
    from gpusupply.logging import configure_logging

    try:
        configure_logging(settings)
    except ValueError as exc:
        fail(f"invalid configuration: {exc}", 2)


LOG_FORMAT_HELP = "Log lines as text or json (GPUSUPPLY_LOG_FORMAT, default text)."


def vendor_modes(settings: Settings) -> dict[str, str]:
    """Which vendors run live (a key is configured) and which as in-process sandboxes."""
    modes = {}
    for vendor in settings.vendors:
        key = settings.vendor_key(vendor)
        modes[vendor] = "live" if key is not None and key.get_secret_value() else "sandbox"
    return modes


SHARED_SANDBOX_NOTE = (
    " (in-process: other processes cannot see its instances; with several processes run"
    " `gpusupply sandbox {vendor} --port N` and set GPUSUPPLY_{upper}_URL and GPUSUPPLY_{upper}_API_KEY)"
)


def echo_vendor_modes(settings: Settings, *, several_processes: bool) -> None:
    """One banner line per vendor; says a sandbox is simulated, and warns when it would not be shared."""
    for vendor, mode in vendor_modes(settings).items():
        note = ""
        if mode == "sandbox":
            note = f" (simulated: no real instances, no real charges; set GPUSUPPLY_{vendor.upper()}_API_KEY for the real one)"
            if several_processes:
                note += SHARED_SANDBOX_NOTE.format(vendor=vendor, upper=vendor.upper())
        typer.echo(f"vendor {vendor}: {mode}{note}")


def claim_sandboxes(settings: Settings) -> Settings:
    """With in-process sandboxes: keep their state in <data_dir>/sandboxes, locked to this process
    (a second process on the same data directory is refused, naming the first one's pid)."""
    if "sandbox" not in vendor_modes(settings).values():
        return settings
    from gpusupply.sandbox.state import SandboxDirectoryBusy, SandboxStore

    directory = settings.sandbox_state_dir or settings.data_dir / "sandboxes"
    try:
        SandboxStore.open(directory)
    except SandboxDirectoryBusy as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot use {directory} for the sandboxes' state: {exc}")
    typer.echo(f"sandbox state: {directory.expanduser().absolute()} (simulated instances survive a restart)")
    return settings.model_copy(update={"sandbox_state_dir": directory})


async def _prepare(settings: Settings, *, first_key: bool) -> tuple[str, str | None]:
    """Migrate; create the first API key when there is none. Returns (database, token or None)."""
    from gpusupply.db.session import Database
    from gpusupply.services.keys import any_key_exists, create_key

    db = Database(settings.effective_database_url)
    try:
        await db.migrate()
        token = None
        if first_key and not await any_key_exists(db):
            _, token = await create_key(db, "default", tenant="default", admin=True)
        return db.display_url, token
    finally:
        await db.dispose()


def serve(
    host: str = typer.Option(None, help="Address to listen on (GPUSUPPLY_HOST, default 127.0.0.1)."),
    port: int = typer.Option(None, help="Port (GPUSUPPLY_PORT, default 8080)."),
    no_engine: bool = typer.Option(False, "--no-engine", help="Serve the API only; run the engine elsewhere (`worker`)."),
    log_format: str = typer.Option(None, "--log-format", help=LOG_FORMAT_HELP),
) -> None:
    """Run the API (and, unless --no-engine, the background engine) in one process."""
    import uvicorn

    from gpusupply.app import create_app

    settings = load_settings(host=host, port=port, log_format=log_format)
    setup_logging(settings)
    database, token = asyncio.run(_prepare(settings, first_key=True))
    typer.echo(f"gpusupply listening on http://{settings.host}:{settings.port}")
    typer.echo(f"database: {database}")
    echo_vendor_modes(settings, several_processes=no_engine)
    settings = claim_sandboxes(settings)
    typer.echo(f"engine: {'off (--no-engine)' if no_engine else 'on'}")
    if token is not None:
        typer.echo("created the first API key (tenant 'default', admin); it is shown only once:")
        typer.echo(token)
    app = create_app(settings, run_engine=not no_engine, settle_heap_when_started=True)
    # log_config=None: uvicorn's own lines go through our handler (JSON, redaction) too.
    uvicorn.run(
        app, host=settings.host, port=settings.port, log_level=settings.log_level.lower(), access_log=False, log_config=None
    )


async def _run_worker(settings: Settings, metrics_port: int | None = None) -> None:
    from types import SimpleNamespace

    from gpusupply.api.observability import metrics_only_app
    from gpusupply.app import settle_heap
    from gpusupply.db.ratelimits import DatabaseBuckets
    from gpusupply.db.session import Database
    from gpusupply.domain.catalog import OfferCatalog
    from gpusupply.sandbox.mode import build_vendors
    from gpusupply.sandbox.runner import ServerThread

    try:
        from gpusupply.engine.runner import Engine
    except ImportError as exc:
        fail(f"the engine is not available in this build ({exc})")
    db = Database.from_settings(settings)
    await db.migrate()
    vendors = await build_vendors(settings)
    vendors.share_buckets(DatabaseBuckets(db))  # one rate limit per vendor key, all processes
    catalog = OfferCatalog(db, vendors, settings)
    from gpusupply.services.procurement import procure_for_alert

    engine = Engine(db, vendors, settings, catalog, alert_procurer=procure_for_alert)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    metrics_server = None
    try:
        await catalog.start()
        await engine.start()
        settle_heap()
        typer.echo(f"gpusupply worker {engine.owner} running on {db.display_url}")
        if metrics_port is not None:
            parts = SimpleNamespace(db=db, vendors=vendors, settings=settings, catalog=catalog)
            app = metrics_only_app(parts, asyncio.get_running_loop())
            try:
                metrics_server = await asyncio.to_thread(ServerThread(app, settings.host, metrics_port).start)
            except OSError as exc:  # port taken, address not ours: stop cleanly with one line
                fail(f"cannot serve metrics on {settings.host}:{metrics_port}: {exc.strerror or exc}")
            typer.echo(f"metrics on {metrics_server.url}/metrics")
        await stop.wait()
    finally:
        if metrics_server is not None:
            await asyncio.to_thread(metrics_server.stop)
        await engine.stop()
        await catalog.aclose()
        await vendors.aclose()
        await db.dispose()


def worker(
    log_format: str = typer.Option(None, "--log-format", help=LOG_FORMAT_HELP),
    metrics_port: int = typer.Option(None, "--metrics-port", envvar="GPUSUPPLY_METRICS_PORT", min=1, max=65535,
                                     help="Serve Prometheus /metrics on this port (on GPUSUPPLY_HOST)."),
) -> None:
    """Run the background engine only (scale out: several workers on one PostgreSQL)."""
    settings = load_settings(log_format=log_format)
    setup_logging(settings)
    echo_vendor_modes(settings, several_processes=True)
    settings = claim_sandboxes(settings)
    asyncio.run(_run_worker(settings, metrics_port))


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Bring the database schema to the newest revision."""
    settings = load_settings()
    echo_database(settings)
    database, _ = asyncio.run(_prepare(settings, first_key=False))
    typer.echo(f"database {database} is at the newest revision")


def echo_database(settings: Settings) -> None:
    """Say which database a server-side command opens (on stderr: stdout stays the command's answer)."""
    note = ""
    if settings.is_sqlite and settings.database_url is None and not (settings.data_dir / "gpusupply.db").exists():
        note = " (new: no database there yet; set GPUSUPPLY_DATA_DIR or GPUSUPPLY_DATABASE_URL to use another)"
    typer.echo(f"database: {_display_url(settings.effective_database_url)}{note}", err=True)


def _display_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


async def _with_db(action: Any) -> Any:
    from gpusupply.db.session import Database

    settings = load_settings()
    echo_database(settings)
    db = Database(settings.effective_database_url)
    try:
        await db.migrate()
        return await action(db)
    finally:
        await db.dispose()


def _service_call(action: Any) -> Any:
    from gpusupply.core.errors import ServiceError

    try:
        return asyncio.run(_with_db(action))
    except ServiceError as exc:
        fail(exc.errors[0]["msg"] if hasattr(exc, "errors") else exc.detail)


@keys_app.command("create")
def keys_create(
    name: str = typer.Argument(..., help="The key's name (also the tenant's, unless --tenant)."),
    tenant: str = typer.Option(None, help="The tenant the key belongs to (created if missing)."),
    admin: bool = typer.Option(False, "--admin", help="An admin key."),
) -> None:
    """Create an API key. The token is printed as the last line, once."""
    from gpusupply.services.keys import create_key

    info, token = _service_call(lambda db: create_key(db, name, tenant=tenant, admin=admin))
    typer.echo(f"key {info.prefix} ({info.name}) for tenant {info.tenant}{' [admin]' if info.is_admin else ''}")
    typer.echo(token)


@keys_app.command("list")
def keys_list() -> None:
    """List keys (prefix, name, tenant, admin, created, revoked). Tokens are never shown again."""
    from gpusupply.services.keys import list_keys

    keys = _service_call(list_keys)
    from gpusupply.cli.output import Column, render_table, width

    columns = (Column("PREFIX", keep=9), Column("NAME", keep=9, flex=True), Column("TENANT", keep=8, flex=True),
               Column("ADMIN", keep=6), Column("CREATED", keep=5), Column("REVOKED", keep=7), Column("ID", keep=1))
    rows = [[k.prefix, k.name, k.tenant, "yes" if k.is_admin else "no", k.created_at[:19], (k.revoked_at or "-")[:19], str(k.id)]
            for k in keys]
    typer.echo(render_table(columns, rows, width=width()))


@keys_app.command("revoke")
def keys_revoke(ref: str = typer.Argument(..., help="The key's id or its prefix (gsk_...).")) -> None:
    """Revoke a key: requests with it get 401 from then on."""
    from gpusupply.services.keys import revoke_key

    info = _service_call(lambda db: revoke_key(db, ref))
    typer.echo(f"revoked key {info.prefix} ({info.name}) of tenant {info.tenant}")


def sandbox(
    vendor: str = typer.Argument(..., help=f"One of: {', '.join(VENDORS)}."),
    port: int = typer.Option(..., help="Port to listen on."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    seed: int = typer.Option(0, help="Seed of the inventory and fault draws."),
    offers: int = typer.Option(3000, help="Marketplace size (Vast; others scale from it)."),
    ready_after: float = typer.Option(3.0, help="Seconds from create to running."),
    faults: str = typer.Option("", help="Fault probabilities, e.g. '429=0.2,500=0.05,lost=0.1'."),
    stock: int = typer.Option(None, min=0, help="Units of every product / instance type (Nebula, fal); default: seeded."),
    rate_scale: float = typer.Option(
        1.0, min=0.001, max=1000, help="Multiplies the documented rate limits (a client sets GPUSUPPLY_VENDOR_RATE_SCALE alike)."
    ),
    prices_move: bool = typer.Option(False, "--prices-move", help="Prices walk and offers come and go (default: fixed seeded prices)."),
) -> None:
    """Serve one simulated vendor API standalone (any non-empty key is an account)."""
    import uvicorn

    from gpusupply.sandbox.common import SandboxConfig, parse_fault_spec
    from gpusupply.sandbox.mode import sandbox_class

    if vendor not in VENDORS:
        fail(f"unknown vendor {vendor!r}; one of {', '.join(VENDORS)}", 2)
    try:
        config = SandboxConfig(seed=seed, offers=offers, ready_after=ready_after, faults=parse_fault_spec(faults), stock=stock,
                               rate_scale=rate_scale, prices_move=prices_move)
    except ValueError as exc:
        fail(str(exc), 2)
    simulated = sandbox_class(vendor)(config)
    typer.echo(f"{vendor} sandbox on http://{host}:{port} (admin routes under /_sandbox)")
    uvicorn.run(simulated.create_app(), host=host, port=port, log_level="warning", access_log=False)
