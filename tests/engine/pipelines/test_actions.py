"""engine/pipelines/actions.py: stop, start and reboot where the vendor has them; a refused action
puts the row back where the vendor says it is."""

from __future__ import annotations

import pytest

from gpusupply.core.states import InstanceState, ResourceStatus
from gpusupply.engine.pipelines.actions import already_done, already_sent
from gpusupply.vendors.base import VendorInstance
from gpusupply.vendors.registry import VENDOR_SPECS

from ..helpers import available_vendors, engine_rig

VENDORS = available_vendors()
STOPPABLE = [v for v in VENDORS if VENDOR_SPECS[v].capabilities.stop_start]
REBOOT_ONLY = [v for v in VENDORS if v not in STOPPABLE and VENDOR_SPECS[v].capabilities.reboot]


def inst(state: InstanceState, ip: str | None = "203.0.113.1") -> VendorInstance:
    return VendorInstance("i", state, state.value, external_ip=ip)


@pytest.mark.parametrize(
    ("status", "instance", "done"),
    [
        (ResourceStatus.STOPPING, inst(InstanceState.STOPPED), True),
        (ResourceStatus.STOPPING, inst(InstanceState.RUNNING), False),
        (ResourceStatus.STARTING, inst(InstanceState.RUNNING), True),
        (ResourceStatus.STARTING, inst(InstanceState.RUNNING, ip=None), False),
        (ResourceStatus.STARTING, inst(InstanceState.STOPPED), False),
        (ResourceStatus.REBOOTING, inst(InstanceState.RUNNING), False),  # a reboot leaves no trace
    ],
)
def test_already_done(status, instance, done) -> None:
    assert already_done(status, instance) is done


@pytest.mark.parametrize(
    ("status", "state", "sent"),
    [
        (ResourceStatus.STOPPING, InstanceState.STOPPING, True),
        (ResourceStatus.STOPPING, InstanceState.RUNNING, False),
        (ResourceStatus.REBOOTING, InstanceState.REBOOTING, True),
        (ResourceStatus.REBOOTING, InstanceState.RUNNING, False),
        (ResourceStatus.STARTING, InstanceState.STOPPED, False),
    ],
)
def test_already_sent(status, state, sent) -> None:
    assert already_sent(status, inst(state)) is sent


@pytest.mark.parametrize("vendor", STOPPABLE)
async def test_stop_start_reboot(tmp_path, vendor: str) -> None:
    async with engine_rig(tmp_path, vendors=[vendor]) as rig:
        await rig.start_engine()
        rid = await rig.procure_offer((await rig.offers(vendor))[0])
        assert (await rig.wait_status(rid, "running", "failed")).status == "running"
        await rig.request_action(rid, "stop")
        row = await rig.wait_status(rid, "stopped", "running", within=30)
        assert row.status == "stopped" and row.pending_action is None
        await rig.request_action(rid, "start")
        row = await rig.wait_status(rid, "running", "stopped", within=30)
        assert row.status == "running" and row.external_ip
        await rig.request_action(rid, "reboot")
        row = await rig.wait_status(rid, "running", within=30)
        statuses = [(e.from_status, e.to_status) for e in await rig.events(rid, "status_change")]
        assert statuses[2:] == [
            ("running", "stopping"), ("stopping", "stopped"),
            ("stopped", "starting"), ("starting", "running"),
            ("running", "rebooting"), ("rebooting", "running"),
        ]
        assert len(await rig.live_instances(vendor)) == 1
        await rig.request_delete(rid)
        assert (await rig.wait_status(rid, "deleted")).status == "deleted"
        assert await rig.live_instances(vendor) == []


@pytest.mark.parametrize("vendor", REBOOT_ONLY)
async def test_reboot_where_the_vendor_cannot_stop(tmp_path, vendor: str) -> None:
    """Lambda: restart only. The reboot completes; a stop (refused by the API) is reverted by the engine."""
    async with engine_rig(tmp_path, vendors=[vendor]) as rig:
        await rig.start_engine()
        rid = await rig.procure_offer((await rig.offers(vendor))[0])
        assert (await rig.wait_status(rid, "running", "failed")).status == "running"
        await rig.request_action(rid, "reboot")
        assert (await rig.wait_status(rid, "running", within=30)).status == "running"
        statuses = [(e.from_status, e.to_status) for e in await rig.events(rid, "status_change")]
        assert statuses[-2:] == [("running", "rebooting"), ("rebooting", "running")]
        await rig.request_action(rid, "stop")

        async def reverted() -> bool:
            row = await rig.resource(rid)
            return row.status == "running" and row.pending_action is None

        from ..helpers import wait_until

        await wait_until(reverted, what="the refused stop to be reverted")
        assert "stop refused by the vendor" in ((await rig.resource(rid)).status_message or "")
        assert len(await rig.live_instances(vendor)) == 1
        await rig.request_delete(rid)
        assert (await rig.wait_status(rid, "deleted")).status == "deleted"
        assert await rig.live_instances(vendor) == []


async def test_unsupported_action_is_reverted_with_the_reason(tmp_path) -> None:
    if "fal" not in VENDORS:
        pytest.skip("fal not in this tree")
    async with engine_rig(tmp_path, vendors=["fal"]) as rig:
        await rig.start_engine()
        rid = await rig.procure_offer((await rig.offers("fal"))[0])
        assert (await rig.wait_status(rid, "running")).status == "running"
        await rig.request_action(rid, "stop")  # (the API refuses this; the engine must cope anyway)

        async def reverted() -> bool:
            row = await rig.resource(rid)
            return row.status == "running" and row.pending_action is None

        from ..helpers import wait_until

        await wait_until(reverted, what="the refused stop to be reverted")
        row = await rig.resource(rid)
        assert "stop refused by the vendor" in (row.status_message or "")
        assert len(await rig.live_instances("fal")) == 1


@pytest.mark.parametrize("vendor", STOPPABLE)
async def test_stop_through_a_flaky_vendor_completes(tmp_path, vendor: str) -> None:
    async with engine_rig(tmp_path, vendors=[vendor]) as rig:
        await rig.start_engine()
        rid = await rig.procure_offer((await rig.offers(vendor))[0])
        assert (await rig.wait_status(rid, "running", "failed")).status == "running"
        rig.set_faults(vendor, {"429": 0.15, "503": 0.15})
        await rig.request_action(rid, "stop")
        row = await rig.wait_status(rid, "stopped", "running", within=60)
        assert row.status == "stopped", row.status_message
        injected = rig.sandbox(vendor).faults.injected
        assert injected["429"] + injected["503"] > 0
