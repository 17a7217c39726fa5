"""The cost commands (usage, budget, auto-delete, procure's limits) against a running service."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gpusupply.cli import output
from gpusupply.cli.output import ExitCode  # noqa: I001
from tests.cli.test_commands import first_offer, one_error_line, run
from tests.client.helpers import LiveService, live_service
from tests.conftest import SSH_KEY


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    with live_service(tmp_path_factory.mktemp("cli-cost")) as service:
        yield service


@pytest.fixture
def cli(live: LiveService, tmp_path: Path) -> CliRunner:
    return CliRunner(env={
        "HOME": str(tmp_path), "XDG_CONFIG_HOME": None, "COLUMNS": None,
        "GPUSUPPLY_URL": live.url, "GPUSUPPLY_API_KEY": live.tokens["bob"],
    })


def test_budget_show_set_clear(cli: CliRunner) -> None:
    shown = run(cli, "budget").stdout
    assert "max hourly spend: none" in shown and "monthly budget: none" in shown
    stored = json.loads(run(cli, "budget", "--max-hourly-spend", "12.5", "--monthly-budget", "500",
                            "--delete-on-exhaustion", "--json").stdout)
    assert (stored["max_hourly_spend"], stored["monthly_budget"], stored["delete_on_exhaustion"]) == (12.5, 500.0, True)
    shown = run(cli, "budget").stdout
    assert "max hourly spend: $12.50/h" in shown and "delete on exhaustion: yes" in shown
    cleared = json.loads(run(cli, "budget", "--clear", "--json").stdout)
    assert cleared["max_hourly_spend"] is None and cleared["monthly_budget"] is None
    both = run(cli, "budget", "--clear", "--monthly-budget", "5", code=ExitCode.USAGE)
    assert "not both" in one_error_line(both)


def test_a_budget_refusal_is_one_line(cli: CliRunner) -> None:
    offer = first_offer(cli, "nebula")
    run(cli, "budget", "--max-hourly-spend", "0.01")
    try:
        refused = run(cli, "procure", offer["offer_id"], "--ssh-key", SSH_KEY, code=ExitCode.API_ERROR)
        assert "max_hourly_spend" in one_error_line(refused)
    finally:
        run(cli, "budget", "--clear")


def test_procure_with_auto_delete_then_change_and_clear_it(cli: CliRunner) -> None:
    offer = first_offer(cli, "nebula")
    answer = json.loads(run(cli, "procure", offer["offer_id"], "--ssh-key", SSH_KEY, "--auto-delete-after", "2h",
                            "--spend-limit", "25", "--json").stdout)
    rid = answer["resource_ids"][0]
    try:
        limits = json.loads(run(cli, "show", rid, "--json").stdout)["resource"]["auto_delete"]
        assert limits["spend_limit"] == 25 and limits["delete_at"] is not None
        changed = run(cli, "auto-delete", rid, "--spend-limit", "3").stdout
        assert "auto-delete:" in changed and "$3.00" in changed
        cleared = json.loads(run(cli, "auto-delete", rid, "--clear", "--json").stdout)
        limits = cleared["auto_delete"]
        assert limits is None or (limits["delete_at"] is None and limits["spend_limit"] is None)
        assert "--clear" in one_error_line(run(cli, "auto-delete", rid, code=ExitCode.USAGE))
        bad = run(cli, "auto-delete", rid, "--after", "soon", code=ExitCode.USAGE)
        assert "not a duration" in one_error_line(bad)
    finally:
        run(cli, "delete", rid, "--wait", "--timeout", "60")


def test_usage_table_json_and_csv(cli: CliRunner) -> None:
    offer = first_offer(cli, "nebula")
    rid = json.loads(run(cli, "procure", offer["offer_id"], "--ssh-key", SSH_KEY, "--wait", "--json").stdout)["resource"]["resource_id"]
    run(cli, "delete", rid, "--wait", "--timeout", "60")
    report = json.loads(run(cli, "usage", "--group-by", "vendor,gpu_family", "--json").stdout)
    assert report["group_by"] == ["vendor", "gpu_family"]
    assert any(row["group"]["vendor"] == "nebula" and row["resources"] >= 1 for row in report["rows"])
    table = run(cli, "usage", "--group-by", "vendor").stdout
    assert "VENDOR" in table and "COST" in table and "nebula" in table and table.splitlines()[-1].startswith("total $")
    rows = list(csv.reader(io.StringIO(run(cli, "usage", "--group-by", "day", "--csv").stdout)))
    assert rows[0][0] == "day" and len(rows) >= 2
    wrong = run(cli, "usage", "--group-by", "planet", code=ExitCode.USAGE)
    assert "--group-by" in one_error_line(wrong)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("90s", 90), ("30m", 1800), ("2h", 7200), ("1d", 86400), ("1h30m", 5400)],
)
def test_durations(text: str, seconds: int) -> None:
    assert output.duration_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "2x", "0", "1h30", "-5m"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        output.duration_seconds(text)


def test_setting_one_limit_keeps_the_others(cli: CliRunner) -> None:
    run(cli, "budget", "--monthly-budget", "500", "--delete-on-exhaustion")
    hourly = json.loads(run(cli, "budget", "--max-hourly-spend", "0.6", "--json").stdout)
    assert (hourly["max_hourly_spend"], hourly["monthly_budget"], hourly["delete_on_exhaustion"]) == (0.6, 500.0, True)
    monthly = json.loads(run(cli, "budget", "--monthly-budget", "800", "--json").stdout)
    assert (monthly["max_hourly_spend"], monthly["monthly_budget"], monthly["delete_on_exhaustion"]) == (0.6, 800.0, True)
    removed = json.loads(run(cli, "budget", "--no-monthly-budget", "--json").stdout)
    assert (removed["max_hourly_spend"], removed["monthly_budget"], removed["delete_on_exhaustion"]) == (0.6, None, False)
    both = run(cli, "budget", "--no-max-hourly-spend", "--max-hourly-spend", "1", code=ExitCode.USAGE)
    assert "not both" in both.stderr
    assert json.loads(run(cli, "budget", "--clear", "--json").stdout)["max_hourly_spend"] is None
