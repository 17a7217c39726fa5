"""Reading the console's forms (pure): search form to document, paging and sorting, service
errors onto fields, the procure form."""

from __future__ import annotations

from typing import Any

import pytest

from gpusupply.web.forms import (
    FORM_ERROR,
    MINIMUM_FIELDS,
    PROCURE_FIELDS,
    SEARCH_FIELDS,
    descending_window,
    field_errors,
    read_procure_form,
    read_search_form,
    search_link,
)


@pytest.mark.parametrize(
    ("params", "document", "errors"),
    [
        ({}, None, {}),
        ({"gpu_count": "2"}, None, {}),  # a first visit: nothing chosen yet
        ({"gpu_type": "H100"}, {"compute": {"gpu_type": "H100", "gpu_count": 1}}, {}),
        ({"gpu_type": " H100 ", "gpu_count": ""}, {"compute": {"gpu_type": "H100", "gpu_count": 1}}, {}),
        (
            {"gpu_type": "nvidia-h100-sxm5-80gb", "gpu_count": "8", "max_price_per_gpu_hour": "2.5",
             "contract_type": "spot", "vendor": "vast", "region": "EU"},
            {"compute": {"gpu_type": "nvidia-h100-sxm5-80gb", "gpu_count": 8, "max_price_per_gpu_hour": 2.5,
                         "contract_type": "spot"}, "vendor": "vast", "region": "EU"},
            {},
        ),
        ({"gpu_type": "H100", "gpu_count": "0"}, None, {"gpu_count": "Enter a whole number of GPUs from 1 to 1024."}),
        ({"gpu_type": "H100", "gpu_count": "1025"}, None, {"gpu_count": "Enter a whole number of GPUs from 1 to 1024."}),
        ({"gpu_type": "H100", "gpu_count": "1.5"}, None, {"gpu_count": "Enter a whole number of GPUs from 1 to 1024."}),
        ({"gpu_type": "H100", "gpu_count": "-1"}, None, {"gpu_count": "Enter a whole number of GPUs from 1 to 1024."}),
        ({"gpu_type": "H100", "max_price_per_gpu_hour": "0"}, None,
         {"max_price_per_gpu_hour": "Enter a price in USD above 0, for example 2.50."}),
        ({"gpu_type": "H100", "max_price_per_gpu_hour": "inf"}, None,
         {"max_price_per_gpu_hour": "Enter a price in USD above 0, for example 2.50."}),
        ({"gpu_type": "H100", "max_price_per_gpu_hour": "cheap"}, None,
         {"max_price_per_gpu_hour": "Enter a price in USD above 0, for example 2.50."}),
        ({"vendor": "fal"}, None, {"gpu_type": "Choose a GPU to search for."}),
    ],
)
def test_read_search_form(params: dict[str, str], document: dict[str, Any] | None, errors: dict[str, str]) -> None:
    form = read_search_form(params)
    assert form.document == document
    assert form.errors == errors
    assert set(form.values) == set(SEARCH_FIELDS) | set(MINIMUM_FIELDS)


@pytest.mark.parametrize(
    ("params", "page", "offset", "descending", "sort"),
    [
        ({}, 1, 0, False, "price"),
        ({"page": "3"}, 3, 100, False, "price"),
        ({"page": "0"}, 1, 0, False, "price"),
        ({"page": "x"}, 1, 0, False, "price"),
        ({"page": "99999999999"}, 20001, 1_000_000, False, "price"),  # stays inside the service's offset bound
        ({"sort": "-price"}, 1, 0, True, "-price"),
        ({"sort": "name"}, 1, 0, False, "price"),
        ({"sort": "-vcpus"}, 1, 0, True, "-vcpus"),
        ({"sort": "ram"}, 1, 0, False, "ram"),
        ({"sort": "-gpu_memory"}, 1, 0, True, "-gpu_memory"),
    ],
)
def test_paging_and_sorting(params: dict[str, str], page: int, offset: int, descending: bool, sort: str) -> None:
    form = read_search_form(params)
    assert (form.page, form.offset, form.descending, form.sort) == (page, offset, descending, sort)


def test_minimums_and_sort_links() -> None:
    form = read_search_form({"gpu_type": "H100", "min_vcpus": "16", "min_ram": "64.5", "min_gpu_memory": ""})
    assert form.minimums == {"vcpu_count": 16.0, "memory_gb": 64.5} and not form.errors
    bad = read_search_form({"gpu_type": "H100", "min_gpu_memory": "lots", "min_vcpus": "-1"})
    assert bad.errors == {"min_gpu_memory": "Enter a number, 0 or more.", "min_vcpus": "Enter a number, 0 or more."}
    assert bad.document is None
    by_price = read_search_form({"gpu_type": "H100"})
    assert (by_price.sort_link_value("price"), by_price.sort_link_value("vcpus")) == ("-price", "-vcpus")
    by_vcpus = read_search_form({"gpu_type": "H100", "sort": "-vcpus"})
    assert (by_vcpus.sort_link_value("vcpus"), by_vcpus.sort_link_value("price")) == ("vcpus", "price")


@pytest.mark.parametrize(
    ("total", "offset", "limit", "window"),
    [
        (120, 0, 50, (70, 50)),  # the 50 dearest are the last 50 of cheapest-first
        (120, 50, 50, (20, 50)),
        (120, 100, 50, (0, 20)),  # a short last page
        (120, 150, 50, (0, 0)),  # past the end
        (30, 0, 50, (0, 30)),
        (0, 0, 50, (0, 0)),
    ],
)
def test_descending_window(total: int, offset: int, limit: int, window: tuple[int, int]) -> None:
    assert descending_window(total, offset, limit) == window


def test_search_link_keeps_filled_fields_and_applies_changes() -> None:
    values = {"gpu_type": "H100", "gpu_count": "1", "vendor": "", "region": "EU"}
    assert search_link(values) == "?gpu_type=H100&gpu_count=1&region=EU"
    assert search_link(values, sort="-price", page=2) == "?gpu_type=H100&gpu_count=1&region=EU&sort=-price&page=2"
    assert search_link(values, region=None) == "?gpu_type=H100&gpu_count=1"
    assert search_link({"gpu_type": "a&b=c"}) == "?gpu_type=a%26b%3Dc"


@pytest.mark.parametrize(
    ("errors", "fields", "expected"),
    [
        ([{"loc": ["compute", "gpu_count"], "msg": "too big"}], SEARCH_FIELDS, {"gpu_count": "too big"}),
        ([{"loc": ["body", "ssh_public_key"], "msg": "bad key"}], PROCURE_FIELDS, {"ssh_public_key": "bad key"}),
        ([{"loc": ["body", "ssh_public_key"], "msg": "ssh_public_key is empty"}], PROCURE_FIELDS,
         {"ssh_public_key": "The SSH public key is empty"}),
        ([{"loc": ["body", "cloud_init"], "msg": "cloud_init must start with"}], PROCURE_FIELDS,
         {"cloud_init": "The startup script must start with"}),
        ([{"loc": ["compute", "gpu_type"], "msg": "unknown gpu_type 'X'"}], SEARCH_FIELDS, {"gpu_type": "unknown gpu_type 'X'"}),
        ([{"loc": ["header", "Idempotency-Key"], "msg": "used"}], PROCURE_FIELDS, {FORM_ERROR: "used"}),
        ([{"loc": ["body"], "msg": "give one"}], PROCURE_FIELDS, {FORM_ERROR: "give one"}),
        ([{"loc": ["vendor"], "msg": "first"}, {"loc": ["vendor"], "msg": "second"}], SEARCH_FIELDS, {"vendor": "first"}),
        ([{"loc": ["region"]}], SEARCH_FIELDS, {"region": "invalid value"}),
        ([], SEARCH_FIELDS, {}),
    ],
)
def test_field_errors(errors: list[dict[str, Any]], fields: tuple[str, ...], expected: dict[str, str]) -> None:
    assert field_errors(errors, fields) == expected


@pytest.mark.parametrize(
    ("form", "key", "name", "cloud_init", "form_id"),
    [
        ({"ssh_public_key": "  ssh-ed25519 AAAA x\r\n"}, "ssh-ed25519 AAAA x", None, None, None),
        ({"ssh_public_key": "k", "resource_name": "  trainer  ", "form_id": "console-1"}, "k", "trainer", None, "console-1"),
        ({"ssh_public_key": "k", "cloud_init": "#!/bin/sh\r\necho hi\r\n"}, "k", None, "#!/bin/sh\necho hi\n", None),
        ({"ssh_public_key": "k", "cloud_init": " \r\n ", "resource_name": " "}, "k", None, None, None),
        ({}, "", None, None, None),
    ],
)
def test_read_procure_form(form: dict[str, str], key: str, name: str | None, cloud_init: str | None, form_id: str | None) -> None:
    read = read_procure_form(form)
    assert (read.ssh_public_key, read.resource_name, read.cloud_init, read.form_id) == (key, name, cloud_init, form_id)
    assert read.values == {"ssh_public_key": key, "resource_name": name or "", "cloud_init": cloud_init or "",
                           "auto_delete_hours": "", "spend_limit": ""}
    assert read.auto_delete is None and read.errors == {}


def test_procure_form_limits() -> None:
    read = read_procure_form({"ssh_public_key": "k", "auto_delete_hours": "0.5", "spend_limit": "20"})
    assert read.auto_delete == {"ttl_seconds": 1800, "spend_limit": 20.0} and read.errors == {}
    wrong = read_procure_form({"auto_delete_hours": "0", "spend_limit": "-3"})
    assert set(wrong.errors) == {"auto_delete_hours", "spend_limit"} and wrong.auto_delete is None
    assert "auto_delete_hours" in PROCURE_FIELDS and "spend_limit" in PROCURE_FIELDS
