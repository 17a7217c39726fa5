"""engine/sync.py: the pure mapping of a vendor observation onto our row (table-driven), and
`refresh_resource` (the API's force_refresh) against a sandbox vendor."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gpusupply.core.states import InstanceState as I  # noqa: E741
from gpusupply.core.states import ResourceStatus as S
from gpusupply.engine.sync import observe, refresh_resource
from gpusupply.vendors.base import VendorInstance

from .helpers import available_vendors, engine_rig

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
EARLIER = datetime(2026, 1, 1, 11, 0, tzinfo=UTC)


def inst(state: I, *, ip: str | None = "203.0.113.9", raw: str = "raw") -> VendorInstance:
    return VendorInstance("i-1", state, raw, external_ip=ip, ssh_port=22 if ip else None)


@pytest.mark.parametrize(
    ("status", "instance", "expected", "gone"),
    [
        # provisioning waits for running *with an address*
        (S.PROVISIONING, inst(I.PROVISIONING), None, False),
        (S.PROVISIONING, inst(I.RUNNING, ip=None), None, False),
        (S.PROVISIONING, inst(I.RUNNING), S.RUNNING, False),
        (S.PROVISIONING, inst(I.UNKNOWN), None, False),
        (S.PROVISIONING, inst(I.ERROR), None, False),  # the pipeline decides to clean up
        (S.PROVISIONING, None, S.TERMINATED, True),
        (S.PROVISIONING, inst(I.TERMINATED), S.TERMINATED, True),
        # running stays true to the vendor
        (S.RUNNING, inst(I.RUNNING), None, False),
        (S.RUNNING, inst(I.STOPPED), S.STOPPED, False),
        (S.RUNNING, inst(I.STOPPING), None, False),
        (S.RUNNING, inst(I.TERMINATING), None, False),
        (S.RUNNING, inst(I.ERROR), None, False),
        (S.RUNNING, None, S.TERMINATED, True),
        (S.RUNNING, inst(I.TERMINATED), S.TERMINATED, True),
        (S.STOPPED, inst(I.STOPPED), None, False),
        (S.STOPPED, inst(I.RUNNING), S.RUNNING, False),
        (S.STOPPED, None, S.TERMINATED, True),
        # actions reach their target only
        (S.STOPPING, inst(I.RUNNING), None, False),
        (S.STOPPING, inst(I.STOPPING), None, False),
        (S.STOPPING, inst(I.STOPPED), S.STOPPED, False),
        (S.STARTING, inst(I.STOPPED), None, False),
        (S.STARTING, inst(I.RUNNING, ip=None), None, False),
        (S.STARTING, inst(I.RUNNING), S.RUNNING, False),
        (S.REBOOTING, inst(I.REBOOTING), None, False),
        (S.REBOOTING, inst(I.RUNNING), S.RUNNING, False),
        (S.REBOOTING, None, S.TERMINATED, True),
    ],
)
def test_observe_table(status: S, instance: VendorInstance | None, expected: S | None, gone: bool) -> None:
    result = observe(status, instance, now=NOW, running_since=None)
    assert result.status == expected
    assert result.gone == gone
    assert result.fields["last_synced_at"] == NOW
    if expected is not None:
        assert result.reason


def test_observe_records_address_and_first_running_time() -> None:
    result = observe(S.PROVISIONING, inst(I.RUNNING), now=NOW, running_since=None)
    assert result.fields["external_ip"] == "203.0.113.9"
    assert result.fields["ssh_port"] == 22
    assert result.fields["running_since"] == NOW
    # an instance that already ran keeps its first running time
    again = observe(S.STOPPED, inst(I.RUNNING), now=NOW, running_since=EARLIER)
    assert "running_since" not in again.fields


def test_observe_keeps_address_when_not_running() -> None:
    result = observe(S.RUNNING, inst(I.STOPPED, ip=None), now=NOW, running_since=EARLIER)
    assert "external_ip" not in result.fields


def test_observe_gone_reason_names_the_vendor_word() -> None:
    assert "not found" in (observe(S.RUNNING, None, now=NOW, running_since=None).reason or "")
    assert "exited" in (observe(S.RUNNING, inst(I.TERMINATED, raw="exited"), now=NOW, running_since=None).reason or "")


async def test_refresh_resource_reads_the_vendor_and_skips_leased_rows(tmp_path) -> None:
    vendor = "nebula" if "nebula" in available_vendors() else available_vendors()[0]
    async with engine_rig(tmp_path, vendors=[vendor]) as rig:
        rid = await rig.procure_offer((await rig.offers(vendor))[0])
        engine = await rig.start_engine()
        row = await rig.wait_status(rid, "running")
        await engine.stop()
        synced = row.last_synced_at
        rig.clock.advance(1)
        await refresh_resource(rig.db, rig.vendors, rid, settings=rig.settings, clock=rig.clock)
        fresh = await rig.resource(rid)
        assert fresh.last_synced_at is not None and synced is not None and fresh.last_synced_at > synced
        assert fresh.lock_token is None
        # the instance vanishes on the vendor (deleted elsewhere): the refresh sees it, and ends the
        # row once a second read after the delay and the list agree
        await rig.vendors.adapters[vendor].delete(fresh.vendor_instance_id or "")
        await refresh_resource(rig.db, rig.vendors, rid, settings=rig.settings, clock=rig.clock)
        assert (await rig.resource(rid)).status == "running"
        rig.clock.advance(rig.settings.absence_confirm_seconds)
        await refresh_resource(rig.db, rig.vendors, rid, settings=rig.settings, clock=rig.clock)
        gone = await rig.resource(rid)
        assert gone.status == "terminated"
        assert "vanished" in (gone.status_message or "") or "terminated" in (gone.status_message or "")
        # a pending row is the procure pipeline's: refresh_resource leaves it alone
        pending = await rig.procure_offer((await rig.offers(vendor))[1])
        await refresh_resource(rig.db, rig.vendors, pending, settings=rig.settings)
        assert (await rig.resource(pending)).status == "pending"


def test_the_vendor_login_is_kept_and_shown_in_the_ssh_command() -> None:
    """Lambda's images log in as ubuntu, Nebula says per instance: the command must name that user."""
    from gpusupply.services.resources import ssh_command

    running = VendorInstance("i-1", I.RUNNING, "active", external_ip="198.51.100.3", ssh_port=22, extra={"ssh_user": "ubuntu"})
    result = observe(S.PROVISIONING, running, now=NOW, running_since=None)
    assert result.fields["ssh_user"] == "ubuntu"
    assert ssh_command("198.51.100.3", None, 22, result.fields["ssh_user"]) == "ssh ubuntu@198.51.100.3 -p 22"
    assert ssh_command("198.51.100.3", None, 22) == "ssh root@198.51.100.3 -p 22"  # no word from the vendor: root
    plain = observe(S.PROVISIONING, VendorInstance("i-2", I.RUNNING, "running", external_ip="192.0.2.1"), now=NOW, running_since=None)
    assert "ssh_user" not in plain.fields


@pytest.mark.parametrize("vendor", available_vendors())
async def test_an_end_is_dated_when_the_vendors_answer_came_not_when_the_read_began(tmp_path, vendor: str) -> None:
    """A paced read can wait seconds before it is sent. The end of a preempted instance is dated
    when the answer came, so the resource never ends before the vendor stopped billing for it."""
    async with engine_rig(tmp_path, vendors=[vendor]) as rig:
        if vendor == "runpod":  # RunPod takes back spot pods only
            offer = next(o for o in await rig.vendors.adapters[vendor].list_offers() if o.available and o.contract_type == "spot")
        else:
            offer = (await rig.offers(vendor))[0]
        rid = await rig.procure_offer(offer)
        engine = await rig.start_engine()
        instance_id = (await rig.wait_status(rid, "running")).vendor_instance_id or ""
        await engine.stop()
        sandbox = rig.sandbox(vendor)
        sandbox.preempt(instance_id)
        for _ in range(2):  # vendors that forget a preempted instance confirm its absence with a second read
            sent, began = sandbox.requests, rig.clock()

            def clock() -> datetime:  # the vendor's answer comes 10 s after the step began
                return rig.clock() + timedelta(seconds=10 if sandbox.requests > sent else 0)  # noqa: B023 (called in this round)

            await refresh_resource(rig.db, rig.vendors, rid, settings=rig.settings, clock=clock)
            row = await rig.resource(rid)
            if row.status == "terminated":
                break
            rig.clock.advance(rig.settings.absence_confirm_seconds)
        assert row.status == "terminated", row.status_message
        assert row.ended_at is not None and row.ended_at >= began + timedelta(seconds=10)
