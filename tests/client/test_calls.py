"""Request builders: paths, parameters, bodies and headers for every route (pure)."""

from __future__ import annotations

import uuid

import pydantic
import pytest

from gpusupply.client import calls
from gpusupply.client.flows import IDEMPOTENCY_HEADER

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
    [{"gpu_count": 0}, {"max_price_per_gpu_hour": -1}, {"contract_type": "reserved"}, {"vendor": "aws"}],
)
def test_offer_queries_are_validated_before_sending(bad: dict[str, object]) -> None:
    with pytest.raises(pydantic.ValidationError):
        calls.offers_query("H100", **bad)  # type: ignore[arg-type]


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
