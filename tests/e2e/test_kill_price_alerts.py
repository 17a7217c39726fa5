"""A buy-below order killed while it fires: a real `gpusupply serve` (SQLite) or `worker`
(PostgreSQL) dies (os._exit(137)) just before or just after a price alert's firing commits; a new
process takes over, and the alert has fired once and procured exactly one resource, checked with
the sandbox vendor's own ledger. The sandbox runs as its own process, so it outlives the killed one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpusupply.engine.crash import ALERT_CRASH_POINTS

from ..conftest import BACKENDS, SSH_KEY
from .helpers import (
    Api,
    SandboxProcess,
    ServiceProcess,
    create_api_key,
    run_until_crash,
    sandbox_processes,
    service_env,
    wait_for,
)
from .test_kill import database_url

pytestmark = pytest.mark.timeout(240)
VENDOR = "lambda"  # its catalog always lists a 1-GPU H100 (gpu_1x_h100_sxm5)


@pytest.fixture(scope="module")
def sandboxes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, SandboxProcess]]:
    with sandbox_processes([VENDOR], tmp_path_factory.mktemp("sandboxes"), rate_scale=10) as started:
        yield started


def alert_state(api: Api, alert_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    alert = api.client.get(f"/price_alerts/{alert_id}").raise_for_status().json()
    firings = api.client.get(f"/price_alerts/{alert_id}/firings").raise_for_status().json()["firings"]
    return alert, firings


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("crash_at", ALERT_CRASH_POINTS)
def test_killed_while_firing_the_order_procures_once(
    crash_at: str, backend: str, sandboxes: dict[str, SandboxProcess], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    env = service_env(
        database_url(backend, tmp_path, request), tmp_path / "data", sandboxes,
        GPUSUPPLY_OFFER_CACHE_SECONDS="2", GPUSUPPLY_PRICE_ALERT_INTERVAL_SECONDS="0.3",
    )
    token = create_api_key(env)
    log = tmp_path / "service.log"
    alert_id = ""

    # An API process without an engine takes the order: just above the cheapest 1-GPU H100 now.
    api_only = ServiceProcess.serve(env, log, engine=False).start()
    api = Api(api_only.url, token)
    try:
        markets = api.client.get("/prices/now", params={"gpu_type": "H100", "gpu_count": 1, "vendor": VENDOR}).raise_for_status().json()["markets"]
        body = {
            "spec": {"compute": {"gpu_type": "H100"}, "vendor": VENDOR},
            "threshold": round(markets[0]["price"] + 0.01, 4),
            "then": "procure",
            "procure": {"ssh_public_key": SSH_KEY, "max_count": 5},
        }
        created = api.client.post("/price_alerts", json=body)
        assert created.status_code == 201, created.text
        alert_id = created.json()["alert_id"]
    finally:
        api.close()
        api_only.stop()

    run_until_crash(backend, env, log, crash_at)

    service = ServiceProcess.serve(env, log).start()  # a new process, same database
    api = Api(service.url, token)
    try:
        def fired() -> Any:
            _, firings = alert_state(api, alert_id)
            return firings if firings else None

        (firing,) = wait_for(fired, within=60, what="the alert to fire")
        resource_id = firing["resource_id"]
        assert firing["event_type"] == "price.below" and resource_id, firing
        assert api.wait_status(resource_id, "running", "failed")["status"] == "running"

        # Evaluated again on a refresh after the firing, still below: no second firing, no second resource.
        def evaluated_again() -> bool:
            alert, _ = alert_state(api, alert_id)
            return bool(alert["evaluated_through"] and alert["evaluated_through"] > firing["at"])

        wait_for(evaluated_again, within=60, what="the alert to be evaluated on a newer refresh")
        alert, firings = alert_state(api, alert_id)
        assert len(firings) == 1 and alert["procured_count"] == 1 and alert["state"] == "below"
        resources = api.client.get("/resources").raise_for_status().json()["resources"]
        assert [r["resource_id"] for r in resources] == [resource_id]
        api.delete(resource_id)
        assert api.wait_status(resource_id, "deleted", "failed")["status"] == "deleted"
    finally:
        api.close()
        service.stop()
    creates = sandboxes[VENDOR].creates_by_marker()
    assert sum(n for marker, n in creates.items() if resource_id in (marker or "")) == 1, creates
    assert [i for i in sandboxes[VENDOR].live_instances() if resource_id in (i["marker"] or "")] == []
