"""`GpuSupply` (blocking) and `AsyncGpuSupply` (asyncio): the same methods, the same logic.

Each client is its driver (`drivers.py`: how steps are performed) plus the method groups, one
module per area of the API: `discovery.py`, `offers.py`, `resources.py`, `cost.py`,
`webhooks.py`, `prices.py` and `fleets.py`, each with its blocking and asyncio methods side by side. Requests are built in
`calls.py`; retries, paging and waiting are flows in `flows.py`; configuration and the bodies
both clients send are in `base.py`. Adding a route to the SDK is a builder in `calls.py` and a
line in each class of its group.
"""

from __future__ import annotations

from gpusupply.client.base import DEFAULT_URL, FINAL, NOT_BECOMING_READY, normalize_url
from gpusupply.client.cost import AsyncCost, BlockingCost
from gpusupply.client.discovery import AsyncDiscovery, BlockingDiscovery
from gpusupply.client.fleets import AsyncFleets, BlockingFleets
from gpusupply.client.offers import AsyncOffers, BlockingOffers
from gpusupply.client.prices import AsyncPrices, BlockingPrices
from gpusupply.client.resources import AsyncResources, BlockingResources
from gpusupply.client.webhooks import AsyncWebhooks, BlockingWebhooks

__all__ = ["DEFAULT_URL", "FINAL", "NOT_BECOMING_READY", "AsyncGpuSupply", "GpuSupply", "normalize_url"]


class GpuSupply(BlockingDiscovery, BlockingOffers, BlockingResources, BlockingCost, BlockingWebhooks, BlockingPrices, BlockingFleets):
    """Blocking client. `with GpuSupply(url, api_key) as gs: gs.get_offers("H100")`.

    `url` and `api_key` default to $GPUSUPPLY_URL (else http://127.0.0.1:8080) and
    $GPUSUPPLY_API_KEY. `retry` bounds retries on 429/503/connection failures; `wait` sets how
    the wait helpers poll; `transport` replaces httpx's (tests, proxies).
    """


class AsyncGpuSupply(AsyncDiscovery, AsyncOffers, AsyncResources, AsyncCost, AsyncWebhooks, AsyncPrices, AsyncFleets):
    """asyncio client with the same methods as `GpuSupply` (awaited; iterators are async).

    `async with AsyncGpuSupply(url, api_key) as gs: offers = await gs.get_offers("H100")`.
    """
