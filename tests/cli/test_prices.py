"""`gpusupply prices` and `gpusupply alerts ...` against a running service: the sparkline draws the
API's own numbers, and alerts are added, listed, read and deleted."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from gpusupply.cli.output import ExitCode
from gpusupply.cli.prices import spark_step, sparkline
from gpusupply.core.prices import Market, PricePoint
from gpusupply.db.models import utcnow
from gpusupply.db.session import Database
from gpusupply.domain.price_history import add_points
from tests.cli.test_commands import one_error_line, run
from tests.client.helpers import LiveService, live_service
from tests.conftest import SSH_KEY

MARKET = Market("vast", "nvidia-h100-sxm5-80gb", "H100", 1, "US", "spot")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    with live_service(tmp_path_factory.mktemp("cli-prices")) as service:
        yield service


@pytest.fixture
def cli(live: LiveService, tmp_path: Path) -> CliRunner:
    return CliRunner(env={
        "HOME": str(tmp_path), "XDG_CONFIG_HOME": None, "COLUMNS": "200",
        "GPUSUPPLY_URL": live.url, "GPUSUPPLY_API_KEY": live.tokens["bob"],
    })


def test_sparklines_scale_between_low_and_high() -> None:
    assert sparkline([1.0, 2.0, 3.0, None, 3.0]) == "▁▅█ █"
    assert sparkline([2.0, 2.0]) == "▁▁"
    assert sparkline([]) == ""
    assert spark_step("24h") == "36m" and spark_step("7d") == "252m"  # 7 days / 40, in whole minutes


def _store_history(url: str) -> None:
    """A day of hourly points for one market, prices going up and down (the sandbox's are fixed in tests)."""
    async def store() -> None:
        db = Database(url)
        try:
            start = utcnow() - timedelta(hours=23, minutes=30)
            points = [PricePoint(MARKET, start + timedelta(hours=n), 1.0 + (n % 6) / 10, 1.5, 2.0, 3) for n in range(23)]
            async with db.transaction() as session:
                await add_points(session, points)
        finally:
            await db.dispose()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, store()).result()


def test_the_sparkline_shows_the_apis_numbers(cli: CliRunner, live: LiveService) -> None:
    _store_history(live.settings.effective_database_url)
    table = run(cli, "prices", "H100", "--count", "1", "--since", "24h").stdout
    data = json.loads(run(cli, "prices", "H100", "--count", "1", "--since", "24h", "--json").stdout)
    # The same query straight to the API: the numbers the CLI drew.
    api = httpx.get(
        live.url + "/prices/history", params={"gpu_type": "H100", "gpu_count": 1, "since": "24h", "step": spark_step("24h")},
        headers={"Authorization": f"Bearer {live.tokens['bob']}"},
    ).json()
    vast_spot = next(s for s in api["series"] if (s["vendor"], s["contract_type"]) == ("vast", "spot"))
    lows = [p["min"] for p in vast_spot["points"]]
    assert len(lows) >= 20 and min(lows) == 1.0  # the stored points (and any refresh) in 36-minute buckets
    cli_series = next(s for s in data["history"]["series"] if (s["vendor"], s["contract_type"]) == ("vast", "spot"))
    assert [p["min"] for p in cli_series["points"]] == lows
    row = next(line for line in table.splitlines() if line.startswith("vast") and " spot " in line)
    assert sparkline(lows) in row and f"{min(lows):.2f}-{max(lows):.2f}" in row
    assert all(line.split()[0] in live.app.state.ctx.vendors.adapters for line in table.splitlines()[1:-1])


def test_bad_input_is_refused_clearly(cli: CliRunner) -> None:
    # Usage errors in typer's own form (exit 2); the server's refusals as one line.
    assert "--since must be a duration like 6h" in run(cli, "prices", "H100", "--since", "yesterday", code=ExitCode.USAGE).stderr
    assert "Z9000" in one_error_line(run(cli, "prices", "Z9000", code=ExitCode.API_ERROR))
    assert "--procure needs --ssh-key" in run(cli, "alerts", "add", "H100", "--below", "2", "--procure", code=ExitCode.USAGE).stderr


def test_alerts_add_list_firings_delete(cli: CliRunner, tmp_path: Path) -> None:
    assert "no price alerts" in run(cli, "alerts", "list").stderr
    added = run(cli, "alerts", "add", "H100", "--below", "1.5", "--region", "US", "--name", "cheap").stdout
    alert_id = added.split()[2].rstrip(":")
    assert added.startswith("price alert ") and "1x H100, region US at or under $1.500/GPU-hour" in added
    key = tmp_path / "id.pub"
    key.write_text(SSH_KEY + "\n")
    order = json.loads(run(cli, "alerts", "add", "A100", "--below", "0.5", "--procure", "--ssh-key", str(key), "--max-count", "2",
                           "--ttl", "3600", "--json").stdout)
    assert order["then"] == "procure" and order["procure"]["max_count"] == 2 and order["procure"]["auto_delete"] == {"ttl_seconds": 3600}
    listed = run(cli, "alerts", "list").stdout
    assert alert_id in listed and "cheap" in listed and "procure (0/2)" in listed and "notify" in listed
    assert "has not fired yet" in run(cli, "alerts", "firings", alert_id).stderr or "price." in run(cli, "alerts", "firings", alert_id).stdout
    assert f"{alert_id}: deleted" in run(cli, "alerts", "delete", alert_id).stdout
    assert "not found" in one_error_line(run(cli, "alerts", "delete", alert_id, code=ExitCode.NOT_FOUND))
    run(cli, "alerts", "delete", order["alert_id"])
