"""Request builders: paths, parameters, bodies and headers for every route (pure)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

import pydantic
import pytest

from gpusupply.client import calls
from gpusupply.client.flows import IDEMPOTENCY_HEADER
from gpusupply.contract.cost import AutoDeleteIn, BudgetIn, ResourcePatch

RID = uuid.UUID("9c0ea45f-1c4a-4150-9ad1-87a35a4aca89")


@pytest.mark.parametrize(
    ("call", "method", "path", "params"),
    [
        (calls.available_gpus(), "GET", "/available_gpus", {}),
        (calls.available_vendors(), "GET", "/available_vendors", {}),
        (calls.get_offer(str(RID)), "GET", f"/offers/{RID}", {}),
        (calls.get_offer_status(RID), "GET", f"/offers/{RID}/status", {}),
        (calls.list_resources(), "GET", "/resources", {"limit": "100", "offset": "0"}),
        (calls.list_resources(status="running", vendor="vast", offer_id=str(RID), limit=5, offset=10), "GET",
         "/resources", {"status": "running", "vendor": "vast", "offer_id": str(RID), "limit": "5", "offset": "10"}),
        (calls.get_resource(RID), "GET", f"/resources/{RID}", {}),
        (calls.get_resource(RID, force_refresh=True), "GET", f"/resources/{RID}", {"force_refresh": "true"}),
        (calls.delete_resource(RID), "DELETE", f"/resources/{RID}", {}),
        (calls.delete_resource(RID, force=True), "DELETE", f"/resources/{RID}", {"force": "true"}),
        (calls.resource_action(RID, "reboot"), "POST", f"/resources/{RID}/reboot", {}),
        (calls.list_events(RID, limit=3), "GET", f"/resources/{RID}/events", {"limit": "3", "offset": "0"}),
        (calls.health(), "GET", "/healthz", {}),
        (calls.usage(), "GET", "/usage", {"format": "json"}),
        (calls.usage(start=date(2026, 11, 1), end=datetime(2026, 11, 2, 12, tzinfo=UTC), group_by=["day", "vendor"],
                     tenant="ops"), "GET", "/usage",
         {"from": "2026-11-01", "to": "2026-11-02T12:00:00+00:00", "group_by": "day,vendor", "tenant": "ops",
          "format": "json"}),
        (calls.usage_csv(group_by="tenant"), "GET", "/usage", {"group_by": "tenant", "format": "csv"}),
        (calls.get_budget(), "GET", "/budget", {}),
        (calls.get_budget("bob"), "GET", "/budget", {"tenant": "bob"}),
        (calls.list_webhooks(), "GET", "/webhooks", {}),
        (calls.get_webhook(RID), "GET", f"/webhooks/{RID}", {}),
        (calls.delete_webhook(RID), "DELETE", f"/webhooks/{RID}", {}),
        (calls.list_deliveries(RID, status="failed"), "GET", f"/webhooks/{RID}/deliveries",
         {"status": "failed", "limit": "100", "offset": "0"}),
        (calls.readiness(), "GET", "/readyz", {}),
    ],
)
def test_routes(call: calls.Call, method: str, path: str, params: dict[str, str]) -> None:  # type: ignore[type-arg]
    assert (call.request.method, call.request.path, call.request.params) == (method, path, params)


def test_offer_search_sends_the_document_as_json() -> None:
    query = calls.offers_query("H100", gpu_count=8, max_price_per_gpu_hour=3, region="EU", contract_type="spot", vendor="vast")
    call = calls.get_offers(query, limit=20, offset=40)
    assert call.request.json == {
        "compute": {"gpu_type": "H100", "gpu_count": 8, "max_price_per_gpu_hour": 3.0, "contract_type": "spot"},
        "vendor": "vast",
        "region": "EU",
    }
    assert call.request.params == {"limit": "20", "offset": "40"}
    assert calls.get_offers(calls.offers_query("A100")).request.json == {"compute": {"gpu_type": "A100", "gpu_count": 1}}


@pytest.mark.parametrize(
    "bad",
    [{"gpu_count": 0}, {"max_price_per_gpu_hour": -1}, {"contract_type": "reserved"}],
)
def test_offer_queries_are_validated_before_sending(bad: dict[str, object]) -> None:
    with pytest.raises(pydantic.ValidationError):
        calls.offers_query("H100", **bad)  # type: ignore[arg-type]


def test_vendor_names_go_to_the_server_as_given() -> None:
    """The SDK keeps no vendor list: the server answers an unknown vendor with a 422 naming its
    vendors (tests/client/test_client.py)."""
    assert calls.get_offers(calls.offers_query("H100", vendor="aws")).request.json["vendor"] == "aws"


def test_procure_carries_its_idempotency_key() -> None:
    body = calls.ProcureRequest(offer_id=RID, ssh_public_key="ssh-ed25519 AAAA me")
    call = calls.procure(body, idempotency_key="train-1")
    assert call.request.headers == {IDEMPOTENCY_HEADER: "train-1"} and call.request.repeatable
    assert call.request.json == {"offer_id": str(RID), "ssh_public_key": "ssh-ed25519 AAAA me"}


@pytest.mark.parametrize("bad", ["nope", "../keys", "", "9c0ea45f-1c4a-4150-9ad1"])
def test_ids_must_be_uuids(bad: str) -> None:
    with pytest.raises(ValueError, match="must be a UUID"):
        calls.get_resource(bad)


def test_unknown_actions_are_refused() -> None:
    with pytest.raises(ValueError, match="start, stop, reboot"):
        calls.resource_action(RID, "explode")  # type: ignore[arg-type]


def test_budget_is_put_whole_and_may_be_repeated() -> None:
    call = calls.put_budget(BudgetIn(monthly_budget=300), tenant="bob")
    assert (call.request.method, call.request.params) == ("PUT", {"tenant": "bob"})
    assert call.request.json == {"max_hourly_spend": None, "monthly_budget": 300.0, "delete_on_exhaustion": False}
    assert call.request.repeatable


def test_auto_delete_patch_sends_only_what_was_set() -> None:
    call = calls.update_resource(RID, ResourcePatch(auto_delete=AutoDeleteIn(ttl_seconds=3600, spend_limit=None)))
    assert (call.request.method, call.request.path) == ("PATCH", f"/resources/{RID}")
    assert call.request.json == {"auto_delete": {"ttl_seconds": 3600, "spend_limit": None}}
    assert calls.update_resource(RID, ResourcePatch(auto_delete=None)).request.json == {"auto_delete": None}
    assert not call.request.repeatable


def test_csv_answers_are_text() -> None:
    import httpx

    call = calls.usage_csv()
    assert call.parse(httpx.Response(200, text="vendor,cost\nvast,1.5\n")) == "vendor,cost\nvast,1.5\n"
