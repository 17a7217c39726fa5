"""Prices over HTTP: the history every catalog refresh writes, the cheapest per market now with its
change, the bounds and refusals, and price alerts' CRUD and tenancy (firing: tests/engine)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from gpusupply.core.prices import Market, PricePoint
from gpusupply.db.models import utcnow
from gpusupply.domain.price_history import add_points
from tests.conftest import SSH_KEY

H100_1 = {"gpu_type": "H100", "gpu_count": 1}


async def test_every_refresh_adds_a_point_per_market(service: Any) -> None:
    await service.catalog.refresh()
    await service.catalog.refresh()
    response = await service.alice.get("/prices/history", params={"gpu_type": "H100", "step": "5m"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["step"] == "5m" and body["step_seconds"] == 300 and body["filters"] == {"gpu_family": "H100"}
    vendors = {s["vendor"] for s in body["series"]}
    assert vendors == set(service.vendors.adapters)  # every sandbox vendor lists H100s
    for series in body["series"]:
        assert series["contract_type"] in ("ondemand", "spot")
        for point in series["points"]:
            assert point["min"] <= point["median"] <= point["max"] and point["offers"] > 0
    # The same refreshes per (vendor, contract) as the catalog's cheapest: the series agree with a search.
    now = (await service.alice.get("/prices/now", params=H100_1)).json()
    cheapest_now = min(m["price"] for m in now["markets"])
    one_gpu = (await service.alice.get("/prices/history", params={**H100_1, "step": "1h", "across_vendors": "true"})).json()
    assert {s["vendor"] for s in one_gpu["series"]} == {None}
    assert min(p["min"] for s in one_gpu["series"] for p in s["points"]) == cheapest_now


async def test_now_shows_the_cheapest_per_market_and_its_change(service: Any) -> None:
    await service.catalog.refresh()
    first = (await service.alice.get("/prices/now", params=H100_1)).json()
    assert first["markets"] and not first["partial"]
    prices = [m["price"] for m in first["markets"]]
    assert prices == sorted(prices)
    assert all(m["change_24h"] is None and m["change_7d"] is None for m in first["markets"])  # no history back then
    cheapest = first["markets"][0]
    offer = (await service.alice.get(f"/offers/{cheapest['offer_id']}")).json()
    assert offer["gpu_count"] == 1 and offer["gpu_price_per_hour"] == cheapest["price"]
    # What the market cost a day and a week ago, as the history has it.
    market = Market(cheapest["vendor"], cheapest["gpu_type"], cheapest["gpu_family"], 1, cheapest["region"], cheapest["contract_type"])
    then = cheapest["price"] * 1.25
    async with service.db.transaction() as session:
        await add_points(session, [
            PricePoint(market, utcnow() - timedelta(days=1, minutes=10), then, then, then, 1),
            PricePoint(market, utcnow() - timedelta(days=7, minutes=10), cheapest["price"] / 2, then, then, 1),
        ])
    row = next(m for m in (await service.alice.get("/prices/now", params=H100_1)).json()["markets"] if m["offer_id"] == cheapest["offer_id"])
    assert row["change_24h"]["then"] == then
    assert row["change_24h"]["change_pct"] == pytest.approx(-20.0)
    assert row["change_7d"]["change_pct"] == pytest.approx(100.0)


@pytest.mark.parametrize(
    ("params", "field", "fragment"),
    [
        ({"gpu_type": "Z9000"}, "gpu_type", "Z9000"),
        ({"gpu_type": "H100", "region": "Mars"}, "region", "unknown region"),
        ({"gpu_type": "H100", "vendor": "acme"}, "vendor", "unknown vendor"),
        ({"gpu_type": "H100", "contract_type": "reserved"}, "contract_type", "ondemand or spot"),
        ({"gpu_type": "H100", "gpu_count": 0}, "gpu_count", "between 1 and 1024"),
        ({"gpu_type": "H100", "since": "365d", "step": "5m"}, "step", "at most 2000"),
        ({"gpu_type": "H100", "step": "10s"}, "step", "at least 1m"),
        ({"gpu_type": "H100", "since": "yesterday"}, "since", "ISO 8601"),
        ({"gpu_type": "H100", "since": "1h", "until": "2h"}, "since", "must be before"),
    ],
)
async def test_bad_history_queries_are_422s_naming_the_parameter(service: Any, params: dict[str, Any], field: str, fragment: str) -> None:
    response = await service.alice.get("/prices/history", params=params)
    assert response.status_code == 422, response.text
    error = response.json()["detail"][0]
    assert error["loc"] == ["query", field] and fragment in error["msg"]


async def test_prices_need_a_key_and_a_gpu(service: Any) -> None:
    assert (await service.anonymous.get("/prices/history", params={"gpu_type": "H100"})).status_code == 401
    assert (await service.anonymous.get("/prices/now", params={"gpu_type": "H100"})).status_code == 401
    missing = await service.alice.get("/prices/now")
    assert missing.status_code == 422 and missing.json()["detail"][0]["loc"] == ["query", "gpu_type"]
    assert (await service.alice.get("/prices/now", params={"gpu_type": "nope"})).status_code == 422


# ----- alerts ----------------------------------------------------------------------------------------
ALERT = {"spec": {"compute": {"gpu_type": "h100"}, "region": "us"}, "threshold": 1.8, "name": "cheap H100"}


async def test_alerts_are_created_listed_read_and_deleted_per_tenant(service: Any) -> None:
    created = await service.alice.post("/price_alerts", json=ALERT)
    assert created.status_code == 201, created.text
    alert = created.json()
    assert alert["spec"] == {"compute": {"gpu_type": "H100", "gpu_count": 1}, "region": "US"}  # normalized
    assert (alert["state"], alert["then"], alert["procure"], alert["procured_count"]) == ("new", "notify", None, 0)
    assert alert["firings_url"] == f"/price_alerts/{alert['alert_id']}/firings"
    listed = (await service.alice.get("/price_alerts")).json()["alerts"]
    assert [a["alert_id"] for a in listed] == [alert["alert_id"]]
    assert (await service.bob.get("/price_alerts")).json()["alerts"] == []
    assert (await service.bob.get(f"/price_alerts/{alert['alert_id']}")).status_code == 404
    assert (await service.bob.delete(f"/price_alerts/{alert['alert_id']}")).status_code == 404
    assert (await service.bob.get(f"/price_alerts/{alert['alert_id']}/firings")).status_code == 404
    assert (await service.alice.get(f"/price_alerts/{alert['alert_id']}/firings")).json() == {"firings": []}
    deleted = await service.alice.delete(f"/price_alerts/{alert['alert_id']}")
    assert deleted.status_code == 200 and deleted.json()["deleted"] is True
    assert (await service.alice.get(f"/price_alerts/{alert['alert_id']}")).status_code == 404


async def test_a_buy_below_order_keeps_its_procurement_fields(service: Any) -> None:
    body = {**ALERT, "then": "procure", "procure": {"ssh_public_key": SSH_KEY, "auto_delete": {"ttl_seconds": 3600}, "max_count": 2}}
    created = await service.alice.post("/price_alerts", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["then"] == "procure"
    assert created.json()["procure"] == {
        "ssh_public_key": SSH_KEY, "cloud_init": None, "resource_name": None, "auto_delete": {"ttl_seconds": 3600}, "max_count": 2,
    }


@pytest.mark.parametrize(
    ("change", "loc", "fragment"),
    [
        ({"then": "procure"}, ["body", "procure"], "needs procure"),
        ({"procure": {"ssh_public_key": SSH_KEY}}, ["body", "procure"], "only for then: procure"),
        ({"then": "procure", "procure": {"ssh_public_key": "ssh-rsa nope"}}, ["body", "ssh_public_key"], "not a valid OpenSSH"),
        ({"then": "procure", "procure": {"ssh_public_key": SSH_KEY, "auto_delete": {"delete_at": "2030-01-01T00:00:00Z"}}},
         ["body", "procure", "auto_delete", "delete_at"], "ttl_seconds"),
        ({"then": "procure", "procure": {"ssh_public_key": SSH_KEY, "max_count": 0}}, ["body", "procure", "max_count"], "greater than or equal to 1"),
        ({"threshold": 0}, ["body", "threshold"], "greater than 0"),
        ({"spec": {"compute": {"gpu_type": "Z9000"}}}, ["body", "spec", "compute", "gpu_type"], "Z9000"),
        ({"spec": {"compute": {"gpu_type": "H100"}, "vendor": "acme"}}, ["body", "spec", "vendor"], ""),
        ({"spec": {"compute": {"gpu_type": "H100"}, "region": "Mars"}}, ["body", "spec", "region"], "unknown region"),
    ],
)
async def test_bad_alerts_are_422s(service: Any, change: dict[str, Any], loc: list[str], fragment: str) -> None:
    response = await service.alice.post("/price_alerts", json={**ALERT, **change})
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert any(e["loc"] == loc and fragment in e["msg"] for e in errors), errors


async def test_a_tenant_has_at_most_a_hundred_alerts(service: Any) -> None:
    from gpusupply.services.prices import MAX_ALERTS_PER_TENANT

    for _ in range(MAX_ALERTS_PER_TENANT):
        assert (await service.alice.post("/price_alerts", json=ALERT)).status_code == 201
    refused = await service.alice.post("/price_alerts", json=ALERT)
    assert refused.status_code == 409 and "at most 100" in refused.json()["detail"]
    assert (await service.bob.post("/price_alerts", json=ALERT)).status_code == 201
