"""The `gpusupply` command with and without the server installed: the client commands work with
the SDK alone; the server commands are loaded only when the server is there, and otherwise
answer with one line saying how to install it."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from gpusupply.cli import server
from gpusupply.cli.main import SERVER_COMMANDS, SERVER_MODULES, build_app, server_installed
from gpusupply.cli.output import ExitCode

ROOT = Path(__file__).resolve().parents[2]


def command_names(app: typer.Typer) -> set[str]:
    return {command.name or "" for command in app.registered_commands} | {group.name or "" for group in app.registered_groups}


def test_the_server_command_list_is_what_cli_server_registers() -> None:
    registered = typer.Typer()
    server.register(registered)
    assert command_names(registered) == set(SERVER_COMMANDS)


def test_the_server_modules_checked_are_the_server_extras() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extra = " ".join(project["optional-dependencies"]["server"]).replace("-", "_").lower()
    assert all(module in extra for module in SERVER_MODULES)
    client = " ".join(project["dependencies"]).replace("-", "_").lower()
    assert not any(module in client for module in SERVER_MODULES)


def test_with_the_server_installed_its_commands_are_the_real_ones() -> None:
    assert server_installed()  # the test environment has the server extra
    result = CliRunner().invoke(build_app(), ["serve", "--help"])
    assert result.exit_code == 0 and "--port" in result.stdout


@pytest.mark.parametrize("args", [["serve"], ["serve", "--port", "9000"], ["worker"], ["db", "upgrade"],
                                  ["keys", "create", "--admin"], ["keys", "--help"], ["sandbox", "vast"]])
def test_without_the_server_its_commands_say_how_to_install_it(args: list[str]) -> None:
    result = CliRunner().invoke(build_app(server=False), args)
    assert result.exit_code == ExitCode.USAGE, result.output
    lines = result.stderr.strip().splitlines()
    assert lines == [f"error: `gpusupply {args[0]}` needs the gpusupply server, which is not installed here: "
                     "pip install 'gpusupply[server]'"]
    assert result.stdout == "" and result.exception is None or isinstance(result.exception, SystemExit)


def test_help_lists_every_command_either_way() -> None:
    for installed in (True, False):
        result = CliRunner().invoke(build_app(server=installed), ["--help"])
        assert result.exit_code == 0
        for name in (*SERVER_COMMANDS, "offers", "procure", "resources", "ssh", "usage", "webhooks", "fleets"):
            assert f" {name} " in result.stdout, (installed, name)
