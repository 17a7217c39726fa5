"""Client commands through Typer's CliRunner against a running service on a loopback port."""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from typer.testing import CliRunner

from gpusupply.cli import output
from gpusupply.cli.commands import complete_gpu, complete_status
from gpusupply.cli.config import (
    UsageProblem,
    config_file,
    read_config_file,
    read_ssh_key,
    resolve,
    write_config_file,
)
from gpusupply.cli.main import app
from gpusupply.cli.output import ExitCode, exit_code_for
from gpusupply.client import (
    ApiConnectionError,
    AuthenticationError,
    ConflictError,
    NotFoundError,
    ResourceFailedError,
    ServerError,
    WaitTimeoutError,
)
from gpusupply.contract.schemas import EventOut
from gpusupply.core.gpus import families
from gpusupply.settings import VENDORS
from tests.client.helpers import FAMILIES, LiveService, live_markers, live_service
from tests.conftest import SSH_KEY, free_port


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    with live_service(tmp_path_factory.mktemp("cli")) as service:
        yield service


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A home of our own: no real ~/.ssh or ~/.config is read; one key pair in ~/.ssh."""
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "id_ed25519.pub").write_text(SSH_KEY + "\n")
    (tmp_path / ".ssh" / "id_ed25519").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nnot a real key\n")
    return tmp_path


@pytest.fixture
def cli(live: LiveService, home: Path) -> CliRunner:
    return CliRunner(env={
        "HOME": str(home), "XDG_CONFIG_HOME": None, "COLUMNS": None,
        "GPUSUPPLY_URL": live.url, "GPUSUPPLY_API_KEY": live.tokens["alice"],
    })


def run(cli: CliRunner, *args: str, code: int = 0, **kwargs: Any) -> Result:
    result = cli.invoke(app, list(args), **kwargs)
    assert result.exit_code == code, (args, result.exit_code, result.stdout, result.stderr, result.exception)
    assert "Traceback" not in result.output
    return result


def one_error_line(result: Result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def first_offer(cli: CliRunner, vendor: str = "nebula") -> dict[str, Any]:
    """The cheapest 1-GPU offer of `vendor`, any family (the sandbox's stock runs out)."""
    for family in FAMILIES:
        offers = json.loads(run(cli, "offers", family, "--vendor", vendor, "--limit", "1", "--json").stdout)["offers"]
        if offers:
            return offers[0]
    raise AssertionError(f"no offer from {vendor}")


# ----- offers ------------------------------------------------------------------------------------
def test_offers_table_and_json(cli: CliRunner) -> None:
    found = json.loads(run(cli, "offers", "RTX4090", "--json", "--limit", "50").stdout)
    prices = [o["gpu_price_per_hour"] for o in found["offers"]]
    assert prices and prices == sorted(prices) and found["total_count"] >= len(prices)
    table = run(cli, "offers", "RTX4090", "--limit", "5").stdout.splitlines()
    assert table[0].split() == ["GPU", "VENDOR", "REGION", "$/GPU-H", "$/H", "SPOT", "OFFER", "ID", "EXPIRES"]
    assert found["offers"][0]["offer_id"] in table[1]
    assert table[-1].startswith(f"5 of {found['total_count']} offers")

    spot = json.loads(run(cli, "offers", "RTX4090", "--spot", "--vendor", "VAST", "-n", "1", "--json").stdout)
    assert spot["offers"] and {(o["contract_type"], o["vendor"]) for o in spot["offers"]} == {("spot", "vast")}
    cheap = json.loads(run(cli, "offers", "RTX4090", "--max-price", "0.4", "--region", "us", "--json").stdout)
    assert all(o["gpu_price_per_hour"] <= 0.4 and o["region"] == "US" for o in cheap["offers"])
    assert cheap["filters_applied"]["region"] == "US"


def test_offers_errors_are_one_line(cli: CliRunner) -> None:
    result = run(cli, "offers", "H1000", code=ExitCode.API_ERROR)
    assert "gpu_type" in one_error_line(result) and "HTTP 422" in result.stderr
    none = run(cli, "offers", "B200", "--max-price", "0.01")
    assert none.stdout == "" and "no offers match" in none.stderr
    usage = run(cli, "offers", "H100", "--region", "Mars", code=ExitCode.USAGE)
    assert "Mars" in usage.stderr
    # The CLI keeps no vendor list: the server's answer names the vendors it has.
    unknown = one_error_line(run(cli, "offers", "H100", "--vendor", "aws", code=ExitCode.API_ERROR))
    assert "vendor" in unknown and all(vendor in unknown for vendor in VENDORS)
    unknown = one_error_line(run(cli, "resources", "--vendor", "aws", code=ExitCode.API_ERROR))
    assert "unknown vendor 'aws'" in unknown and all(vendor in unknown for vendor in VENDORS)


# ----- the life of a resource ---------------------------------------------------------------------
def test_procure_wait_show_stop_start_reboot_delete(cli: CliRunner, live: LiveService, home: Path) -> None:
    offer = first_offer(cli)
    procured = run(cli, "procure", offer["offer_id"], "--ssh-key", str(home / ".ssh" / "id_ed25519.pub"),
                   "--name", "cli-life", "--wait", "--timeout", "60").stdout
    assert "running" in procured and f"ready: 1x {offer['gpu_type']} on nebula" in procured

    listed = json.loads(run(cli, "resources", "--json").stdout)["resources"]
    (mine,) = [r for r in listed if r["name"] == "cli-life"]
    rid = mine["resource_id"]
    # The private key next to the .pub, and the login Nebula reports (root in a container, ubuntu on a VM).
    login = mine["access"]["ssh_command"].split("@")[0].split()[-1]
    assert login in ("root", "ubuntu") and f"ssh -i ~/.ssh/id_ed25519 {login}@" in procured
    assert mine["status"] == "running" and mine["offer_id"] == offer["offer_id"]
    table = run(cli, "resources").stdout
    assert rid[:8] in table and rid not in table and "cli-life" in table and "running" in table
    assert rid in run(cli, "resources", "--wide").stdout and rid in run(cli, "resources", "-o", "wide").stdout

    shown = run(cli, "show", rid).stdout
    assert "cli-life" in shown and "pending -> provisioning" in shown and "provisioning -> running" in shown
    details = json.loads(run(cli, "show", rid, "--json").stdout)
    assert details["resource"]["resource_id"] == rid and details["events"][0]["to_status"] == "pending"

    assert "stopped" in run(cli, "stop", rid, "--wait").stdout.splitlines()[-1]
    assert run(cli, "start", rid, "--wait", "--json").stdout.count('"status": "running"') == 1
    rebooted = json.loads(run(cli, "reboot", rid, "--json").stdout)
    assert rebooted["action"] == "reboot" and rebooted["status"] == "rebooting"
    assert json.loads(run(cli, "wait", rid, "--json").stdout)["status"] == "running"

    deleted = run(cli, "delete", rid, "--wait").stdout
    assert deleted.splitlines()[-1] == f"{rid}: deleted"
    assert not [m for m in live_markers(live, "nebula") if rid in m]
    again = run(cli, "delete", rid, code=ExitCode.API_ERROR)
    assert "already deleted" in one_error_line(again) and "HTTP 409" in again.stderr
    assert rid[:8] not in run(cli, "resources").stdout  # ended: only with --all
    assert rid[:8] in run(cli, "resources", "--all").stdout
    assert rid[:8] in run(cli, "resources", "--status", "deleted").stdout
    failed = run(cli, "wait", rid, "--for", "running", code=ExitCode.FAILED)
    assert "is deleted" in failed.stderr


def test_procure_by_spec_then_wait(cli: CliRunner) -> None:
    family = first_offer(cli)["gpu_family"]
    cheapest = json.loads(run(cli, "offers", family, "--vendor", "nebula", "--limit", "1", "--json").stdout)["offers"][0]
    procured = run(cli, "procure", "--gpu", family, "--max-price", "50", "--vendor", "nebula", "--ssh-key", SSH_KEY)
    # It says what it is about to take, at what price, before it takes it.
    announced, result = procured.stdout.splitlines()[:2]
    assert announced.startswith(f"taking the cheapest match now: 1x {family} ({cheapest['gpu_type']}) on nebula, ")
    assert output.money(cheapest["gpu_price_per_hour"]) + "/GPU-hour" in announced
    rid = result.split()[2]
    assert result == f"procured: resource {rid} (provisioning_in_progress)"
    waited = run(cli, "wait", rid, "--timeout", "60").stdout
    assert waited.splitlines()[-2] == f"{rid}: running" and re.match(r"ssh [a-z]+@", waited.splitlines()[-1])  # the vendor's login
    timed_out = run(cli, "wait", rid, "--for", "stopped", "--timeout", "0", code=ExitCode.TIMEOUT)
    assert "gave up waiting for stopped after 0 s; it is running" in one_error_line(timed_out)
    gone = json.loads(run(cli, "delete", rid, "--wait", "--json").stdout)
    assert gone["status"] == "deleted"


def test_procure_usage_errors(cli: CliRunner, home: Path) -> None:
    offer_id = first_offer(cli, "vast")["offer_id"]
    both = run(cli, "procure", offer_id, "--gpu", "H100", code=ExitCode.USAGE)
    assert "not both" in one_error_line(both)
    assert "give an OFFER_ID" in one_error_line(run(cli, "procure", code=ExitCode.USAGE))
    private = run(cli, "procure", offer_id, "--ssh-key", str(home / ".ssh" / "id_ed25519"), code=ExitCode.USAGE)
    assert "is a private key" in one_error_line(private)
    missing = run(cli, "procure", offer_id, "--ssh-key", str(home / "nope.pub"), code=ExitCode.USAGE)
    assert "cannot read the SSH key" in one_error_line(missing)
    bad_id = run(cli, "procure", "not-an-offer", code=ExitCode.USAGE)
    assert "offer_id must be a UUID" in one_error_line(bad_id)
    bad_key = run(cli, "procure", offer_id, "--ssh-key", "ssh-ed25519 garbage", code=ExitCode.API_ERROR)
    assert "ssh_public_key" in one_error_line(bad_key)
    zero = run(cli, "procure", "--gpu", "H100", "--max-price", "0", code=ExitCode.USAGE)
    assert "max_price_per_gpu_hour" in one_error_line(zero)
    # A family Nebula offers now (earlier tests may have procured its H100s), below any price.
    family = first_offer(cli, "nebula")["gpu_family"]
    nothing = run(cli, "procure", "--gpu", family, "--vendor", "nebula", "--max-price", "0.0001", "--ssh-key", SSH_KEY,
                  code=ExitCode.API_ERROR)
    assert "no offer matches the spec now (without --max-price " in one_error_line(nothing)
    assert "--wait-for-capacity" in nothing.stderr and "HTTP 409" in nothing.stderr
    alone = run(cli, "procure", offer_id, "--wait-for-capacity", code=ExitCode.USAGE)
    assert "--wait-for-capacity goes with --gpu" in one_error_line(alone)


def test_exit_codes_for_auth_not_found_and_unreachable(cli: CliRunner, live: LiveService) -> None:
    unknown = "00000000-0000-4000-8000-000000000000"
    assert "not found" in one_error_line(run(cli, "show", unknown, code=ExitCode.NOT_FOUND))
    refused = run(cli, "resources", "--api-key", "gsk_" + "x" * 43, code=ExitCode.AUTH)
    assert "HTTP 401" in one_error_line(refused) and "gsk_" not in refused.stderr
    no_key = run(cli, "resources", env={"GPUSUPPLY_API_KEY": None}, code=ExitCode.AUTH)
    assert "no API key" in one_error_line(no_key)
    nowhere = f"http://127.0.0.1:{free_port()}"
    down = run(cli, "vendors", "--url", nowhere, code=ExitCode.UNREACHABLE)
    assert "could not connect" in one_error_line(down) and f"at {nowhere} (is `gpusupply serve` running there?" in down.stderr
    as_json = run(cli, "show", unknown, "--json", code=ExitCode.NOT_FOUND)
    error = json.loads(as_json.stderr)
    assert error["status"] == 404 and error["exit_code"] == 4 and error["request_id"] and as_json.stdout == ""


def test_discovery_commands(cli: CliRunner) -> None:
    assert "nvidia-h100-sxm5-80gb" in run(cli, "gpus", "--wide", "--all").stdout
    vendors = json.loads(run(cli, "vendors", "--json").stdout)
    assert {v["id"] for v in vendors} == set(VENDORS)
    table = run(cli, "vendors").stdout
    assert "nebula" in table and "stop_start" in table and "sandbox" in table


# ----- configuration -----------------------------------------------------------------------------
def test_configure_then_use_the_config_file(live: LiveService, home: Path) -> None:
    config_home = home / "xdg"
    cli = CliRunner(env={"HOME": str(home), "XDG_CONFIG_HOME": str(config_home),
                         "GPUSUPPLY_URL": None, "GPUSUPPLY_API_KEY": None})
    assert run(cli, "gpus", code=ExitCode.AUTH)
    stored = run(cli, "configure", "--url", live.url, "--api-key", live.tokens["bob"]).stdout
    path = config_home / "gpusupply" / "config.toml"
    assert f"config_file: {path}" in stored and live.tokens["bob"] not in stored
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_config_file(path) == {"url": live.url, "api_key": live.tokens["bob"]}
    assert "H100" in run(cli, "gpus").stdout  # url and key from the file
    # The environment and flags come first.
    assert run(cli, "gpus", env={"GPUSUPPLY_API_KEY": "gsk_" + "y" * 43}, code=ExitCode.AUTH)
    assert run(cli, "gpus", "--url", f"http://127.0.0.1:{free_port()}", code=ExitCode.UNREACHABLE)
    shown = json.loads(run(cli, "configure", "--json").stdout)
    assert shown["url"] == live.url and shown["api_key"] == live.tokens["bob"][:12] + "..."
    assert "must be http:// or https://" in one_error_line(run(cli, "configure", "--url", "localhost:8080", code=2))
    path.write_text('url = "http://x"\ncolour = "blue"\n')
    assert "unknown setting(s) colour" in one_error_line(run(cli, "gpus", code=ExitCode.USAGE))


def test_config_resolution(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path)}
    assert config_file(env) == tmp_path / ".config" / "gpusupply" / "config.toml"
    assert config_file({**env, "XDG_CONFIG_HOME": "/etc/xdg"}) == Path("/etc/xdg/gpusupply/config.toml")
    assert config_file({**env, "XDG_CONFIG_HOME": "relative"}) == tmp_path / ".config" / "gpusupply" / "config.toml"
    assert resolve(None, None, env).url == "http://127.0.0.1:8080" and resolve(None, None, env).api_key is None
    write_config_file(config_file(env), {"url": "http://a:1", "api_key": 'gsk_"quoted"\\'})
    assert resolve(None, None, env).api_key == 'gsk_"quoted"\\'
    assert resolve("http://b:2", "gsk_flag", env).url == "http://b:2"
    config_file(env).write_text("url = [")
    with pytest.raises(UsageProblem, match="cannot read the config file"):
        resolve(None, None, env)
    config_file(env).write_text("url = 3")
    with pytest.raises(UsageProblem, match="url must be a string"):
        resolve(None, None, env)


def test_ssh_key_sources(tmp_path: Path) -> None:
    with pytest.raises(UsageProblem, match="no SSH public key found"):
        read_ssh_key(None, home=tmp_path)
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "id_rsa.pub").write_text("# comment\nssh-rsa AAAAB3 me@host\n")
    assert read_ssh_key(None, home=tmp_path) == ("ssh-rsa AAAAB3 me@host", tmp_path / ".ssh" / "id_rsa.pub")
    assert read_ssh_key("  ssh-ed25519 AAAAC3 inline ") == ("ssh-ed25519 AAAAC3 inline", None)
    (tmp_path / "empty.pub").write_text("\n")
    with pytest.raises(UsageProblem, match="is empty"):
        read_ssh_key(str(tmp_path / "empty.pub"))


# ----- shell completion ---------------------------------------------------------------------------
def test_completion_for_gpus_and_statuses() -> None:
    assert {"H100", "H200"} <= set(complete_gpu("h")) and "nvidia-h100-sxm5-80gb" in complete_gpu("nvidia-h1")
    assert complete_gpu("nvidia-a100-sxm4") == ["nvidia-a100-sxm4-80gb", "nvidia-a100-sxm4-40gb"]
    assert complete_status("de") == ["deleting", "deleted"]


def test_the_shell_completion_script_and_completions(home: Path) -> None:
    cli = CliRunner(env={"HOME": str(home)})
    # The shell named explicitly: `--show-completion` guesses it from the parent processes, which
    # fails when pytest runs under a non-shell parent.
    script = cli.invoke(app, [], prog_name="gpusupply", env={"_GPUSUPPLY_COMPLETE": "source_bash"})
    assert script.exit_code == 0 and "_GPUSUPPLY_COMPLETE" in script.stdout
    completed = cli.invoke(
        app, [], prog_name="gpusupply",
        env={"_GPUSUPPLY_COMPLETE": "complete_bash", "COMP_WORDS": "gpusupply offers RTX40", "COMP_CWORD": "2"},
    )
    assert "RTX4090" in completed.stdout.split()
    commands = cli.invoke(
        app, [], prog_name="gpusupply",
        env={"_GPUSUPPLY_COMPLETE": "complete_bash", "COMP_WORDS": "gpusupply pro", "COMP_CWORD": "1"},
    )
    assert commands.stdout.split() == ["procure"]
    webhooks = cli.invoke(
        app, [], prog_name="gpusupply",
        env={"_GPUSUPPLY_COMPLETE": "complete_bash", "COMP_WORDS": "gpusupply webhooks de", "COMP_CWORD": "2"},
    )
    assert webhooks.stdout.split() == ["delete", "deliveries"]
    # What docs/cli.md tells users to run, with the shell named.
    shown = cli.invoke(app, ["--show-completion", "bash"], prog_name="gpusupply")
    # Failed once in a full run with exit code 1 and was not reproduced alone: say why if it happens again.
    assert shown.exit_code == 0, (shown.output, shown.exception)
    assert "complete -o default -F _gpusupply_completion gpusupply" in shown.stdout
    installed = cli.invoke(app, ["--install-completion", "bash"], prog_name="gpusupply")
    assert installed.exit_code == 0, installed.output
    assert "_GPUSUPPLY_COMPLETE" in (home / ".bash_completions" / "gpusupply.sh").read_text()
    assert ".bash_completions/gpusupply.sh" in (home / ".bashrc").read_text()


# ----- pure formatting ----------------------------------------------------------------------------
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (AuthenticationError(401, "bad key"), ExitCode.AUTH),
        (NotFoundError(404, "nope"), ExitCode.NOT_FOUND),
        (ConflictError(409, "busy"), ExitCode.API_ERROR),
        (ServerError(500, "internal error"), ExitCode.API_ERROR),
        (ApiConnectionError("could not connect"), ExitCode.UNREACHABLE),
        (WaitTimeoutError("gave up"), ExitCode.TIMEOUT),
        (UsageProblem("both"), ExitCode.USAGE),
        (ValueError("must be a UUID"), ExitCode.USAGE),
        (KeyboardInterrupt(), ExitCode.INTERRUPTED),
    ],
)
def test_exit_codes(error: BaseException, code: ExitCode) -> None:
    assert exit_code_for(error) == code


def test_failed_wait_exit_code() -> None:
    resource: Any = None
    assert exit_code_for(ResourceFailedError("failed", resource)) == ExitCode.FAILED


@pytest.mark.parametrize(
    ("value", "text"), [(None, "-"), (0.564, "$0.564"), (1.9, "$1.90"), (12.5, "$12.50"), (1234.5, "$1,234.50")]
)
def test_money(value: float | None, text: str) -> None:
    assert output.money(value) == text


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(minutes=29, seconds=50), "in 30m"),
        (timedelta(seconds=10), "in <1m"),
        (timedelta(seconds=-10), "just now"),
        (timedelta(minutes=-3), "3m ago"),
        (timedelta(hours=-2, minutes=-5), "2h 5m ago"),
        (timedelta(hours=3), "in 3h"),
        (timedelta(days=-3), "3d ago"),
    ],
)
def test_relative_times(delta: timedelta, text: str) -> None:
    assert output.relative(NOW + delta, NOW) == text


@pytest.mark.parametrize(
    ("command", "identity", "text"),
    [
        ("ssh root@1.2.3.4 -p 22", None, "ssh root@1.2.3.4 -p 22"),
        ("ssh root@1.2.3.4 -p 22", Path("/keys/my key"), "ssh -i '/keys/my key' root@1.2.3.4 -p 22"),
        ("ssh -i x root@h", Path("/keys/k"), "ssh -i x root@h"),
        (None, Path("/keys/k"), None),
    ],
)
def test_ssh_command(command: str | None, identity: Path | None, text: str | None) -> None:
    assert output.ssh_command(command, identity) == text


def test_event_transition_text() -> None:
    event = EventOut(id=1, at=NOW, kind="status_change", from_status=None, to_status="pending", reason="procured", data=None)
    assert output.event_row(event) == ["2026-11-22 12:00:00", "status_change", "- -> pending", "procured"]
    alert = EventOut(id=2, at=NOW, kind="alert", from_status=None, to_status=None, reason=None, data=None)
    assert output.transition(alert) == "-"


# ----- a terminal of 80 columns --------------------------------------------------------------------
@pytest.fixture
def narrow(cli: CliRunner) -> CliRunner:
    cli.env["COLUMNS"] = "80"
    return cli


def fits(text: str, width: int = 80) -> list[str]:
    lines = text.splitlines()
    assert lines and all(len(line) <= width for line in lines), "\n".join(line for line in lines if len(line) > width)
    return lines


PRICE = re.compile(r"\$\d[\d,]*\.\d{2,3}")


def test_render_table_drops_and_cuts_by_width_never_a_price() -> None:
    columns = (output.Column("ID", keep=9), output.Column("NOTE", keep=4, flex=True),
               output.Column("$/H", keep=9, right=True), output.Column("EXTRA", keep=1), output.Column("MORE", wide_only=True))
    rows = [["a" * 8, "n" * 60, "$1,234.50", "x" * 20, "m"], ["b" * 8, "short", "$0.125", "y", "m"]]
    narrow = output.render_table(columns, rows, width=40).splitlines()
    assert narrow[0].split() == ["ID", "NOTE", "$/H"] and all(len(line) <= 40 for line in narrow)
    assert narrow[1].endswith("...  $1,234.50") and narrow[2].endswith("   $0.125")
    roomy = output.render_table(columns, rows, width=200).splitlines()
    assert roomy[0].split() == ["ID", "NOTE", "$/H", "EXTRA"] and "n" * 60 in roomy[1]
    wide = output.render_table(columns, rows, width=40, wide=True).splitlines()
    assert wide[0].split() == ["ID", "NOTE", "$/H", "EXTRA", "MORE"] and "n" * 60 in wide[1]


def test_offers_and_resources_fit_80_columns(narrow: CliRunner, home: Path) -> None:
    table = fits(run(narrow, "offers", "H100", "--limit", "8").stdout)
    assert table[0].split()[:4] == ["GPU", "VENDOR", "REGION", "$/GPU-H"] and "OFFER ID" in table[0]
    found = json.loads(run(narrow, "offers", "H100", "--limit", "8", "--json").stdout)["offers"]
    for line, offer in zip(table[1:], found, strict=False):
        assert offer["offer_id"] in line and output.money(offer["gpu_price_per_hour"]) in PRICE.findall(line)
    wide = run(narrow, "offers", "H100", "--limit", "3", "--wide").stdout.splitlines()
    assert "EXPIRES" in wide[0] and "MODEL" in wide[0] and "nvidia-h100" in wide[1]

    offer = first_offer(narrow)
    run(narrow, "procure", offer["offer_id"], "--name", "narrow-one", "--wait", "--timeout", "60")
    listed = fits(run(narrow, "resources").stdout)
    assert listed[0].split()[:3] == ["ID", "NAME", "STATUS"]
    (row,) = [line for line in listed if "narrow-one" in line]
    assert PRICE.search(row) and "running" in row
    shown = fits(run(narrow, "show", row.split()[0]).stdout)  # the 8 characters the table shows
    assert any("narrow-one" in line for line in shown)
    for command in (("gpus",), ("vendors",), ("usage",)):
        fits(run(narrow, *command).stdout)
    run(narrow, "delete", "narrow-one", "--wait")


def test_help_keeps_flag_names_whole_at_80_columns(narrow: CliRunner) -> None:
    for command, flags in (("procure", ("--auto-delete-after", "--idempotency-key", "--wait-for-capacity")),
                           ("budget", ("--max-hourly-spend", "--delete-on-exhaustion")), ("resources", ("--wide", "--output"))):
        text = fits(run(narrow, command, "--help").stdout)
        for flag in flags:
            assert any(flag in line for line in text), (command, flag)


def test_resources_by_unique_prefix_or_name(cli: CliRunner, live: LiveService) -> None:
    rids = []
    for _ in range(2):
        answer = json.loads(run(cli, "procure", first_offer(cli)["offer_id"], "--name", "twin", "--json").stdout)
        rids.append(answer["resource_ids"][0])
    for rid in rids:
        assert json.loads(run(cli, "show", rid[:6], "--json").stdout)["resource"]["resource_id"] == rid
    ambiguous = run(cli, "show", "twin", code=ExitCode.USAGE)
    assert "'twin' matches 2 resources" in one_error_line(ambiguous) and rids[0] in ambiguous.stderr
    missing = run(cli, "show", "zz-no-such", code=ExitCode.NOT_FOUND)
    assert "no resource has an id starting with 'zz-no-such'" in one_error_line(missing)
    run(cli, "delete", rids[0][:8], "--wait")
    # One of the two "twin"s is live: the name means that one.
    assert json.loads(run(cli, "wait", "twin", "--json").stdout)["resource_id"] == rids[1]
    assert "deleted" in run(cli, "delete", "twin", "--wait").stdout


def test_gpu_spellings_and_suggestions_in_the_cli(cli: CliRunner) -> None:
    canonical = json.loads(run(cli, "offers", "RTX4090", "--json").stdout)["offers"]
    for spelling in ("RTX 4090", "rtx-4090", "RTX_4090", "4090"):
        assert json.loads(run(cli, "offers", spelling, "--json").stdout)["offers"] == canonical
    wrong = run(cli, "offers", "RTX 4O90", code=ExitCode.API_ERROR)
    assert "did you mean RTX4090" in one_error_line(wrong)


def test_gpus_overview(narrow: CliRunner) -> None:
    summary = json.loads(run(narrow, "gpus", "--json").stdout)
    by_family = {row["family"]: row for row in summary}
    offers = json.loads(run(narrow, "offers", "RTX4090", "--limit", "1000", "--json").stdout)["offers"]
    rtx = by_family["RTX4090"]
    assert rtx["offers"] == len(offers) and rtx["vendors"] == sorted({o["vendor"] for o in offers})
    assert rtx["min_price_per_gpu_hour"] == min(o["gpu_price_per_hour"] for o in offers)
    assert rtx["max_price_per_gpu_hour"] == max(o["gpu_price_per_hour"] for o in offers)
    prices = [row["min_price_per_gpu_hour"] for row in summary]
    assert prices == sorted(prices) and all(row["offers"] for row in summary)
    table = fits(run(narrow, "gpus").stdout)
    assert table[0].split() == ["GPU", "MEMORY", "$/GPU-HOUR", "OFFERS", "VENDORS"]
    (line,) = [t for t in table if t.startswith("RTX4090 ")]
    assert f"{output.money(rtx['min_price_per_gpu_hour'])}-{output.money(rtx['max_price_per_gpu_hour'])}" in line
    big = {row["family"] for row in json.loads(run(narrow, "gpus", "--memory", "80", "--json").stdout)}
    assert "RTX4090" not in big and big and all(by_family[f]["max_gpu_memory_gb"] >= 80 for f in big)
    us = {row["family"]: row for row in json.loads(run(narrow, "gpus", "--region", "us", "--json").stdout)}
    assert all(row["offers"] <= by_family[f]["offers"] for f, row in us.items())
    every = json.loads(run(narrow, "gpus", "--all", "--json").stdout)
    assert len(every) == len(families()) and len(every) >= len(summary)  # every family we know


# ----- ssh ------------------------------------------------------------------------------------------
def test_ssh_command_parsing_and_config_text() -> None:
    from gpusupply.cli.ssh import SshTarget, parse_ssh_command, ssh_argv, with_include

    target = parse_ssh_command("ssh root@203.0.113.7 -p 10007")
    assert target == SshTarget("root", "203.0.113.7", 10007)
    assert parse_ssh_command("ssh ubuntu@h.sandbox.invalid") == SshTarget("ubuntu", "h.sandbox.invalid", None)
    assert parse_ssh_command(None) is None and parse_ssh_command("ssh") is None
    assert ssh_argv(target, Path("/k/id"), ["nvidia-smi"]) == ["ssh", "-i", "/k/id", "-p", "10007", "root@203.0.113.7", "nvidia-smi"]
    included = with_include("Host x\n  User y\n", Path("/c/ssh_config"))
    assert included.splitlines()[0].startswith("Include /c/ssh_config") and included.endswith("Host x\n  User y\n")
    assert with_include(included, Path("/c/ssh_config")) == included


def test_ssh_and_ssh_config(cli: CliRunner, live: LiveService, home: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    answer = json.loads(run(cli, "procure", first_offer(cli)["offer_id"], "--name", "sshbox", "--wait", "--json").stdout)
    resource = answer["resource"]
    rid = resource["resource_id"]
    from gpusupply.cli.ssh import parse_ssh_command

    target = parse_ssh_command(resource["access"]["ssh_command"])
    assert target is not None
    # `gpusupply ssh` runs ssh itself: a stand-in ssh on PATH records its arguments.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ssh").write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$SSH_ARGS_FILE"\nexit 7\n')
    (bin_dir / "ssh").chmod(0o755)
    recorded = tmp_path / "args"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(home), "SSH_ARGS_FILE": str(recorded),
           "GPUSUPPLY_URL": live.url, "GPUSUPPLY_API_KEY": live.tokens["alice"]}
    gpusupply = str(Path(sys.executable).parent / "gpusupply")
    done = subprocess.run([gpusupply, "ssh", "sshbox", "--", "nvidia-smi", "-L"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 7, done.stderr  # ssh's own exit code: the process became ssh
    assert recorded.read_text().splitlines() == [
        "-i", str(home / ".ssh" / "id_ed25519"), "-p", str(target.port), f"{target.user}@{target.host}", "nvidia-smi", "-L"]

    written = run(cli, "ssh-config").stdout
    path = home / ".config" / "gpusupply" / "ssh_config"
    assert "wrote " in written and f"ssh gpusupply-{rid[:8]}" in written
    config = path.read_text()
    assert f"Host gpusupply-{rid[:8]} sshbox\n  HostName {target.host}\n  User {target.user}\n  Port {target.port}\n" in config
    assert f"IdentityFile {home / '.ssh' / 'id_ed25519'}" in config
    assert (home / ".ssh" / "config").read_text().startswith(f"Include {path}")
    run(cli, "delete", rid, "--wait")
    ended = run(cli, "ssh", rid, code=ExitCode.USAGE)
    assert f"resource {rid} is deleted: no SSH address" in one_error_line(ended)
    run(cli, "ssh-config")
    assert f"gpusupply-{rid[:8]}" not in path.read_text()


def test_procure_a_cluster_and_wait_shows_nodes_running(cli: CliRunner, home: Path) -> None:
    offers = json.loads(run(cli, "offers", "H100", "--count", "16", "--vendor", "nebula", "--json").stdout)["offers"]
    clusters = [o for o in offers if o["type"] == "cluster"]
    assert clusters, offers
    offer = clusters[0]
    procured = run(cli, "procure", offer["offer_id"], "--cluster-name", "cli-cluster",
                   "--ssh-key", str(home / ".ssh" / "id_ed25519.pub"), "--wait", "--timeout", "90").stdout
    nodes = offer["node_count"]
    assert f"/{nodes} nodes running" in procured and f"{nodes}/{nodes} nodes running" in procured
    assert f"ready: cluster cli-cluster, {nodes} nodes, 16x {offer['gpu_type']} on nebula" in procured
    for n in range(1, nodes + 1):
        assert re.search(rf"cli-cluster-node-{n}: ssh -i ~/.ssh/id_ed25519 \w+@", procured), procured
    listed = json.loads(run(cli, "resources", "--json").stdout)["resources"]
    (cluster,) = [r for r in listed if r["name"] == "cli-cluster"]
    assert cluster["resource_type"] == "cluster"
    run(cli, "delete", "cli-cluster", "--wait")
