"""The `gpusupply` command. Each module in cli/ adds its commands with a `register(app)`
function; adding a module means adding one line below.

The client commands need only the SDK (`pip install gpusupply`). The server commands
(`cli/server.py`) need the server, `pip install 'gpusupply[server]'`: they are loaded only when
it is installed; without it each answers with one line saying so (exit code 2).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

import typer

from gpusupply import __version__
from gpusupply.cli import commands, cost, fleets, gpus, prices, ssh, webhooks
from gpusupply.cli.output import ExitCode

# The commands cli/server.py registers (a test keeps the two the same).
SERVER_COMMANDS = ("serve", "worker", "sandbox", "db", "keys")
# Packages of the `server` extra its commands import; all present means the extra is installed.
SERVER_MODULES = ("fastapi", "uvicorn", "sqlalchemy", "alembic", "pydantic_settings")
SERVER_MISSING_HELP = "Needs the server: pip install 'gpusupply[server]'."


def server_installed() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in SERVER_MODULES)


def _version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """GPU Supply Service."""


def _server_not_installed(name: str) -> Callable[[typer.Context], None]:
    def command(ctx: typer.Context) -> None:
        typer.echo(
            f"error: `gpusupply {name}` needs the gpusupply server, which is not installed here: "
            "pip install 'gpusupply[server]'",
            err=True,
        )
        raise typer.Exit(ExitCode.USAGE)

    return command


def register_server_commands(app: typer.Typer, *, installed: bool) -> None:
    if installed:
        from gpusupply.cli import server

        server.register(app)
        return
    # Any arguments (`gpusupply db upgrade`, `serve --port 1`) get the one-line answer, not a usage error.
    anything = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}
    for name in SERVER_COMMANDS:
        app.command(name, help=SERVER_MISSING_HELP, context_settings=anything)(_server_not_installed(name))


def build_app(*, server: bool | None = None) -> typer.Typer:
    """The command; `server` says whether the server commands are loaded (default: when installed)."""
    app = typer.Typer(
        name="gpusupply",
        help="GPU Supply Service: search, procure, track and delete GPUs across clouds.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
    )
    app.callback()(main)
    # One line per command module.
    register_server_commands(app, installed=server_installed() if server is None else server)
    commands.register(app)
    gpus.register(app)
    ssh.register(app)
    cost.register(app)
    webhooks.register(app)
    prices.register(app)
    fleets.register(app)
    return app


app = build_app()
