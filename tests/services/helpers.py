"""Helpers for service tests: callers (principals) and offers to procure."""

from __future__ import annotations

from typing import Any

from gpusupply.core.offers import OfferQuery
from gpusupply.domain.catalog import StoredOffer
from gpusupply.services.keys import Principal, authenticate


async def principal(service: Any, name: str = "alice") -> Principal:
    return await authenticate(service.db, f"Bearer {service.tenants[name].token}")


async def some_offers(service: Any, n: int = 1, **query: Any) -> list[StoredOffer]:
    result = await service.catalog.search(OfferQuery(**query), limit=n)
    assert len(result.offers) == n, result
    return result.offers
