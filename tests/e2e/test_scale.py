"""Scale: one API process (`serve --no-engine`) and two `gpusupply worker` processes on PostgreSQL
take 200 concurrent procurements, then 200 deletes. Every vendor create happens exactly once,
every resource ends `deleted`, and the sandbox vendors (their own processes) have nothing left.

Slow (about 6 minutes on two cores), so it runs only when asked for: `pytest -m slow
tests/e2e/test_scale.py`. The time goes to the vendors' documented per-endpoint rates, which the
adapters obey per process: Vast answers one instance read per 0.5 s and one destroy per 0.33 s
per account, Nebula and fal one create per second, and every instance is polled while it
provisions and read back after its delete.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .helpers import (
    SSH_KEY,
    Api,
    SandboxProcess,
    ServiceProcess,
    create_api_key,
    distinct_offers,
    e2e_vendors,
    sandbox_processes,
    service_env,
)

COUNT = 200
# Optional: a long run at scale, opt-in with `-m slow` (docs/reliability.md); skipped otherwise, CI included.
pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.optional, pytest.mark.timeout(900)]


@pytest.fixture(autouse=True)
def only_when_asked(request: pytest.FixtureRequest) -> None:
    if "slow" not in (request.config.option.markexpr or ""):
        pytest.skip("slow: run with -m slow")


@pytest.fixture
def sandboxes(tmp_path: Path) -> Iterator[dict[str, SandboxProcess]]:
    with sandbox_processes(e2e_vendors(), tmp_path, offers=600, seed=23) as started:
        yield started


async def all_with_status(client: httpx.AsyncClient, ids: set[str], statuses: set[str], *, within: float) -> dict[str, str]:
    deadline = time.monotonic() + within
    while True:
        response = await client.get("/resources", params={"limit": 1000})
        response.raise_for_status()
        seen = {r["resource_id"]: r["status"] for r in response.json()["resources"] if r["resource_id"] in ids}
        if len(seen) == len(ids) and set(seen.values()) <= statuses:
            return seen
        if time.monotonic() > deadline:
            from collections import Counter

            raise AssertionError(f"not all {statuses} after {within:.0f} s: {Counter(seen.values())}")
        await asyncio.sleep(1.0)


async def test_two_workers_and_an_api_take_200_procurements_and_deletes(
    sandboxes: dict[str, SandboxProcess], tmp_path: Path, pg_url_factory: Any
) -> None:
    env = service_env(pg_url_factory(), tmp_path / "data", sandboxes, GPUSUPPLY_PROVISIONING_POLL_SECONDS="1", GPUSUPPLY_REFRESH_INTERVAL_SECONDS="60")
    token = await asyncio.to_thread(create_api_key, env)
    api_process = ServiceProcess.serve(env, tmp_path / "api.log", engine=False)
    workers = [ServiceProcess.worker(env, tmp_path / f"worker{i}.log") for i in (1, 2)]
    try:
        await asyncio.to_thread(api_process.start)
        for worker in workers:
            await asyncio.to_thread(worker.start)
        sync_api = Api(api_process.url, token)
        offers = await asyncio.to_thread(distinct_offers, sync_api, list(sandboxes), COUNT)
        sync_api.close()
        limits = httpx.Limits(max_connections=COUNT, max_keepalive_connections=COUNT)
        async with httpx.AsyncClient(base_url=api_process.url, headers={"Authorization": f"Bearer {token}"}, timeout=120, limits=limits) as client:

            async def procure(offer: dict[str, Any]) -> str:
                response = await client.post("/procure_offer", json={"offer_id": offer["offer_id"], "ssh_public_key": SSH_KEY})
                assert response.status_code == 200, response.text
                return response.json()["resource_ids"][0]

            ids = set(await asyncio.gather(*(procure(o) for o in offers)))
            assert len(ids) == COUNT
            await all_with_status(client, ids, {"running"}, within=600)

            async def delete(rid: str) -> None:
                response = await client.delete(f"/resources/{rid}")
                assert response.status_code == 200, response.text

            await asyncio.gather(*(delete(rid) for rid in ids))
            await all_with_status(client, ids, {"deleted"}, within=600)
        for worker in workers:
            assert worker.proc is not None and worker.proc.poll() is None, "a worker died"
        for vendor, sandbox in sandboxes.items():
            creates = sandbox.creates_by_marker()
            ours = {m: n for m, n in creates.items() if any(rid in (m or "") for rid in ids)}
            assert all(n == 1 for n in ours.values()), f"{vendor}: duplicate creates {[(m, n) for m, n in ours.items() if n > 1]}"
            assert sandbox.live_instances() == [], f"{vendor}: instances left"
        total = sum(sum(1 for m in sandbox.creates_by_marker() if any(rid in (m or "") for rid in ids)) for sandbox in sandboxes.values())
        assert total == COUNT
    finally:
        for process in (*workers, api_process):
            await asyncio.to_thread(process.stop)
