"""`gpusupply webhooks ...` against a running service, with a real receiver on loopback."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gpusupply.cli.output import ExitCode
from gpusupply.sandbox.runner import ServerThread
from tests.cli.test_commands import first_offer, one_error_line, run
from tests.client.helpers import LiveService, live_service
from tests.conftest import SSH_KEY
from tests.engine.webhook_helpers import Receiver


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    # The receiver is on loopback, which the service refuses unless told otherwise.
    with live_service(tmp_path_factory.mktemp("cli-webhooks"), allow_private_webhook_urls=True,
                      webhook_poll_seconds=0.2) as service:
        yield service


@pytest.fixture
def cli(live: LiveService, tmp_path: Path) -> CliRunner:
    return CliRunner(env={
        "HOME": str(tmp_path), "XDG_CONFIG_HOME": None, "COLUMNS": None,
        "GPUSUPPLY_URL": live.url, "GPUSUPPLY_API_KEY": live.tokens["bob"],
    })


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver()
    with ServerThread(hook) as server:
        hook.url = server.url
        yield hook


def deliveries_of(cli: CliRunner, webhook_id: str) -> list[dict[str, object]]:
    return json.loads(run(cli, "webhooks", "deliveries", webhook_id, "--json").stdout)["deliveries"]


def test_add_list_deliver_delete(cli: CliRunner, receiver: Receiver) -> None:
    assert "no webhooks" in run(cli, "webhooks", "list").stderr
    added = run(cli, "webhooks", "add", receiver.url + "/hook", "--event", "resource.ready", "--description", "ops").stdout
    webhook_id = added.split()[1].rstrip(":")
    assert "secret: whsec_" in added and "not shown again" in added

    listed = run(cli, "webhooks", "list").stdout
    assert webhook_id in listed and "resource.ready" in listed and "ops" in listed
    assert "secret" not in listed and "whsec_" not in listed
    assert json.loads(run(cli, "webhooks", "list", "--json").stdout)["webhooks"][0]["webhook_id"] == webhook_id
    assert "no deliveries yet" in run(cli, "webhooks", "deliveries", webhook_id).stderr

    offer = first_offer(cli, "nebula")
    run(cli, "procure", offer["offer_id"], "--ssh-key", SSH_KEY, "--wait", "--timeout", "60")
    deadline = time.monotonic() + 30
    while not [d for d in deliveries_of(cli, webhook_id) if d["status"] == "delivered"]:
        assert time.monotonic() < deadline, deliveries_of(cli, webhook_id)
        time.sleep(0.2)
    (delivery,) = deliveries_of(cli, webhook_id)
    assert delivery["event_type"] == "resource.ready" and receiver.requests[0].path == "/hook"
    shown = run(cli, "webhooks", "deliveries", webhook_id, "--status", "delivered").stdout.splitlines()
    assert shown[0].split()[:4] == ["DELIVERY", "ID", "EVENT", "STATUS"]
    assert str(delivery["delivery_id"]) in shown[1] and "resource.ready" in shown[1] and "HTTP 200" in shown[1]
    assert shown[-1] == "1 of 1 deliveries, newest first"
    assert run(cli, "webhooks", "deliveries", webhook_id, "--status", "failed", "--json").stdout.count("delivery_id") == 0

    removed = run(cli, "webhooks", "delete", webhook_id).stdout
    assert removed.startswith(f"{webhook_id}: ")
    gone = run(cli, "webhooks", "delete", webhook_id, code=ExitCode.NOT_FOUND)
    assert "HTTP 404" in one_error_line(gone)


def test_event_types_and_bad_input(cli: CliRunner) -> None:
    known = json.loads(run(cli, "webhooks", "events", "--json").stdout)
    assert {"resource.ready", "budget.alert"} <= set(known)
    assert "resource.ready" in run(cli, "webhooks", "events").stdout
    unknown = run(cli, "webhooks", "add", "https://93.184.216.34/x", "-e", "resource.exploded", code=ExitCode.API_ERROR)
    assert "resource.exploded" in one_error_line(unknown)
    not_an_id = run(cli, "webhooks", "deliveries", "nope", code=ExitCode.USAGE)
    assert "webhook_id" in one_error_line(not_an_id)
    bad_status = run(cli, "webhooks", "deliveries", "00000000-0000-4000-8000-000000000000", "--status", "lost",
                     code=ExitCode.USAGE)
    assert "lost" in bad_status.stderr
    as_json = run(cli, "webhooks", "delete", "00000000-0000-4000-8000-000000000000", "--json", code=ExitCode.NOT_FOUND)
    assert json.loads(as_json.stderr)["exit_code"] == ExitCode.NOT_FOUND
