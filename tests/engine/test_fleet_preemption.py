"""The acceptance test of fleets (issue 17, docs/fleets.md): a 3-member spot fleet on the sandboxes,
with the sandboxes preempting members chosen by a seeded draw. After each preemption the fleet is
back to 3 running, the replacement lands outside the vendor-region that preempted (another offer
exists there), and the time from the preemption to the replacement's request is measured and
printed (never asserted). Deleting the fleet leaves nothing on any vendor."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from gpusupply.engine.pipelines.offers import spec_to_query
from gpusupply.services import fleets

from .fleet_helpers import (
    FLEET_SETTINGS,
    SPOT_H100,
    SPOT_VENDORS,
    create_fleet,
    fleet_events,
    fleet_row,
    live_on_vendors,
    members,
    principal,
    wait_running,
)
from .helpers import Rig, engine_rig, wait_until

PREEMPTIONS = 3
SEED = 17


def where(member) -> tuple[str, str]:
    return (member.vendor, member.vendor_region)


async def alternatives(rig: Rig, catalog, avoided: tuple[str, str]) -> int:
    """Matching offers outside the preempting vendor-region, as the catalog lists them now."""
    found = await catalog.search(spec_to_query(SPOT_H100), limit=100)
    return sum(1 for s in found.offers if s.status == "available" and (s.offer.vendor, s.offer.vendor_region) != avoided)


async def test_a_spot_fleet_comes_back_to_size_after_each_preemption(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    # The catalog is read again every second, so offers taken by earlier members come back in stock.
    async with engine_rig(tmp_path, vendors=SPOT_VENDORS, offer_cache_seconds=1.0, **FLEET_SETTINGS) as rig:
        catalog = await rig.catalog()
        fleet_id = await create_fleet(rig, size=3, name="spot")
        await rig.start_engine(catalog=catalog)
        current = await wait_running(rig, fleet_id, 3)
        draw = random.Random(SEED)
        timings: list[tuple[float, float]] = []
        for round_number in range(1, PREEMPTIONS + 1):
            victim = draw.choice(current)
            assert await alternatives(rig, catalog, where(victim)) > 0
            preempted = rig.sandbox(victim.vendor).preempt(victim.vendor_instance_id)
            preempted_at = datetime.fromtimestamp(preempted.preempted, UTC)
            ended = await rig.wait_status(victim.id, "terminated", within=60)
            current = await wait_running(rig, fleet_id, 3, within=90)
            replaced = [e for e in await fleet_events(rig, fleet_id, "fleet_member_replaced") if e.data["replaced_resource_id"] == str(victim.id)]
            assert len(replaced) == 1, replaced
            new_id = replaced[0].data["replacement_resource_id"]
            [replacement] = [m for m in await members(rig, fleet_id) if str(m.id) == new_id]
            assert replacement.status in ("running", "deleting", "terminated")  # it ran (it may be preempted next)
            assert where(replacement) != where(victim), (where(replacement), where(victim))
            assert ended.ended_at is not None
            noticed = (ended.ended_at - preempted_at).total_seconds()
            requested = (replacement.created_at - ended.ended_at).total_seconds()
            timings.append((noticed, requested))
            with capsys.disabled():
                print(
                    f"\n[fleet preemption {round_number}] {victim.vendor} {victim.vendor_region} -> replacement on "
                    f"{replacement.vendor} {replacement.vendor_region}: preemption noticed after {noticed:.2f} s "
                    f"(refresh every {rig.settings.refresh_interval_seconds} s, absence confirmed after "
                    f"{rig.settings.absence_confirm_seconds} s), replacement requested {requested:.3f} s after that, "
                    f"{noticed + requested:.2f} s from preemption to request"
                )
        assert len(await fleet_events(rig, fleet_id, "fleet_member_lost")) == PREEMPTIONS
        with capsys.disabled():
            worst = max(n + r for n, r in timings)
            print(f"[fleet preemption] {PREEMPTIONS} preemptions, worst preemption -> replacement request: {worst:.2f} s")

        await fleets.delete_fleet(rig.db, await principal(rig), fleet_id)
        await wait_until(lambda: _fleet_deleted(rig, fleet_id), within=90, what="fleet deleted")
        assert await live_on_vendors(rig, SPOT_VENDORS) == []
        assert {m.status for m in await members(rig, fleet_id)} <= {"deleted", "terminated"}


async def _fleet_deleted(rig: Rig, fleet_id) -> bool:
    return (await fleet_row(rig, fleet_id)).status == "deleted"
