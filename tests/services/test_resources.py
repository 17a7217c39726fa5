"""Resources: delete and actions by status and capability, tenancy, races, events, helpers."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from gpusupply.core.errors import ConflictError, NotFoundError, UnprocessableError
from gpusupply.core.states import ResourceStatus
from gpusupply.db.models import Resource
from gpusupply.services.procurement import procure
from gpusupply.services.resources import (
    delete_resource,
    get_resource,
    list_events,
    list_resources,
    needs_refresh,
    request_action,
    ssh_command,
)
from tests.conftest import BACKENDS, SSH_KEY
from tests.services.helpers import principal, some_offers

S = ResourceStatus


async def make_resource(service: Any, *, vendor: str = "nebula", tenant: str = "alice", status: str | None = None) -> uuid.UUID:
    (offer,) = await some_offers(service, vendor=vendor)
    outcome = await procure(
        service.db, service.catalog, await principal(service, tenant), offer_id=offer.offer_id, spec=None,
        ssh_public_key=SSH_KEY, cloud_init=None, resource_name=None, idempotency_key=None, body={},
    )
    resource_id = uuid.UUID(outcome.response["resource_ids"][0])
    if status is not None:
        await set_status(service, resource_id, status)
    return resource_id


async def set_status(service: Any, resource_id: uuid.UUID, status: str, **values: Any) -> None:
    """Test setup: put a row in a state as the engine would have (not through the API)."""
    async with service.db.transaction() as session:
        await session.execute(update(Resource).where(Resource.id == resource_id).values(status=status, **values))


async def load(service: Any, resource_id: uuid.UUID) -> Resource:
    async with service.db.session() as session:
        resource = await session.get(Resource, resource_id)
    assert resource is not None
    return resource


@pytest.mark.parametrize(
    ("ip", "host", "port", "command"),
    [
        ("1.2.3.4", None, 22, "ssh root@1.2.3.4 -p 22"),
        ("1.2.3.4", None, 40022, "ssh root@1.2.3.4 -p 40022"),
        ("1.2.3.4", None, None, "ssh root@1.2.3.4"),
        ("1.2.3.4", "ssh4.vast.ai", 12345, "ssh root@ssh4.vast.ai -p 12345"),
        (None, "proxy.example", 2222, "ssh root@proxy.example -p 2222"),
        (None, None, 22, None),
    ],
)
def test_ssh_command(ip: str | None, host: str | None, port: int | None, command: str | None) -> None:
    assert ssh_command(ip, host, port) == command


NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "instance", "synced_ago", "force", "expected"),
    [
        ("running", "i-1", None, False, True),
        ("running", "i-1", 5, False, False),
        ("running", "i-1", 31, False, True),
        ("running", "i-1", 5, True, True),
        ("running", None, None, True, False),  # nothing to read yet
        ("deleted", "i-1", 60, True, False),  # ended: nothing to read
        ("deleting", "i-1", 60, False, True),
    ],
)
def test_needs_refresh(status: str, instance: str | None, synced_ago: int | None, force: bool, expected: bool) -> None:
    resource = Resource(status=status, vendor="vast", vendor_instance_id=instance)
    resource.last_synced_at = None if synced_ago is None else NOW - timedelta(seconds=synced_ago)
    assert needs_refresh(resource, force=force, now=NOW) is expected


@pytest.mark.parametrize(
    ("status", "force", "allowed"),
    [
        ("pending", False, True),
        ("provisioning", False, True),
        ("running", False, True),
        ("stopped", False, True),
        ("stopping", False, False),
        ("starting", False, False),
        ("rebooting", False, False),
        ("stopping", True, True),
        ("rebooting", True, True),
        ("deleting", True, False),
        ("deleted", True, False),
        ("failed", False, False),
        ("terminated", True, False),
    ],
)
async def test_delete_by_status(service: Any, status: str, force: bool, allowed: bool) -> None:
    rid = await make_resource(service, status=status)
    await set_status(service, rid, status, pending_action="stop" if status == "stopping" else None)
    alice = await principal(service)
    if not allowed:
        with pytest.raises(ConflictError) as caught:
            await delete_resource(service.db, alice, rid, force=force)
        assert status in caught.value.detail or "already being deleted" in caught.value.detail
        assert (await load(service, rid)).status == status  # nothing changed
        return
    await delete_resource(service.db, alice, rid, force=force)
    row = await load(service, rid)
    assert (row.status, row.final_status, row.pending_action) == ("deleting", "deleted", None)
    assert row.delete_requested_at is not None and row.next_attempt_at <= datetime.now(UTC)
    events, _ = await list_events(service.db, alice, rid)
    assert (events[-1].from_status, events[-1].to_status, events[-1].data) == (status, "deleting", {"force": force})


@pytest.mark.parametrize(
    ("vendor", "status", "action", "outcome"),
    [
        ("nebula", "running", "stop", "stopping"),
        ("nebula", "stopped", "start", "starting"),
        ("nebula", "running", "reboot", "rebooting"),
        ("nebula", "stopped", "stop", "needs status running"),
        ("nebula", "running", "start", "needs status stopped"),
        ("nebula", "pending", "reboot", "needs status running"),
        ("nebula", "deleting", "stop", "needs status running"),
        ("fal", "running", "stop", "does not support stop"),
        ("fal", "running", "reboot", "does not support reboot"),
    ],
)
async def test_actions(service: Any, vendor: str, status: str, action: str, outcome: str) -> None:
    rid = await make_resource(service, vendor=vendor, status=status)
    alice = await principal(service)
    if outcome in {s.value for s in S}:
        resource = await request_action(service.db, service.vendors, alice, rid, action)
        assert (resource.status, resource.pending_action) == (outcome, action)
        assert (await load(service, rid)).status == outcome
    else:
        with pytest.raises(ConflictError, match=outcome):
            await request_action(service.db, service.vendors, alice, rid, action)
        assert (await load(service, rid)).status == status


async def test_action_on_a_resource_without_vendor_or_with_a_disabled_vendor(service: Any) -> None:
    rid = await make_resource(service, status="running")
    alice = await principal(service)
    await set_status(service, rid, "running", vendor=None)
    with pytest.raises(ConflictError, match="no instance yet"):
        await request_action(service.db, service.vendors, alice, rid, "stop")
    await set_status(service, rid, "running", vendor="vast-retired")
    with pytest.raises(ConflictError, match="not enabled"):
        await request_action(service.db, service.vendors, alice, rid, "stop")
    with pytest.raises(UnprocessableError):
        await request_action(service.db, service.vendors, alice, rid, "explode")


async def test_other_tenants_see_nothing(service: Any) -> None:
    rid = await make_resource(service, status="running")
    bob = await principal(service, "bob")
    for attempt in (
        get_resource(service.db, service.ctx.refresh_resource, bob, rid),
        delete_resource(service.db, bob, rid),
        request_action(service.db, service.vendors, bob, rid, "stop"),
        list_events(service.db, bob, rid),
    ):
        with pytest.raises(NotFoundError):
            await attempt
    assert (await list_resources(service.db, bob)) == ([], 0)
    assert (await load(service, rid)).status == "running"


async def test_list_filters_and_pages(service: Any) -> None:
    alice = await principal(service)
    ids = [await make_resource(service, vendor=v) for v in ("nebula", "fal", "nebula")]
    await set_status(service, ids[0], "running")
    rows, total = await list_resources(service.db, alice)
    assert total == 3 and [r.id for r in rows] == ids[::-1]  # newest first
    assert [r.id for r in (await list_resources(service.db, alice, vendor="fal"))[0]] == [ids[1]]
    assert [r.id for r in (await list_resources(service.db, alice, status="running"))[0]] == [ids[0]]
    offer_id = (await load(service, ids[2])).offer_id
    assert [r.id for r in (await list_resources(service.db, alice, offer_id=offer_id))[0]] == [ids[2]]
    page, total = await list_resources(service.db, alice, limit=2, offset=2)
    assert total == 3 and [r.id for r in page] == [ids[0]]
    for bad in ({"status": "exploded"}, {"vendor": "aws"}, {"limit": 0}, {"offset": -1}):
        with pytest.raises(UnprocessableError):
            await list_resources(service.db, alice, **bad)


@pytest.mark.parametrize("service_backend", BACKENDS)
async def test_concurrent_deletes_one_wins(service: Any) -> None:
    rid = await make_resource(service, status="running")
    alice = await principal(service)
    outcomes = await asyncio.gather(*(delete_resource(service.db, alice, rid) for _ in range(6)), return_exceptions=True)
    assert sum(not isinstance(o, Exception) for o in outcomes) == 1
    assert all(isinstance(o, ConflictError) for o in outcomes if isinstance(o, Exception)), outcomes
    events, _ = await list_events(service.db, alice, rid)
    assert [e.to_status for e in events] == ["pending", "deleting"]  # one delete recorded, not six


async def test_events_oldest_first_and_paged(service: Any) -> None:
    rid = await make_resource(service, status="running")
    alice = await principal(service)
    await request_action(service.db, service.vendors, alice, rid, "reboot")
    await delete_resource(service.db, alice, rid, force=True)
    events, total = await list_events(service.db, alice, rid)
    assert total == 3
    assert [(e.from_status, e.to_status) for e in events] == [(None, "pending"), ("running", "rebooting"), ("rebooting", "deleting")]
    assert [e.at for e in events] == sorted(e.at for e in events)
    page, _ = await list_events(service.db, alice, rid, limit=1, offset=1)
    assert [e.id for e in page] == [events[1].id]


async def test_get_skips_refresh_without_an_instance(service: Any) -> None:
    rid = await make_resource(service)
    requests = service.vendors.sandboxes["nebula"].requests
    resource = await get_resource(service.db, service.ctx.refresh_resource, await principal(service), rid, force_refresh=True)
    assert resource.status == "pending"
    assert service.vendors.sandboxes["nebula"].requests == requests


async def test_rows_are_fresh_after_an_engine_change(service: Any) -> None:
    # The API reads under its own lock: a status the engine wrote a moment ago is the one judged.
    rid = await make_resource(service, status="running")
    alice = await principal(service)
    await set_status(service, rid, "terminated")
    with pytest.raises(ConflictError, match="already terminated"):
        await delete_resource(service.db, alice, rid)
    async with service.db.session() as session:
        assert (await session.execute(select(Resource.status).where(Resource.id == rid))).scalar_one() == "terminated"


async def test_get_with_cost_reads_both_in_one_session(service: Any) -> None:
    """The read path of GET /resources/{id}: the resource and its cost so far from one database
    read (`Database.read`, one statement; no session, no vendor refresh needed), the same cost
    `costs_so_far` gives, and tenancy kept."""
    from gpusupply.db.models import utcnow
    from gpusupply.domain.costs import costs_so_far
    from gpusupply.domain.events import change_status
    from gpusupply.services.resources import get_resource_with_cost

    rid = await make_resource(service)
    two_hours_ago = utcnow() - timedelta(hours=2)
    async with service.db.transaction() as session:
        resource = await session.get(Resource, rid)
        assert resource is not None
        change_status(session, resource, S.PROVISIONING, at=two_hours_ago)
        change_status(session, resource, S.RUNNING, at=two_hours_ago + timedelta(minutes=1))
        resource.running_since = two_hours_ago + timedelta(minutes=1)
        resource.vendor_instance_id, resource.last_synced_at = "synced-just-now", utcnow()

    sessions: list[str] = []
    this_task = asyncio.current_task()  # the catalog's background refresh books rate-limit slots meanwhile

    def counted(kind: str) -> Any:
        real = getattr(service.db, kind)

        def opener(*args: Any) -> Any:
            if asyncio.current_task() is this_task:
                sessions.append(kind)
            return real(*args)

        return opener

    alice = await principal(service)
    requests = service.vendors.sandboxes["nebula"].requests
    try:
        for kind in ("session", "read_session", "transaction", "read"):
            setattr(service.db, kind, counted(kind))
        resource, cost = await get_resource_with_cost(service.db, service.ctx.refresh_resource, alice, rid)
    finally:
        for kind in ("session", "read_session", "transaction", "read"):
            delattr(service.db, kind)  # back to the methods
    assert sessions == ["read"]
    assert service.vendors.sandboxes["nebula"].requests == requests  # fresh: no vendor read
    assert resource.id == rid and resource.status == "running"
    expected = (await costs_so_far(service.db, [resource]))[rid]
    assert expected > 0
    assert cost == pytest.approx(expected, rel=1e-3)
    with pytest.raises(NotFoundError):
        await get_resource_with_cost(service.db, service.ctx.refresh_resource, await principal(service, "bob"), rid)
