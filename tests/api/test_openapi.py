"""The OpenAPI document lists every route with every status code it can answer."""

from __future__ import annotations

from typing import Any

import pytest

AUTH = {"401", "503"}  # every authenticated route: bad key; database unavailable
EXPECTED: dict[tuple[str, str], set[str]] = {
    ("get", "/healthz"): {"200"},
    ("get", "/readyz"): {"200", "503"},
    ("get", "/available_gpus"): {"200"} | AUTH,
    ("get", "/available_vendors"): {"200"} | AUTH,
    ("get", "/available_regions"): {"200"} | AUTH,
    ("get", "/available_contracts"): {"200"} | AUTH,
    ("post", "/get_offers"): {"200", "413", "415", "422"} | AUTH,
    ("get", "/offers/{offer_id}"): {"200", "404", "422"} | AUTH,
    ("get", "/offers/{offer_id}/status"): {"200", "404", "422"} | AUTH,
    ("post", "/procure_offer"): {"200", "402", "404", "409", "410", "413", "415", "422"} | AUTH,
    ("get", "/resources"): {"200", "422"} | AUTH,
    ("get", "/resources/{resource_id}"): {"200", "404", "422"} | AUTH,
    ("delete", "/resources/{resource_id}"): {"200", "404", "409", "422"} | AUTH,
    ("post", "/resources/{resource_id}/stop"): {"202", "404", "409", "413", "415", "422"} | AUTH,
    ("post", "/resources/{resource_id}/start"): {"202", "404", "409", "413", "415", "422"} | AUTH,
    ("post", "/resources/{resource_id}/reboot"): {"202", "404", "409", "413", "415", "422"} | AUTH,
    ("get", "/resources/{resource_id}/events"): {"200", "404", "422"} | AUTH,
    # Cost guardrails and webhooks (docs/cost.md).
    ("patch", "/resources/{resource_id}"): {"200", "404", "409", "413", "415", "422"} | AUTH,
    ("get", "/usage"): {"200", "404", "422"} | AUTH,
    ("get", "/budget"): {"200", "404", "422"} | AUTH,
    ("put", "/budget"): {"200", "404", "413", "415", "422"} | AUTH,
    ("post", "/webhooks"): {"201", "409", "413", "415", "422"} | AUTH,
    ("get", "/webhooks"): {"200"} | AUTH,
    ("get", "/webhooks/{webhook_id}"): {"200", "404", "422"} | AUTH,
    ("delete", "/webhooks/{webhook_id}"): {"200", "404", "422"} | AUTH,
    ("get", "/webhooks/{webhook_id}/deliveries"): {"200", "404", "422"} | AUTH,
    # Prices over time (docs/prices.md).
    ("get", "/prices/history"): {"200", "422"} | AUTH,
    ("get", "/prices/now"): {"200", "422"} | AUTH,
    ("post", "/price_alerts"): {"201", "409", "413", "415", "422"} | AUTH,
    ("get", "/price_alerts"): {"200"} | AUTH,
    ("get", "/price_alerts/{alert_id}"): {"200", "404", "422"} | AUTH,
    ("delete", "/price_alerts/{alert_id}"): {"200", "404", "422"} | AUTH,
    ("get", "/price_alerts/{alert_id}/firings"): {"200", "404", "422"} | AUTH,
    # Fleets (docs/fleets.md).
    ("post", "/fleets"): {"201", "402", "409", "413", "415", "422"} | AUTH,
    ("get", "/fleets"): {"200", "422"} | AUTH,
    ("get", "/fleets/{fleet_id}"): {"200", "404", "422"} | AUTH,
    ("patch", "/fleets/{fleet_id}"): {"200", "402", "404", "409", "413", "415", "422"} | AUTH,
    ("delete", "/fleets/{fleet_id}"): {"200", "404", "409", "422"} | AUTH,
    ("get", "/fleets/{fleet_id}/events"): {"200", "404", "422"} | AUTH,
}


@pytest.fixture
async def spec(service: Any) -> dict[str, Any]:
    response = await service.anonymous.get("/openapi.json")
    assert response.status_code == 200
    return response.json()


async def test_every_route_documents_its_status_codes(spec: dict[str, Any]) -> None:
    documented = {
        (method, path): set(operation["responses"])
        for path, item in spec["paths"].items()
        for method, operation in item.items()
    }
    assert documented == EXPECTED


async def test_error_answers_have_schemas(spec: dict[str, Any]) -> None:
    for item in spec["paths"].values():
        for operation in item.values():
            for code, answer in operation["responses"].items():
                assert answer.get("description"), (operation["operationId"], code)
                assert "application/json" in answer.get("content", {}), (operation["operationId"], code)


async def test_yaml_body_and_bearer_auth_are_described(spec: dict[str, Any]) -> None:
    body = spec["paths"]["/get_offers"]["post"]["requestBody"]["content"]
    assert {"application/yaml", "application/x-yaml", "text/yaml", "application/json"} <= set(body)
    assert "OffersRequest" in spec["components"]["schemas"]
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert spec["paths"]["/resources"]["get"]["security"] == [{"HTTPBearer": []}]
