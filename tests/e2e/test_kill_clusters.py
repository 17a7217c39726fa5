"""Kill tests for clusters: a real `gpusupply serve` (SQLite) or `worker` (PostgreSQL) dies
(os._exit(137), as abrupt as SIGKILL) in the middle of a gang procurement (some nodes created,
some not) or of its rollback (some nodes deleted, some not); a new process takes over and the
cluster ends complete or with nothing on the vendor, each node created at most once, checked
against the fal sandbox process's own ledger."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..conftest import BACKENDS
from .helpers import (
    Api,
    SandboxProcess,
    ServiceProcess,
    create_api_key,
    run_until_crash,
    sandbox_processes,
    service_env,
)
from .test_kill import database_url

pytestmark = pytest.mark.timeout(240)

IB_16 = {"vendor": "fal", "compute": {"gpu_type": "H100", "gpu_count": 16, "interconnect": "infiniband"}}
GANG_POINTS = ("procure.before_create", "procure.after_create", "provision.after_running")
ROLLBACK_POINTS = ("delete.before_vendor", "delete.after_vendor")


@pytest.fixture(scope="module")
def sandboxes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, SandboxProcess]]:
    # Four free nodes in every fal sector, so a 2-node cluster fits whichever sector is cheapest.
    with sandbox_processes(["fal"], tmp_path_factory.mktemp("sandboxes"), rate_scale=10, stock_each=4) as started:
        yield started


def procure_cluster(api: Api) -> tuple[str, list[str]]:
    offers = api.client.post("/get_offers", json=IB_16).raise_for_status().json()["offers"]
    assert offers and offers[0]["node_count"] == 2, offers[:1]
    cluster_id = api.procure(offers[0]["offer_id"])
    nodes = [link["resource_id"] for link in api.resource(cluster_id)["linked_resources"] if link["link_type"] == "member"]
    assert len(nodes) == 2
    return cluster_id, nodes


def crash_and_restart(backend: str, env: dict[str, str], log: Path, crash_at: str, finish: Callable[[Api], None], token: str) -> None:
    run_until_crash(backend, env, log, crash_at)
    with_api(env, log, token, finish, engine=True)  # a new process, same database: it takes the expired leases over


def with_api(env: dict[str, str], log: Path, token: str, action: Callable[[Api], Any], *, engine: bool) -> Any:
    service = ServiceProcess.serve(env, log, engine=engine).start()
    api = Api(service.url, token)
    try:
        return action(api)
    finally:
        api.close()
        service.stop()


def creates_of(sandbox: SandboxProcess, resource_id: str) -> int:
    return sum(n for marker, n in sandbox.creates_by_marker().items() if resource_id in (marker or ""))


def left_on_vendor(sandbox: SandboxProcess, resource_ids: list[str]) -> list[dict[str, Any]]:
    return [i for i in sandbox.live_instances() if any(rid in (i["marker"] or "") for rid in resource_ids)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("crash_at", GANG_POINTS)
def test_killed_during_gang_procurement_the_cluster_completes(
    crash_at: str, backend: str, sandboxes: dict[str, SandboxProcess], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    env = service_env(database_url(backend, tmp_path, request), tmp_path / "data", sandboxes)
    token = create_api_key(env)
    log = tmp_path / "service.log"
    cluster_id, nodes = with_api(env, log, token, procure_cluster, engine=False)

    def finish(api: Api) -> None:
        assert api.wait_status(cluster_id, "running", "failed", "deleting")["status"] == "running"
        assert api.resource(cluster_id)["status_message"].endswith("2/2 nodes running")
        api.delete(cluster_id)
        assert api.wait_status(cluster_id, "deleted", "failed")["status"] == "deleted"

    crash_and_restart(backend, env, log, crash_at, finish, token)
    fal = sandboxes["fal"]
    assert [creates_of(fal, node) for node in nodes] == [1, 1]
    assert left_on_vendor(fal, nodes) == []


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("crash_at", ROLLBACK_POINTS)
def test_killed_during_rollback_nothing_is_left_on_the_vendor(
    crash_at: str, backend: str, sandboxes: dict[str, SandboxProcess], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    env = service_env(database_url(backend, tmp_path, request), tmp_path / "data", sandboxes)
    token = create_api_key(env)
    log = tmp_path / "service.log"
    cluster_id, nodes = with_api(env, log, token, procure_cluster, engine=False)
    # The first create is made, the second refused: the engine rolls back and dies deleting the first.
    httpx.post(sandboxes["fal"].url + "/_sandbox/arm", json={"fault": "refuse_create", "after": 1}, timeout=10).raise_for_status()

    def finish(api: Api) -> None:
        row = api.wait_status(cluster_id, "failed", "deleted", "running")
        assert row["status"] == "failed" and "rolled back" in row["status_message"], row
        assert [api.resource(node)["status"] for node in nodes] == ["failed", "failed"]

    crash_and_restart(backend, env, log, crash_at, finish, token)
    fal = sandboxes["fal"]
    assert sorted(creates_of(fal, node) for node in nodes) == [0, 1]
    assert left_on_vendor(fal, nodes) == []
