"""Kill tests: a real `gpusupply serve` dies (os._exit(137), as abrupt as SIGKILL) at each step of
procure and delete; a new process takes over and the work completes with no duplicate vendor
create and no leaked instance, checked against the sandbox vendors' own state. The sandboxes run
as their own processes, so they outlive the killed service."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gpusupply.engine.crash import CRASH_POINTS

from ..conftest import BACKENDS
from .helpers import (
    Api,
    SandboxProcess,
    ServiceProcess,
    create_api_key,
    e2e_vendors,
    run_until_crash,
    sandbox_processes,
    service_env,
)

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def sandboxes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, SandboxProcess]]:
    # Ten times the documented rates: a crash is what is tested here, not pacing (Lambda's one
    # launch per 12 s would otherwise be most of each test's wall time).
    with sandbox_processes(e2e_vendors(), tmp_path_factory.mktemp("sandboxes"), rate_scale=10) as started:
        yield started


def database_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "postgres":
        return request.getfixturevalue("pg_url_factory")()
    return f"sqlite+aiosqlite:///{tmp_path / 'kill.db'}"


def assert_no_duplicate_and_no_leak(sandboxes: dict[str, SandboxProcess], resources: dict[str, str]) -> None:
    for rid, vendor in resources.items():
        creates = sandboxes[vendor].creates_by_marker()
        ours = {marker: n for marker, n in creates.items() if rid in (marker or "")}
        assert sum(ours.values()) == 1, f"{vendor}: creates for {rid}: {ours}"
        live = [i for i in sandboxes[vendor].live_instances() if rid in (i["marker"] or "")]
        assert live == [], f"{vendor}: leaked {live}"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("crash_at", CRASH_POINTS)
def test_killed_at_each_step_the_work_completes_once(
    crash_at: str, backend: str, sandboxes: dict[str, SandboxProcess], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Users talk to an API process that does not crash; the engine process dies at `crash_at`
    (`serve` on SQLite, `worker` on PostgreSQL), and a fresh one finishes the work."""
    env = service_env(database_url(backend, tmp_path, request), tmp_path / "data", sandboxes)
    token = create_api_key(env)
    log = tmp_path / "service.log"
    deleting = crash_at.startswith("delete.")
    resources: dict[str, str] = {}

    def with_api(action, *, engine: bool) -> None:
        service = ServiceProcess.serve(env, log, engine=engine).start()
        api = Api(service.url, token)
        try:
            action(api)
        finally:
            api.close()
            service.stop()

    def procure(api: Api) -> None:
        for vendor in sandboxes:
            resources[api.procure(api.find_offers(vendor)[0]["offer_id"])] = vendor
        if deleting:  # get them running first; the crash is in the delete
            for rid in resources:
                assert api.wait_status(rid, "running", "failed")["status"] == "running"

    with_api(procure, engine=deleting)
    if deleting:
        with_api(lambda api: [api.delete(rid) for rid in resources], engine=False)

    run_until_crash(backend, env, log, crash_at)

    def finish(api: Api) -> None:
        if not deleting:
            for rid in resources:
                assert api.wait_status(rid, "running", "failed")["status"] == "running"
            for rid in resources:
                api.delete(rid)
        for rid in resources:
            row = api.wait_status(rid, "deleted", "failed")
            assert row["status"] == "deleted", row

    with_api(finish, engine=True)  # a new process, same database: it takes the expired leases over
    assert_no_duplicate_and_no_leak(sandboxes, resources)
