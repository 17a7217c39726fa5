"""POST /get_offers (YAML and JSON) and GET /offers/{id}, against the sandbox vendors."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from gpusupply.db.models import OfferRow, utcnow
from tests.api.helpers import YAML, search
from tests.conftest import SSH_KEY, migrated_url, start_service

DOC = "compute:\n  gpu_type: H100\n"


async def test_yaml_search_sorted_by_price(service: Any) -> None:
    body = await search(service.alice, "compute:\n  gpu_type: RTX4090\n  gpu_count: 1\n")
    offers = body["offers"]
    assert offers and body["total_count"] >= len(offers)
    assert body["filters_applied"] == {"gpu_family": "RTX4090", "gpu_count": 1}
    assert body["partial"] is False and body["failed_vendors"] == {}
    prices = [(o["gpu_price_per_hour"], o["total_price_per_hour"]) for o in offers]
    assert prices == sorted(prices)
    for offer in offers:
        uuid.UUID(offer["offer_id"])
        assert offer["gpu_family"] == "RTX4090" and offer["gpu_count"] == 1 and offer["type"] == "vm"
        assert datetime.fromisoformat(offer["expires_at"]) > datetime.fromisoformat(offer["created_at"])
        assert offer["region"] in ("US", "EU", "APAC", "Other")


@pytest.mark.parametrize("content_type", ["application/yaml", "application/x-yaml", "text/yaml", "application/json"])
async def test_media_types(service: Any, content_type: str) -> None:
    document = {"compute": {"gpu_type": "H100"}, "vendor": "nebula"}
    raw = json.dumps(document)  # JSON is also YAML
    response = await service.alice.post("/get_offers", content=raw, headers={"Content-Type": content_type})
    assert response.status_code == 200, response.text
    assert all(o["vendor"] == "nebula" for o in response.json()["offers"])


async def test_filters(service: Any) -> None:
    doc = "vendor: nebula\nregion: us\ncompute:\n  gpu_type: nvidia-h100-sxm5-80gb\n  gpu_count: 1\n  max_price_per_gpu_hour: 10\n  contract_type: ondemand\n"
    body = await search(service.alice, doc)
    assert body["filters_applied"] == {
        "gpu_type": "nvidia-h100-sxm5-80gb", "gpu_count": 1, "max_price_per_gpu_hour": 10.0,
        "contract_type": "ondemand", "vendor": "nebula", "region": "US",
    }
    for offer in body["offers"]:
        assert (offer["vendor"], offer["region"], offer["gpu_type"], offer["contract_type"]) == (
            "nebula", "US", "nvidia-h100-sxm5-80gb", "ondemand",
        )
        assert offer["gpu_price_per_hour"] <= 10


@pytest.mark.parametrize("spelling", ["RTX 4090", "rtx-4090", "RTX_4090", "4090", "GeForce RTX 4090"])
async def test_gpu_spellings_are_read_like_the_family(service: Any, spelling: str) -> None:
    canonical = await search(service.alice, "compute:\n  gpu_type: RTX4090\n", limit=1000)
    body = await search(service.alice, json.dumps({"compute": {"gpu_type": spelling}}), limit=1000)
    assert body["filters_applied"]["gpu_family"] == "RTX4090"
    assert [o["offer_id"] for o in body["offers"]] == [o["offer_id"] for o in canonical["offers"]]
    assert body["offers"]


async def test_unknown_gpu_names_get_a_did_you_mean(service: Any) -> None:
    response = await service.alice.post("/get_offers", content="compute:\n  gpu_type: RTX 4O90\n", headers=YAML)
    assert response.status_code == 422
    (problem,) = response.json()["detail"]
    assert problem["loc"] == ["body", "compute", "gpu_type"]
    assert problem["msg"].startswith("unknown gpu_type 'RTX 4O90'; known families:")
    assert problem["msg"].endswith("did you mean RTX4090, RTX5090 or RTX3090?")


async def busiest_family(service: Any) -> str:
    from collections import Counter

    from gpusupply.core.offers import OfferQuery

    offers = (await service.catalog.search(OfferQuery(gpu_count=1), limit=100_000)).offers
    return Counter(s.offer.gpu_family for s in offers).most_common(1)[0][0]


async def test_paging(service: Any) -> None:
    doc = f"compute:\n  gpu_type: {await busiest_family(service)}\n"
    everything = await search(service.alice, doc, limit=1000)
    assert everything["total_count"] >= 3
    first = await search(service.alice, doc, limit=2)
    second = await search(service.alice, doc, limit=2, offset=2)
    assert (first["limit"], first["offset"], second["offset"]) == (2, 0, 2)
    assert [o["offer_id"] for o in first["offers"] + second["offers"]] == [o["offer_id"] for o in everything["offers"][:4]]
    past = await search(service.alice, doc, offset=10_000)
    assert past["offers"] == [] and past["total_count"] == everything["total_count"]


@pytest.mark.parametrize(
    ("content", "headers", "params", "status", "needle"),
    [
        ("compute:\n  gpu_type: B300\n", YAML, {}, 422, "known families"),
        ("compute:\n  gpu_count: 2\n", YAML, {}, 422, "Field required"),
        ("compute: [", YAML, {}, 422, "invalid YAML"),
        ("a: &x [1]\nb: *x\n", YAML, {}, 422, "aliases"),
        ("{", {"Content-Type": "application/json"}, {}, 422, "invalid JSON"),
        ("", YAML, {}, 422, "empty"),
        ("- 1\n- 2\n", YAML, {}, 422, "mapping"),
        ("vendor: aws\ncompute:\n  gpu_type: H100\n", YAML, {}, 422, "vast"),
        ("region: Mars\ncompute:\n  gpu_type: H100\n", YAML, {}, 422, "region"),
        (DOC, {"Content-Type": "application/x-www-form-urlencoded"}, {}, 415, "application/yaml"),
        (DOC, YAML, {"limit": 0}, 422, "greater than or equal"),
        (DOC, YAML, {"limit": 100_000}, 422, "less than or equal"),
        (DOC, YAML, {"offset": -1}, 422, "greater than or equal"),
        (DOC, YAML, {"limit": "many"}, 422, "integer"),
        ("compute:\n  gpu_type: H100\n" + "# pad\n" * 12_000, YAML, {}, 413, "larger than 65536"),
        ("x" * 300_000, YAML, {}, 413, "larger than"),
    ],
)
async def test_bad_searches(service: Any, content: str, headers: dict, params: dict, status: int, needle: str) -> None:
    response = await service.alice.post("/get_offers", content=content, headers=headers, params=params)
    assert response.status_code == status, response.text
    assert needle in response.text
    detail = response.json()["detail"]
    if status == 422:
        assert isinstance(detail, list) and all({"loc", "msg", "type"} <= set(d) for d in detail)
    else:
        assert isinstance(detail, str)


async def test_yaml_bomb_is_a_fast_4xx(service: Any) -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        prev, cur = chr(96 + i), chr(97 + i)
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    lines.append("compute:\n  gpu_type: *j")
    response = await service.alice.post("/get_offers", content="\n".join(lines), headers=YAML)
    assert response.status_code == 422 and "aliases" in response.text


async def test_chunked_body_over_the_limit(service: Any) -> None:
    async def chunks() -> Any:
        for _ in range(40):
            yield b"#" * 10_000 + b"\n"

    response = await service.alice.post("/get_offers", content=chunks(), headers=YAML)
    assert response.status_code == 413


async def test_a_failing_vendor_gives_partial_results(vendor_set: Any, test_settings: Any, request: Any) -> None:
    # Nebula answers 503 to everything: its catalog fails once the adapter's retries are spent (a few
    # seconds of backoff at most). The timeout is generous so that a slow machine does not fail the others.
    vendor_set.sandboxes["nebula"].faults.faults = {"503": 1.0}
    settings = test_settings.model_copy(
        update={"offer_fetch_timeout": 30.0, "database_url": migrated_url("sqlite", request)}
    )
    async with start_service(settings, vendors=vendor_set) as svc:
        body = await search(svc.alice, "compute:\n  gpu_type: H100\n", limit=1000)
        assert body["partial"] is True and set(body["failed_vendors"]) == {"nebula"}
        assert body["offers"] and all(o["vendor"] != "nebula" for o in body["offers"])
        vendors = {v["id"]: v for v in (await svc.alice.get("/available_vendors")).json()}
        assert vendors["nebula"]["catalog"]["error"] and vendors["nebula"]["catalog"]["offers"] == 0
        # A procurement by spec that only the unreadable vendor could serve: not refused as empty, a 503.
        spec = {"spec": {"compute": {"gpu_type": "H100"}, "vendor": "nebula"}, "ssh_public_key": SSH_KEY}
        unreadable = await svc.alice.post("/procure_offer", json=spec)
        assert unreadable.status_code == 503 and unreadable.headers["Retry-After"] == "30"
        assert "some vendors' offers cannot be read now (nebula: " in unreadable.json()["detail"]


async def test_get_offer(service: Any) -> None:
    offer = (await search(service.alice, DOC, limit=1))["offers"][0]
    response = await service.bob.get(f"/offers/{offer['offer_id']}")  # market data: any tenant
    assert response.status_code == 200
    details = response.json()
    assert details["status"] == "available" and details["procured_at"] is None
    for field in ("offer_id", "gpu_type", "gpu_family", "gpu_count", "vendor", "region", "gpu_price_per_hour", "expires_at"):
        assert details[field] == offer[field]
    async with service.db.transaction() as session:
        await session.execute(update(OfferRow).where(OfferRow.id == uuid.UUID(offer["offer_id"])).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert (await service.alice.get(f"/offers/{offer['offer_id']}")).json()["status"] == "expired"


async def test_an_expired_offer_is_404_after_one_more_validity_period(service: Any) -> None:
    """docs/api.md: 200 "expired" for one validity period after expires_at, then 404; the time is
    the catalog's clock, moved by the test (no cleanup runs meanwhile: nobody searches)."""
    offer = (await search(service.alice, DOC, limit=1))["offers"][0]
    expires_at = datetime.fromisoformat(offer["expires_at"].replace("Z", "+00:00"))
    validity = timedelta(seconds=service.settings.offer_validity_seconds)
    answers = []
    for now in (expires_at + validity / 2, expires_at + 2 * validity + timedelta(hours=1)):
        service.catalog.clock = lambda now=now: now
        response = await service.alice.get(f"/offers/{offer['offer_id']}")
        answers.append((response.status_code, response.json().get("status") or response.json()["detail"]))
    assert answers == [
        (200, "expired"),
        (404, f"offer {offer['offer_id']} not found (unknown, or expired and cleaned up)"),
    ]


async def test_get_offer_errors(service: Any) -> None:
    response = await service.alice.get(f"/offers/{uuid.uuid4()}")
    assert response.status_code == 404 and "not found" in response.json()["detail"]
    response = await service.alice.get("/offers/not-a-uuid")
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["path", "offer_id"]


def test_the_spliced_search_answer_is_what_pydantic_would_write() -> None:
    """views.offers_response_json (pre-rendered offers) == OffersResponse with the offers set."""
    from datetime import UTC, datetime, timedelta
    from uuid import uuid4

    from gpusupply.api.views import offer_out, offers_response_json
    from gpusupply.contract import schemas
    from gpusupply.core.offers import Offer
    from gpusupply.domain.catalog import StoredOffer

    now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    offers = [
        StoredOffer(uuid4(), Offer(vendor="vast", vendor_offer_id=str(i), gpu_type="nvidia-h100-sxm5-80gb", gpu_family="H100",
                                   gpu_count=1, gpu_memory_gb=80.0, gpu_price_per_hour=1.5 + i, total_price_per_hour=1.5 + i,
                                   contract_type="ondemand", vendor_region="Texas, US", region="US", fetched_at=now,
                                   disk_gb=40.0 if i else None),
                    now + timedelta(minutes=30), "available")
        for i in range(3)
    ]
    rest = schemas.OffersResponse(offers=[], total_count=3, filters_applied={"gpu_type": "H100"}, limit=100, offset=0,
                                  partial=False, failed_vendors={})
    whole = rest.model_copy(update={"offers": [offer_out(s) for s in offers]})
    assert offers_response_json(rest, offers) == whole.model_dump_json().encode()
    assert offers_response_json(rest, []) == rest.model_dump_json().encode()
    assert offers[0].rendered is not None  # rendered once, kept for the next search
