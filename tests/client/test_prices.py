"""The SDK's price routes, typed: history, now, and price alerts (blocking and asyncio)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from gpusupply.client import AsyncGpuSupply, BadRequestError, GpuSupply, NotFoundError
from gpusupply.contract.prices import PriceAlertOut, PriceHistory, PricesNow
from tests.client.helpers import LiveService, live_service
from tests.conftest import SSH_KEY


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    with live_service(tmp_path_factory.mktemp("sdk-prices")) as service:
        yield service


def test_blocking_prices_and_alerts(live: LiveService) -> None:
    with GpuSupply(live.url, live.tokens["alice"]) as gs:
        now = gs.prices_now("H100", gpu_count=1)
        assert isinstance(now, PricesNow) and now.markets
        history = gs.price_history("H100", gpu_count=1, since="1h", step="5m")
        assert isinstance(history, PriceHistory) and history.step_seconds == 300 and history.series
        cheapest = now.markets[0]
        series = next(s for s in history.series if (s.vendor, s.contract_type) == (cheapest.vendor, cheapest.contract_type))
        assert series.points[-1].min == cheapest.price  # the same refresh, seen twice
        alert = gs.create_price_alert({"compute": {"gpu_type": "H100"}}, cheapest.price / 2, name="sdk",
                                      procure={"ssh_public_key": SSH_KEY})
        assert isinstance(alert, PriceAlertOut) and alert.then == "procure" and alert.procure is not None
        assert [a.alert_id for a in gs.list_price_alerts().alerts] == [alert.alert_id]
        assert gs.get_price_alert(alert.alert_id).name == "sdk"
        assert gs.list_price_alert_firings(alert.alert_id).firings == []
        assert gs.delete_price_alert(str(alert.alert_id)).deleted
        with pytest.raises(NotFoundError):
            gs.get_price_alert(alert.alert_id)
        with pytest.raises(BadRequestError) as refused:
            gs.price_history("H100", since="365d", step="5m")
        assert "at most 2000" in str(refused.value)
        with pytest.raises(ValueError, match="alert_id must be a UUID"):
            gs.get_price_alert("nope")


@pytest.fixture
async def sdk(service: Any) -> AsyncIterator[AsyncGpuSupply]:
    transport = httpx.ASGITransport(app=service.app)
    async with AsyncGpuSupply("http://service", service.tenants["alice"].token, transport=transport) as gs:
        yield gs


async def test_async_prices_and_alerts(sdk: AsyncGpuSupply, service: Any) -> None:
    await service.catalog.refresh()
    now = await sdk.prices_now("H100", vendor="lambda")
    assert {m.vendor for m in now.markets} == {"lambda"}
    history = await sdk.price_history("H100", vendor="lambda", across_vendors=True)
    assert [s.vendor for s in history.series] == [None] * len(history.series) and history.series
    alert = await sdk.create_price_alert({"compute": {"gpu_type": "A100"}, "region": "EU"}, 0.9)
    assert alert.then == "notify" and alert.spec["region"] == "EU"
    assert (await sdk.list_price_alerts()).alerts[0].alert_id == alert.alert_id
    assert (await sdk.get_price_alert(alert.alert_id)).threshold == 0.9
    assert (await sdk.list_price_alert_firings(alert.alert_id)).firings == []
    assert (await sdk.delete_price_alert(alert.alert_id)).deleted
