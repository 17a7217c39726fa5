"""The in-memory offer index every replica searches: fast, and always in agreement with
`core.offers.matches`.

Layout: per vendor, offers are grouped into leaves by (canonical GPU, GPU count, contract type,
region group); each leaf is sorted by `core.offers.price_key` and keeps a parallel list of
per-GPU prices. A query picks the leaves that fit its exact-match filters (family or canonical
first), cuts each leaf at the price cap by bisection (so counting is cheap), and merges the cut
leaves lazily for the requested page. Only available, unexpired offers are ever in a leaf, and
all offers of one vendor share the expiry of that vendor's catalog snapshot.

Cluster offers (core.offers.cluster_offer) are not in the leaves: a search that wants clusters
(`core.offers.wants_clusters`) derives them from the leaves' offers that can be placed together,
each under an id made from its node offer's id and its size (so every replica names it alike),
and merges them with the rest by price. Ordinary searches never look at them.

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
from uuid import UUID, uuid5

from gpusupply.core.offers import OfferQuery, cluster_nodes, cluster_offer, price_key, wants_clusters

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
        """(The search asks for single machines at all: checked once, before the leaves.)"""
        return (
            (query.gpu_count is None or self.gpu_count == query.gpu_count)
            and (query.contract_type is None or self.contract_type == query.contract_type)
            and (query.region is None or self.region == query.region)
        )

    def places(self, query: OfferQuery) -> bool:
        """The filters a leaf's offers share with the clusters made of them."""
        return (query.contract_type is None or self.contract_type == query.contract_type) and (
            query.region is None or self.region == query.region
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
    # The largest single node per GPU family and canonical name (whether a search wants clusters).
    largest: dict[str, int] = field(default_factory=dict)
    # Leaves holding an offer that can be placed as a cluster, and the cluster offers derived so far.
    cluster_leaves: list[_Leaf] = field(default_factory=list)
    clusters: dict[tuple[UUID, int], StoredOffer] = field(default_factory=dict)

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
            for name in (family, canonical):
                part.largest[name] = max(part.largest.get(name, 0), count)
            if any(entry[2].offer.cluster_max_nodes > 1 for entry in entries):
                part.cluster_leaves.append(leaf)
            for entry in entries:
                part.leaf_of[entry[2].offer_id] = leaf
        return part

    def largest_node(self, query: OfferQuery) -> int:
        name = query.gpu_canonical or query.gpu_family
        return self.largest.get(name, 0) if name is not None else max(self.largest.values(), default=0)

    def cluster_entries(self, query: OfferQuery, taken: set[UUID]) -> list[_Entry]:
        """The cluster offers this vendor's offers make for the query, sorted by price."""
        found: list[_Entry] = []
        for leaf in self.cluster_leaves:
            if query.gpu_canonical is not None and leaf.canonical != query.gpu_canonical:
                continue
            if query.gpu_family is not None and leaf.family != query.gpu_family:
                continue
            if not leaf.places(query):
                continue
            for _, _, stored in islice(leaf.entries, leaf.cut(query.max_price_per_gpu_hour)):
                nodes = cluster_nodes(stored.offer, query)
                if nodes is None:
                    continue
                cluster = self._cluster(stored, nodes)
                if cluster.offer_id not in taken:
                    found.append((price_key(cluster.offer), str(cluster.offer_id), cluster))
        found.sort()
        return found

    def _cluster(self, node: StoredOffer, nodes: int) -> StoredOffer:
        key = (node.offer_id, nodes)
        cluster = self.clusters.get(key)
        if cluster is None:
            from gpusupply.domain.catalog import StoredOffer

            cluster = StoredOffer(cluster_offer_id(node.offer_id, nodes), cluster_offer(node.offer, nodes), node.expires_at, "available")
            self.clusters[key] = cluster
        return cluster


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
        # The largest single node per GPU family / canonical name over every vendor: most searches
        # ask for no more GPUs than that, and one lookup tells them they want no clusters.
        self._largest: dict[str, int] = {}
        # Cluster offers procured (here or, seen through the database, elsewhere): never answered again.
        self._taken_clusters: set[UUID] = set()
        # Changes with every change of what a search can answer (`replace_vendor`, `drop_vendor`,
        # `discard`): an answer computed at one version holds until the next, or an expiry.
        self.version = 0

    def replace_vendor(self, vendor: str, offers: Iterable[StoredOffer]) -> None:
        """Install a vendor's new catalog snapshot (replacing the previous one atomically)."""
        self._parts[vendor] = _VendorPart.build(offers)
        self._update_largest()
        self.version += 1

    def drop_vendor(self, vendor: str) -> None:
        self._parts.pop(vendor, None)
        self._update_largest()
        self.version += 1

    def expiries(self) -> list[datetime]:
        """When each vendor's offers expire (a search stops answering them then)."""
        return [part.expires_at for part in self._parts.values() if part.expires_at is not None]

    def _update_largest(self) -> None:
        largest: dict[str, int] = {}
        for part in self._parts.values():
            for name, count in part.largest.items():
                largest[name] = max(largest.get(name, 0), count)
        self._largest = largest

    def discard(self, offer_id: UUID) -> bool:
        """Take one offer out of search (it was procured). True if it was there."""
        self.version += 1
        for part in self._parts.values():
            leaf = part.leaf_of.pop(offer_id, None)
            if leaf is not None:
                return leaf.remove(str(offer_id))
        # Not a leaf's offer: a cluster offer (derived here already or not yet) has a name-based id.
        if offer_id.version == 5:
            self._taken_clusters.add(offer_id)
        return False

    def count(self, vendor: str | None = None) -> int:
        parts = self._parts.values() if vendor is None else [p for v, p in self._parts.items() if v == vendor]
        return sum(len(part.leaf_of) for part in parts)

    def wants_clusters(self, query: OfferQuery) -> bool:
        """Whether the query asks for clusters (core.offers.wants_clusters), given the single nodes
        of the vendors it searches. The common case (no cluster filter, no more GPUs than some node
        has) is one dictionary lookup."""
        name = query.gpu_canonical or query.gpu_family
        if name is None:
            largest = max(self._largest.values(), default=0)
        elif query.vendor is None:
            largest = self._largest.get(name, 0)
        else:
            part = self._parts.get(query.vendor)
            largest = part.largest.get(name, 0) if part is not None else 0
        return wants_clusters(query, largest)

    def search(self, query: OfferQuery, *, now: datetime, limit: int, offset: int = 0) -> tuple[list[StoredOffer], int]:
        """(the page of matches sorted by price, the number of all matches)."""
        if query.vendor is not None:
            parts = [self._parts[query.vendor]] if query.vendor in self._parts else []
        else:
            parts = list(self._parts.values())
        runs: list[Iterator[_Entry]] = []
        total = 0
        if self.wants_clusters(query):
            for part in parts:
                if part.expires_at is not None and part.expires_at > now:
                    clusters = part.cluster_entries(query, self._taken_clusters)
                    if clusters:
                        total += len(clusters)
                        runs.append(iter(clusters))
        singles = query.node_count in (None, 1) and query.interconnect != "infiniband"
        for part in parts if singles else ():
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


def cluster_offer_id(node_offer_id: UUID, nodes: int) -> UUID:
    """The id of the cluster of `nodes` nodes of an offer: the same in every replica."""
    return uuid5(node_offer_id, f"cluster:{nodes}")
