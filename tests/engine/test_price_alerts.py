"""Price alerts fire: on the engine's catalog refreshes, to the tenant's webhooks, once per crossing,
once across several workers, and a buy-below order procures exactly one resource per firing,
within the tenant's budget. (Killed while firing: tests/e2e/test_kill_price_alerts.py.)"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from sqlalchemy import select, update

from gpusupply.db.models import PriceAlert, PriceAlertFiring, Procurement, Resource, utcnow
from gpusupply.domain.price_alerts import evaluate_alerts
from gpusupply.services.procurement import procure_for_alert
from tests.api.helpers import wait_for
from tests.conftest import BACKENDS, SSH_KEY
from tests.engine.webhook_helpers import Receiver, receiving

ENGINE = {
    "allow_private_webhook_urls": True,
    "price_alert_interval_seconds": 0.2,
    "webhook_poll_seconds": 0.1,
    "provisioning_poll_seconds": 0.2,
    "engine_poll_seconds": 0.1,
}
H100_1 = {"gpu_type": "H100", "gpu_count": 1}


async def cheapest_h100(service: Any, vendor: str | None = None) -> dict[str, Any]:
    params = {**H100_1, **({"vendor": vendor} if vendor else {})}
    markets = (await service.alice.get("/prices/now", params=params)).json()["markets"]
    assert markets, "no 1-GPU H100 offer"
    return markets[0]


async def firings(service: Any, alert_id: str) -> list[dict[str, Any]]:
    response = await service.alice.get(f"/price_alerts/{alert_id}/firings")
    assert response.status_code == 200, response.text
    return list(response.json()["firings"])


@pytest.mark.parametrize("settings_overrides", [ENGINE])
@pytest.mark.parametrize("service_engine", [True])
async def test_an_alert_just_above_the_cheapest_h100_fires_price_below_to_a_webhook(service: Any) -> None:
    async with receiving(Receiver()) as receiver:
        hook = await service.alice.post("/webhooks", json={"url": receiver.url + "/prices", "events": ["price.below", "price.above"]})
        assert hook.status_code == 201, hook.text
        await wait_for(lambda: service.alice.get("/prices/now", params=H100_1), within=60)
        cheapest = await cheapest_h100(service)
        threshold = round(cheapest["price"] + 0.01, 4)
        created = await service.alice.post("/price_alerts", json={"spec": {"compute": {"gpu_type": "H100"}}, "threshold": threshold, "name": "h100"})
        assert created.status_code == 201, created.text
        alert_id = created.json()["alert_id"]

        await wait_for(lambda: _received(receiver), within=60)
        (request,) = receiver.requests
        payload = request.json
        assert request.headers["x-gpusupply-event"] == "price.below" and payload["type"] == "price.below"
        details = payload["data"]["details"]
        assert details["alert_id"] == alert_id and details["threshold"] == threshold
        assert details["price"] == cheapest["price"] and details["vendor"] == cheapest["vendor"]
        assert details["resource_id"] is None  # a plain alert procures nothing
        (firing,) = await firings(service, alert_id)
        assert (firing["event_type"], firing["price"], firing["resource_id"]) == ("price.below", cheapest["price"], None)
        alert = (await service.alice.get(f"/price_alerts/{alert_id}")).json()
        assert alert["state"] == "below" and alert["last_price"] == cheapest["price"] and alert["last_fired_at"]

        # Later refreshes at the same prices fire nothing more (once per crossing).
        seen = alert["evaluated_through"]
        await service.catalog.refresh()
        await wait_for(lambda: _evaluated_after(service, alert_id, seen), within=30)
        assert len(await firings(service, alert_id)) == 1 and len(receiver.requests) == 1


async def _received(receiver: Receiver) -> bool:
    return bool(receiver.requests)


async def _evaluated_after(service: Any, alert_id: str, seen: str) -> bool:
    alert = (await service.alice.get(f"/price_alerts/{alert_id}")).json()
    return bool(alert["evaluated_through"] > seen)


@pytest.mark.parametrize("settings_overrides", [ENGINE])
@pytest.mark.parametrize("service_engine", [True])
async def test_a_buy_below_order_procures_one_resource_per_firing(service: Any) -> None:
    async with receiving(Receiver()) as receiver:
        await service.alice.post("/webhooks", json={"url": receiver.url + "/prices", "events": ["price.below"]})
        await wait_for(lambda: service.alice.get("/prices/now", params=H100_1), within=60)
        cheapest = await cheapest_h100(service)
        body = {
            "spec": {"compute": {"gpu_type": "H100"}},
            "threshold": round(cheapest["price"] + 0.01, 4),
            "name": "limit order",
            "then": "procure",
            "procure": {"ssh_public_key": SSH_KEY, "auto_delete": {"ttl_seconds": 3600}, "max_count": 3},
        }
        alert_id = (await service.alice.post("/price_alerts", json=body)).json()["alert_id"]
        await wait_for(lambda: _received(receiver), within=60)
        details = receiver.requests[0].json["data"]["details"]
        resource_id = details["resource_id"]
        assert resource_id and receiver.requests[0].json["data"]["resource_id"] == resource_id  # the event names it

        async def running() -> Any:
            row = (await service.alice.get(f"/resources/{resource_id}")).json()
            return row if row["status"] in ("running", "failed") else None

        resource = await wait_for(running, within=60)
        assert resource["status"] == "running" and resource["name"] == "limit order #1"
        assert resource["gpu_family"] == "H100" and resource["auto_delete"]["delete_at"] is not None
        (firing,) = await firings(service, alert_id)
        assert firing["resource_id"] == resource_id
        # Refreshes while still below: no second firing, no second resource.
        seen = (await service.alice.get(f"/price_alerts/{alert_id}")).json()["evaluated_through"]
        await service.catalog.refresh()
        await wait_for(lambda: _evaluated_after(service, alert_id, seen), within=30)
        async with service.db.session() as session:
            resources = (await session.execute(select(Resource).where(Resource.tenant_id == service.tenants["alice"].tenant_id))).scalars().all()
            procurement = (await session.execute(select(Procurement).where(Procurement.id == resources[0].procurement_id))).scalar_one()
        assert [str(r.id) for r in resources] == [resource_id]
        assert procurement.idempotency_key == f"price-alert:{firing['firing_id']}"
        assert procurement.spec["compute"]["max_price_per_gpu_hour"] == body["threshold"]  # never above the limit
        assert (await service.alice.get(f"/price_alerts/{alert_id}")).json()["procured_count"] == 1
        await service.alice.delete(f"/resources/{resource_id}")


# ----- the evaluation round itself (no engine running: rounds are called directly) -------------------
async def _alert(service: Any, threshold: float, **extra: Any) -> str:
    body = {"spec": {"compute": {"gpu_type": "H100"}}, "threshold": threshold, **extra}
    created = await service.alice.post("/price_alerts", json=body)
    assert created.status_code == 201, created.text
    return str(created.json()["alert_id"])


async def _round(service: Any) -> Any:
    return await evaluate_alerts(service.db, service.catalog, procure_for_alert, hysteresis=0.03, now=utcnow())


@pytest.mark.parametrize("service_backend", BACKENDS)
async def test_concurrent_workers_evaluate_each_alert_once(service: Any) -> None:
    await service.catalog.refresh()
    cheapest = await cheapest_h100(service)
    alert_id = await _alert(service, cheapest["price"] + 0.01, then="procure", procure={"ssh_public_key": SSH_KEY})
    # Two workers' rounds at once on the same refresh: the guarded update lets one fire.
    rounds = await asyncio.gather(_round(service), _round(service), _round(service))
    assert sum(len(r.fired) for r in rounds) == 1
    (firing,) = await firings(service, alert_id)
    async with service.db.session() as session:
        resources = (await session.execute(select(Resource.id))).scalars().all()
    assert [str(r) for r in resources] == [firing["resource_id"]]
    assert all(len(r.fired) == 0 for r in [await _round(service)])  # the same refresh again: nothing to do


async def test_price_above_after_the_hysteresis_and_below_again(service: Any) -> None:
    await service.catalog.refresh()
    price = (await cheapest_h100(service))["price"]
    alert_id = await _alert(service, price)  # at the threshold: below
    assert [f for _, f in (await _round(service)).fired] == ["price.below"]

    async def move_threshold(value: float) -> None:
        async with service.db.transaction() as session:
            await session.execute(update(PriceAlert).where(PriceAlert.id == uuid.UUID(alert_id)).values(threshold=value))
        await service.catalog.refresh()  # a new refresh: the alert is due again

    await move_threshold(price / 1.02)  # the price is 2 % over it: inside the 3 % hysteresis
    assert (await _round(service)).fired == []
    await move_threshold(price / 1.05)  # 5 % over: back above
    assert [f for _, f in (await _round(service)).fired] == ["price.above"]
    await move_threshold(price + 1)
    assert [f for _, f in (await _round(service)).fired] == ["price.below"]
    assert [f["event_type"] for f in await firings(service, alert_id)] == ["price.below", "price.above", "price.below"]


async def test_a_buy_below_order_respects_the_budget_and_its_max_count(service: Any) -> None:
    await service.catalog.refresh()
    price = (await cheapest_h100(service))["price"]
    assert (await service.alice.put("/budget", json={"max_hourly_spend": 0.01})).status_code == 200
    alert_id = await _alert(service, price + 0.5, then="procure", procure={"ssh_public_key": SSH_KEY, "max_count": 1})
    assert len((await _round(service)).fired) == 1
    (refused,) = await firings(service, alert_id)
    assert refused["resource_id"] is None and refused["note"].startswith("not procured:") and "0.01" in refused["note"]
    async with service.db.session() as session:
        assert (await session.execute(select(Resource.id))).first() is None

    # With room in the budget the next crossing procures; the one after that is past max_count.
    assert (await service.alice.put("/budget", json={})).status_code == 200
    for threshold in (price / 2, price + 0.5, price / 2, price + 0.5):
        async with service.db.transaction() as session:
            await session.execute(update(PriceAlert).where(PriceAlert.id == uuid.UUID(alert_id)).values(threshold=threshold))
        await service.catalog.refresh()
        await _round(service)
    below = [f for f in await firings(service, alert_id) if f["event_type"] == "price.below"]
    assert [f["resource_id"] is not None for f in reversed(below)] == [False, True, False]
    assert "max_count of 1" in below[0]["note"]
    async with service.db.session() as session:
        assert len((await session.execute(select(PriceAlertFiring))).all()) == 5
        assert len((await session.execute(select(Resource.id))).all()) == 1
