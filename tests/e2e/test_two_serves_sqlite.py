"""Two `gpusupply serve` processes, engines on, pointed at one SQLite file by mistake: it is safe.
Every claim of work (a resource step, a periodic job, a webhook delivery) is an UPDATE guarded by
the lease conditions, which SQLite's single writer serializes across processes, so the two
engines share the work through leases exactly as workers do on PostgreSQL. Checked against the
sandbox vendors' own ledgers: every procurement created once, every delete done, nothing left."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import (
    Api,
    SandboxProcess,
    ServiceProcess,
    create_api_key,
    distinct_offers,
    e2e_vendors,
    sandbox_processes,
    service_env,
    start_together,
)

pytestmark = pytest.mark.timeout(300)
PER_VENDOR = 2


@pytest.fixture
def sandboxes(tmp_path: Path) -> Iterator[dict[str, SandboxProcess]]:
    with sandbox_processes(e2e_vendors(), tmp_path, stock_each=50) as started:
        yield started


def test_two_serves_on_one_sqlite_file_share_the_work_through_leases(sandboxes: dict[str, SandboxProcess], tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    first_env = service_env(url, tmp_path / "data-1", sandboxes)
    second_env = service_env(url, tmp_path / "data-2", sandboxes)
    token = create_api_key(first_env)
    first, second = start_together([ServiceProcess.serve(first_env, tmp_path / "serve-1.log"),
                                    ServiceProcess.serve(second_env, tmp_path / "serve-2.log")])
    apis = [Api(first.url, token), Api(second.url, token)]
    resources: dict[str, str] = {}
    try:
        for n, offer in enumerate(distinct_offers(apis[0], list(sandboxes), PER_VENDOR * len(sandboxes))):
            resources[apis[n % 2].procure(offer["offer_id"])] = offer["vendor"]
        for n, rid in enumerate(resources):
            assert apis[n % 2].wait_status(rid, "running", "failed", within=120)["status"] == "running"
        for n, rid in enumerate(resources):
            apis[(n + 1) % 2].delete(rid)
        for n, rid in enumerate(resources):
            apis[n % 2].wait_status(rid, "deleted", within=120)
        for process in (first, second):
            assert process.proc is not None and process.proc.poll() is None  # both served to the end
    finally:
        for api in apis:
            api.close()
        first.stop()
        second.stop()
    for rid, vendor in resources.items():
        creates = sandboxes[vendor].creates_by_marker()
        assert sum(n for marker, n in creates.items() if rid in (marker or "")) == 1, f"{vendor}: {rid} created {creates}"
    for vendor, sandbox in sandboxes.items():
        assert sandbox.live_instances() == [], f"{vendor} has instances left"
    # Neither process hit an unhandled error (a claim that lost SQLite's write race is retried quietly).
    for log in ("serve-1.log", "serve-2.log"):
        assert "Traceback" not in (tmp_path / log).read_text(errors="replace"), log
