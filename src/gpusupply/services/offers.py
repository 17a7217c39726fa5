"""Offer search: reading the `get_offers` document (YAML or JSON), validating it into an
`OfferQuery`, and asking the catalog.

The document models are in the contract (`contract/offers.py`), shared with the SDK; here a
document is validated with `vendor` narrowed to this server's vendors. YAML is read with a safe
loader that also refuses aliases and anchors (no "billion laughs" expansion) and deep nesting,
after the body size was checked.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID

import yaml
from pydantic import ValidationError

from gpusupply.contract.offers import OffersRequest, offers_request_for
from gpusupply.core.errors import NotFoundError, PayloadTooLarge, UnprocessableError, UnsupportedMediaType
from gpusupply.core.inputs import MAX_INT_DIGITS, TOO_LARGE, loads_json
from gpusupply.core.offers import OfferQuery
from gpusupply.domain.offer_query import normalized_document, query_from_request
from gpusupply.settings import VENDORS

if TYPE_CHECKING:
    from gpusupply.domain.catalog import OfferCatalog, SearchResult, StoredOffer

MAX_DOCUMENT_BYTES = 64 * 1024
MAX_NESTING = 20
YAML_MEDIA_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain"})
JSON_MEDIA_TYPES = frozenset({"application/json"})
KNOWN_VENDORS = VENDORS  # one list of vendor ids: settings.VENDORS
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
MAX_OFFSET = 1_000_000  # far past any real result; keeps numbers inside every database's integer

__all__ = ["OffersRequest", "normalized_document", "parse_offer_query", "query_from_request", "search_offers"]


@dataclass(slots=True)
class OfferSearch:
    result: SearchResult
    filters_applied: dict[str, Any]
    limit: int
    offset: int


# ----- reading the body ------------------------------------------------------------------------
class _StrictSafeLoader(yaml.SafeLoader):
    """SafeLoader that refuses aliases/anchors and nesting deeper than MAX_NESTING."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise yaml.YAMLError("YAML anchors and aliases are not accepted")
        self._depth += 1
        if self._depth > MAX_NESTING:
            raise yaml.YAMLError(f"YAML nested deeper than {MAX_NESTING} levels")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_yaml_int(self, node: Any) -> int:
        """Long decimal and base-60 integers become ±TOO_LARGE (core/inputs.py) instead of being
        parsed (Python refuses decimals over 4,300 digits); other bases parse in linear time."""
        text = str(self.construct_scalar(node)).replace("_", "")
        unsigned = text.lstrip("+-")
        parts = unsigned.split(":")
        if unsigned[:1] != "0" and (len(parts[0]) > MAX_INT_DIGITS or len(parts) > MAX_INT_DIGITS):
            return -TOO_LARGE if text.startswith("-") else TOO_LARGE
        return super().construct_yaml_int(node)


_StrictSafeLoader.add_constructor("tag:yaml.org,2002:int", _StrictSafeLoader.construct_yaml_int)


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def read_document(raw: bytes, content_type: str | None) -> Any:
    """The body as data: JSON for application/json, YAML for the YAML types (and no type)."""
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise PayloadTooLarge(f"request body is larger than {MAX_DOCUMENT_BYTES} bytes")
    kind = media_type(content_type)
    if kind and kind not in YAML_MEDIA_TYPES and kind not in JSON_MEDIA_TYPES and not kind.endswith("+json"):
        raise UnsupportedMediaType(
            f"unsupported Content-Type {kind!r}; send application/yaml (or application/x-yaml, text/yaml) or application/json"
        )
    if not raw.strip():
        raise UnprocessableError("request body is empty; send a document with compute.gpu_type", kind="missing")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UnprocessableError("request body is not UTF-8 text", kind="value_error") from None
    if kind in JSON_MEDIA_TYPES or kind.endswith("+json"):
        try:
            return loads_json(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise UnprocessableError(f"invalid JSON: {exc}", kind="json_invalid") from None
    try:
        return yaml.load(text, Loader=_StrictSafeLoader)  # noqa: S506 - a SafeLoader subclass
    except (yaml.YAMLError, RecursionError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UnprocessableError(f"invalid YAML: {message}", kind="yaml_invalid") from None


# ----- validating ------------------------------------------------------------------------------
def pydantic_errors(exc: ValidationError, prefix: tuple[str | int, ...]) -> list[dict[str, Any]]:
    """A pydantic error list in FastAPI's 422 shape, located under `prefix`."""
    return [
        {"loc": [*prefix, *err["loc"]], "msg": err["msg"], "type": err["type"]}
        for err in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


def parse_offer_query(document: Any, *, loc: tuple[str | int, ...] = ("body",)) -> tuple[OffersRequest, OfferQuery]:
    """Validate a get_offers document. Raises UnprocessableError (422) naming what is wrong."""
    if not isinstance(document, dict):
        raise UnprocessableError("the document must be a mapping with a `compute` section", loc=loc, kind="dict_type")
    try:
        request = offers_request_for(KNOWN_VENDORS).model_validate(document)
    except ValidationError as exc:
        raise UnprocessableError("invalid offer query", errors=pydantic_errors(exc, loc)) from None
    return request, query_from_request(request, loc=loc)


def filters_applied(query: OfferQuery) -> dict[str, Any]:
    """What the search matched on, in the document's own terms (echoed in the answer)."""
    applied: dict[str, Any] = {}
    if query.gpu_family is not None:
        applied["gpu_family"] = query.gpu_family
    if query.gpu_canonical is not None:
        applied["gpu_type"] = query.gpu_canonical
    for name in ("gpu_count", "max_price_per_gpu_hour", "contract_type", "vendor", "region", "node_count", "interconnect"):
        value = getattr(query, name)
        if value is not None:
            applied[name] = value
    return applied


def check_page(limit: int, offset: int) -> None:
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise UnprocessableError(f"limit must be between 1 and {MAX_PAGE_SIZE}", loc=("query", "limit"))
    if not 0 <= offset <= MAX_OFFSET:
        raise UnprocessableError(f"offset must be between 0 and {MAX_OFFSET}", loc=("query", "offset"))


# ----- use cases -------------------------------------------------------------------------------
async def search_offers(
    catalog: OfferCatalog, raw: bytes, content_type: str | None, *, limit: int, offset: int
) -> OfferSearch:
    check_page(limit, offset)
    _, query = parse_offer_query(read_document(raw, content_type))
    # Shared: an identical search answers the same result while the catalog has not changed.
    result = await catalog.search(query, limit=limit, offset=offset, shared=True)
    return OfferSearch(result, filters_applied(query), limit, offset)


async def get_offer(catalog: OfferCatalog, offer_id: UUID) -> StoredOffer:
    stored = await catalog.get(offer_id)
    if stored is None:
        raise NotFoundError(f"offer {offer_id} not found (unknown, or expired and cleaned up)")
    return stored
