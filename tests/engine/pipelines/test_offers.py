"""engine/pipelines/offers.py: offer choice for procurement by spec and the attempt records (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gpusupply.core.offers import Offer, OfferQuery
from gpusupply.engine.pipelines.offers import (
    CREATED,
    FAILED,
    SKIPPED,
    TRYING,
    BadSpec,
    attempt_record,
    close_attempt,
    failed_count,
    failure_summary,
    pick_offer,
    spec_to_query,
)

AT = datetime(2026, 1, 1, tzinfo=UTC)


def offer(vendor: str, oid: str, price: float) -> Offer:
    return Offer(vendor, oid, "nvidia-h100-sxm5-80gb", "H100", 1, 80, price, price, "ondemand", "r", "US", AT)


OFFERS = [("o1", offer("vast", "a", 1.0)), ("o2", offer("nebula", "b", 1.5)), ("o3", offer("fal", "c", 2.0)), ("o4", offer("vast", "d", 2.5))]
ALL = ("vast", "fal", "nebula")


def rec(offer_id: str, vendor: str, outcome: str, error: str | None = None) -> dict:
    r = attempt_record(offer_id, dict(OFFERS)[offer_id], at=AT, outcome=outcome, reason="x")
    r["error"] = error
    assert r["vendor"] == vendor
    return r


@pytest.mark.parametrize(
    ("attempts", "degraded", "enabled", "expected", "skipped"),
    [
        ([], {}, ALL, "o1", []),
        ([rec("o1", "vast", FAILED)], {}, ALL, "o2", []),
        ([rec("o1", "vast", FAILED), rec("o2", "nebula", FAILED)], {}, ALL, "o3", []),
        # a degraded vendor is skipped, once recorded
        ([], {"vast": "list failed"}, ALL, "o2", ["o1"]),
        ([rec("o1", "vast", SKIPPED)], {"vast": "list failed"}, ALL, "o2", []),
        # a vendor that refused our key is not tried again
        ([rec("o1", "vast", FAILED, "AuthFailed")], {}, ALL, "o2", []),
        ([rec("o1", "vast", FAILED, "AuthFailed"), rec("o2", "nebula", FAILED), rec("o3", "fal", FAILED)], {}, ALL, None, []),
        # a vendor not enabled in this process is not a candidate
        ([], {}, ("fal",), "o3", []),
        # an offer being tried (no outcome yet) may be picked again, created ones not
        ([rec("o1", "vast", TRYING)], {}, ALL, "o1", []),
        ([rec("o1", "vast", CREATED)], {}, ALL, "o2", []),
    ],
)
def test_pick_offer(attempts, degraded, enabled, expected, skipped) -> None:
    candidate, skipped_offers = pick_offer(OFFERS, attempts=attempts, degraded=degraded, enabled=enabled)
    assert (candidate.offer_id if candidate else None) == expected
    assert [s[0] for s in skipped_offers] == skipped


def test_close_attempt_closes_only_the_open_one_and_copies() -> None:
    attempts = [rec("o1", "vast", FAILED), rec("o2", "nebula", TRYING)]
    closed = close_attempt(attempts, "o2", CREATED, "instance i-1")
    assert [a["outcome"] for a in closed] == [FAILED, CREATED]
    assert attempts[1]["outcome"] == TRYING  # the input is not changed (the JSON column must see a new list)
    assert failed_count(closed) == 1


def test_failure_summary_lists_every_attempt() -> None:
    attempts = [rec("o1", "vast", FAILED), rec("o2", "nebula", SKIPPED)]
    text = failure_summary(attempts, searched=4)
    assert text.startswith("all offers failed (1 tried)")
    assert "vast a ($1.00/GPU-h)" in text and "nebula b" in text
    assert "no offer matches" in failure_summary([], searched=0)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"compute": {"gpu_type": "H100"}}, OfferQuery(gpu_family="H100", gpu_count=1)),
        (
            {"vendor": "vast", "region": "eu", "compute": {"gpu_type": "nvidia-h100-sxm5-80gb", "gpu_count": 8, "max_price_per_gpu_hour": 3, "contract_type": "spot"}},
            OfferQuery(gpu_canonical="nvidia-h100-sxm5-80gb", gpu_count=8, max_price_per_gpu_hour=3.0, contract_type="spot", vendor="vast", region="EU"),
        ),
    ],
)
def test_spec_to_query(spec, expected) -> None:
    assert spec_to_query(spec) == expected


@pytest.mark.parametrize("spec", [{"compute": {"gpu_type": "Z9000"}}, {"compute": {}}, {"region": "Mars", "compute": {"gpu_type": "H100"}}])
def test_spec_to_query_rejects(spec) -> None:
    with pytest.raises(BadSpec):
        spec_to_query(spec)
