"""The index must agree with `core.offers.matches` + `price_key` on every query, page and count."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from gpusupply.core.gpus import families
from gpusupply.core.offers import Offer, OfferQuery, matches, price_key
from gpusupply.domain.catalog import StoredOffer
from gpusupply.domain.offer_index import OfferIndex

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
VENDORS = ("vast", "fal", "nebula")
REGIONS = ("US", "EU", "APAC", "Other")
FAMILIES = families()


def random_offers(rng: random.Random, vendor: str, n: int, expires_at: datetime) -> list[StoredOffer]:
    offers = []
    for i in range(n):
        family = rng.choice(["H100", "A100", "RTX4090", "L40S"])
        canonical = rng.choice(FAMILIES[family])
        count = rng.choice([1, 1, 2, 4, 8])
        price = round(rng.uniform(0.2, 4.0), 2)  # repeats on purpose: ties broken by total, vendor, id
        offer = Offer(
            vendor=vendor,
            vendor_offer_id=f"{vendor}-{i}",
            gpu_type=canonical,
            gpu_family=family,
            gpu_count=count,
            gpu_memory_gb=80,
            gpu_price_per_hour=price,
            total_price_per_hour=round(price * count, 4),
            contract_type=rng.choice(["ondemand", "spot"]),
            vendor_region="somewhere",
            region=rng.choice(REGIONS),
            fetched_at=NOW,
            available=rng.random() > 0.05,
        )
        offers.append(StoredOffer(UUID(int=rng.getrandbits(128)), offer, expires_at, "available"))
    return offers


def random_query(rng: random.Random) -> OfferQuery:
    family = rng.choice([None, "H100", "A100", "RTX4090", "L40S", "B200"])
    canonical = None
    if family is not None and rng.random() < 0.3:
        canonical, family = rng.choice(FAMILIES[family]), None
    return OfferQuery(
        gpu_family=family,
        gpu_canonical=canonical,
        gpu_count=rng.choice([None, 1, 2, 8]),
        max_price_per_gpu_hour=rng.choice([None, 0.5, 1.0, 2.5, 10.0]),
        contract_type=rng.choice([None, "ondemand", "spot"]),
        vendor=rng.choice([None, *VENDORS]),
        region=rng.choice([None, *REGIONS]),
    )


def brute_force(offers: list[StoredOffer], query: OfferQuery, now: datetime) -> list[StoredOffer]:
    found = [s for s in offers if s.status == "available" and s.expires_at > now and matches(s.offer, query)]
    return sorted(found, key=lambda s: (price_key(s.offer), str(s.offer_id)))


@pytest.fixture
def catalog() -> tuple[OfferIndex, list[StoredOffer]]:
    rng = random.Random(1234)
    index = OfferIndex()
    everything: list[StoredOffer] = []
    for vendor in VENDORS:
        offers = random_offers(rng, vendor, 600, NOW + timedelta(minutes=30))
        index.replace_vendor(vendor, offers)
        everything += offers
    return index, everything


def test_agrees_with_matches_on_random_queries(catalog: tuple[OfferIndex, list[StoredOffer]]) -> None:
    index, everything = catalog
    rng = random.Random(99)
    for _ in range(300):
        query = random_query(rng)
        expected = brute_force(everything, query, NOW)
        offset = rng.choice([0, 0, 3, 40])
        limit = rng.choice([1, 10, 50, 1000])
        page, total = index.search(query, now=NOW, limit=limit, offset=offset)
        assert total == len(expected), query
        assert [s.offer_id for s in page] == [s.offer_id for s in expected[offset : offset + limit]], query


def test_pages_tile_the_whole_result(catalog: tuple[OfferIndex, list[StoredOffer]]) -> None:
    index, everything = catalog
    query = OfferQuery(gpu_family="H100")
    expected = brute_force(everything, query, NOW)
    seen = []
    for offset in range(0, len(expected) + 7, 7):
        page, total = index.search(query, now=NOW, limit=7, offset=offset)
        assert total == len(expected)
        seen += page
    assert [s.offer_id for s in seen] == [s.offer_id for s in expected]


def test_discard_takes_an_offer_out(catalog: tuple[OfferIndex, list[StoredOffer]]) -> None:
    index, everything = catalog
    query = OfferQuery(gpu_family="A100")
    before, total = index.search(query, now=NOW, limit=5)
    assert index.discard(before[0].offer_id) is True
    assert index.discard(before[0].offer_id) is False  # already gone
    after, total_after = index.search(query, now=NOW, limit=5)
    assert total_after == total - 1
    assert [s.offer_id for s in after] == [s.offer_id for s in before[1:]] + [after[-1].offer_id]
    assert index.count() == sum(1 for s in everything if s.offer.available) - 1


def test_expired_vendor_catalogs_are_not_searched() -> None:
    rng = random.Random(5)
    index = OfferIndex()
    index.replace_vendor("vast", random_offers(rng, "vast", 50, NOW - timedelta(seconds=1)))
    fresh = random_offers(rng, "fal", 50, NOW + timedelta(minutes=5))
    index.replace_vendor("fal", fresh)
    page, total = index.search(OfferQuery(), now=NOW, limit=1000)
    assert {s.offer.vendor for s in page} == {"fal"}
    assert total == len(brute_force(fresh, OfferQuery(), NOW))


def test_replace_and_drop_vendor() -> None:
    rng = random.Random(6)
    index = OfferIndex()
    index.replace_vendor("vast", random_offers(rng, "vast", 30, NOW + timedelta(minutes=5)))
    newer = random_offers(rng, "vast", 10, NOW + timedelta(minutes=5))
    index.replace_vendor("vast", newer)
    page, _ = index.search(OfferQuery(), now=NOW, limit=100)
    assert {s.offer_id for s in page} <= {s.offer_id for s in newer}
    index.drop_vendor("vast")
    assert index.search(OfferQuery(), now=NOW, limit=100) == ([], 0)
    assert index.search(OfferQuery(vendor="nebula"), now=NOW, limit=100) == ([], 0)


def test_offers_not_available_never_enter(catalog: tuple[OfferIndex, list[StoredOffer]]) -> None:
    index, everything = catalog
    page, _ = index.search(OfferQuery(), now=NOW, limit=10_000)
    assert all(s.offer.available and s.status == "available" for s in page)
    procured = StoredOffer(UUID(int=1), everything[0].offer, NOW + timedelta(minutes=5), "procured")
    index.replace_vendor("other", [procured])
    assert index.search(OfferQuery(vendor="other"), now=NOW, limit=10) == ([], 0)  # type: ignore[arg-type]


@pytest.mark.parametrize(("limit", "offset"), [(0, 0), (10, 10_000)])
def test_empty_pages_still_count(catalog: tuple[OfferIndex, list[StoredOffer]], limit: int, offset: int) -> None:
    index, everything = catalog
    page, total = index.search(OfferQuery(), now=NOW, limit=limit, offset=offset)
    assert page == [] and total == len(brute_force(everything, OfferQuery(), NOW))
