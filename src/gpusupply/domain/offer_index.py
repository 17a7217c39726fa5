"""The in-memory offer index every replica searches: fast, and always in agreement with
`core.offers.matches`.

Layout: per vendor, offers are grouped into leaves by (canonical GPU, GPU count, contract type,
region group); each leaf is sorted by `core.offers.price_key` and keeps a parallel list of
per-GPU prices. A query picks the leaves that fit its exact-match filters (family or canonical
first), cuts each leaf at the price cap by bisection (so counting is cheap), and merges the cut
leaves lazily for the requested page. Only available, unexpired offers are ever in a leaf, and
all offers of one vendor share the expiry of that vendor's catalog snapshot.

The interface is small on purpose (`replace_vendor`, `discard`, `search`) so the structure
behind it can be optimized without touching callers.
"""

from __future__ import annotations

import heapq
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from typing import TYPE_CHECKING, Any
from uuid import UUID

from gpusupply.core.offers import OfferQuery, price_key

if TYPE_CHECKING:
    from gpusupply.domain.catalog import StoredOffer

# What a leaf stores per offer: sorts by price, then by offer id (unique, so the StoredOffer
# itself is never compared).
_Entry = tuple[tuple[float, float, str, str], str, "StoredOffer"]


@dataclass(slots=True)
class _Leaf:
    canonical: str
    family: str
    gpu_count: int
    contract_type: str
    region: str
    prices: list[float] = field(default_factory=list)  # gpu_price_per_hour, ascending
    entries: list[_Entry] = field(default_factory=list)

    def fits(self, query: OfferQuery) -> bool:
        return (
            (query.gpu_count is None or self.gpu_count == query.gpu_count)
            and (query.contract_type is None or self.contract_type == query.contract_type)
            and (query.region is None or self.region == query.region)
        )

    def cut(self, max_price: float | None) -> int:
        """How many entries are at or under the price cap."""
        return len(self.entries) if max_price is None else bisect_right(self.prices, max_price)

    def remove(self, offer_id: str) -> bool:
        for i, entry in enumerate(self.entries):
            if entry[1] == offer_id:
                del self.entries[i]
                del self.prices[i]
                return True
        return False


@dataclass(slots=True)
class _VendorPart:
    expires_at: datetime | None
    leaves: list[_Leaf]
    by_family: dict[str, list[_Leaf]]
    by_canonical: dict[str, list[_Leaf]]
    leaf_of: dict[UUID, _Leaf]

    @classmethod
    def build(cls, offers: Iterable[StoredOffer]) -> _VendorPart:
        grouped: dict[tuple[str, str, int, str, str], list[_Entry]] = {}
        expires: datetime | None = None
        for stored in offers:
            offer = stored.offer
            if stored.status != "available" or not offer.available:
                continue
            expires = stored.expires_at if expires is None else min(expires, stored.expires_at)
            key = (offer.gpu_type, offer.gpu_family, offer.gpu_count, offer.contract_type, offer.region)
            grouped.setdefault(key, []).append((price_key(offer), str(stored.offer_id), stored))
        part = cls(expires, [], {}, {}, {})
        for (canonical, family, count, contract, region), entries in grouped.items():
            entries.sort()
            leaf = _Leaf(canonical, family, count, contract, region, [e[0][0] for e in entries], entries)
            part.leaves.append(leaf)
            part.by_family.setdefault(family, []).append(leaf)
            part.by_canonical.setdefault(canonical, []).append(leaf)
            for entry in entries:
                part.leaf_of[entry[2].offer_id] = leaf
        return part

    def candidate_leaves(self, query: OfferQuery) -> Sequence[_Leaf]:
        if query.gpu_canonical is not None:
            leaves = self.by_canonical.get(query.gpu_canonical, [])
            if query.gpu_family is not None:
                return [leaf for leaf in leaves if leaf.family == query.gpu_family]
            return leaves
        if query.gpu_family is not None:
            return self.by_family.get(query.gpu_family, [])
        return self.leaves


class OfferIndex:
    """Every vendor's current catalog, searchable. Not thread-safe; used from one event loop."""

    def __init__(self) -> None:
        self._parts: dict[str, _VendorPart] = {}

    def replace_vendor(self, vendor: str, offers: Iterable[StoredOffer]) -> None:
        """Install a vendor's new catalog snapshot (replacing the previous one atomically)."""
        self._parts[vendor] = _VendorPart.build(offers)

    def drop_vendor(self, vendor: str) -> None:
        self._parts.pop(vendor, None)

    def discard(self, offer_id: UUID) -> bool:
        """Take one offer out of search (it was procured). True if it was there."""
        for part in self._parts.values():
            leaf = part.leaf_of.pop(offer_id, None)
            if leaf is not None:
                return leaf.remove(str(offer_id))
        return False

    def count(self, vendor: str | None = None) -> int:
        parts = self._parts.values() if vendor is None else [p for v, p in self._parts.items() if v == vendor]
        return sum(len(part.leaf_of) for part in parts)

    def search(self, query: OfferQuery, *, now: datetime, limit: int, offset: int = 0) -> tuple[list[StoredOffer], int]:
        """(the page of matches sorted by price, the number of all matches)."""
        if query.vendor is not None:
            parts = [self._parts[query.vendor]] if query.vendor in self._parts else []
        else:
            parts = list(self._parts.values())
        runs: list[Iterator[_Entry]] = []
        total = 0
        for part in parts:
            if part.expires_at is None or part.expires_at <= now:
                continue
            for leaf in part.candidate_leaves(query):
                if not leaf.fits(query):
                    continue
                cut = leaf.cut(query.max_price_per_gpu_hour)
                if cut:
                    total += cut
                    runs.append(islice(leaf.entries, cut))
        if offset >= total or limit <= 0:
            return [], total
        merged: Any = runs[0] if len(runs) == 1 else heapq.merge(*runs)
        return [entry[2] for entry in islice(merged, offset, offset + limit)], total
