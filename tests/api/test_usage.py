"""GET /usage over HTTP (JSON and CSV, grouping, admin and tenant views, bad input) and the
`cost_so_far` of resources in GET /resources and GET /resources/{id}."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest

from gpusupply.services.keys import create_key
from tests.services.cost_helpers import LIFE, LIFE_RUNNING_HOURS, LIFE_STOPPED_HOURS, at, make_resource

PERIOD = {"from": at(-1).isoformat(), "to": at(10).isoformat()}


async def _history(service: Any) -> dict[str, Any]:
    """Alice: a Nebula (2 GPUs) and a Vast resource through LIFE; Bob: a fal resource billed 3 hours."""
    alice, bob = service.tenants["alice"].tenant_id, service.tenants["bob"].tenant_id
    return {
        "nebula": await make_resource(service.db, alice, vendor="nebula", price=2.0, gpu_count=2, history=LIFE),
        "vast": await make_resource(service.db, alice, vendor="vast", price=1.0, storage_per_hour=0.1, gpu_family="A100", history=LIFE),
        "fal": await make_resource(service.db, bob, vendor="fal", price=5.0, gpu_family="B200",
                                   history=[(0, "provisioning"), (1, "running"), (3, "deleting"), (4, "deleted")]),
    }


NEBULA_COST = (LIFE_RUNNING_HOURS + LIFE_STOPPED_HOURS) * 2.0
VAST_COST = LIFE_RUNNING_HOURS * 1.0 + LIFE_STOPPED_HOURS * 0.1


async def test_usage_json_grouped_by_vendor(service: Any) -> None:
    await _history(service)
    response = await service.alice.get("/usage", params={**PERIOD, "group_by": "vendor"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["from"], body["to"], body["group_by"], body["currency"], body["tenants"]) == (
        "2026-11-10T07:00:00Z", "2026-11-10T18:00:00Z", ["vendor"], "USD", ["alice"]
    )
    rows = {r["group"]["vendor"]: r for r in body["rows"]}
    assert set(rows) == {"nebula", "vast"}  # bob's fal resource is not alice's
    assert rows["nebula"]["cost"] == pytest.approx(NEBULA_COST, abs=1e-5)
    assert rows["nebula"]["gpu_hours"] == pytest.approx(LIFE_RUNNING_HOURS * 2, abs=1e-5)
    assert rows["vast"]["cost"] == pytest.approx(VAST_COST, abs=1e-5)
    assert rows["vast"]["stopped_hours"] == pytest.approx(LIFE_STOPPED_HOURS, abs=1e-5)
    assert body["total_cost"] == pytest.approx(NEBULA_COST + VAST_COST, abs=1e-5)


async def test_usage_csv_by_accept_header_and_by_format(service: Any) -> None:
    await _history(service)
    by_header = await service.alice.get("/usage", params={**PERIOD, "group_by": "day,gpu_family"}, headers={"Accept": "text/csv"})
    by_format = await service.alice.get("/usage", params={**PERIOD, "group_by": "day,gpu_family", "format": "csv"})
    for response in (by_header, by_format):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/csv")
        assert response.headers["content-disposition"] == 'attachment; filename="gpusupply-usage-20261110-20261110.csv"'
    assert by_header.text == by_format.text
    table = list(csv.reader(io.StringIO(by_header.text)))
    assert table[0] == ["day", "gpu_family", "cost_usd", "running_hours", "stopped_hours", "gpu_hours", "resources"]
    assert [row[:2] for row in table[1:]] == [["2026-11-10", "A100"], ["2026-11-10", "H100"]]
    assert float(table[2][2]) == pytest.approx(NEBULA_COST, abs=1e-5)
    as_json = await service.alice.get("/usage", params={**PERIOD, "format": "json"}, headers={"Accept": "text/csv"})
    assert as_json.headers["content-type"].startswith("application/json")


async def test_admin_sees_every_tenant_and_tenants_only_their_own(service: Any) -> None:
    await _history(service)
    _, token = await create_key(service.db, "ops-key", tenant="ops", admin=True)
    async with service.client(token) as admin:
        everyone = (await admin.get("/usage", params={**PERIOD, "group_by": "tenant"})).json()
        assert {r["group"]["tenant"]: r["resources"] for r in everyone["rows"]} == {"alice": 2, "bob": 1}
        assert {r["group"]["tenant"]: r["cost"] for r in everyone["rows"]}["bob"] == pytest.approx(3 * 5.0)  # billed until the vendor confirmed
        assert set(everyone["tenants"]) >= {"alice", "bob", "ops"}
        bob = (await admin.get("/usage", params={**PERIOD, "tenant": "bob"})).json()
        assert [r["group"] for r in bob["rows"]] == [{"vendor": "fal"}] and bob["tenants"] == ["bob"]
        assert (await admin.get("/usage", params={"tenant": "nobody"})).status_code == 404
    refused = await service.alice.get("/usage", params={"tenant": "bob"})
    assert refused.status_code == 404 and refused.json() == {"detail": "tenant 'bob' not found"}
    own = await service.alice.get("/usage", params={**PERIOD, "tenant": "alice", "group_by": "tenant"})
    assert [r["group"] for r in own.json()["rows"]] == [{"tenant": "alice"}]


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"group_by": "region"}, "group_by: unknown key(s) 'region'"),
        ({"from": "last week"}, "from must be an ISO 8601 date or time"),
        ({"from": "2026-11-02", "to": "2026-11-01"}, "must be before to"),
        ({"from": "2024-01-01", "to": "2026-01-01"}, "at most 366 days"),
        ({"format": "xml"}, "Input should be 'json' or 'csv'"),
    ],
)
async def test_usage_refuses_bad_input(service: Any, params: dict[str, str], fragment: str) -> None:
    response = await service.alice.get("/usage", params=params)
    assert response.status_code == 422
    assert fragment in response.json()["detail"][0]["msg"]


async def test_usage_defaults_to_this_month_and_needs_a_key(service: Any) -> None:
    body = (await service.alice.get("/usage")).json()
    assert body["from"].endswith("-01T00:00:00Z") and body["rows"] == [] and body["total_cost"] == 0
    assert (await service.anonymous.get("/usage")).status_code == 401


async def test_resources_show_cost_so_far(service: Any) -> None:
    ids = await _history(service)
    listed = (await service.alice.get("/resources")).json()["resources"]
    costs = {r["resource_id"]: r["cost_so_far"] for r in listed}
    assert costs[str(ids["nebula"])] == pytest.approx(NEBULA_COST, abs=1e-5)
    assert costs[str(ids["vast"])] == pytest.approx(VAST_COST, abs=1e-5)
    detail = (await service.bob.get(f"/resources/{ids['fal']}")).json()
    assert detail["cost_so_far"] == pytest.approx(15.0, abs=1e-5)
    assert detail["auto_delete"] is None
    pending = await make_resource(service.db, service.tenants["alice"].tenant_id)
    assert (await service.alice.get(f"/resources/{pending}")).json()["cost_so_far"] == 0.0
