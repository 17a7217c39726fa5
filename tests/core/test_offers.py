"""`matches` is the one predicate for offers; `price_key` the one sort order."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from gpusupply.core.offers import Offer, OfferQuery, matches, price_key

BASE = Offer(
    vendor="vast",
    vendor_offer_id="1",
    gpu_type="nvidia-h100-sxm5-80gb",
    gpu_family="H100",
    gpu_count=2,
    gpu_memory_gb=80,
    gpu_price_per_hour=2.0,
    total_price_per_hour=4.0,
    contract_type="ondemand",
    vendor_region="Texas, US",
    region="US",
    fetched_at=datetime(2026, 1, 1, tzinfo=UTC),
)


@pytest.mark.parametrize(
    ("query", "offer_changes", "expected"),
    [
        (OfferQuery(), {}, True),
        (OfferQuery(gpu_family="H100"), {}, True),
        (OfferQuery(gpu_family="A100"), {}, False),
        (OfferQuery(gpu_canonical="nvidia-h100-sxm5-80gb"), {}, True),
        (OfferQuery(gpu_canonical="nvidia-h100-pcie-80gb"), {}, False),
        (OfferQuery(gpu_count=2), {}, True),
        (OfferQuery(gpu_count=1), {}, False),  # exact count, not "at least"
        (OfferQuery(max_price_per_gpu_hour=2.0), {}, True),  # the cap is inclusive
        (OfferQuery(max_price_per_gpu_hour=1.99), {}, False),
        (OfferQuery(contract_type="ondemand"), {}, True),
        (OfferQuery(contract_type="spot"), {}, False),
        (OfferQuery(vendor="vast"), {}, True),
        (OfferQuery(vendor="fal"), {}, False),
        (OfferQuery(region="US"), {}, True),
        (OfferQuery(region="EU"), {}, False),
        (OfferQuery(), {"available": False}, False),
        (
            OfferQuery(gpu_family="H100", gpu_count=2, max_price_per_gpu_hour=3, contract_type="ondemand", vendor="vast", region="US"),
            {},
            True,
        ),
    ],
)
def test_matches(query: OfferQuery, offer_changes: dict, expected: bool) -> None:
    assert matches(replace(BASE, **offer_changes), query) is expected


def test_price_key_orders_by_gpu_price_then_total_then_vendor() -> None:
    offers = [
        replace(BASE, vendor_offer_id="a", gpu_price_per_hour=2.0, total_price_per_hour=8.0),
        replace(BASE, vendor_offer_id="b", gpu_price_per_hour=1.0, total_price_per_hour=8.0),
        replace(BASE, vendor_offer_id="c", gpu_price_per_hour=2.0, total_price_per_hour=4.0),
        replace(BASE, vendor="fal", vendor_offer_id="d", gpu_price_per_hour=2.0, total_price_per_hour=4.0),
    ]
    assert [o.vendor_offer_id for o in sorted(offers, key=price_key)] == ["b", "d", "c", "a"]
