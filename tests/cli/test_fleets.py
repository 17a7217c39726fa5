"""`gpusupply fleets ...` against a running service with the engine and the sandbox vendors."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gpusupply.cli.output import ExitCode
from tests.cli.test_commands import one_error_line, run
from tests.client.helpers import LiveService, live_service
from tests.conftest import SSH_KEY


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    with live_service(tmp_path_factory.mktemp("cli-fleets")) as service:
        yield service


@pytest.fixture
def cli(live: LiveService, tmp_path: Path) -> CliRunner:
    return CliRunner(env={
        "HOME": str(tmp_path), "XDG_CONFIG_HOME": None, "COLUMNS": "200",
        "GPUSUPPLY_URL": live.url, "GPUSUPPLY_API_KEY": live.tokens["bob"],
    })


def shown(cli: CliRunner, fleet: str) -> dict[str, object]:
    return json.loads(run(cli, "fleets", "show", fleet, "--json").stdout)


def test_create_show_scale_watch_delete(cli: CliRunner) -> None:
    # The module's service is shared: another test's fleets may be listed, never this one yet.
    assert "cli-fleet" not in run(cli, "fleets", "list").stdout
    created = run(cli, "fleets", "create", "cli-fleet", "--gpu", "RTX4090", "--size", "2", "--max-price", "50",
                  "--placement", "pack", "--ssh-key", SSH_KEY).stdout
    assert "fleet cli-fleet:" in created and "2 wanted" in created and "fleets show cli-fleet --watch" in created

    deadline = time.monotonic() + 60
    while shown(cli, "cli-fleet")["running"] != 2:
        assert time.monotonic() < deadline, shown(cli, "cli-fleet")
        time.sleep(0.2)
    page = run(cli, "fleets", "show", "cli-fleet").stdout
    assert "2 running of 2 wanted" in page and "placement: pack" in page and "fleet_created" in page
    # The login is the one the vendor's image takes (root in containers, ubuntu on Lambda's VMs).
    assert re.search(r"ssh \w+@", page), page
    listed = run(cli, "fleets", "list").stdout
    assert "cli-fleet" in listed and "2/2" in listed and "1x RTX4090" in listed

    assert "1 wanted" in run(cli, "fleets", "scale", "cli-fleet", "1").stdout
    assert "deleting" in run(cli, "fleets", "delete", "cli-fleet").stdout
    watched = run(cli, "fleets", "show", "cli-fleet", "--watch", "--interval", "0.2").stdout
    assert watched.count("fleet cli-fleet (") >= 1 and ": deleted" in watched  # drawn until deleted
    assert "cli-fleet" not in run(cli, "fleets", "list").stdout  # a deleted fleet is listed only with --all
    assert "cli-fleet" in run(cli, "fleets", "list", "--all").stdout


def test_errors_are_one_line(cli: CliRunner) -> None:
    missing = run(cli, "fleets", "show", "nope", code=ExitCode.USAGE)
    assert "no fleet 'nope'" in one_error_line(missing)
    bad = run(cli, "fleets", "create", "x", "--gpu", "Z999", "--ssh-key", SSH_KEY, code=ExitCode.API_ERROR)
    assert "Z999" in one_error_line(bad)
    run(cli, "fleets", "create", "dup", "--gpu", "H100", "--size", "0", "--ssh-key", SSH_KEY)
    taken = run(cli, "fleets", "create", "dup", "--gpu", "H100", "--size", "0", "--ssh-key", SSH_KEY, code=ExitCode.API_ERROR)
    assert "already have a fleet named 'dup'" in one_error_line(taken)
