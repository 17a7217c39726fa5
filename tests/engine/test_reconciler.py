"""engine/reconciler.py: the pure plan (table-driven) and whole rounds against sandbox vendors:
orphans deleted after their grace, vanished rows terminated, foreign instances left alone, and
bad lists changing nothing but the vendor's health."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import update

from gpusupply.core.states import InstanceState
from gpusupply.core.states import ResourceStatus as S
from gpusupply.db.models import Resource
from gpusupply.engine.jobs import PeriodicJob
from gpusupply.engine.reconciler import KnownResource, listing_problem, plan_reconcile, reconcile_vendor
from gpusupply.metrics import ORPHANS_FOUND, ORPHANS_TERMINATED, VENDOR_DEGRADED
from gpusupply.vendors.base import CreateRequest, VendorInstance, marker_for

from .helpers import SANDBOX_KEY, SSH_KEY, Rig, available_vendors, engine_rig

VENDORS = available_vendors()
MARKER_VENDORS = [v for v in VENDORS if v != "fal"]
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
OLD = NOW - timedelta(hours=1)
GRACE, VISIBILITY = 300.0, 20.0

R1, R2, R3 = (uuid.UUID(int=n) for n in (1, 2, 3))
INST, OTHER_INST = "0a1b2c3d", "99887766"  # this installation, and another sharing the account


def vi(iid: str, rid: uuid.UUID | None = None, state: InstanceState = InstanceState.RUNNING, marker: str | None = None) -> VendorInstance:
    return VendorInstance(iid, state, state.value, marker=marker if marker is not None else (marker_for(rid, INST) if rid else None))


def known(rid: uuid.UUID, status: S, iid: str | None, since: datetime = OLD) -> KnownResource:
    return KnownResource(rid, None, status, "v", iid, since)


def plan(listing, resources=(), marker_rows=None, candidates=None, now=NOW, id_rows=None):
    rows = list(resources)
    if marker_rows is None:
        marker_rows = {r.id: r for r in rows}
    return plan_reconcile(
        listing, rows, marker_rows, candidates or {}, now=now, listed_at=now, grace_seconds=GRACE, visibility_seconds=VISIBILITY,
        installation_id=INST, id_rows=id_rows,
    )


def outcome(p) -> str:
    """What a plan does with the one listed instance "a"."""
    found = [name for name, hit in (
        ("orphan", bool(p.newly_found)), ("duplicate", bool(p.duplicates)), ("revive", bool(p.revive)),
        ("foreign", p.foreign == 1), ("unmatched", p.unmatched == 1),
    ) if hit]
    assert len(found) <= 1, found
    return found[0] if found else "none"


def test_matched_instances_need_nothing() -> None:
    p = plan([vi("a", R1)], [known(R1, S.RUNNING, "a")])
    assert (p.problem, p.terminate, p.newly_found, p.vanished, p.unmatched) == (None, [], [], [], 0)


def test_orphan_with_unknown_resource_waits_for_its_grace_then_is_terminated() -> None:
    first = plan([vi("a", R1)])
    assert [i.vendor_instance_id for i in first.newly_found] == ["a"] and first.terminate == []
    assert first.candidates == {"a": NOW.isoformat()}
    early = plan([vi("a", R1)], candidates=first.candidates, now=NOW + timedelta(seconds=GRACE - 1))
    assert early.terminate == [] and early.newly_found == []
    due = plan([vi("a", R1)], candidates=first.candidates, now=NOW + timedelta(seconds=GRACE))
    assert [i.vendor_instance_id for i in due.terminate] == ["a"]


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (known(R1, S.DELETED, "a"), "orphan"),  # the user deleted it: its instance must go
        (known(R1, S.FAILED, None), "orphan"),
        (known(R1, S.TERMINATED, "a"), "revive"),  # ended on an observation: the instance is back
        (known(R1, S.TERMINATED, None), "revive"),
        (known(R1, S.TERMINATED, "other"), "duplicate"),  # it records another instance
        (known(R1, S.RUNNING, "other"), "duplicate"),  # a late create: deleted at once, no grace
        (known(R1, S.DELETING, "other"), "duplicate"),
        (known(R1, S.PENDING, None), "none"),  # a create in flight: its pipeline will claim it
        (known(R1, S.DELETING, None), "none"),  # being recovered for deletion
    ],
)
def test_orphan_by_marker(row: KnownResource, expected: str) -> None:
    live = [row] if row.status not in (S.DELETED, S.FAILED, S.TERMINATED) else []
    p = plan([vi("a", R1)], live, marker_rows={R1: row}, now=NOW)
    assert outcome(p) == expected
    if expected == "duplicate":
        assert [i.vendor_instance_id for i in p.duplicates] == ["a"] and p.terminate == [] and p.candidates == {}
    if expected == "revive":
        assert p.revive == [(R1, vi("a", R1))]


@pytest.mark.parametrize(
    ("marker", "rows", "expected"),
    [
        (marker_for(R1, OTHER_INST), {}, "foreign"),  # another installation's: never touched
        (marker_for(R1, OTHER_INST), {R1: known(R1, S.DELETED, "a")}, "foreign"),
        (marker_for(R1), {}, "foreign"),  # an old marker (no installation) that is not in our database
        (marker_for(R1), {R1: known(R1, S.DELETED, "a")}, "orphan"),  # an old marker of ours
        (marker_for(R1, INST), {}, "orphan"),  # ours, with no such resource
        ("someone-elses-box", {}, "unmatched"),
    ],
)
def test_installations_sharing_an_account(marker: str, rows: dict, expected: str) -> None:
    p = plan([vi("a", marker=marker)], [], marker_rows=rows)
    assert outcome(p) == expected


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (None, "unmatched"),  # fal: no marker, and no row of ours ever held this id
        (known(R1, S.DELETED, "a"), "orphan"),
        (known(R1, S.TERMINATED, "a"), "revive"),
    ],
)
def test_instances_without_a_marker_are_ours_when_a_row_holds_their_id(row: KnownResource | None, expected: str) -> None:
    p = plan([vi("a")], [], marker_rows={}, id_rows={"a": row} if row else {})
    assert outcome(p) == expected


def test_instances_without_our_marker_are_never_touched() -> None:
    p = plan([vi("x", marker="someone-elses-box"), vi("y", marker=None)], candidates={"x": OLD.isoformat()})
    assert p.unmatched == 2 and p.terminate == [] and p.candidates == {}


def test_gone_instances_are_neither_orphans_nor_present() -> None:
    p = plan([vi("a", R1, InstanceState.TERMINATED), vi("b", R2)], [known(R1, S.RUNNING, "a"), known(R2, S.RUNNING, "b")])
    assert p.newly_found == [] and p.vanished == [R1]


def test_vanished_only_after_the_visibility_window() -> None:
    rows = [known(R1, S.RUNNING, "a"), known(R2, S.PROVISIONING, "b", since=NOW - timedelta(seconds=5)), known(R3, S.RUNNING, "c")]
    p = plan([vi("c", R3)], rows)
    assert p.vanished == [R1]  # R2 was created 5 s ago: a list may not show it yet


def test_deleting_and_pending_rows_are_not_expected_in_the_list() -> None:
    rows = [known(R1, S.DELETING, "a"), known(R2, S.PENDING, None), known(R3, S.RUNNING, "c")]
    assert plan([vi("c", R3)], rows).vanished == []


def test_empty_list_while_instances_should_exist_is_suspicious() -> None:
    p = plan([], [known(R1, S.RUNNING, "a")])
    assert p.problem and "empty list" in p.problem
    assert p.vanished == [] and p.terminate == []
    # empty is fine when nothing established is expected there
    assert plan([], [known(R1, S.PROVISIONING, "a", since=NOW)]).problem is None


def test_candidates_that_left_the_list_are_forgotten() -> None:
    p = plan([vi("c", R3)], [known(R3, S.RUNNING, "c")], candidates={"gone": OLD.isoformat()})
    assert p.candidates == {}


@pytest.mark.parametrize(
    ("listing", "problem"),
    [
        ([], None),
        ([vi("a")], None),
        ("", "list is a str, not a list"),
        (None, "list is a NoneType, not a list"),
        ([vi("a"), vi("a")], "list repeats instance a"),
        ([vi("")], "list has an entry without an instance id"),
        ([{"id": "a"}], "list has an entry without an instance id"),
    ],
)
def test_listing_problem(listing, problem) -> None:
    assert listing_problem(listing) == problem


# ----- rounds against the sandbox vendors ---------------------------------------------------------


async def running(rig: Rig, vendor: str, count: int) -> list[uuid.UUID]:
    offers = await rig.offers(vendor)
    rids = [await rig.procure_offer(offers[i]) for i in range(count)]
    for rid in rids:
        assert (await rig.wait_status(rid, "running", "failed")).status == "running"
    return rids


async def foreign_instance(rig: Rig, vendor: str) -> str:
    """An instance someone else made in the same account, not carrying our marker."""
    sandbox = rig.sandbox(vendor)
    if vendor == "vast":  # through Vast's own API, as another tool would
        ask = (await rig.offers(vendor))[-1].vendor_offer_id
        async with httpx.AsyncClient(base_url=rig.vendors.urls[vendor], headers={"Authorization": f"Bearer {SANDBOX_KEY}"}) as client:
            response = await client.put(f"/api/v0/asks/{ask}/", json={"image": "ubuntu:22.04", "disk": 10, "label": "someone-elses-box"})
            response.raise_for_status()
            return str(response.json()["new_contract"])
    if vendor == "nebula":
        product = next(iter(sandbox.products.values()))
        image = next(iter(sandbox.images.values()))
        instance = sandbox.new_instance(SANDBOX_KEY, "someone-elses-box", product, image)
        sandbox.record_create(instance)
        return instance.id
    if vendor == "runpod":  # through RunPod's GraphQL API, as the runpod SDK would
        gpu = (await rig.offers(vendor))[-1].vendor_data["gpu_type_id"]
        document = 'mutation { podFindAndDeployOnDemand(input: {name: "someone-elses-box", imageName: "runpod/base", gpuTypeId: "%s"}) { id } }'
        async with httpx.AsyncClient(base_url=rig.vendors.urls[vendor], headers={"Authorization": f"Bearer {SANDBOX_KEY}"}) as client:
            response = await client.post("/graphql", json={"query": document % gpu})
            response.raise_for_status()
            return response.json()["data"]["podFindAndDeployOnDemand"]["id"]
    raise AssertionError(f"no foreign-instance helper for {vendor}: add one to FOREIGN_HELPERS' vendors")


# Vendors for which foreign_instance can make someone else's instance. Lambda has none yet: its
# installations-sharing-an-account case is in test_instance_safety.py.
FOREIGN_HELPERS = [v for v in MARKER_VENDORS if v in ("vast", "nebula", "runpod")]


@pytest.mark.parametrize("vendor", FOREIGN_HELPERS)
async def test_orphan_is_terminated_after_grace_and_foreign_instances_are_left(tmp_path, vendor: str) -> None:
    await orphan_round_trip(tmp_path, vendor, None)


async def test_orphan_round_trip_on_both_databases(tmp_path, db_url: str) -> None:
    await orphan_round_trip(tmp_path, MARKER_VENDORS[0], db_url)


async def orphan_round_trip(tmp_path, vendor: str, db_url: str | None) -> None:
    async with engine_rig(tmp_path, vendors=[vendor], reconcile_interval_seconds=3600, db_url=db_url) as rig:
        ctx = rig.engine_for_steps().ctx
        offer = (await rig.offers(vendor))[0]
        ghost = uuid.uuid4()  # a resource id we have no row for (a crash, a restored backup...)
        created = await rig.vendors.adapters[vendor].create(
            CreateRequest(ghost, offer, SSH_KEY, first_attempt_at=rig.clock(), installation_id=await ctx.installation())
        )
        foreign = await foreign_instance(rig, vendor)
        found_before = ORPHANS_FOUND.labels(vendor)._value.get()
        terminated_before = ORPHANS_TERMINATED.labels(vendor)._value.get()

        first = await reconcile_vendor(ctx, vendor)
        assert first.degraded is None and first.orphans_terminated == [] and first.orphans_pending == 1
        assert first.unmatched == 1
        assert ORPHANS_FOUND.labels(vendor)._value.get() == found_before + 1
        state = await rig.vendor_state(vendor)
        assert state is not None and len(state.orphan_candidates) == 1

        rig.clock.advance(rig.settings.orphan_grace_seconds + 1)
        second = await reconcile_vendor(ctx, vendor)
        orphan_id = created.vendor_instance_id if created is not None else next(iter(state.orphan_candidates))
        assert second.orphans_terminated == [orphan_id]
        assert ORPHANS_TERMINATED.labels(vendor)._value.get() == terminated_before + 1
        [event] = await rig.events(kind="orphan_terminated")
        assert event.vendor == vendor and str(ghost) in (event.reason or "") and event.data["vendor_instance_id"] == orphan_id
        live = {i["id"] for i in await rig.live_instances(vendor)}
        assert live == {foreign}  # the orphan is gone, the foreign instance untouched
        third = await reconcile_vendor(ctx, vendor)
        assert third.orphans_pending == 0
        assert (await rig.vendor_state(vendor)).orphan_candidates == {}


@pytest.mark.parametrize("vendor", MARKER_VENDORS)
async def test_duplicate_instance_of_a_live_resource_is_deleted_at_once(tmp_path, vendor: str) -> None:
    async with engine_rig(tmp_path, vendors=[vendor], reconcile_interval_seconds=3600) as rig:  # default orphan grace (300 s)
        await rig.start_engine()
        [rid] = await running(rig, vendor, 1)
        offer = (await rig.offers(vendor))[1]
        ctx = rig.engines[0].ctx
        # a second create for the same row (a create that reached the vendor late)
        await rig.vendors.adapters[vendor].create(CreateRequest(rid, offer, SSH_KEY, installation_id=await ctx.installation()))
        report = await reconcile_vendor(ctx, vendor)
        assert len(report.duplicates_deleted) == 1 and report.orphans_terminated == [] and report.orphans_pending == 0
        row = await rig.resource(rid)
        assert row.status == "running" and row.vendor_instance_id not in report.duplicates_deleted
        assert [i["id"] for i in await rig.live_instances(vendor)] == [row.vendor_instance_id]
        [event] = await rig.events(kind="duplicate_terminated")
        assert event.resource_id == rid and f"records instance {row.vendor_instance_id}" in (event.reason or "")


@pytest.mark.parametrize("vendor", VENDORS)
async def test_vanished_instance_marks_the_row_terminated(tmp_path, vendor: str) -> None:
    async with engine_rig(tmp_path, vendors=[vendor], reconcile_interval_seconds=3600, create_visibility_seconds=0) as rig:
        engine = await rig.start_engine()
        kept, lost = await running(rig, vendor, 2)
        await engine.stop()  # no refresh racing the reconciler
        await rig.vendors.adapters[vendor].delete((await rig.resource(lost)).vendor_instance_id or "")
        # The list does not show it and a read says not found: one observation, not yet an end.
        first = await reconcile_vendor(engine.ctx, vendor)
        assert first.vanished == []
        row = await rig.resource(lost)
        assert row.status == "running" and row.absent_since is not None and "confirming" in (row.status_message or "")
        # A second read after the delay, and the list, agree: gone.
        rig.clock.advance(rig.settings.absence_confirm_seconds)
        report = await reconcile_vendor(engine.ctx, vendor)
        assert report.vanished == [lost]
        row = await rig.resource(lost)
        assert row.status == "terminated" and "not found twice" in (row.status_message or "")
        assert (await rig.resource(kept)).status == "running"


@pytest.mark.parametrize("vendor", VENDORS)
async def test_fail_closed_on_bad_lists(tmp_path, vendor: str) -> None:
    async with engine_rig(tmp_path, vendors=[vendor], reconcile_interval_seconds=3600, orphan_grace_seconds=0, create_visibility_seconds=0) as rig:
        engine = await rig.start_engine()
        [rid] = await running(rig, vendor, 1)
        await engine.stop()
        ctx = engine.ctx

        rig.set_faults(vendor, {"malformed": 1.0})
        report = await reconcile_vendor(ctx, vendor)
        assert report.degraded and "list" in report.degraded
        state = await rig.vendor_state(vendor)
        assert state is not None and state.degraded and state.degraded_reason == report.degraded
        assert VENDOR_DEGRADED.labels(vendor)._value.get() == 1
        rig.set_faults(vendor, {"500": 1.0})
        assert (await reconcile_vendor(ctx, vendor)).degraded
        assert len(await rig.events(kind="vendor_degraded")) == 1  # one event per episode
        assert (await rig.resource(rid)).status == "running"  # nothing changed

        rig.set_faults(vendor, {})
        # the only instance vanishes: an empty list while we expect one is not believed either
        await rig.vendors.adapters[vendor].delete((await rig.resource(rid)).vendor_instance_id or "")
        report = await reconcile_vendor(ctx, vendor)
        assert report.degraded and "empty list" in report.degraded
        assert (await rig.resource(rid)).status == "running"

        # a good list clears the flag
        async with rig.db.transaction() as session:
            await session.execute(update(Resource).where(Resource.id == rid).values(status="deleted"))
        report = await reconcile_vendor(ctx, vendor)
        assert report.degraded is None
        state = await rig.vendor_state(vendor)
        assert state is not None and not state.degraded and state.last_reconciled_at is not None
        assert VENDOR_DEGRADED.labels(vendor)._value.get() == 0
        assert len(await rig.events(kind="vendor_recovered")) == 1


async def test_fal_instances_are_matched_by_id_only(tmp_path) -> None:
    """fal carries no marker: an instance we did not record is unmatched and left alone."""
    if "fal" not in VENDORS:
        pytest.skip("fal not in this tree")
    async with engine_rig(tmp_path, vendors=["fal"], reconcile_interval_seconds=3600, orphan_grace_seconds=0) as rig:
        engine = await rig.start_engine()
        [rid] = await running(rig, "fal", 1)
        await engine.stop()
        offer = (await rig.offers("fal"))[0]
        await rig.vendors.adapters["fal"].create(CreateRequest(uuid.uuid4(), offer, SSH_KEY, first_attempt_at=rig.clock()))
        report = await reconcile_vendor(engine.ctx, "fal")
        assert report.unmatched == 1 and report.orphans_terminated == [] and report.vanished == []
        assert len(await rig.live_instances("fal")) == 2
        assert (await rig.resource(rid)).status == "running"


async def test_one_process_at_a_time_runs_a_reconcile_round(tmp_path) -> None:
    vendor = VENDORS[0]
    async with engine_rig(tmp_path, vendors=[vendor], reconcile_interval_seconds=3600) as rig:
        a, b = rig.engine_for_steps(owner="a"), rig.engine_for_steps(owner="b")
        started = asyncio.Event()
        release = asyncio.Event()

        async def slow_round() -> bool:
            started.set()
            await release.wait()
            return True

        job_a = PeriodicJob(a.ctx, f"reconcile:{vendor}", 3600, slow_round)
        job_b = PeriodicJob(b.ctx, f"reconcile:{vendor}", 3600, slow_round)
        running_a = asyncio.create_task(job_a.run_once())
        await started.wait()
        assert await job_b.run_once() is False  # a holds the lease
        release.set()
        assert await running_a is True
        assert await job_b.run_once() is False  # ran a moment ago: not due for an hour


def test_an_instance_a_row_took_after_the_live_rows_were_read_is_its_own() -> None:
    """The round reads live rows, then rows by listed ids: a create answered in between shows the row
    pending in one and holding the instance in the other. Never an orphan (fal has no marker)."""
    p = plan([vi("a")], [known(R1, S.PENDING, None)], marker_rows={}, id_rows={"a": known(R1, S.PROVISIONING, "a")})
    assert outcome(p) == "none"
