"""Reading the console's forms (pure functions): the offer search, the procure form, and the
mapping of service validation errors onto the fields that caused them."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from gpusupply.services.offers import MAX_OFFSET

SEARCH_FIELDS = ("gpu_type", "gpu_count", "max_price_per_gpu_hour", "contract_type", "vendor", "region")
# Filters the console applies on top of the get_offers document (at least this much).
MINIMUM_FIELDS = {"min_gpu_memory": "gpu_memory_gb", "min_vcpus": "vcpu_count", "min_ram": "memory_gb"}
PROCURE_FIELDS = ("ssh_public_key", "resource_name", "cloud_init", "auto_delete_hours", "spend_limit")
PAGE_SIZE = 50
MAX_AUTO_DELETE_HOURS = 366 * 24
MAX_GPU_COUNT = 1024
FORM_ERROR = "_form"  # errors that belong to no one field
# sort parameter (a leading "-": descending) -> the offer attribute it orders by
SORT_KEYS = {"price": "gpu_price_per_hour", "gpu_memory": "gpu_memory_gb", "vcpus": "vcpu_count", "ram": "memory_gb"}


@dataclass(slots=True)
class SearchForm:
    values: dict[str, str]  # as typed, shown again in the form
    descending: bool
    page: int  # 1-based
    errors: dict[str, str] = field(default_factory=dict)
    document: dict[str, Any] | None = None  # the get_offers document; None when there is nothing to search
    sort_key: str = "price"
    minimums: dict[str, float] = field(default_factory=dict)  # offer attribute -> at least

    @property
    def offset(self) -> int:
        return (self.page - 1) * PAGE_SIZE

    @property
    def sort(self) -> str:
        return f"{'-' if self.descending else ''}{self.sort_key}"

    def sort_link_value(self, key: str) -> str:
        """The sort parameter of a column's header link: that column, reversed when it is the current one
        (prices start cheapest first, sizes largest first)."""
        if key == self.sort_key:
            return key if self.descending else f"-{key}"
        return key if key == "price" else f"-{key}"


def read_search_form(params: Mapping[str, str]) -> SearchForm:
    """The search form as a get_offers document, or the errors of the fields that are wrong.

    A form without a GPU is a first visit, not an error. Types and ranges the browser may let
    through are checked here; the document is then validated by the same code as the API's.
    """
    values = {name: (params.get(name) or "").strip() for name in (*SEARCH_FIELDS, *MINIMUM_FIELDS)}
    sort = (params.get("sort") or "price").strip()
    descending, key = sort.startswith("-"), sort.lstrip("-")
    if key not in SORT_KEYS:
        descending, key = False, "price"
    page = _page(params.get("page"))
    form = SearchForm(values, descending, page, sort_key=key)
    for name, attribute in MINIMUM_FIELDS.items():
        if values[name]:
            amount = _number(values[name])
            if amount is None or amount < 0:
                form.errors[name] = "Enter a number, 0 or more."
            else:
                form.minimums[attribute] = amount
    if not values["gpu_type"]:
        if any(values[name] for name in ("max_price_per_gpu_hour", "contract_type", "vendor", "region")):
            form.errors["gpu_type"] = "Choose a GPU to search for."
        return form
    compute: dict[str, Any] = {"gpu_type": values["gpu_type"]}
    count_text = values["gpu_count"] or "1"
    if not count_text.isdigit() or not 1 <= int(count_text) <= MAX_GPU_COUNT:
        form.errors["gpu_count"] = f"Enter a whole number of GPUs from 1 to {MAX_GPU_COUNT}."
    else:
        compute["gpu_count"] = int(count_text)
    if values["max_price_per_gpu_hour"]:
        price = _number(values["max_price_per_gpu_hour"])
        if price is None or price <= 0:
            form.errors["max_price_per_gpu_hour"] = "Enter a price in USD above 0, for example 2.50."
        else:
            compute["max_price_per_gpu_hour"] = price
    if values["contract_type"]:
        compute["contract_type"] = values["contract_type"]
    document: dict[str, Any] = {"compute": compute}
    for name in ("vendor", "region"):
        if values[name]:
            document[name] = values[name]
    if not form.errors:
        form.document = document
    return form


def _page(text: str | None) -> int:
    if text is None or not text.isdigit():
        return 1
    return max(1, min(int(text), MAX_OFFSET // PAGE_SIZE + 1))


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def descending_window(total: int, offset: int, limit: int) -> tuple[int, int]:
    """Where a page of the most-expensive-first order lies in the cheapest-first order:
    (offset, count) to read ascending and then reverse."""
    end = max(0, total - offset)
    start = max(0, end - limit)
    return start, end - start


def search_link(values: Mapping[str, str], **changes: Any) -> str:
    """The query string of the search with some parameters changed (sorting, paging links)."""
    params = {name: value for name, value in values.items() if value}
    for name, value in changes.items():
        if value is None:
            params.pop(name, None)
        else:
            params[name] = str(value)
    return "?" + urlencode(params)


FIELD_LABELS = {
    "ssh_public_key": "The SSH public key",
    "resource_name": "The name",
    "cloud_init": "The startup script",
    "gpu_type": "The GPU",
}


def field_errors(errors: Iterable[Mapping[str, Any]], fields: Iterable[str]) -> dict[str, str]:
    """Service 422 errors (FastAPI shape: loc, msg) by form field; the rest under FORM_ERROR.

    A location names its field as its last known part (`["body", "compute", "gpu_count"]`).
    The first message per field wins; a message that starts with the API's field name gets
    the form's words for it ("ssh_public_key is empty" -> "The SSH public key is empty").
    """
    known = set(fields)
    by_field: dict[str, str] = {}
    for error in errors:
        names = [part for part in error.get("loc", ()) if isinstance(part, str) and part in known]
        name = names[-1] if names else FORM_ERROR
        message = str(error.get("msg") or "invalid value")
        if name in FIELD_LABELS and message.startswith(name + " "):
            message = FIELD_LABELS[name] + message[len(name) :]
        by_field.setdefault(name, message)
    return by_field


@dataclass(slots=True)
class ProcureForm:
    ssh_public_key: str
    resource_name: str | None
    cloud_init: str | None
    form_id: str | None  # sent as the Idempotency-Key: a double submit procures once
    auto_delete_hours: str = ""
    spend_limit: str = ""
    errors: dict[str, str] = field(default_factory=dict)
    auto_delete: dict[str, Any] | None = None  # the API's auto_delete body, when a limit was given

    @property
    def values(self) -> dict[str, str]:
        return {
            "ssh_public_key": self.ssh_public_key,
            "resource_name": self.resource_name or "",
            "cloud_init": self.cloud_init or "",
            "auto_delete_hours": self.auto_delete_hours,
            "spend_limit": self.spend_limit,
        }


def read_procure_form(form: Mapping[str, str]) -> ProcureForm:
    """Textareas arrive with CRLF line ends; empty optional fields mean "not given"."""

    def text(name: str) -> str:
        return (form.get(name) or "").replace("\r\n", "\n").replace("\r", "\n")

    name = text("resource_name").strip()
    cloud_init = text("cloud_init")
    form_id = (form.get("form_id") or "").strip()
    read = ProcureForm(
        ssh_public_key=text("ssh_public_key").strip(),
        resource_name=name or None,
        cloud_init=cloud_init if cloud_init.strip() else None,
        form_id=form_id or None,
        auto_delete_hours=text("auto_delete_hours").strip(),
        spend_limit=text("spend_limit").strip(),
    )
    limits: dict[str, Any] = {}
    if read.auto_delete_hours:
        hours = _number(read.auto_delete_hours)
        if hours is None or not 0 < hours <= MAX_AUTO_DELETE_HOURS:
            read.errors["auto_delete_hours"] = f"Enter hours above 0, at most {MAX_AUTO_DELETE_HOURS} (366 days), for example 2 or 0.5."
        else:
            limits["ttl_seconds"] = max(1, round(hours * 3600))
    if read.spend_limit:
        amount = _number(read.spend_limit)
        if amount is None or amount <= 0:
            read.errors["spend_limit"] = "Enter an amount in USD above 0, for example 20."
        else:
            limits["spend_limit"] = amount
    read.auto_delete = limits or None
    return read
