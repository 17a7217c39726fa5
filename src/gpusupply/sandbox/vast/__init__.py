"""Vast.ai, simulated: marketplace search, asks, instances and SSH keys as `console.vast.ai` serves them.

One module per thing: `hardware` (the machines' GPUs, CPUs, drivers), `query` (the query language
over numpy columns), `inventory` (the marketplace of asks and its search), `bodies` (instance
columns, create bodies, v1 paging tokens) and `app` (`VastSandbox`: accounts and the routes). The
plumbing every simulated vendor shares is in sandbox/common.py.

Faithful to reference/vendor-apis.md section 1 and seed 001, and checked against the official
`vastai` CLI (1.9.1):
- auth by `Authorization: Bearer KEY` or `?api_key=KEY`; every non-empty key is its own account;
- `{"success": false, "error": ..., "msg": ...}` errors with the documented codes and messages,
  and `Content-Type: application/json` exactly (the CLI compares the string);
- offer search with the operator query (`POST /api/v0/bundles/`, legacy `GET /api/v0/bundles?q=`,
  `PUT /api/v0/search/asks/`) over a deterministic, columnar (numpy) inventory;
- asks accepted with `PUT /api/v0/asks/{id}/` (an ask is consumed while its instance lives);
- instances listed by v0 (`?owner=me`) and v1 (JSON query params, `next_token` keyset cursor),
  shown one by one (`{"instances": null}` once gone), started/stopped/labelled, rebooted, destroyed;
- SSH keys per account and per instance, `users/current`, `gpu_names/unique`, `instances/filters`.

Inferred where Vast documents nothing (docs/vendors/vast.md says so): rate-limit thresholds read as
requests/second with a small burst; search `limit` defaults to 1000 and is capped at 10000;
deverified machines can only be rented by their host (403); keys starting with `nocredit` stand
for accounts without credit (`missing_billing`); 503/504 come as the HTML page of a proxy.
"""

from gpusupply.sandbox.vast.app import VastSandbox
from gpusupply.sandbox.vast.bodies import (
    COMPUTED_INSTANCE_COLUMNS,
    INSTANCE_COLUMNS,
    decode_token,
    encode_token,
    env_pairs,
    parse_create_body,
    row_sort_key,
    vast_status,
)
from gpusupply.sandbox.vast.hardware import driver_number
from gpusupply.sandbox.vast.inventory import MAX_SEARCH_LIMIT, OfferTable, parse_search_query
from gpusupply.sandbox.vast.query import Column, QueryError, column_from_rows, column_mask, normalize_text

__all__ = [
    "COMPUTED_INSTANCE_COLUMNS",
    "INSTANCE_COLUMNS",
    "MAX_SEARCH_LIMIT",
    "Column",
    "OfferTable",
    "QueryError",
    "VastSandbox",
    "column_from_rows",
    "column_mask",
    "decode_token",
    "driver_number",
    "encode_token",
    "env_pairs",
    "normalize_text",
    "parse_create_body",
    "parse_search_query",
    "row_sort_key",
    "vast_status",
]
