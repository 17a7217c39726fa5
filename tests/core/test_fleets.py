"""core/fleets.py: what counts, what a loss was, which members a scale-down deletes, the price each
new member may cost, cool-downs and the order replacements try offers in. Pure, table-tested."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from gpusupply.core import fleets
from gpusupply.core.fleets import Loss, Member, PlacementPreference
from gpusupply.core.offers import Offer

T0 = datetime(2026, 12, 5, 8, 0, tzinfo=UTC)
OFFER = Offer(
    vendor="vast", vendor_offer_id="1", gpu_type="nvidia-h100-sxm5-80gb", gpu_family="H100", gpu_count=1, gpu_memory_gb=80,
    gpu_price_per_hour=1.0, total_price_per_hour=1.0, contract_type="spot", vendor_region="Texas, US", region="US", fetched_at=T0,
)


def member(status: str, *, n: int = 0, price: float | None = 1.0, running: bool = False, instance: bool = True, final: str | None = None) -> Member:
    return Member(
        id=f"m{n}", status=status, vendor="vast", vendor_region="Texas, US", price_per_hour=price,
        created_at=T0 + timedelta(seconds=n), running_since=T0 if running else None,
        vendor_instance_id=f"i{n}" if instance else None, final_status=final,
    )


@pytest.mark.parametrize(
    ("status", "counts"),
    [("pending", True), ("provisioning", True), ("running", True), ("stopped", True), ("rebooting", True),
     ("deleting", False), ("deleted", False), ("failed", False), ("terminated", False)],
)
def test_what_counts_toward_the_size(status: str, counts: bool) -> None:
    assert fleets.counts(status) is counts


@pytest.mark.parametrize(
    ("found", "loss"),
    [
        (member("terminated", running=True), Loss.PREEMPTED),
        (member("terminated"), Loss.PREEMPTED),  # vanished while provisioning
        (member("failed", running=True), Loss.PREEMPTED),  # failed after it ran
        (member("failed"), Loss.NEVER_RAN),  # its procurement found nothing to create
        (member("deleting", running=True, final="deleted"), Loss.DELETED),
        (member("deleted", running=True, final="deleted"), Loss.DELETED),
        (member("deleting", final="failed"), Loss.NEVER_RAN),  # a provisioning that failed: being cleaned up
        (member("deleting", running=True, final="failed"), Loss.PREEMPTED),
    ],
)
def test_what_a_loss_was(found: Member, loss: Loss) -> None:
    assert fleets.loss_kind(found) == loss


def test_a_scale_down_deletes_what_costs_least_to_lose_first() -> None:
    members = [
        member("running", n=1, price=1.0), member("running", n=2, price=3.0), member("provisioning", n=3),
        member("pending", n=4, instance=False), member("pending", n=5), member("deleting", n=6),
    ]
    assert [m.id for m in fleets.extras_to_delete(members, 5)] == []
    assert [m.id for m in fleets.extras_to_delete(members, 4)] == ["m4"]  # no instance yet
    assert [m.id for m in fleets.extras_to_delete(members, 2)] == ["m4", "m5", "m3"]
    assert [m.id for m in fleets.extras_to_delete(members, 1)] == ["m4", "m5", "m3", "m2"]  # the dearer running one
    assert len(fleets.extras_to_delete(members, 0)) == 5  # a deleting member is not counted again


@pytest.mark.parametrize(
    ("cap", "committed", "new", "ceiling"),
    [(None, 5.0, 2, None), (10.0, 4.0, 2, 3.0), (10.0, 12.0, 1, 0.0), (10.0, 4.0, 0, 0.0)],
)
def test_the_price_each_new_member_may_cost(cap: float | None, committed: float, new: int, ceiling: float | None) -> None:
    assert fleets.member_price_ceiling(cap, committed, new) == ceiling


@pytest.mark.parametrize(
    ("cap", "committed", "wanted", "cheapest", "count"),
    [(None, 0.0, 3, 1.0, 3), (2.5, 0.0, 3, 1.0, 2), (3.0, 0.0, 3, 1.0, 3), (3.0, 2.5, 3, 1.0, 0), (5.0, 0.0, 0, 1.0, 0)],
)
def test_how_many_new_members_the_cap_holds(cap: float | None, committed: float, wanted: int, cheapest: float, count: int) -> None:
    assert fleets.affordable_count(cap, committed, wanted, cheapest) == count


def test_a_members_spec_carries_its_share_of_the_cap() -> None:
    spec = {"compute": {"gpu_type": "H100", "gpu_count": 2, "max_price_per_gpu_hour": 3.0}, "vendor": "vast"}
    assert fleets.member_spec(spec, None) == spec
    assert fleets.member_spec(spec, 4.0)["compute"]["max_price_per_gpu_hour"] == 2.0  # 4 USD/h over 2 GPUs
    assert fleets.member_spec(spec, 10.0)["compute"]["max_price_per_gpu_hour"] == 3.0  # the spec's own cap is lower
    assert spec["compute"]["max_price_per_gpu_hour"] == 3.0  # the fleet's spec is left as it was
    assert fleets.member_spec({"compute": {"gpu_type": "H100"}}, 1.5)["compute"]["max_price_per_gpu_hour"] == 1.5


def test_cooldowns_expire_and_are_one_per_vendor_region() -> None:
    cooling = fleets.add_cooldown([], "vast", "Texas, US", T0, 600)
    cooling = fleets.add_cooldown(cooling, "vast", "Texas, US", T0 + timedelta(seconds=60), 600)
    assert len(cooling) == 1 and cooling[0]["until"] == (T0 + timedelta(seconds=660)).isoformat()
    cooling = fleets.add_cooldown(cooling, "runpod", None, T0, 30)
    assert [c["vendor"] for c in fleets.active_cooldowns(cooling, T0 + timedelta(seconds=31))] == ["vast"]
    assert fleets.active_cooldowns(cooling, T0 + timedelta(seconds=700)) == []
    assert fleets.add_cooldown([], "vast", "Texas, US", T0, 0) == []  # a cool-down of 0 turns it off


def offer(n: int, vendor: str, region: str, price: float) -> tuple[str, Offer]:
    return (str(n), replace(OFFER, vendor=vendor, vendor_region=region, vendor_offer_id=str(n), gpu_price_per_hour=price, total_price_per_hour=price))


OFFERS = [offer(1, "vast", "Texas, US", 1.0), offer(2, "runpod", "secure-US", 1.2), offer(3, "runpod", "community-IS", 1.5)]


@pytest.mark.parametrize(
    ("placement", "avoid", "placed", "order"),
    [
        ("spread", set(), {}, ["1", "2", "3"]),  # cheapest first
        ("spread", {("vast", "Texas, US")}, {}, ["2", "3", "1"]),  # away from the one that preempted, kept last
        ("spread", set(), {("vast", "Texas, US"): 2, ("runpod", "secure-US"): 1}, ["3", "2", "1"]),
        ("pack", set(), {("runpod", "secure-US"): 2}, ["2", "1", "3"]),
        ("pack", {("runpod", "secure-US")}, {("runpod", "secure-US"): 2}, ["1", "3", "2"]),
    ],
)
def test_the_order_a_member_tries_offers_in(placement: str, avoid: set[tuple[str, str]], placed: dict[tuple[str, str], int], order: list[str]) -> None:
    preference = PlacementPreference(placement, frozenset(avoid), Counter(placed))
    assert [offer_id for offer_id, _ in fleets.rank_offers(OFFERS, preference)] == order


def test_the_wait_of_a_fleet_that_cannot_reach_its_size_doubles_up_to_the_cap() -> None:
    assert [fleets.retry_seconds(n, 300) for n in (1, 2, 3, 4, 7, 20)] == [5.0, 10.0, 20.0, 40.0, 300.0, 300.0]
