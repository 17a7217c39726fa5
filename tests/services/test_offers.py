"""Reading and validating the get_offers document: every bad input is a clear 4xx, never a crash."""

from __future__ import annotations

import json

import pytest

from gpusupply.core.errors import PayloadTooLarge, UnprocessableError, UnsupportedMediaType
from gpusupply.core.offers import OfferQuery
from gpusupply.services.offers import (
    MAX_DOCUMENT_BYTES,
    filters_applied,
    normalized_document,
    parse_offer_query,
    read_document,
)

YAML = "application/yaml"


@pytest.mark.parametrize("content_type", [YAML, "application/x-yaml", "text/yaml", "text/yaml; charset=utf-8", None, "text/plain"])
def test_yaml_media_types(content_type: str | None) -> None:
    assert read_document(b"compute:\n  gpu_type: H100\n", content_type) == {"compute": {"gpu_type": "H100"}}


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8", "application/vnd.x+json"])
def test_json_media_types(content_type: str) -> None:
    assert read_document(b'{"compute": {"gpu_type": "H100"}}', content_type) == {"compute": {"gpu_type": "H100"}}


@pytest.mark.parametrize(
    ("raw", "content_type", "error", "needle"),
    [
        (b"x" * (MAX_DOCUMENT_BYTES + 1), YAML, PayloadTooLarge, "larger than"),
        (b"compute: {}", "application/x-www-form-urlencoded", UnsupportedMediaType, "application/yaml"),
        (b"compute: {}", "multipart/form-data", UnsupportedMediaType, "Content-Type"),
        (b"", YAML, UnprocessableError, "empty"),
        (b"  \n ", YAML, UnprocessableError, "empty"),
        (b"\xff\xfe", YAML, UnprocessableError, "UTF-8"),
        (b"compute: [unclosed", YAML, UnprocessableError, "invalid YAML"),
        (b"{bad json", "application/json", UnprocessableError, "invalid JSON"),
        (b"a: &x 1\nb: *x\n", YAML, UnprocessableError, "anchors and aliases"),
        (b"a: &x 1\n", YAML, UnprocessableError, "anchors and aliases"),
        (b"!!python/object/apply:os.system ['echo hi']", YAML, UnprocessableError, "invalid YAML"),
        (b"a: 1\n---\nb: 2\n", YAML, UnprocessableError, "invalid YAML"),
        (b"[" * 5000 + b"]" * 5000, YAML, UnprocessableError, "nested deeper"),
        (b"[" * 100_000 + b"]" * 100_000, YAML, PayloadTooLarge, "larger than"),
        (b"[" * 30_000 + b"]" * 30_000, "application/json", UnprocessableError, "invalid JSON"),
    ],
)
def test_bad_bodies(raw: bytes, content_type: str, error: type[Exception], needle: str) -> None:
    with pytest.raises(error) as caught:
        read_document(raw, content_type)
    message = json.dumps(getattr(caught.value, "errors", None)) + str(caught.value)
    assert needle in message


def test_billion_laughs_is_refused_fast() -> None:
    bomb = "\n".join(
        ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
        + [f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)}]" for i in range(9)]
    )
    with pytest.raises(UnprocessableError):
        read_document(bomb.encode(), YAML)


@pytest.mark.parametrize(
    ("document", "query"),
    [
        ({"compute": {"gpu_type": "H100"}}, OfferQuery(gpu_family="H100", gpu_count=1)),
        ({"compute": {"gpu_type": "h100", "gpu_count": 8}}, OfferQuery(gpu_family="H100", gpu_count=8)),
        (
            {"compute": {"gpu_type": "nvidia-a100-pcie-40gb", "max_price_per_gpu_hour": 1}},
            OfferQuery(gpu_canonical="nvidia-a100-pcie-40gb", gpu_count=1, max_price_per_gpu_hour=1.0),
        ),
        (
            {"vendor": "vast", "region": "eu", "compute": {"gpu_type": "L40S", "contract_type": "spot"}},
            OfferQuery(gpu_family="L40S", gpu_count=1, contract_type="spot", vendor="vast", region="EU"),
        ),
        (
            {"compute": {"gpu_type": "H100"}, "network": {"supports_cilium": True}},
            OfferQuery(gpu_family="H100", gpu_count=1),
        ),
    ],
)
def test_valid_documents(document: dict, query: OfferQuery) -> None:
    request, parsed = parse_offer_query(document)
    assert parsed == query
    # The stored (normalized) form parses back to the same query.
    assert parse_offer_query(normalized_document(request, parsed))[1] == parsed


@pytest.mark.parametrize(
    ("document", "loc", "needle"),
    [
        ([1, 2], ["body"], "mapping"),
        ("H100", ["body"], "mapping"),
        ({}, ["body", "compute"], "Field required"),
        ({"compute": {}}, ["body", "compute", "gpu_type"], "Field required"),
        ({"compute": {"gpu_type": ""}}, ["body", "compute", "gpu_type"], "at least 1"),
        ({"compute": {"gpu_type": "B300"}}, ["body", "compute", "gpu_type"], "known families"),
        ({"compute": {"gpu_type": "H100", "gpu_count": 0}}, ["body", "compute", "gpu_count"], "greater than or equal"),
        ({"compute": {"gpu_type": "H100", "gpu_count": "2"}}, ["body", "compute", "gpu_count"], "integer"),
        ({"compute": {"gpu_type": "H100", "gpu_count": True}}, ["body", "compute", "gpu_count"], "integer"),
        ({"compute": {"gpu_type": "H100", "gpu_count": 1.5}}, ["body", "compute", "gpu_count"], "integer"),
        ({"compute": {"gpu_type": "H100", "max_price_per_gpu_hour": -1}}, ["body", "compute", "max_price_per_gpu_hour"], "greater than"),
        ({"compute": {"gpu_type": "H100", "max_price_per_gpu_hour": "cheap"}}, ["body", "compute", "max_price_per_gpu_hour"], "number"),
        ({"compute": {"gpu_type": "H100", "max_price_per_gpu_hour": True}}, ["body", "compute", "max_price_per_gpu_hour"], "number"),
        ({"compute": {"gpu_type": "H100", "max_price_per_gpu_hour": float("inf")}}, ["body", "compute", "max_price_per_gpu_hour"], "finite"),
        ({"compute": {"gpu_type": "H100", "max_price_per_gpu_hour": float("nan")}}, ["body", "compute", "max_price_per_gpu_hour"], "finite"),
        ({"compute": {"gpu_type": "H100", "contract_type": "reserved"}}, ["body", "compute", "contract_type"], "ondemand"),
        ({"compute": {"gpu_type": "H100"}, "vendor": "nebius"}, ["body", "vendor"], "vast"),
        ({"compute": {"gpu_type": "H100"}, "region": "Mars"}, ["body", "region"], "US, EU, APAC, Other"),
        ({"compute": {"gpu_type": "H100"}, "regoin": "US"}, ["body", "regoin"], "Extra inputs"),
        ({"compute": {"gpu_typ": "H100"}}, ["body", "compute", "gpu_typ"], "Extra inputs"),
    ],
)
def test_invalid_documents(document: object, loc: list[str], needle: str) -> None:
    with pytest.raises(UnprocessableError) as caught:
        parse_offer_query(document)
    errors = caught.value.errors
    assert any(err["loc"] == loc and needle in err["msg"] for err in errors), errors


def test_unknown_gpu_type_names_the_families() -> None:
    with pytest.raises(UnprocessableError) as caught:
        parse_offer_query({"compute": {"gpu_type": "X9000"}})
    message = caught.value.errors[0]["msg"]
    for family in ("H100", "A100", "L40S", "RTX4090"):
        assert family in message


def test_filters_applied_echo_the_query() -> None:
    _, query = parse_offer_query({"region": "apac", "compute": {"gpu_type": "nvidia-h100-pcie-80gb", "gpu_count": 2}})
    assert filters_applied(query) == {"gpu_type": "nvidia-h100-pcie-80gb", "gpu_count": 2, "region": "APAC"}
