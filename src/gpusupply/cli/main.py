"""The `gpusupply` command. Each module in cli/ adds its commands with a `register(app)`
function; adding a module means adding one line below."""

from __future__ import annotations

import typer

from gpusupply import __version__
from gpusupply.cli import commands, cost, gpus, server, ssh, webhooks

app = typer.Typer(
    name="gpusupply",
    help="GPU Supply Service: search, procure, track and delete GPUs across clouds.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """GPU Supply Service."""


# One line per command module.
server.register(app)
commands.register(app)
gpus.register(app)
ssh.register(app)
cost.register(app)
webhooks.register(app)
