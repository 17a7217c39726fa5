"""The SDK against a running service with the sandbox vendors.

Blocking client: the whole app (engine on) served by uvicorn on a loopback port, behind a front
that can inject 429/503 answers. Async client: the `service` fixture, in-process.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from gpusupply.client import (
    ApiConnectionError,
    AsyncGpuSupply,
    AuthenticationError,
    BadRequestError,
    BudgetExceededError,
    ConflictError,
    GpuSupply,
    NotFoundError,
    RateLimitError,
    ResourceFailedError,
    RetryPolicy,
    ServiceUnavailableError,
    WaitTimeoutError,
)
from gpusupply.client.calls import offers_query
from gpusupply.client.models import AutoDeleteIn
from gpusupply.settings import VENDORS
from tests.client.helpers import FAST_ENGINE, LiveService, cheapest_offer_id, live_markers, live_service
from tests.conftest import SSH_KEY, free_port


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    with live_service(tmp_path_factory.mktemp("sdk")) as service:
        yield service


class FakeTime:
    """A clock that only moves when the client sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)


# ----- blocking client, real HTTP ----------------------------------------------------------------
def test_procure_wait_stop_start_delete(live: LiveService) -> None:
    with live.client() as gs:
        offer_id = cheapest_offer_id(gs, "nebula")
        answer = gs.procure(offer_id, ssh_public_key=SSH_KEY, resource_name="sdk-life")
        assert answer.status == "provisioning_in_progress" and len(answer.resource_ids) == 1
        rid = answer.resource_ids[0]
        seen: list[str] = []
        ready = gs.wait_ready(rid, on_update=lambda r: seen.append(r.status))
        assert ready.status == "running" and ready.name == "sdk-life"
        # Nebula's login: root in a container, ubuntu on a VM (which the cheapest offer left is depends on the order).
        assert ready.access.ssh_command and ready.access.ssh_command.startswith(("ssh root@", "ssh ubuntu@"))
        assert seen[-1] == "running" and len(seen) == len(set(seen))  # one call per change
        assert gs.get_offer_status(offer_id).procurement_status == "ready"
        assert gs.get_offer(offer_id).status == "procured"

        assert gs.stop_resource(rid).status == "stopping"
        assert gs.wait_for_status(rid, {"stopped"}).status == "stopped"
        assert gs.start_resource(rid).action == "start"
        assert gs.wait_ready(rid).status == "running"
        assert gs.reboot_resource(rid).status == "rebooting"
        assert gs.wait_ready(rid).status == "running"

        assert gs.delete_resource(rid).status == "deleting"
        gone = gs.wait_deleted(rid)
        assert gone.status == "deleted" and gone.valid_to is not None
        assert not [m for m in live_markers(live, "nebula") if str(rid) in m]
        history = [e.to_status for e in gs.iter_events(rid, page_size=2) if e.kind == "status_change"]
        assert history[0] == "pending" and history[-1] == "deleted"
        assert {"running", "stopped", "rebooting", "deleting"} <= set(history)
        with pytest.raises(ConflictError, match="already deleted") as caught:
            gs.delete_resource(rid)
        assert caught.value.status == 409
        with pytest.raises(ResourceFailedError, match="is deleted"):
            gs.wait_ready(rid)


def test_errors_carry_the_server_status_and_message(live: LiveService) -> None:
    with GpuSupply(live.url, "gsk_" + "x" * 43) as stranger:
        with pytest.raises(AuthenticationError) as caught:
            stranger.available_gpus()
        assert caught.value.status == 401 and caught.value.request_id
        assert "gsk_" not in str(caught.value)
    with live.client("alice") as alice, live.client("bob") as bob:
        with pytest.raises(BadRequestError, match="gpu_type") as invalid:
            alice.get_offers("H1000")
        assert invalid.value.status == 422 and invalid.value.errors[0]["loc"][-1] == "gpu_type"
        with pytest.raises(BadRequestError) as unknown_vendor:
            alice.get_offers("H100", vendor="aws")  # no list on the client: the server's answer names its vendors
        assert unknown_vendor.value.status == 422 and unknown_vendor.value.errors[0]["loc"] == ["body", "vendor"]
        assert all(vendor in str(unknown_vendor.value) for vendor in VENDORS)

        offer_id = cheapest_offer_id(alice, "vast")
        rid = alice.procure(offer_id, ssh_public_key=SSH_KEY, idempotency_key="sdk-same-key").resource_ids[0]
        again = alice.procure(offer_id, ssh_public_key=SSH_KEY, idempotency_key="sdk-same-key")
        assert again.resource_ids == [rid]  # replayed, nothing more procured
        with pytest.raises(ConflictError):
            alice.procure(offer_id, ssh_public_key=SSH_KEY)  # a new key: a second procurement of one offer
        with pytest.raises(NotFoundError):
            bob.get_resource(rid)  # another tenant's resource does not exist for bob
        assert [r.resource_id for r in alice.iter_resources(offer_id=offer_id)] == [rid]

        before = len(live.front.seen)
        with pytest.raises(ValueError, match="must be a UUID"):
            alice.delete_resource("../keys")
        with pytest.raises(ValueError, match="exactly one of offer_id"):
            alice.procure(ssh_public_key=SSH_KEY)
        assert len(live.front.seen) == before  # refused before sending anything
        alice.delete_resource(rid)
        alice.wait_deleted(rid)


def test_429_and_503_are_retried_with_bounds(live: LiveService) -> None:
    fake = FakeTime()
    with live.client(sleep=fake.sleep) as gs:
        live.front.fail_next("/available_regions", (503, {"Retry-After": "2"}), (429, {"Retry-After": "0"}))
        assert gs.available_regions() == ["US", "EU", "APAC", "Other"]
        assert len(live.front.requests_to("/available_regions")) == 3
        assert fake.sleeps == [2.0, 0.0]

        live.front.fail_next("/available_contracts", *[(503, {})] * 4)
        with pytest.raises(ServiceUnavailableError, match="injected 503"):
            gs.available_contracts()
        assert len(live.front.requests_to("/available_contracts")) == 4  # 1 + max_retries (3)
        assert all(0 < s <= 8 for s in fake.sleeps[2:]) and len(fake.sleeps) == 5

        live.front.fail_next("/healthz", (429, {"Retry-After": "120"}))
        with pytest.raises(RateLimitError) as caught:
            gs.health()
        assert caught.value.retry_after == 120 and len(live.front.requests_to("/healthz")) == 1


def test_a_retried_procurement_procures_once(live: LiveService) -> None:
    with live.client(sleep=FakeTime().sleep) as gs:
        offer_id = cheapest_offer_id(gs, "nebula", skip=1)
        live.front.fail_next("/procure_offer", (503, {"Retry-After": "0"}))
        answer = gs.procure(offer_id, ssh_public_key=SSH_KEY)
        sent = live.front.requests_to("/procure_offer")[-2:]
        assert sent[0][2]["idempotency-key"] == sent[1][2]["idempotency-key"]
        assert [r.resource_id for r in gs.iter_resources(offer_id=offer_id)] == answer.resource_ids
        gs.delete_resource(answer.resource_ids[0], force=True)
        gs.wait_deleted(answer.resource_ids[0])


def test_an_unreachable_server_is_a_connection_error() -> None:
    fake = FakeTime()
    with GpuSupply(f"http://127.0.0.1:{free_port()}", "gsk_x", retry=RetryPolicy(max_retries=2), sleep=fake.sleep) as gs:
        with pytest.raises(ApiConnectionError, match="could not connect"):
            gs.health()
    assert len(fake.sleeps) == 2


def test_configuration_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUSUPPLY_URL", "http://gpus.example:9000/")
    monkeypatch.setenv("GPUSUPPLY_API_KEY", "gsk_from_env")
    with GpuSupply() as gs:
        assert gs.url == "http://gpus.example:9000" and gs.has_api_key
        assert "gsk_from_env" not in repr(gs)
    monkeypatch.delenv("GPUSUPPLY_URL")
    with GpuSupply(api_key="") as gs:
        assert gs.url == "http://127.0.0.1:8080"
    with pytest.raises(ValueError, match="http:// or https://"):
        GpuSupply("ftp://example.com")


# ----- async client, in-process service ----------------------------------------------------------
@pytest.fixture
async def sdk(service: Any) -> AsyncIterator[AsyncGpuSupply]:
    transport = httpx.ASGITransport(app=service.app)
    async with AsyncGpuSupply("http://service", service.tenants["alice"].token, transport=transport) as gs:
        yield gs


async def test_async_discovery_and_offer_paging(sdk: AsyncGpuSupply) -> None:
    assert "H100" in await sdk.available_gpus()
    assert {v.id for v in await sdk.available_vendors()} == set(VENDORS)
    assert await sdk.available_contracts() == ["ondemand", "spot"]
    assert (await sdk.health()).status == "ok" and (await sdk.readiness()).status == "ready"
    everything = await sdk.get_offers("RTX4090", limit=1000)
    assert everything.total_count == len(everything.offers) > 7
    paged = [offer async for offer in sdk.iter_offers(query=offers_query("RTX4090"), page_size=7)]
    assert [o.offer_id for o in paged] == [o.offer_id for o in everything.offers]
    prices = [o.gpu_price_per_hour for o in paged]
    assert prices == sorted(prices)


async def _procure_some(sdk: AsyncGpuSupply, count: int) -> list[Any]:
    offers = (await sdk.get_offers("RTX4090", limit=count)).offers
    return [(await sdk.procure(o.offer_id, ssh_public_key=SSH_KEY)).resource_ids[0] for o in offers]


async def test_async_resource_paging(sdk: AsyncGpuSupply) -> None:
    made = await _procure_some(sdk, 3)
    paged = [r.resource_id async for r in sdk.iter_resources(page_size=2)]
    assert paged == list(reversed(made))  # newest first, each once
    page = await sdk.list_resources(limit=2)
    assert page.total_count == 3 and len(page.resources) == 2
    assert [r.resource_id async for r in sdk.iter_resources(status="running")] == []
    events = [e async for e in sdk.iter_events(made[0])]
    assert events[0].to_status == "pending"


async def test_async_waits_time_out_or_fail_without_sleeping(service: Any) -> None:
    fake = FakeTime()
    transport = httpx.ASGITransport(app=service.app)
    token = service.tenants["alice"].token
    async with AsyncGpuSupply("http://service", token, transport=transport, clock=fake.clock, sleep=fake.asleep) as gs:
        (rid,) = await _procure_some(gs, 1)  # the engine is off: it stays pending
        with pytest.raises(WaitTimeoutError, match="after 30 s; it is pending") as caught:
            await gs.wait_ready(rid, timeout=30)
        assert caught.value.resource is not None and caught.value.resource.status == "pending"
        assert 0 < sum(fake.sleeps) <= 30
        await gs.delete_resource(rid)
        with pytest.raises(ResourceFailedError, match="is deleting"):
            await gs.wait_ready(rid, timeout=30)
        with pytest.raises(WaitTimeoutError, match="deleted or failed or terminated"):
            await gs.wait_deleted(rid, timeout=5)


@pytest.mark.parametrize("settings_overrides", [FAST_ENGINE])
@pytest.mark.parametrize("service_engine", [True])
async def test_async_procure_by_spec_until_deleted(sdk: AsyncGpuSupply) -> None:
    spec = offers_query("RTX4090", max_price_per_gpu_hour=50, vendor="nebula")
    answer = await sdk.procure(spec=spec, ssh_public_key=SSH_KEY, resource_name="by-spec")
    assert answer.offer_id is None
    ready = await sdk.wait_ready(answer.resource_ids[0], timeout=60)
    assert ready.status == "running" and ready.vendor == "nebula" and ready.gpu_family == "RTX4090"
    await sdk.delete_resource(ready.resource_id)
    assert (await sdk.wait_deleted(ready.resource_id, timeout=60)).status == "deleted"


# ----- cost routes (docs/cost.md) ---------------------------------------------------------------
async def test_async_budget_usage_and_auto_delete(sdk: AsyncGpuSupply) -> None:
    budget = await sdk.set_budget(max_hourly_spend=0.01, monthly_budget=100)
    assert (budget.tenant, budget.max_hourly_spend, budget.monthly_budget) == ("alice", 0.01, 100.0)
    assert (await sdk.get_budget()).max_hourly_spend == 0.01
    offer = (await sdk.get_offers("H100", limit=1)).offers[0]
    with pytest.raises(BudgetExceededError, match="max_hourly_spend") as refused:
        await sdk.procure(offer.offer_id, ssh_public_key=SSH_KEY)
    assert refused.value.status == 402
    await sdk.set_budget()  # no limits

    answer = await sdk.procure(offer.offer_id, ssh_public_key=SSH_KEY, auto_delete=AutoDeleteIn(ttl_seconds=3600))
    rid = answer.resource_ids[0]
    limited = await sdk.get_resource(rid)
    assert limited.auto_delete is not None and limited.auto_delete.delete_at is not None and limited.cost_so_far == 0
    changed = await sdk.set_auto_delete(rid, AutoDeleteIn(spend_limit=5))
    assert changed.auto_delete is not None and changed.auto_delete.spend_limit == 5  # merged: delete_at kept
    assert changed.auto_delete.delete_at == limited.auto_delete.delete_at
    cleared = await sdk.set_auto_delete(rid, None)
    assert cleared.auto_delete is None or (cleared.auto_delete.delete_at, cleared.auto_delete.spend_limit) == (None, None)

    report = await sdk.usage(group_by=["vendor", "day"])
    assert report.group_by == ["vendor", "day"] and report.tenants == ["alice"] and report.total_cost >= 0
    csv = await sdk.usage_csv(group_by="vendor")
    assert csv.splitlines()[0].startswith("vendor")
    with pytest.raises(BadRequestError):
        await sdk.usage(group_by="colour")


@pytest.mark.parametrize("settings_overrides", [{"allow_private_webhook_urls": True}])
async def test_async_webhooks(sdk: AsyncGpuSupply) -> None:
    created = await sdk.create_webhook("http://127.0.0.1:9/hook", events=["resource.deleted"], description="ci")
    assert created.secret and created.events == ["resource.deleted"]
    listed = await sdk.list_webhooks()
    assert [w.webhook_id for w in listed.webhooks] == [created.webhook_id] and listed.event_types
    assert (await sdk.get_webhook(created.webhook_id)).url == "http://127.0.0.1:9/hook"
    assert not hasattr(await sdk.get_webhook(created.webhook_id), "secret")
    assert (await sdk.list_deliveries(created.webhook_id)).total_count == 0
    assert [d async for d in sdk.iter_deliveries(created.webhook_id, page_size=1)] == []
    assert (await sdk.delete_webhook(created.webhook_id)).webhook_id == created.webhook_id
    with pytest.raises(NotFoundError):
        await sdk.get_webhook(created.webhook_id)


def test_a_cluster_through_the_sdk(live: LiveService) -> None:
    from gpusupply.contract.offers import ComputeSpec
    from gpusupply.contract.schemas import OffersRequest

    with live.client() as gs:
        query = OffersRequest(compute=ComputeSpec(gpu_type="H100", gpu_count=16, node_count=2), vendor="nebula")
        offers = gs.get_offers(query=query).offers
        assert offers and all(o.type == "cluster" and (o.node_count, o.gpus_per_node) == (2, 8) for o in offers)
        answer = gs.procure(offers[0].offer_id, ssh_public_key=SSH_KEY, cluster_name="sdk-cluster")
        cluster_id, *node_ids = answer.resource_ids
        assert len(node_ids) == 2
        progress: list[str | None] = []
        ready = gs.wait_ready(cluster_id, on_update=lambda r: progress.append(r.status_message))
        assert ready.resource_type == "cluster" and ready.name == "sdk-cluster"
        assert progress[-1] is not None and progress[-1].endswith("2/2 nodes running")
        assert {link.resource_id for link in ready.linked_resources if link.link_type == "member"} == set(node_ids)
        assert all(gs.get_resource(n).access.ssh_command for n in node_ids)
        assert gs.get_offer_status(offers[0].offer_id).progress == "2/2 instances running"
        with pytest.raises(ConflictError, match="sdk-cluster"):
            gs.delete_resource(node_ids[0])
        gs.delete_resource(cluster_id)
        assert gs.wait_deleted(cluster_id).status == "deleted"
        assert not [m for m in live_markers(live, "nebula") if any(str(n) in m for n in node_ids)]
