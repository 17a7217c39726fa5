"""Choosing offers for a procurement by spec, and the attempt records. Pure functions.

An attempt is one try of one offer, kept in `resource.attempts` (and as an `attempt` event):

    {"offer_id", "vendor", "vendor_offer_id", "gpu_price_per_hour", "total_price_per_hour",
     "at", "outcome": "trying" | "created" | "failed" | "skipped", "reason", "error"}

Only `failed` counts against `max_failover_attempts`: a rate limit is not a failure (the same
offer is tried again later) and a `skipped` offer (degraded or blocked vendor) was never tried.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gpusupply.core.errors import AuthFailed
from gpusupply.core.gpus import resolve_gpu_query
from gpusupply.core.offers import Offer, OfferQuery
from gpusupply.core.regions import parse_region_group

TRYING, CREATED, FAILED, SKIPPED = "trying", "created", "failed", "skipped"


class BadSpec(ValueError):
    pass


def spec_to_query(spec: dict[str, Any]) -> OfferQuery:
    """A stored procurement spec (a get_offers document, already validated by the API) -> query."""
    compute = spec.get("compute") or {}
    gpu_type = str(compute.get("gpu_type") or "")
    family, canonical = resolve_gpu_query(gpu_type)
    if family is None and canonical is None:
        raise BadSpec(f"unknown gpu_type {gpu_type!r}")
    region = spec.get("region")
    region_group = parse_region_group(str(region)) if region else None
    if region and region_group is None:
        raise BadSpec(f"unknown region {region!r}")
    max_price = compute.get("max_price_per_gpu_hour")
    return OfferQuery(
        gpu_family=family,
        gpu_canonical=canonical,
        gpu_count=int(compute.get("gpu_count") or 1),
        max_price_per_gpu_hour=float(max_price) if max_price is not None else None,
        contract_type=compute.get("contract_type") or None,
        vendor=spec.get("vendor") or None,
        region=region_group,
        node_count=int(compute["node_count"]) if compute.get("node_count") is not None else None,
        interconnect=compute.get("interconnect") or None,
    )


def attempt_record(offer_id: str, offer: Offer, *, at: datetime, outcome: str = TRYING, reason: str | None = None) -> dict[str, Any]:
    return {
        "offer_id": offer_id,
        "vendor": offer.vendor,
        "vendor_offer_id": offer.vendor_offer_id,
        "gpu_price_per_hour": offer.gpu_price_per_hour,
        "total_price_per_hour": offer.total_price_per_hour,
        "at": at.isoformat(),
        "outcome": outcome,
        "reason": reason,
        "error": None,
    }


def close_attempt(attempts: Sequence[dict[str, Any]], offer_id: str | None, outcome: str, reason: str | None = None, error: str | None = None) -> list[dict[str, Any]]:
    """A new list with the open attempt on `offer_id` closed (a new list, so the JSON column sees
    the change)."""
    result = [dict(a) for a in attempts]
    for attempt in reversed(result):
        if attempt.get("offer_id") == offer_id and attempt.get("outcome") == TRYING:
            attempt.update(outcome=outcome, reason=reason, error=error)
            break
    return result


def failed_count(attempts: Iterable[dict[str, Any]]) -> int:
    return sum(1 for a in attempts if a.get("outcome") == FAILED)


def tried_offer_ids(attempts: Iterable[dict[str, Any]]) -> set[str]:
    return {str(a.get("offer_id")) for a in attempts if a.get("outcome") in (FAILED, CREATED, SKIPPED)}


def blocked_vendors(attempts: Iterable[dict[str, Any]]) -> set[str]:
    """Vendors not to try again in this procurement: our key was refused there."""
    return {str(a.get("vendor")) for a in attempts if a.get("error") == AuthFailed.__name__}


@dataclass(frozen=True, slots=True)
class Candidate:
    offer_id: str
    offer: Offer


def pick_offer(
    offers: Sequence[tuple[str, Offer]],
    *,
    attempts: Sequence[dict[str, Any]],
    degraded: dict[str, str],
    enabled: Iterable[str],
) -> tuple[Candidate | None, list[tuple[str, Offer, str]]]:
    """The cheapest offer not tried yet, on an enabled, healthy, unblocked vendor.

    `offers` come sorted by price. Returns the candidate and the offers skipped on the way (with
    why), so the caller can record them."""
    tried = tried_offer_ids(attempts)
    blocked = blocked_vendors(attempts)
    enabled_set = set(enabled)
    skipped: list[tuple[str, Offer, str]] = []
    skipped_vendors: set[str] = {str(a.get("vendor")) for a in attempts if a.get("outcome") == SKIPPED}
    for offer_id, offer in offers:
        if offer_id in tried:
            continue
        if offer.vendor not in enabled_set:
            continue
        if offer.vendor in blocked:
            continue
        if offer.vendor in degraded:
            if offer.vendor not in skipped_vendors:  # one record per vendor is enough
                skipped.append((offer_id, offer, f"vendor {offer.vendor} degraded: {degraded[offer.vendor]}"))
                skipped_vendors.add(offer.vendor)
            continue
        return Candidate(offer_id, offer), skipped
    return None, skipped


def failure_summary(attempts: Sequence[dict[str, Any]], *, searched: int) -> str:
    """One line a user can act on: every offer tried and why it failed."""
    failed = [a for a in attempts if a.get("outcome") in (FAILED, SKIPPED)]
    if not failed:
        return f"no offer matches the spec ({searched} searched)" if searched == 0 else "no untried offer left"
    parts = [
        f"{a.get('vendor')} {a.get('vendor_offer_id')} (${float(a.get('gpu_price_per_hour') or 0):.2f}/GPU-h): {a.get('reason')}"
        for a in failed
    ]
    tried = failed_count(attempts)
    return f"all offers failed ({tried} tried): " + "; ".join(parts)
